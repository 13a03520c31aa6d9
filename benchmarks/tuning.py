"""One tuning protocol for every sampler, built-in or plug-in: ``python -m benchmarks tune``.

A sampler's place on the leaderboard depends on its step size as much as on its algorithm, so every
sampler gets the same search, with the same budget, scored on the same validation target:

1. **Probe** (one round, run in parallel). The task's ``tune_lr_max`` (a rung well above any stable
   step, the same for every sampler: for a toy 10 / lambda_max of grad^2 L, up to the 1-3-10
   ladder) and the four whole decades below it: five trials spanning four decades.
2. **Refine** (one round). The half-decade rungs on both sides of the best probe (..., 0.3, 1, 3:
   the 1-3-10 ladder).
3. **Extend.** While the best is at an end of what was tried, one rung beyond it. Stop once the best
   is bracketed (a worse, ineligible or diverged trial on both sides), or at :data:`MAX_TRIALS`.

A sampler whose steps are ten times smaller than another's is found as surely, within the same
budget: the probe spans four decades whatever the sampler.

Every trial is an ordinary run (:class:`~benchmarks.records.RunSpec`, variant ``tuning``) on seed
:data:`SEED` (never a published seed), in the task's default profile, with the task's
``tuning_keys``: the validation split for MNIST and the reference track, an independent replicate
of the target for a toy (so no step is chosen on the target it is scored on). A trial is scored by
the task's ``tuning_metric`` (lower is better: validation NLL; a toy's KL on the replicate) and may
be chosen only if it finished and the task's ``tuning_eligible`` accepts it (a toy: split R-hat
< 1.1). Hyperparameters other than lr stay at the sampler's defaults, or at the values
``configs/samplers.toml`` holds fixed for a built-in (friction 0.1, ...).

The trial records go to ``<results>/tuning/records`` (a rerun skips what is done); the choices to
``<results>/tuned.toml``, a config file that ``run`` lays over the published configs (each entry
says ``tuning = "ladder-v1: k trials, ..."``, which the leaderboard shows).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import sgmcmc

from . import lineup
from .records import DONE_STATUSES, RunSpec, atomic_write, load_records
from .tasks import get_task
from .tasks.base import ladder_rung

PROTOCOL = "ladder-v1"
#: the tuning trials' seed: never one of the published seeds (0, 1, 2, ...)
SEED = 100
#: decades the probe spans: the anchor and the four whole decades below it
PROBE_DECADES = 5
#: the most trials a (task, sampler) gets, the probe included: the same budget for every sampler
MAX_TRIALS = 9
#: the profile the trials run in
PROFILE = "default"


def rung_below(lr: float) -> float:
    return ladder_rung(lr * 0.999, up=False)


def rung_above(lr: float) -> float:
    return ladder_rung(lr * 1.001, up=True)


@dataclass
class Trial:
    lr: float
    status: str  # ok, diverged, failed, or "pending" (not run yet)
    score: float | None = None
    eligible: bool = False


@dataclass
class Search:
    """The protocol's state for one (task, sampler)."""

    task: str
    sampler: str
    fixed: dict[str, Any]
    anchor: float
    trials: dict[float, Trial] = field(default_factory=dict)
    refined: bool = False
    done: bool = False
    reason: str = ""

    # -- what has been learnt -----------------------------------------------------------------
    def ran(self) -> list[Trial]:
        return sorted((t for t in self.trials.values() if t.status != "pending"), key=lambda t: -t.lr)

    def best(self) -> Trial | None:
        eligible = [t for t in self.ran() if t.eligible and t.score is not None and math.isfinite(t.score)]
        return min(eligible, key=lambda t: (t.score, -t.lr)) if eligible else None

    def bracketed(self) -> bool:
        best = self.best()
        if best is None:
            return False
        lrs = [t.lr for t in self.ran()]
        return any(lr > best.lr for lr in lrs) and any(lr < best.lr for lr in lrs)

    def choice(self) -> dict[str, Any] | None:
        best = self.best()
        return None if best is None else {**self.fixed, "lr": best.lr}

    def note(self, metric: str, keys: dict) -> str:
        where = ", ".join(f"{k}={v}" for k, v in keys.items()) or "the task itself"
        best = self.best()
        edge = "" if best is None or self.bracketed() else ", at the edge of the budget"
        return f"{PROTOCOL}: {len(self.ran())} trials, validation {metric} ({where}){edge}"

    # -- what to run next ---------------------------------------------------------------------
    def next_rungs(self) -> list[float]:
        """The rungs of the next round (empty: the search is over, :attr:`reason` says why)."""
        left = MAX_TRIALS - len(self.ran())
        if self.done:
            return []
        if left <= 0:
            self.done, self.reason = True, "budget spent"
            return []
        if not self.trials:  # round 1: the probe, whole decades down from the anchor
            return [float(f"{self.anchor * 10.0**-k:.1e}") for k in range(min(PROBE_DECADES, left))]
        best = self.best()
        ran = [t.lr for t in self.ran()]
        if best is None:  # nothing eligible yet: on down, a decade at a time
            return [float(f"{min(ran) / 10:.1e}")]
        if not self.refined:  # round 2: the half-decades on both sides of the best decade
            self.refined = True
            rungs = [lr for lr in (rung_above(best.lr), rung_below(best.lr)) if lr not in self.trials]
            if rungs:
                return rungs[:left]
        if self.bracketed():
            self.done, self.reason = True, "bracketed"
            return []
        if best.lr == min(ran):
            return [rung_below(best.lr)]
        return [rung_above(best.lr)]


