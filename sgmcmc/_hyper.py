"""Hyperparameters: their declared ranges (:class:`Hyper`), the ones every sampler shares, and the
checks a sampler runs on its constructor's values, on every param group and, before each step, on a
group whose values changed since they were last checked."""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Hyper", "HyperparameterError", "COMMON_HYPERS", "TORCH_GROUP_KEYS"]


class HyperparameterError(ValueError):
    """A hyperparameter is missing, unknown or outside its valid range."""


@dataclass(frozen=True)
class Hyper:
    """The valid range of one hyperparameter: ``low``/``high`` bounds, open or closed."""

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    doc: str = ""

    def describe(self) -> str:
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        left = "(" if (self.low_open or self.low is None) else "["
        right = ")" if (self.high_open or self.high is None) else "]"
        kind = "an integer in " if self.integer else ""
        return f"{kind}{left}{lo}, {hi}{right}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise HyperparameterError(f"{owner}: {name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HyperparameterError(
                f"{owner}: {name}={value!r} is not a number; valid: {self.describe()}"
            )
        # NaN, and an infinity on an unbounded side (the range is open there), are out of range
        bad = math.isnan(value) or math.isinf(value)
        if not bad and self.low is not None:
            bad = value <= self.low if self.low_open else value < self.low
        if not bad and self.high is not None:
            bad = value >= self.high if self.high_open else value > self.high
        if bad:
            raise HyperparameterError(f"{owner}: {name}={value!r} is out of range; valid: {self.describe()}")
        if self.integer:
            if int(value) != value:
                raise HyperparameterError(f"{owner}: {name}={value!r} must be {self.describe()}")
            return int(value)
        return float(value) if not isinstance(value, (int, float)) else value


#: Hyperparameters shared by every sampler.
COMMON_HYPERS: dict[str, Hyper] = {
    "lr": Hyper(None, low=0.0, low_open=True, doc="step size h on L = U / N"),
    "num_data": Hyper(None, low=1, integer=True, doc="N, the number of data the potential sums over"),
    "temperature": Hyper(1.0, low=0.0, doc="T: the sampler targets exp(-U / T)"),
}

#: param-group keys that torch.optim itself keeps beside an optimiser's hyperparameters (named
#: parameters, and what its learning-rate schedulers and SWA write into a group); a sampler accepts
#: them in a group it is given and ignores them
TORCH_GROUP_KEYS = frozenset({"param_names", "initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum",
                              "swa_lr"})

#: keyword arguments a sampler once took and no longer does: name -> what to do instead
REMOVED_KWARGS = {
    "overlap_noise": "it was removed (it drew the same noise on another thread and was slower than the "
                     "default block draws); drop the argument, the chain is the same",
}


def refuse_kwargs(owner: str, hypers: dict[str, Hyper], given: dict[str, Any]) -> None:
    """Constructor keywords that are not hyperparameters of this sampler: a removed one is named as
    removed (TypeError), any other as unknown (HyperparameterError) with the valid names."""
    removed = sorted(k for k in given if k in REMOVED_KWARGS and k not in hypers)
    if removed:
        raise TypeError(f"{owner}: {removed[0]}= is no longer accepted: {REMOVED_KWARGS[removed[0]]}")
    unknown = sorted(set(given) - set(hypers))
    if unknown:
        valid = sorted(set(COMMON_HYPERS) | set(hypers))
        text = ", ".join(f"{k}={given[k]!r}" for k in unknown)
        raise HyperparameterError(f"{owner}: unknown hyperparameter(s) {text}; valid: {', '.join(valid)}")


def validate(owner: str, hypers: dict[str, Hyper], group: dict) -> None:
    """Check (and normalise in place) every hyperparameter of ``group`` against ``hypers``."""
    for key, spec in hypers.items():
        if key not in group or group[key] is None:
            raise HyperparameterError(f"{owner}: {key} is required; valid: {spec.describe()}")
        group[key] = spec.check(owner, key, group[key])


def check_keys(owner: str, hypers: dict[str, Hyper], group: dict, index: int) -> None:
    """Refuse a key that is neither ``params``, one of ``hypers`` nor one of torch.optim's own
    (:data:`TORCH_GROUP_KEYS`), naming it and the valid ones."""
    unknown = sorted(k for k in group if k != "params" and k not in hypers and k not in TORCH_GROUP_KEYS)
    if unknown:
        given = ", ".join(f"{k!r}" for k in unknown)
        raise HyperparameterError(
            f"{owner}: unknown key(s) {given} in param group {index}; valid: params, "
            f"{', '.join(sorted(hypers))} (and torch.optim's own {', '.join(sorted(TORCH_GROUP_KEYS))})"
        )


def check_params(owner: str, group: dict, index: int) -> None:
    """Refuse a parameter of ``group`` (param group ``index``) that is not a real floating-point tensor."""
    for i, p in enumerate(group["params"]):
        if not p.is_floating_point():
            kind = "complex" if p.is_complex() else "non-floating"
            raise HyperparameterError(
                f"{owner}: parameter {i} of param group {index} is {kind} ({p.dtype}); valid: real "
                f"floating-point tensors (float16, bfloat16, float32, float64)"
                + ("; sample the real and imaginary parts as a real tensor (torch.view_as_real)"
                   if p.is_complex() else "")
            )


class Rechecker:
    """Checks again, before any parameter moves, the hyperparameters of a stepping group whose values
    (or keys) changed since they were last checked: a scheduler's new ``lr``, or a value a user wrote
    into ``param_groups`` (a negative ``lr``, ``num_data = 0``, a misspelt or a deleted key) raises
    HyperparameterError naming it, and the chain is left as it was. An unchanged group costs one
    ``itemgetter`` call and a tuple comparison."""

    __slots__ = ("seen",)

    def __init__(self):
        # group index -> (the group, a getter of its hyperparameters, their values as last checked, its number of keys)
        self.seen: dict[int, tuple] = {}

    def clear(self) -> None:
        self.seen.clear()

    def __call__(self, sampler, work: list) -> None:
        seen = self.seen
        for gi, group, _params, _grads, _offsets in work:
            last = seen.get(gi)
            if last is not None and last[0] is group and len(group) == last[3]:
                try:
                    if last[1](group) == last[2]:
                        continue
                except KeyError:  # a hyperparameter deleted from the group: the check below names it
                    pass
            sampler._check_keys(group, gi)
            sampler._validate(group)
            getter = operator.itemgetter(*sampler.all_hypers())
            seen[gi] = (group, getter, getter(group), len(group))
