"""Run one spec and write its record (:func:`run_one`); what every executor shares.

:func:`run_one` is what a worker runs, whichever executor hands it the spec: it seeds everything,
asks the task to run the sampler, and writes the record (``ok``, ``diverged`` or ``failed``) with
its provenance. Only a :class:`KeyboardInterrupt` escapes.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch

import sgmcmc

from ..records import (RECORD_STATUSES, SCHEMA_VERSION, RunSpec, base_provenance, sampler_provenance,
                       write_record)
from ..tasks import get_task
from ..tasks.base import Diverged, RunContext


@dataclass
class RunOptions:
    """Options of the whole invocation that every run shares (not part of the run's identity)."""

    results_dir: str = "results"
    device: str = "cpu"
    data_dir: str | None = None
    offline: bool | None = None
    show_progress: bool = False
    threads: int | None = None


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' (an error without a GPU) or 'auto' (cuda when available, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N, auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu or --device auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                         f"valid: cuda:0 ... cuda:{torch.cuda.device_count() - 1}, cuda, auto, cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_one(spec: RunSpec, opts: RunOptions) -> dict:
    """Run one configuration and write its record; returns the record. Only an interrupt escapes."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    started = time.time()
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "key": spec.key, "config": spec.config(), "metrics": {},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    if spec.tuning:
        record["tuning"] = spec.tuning
    ctx = RunContext(seed=spec.seed, profile=spec.profile, device=device, data_dir=opts.data_dir,
                     offline=opts.offline, show_progress=opts.show_progress)
    t0 = time.perf_counter()
    try:
        task = get_task(spec.task)
        sampler_cls = sgmcmc.get(spec.sampler)
        seed_everything(spec.seed)
        result = task.run(sampler_cls, spec.hyper_dict, ctx)
        record.update(status="ok", metrics=result.metrics, grad_evals=result.grad_evals,
                      sampling_time_s=result.sampling_time_s, artifacts=result.artifacts)
    except Diverged as exc:
        record.update(status="diverged", divergence={"step": exc.step, "reason": exc.reason})
    except Exception as exc:  # recorded, the grid goes on; KeyboardInterrupt is not caught
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
    record["wall_time_s"] = time.perf_counter() - t0
    openmp_wait = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    record["provenance"] = {**base_provenance(), "device": str(device),
                            "torch_threads": torch.get_num_threads(),
                            "openmp_wait": openmp_wait, "datasets": ctx.datasets,
                            "sampler": sampler_provenance(spec)}
    if ctx.threads is not None:  # the task ran on its own thread count (the toy tasks: 1)
        record["provenance"]["task_threads"] = ctx.threads
    write_record(opts.results_dir, record)
    return record


class DaskError(RuntimeError):
    """The dask executor cannot start: dask missing, or the scheduler cannot be reached."""


class DaskUnavailableError(DaskError, ImportError):
    """``dask.distributed`` is not installed."""


class TaskNotReady(RuntimeError):
    """Tasks of the grid cannot run here (their data is missing, ...): nothing was started.

    ``problems`` maps each task that cannot run to why (the message names every missing dataset and
    its fix); ``ready`` lists the grid's tasks that can run now."""

    def __init__(self, message: str, problems: dict[str, str] | None = None, ready: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or {}
        self.ready = ready or []


def check_ready(task_names: Iterable[str], opts: RunOptions) -> None:
    """Ask every task of the grid whether it can run, before any run starts; when any cannot, raise
    one :class:`TaskNotReady` naming all of them, each reason once (tasks sharing their data share
    it), and the tasks that can run now."""
    problems: dict[str, str] = {}
    ready: list[str] = []
    for name in sorted(task_names):
        ctx = RunContext(seed=0, device=resolve_device(opts.device), data_dir=opts.data_dir, offline=opts.offline)
        try:
            get_task(name).check_ready(ctx)
        except Exception as exc:
            problems[name] = str(exc) or type(exc).__name__
        else:
            ready.append(name)
    if problems:
        by_reason: dict[str, list[str]] = {}
        for name, why in problems.items():
            by_reason.setdefault(why, []).append(name)
        parts = [f"task{'s' if len(names) > 1 else ''} {', '.join(names)} cannot run: {why}"
                 for why, names in by_reason.items()]
        raise TaskNotReady("\n".join(parts), problems, ready)


@dataclass
class GridSummary:
    total: int = 0
    skipped: int = 0
    counts: dict = field(default_factory=lambda: {s: 0 for s in RECORD_STATUSES})
    wall_time_s: float = 0.0
    interrupted: bool = False
    failures: list = field(default_factory=list)

    def add(self, record: dict) -> None:
        self.counts[record["status"]] += 1
        if record["status"] == "failed":
            self.failures.append((record["config"], record.get("error", "")))

    @property
    def exit_status(self) -> int:
        """The command's exit status for this grid: 130 interrupted, 1 a run failed, else 0."""
        return 130 if self.interrupted else 1 if self.counts["failed"] else 0

    def line(self) -> str:
        parts = [f"{n} {s}" for s, n in self.counts.items() if n]
        return (f"{self.total} runs: {self.skipped} already recorded" + (", " if parts else "") + ", ".join(parts)
                + f" in {self.wall_time_s:.1f} s" + (" (interrupted)" if self.interrupted else ""))


def cpu_threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(jobs, 1))

