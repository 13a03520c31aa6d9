"""The ``dask`` executor: every run of the grid as one task on a ``dask.distributed`` cluster.

``python -m benchmarks run ... --executor dask`` starts a :class:`~distributed.LocalCluster` on
loopback (``--jobs`` worker processes, one thread each) and closes it afterwards;
``--executor dask --scheduler tcp://host:8786`` submits to an existing cluster and leaves it running.
Each task is :func:`benchmarks.executors.run_one` on a worker, which writes that run's record
atomically into the results directory, so the results directory must be one path that every
worker and the client see (a shared filesystem, mounted at the same path everywhere). The client
reports each run as it completes (``on_record``), in completion order.

Decisions, each one a property the tests check:

* **One run per worker process at a time.** Runs seed torch's global RNG and set its thread count,
  both per process, so two runs in one process would change each other's numbers. A worker with
  several threads still runs one run at a time (a per-process lock); start workers with
  ``--nthreads 1`` and as many ``--nworkers`` as runs you want at once. The client keeps at most one
  run in flight per worker process, so a worker that dies takes no queued run down with it.
* **Threads.** With the LocalCluster each run gets ``cpu_threads_per_worker(jobs)`` torch threads, as
  the local process pool does. On an existing cluster each run gets ``cpu_count // (worker processes
  on that host)`` threads, computed on the worker from the host's own core count (1 for a worker
  that joined after the grid started). An explicit ``RunOptions.threads`` is used as given.
* **A worker that dies mid-run** (killed, out of memory, segfault) writes no record: the record is
  only ever written whole, at the end of the run. Dask retries the run on another worker; with the
  LocalCluster we set ``distributed.scheduler.allowed-failures`` to 1, so a run that kills its
  worker twice ends as :class:`distributed.KilledWorker`, and the client writes it a ``failed``
  record (``worker died``: the leaderboard shows it, and the next invocation runs it again); the
  rest of the grid goes on.
* **Workers that cannot import the project** would fail to unpickle every task and leave the client
  waiting: on an existing cluster the client asks every worker present to import it first, and
  stops (exit 2) naming the workers that cannot. While runs wait on a cluster with no worker
  connected (none yet, or all gone), the client says so every ``STALL_LOG_S`` seconds.
  On an existing cluster the scheduler's own setting applies (dask's default is 3; start the
  scheduler with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1`` for the same behaviour).
* **Ctrl-C** cancels the queued runs, closes the client and the LocalCluster we started (never a
  cluster we were pointed at) and re-raises :class:`KeyboardInterrupt`, so
  :func:`benchmarks.executors.execute` marks the summary interrupted. Finished runs keep their records.
  Dask cannot stop a task that is already running: on an existing cluster such a run finishes on
  its worker and writes its record after the client has gone (a rerun then finds it, or reruns it
  if it had not finished yet).

Dask is optional: ``pip install "sgmcmc-bench[dask]"``. Without it :func:`require_dask` raises
:class:`DaskUnavailableError`, whose message names that command. That is why dask and distributed
are imported inside the functions that use them (and this module only for ``--executor dask``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections import Counter
from typing import Callable

from ..records import RunSpec, died_record, git_commit, write_record
from .run import DaskError, DaskUnavailableError, RunOptions, cpu_threads_per_worker, run_one

#: the address schemes of dask's comms that reach a scheduler on another process or host
SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")

INSTALL_HINT = 'pip install "sgmcmc-bench[dask]"'
#: how often the LocalCluster retries a run whose worker died (so a deterministic crash costs two workers)
LOCAL_ALLOWED_FAILURES = 1
#: on an existing cluster, say so every this many seconds while no worker is connected and runs wait
STALL_LOG_S = 60.0


def require_dask():
    """Import and return ``distributed``, or raise :class:`DaskUnavailableError` naming the install command."""
    try:
        import dask  # noqa: F401
        import dask.distributed  # noqa: F401
        import distributed
    except ImportError as exc:
        raise DaskUnavailableError(
            f"--executor dask needs dask.distributed, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}") from None
    return distributed


# --------------------------------------------------------------------------- on the worker
# This module is imported only for ``--executor dask`` (see :func:`benchmarks.executors.execute`); the
# plugin's base class comes from dask, which is optional: without it the class is a plain object.
try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # dask is optional; require_dask() says how to install it
    _WorkerPlugin = object


class IgnoreSigint(_WorkerPlugin):
    """Registered on the LocalCluster's workers only: Ctrl-C in a terminal reaches the whole process
    group, and the client, not each worker, decides what stops (as in the local process pool)."""

    name = "sgmcmc-bench-ignore-sigint"

    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


_RUN_LOCK = threading.Lock()  # one run per worker process: torch's RNG and thread count are per process


def _this_host() -> str | None:
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        return get_address_host(get_worker().address)
    except (ImportError, ValueError):
        return None


def run_on_worker(spec: RunSpec, opts: RunOptions, workers_by_host: dict[str, int] | None = None) -> dict:
    """The dask task: :func:`run_one` with a thread count fitted to this worker's host."""
    if not opts.threads:
        per_host = (workers_by_host or {}).get(_this_host() or "")
        opts = dataclasses.replace(opts, threads=cpu_threads_per_worker(per_host) if per_host else 1)
    with _RUN_LOCK:
        return run_one(spec, opts)


