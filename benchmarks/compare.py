"""Do two results folders hold the same runs? ``python -m benchmarks compare A B``.

The question a reproduction asks: "I reran the suite (``run all --results-dir B``); do my records
say what the published ones (A) say?" Records are matched by key, the hash of a run's
configuration (task, sampler, hyperparameters, seed, profile, variant). For every run in both
folders the status, the gradient count and every metric are compared, except the timings
(:func:`is_timing`: wall-clock figures, which no rerun reproduces). Every run is seeded, so on the
same software a rerun gives the same numbers to the last digit, and the default tolerance is 0;
``rtol`` allows |a - b| <= rtol * max(|a|, |b|) (across library versions or devices, say). NaN
equals NaN; a metric present on one side only is a difference.

Runs in one folder only are counted and listed, not failed: a folder may hold a subset (``run toy``
against the whole published grid). A corrupt record is reported by its path and counted
(``unreadable_a`` / ``unreadable_b``); it fails the check, since the run it held cannot be compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .records import load_records, records_dir

def is_timing(name: str) -> bool:
    """Is this metric a wall-clock figure (left out of the comparison)? The suite names them so:
    ``train_time_s``, ``eval_time_s``, ``ess_per_second``."""
    return name.endswith("_time_s") or name.endswith("_per_second")


@dataclass
class Difference:
    """One run whose records disagree: its configuration and (what, value in A, value in B)."""

    config: dict
    items: list[tuple[str, Any, Any]]


@dataclass
class Comparison:
    same: int = 0
    differ: list[Difference] = field(default_factory=list)
    only_a: list[dict] = field(default_factory=list)  # configs
    only_b: list[dict] = field(default_factory=list)
    provenance_a: dict[str, set] = field(default_factory=dict)
    provenance_b: dict[str, set] = field(default_factory=dict)
    unreadable_a: list[str] = field(default_factory=list)  # why each corrupt record was skipped
    unreadable_b: list[str] = field(default_factory=list)
    profiles_a: set = field(default_factory=set)  # the profiles of each side's records
    profiles_b: set = field(default_factory=set)

    @property
    def compared(self) -> int:
        return self.same + len(self.differ)

    def nothing_in_both(self) -> str:
        """Why no run is in both folders, for the message: a profile mismatch (the profile is part of
        a run's configuration, so a quick run never matches a default one) is named, with the fix."""
        if self.profiles_a and self.profiles_b and not (self.profiles_a & self.profiles_b):
            a, b = ", ".join(sorted(self.profiles_a)), ", ".join(sorted(self.profiles_b))
            return (f"nothing to compare: no run is in both folders: A holds profile {a} records and B "
                    f"profile {b} (the profile is part of a run's configuration); rerun B with --profile "
                    f"{sorted(self.profiles_a)[0]} to compare with A")
        return "nothing to compare: no run is in both folders"


def _equal(a: Any, b: Any, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def _provenance(records: list[dict]) -> dict[str, set]:
    out: dict[str, set] = {"git commit": set(), "torch": set(), "device": set()}
    for r in records:
        prov = r.get("provenance") or {}
        out["git commit"].add(str(prov.get("git_commit"))[:12] if prov.get("git_commit") else "unknown")
        out["torch"].add(str((prov.get("versions") or {}).get("torch", "unknown")))
        out["device"].add(str(prov.get("device", "unknown")))
    return out


def compare(a_dir: str | Path, b_dir: str | Path, rtol: float = 0.0,
            warn: Callable[[str], None] | None = None) -> Comparison:
    """Compare the records of two results folders (see the module docstring)."""
    if not (rtol >= 0.0 and math.isfinite(rtol)):
        raise ValueError(f"rtol={rtol!r} is out of range; valid: a finite number >= 0")
    for d in (a_dir, b_dir):
        if not records_dir(d).is_dir():
            raise FileNotFoundError(f"{d}: no records folder ({records_dir(d)} does not exist)")
    bad_a: list[str] = []
    bad_b: list[str] = []

    def noting(into: list[str]) -> Callable[[str], None]:
        def note(message: str) -> None:
            into.append(message)
            if warn is not None:
                warn(message)
        return note

    recs_a = {r["key"]: r for r in load_records(a_dir, warn=noting(bad_a))}
    recs_b = {r["key"]: r for r in load_records(b_dir, warn=noting(bad_b))}
    out = Comparison(provenance_a=_provenance(list(recs_a.values())), provenance_b=_provenance(list(recs_b.values())),
                     unreadable_a=bad_a, unreadable_b=bad_b,
                     profiles_a={r["config"].get("profile") for r in recs_a.values()},
                     profiles_b={r["config"].get("profile") for r in recs_b.values()})
    out.only_a = [recs_a[k]["config"] for k in sorted(set(recs_a) - set(recs_b))]
    out.only_b = [recs_b[k]["config"] for k in sorted(set(recs_b) - set(recs_a))]
    for key in sorted(set(recs_a) & set(recs_b)):
        ra, rb = recs_a[key], recs_b[key]
        items = []
        for what in ("status", "grad_evals"):
            if not _equal(ra.get(what), rb.get(what), rtol):
                items.append((what, ra.get(what), rb.get(what)))
        ma, mb = ra["metrics"], rb["metrics"]
        for name in sorted(set(ma) | set(mb)):
            if is_timing(name):
                continue
            va, vb = ma.get(name, "(missing)"), mb.get(name, "(missing)")
            if not _equal(va, vb, rtol):
                items.append((name, va, vb))
        if items:
            out.differ.append(Difference(ra["config"], items))
        else:
            out.same += 1
    return out


def describe(config: dict) -> str:
    # %.6g: a swept lr (0.003 * 0.1) reads lr=0.0003, not lr=0.00030000000000000003
    hyper = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in sorted(config.get("hyper", {}).items()))
    variant = config.get("variant")
    return (f"{config['task']} / {config['sampler']} ({hyper}) seed {config['seed']} [{config['profile']}"
            + (f", {variant}" if variant and variant != "tuned" else "") + "]")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_report(cmp: Comparison, a_dir: str | Path, b_dir: str | Path, rtol: float, show: int = 20) -> str:
    """What a person reads: the verdict, the provenance of each side, and the differences."""
    tol = "to the last digit" if rtol == 0 else f"within rtol {rtol:g}"
    lines = [f"A = {a_dir}, B = {b_dir}"]
    for side, prov in (("A", cmp.provenance_a), ("B", cmp.provenance_b)):
        lines.append(f"  {side}: " + "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in prov.items() if v))
    lines.append(f"{cmp.compared} runs in both: {cmp.same} agree {tol} in status, gradient count and every "
                 f"metric but timings; {len(cmp.differ)} differ")
    if cmp.only_a or cmp.only_b:
        lines.append(f"{len(cmp.only_a)} runs only in A, {len(cmp.only_b)} only in B (not compared)")
    if cmp.unreadable_a or cmp.unreadable_b:
        lines.append(f"{len(cmp.unreadable_a)} corrupt records in A, {len(cmp.unreadable_b)} in B (not compared; "
                     f"this fails the check):")
        lines += [f"  {side}: {m}" for side, ms in (("A", cmp.unreadable_a), ("B", cmp.unreadable_b)) for m in ms[:show]]
    for diff in cmp.differ[:show]:
        lines.append(f"- {describe(diff.config)}:")
        for name, va, vb in diff.items[:8]:
            rel = ""
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (va, vb)):
                scale = max(abs(va), abs(vb))
                rel = f" (relative {abs(va - vb) / scale:.2g})" if scale > 0 else ""
            lines.append(f"    {name}: A {_fmt(va)}, B {_fmt(vb)}{rel}")
        if len(diff.items) > 8:
            lines.append(f"    ... and {len(diff.items) - 8} more")
    if len(cmp.differ) > show:
        lines.append(f"... and {len(cmp.differ) - show} more runs that differ (--show N lists more)")
    for side, configs in (("A", cmp.only_a), ("B", cmp.only_b)):
        for config in configs[:min(show, 5)]:
            lines.append(f"  only in {side}: {describe(config)}")
        if len(configs) > min(show, 5):
            lines.append(f"  ... and {len(configs) - min(show, 5)} more only in {side}")
    return "\n".join(lines)
