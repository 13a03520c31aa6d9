"""The cyclical protocol (Zhang et al. 2020, "Cyclical stochastic gradient MCMC for Bayesian deep
learning"), shared by the task families that run it: the MNIST networks (:mod:`.mnist`) and the
reference posteriors (:mod:`.reference`).

A run's budget of ``total`` steps is cut into ``cycles`` equal cycles. Within a cycle the step size
follows a cosine from ``lr`` down to 0 (:func:`cosine_schedule`: ``torch.optim.lr_scheduler.
CosineAnnealingWarmRestarts``, stepped every iteration). The first ``explore`` fraction of a cycle is
exploration: the sampler runs at temperature 0, without noise (:class:`NoiseSwitch`; sgld is then
SGD, sghmc momentum SGD). The rest is sampling, at the row's own temperature, and a sample is kept
every ``thin`` steps of it, the last at the cycle's end (:func:`keep_plan`). There is no separate
burn-in: every cycle's sampling stage counts.

Two task-wide keys select it per row: ``cycles`` (an integer >= 1 dividing the run's steps) and
``explore`` (in [0, 1); :data:`EXPLORE` when a row sets ``cycles`` alone). :func:`check_keys` checks
their values; each task checks what depends on its own protocol (that ``cycles`` divides every
profile's steps, the keys it cannot combine with).
"""

from __future__ import annotations

from typing import Any

import torch

#: the exploration fraction of each cycle when a row sets ``cycles`` without ``explore`` (the paper's
#: CIFAR setting)
EXPLORE = 0.8


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def check_keys(opts: dict[str, Any]) -> None:
    """Raise ValueError naming a bad ``explore`` or ``cycles`` of ``opts`` (None: unset) and the valid range."""
    explore = opts.get("explore")
    if explore is not None and (not _is_number(explore) or not 0.0 <= explore < 1.0):
        raise ValueError(f"explore={explore!r} is out of range; valid: [0, 1) (the cyclical protocol's "
                         "noiseless fraction of each cycle)")
    cycles = opts.get("cycles")
    if cycles is not None and (not _is_number(cycles) or not float(cycles).is_integer() or cycles < 1):
        raise ValueError(f"cycles={cycles!r} is out of range; valid: an integer >= 1 (the cyclical protocol's "
                         "number of cycles, dividing the run's steps)")


def check_divides(cycles: Any, steps: dict[str, int], task: str) -> None:
    """Raise ValueError unless ``cycles`` (None: unset) divides the step count of every profile of
    ``steps`` (profile -> steps), naming the first profile it does not."""
    if cycles is None:
        return
    for profile, total in steps.items():
        if total % int(cycles):
            raise ValueError(f"cycles={cycles!r} does not divide the {total} steps of {task}'s {profile} "
                             f"profile; valid: a divisor of {total}")


def plan(cycles: int, explore: float, total: int) -> tuple[int, int]:
    """(steps per cycle, exploration steps per cycle) of ``cycles`` cycles over ``total`` steps;
    (0, 0) for ``cycles == 0`` (a constant step)."""
    if cycles == 0:
        return 0, 0
    if isinstance(cycles, bool) or not isinstance(cycles, int) or not 1 <= cycles <= total:
        raise ValueError(f"cycles={cycles!r} is out of range; valid: an integer in [1, {total}] (0: no cycles)")
    if not 0.0 <= explore < 1.0:
        raise ValueError(f"explore={explore!r} is out of range; valid: [0, 1)")
    cycle_len = total // cycles
    if cycle_len * cycles != total:
        raise ValueError(f"cycles={cycles} does not divide the run's {total} steps; valid: a divisor of {total}")
    return cycle_len, round(explore * cycle_len)


def keep_plan(total: int, cycle_len: int, explore_steps: int, thin: int) -> list[bool]:
    """Keep the state after every ``thin``-th step of each cycle's sampling stage, counted back from
    the cycle's last step (always kept)."""
    return [t % cycle_len >= explore_steps and (cycle_len - 1 - t % cycle_len) % thin == 0 for t in range(total)]


def cosine_schedule(sampler: torch.optim.Optimizer, cycle_len: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The step size of step t: ``lr (1 + cos(pi (t mod cycle_len) / cycle_len)) / 2``, stepped every iteration."""
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(sampler, T_0=cycle_len)


class NoiseSwitch:
    """Called before each step t (a :class:`.base.SamplingLoop`'s ``before_step``): sets every
    parameter group's temperature to 0 at the start of a cycle's exploration stage and back to the
    group's own (the row's) at the start of its sampling stage."""

    def __init__(self, sampler: torch.optim.Optimizer, cycle_len: int, explore_steps: int) -> None:
        self.sampler, self.cycle_len, self.explore_steps = sampler, cycle_len, explore_steps
        self.temperatures = [g["temperature"] for g in sampler.param_groups]

    def __call__(self, t: int) -> None:
        pos = t % self.cycle_len  # this step's place in its cycle
        if pos == 0 or pos == self.explore_steps:  # exploration (T = 0) starts / sampling starts
            for group, temp in zip(self.sampler.param_groups, self.temperatures):
                group["temperature"] = 0.0 if pos < self.explore_steps else temp