def trial_spec(task, sampler: str, lr: float, fixed: dict[str, Any]) -> RunSpec:
    hyper = {**fixed, **task.tuning_keys, "lr": lr}
    return RunSpec.make(task.name, sampler, hyper, SEED, PROFILE, "tuning",
                        tuning=f"{PROTOCOL} trial")


def fixed_for(sampler: str) -> dict[str, Any]:
    """What a search holds fixed besides lr: a built-in's values from configs/samplers.toml, else
    nothing (the sampler's own defaults)."""
    return lineup.fixed_hypers(sampler) if lineup.is_builtin(sampler) else {}


def check_tunable(task, sampler: str) -> None:
    """ValueError naming why ``sampler`` cannot be tuned on ``task`` (and what can be)."""
    if task.tune_lr_max is None:
        raise ValueError(f"task {task.name} has no tuning target (tune_lr_max); it cannot be tuned")
    cls = sgmcmc.get(sampler)
    if not getattr(cls, "uses_noise", True) and task.tuning_metric == "kl":
        raise ValueError(f"{sampler} adds no noise (uses_noise = False): its draws collapse to the mode, where "
                         f"{task.name}'s tuning score (KL of a Gaussian fit) is undefined; an optimiser baseline "
                         f"takes sgld's step (configs/samplers.toml: baseline)")


def score_of(task, record: dict) -> Trial:
    lr = record["config"]["hyper"]["lr"]
    if record["status"] != "ok":
        return Trial(lr, record["status"])
    value = record["metrics"].get(task.tuning_metric)
    score = float(value) if isinstance(value, (int, float)) else None
    eligible = score is not None and math.isfinite(score) and task.tuning_eligible(record["metrics"])
    return Trial(lr, "ok", score, eligible)


