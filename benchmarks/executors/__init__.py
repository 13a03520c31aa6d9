"""Executors: run a grid of specs, each run writing its own record.

``local`` runs in this process (``jobs=1``) or in a pool of ``jobs`` processes, each with
``torch.set_num_threads(cores // jobs)`` so the machine is not oversubscribed
(:mod:`benchmarks.executors.local`); ``dask`` submits each run to a ``dask.distributed`` cluster
(:mod:`benchmarks.executors.dask`). :func:`execute` skips every spec that already has a finished
record (:func:`benchmarks.records.pending`), runs the rest, and returns a :class:`GridSummary`.

Executors import :mod:`benchmarks.records`, never the other way round.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Callable

from ..grid import longest_first
from ..records import STALE_TEMP_S, RunSpec, pending, records_dir, remove_stale_temp_files
from .local import run_pool
from .run import (DaskError, DaskUnavailableError, GridSummary, RunOptions, TaskNotReady, check_ready,
                  cpu_threads_per_worker, resolve_device, run_one, seed_everything)

__all__ = ["DaskError", "DaskUnavailableError", "GridSummary", "RunOptions", "TaskNotReady", "check_ready",
           "cpu_threads_per_worker", "execute", "resolve_device", "run_one", "seed_everything"]


def execute(specs: list[RunSpec], opts: RunOptions, *, jobs: int = 1, force: bool = False,
            executor: str = "local", scheduler: str | None = None,
            log: Callable[[str], None] = print, lines: bool | None = None) -> GridSummary:
    """Run every spec without a record (all with ``force``); returns counts by status.

    ``lines``: print one line to stdout per finished run (task, sampler, seed, status, seconds, runs
    left, ETA): by default when stdout is not a terminal (a log file, ``| tee``, CI), where the
    progress bars (drawn on a terminal only) would leave minutes of silence."""
    # tqdm is imported here, not at the top: it is only needed once there is something to run
    from tqdm.auto import tqdm

    specs = list({spec.key: spec for spec in specs}.values())  # the same configuration named twice runs once
    summary = GridSummary(total=len(specs))
    todo, done = pending(specs, opts.results_dir, force, warn=log)
    summary.skipped = len(done)
    stale = remove_stale_temp_files(opts.results_dir)
    if stale:
        log(f"removed {stale} temporary file(s) of record writes interrupted over {STALE_TEMP_S:.0f} s ago "
            f"in {records_dir(opts.results_dir)}")
    if not todo:
        return summary
    if jobs > 1 or executor == "dask":
        todo = longest_first(todo)
    check_ready({spec.task for spec in todo}, opts)
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="runs", unit="run", position=0, disable=None)
    if lines is None:
        lines = not _isatty(sys.stdout)
    count = [0]

    def finished(record: dict) -> None:
        summary.add(record)
        bar.update(1)
        cfg = record["config"]
        count[0] += 1
        if lines:
            print(progress_line(record, count[0], len(todo), time.perf_counter() - t0), flush=True)
        if record["status"] != "ok":
            why = record.get("divergence", {}).get("reason") or record.get("error", "")
            spec = RunSpec.from_config(cfg)
            where = f" at step {record['divergence']['step']}" if "divergence" in record else ""
            bar.write(f"  {record['status']}{where}: {spec.label()} [{spec.variant}]: "
                      f"{why.splitlines()[0] if why else ''}")

    try:
        if executor == "dask":
            # imported only for --executor dask: it imports dask.distributed, an optional dependency
            from .dask import execute_dask

            execute_dask(todo, opts, jobs=jobs, scheduler=scheduler, on_record=finished, log=log)
        elif jobs <= 1:
            for spec in todo:
                finished(run_one(spec, opts))
        else:
            opts = dataclasses.replace(opts, show_progress=False, threads=cpu_threads_per_worker(jobs))
            run_pool(todo, opts, jobs, on_record=finished, say=bar.write)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.wall_time_s = time.perf_counter() - t0
    return summary


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_line(record: dict, done: int, total: int, elapsed_s: float) -> str:
    """``[done/total] task sampler seed S [variant]: status in X s; N left, ETA m:ss`` for one finished
    run; the ETA is the time so far per finished run times the runs left (so it counts the workers)."""
    cfg = record["config"]
    left = total - done
    eta = elapsed_s / done * left if done else 0.0
    variant = cfg.get("variant", "tuned")
    lr = (cfg.get("hyper") or {}).get("lr")
    what = f" [{variant}" + (f", lr={lr:.6g}" if variant == "sweep" and isinstance(lr, float) else "") + "]"
    return (f"[{done}/{total}] {cfg['task']} {cfg['sampler']} seed {cfg['seed']}"
            + (what if variant != "tuned" else "")
            + f": {record['status']} in {record.get('wall_time_s', 0.0):.1f} s; {left} left"
            + (f", ETA {int(eta // 60)}:{int(eta % 60):02d}" if left else f", all done in {elapsed_s:.0f} s"))
