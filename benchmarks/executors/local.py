"""The ``local`` executor's process pool: ``jobs`` spawned worker processes, one run each at a time.

Each worker runs :func:`~benchmarks.executors.run.run_one` with ``torch.set_num_threads(threads)``,
ignores Ctrl-C (the parent decides: it cancels what is queued and waits for the runs already
started, which write their records) and dies with its parent. A worker that dies mid-run wrote
nothing: the parent writes that run a ``failed`` record, which the next invocation retries.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Callable

import torch

from ..records import RunSpec, WriteError, died_record, write_record
from .run import RunOptions, run_one


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    # a worker ignores Ctrl-C: the parent decides, cancels what is pending, and lets running runs end
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # and dies with its parent (kill -9 of the suite): the run in progress leaves no record (records
    # are written atomically), rather than the worker running on, orphaned, and then idling for ever
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="sgmcmc-parent-watch", daemon=True).start()


def run_pool(todo: list[RunSpec], opts: RunOptions, jobs: int, *, on_record: Callable[[dict], None],
             say: Callable[[str], None]) -> None:
    """Run ``todo`` on ``jobs`` spawned processes (``opts.threads`` torch threads each); ``on_record``
    gets each record as its run ends. On Ctrl-C: cancel the queued runs, wait for (and report) the
    ones already started, then re-raise :class:`KeyboardInterrupt`."""
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(opts.threads,)) as pool:
        # at most `jobs` runs handed over at a time (the pool would queue more, and a queued
        # run can no longer be cancelled), so Ctrl-C waits only for the runs really going
        futures: dict = {}
        remaining: set = set()
        queued = iter(todo)

        def submit_next() -> None:
            spec = next(queued, None)
            if spec is not None:
                fut = pool.submit(run_one, spec, opts)
                futures[fut] = spec
                remaining.add(fut)

        for _ in range(jobs):
            submit_next()

        def collect(fut) -> None:
            remaining.discard(fut)
            try:
                on_record(fut.result())
            except WriteError:  # the worker could not write its record (disk full): the run stops
                raise
            except Exception as exc:  # the worker process died: it wrote nothing, so the parent
                # records the run as failed (a rerun retries it) and counts it as any other
                record = died_record(futures[fut], f"worker process died: {type(exc).__name__}: {exc}; "
                                                   f"run the same command again to retry")
                write_record(opts.results_dir, record)
                on_record(record)

        try:
            while remaining:
                ready, _ = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in ready:
                    collect(fut)
                    submit_next()
        except KeyboardInterrupt:
            # runs already handed to a worker cannot be cancelled: they finish and write
            # their records, so wait for them and count them (Ctrl-C again stops waiting)
            running = [f for f in remaining if not f.cancel()]
            if running:
                say(f"interrupted: waiting for the {len(running)} run(s) already started to write "
                    f"their records")
                for fut in running:
                    collect(fut)
            raise