def tune(tasks: Iterable[str], samplers: Iterable[str], results_dir: str | Path, execute: Callable,
         log: Callable[[str], None] = lambda m: print(m, file=sys.stderr), plan_only: bool = False) -> list[Search]:
    """Run the protocol for every (task, sampler); ``execute(specs)`` runs a round's trials (and
    writes their records under ``<results_dir>/tuning``). Returns the searches, done."""
    trial_dir = Path(results_dir) / "tuning"
    searches = []
    for name in tasks:
        task = get_task(name)
        for sampler in samplers:
            check_tunable(task, sampler)
            searches.append(Search(name, sampler, fixed_for(sampler), float(task.tune_lr_max)))
    pending: dict[str, tuple[RunSpec, Search, float]] = {}  # the last round's trials, by key
    rnd = 0
    while True:
        # one read of the trial records a round: the last round's trials, then the recorded rungs
        known = {r["key"]: r for r in load_records(trial_dir)} if trial_dir.exists() else {}
        for key, (_spec, search, lr) in pending.items():
            rec = known.get(key)
            if rec is None or rec.get("status") not in DONE_STATUSES:
                search.trials.pop(lr, None)
                search.done = True
                search.reason = f"trial lr={lr:g} failed: {rec.get('error', 'no record') if rec else 'no record'}"
            else:
                search.trials[lr] = score_of(get_task(search.task), rec)
        pending = {}
        for search in searches:
            task = get_task(search.task)
            while not search.done:  # fold in the trials already recorded, then ask for new ones
                rungs = search.next_rungs()
                if not rungs:
                    break
                fresh = False
                for lr in rungs:
                    spec = trial_spec(task, search.sampler, lr, search.fixed)
                    rec = known.get(spec.key)
                    if rec is not None and rec.get("status") in DONE_STATUSES:
                        search.trials[lr] = score_of(task, rec)
                    else:
                        search.trials[lr] = Trial(lr, "pending")
                        pending[spec.key] = (spec, search, lr)
                        fresh = True
                if fresh:
                    break
        specs = [spec for spec, _search, _lr in pending.values()]
        if not specs:
            return searches
        rnd += 1
        if plan_only:
            log(f"round {rnd} would run {len(specs)} trial(s): " + ", ".join(f"{s.task}/{s.sampler} lr={s.hyper_dict['lr']:g}" for s in specs))
            for _spec, search, lr in pending.values():  # the plan stops at what the next round needs
                search.trials.pop(lr, None)
                search.done, search.reason = True, "planned"
            return searches
        log(f"tuning round {rnd}: {len(specs)} trial(s)")
        execute(specs)


# --------------------------------------------------------------------------- output
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(k: str) -> str:
    """A bare key when TOML allows one (ASCII letters, digits, - and _), else a quoted one."""
    import re

    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def write_tuned(path: str | Path, searches: list[Search], existing: dict[str, dict] | None = None) -> Path:
    """Write the choices (over ``existing`` entries of other (task, sampler)s) as a config file."""
    tables: dict[str, dict[str, dict]] = {t: {s: dict(e) for s, e in tab.items() if isinstance(e, dict)}
                                          for t, tab in (existing or {}).items() if isinstance(tab, dict)}
    for search in searches:
        choice = search.choice()
        if choice is None:
            continue
        task = get_task(search.task)
        tables.setdefault(search.task, {})[search.sampler] = {
            **choice, "tuning": search.note(task.tuning_metric, task.tuning_keys)}
    lines = ["# Hyperparameters chosen by `python -m benchmarks tune` (the tuning protocol: docs/tuning.md).",
             "# `python -m benchmarks run` lays these entries over the published configs.", ""]
    for task in sorted(tables):
        lines.append(f"[{_toml_key(task)}]")
        for sampler in sorted(tables[task]):
            entry = tables[task][sampler]
            body = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items())
            lines.append(f"{_toml_key(sampler)} = {{ {body} }}")
        lines.append("")
    return atomic_write(path, "\n".join(lines))


def read_tuned(path: str | Path) -> dict[str, dict]:
    """A ``tuned.toml`` (ValueError naming the file if it is not valid TOML)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"tuned hyperparameters {path}: {exc}") from exc


def format_searches(searches: list[Search]) -> str:
    """One block per task: each sampler's trials (lr: score, * ineligible, x diverged) and its choice."""
    out = []
    for name in dict.fromkeys(s.task for s in searches):
        task = get_task(name)
        out.append(f"{name}: validation {task.tuning_metric} by step size "
                   f"({', '.join(f'{k}={v}' for k, v in task.tuning_keys.items())}; seed {SEED}; "
                   f"x diverged, * not eligible)")
        for s in (s for s in searches if s.task == name):
            cells = []
            for t in s.ran():
                if t.status != "ok":
                    cells.append(f"{t.lr:g}:x")
                else:
                    text = "nan" if t.score is None else f"{t.score:.4g}"
                    cells.append(f"{t.lr:g}:{text}" + ("" if t.eligible else "*"))
            best = s.best()
            if s.reason == "planned":
                verdict = f"-> the next round is planned ({len(s.ran())} trials recorded)"
            elif best:
                verdict = f"-> lr {best.lr:g} ({'bracketed' if s.bracketed() else 'at the edge'}, {len(s.ran())} trials)"
            else:
                verdict = f"-> no eligible step ({s.reason or 'none'})"
            out.append(f"  {s.sampler:14s} {' '.join(cells)}  {verdict}")
    return "\n".join(out)
