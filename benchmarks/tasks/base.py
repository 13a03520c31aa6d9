"""What every task shares: the Task interface, profiles, run context and result.

A task builds a (model or potential, data, evaluation) for a seed and runs one sampler on it under
a fixed protocol (gradient-evaluation budget, burn-in, thinning); every sampler on a task gets the
same protocol, only its hyperparameters differ. The runner calls :meth:`Task.run` and turns the
:class:`RunResult` (or a :class:`Diverged`) into a record.

Every family's :meth:`Task.run` sets its run up (target, sampler, schedule, which steps are kept)
and hands the steps to one :class:`SamplingLoop` subclass of its own, which supplies the target's
gradient and what becomes of a kept sample; the loop does the rest (see its docstring).
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from sgmcmc import Diverged  # one definition, raised by the loop and re-exported for the tasks

from ..columns import Metric  # noqa: F401  (one definition, shared with the report; re-exported for the tasks)

from ..profiles import PROFILES  # noqa: F401 (re-exported: the tasks' profiles)


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
    #: the tuning protocol (:mod:`benchmarks.tuning`): the task keys that make a run score the task's
    #: *validation* target (held-out data, or an independent replicate of a toy), never the scored one
    tuning_keys: dict[str, Any] = {}
    #: the metric a tuning trial is scored by (lower is better), computed on the validation target
    tuning_metric: str = "nll"
    #: the largest step the protocol tries first, the same for every sampler on the task (a rung of
    #: the 1-3-10 ladder well above any stable step); None: the task cannot be tuned
    tune_lr_max: float | None = None

    def tuning_eligible(self, metrics: dict[str, Any]) -> bool:
        """May a finished (ok) tuning trial be chosen? (the toys: only a converged one, R-hat < 1.1)"""
        return True

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



@dataclass
class LoopResult:
    """What :meth:`SamplingLoop.run` measured: the steps run, the samples kept, the gradient
    evaluations (steps x ``grads_per_step``), and the wall time of the loop split in two:
    ``sampling_time_s`` (the loop less the evaluation) and ``eval_time_s`` (the spans a hook timed
    with :attr:`SamplingLoop.eval_watch`)."""

    steps: int
    kept: int
    grad_evals: int
    sampling_time_s: float
    eval_time_s: float


class SamplingLoop:
    """The one sampling loop every task family runs: a family subclasses it and fills in the hooks.

    The loop, with ``keep`` the task's plan (one bool per step, ``len(keep)`` steps)::

        for t in range(len(keep)):
            batch = next(batches) if batches is not None else None
            self.gradient(t, batch)    # hook: p.grad <- grad L_hat(theta) for every sampled parameter
            self.before_step(t)        # hook: per-step sampler settings (default: none)
            sampler.step()             # a FloatingPointError (sgmcmc.NonFiniteGradientError) -> Diverged(t)
            schedule.step()            # if a torch.optim.lr_scheduler was given
            self.after_step(t)         # hook: per-step traces (default: none)
            if keep[t]:
                self.consume(t)        # hook: a kept sample; self.kept = samples consumed before it
                self.kept += 1
            (progress bar: advanced by progress_every every progress_every steps)

    The hooks, in the order the loop calls them:

    - :meth:`gradient` (required): write the gradient of the family's target at this step into the
      parameters' ``.grad`` (the sampler contract: grad of L = U / N). ``batch`` is the step's item
      of ``batches`` (e.g. an ``(x, y)`` minibatch), or None without ``batches`` (a family that draws
      its own minibatch indices does so here, from its own generator).
    - :meth:`before_step`, :meth:`after_step` (optional): e.g. the cyclical protocol's temperature
      switch; a traced weight.
    - :meth:`consume` (required): the parameters after step t are a kept sample: fold it into the
      family's running estimate (running moments, a trace, a running posterior predictive). Costly
      evaluation the timing should leave out goes in ``with self.eval_watch:``; a hook raises
      :class:`Diverged` itself for a family-specific failure (a collapsed network).

    After :meth:`run` the family turns its estimate into metrics (its ``evaluate``) and checks it
    (non-finite draws -> ``Diverged(len(keep), ...)``). The loop runs under ``torch.no_grad()``
    unless :attr:`autograd` is set (a family whose gradient hook calls ``backward``). The RNG order
    is the family's: the loop draws nothing itself (sampler noise comes from the sampler, minibatch
    order from ``batches`` or the gradient hook).

    A new family (say a reference-posterior task scored against a shipped HMC reference) writes a
    subclass with ``gradient`` (its minibatch loss / analytic gradient) and ``consume`` (its
    running moments), builds the sampler with :func:`build_sampler` and its keep plan (e.g.
    :func:`keep_every`), calls ``run()`` and puts ``LoopResult.grad_evals`` and
    ``LoopResult.sampling_time_s`` into its :class:`RunResult`.
    """

    #: run the loop with autograd on (the gradient hook calls backward); off for analytic gradients
    autograd: bool = False

    def __init__(self, sampler: Any, keep: Sequence[bool], ctx: RunContext, desc: str, *,
                 schedule: Any = None, batches: Iterable | None = None, grads_per_step: int = 1,
                 progress_every: int | None = None) -> None:
        self.sampler, self.keep, self.ctx, self.desc = sampler, keep, ctx, desc
        self.schedule, self.batches, self.grads_per_step = schedule, batches, grads_per_step
        self.progress_every = progress_every or max(len(keep) // 100, 1)
        #: samples consumed so far (the index of the next one, in :meth:`consume`)
        self.kept = 0
        #: times the evaluation inside hooks (``with self.eval_watch:``), left out of sampling_time_s
        self.eval_watch = Stopwatch()
        #: times the whole loop
        self.watch = Stopwatch()

    # -- the hooks --------------------------------------------------------------------------
    def gradient(self, t: int, batch: Any) -> None:
        """Fill ``p.grad`` of every sampled parameter with grad L_hat at step t (required)."""
        raise NotImplementedError

    def before_step(self, t: int) -> None:
        """Called after :meth:`gradient`, before ``sampler.step()`` (optional)."""

    def after_step(self, t: int) -> None:
        """Called after ``sampler.step()`` and the schedule's step (optional)."""

    def consume(self, t: int) -> None:
        """The parameters after step t are the kept sample number ``self.kept`` (required)."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> LoopResult:
        steps, keep, every = len(self.keep), self.keep, self.progress_every
        sampler, schedule = self.sampler, self.schedule
        batches = iter(self.batches) if self.batches is not None else None
        bar = self.ctx.progress(steps, self.desc)
        with torch.set_grad_enabled(self.autograd), self.watch:
            for t in range(steps):
                self.gradient(t, next(batches) if batches is not None else None)
                self.before_step(t)
                try:
                    sampler.step()
                except FloatingPointError as exc:  # sgmcmc.NonFiniteGradientError
                    raise Diverged(t, str(exc)) from exc
                if schedule is not None:
                    schedule.step()
                self.after_step(t)
                if keep[t]:
                    self.consume(t)
                    self.kept += 1
                if (t + 1) % every == 0:
                    bar.update(every)
        bar.close()
        return LoopResult(steps=steps, kept=self.kept, grad_evals=steps * self.grads_per_step,
                          sampling_time_s=self.watch.total - self.eval_watch.total,
                          eval_time_s=self.eval_watch.total)


def ladder_rung(x: float, up: bool = True) -> float:
    """The rung of the 1-3-10 ladder (..., 0.1, 0.3, 1, 3, 10, ...: half-decades) at or above ``x``
    (``up``), or at or below it."""
    import math

    exponent = math.floor(math.log10(x))
    rungs = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 3)]
    rungs = [float(f"{r:.1e}") for r in rungs]
    if up:
        return min(r for r in rungs if r >= x * (1 - 1e-9))
    return max(r for r in rungs if r <= x * (1 + 1e-9))


def keep_every(steps: int, burn_in: int, thin: int) -> list[bool]:
    """The plain keep plan: after ``burn_in`` steps, the state after every ``thin``-th step
    (steps t = burn_in + thin - 1, burn_in + 2 thin - 1, ... counted from 0)."""
    return [t >= burn_in and (t - burn_in + 1) % thin == 0 for t in range(steps)]


def sampler_label(sampler_cls: type) -> str:
    """The sampler's name for a progress bar."""
    return sampler_cls.name or sampler_cls.__name__
