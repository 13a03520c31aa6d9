"""What every task shares: the Task interface, profiles, run context and result.

A task builds a (model or potential, data, evaluation) for a seed and runs one sampler on it under
a fixed protocol (gradient-evaluation budget, burn-in, thinning); every sampler on a task gets the
same protocol, only its hyperparameters differ. The runner calls :meth:`Task.run` and turns the
:class:`RunResult` (or a :class:`Diverged`) into a record.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from sgmcmc import Diverged  # noqa: F401  (one definition, re-exported for the tasks)

PROFILES = ("quick", "default", "full")


@dataclass
class RunContext:
    """Everything about a run that is not the sampler: seed, profile, device, data, progress."""

    seed: int
    profile: str = "default"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_dir: str | None = None
    offline: bool | None = None
    show_progress: bool = False
    #: filled by the task: dataset provenance (name -> digest/source) for the record
    datasets: dict = field(default_factory=dict)
    #: set by a task that runs on its own torch thread count (the toy tasks: 1), for the record
    threads: int | None = None

    def progress(self, total: int, desc: str):
        """A per-run progress bar (tqdm), quiet unless ``show_progress`` and stderr is a TTY."""
        from tqdm.auto import tqdm

        return tqdm(
            total=total, desc=desc, leave=False, position=1, unit="step", mininterval=0.5,
            disable=not (self.show_progress and sys.stderr.isatty()),
        )


@dataclass
class RunResult:
    """What a finished run measured."""

    metrics: dict[str, float]
    grad_evals: int
    sampling_time_s: float
    #: compact arrays for the report's figures (lists, not tensors), kept in the record
    artifacts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """How a leaderboard column reads: record key, header, and whether lower or higher is better."""

    key: str
    label: str
    better: str = "min"  # "min" | "max" | "none"
    fmt: str = ".4g"


class Task(ABC):
    """One task: a name, the suite it belongs to, the columns it shows, and :meth:`run`."""

    name: str = ""
    suite: str = ""
    description: str = ""
    #: the columns of this task's leaderboard table, in order; the first is the headline
    metrics: tuple[Metric, ...] = ()
    #: metric keys shown in the leaderboard's summary table (default: the headline, metrics[0])
    summary_keys: tuple[str, ...] = ()
    #: the three metrics a step-size sweep figure plots against lr (tasks with a ``sweep`` config)
    sweep_keys: tuple[str, ...] = ("kl", "var_error", "ess_per_1k_grads")
    #: profiles in which this task is part of its suite
    profiles: tuple[str, ...] = PROFILES
    #: False for a study suite's task: ``run all`` (the published leaderboard) leaves it out, and
    #: ``run <its suite>`` runs it
    in_all: bool = True
    #: rough cost of one run relative to a toy run; with --jobs the costliest runs start first, so the
    #: grid does not end on one long run beside idle workers (an order, never a result)
    relative_cost: float = 1.0
    #: task-wide keys a config row (or ``--hyper``) may set beside the sampler's own, with defaults
    task_keys: dict[str, Any] = {}

    @abstractmethod
    def protocol(self, profile: str) -> dict[str, Any]:
        """The fixed budget of this task under ``profile`` (the same for every sampler)."""

    @abstractmethod
    def run(self, sampler_cls: type, hyper: dict[str, Any], ctx: RunContext) -> RunResult:
        """Run ``sampler_cls(**hyper)`` under the protocol; raise :class:`Diverged` on NaN/Inf."""

    def check_task_keys(self, opts: dict[str, Any]) -> None:
        """Raise ValueError naming a bad value among the task-wide keys ``opts`` (a subset of
        :attr:`task_keys`), so a bad ``--hyper`` stops the grid before it starts."""

    def check_ready(self, ctx: RunContext) -> None:
        """Fail fast, before any run starts, if the task cannot run (e.g. its data is missing)."""

    @property
    def headline(self) -> Metric:
        return self.metrics[0]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    return profile


class Stopwatch:
    """Accumulates wall time of the sampling loop only (not set-up or evaluation)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0: float | None = None

    def __enter__(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.total += time.perf_counter() - self._t0


def build_sampler(sampler_cls: type, params, hyper: dict[str, Any], num_data: int) -> Any:
    """``sampler_cls(params, **hyper)`` with the task's ``num_data``; hyper holds lr and the rest
    (every one by keyword, as torch.optim's own optimisers take them)."""
    return sampler_cls(params, num_data=num_data, **hyper)

