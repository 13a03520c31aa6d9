"""How hard is each sampler to use? Its sensitivity to the step size, from the records.

    python scripts/sensitivity.py [--results-dir results]

Two views, both from records already on disk (nothing is run):

- **Sweep** (the published step-size sweeps: every sampler's tuned lr times 0.1, 0.316, 1, 3.16 and
  10, seed 0): per (task, sampler), the share of the five points whose headline is within 10 % of
  the best of the five (a flat curve: 5/5), and the share that diverged.
- **Tuning probe** (``python -m benchmarks tune``'s first round: five whole decades of lr down from
  the task's largest, the same for every sampler): the share of the probe's decades that diverged,
  and the share of the finished ones within 10 % of the best of the search.

Prints markdown tables (docs/tuning.md holds the published ones).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import lineup  # noqa: E402
from benchmarks.records import load_records  # noqa: E402
from benchmarks.tasks import all_tasks  # noqa: E402

#: a point is "near the best" when its score is within this relative distance of the best
NEAR = 0.10


def _near(values: list[float], better: str) -> int:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0
    best = min(finite) if better == "min" else max(finite)
    if better == "min":
        return sum(v <= best + NEAR * abs(best) for v in finite)
    return sum(v >= best - NEAR * abs(best) for v in finite)


def sweep_table(records: list[dict]) -> list[str]:
    tasks = all_tasks()
    points: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for r in records:
        c = r["config"]
        task = tasks.get(c["task"])
        if task is None or c["profile"] != "default" or c.get("variant") not in ("sweep", "tuned") or c["seed"] != 0:
            continue
        head = task.headline
        value = r["metrics"].get(head.key) if r["status"] == "ok" else None
        points[c["task"], c["sampler"]].append((r["status"], float(value) if isinstance(value, (int, float)) else math.nan))
    lines = ["| task | headline | " + " | ".join(lineup.builtin_samplers()) + " |",
             "|---|---|" + "---|" * len(lineup.builtin_samplers())]
    for name, task in tasks.items():
        cells, any_row = [], False
        for sampler in lineup.builtin_samplers():
            pts = points.get((name, sampler), [])
            if len(pts) < 3:
                cells.append("-")
                continue
            any_row = True
            diverged = sum(s != "ok" for s, _ in pts)
            near = _near([v for s, v in pts if s == "ok"], task.headline.better)
            cells.append(f"{near}/{len(pts)} near, {diverged} div")
        if any_row:
            lines.append(f"| {name} | {task.headline.label} | " + " | ".join(cells) + " |")
    return lines


def probe_table(records: list[dict]) -> list[str]:
    from benchmarks import tuning

    tasks = all_tasks()
    trials: dict[tuple[str, str], dict[float, tuple[str, float, bool]]] = defaultdict(dict)
    for r in records:
        c = r["config"]
        task = tasks.get(c["task"])
        if task is None or c.get("variant") != "tuning" or c["seed"] != tuning.SEED or task.tune_lr_max is None:
            continue
        if any(c["hyper"].get(k) != v for k, v in task.tuning_keys.items()):
            continue
        t = tuning.score_of(task, r)
        trials[c["task"], c["sampler"]][t.lr] = (t.status, t.score if t.score is not None else math.nan, t.eligible)
    samplers = [s for s in lineup.builtin_samplers() if s != lineup.baseline()]
    lines = ["| task | " + " | ".join(samplers) + " |", "|---|" + "---|" * len(samplers)]
    for name, task in tasks.items():
        if task.tune_lr_max is None:
            continue
        probe = [float(f"{task.tune_lr_max * 10.0**-k:.1e}") for k in range(tuning.PROBE_DECADES)]
        cells, any_row = [], False
        for sampler in samplers:
            got = trials.get((name, sampler), {})
            if not all(lr in got for lr in probe):
                cells.append("-")
                continue
            any_row = True
            diverged = sum(got[lr][0] != "ok" for lr in probe)
            scores = [s for st, s, ok in got.values() if st == "ok" and ok]
            near = _near(scores, "min")
            cells.append(f"{diverged}/{len(probe)} div, {near}/{len(got)} near")
        if any_row:
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", default=str(ROOT / "results"))
    args = ap.parse_args(argv)
    results = Path(args.results_dir)
    print("Step-size sweep (tuned lr x 0.1 ... 10, seed 0): points within 10 % of the best of the sweep, "
          "and points that diverged\n")
    print("\n".join(sweep_table(load_records(results))))
    tuning_dir = results / "tuning"
    if tuning_dir.is_dir():
        print("\nTuning probe (five decades down from the task's largest lr, the same for every sampler): "
              "decades that diverged, and trials within 10 % of the best of the search\n")
        print("\n".join(probe_table(load_records(tuning_dir))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
