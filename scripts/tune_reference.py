"""Choose each sampler's step size on the reference tasks by validation NLL (never the reference).

    python scripts/tune_reference.py [--tasks mnist-logreg,digits-mlp] [--jobs 1]

Every sampler gets the same protocol: three step sizes in half-decades around its family's usual
scale, one run each (seed 100, the default profile, ``evaluate_on = "validation"``: the validation
split, never the test images the reference is scored on); while the best is at an edge of what was
tried, the next half-decade beyond that edge is run (at most twice). Rule: the lowest
validation NLL among runs that finished (ok), which is then bracketed by a worse (or diverged) step
on both sides unless the extensions ran out. Records go to results/tuning/reference; the choices belong in configs/reference.toml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.executors import RunOptions, execute  # noqa: E402
from benchmarks.records import RunSpec, load_records  # noqa: E402

GRIDS = {
    "sgd": [0.03, 0.1, 0.3],
    "sgld": [0.03, 0.1, 0.3],
    "psgld": [3e-4, 1e-3, 3e-3],
    "sghmc": [0.003, 0.01, 0.03],
    "underdamped": [0.01, 0.03, 0.1],
}
FIXED = {"psgld": {"alpha": 0.99}, "sghmc": {"friction": 0.1}, "underdamped": {"friction": 0.1}}
SEED = 100
OUT = ROOT / "results" / "tuning" / "reference"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="mnist-logreg,digits-mlp")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--results-dir", type=Path, default=OUT)
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    grids = {(task, sampler): list(grid) for task in tasks for sampler, grid in GRIDS.items()}
    opts = RunOptions(results_dir=str(args.results_dir))
    status = 0
    for _round in range(1 + MAX_EXTENSIONS):
        specs = [spec(task, sampler, lr) for (task, sampler), grid in grids.items() for lr in grid]
        status = max(status, execute(specs, opts, jobs=args.jobs).exit_status)
        nll = validation_nll(load_records(args.results_dir))
        extended = False
        if _round == MAX_EXTENSIONS:
            break
        for (task, sampler), grid in grids.items():
            scores = {lr: nll.get((task, sampler, lr), float("nan")) for lr in grid}
            best = min(grid, key=lambda lr: scores[lr] if scores[lr] == scores[lr] else float("inf"))
            if best == max(grid):
                grid.append(next_step(best, up=True)); extended = True  # noqa: E702
            elif best == min(grid):
                grid.insert(0, next_step(best, up=False)); extended = True  # noqa: E702
        if not extended:
            break
    report(tasks, grids, validation_nll(load_records(args.results_dir)))
    return status


MAX_EXTENSIONS = 2


def next_step(lr: float, up: bool) -> float:
    """The next point of the 1-3-10 ladder (half-decades) above or below ``lr``."""
    import math

    exponent = math.floor(math.log10(lr) + 1e-9)
    mantissa = round(lr / 10**exponent, 6)
    if up:
        return float(f"{(3 if mantissa < 2 else 10) * 10**exponent:.1e}")
    return float(f"{(0.3 if mantissa < 2 else 1) * 10**exponent:.1e}")


def spec(task: str, sampler: str, lr: float) -> RunSpec:
    return RunSpec.make(task, sampler, {"lr": lr, "evaluate_on": "validation", **FIXED.get(sampler, {})}, SEED,
                        "default", variant="tuning")


def validation_nll(records: list[dict]) -> dict:
    """(task, sampler, lr) -> validation NLL (inf for a run that diverged or failed)."""
    out = {}
    for r in records:
        c = r["config"]
        if c["hyper"].get("evaluate_on") == "validation":
            out[c["task"], c["sampler"], c["hyper"]["lr"]] = r["metrics"].get("nll") if r["status"] == "ok" else float("inf")
    return out


def report(tasks: list[str], grids: dict, nll: dict) -> None:
    for task in tasks:
        print(f"\n{task}: validation NLL by step size")
        for (t, sampler), grid in grids.items():
            if t != task:
                continue
            grid = sorted(grid)
            scores = [nll.get((task, sampler, lr), float("nan")) for lr in grid]
            i = min(range(len(grid)), key=lambda k: scores[k] if scores[k] == scores[k] else float("inf"))
            ran = [lr for lr, v in zip(grid, scores) if v == v]
            bracketed = min(ran) < grid[i] < max(ran)
            cells = " ".join(f"{lr:.3g}:{v:.4f}" for lr, v in zip(grid, scores))
            print(f"  {sampler:12s} {cells}  -> lr {grid[i]:.3g} ({'bracketed' if bracketed else 'at the edge'})")


if __name__ == "__main__":
    raise SystemExit(main())