# --------------------------------------------------------------------------- on the client
def workers_by_host(workers) -> dict[str, int]:
    """host -> number of worker processes there, from worker addresses (e.g. ``Client.nthreads()``)."""
    from distributed.comm import get_address_host

    return dict(Counter(get_address_host(addr) for addr in workers))


def dask_died_record(spec: RunSpec, exc: BaseException) -> dict:
    """The ``failed`` record the client writes for a run whose worker died (:func:`records.died_record`)."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        why = f"worker died while running it ({type(exc).__name__}: {exc})"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return died_record(spec, f"{why}; run the same command again to retry", device="dask worker (died)")


def check_workers(client, log: Callable[[str], None]) -> None:
    """Every worker present must import this project (else a task cannot even be unpickled there and the
    client would wait for ever); a worker on another commit is reported."""
    probe = "(lambda r: (r.SCHEMA_VERSION, r.git_commit()))(__import__('benchmarks.records').records)"
    answers = client.run(eval, probe, on_error="return")
    broken = {w: a for w, a in answers.items() if isinstance(a, BaseException)}
    if broken:
        detail = "; ".join(f"{w}: {type(a).__name__}: {a}" for w, a in sorted(broken.items()))
        raise DaskError(f"{len(broken)} of {len(answers)} dask worker(s) cannot import sgmcmc-bench ({detail}); "
                        f"install it on every worker (`pip install -e .` in the same checkout, at the same path)")
    mine = git_commit()
    other = sorted({a[1] for a in answers.values() if a[1] != mine}, key=str)
    if other:
        log(f"dask: warning: worker(s) run commit(s) {', '.join(map(str, other))}, this client {mine}; "
            f"their records will say so")


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(path)) if path else path


def execute_dask(todo: list[RunSpec], opts: RunOptions, *, jobs: int, scheduler: str | None,
                 on_record: Callable[[dict], None], log: Callable[[str], None]) -> None:
    """Run every spec of ``todo`` on a dask cluster; ``on_record`` gets each record as its run ends.

    ``scheduler=None`` starts a LocalCluster of ``jobs`` single-threaded worker processes on
    127.0.0.1 and closes it afterwards; otherwise connect to that scheduler address (``jobs`` is
    then ignored: the cluster's workers decide). Only :class:`KeyboardInterrupt` escapes mid-grid.
    """
    distributed = require_dask()
    import dask

    opts = dataclasses.replace(opts, show_progress=False, results_dir=_absolute(opts.results_dir),
                               data_dir=_absolute(opts.data_dir))
    cluster = client = None
    futures: dict = {}
    stop = threading.Event()
    try:
        if scheduler is None:
            opts = dataclasses.replace(opts, threads=opts.threads or cpu_threads_per_worker(jobs))
            with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES}):
                # everything on loopback: the scheduler, the workers, and the scheduler's HTTP routes
                # (which listen on 8787 even without a dashboard unless given an address)
                cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address=None,
                                                   scheduler_kwargs={"dashboard": False,
                                                                     "dashboard_address": "127.0.0.1:0"},
                                                   silence_logs=logging.ERROR)
            client = distributed.Client(cluster, set_as_default=False)
            register = getattr(client, "register_plugin", None) or client.register_worker_plugin
            register(IgnoreSigint())
            log(f"dask: LocalCluster at {cluster.scheduler_address}, {jobs} worker(s) x 1 thread, "
                f"{opts.threads} torch thread(s) per run")
        else:
            try:
                from distributed.comm import parse_address, parse_host_port

                scheme, location = parse_address(scheduler)
                if scheme not in SCHEDULER_SCHEMES:
                    raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEDULER_SCHEMES)}")
                _host, port = parse_host_port(location)
                if not 0 < int(port) < 65536:
                    raise ValueError(f"port {port} is out of range 1-65535")
            except ValueError as exc:
                raise DaskError(f"--scheduler {scheduler!r} is not a scheduler address ({exc}); "
                                f"expected e.g. tcp://host:8786") from None
            try:
                client = distributed.Client(scheduler, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise DaskError(f"--scheduler {scheduler}: cannot reach the dask scheduler ({exc}); "
                                f"start one with `dask scheduler` and workers with "
                                f"`dask worker {scheduler} --nworkers N --nthreads 1`") from None
            workers = client.nthreads()
            if workers:
                check_workers(client, log)
            log(f"dask: scheduler {scheduler}, {len(workers)} worker(s) on {len(workers_by_host(workers))} host(s)"
                + ("" if workers else "; waiting for workers to join")
                + (f"; --jobs {jobs} is ignored, the cluster's workers decide" if jobs > 1 else ""))
            if any(n > 1 for n in workers.values()):
                log("dask: some workers have several threads; each worker process still runs one run at a "
                    "time (torch's RNG and thread count are per process): use `dask worker --nthreads 1 "
                    "--nworkers N`")

        if scheduler is not None:  # a cluster we do not own may lose every worker: do not wait in silence
            threading.Thread(target=_watch_workers, args=(client, futures, stop, scheduler, log),
                             name="sgmcmc-dask-watch", daemon=True).start()
        hosts: dict[str, int] = {}

        def capacity() -> int:
            """Runs to keep in flight: one per worker process (at least one, to wait for workers)."""
            nonlocal hosts
            workers = client.nthreads()
            hosts = workers_by_host(workers)
            return max(1, len(workers))

        queue = list(reversed(todo))

        def submit_next() -> object:
            spec = queue.pop()
            fut = client.submit(run_on_worker, spec, opts, None if scheduler is None else hosts,
                                key=f"run-{spec.key}", pure=False)
            futures[fut] = spec
            return fut

        limit = capacity()
        done = distributed.as_completed([submit_next() for _ in range(min(limit, len(queue)))], loop=client.loop)
        for fut in done:
            spec = futures.pop(fut)
            try:
                record = fut.result()
            except Exception as exc:  # the worker died (KilledWorker) or could not run the task at all
                record = dask_died_record(spec, exc)
                write_record(opts.results_dir, record)
            fut.release()
            on_record(record)
            if queue:
                limit = capacity()
                while queue and len(futures) < limit:
                    done.add(submit_next())
    except KeyboardInterrupt:
        if client is not None and futures:
            try:
                client.cancel(list(futures), force=True)
            except Exception:  # the interrupt matters more than a failed cancel
                pass
        raise
    finally:
        stop.set()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _watch_workers(client, futures: dict, stop: threading.Event, scheduler: str, log: Callable[[str], None]) -> None:
    """While runs wait on a cluster with no worker connected, log it every ``STALL_LOG_S`` seconds."""
    idle_since = None
    step = min(5.0, STALL_LOG_S)
    last = 0.0
    while not stop.wait(step):
        try:
            workers = client.nthreads()
        except Exception:  # the client is closing
            return
        if workers or not futures:
            idle_since, last = None, 0.0
            continue
        now = time.monotonic()
        idle_since = idle_since or now
        if now - idle_since >= STALL_LOG_S and now - last >= STALL_LOG_S:
            last = now
            log(f"dask: no worker connected to {scheduler} for {now - idle_since:.0f} s; {len(futures)} run(s) "
                f"waiting (start workers with `dask worker {scheduler} --nthreads 1 --nworkers N`, or Ctrl-C)")
