"""The conformance suite's core: check results and errors, sampler resolution, the registry of
checks, :func:`run_check` and :func:`check_sampler`."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..base import HyperparameterError, Sampler

__all__ = ["CheckFailed", "CheckNotApplicable", "CheckResult", "ConformanceError", "resolve_sampler", "CHECKS",
           "list_checks", "run_check", "check_sampler"]


# ====================================================================== errors and results
class CheckFailed(AssertionError):
    """One check failed; ``numbers`` holds what it measured."""

    def __init__(self, message: str, numbers: dict | None = None):
        super().__init__(message)
        self.numbers = dict(numbers or {})


class CheckNotApplicable(Exception):
    """The check does not apply to this sampler (e.g. ``step_bias`` for a sampler without noise)."""


@dataclass
class CheckResult:
    """The outcome of one check on one sampler: ``status`` is 'passed', 'failed' or 'skipped'."""

    check: str
    sampler: str
    status: str
    message: str = ""
    numbers: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def raise_for_failure(self) -> "CheckResult":
        if self.status == "failed":
            raise CheckFailed(f"{self.sampler}: check {self.check!r} failed: {self.message}", self.numbers)
        return self

    def __str__(self) -> str:
        spec = _SPECS.get(self.check)
        render = spec.render if spec is not None and spec.render is not None else _render_numbers
        nums = ", ".join(render(self.numbers))
        text = f"[{self.status.upper()}] {self.check} ({self.seconds:.2f} s)"
        if self.message:
            text += f": {self.message}"
        if nums:
            text += f" | {nums}"
        return text


class ConformanceError(AssertionError):
    """Raised by :func:`check_sampler` when any check fails; ``results`` holds every result."""

    def __init__(self, sampler: str, results: list[CheckResult]):
        self.results = results
        self.failed = [r for r in results if r.status == "failed"]
        names = ", ".join(r.check for r in self.failed)
        lines = [f"{sampler} failed {len(self.failed)} of {len(results)} conformance checks: {names}"]
        lines += [f"  {r}" for r in self.failed]
        super().__init__("\n".join(lines))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def _fmt_item(key: str, value: Any) -> str:
    """``key=value``; ``key: value`` when the key is itself a setting or a call (``friction=1``,
    ``CosineAnnealingWarmRestarts(T_0=4)``) or the value a dict, so that no line reads ``a=b=c``."""
    sep = ": " if ("=" in key or "(" in key or isinstance(value, dict)) else "="
    return f"{key}{sep}{_fmt(value)}"


def _render_numbers(numbers: dict) -> list[str]:
    return [_fmt_item(k, v) for k, v in numbers.items()]


# ====================================================================== sampler resolution
def resolve_sampler(sampler: Any) -> type:
    """A Sampler subclass from a class, a registered name, an entry point or 'module:Class'."""
    if isinstance(sampler, type):
        if not issubclass(sampler, Sampler):
            raise TypeError(f"{sampler!r} is not a subclass of sgmcmc.Sampler")
        return sampler
    if isinstance(sampler, str):
        from ..registry import get

        return get(sampler)
    raise TypeError(f"expected a Sampler subclass or a name, got {sampler!r}")


def _label(cls: type) -> str:
    """The registered name when it is this very class (a subclass inherits ``name``), else module:Class."""
    from ..registry import _REGISTRY

    if cls.name and _REGISTRY.get(cls.name) is cls:
        return cls.name
    return f"{cls.__module__}:{cls.__qualname__}"

# ====================================================================== the registry of checks
@dataclass(frozen=True)
class _Check:
    name: str
    func: Callable[..., dict]
    statistical: bool
    applies: Callable[[type], bool]
    doc: str
    #: the numbers of a result as text, one item each (default :func:`_render_numbers`)
    render: Callable[[dict], list[str]] | None = None


CHECKS: dict[str, Callable[..., dict]] = {}
_SPECS: dict[str, _Check] = {}


def _check(name: str, *, statistical: bool = False, applies: Callable[[type], bool] = lambda cls: True,
           render: Callable[[dict], list[str]] | None = None):
    def deco(func):
        doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
        _SPECS[name] = _Check(name, func, statistical, applies, doc, render)
        CHECKS[name] = func
        return func

    return deco


def list_checks(sampler: Any = None, *, statistical: bool | None = None) -> list[str]:
    """Names of the checks (in run order) that apply to ``sampler`` (all when None).

    ``statistical=True`` lists only the chain-running checks, ``False`` only the fast exact ones.
    """
    cls = None if sampler is None else resolve_sampler(sampler)
    out = []
    for name, spec in _SPECS.items():
        if cls is not None and not spec.applies(cls):
            continue
        if statistical is not None and spec.statistical != statistical:
            continue
        out.append(name)
    return out


def run_check(name: str, sampler: Any, *, lr: float | None = None, protocol: Protocol | None = None, **hyper) -> CheckResult:
    """Run one check; never raises for a failure (see :meth:`CheckResult.raise_for_failure`)."""
    if name not in _SPECS:
        raise KeyError(f"unknown check {name!r}; valid: {', '.join(_SPECS)}")
    cls = resolve_sampler(sampler)
    label = _label(cls)
    if not _SPECS[name].applies(cls):
        return CheckResult(name, label, "skipped", f"does not apply to {label}", {}, 0.0)
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):  # the checks seed the global generator; leave the caller's alone
            numbers = _SPECS[name].func(cls, lr=lr, protocol=protocol, **hyper)
    except CheckNotApplicable as exc:
        return CheckResult(name, label, "skipped", str(exc), {}, time.perf_counter() - t0)
    except CheckFailed as exc:
        return CheckResult(name, label, "failed", str(exc), exc.numbers, time.perf_counter() - t0)
    except Exception as exc:  # a crash is a failure of the check, reported with its cause
        where = traceback.extract_tb(exc.__traceback__)[-1]
        msg = f"raised {type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return CheckResult(name, label, "failed", msg, {}, time.perf_counter() - t0)
    numbers = dict(numbers or {})
    message = numbers.pop("_message", "")
    return CheckResult(name, label, "passed", message, numbers, time.perf_counter() - t0)


def check_sampler(
    sampler: Any,
    *,
    lr: float | None = None,
    checks: list[str] | None = None,
    protocol: Protocol | None = None,
    raise_on_failure: bool = True,
    **hyper,
) -> list[CheckResult]:
    """Run every applicable check (or those named in ``checks``) on ``sampler``.

    ``sampler``: a Sampler subclass, a registered name, an entry point or 'module:Class'.
    ``lr``: the step of the statistical checks (default :func:`default_lr`); ``hyper``: the
    sampler's own hyperparameters (e.g. ``alpha=0.9999``), passed to every construction.
    Collects every result and, if any failed and ``raise_on_failure``, raises
    :class:`ConformanceError` naming each failed check with its measured numbers.
    """
    cls = resolve_sampler(sampler)
    names = list_checks(cls) if checks is None else list(checks)
    results = [run_check(n, cls, lr=lr, protocol=protocol, **hyper) for n in names]
    if raise_on_failure and any(r.status == "failed" for r in results):
        raise ConformanceError(_label(cls), results)
    return results


# ====================================================================== hyperparameter values to try
def _first_valid(spec, value, candidates):
    """The first of ``candidates`` (rounded for an integer hyperparameter) that ``spec`` accepts and that
    differs from ``value``; None if none does."""
    for c in candidates:
        if c is None:
            continue
        c = int(round(c)) if spec.integer else float(c)
        try:
            spec.check("", "", c)
        except HyperparameterError:
            continue
        if c != value:
            return c
    return None


def _other_value(spec, value):
    """A second valid value of a numeric hyperparameter (or None when there is none to try)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    candidates = [value * 2 if value > 0 else value + 1.0, value * 0.5 if value > 0 else value - 1.0]
    if spec.high is not None:
        candidates.append(0.5 * (value + spec.high))
    return _first_valid(spec, value, candidates)
