"""The accuracy / OOD-detection frontier on MNIST, from records that already exist (nothing is run).

Every published MLP configuration, one point each (mean over its seeds): the leaderboard's rows
(constant step, T = 1 and its cold rows), the temperature study (constant step, T from 1 to 0) and
the cyclical study with its ablation of the exploration fraction (0, 0.5 and 0.8), at the published
5 cycles and at the paper's 4. x: MNIST test error; y: notMNIST AUROC by predictive entropy; one
colour per sampler, a line through each sampler's temperatures (solid) and through its exploration
fractions (dashed with stars at the published cycle count, dotted and faint at another). Up and left
is better: the
figure shows what each way of spending the same 10,000 gradient steps buys and costs.

    python scripts/frontier.py [--results-dirs results,results/studies/temperature,...]
        [--figure results/mnist-mlp_frontier.png]

Prints the points as a markdown table. A configuration found in several folders (the temperature
study's T = 1, seed 0, is the leaderboard's seed-0 run under another label) counts once per seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from benchmarks import grid
from benchmarks.figures import sampler_style, save_figure
from benchmarks.records import load_records, records_dir
from benchmarks.tasks.mnist import CYCLICAL

DEFAULT_DIRS = ("results,results/studies/temperature,results/studies/cyclical,results/studies/cyclical-4,"
                "results/studies/cyclical-explore,results/studies/cyclical-explore-4")
DEFAULT_FIGURE = "results/mnist-mlp_frontier.png"
TASKS = {"mnist-mlp": "constant", "mnist-mlp-cyclical": "cyclical"}
# the cyclical task's own exploration fraction and cycle count: a record without an `explore` or
# `cycles` key ran with them
CYCLICAL_EXPLORE, CYCLICAL_CYCLES = CYCLICAL["explore"], CYCLICAL["cycles"]
METRICS = [("error", "test error %", ".2f"), ("nll", "NLL", ".4f"), ("ece", "ECE", ".4f"),
           ("auroc_entropy", "notMNIST AUROC", ".3f")]


def points(records: list[dict]) -> pd.DataFrame:
    """One row per (sampler, protocol, setting): the mean of each metric over distinct seeds."""
    rows, seen = [], set()
    for rec in records:
        cfg = rec.get("config", {})
        if rec.get("status") != "ok" or cfg.get("task") not in TASKS or cfg.get("profile") != "default":
            continue
        hyper = dict(cfg.get("hyper", {}))
        if hyper.get("evaluate_on", "test") != "test":
            continue
        if float(hyper.get("temperature", 1.0)) == 1.0:  # T = 1 said or left to the default: the same run
            hyper.pop("temperature", None)
        # a cyclical row of mnist-mlp (a row that sets `cycles`) is the cyclical study's run
        task = "mnist-mlp-cyclical" if cfg["task"] == "mnist-mlp" and "cycles" in hyper else cfg["task"]
        run = (task, cfg["sampler"], json.dumps(hyper, sort_keys=True), cfg["seed"])
        if run in seen:  # the same run published under two labels
            continue
        seen.add(run)
        protocol = TASKS[task]
        sgd = cfg["sampler"] == "sgd"
        temperature = float("nan") if sgd else float(hyper.get("temperature", 1.0))
        explore = float(hyper.get("explore", CYCLICAL_EXPLORE)) if protocol == "cyclical" and not sgd else float("nan")
        cycles = float(hyper.get("cycles", CYCLICAL_CYCLES)) if protocol == "cyclical" else float("nan")
        rows.append({"sampler": cfg["sampler"], "protocol": protocol, "T": temperature, "cycles": cycles,
                     "explore": explore, **{k: rec["metrics"][k] for k, _, _ in METRICS}})
    keys = ["sampler", "protocol", "T", "cycles", "explore"]
    columns = [*keys, "seeds", *[k for k, _, _ in METRICS]]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(keys, dropna=False)
    out = grouped.mean().reset_index()
    out.insert(len(keys), "seeds", grouped.size().values)
    return out[columns].sort_values(keys, ascending=[True, True, False, True, True])


def table(frame: pd.DataFrame) -> str:
    lines = ["| sampler | protocol | T | cycles | explore | seeds | " + " | ".join(label for _, label, _ in METRICS)
             + " |", "|" + "---|" * (6 + len(METRICS))]
    for r in frame.itertuples():
        temp = "-" if pd.isna(r.T) else f"{r.T:g}"
        cycles = "-" if pd.isna(r.cycles) else f"{r.cycles:g}"
        explore = "-" if pd.isna(r.explore) else f"{r.explore:g}"
        cells = [format(getattr(r, k), fmt) for k, _, fmt in METRICS]
        lines.append(f"| {r.sampler} | {r.protocol} | {temp} | {cycles} | {explore} | {r.seeds} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def published_cycles() -> float:
    """The cycle count of the published cyclical rows (benchmarks/configs), else the task's own."""
    return float(grid.load_configs().get("mnist-mlp-cyclical", {}).get("cycles", CYCLICAL_CYCLES))


def plot(frame: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 6))
    published = published_cycles()
    for name, sub in frame.groupby("sampler", sort=False):
        color = "k" if name == "sgd" else sampler_style(name)["color"]
        constant = sub[sub.protocol == "constant"].sort_values("T", ascending=False)
        cyclical = sub[sub.protocol == "cyclical"].sort_values("explore")
        if name == "sgd":
            ax.scatter(constant.error, constant.auroc_entropy, marker="X", s=80, color=color, label="sgd (constant)")
            ax.scatter(cyclical.error, cyclical.auroc_entropy, marker="P", s=80, color=color, label="sgd (cyclical)")
            for r in cyclical.itertuples():
                ax.annotate(f"c={r.cycles:g}", (r.error, r.auroc_entropy), fontsize=6, color=color,
                            xytext=(3, -8), textcoords="offset points")
            continue
        ax.plot(constant.error, constant.auroc_entropy, "-o", color=color, ms=4, lw=1, label=f"{name}: constant, T")
        for r in constant.itertuples():
            ax.annotate(f"T={r.T:g}", (r.error, r.auroc_entropy), fontsize=6, color=color,
                        xytext=(3, 2), textcoords="offset points")
        for cycles, points in cyclical.groupby("cycles"):  # one line through the explore fractions per count
            main = cycles == published
            ax.plot(points.error, points.auroc_entropy, "--*" if main else ":s", color=color, ms=11 if main else 4,
                    mec="k" if main else color, mew=0.5, lw=1, alpha=1.0 if main else 0.5,
                    label=f"{name}: cyclical, {cycles:g} cycles, explore")
            for r in points.itertuples():
                ax.annotate(f"e={r.explore:g}", (r.error, r.auroc_entropy), fontsize=6, color=color,
                            alpha=1.0 if main else 0.6, xytext=(3, -8), textcoords="offset points")
    ax.set_xlabel("MNIST test error % (lower is better)")
    ax.set_ylabel("notMNIST AUROC by predictive entropy (higher is better)")
    ax.set_title("mnist-mlp: what each use of the same 10,000 steps buys (accuracy) and costs (OOD detection)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dirs", default=DEFAULT_DIRS, help="comma-separated results folders to read")
    ap.add_argument("--figure", default=DEFAULT_FIGURE)
    args = ap.parse_args(argv)
    records = []
    for folder in [d for d in args.results_dirs.split(",") if d]:
        if not records_dir(folder).is_dir():
            print(f"{folder}: no records folder, skipped", file=sys.stderr)
            continue
        records += load_records(folder, warn=lambda m: print(m, file=sys.stderr))
    frame = points(records)
    if frame.empty:
        print("no MNIST MLP records of the default profile found in " + args.results_dirs, file=sys.stderr)
        return 1
    print(table(frame))
    print(f"figure: {plot(frame, Path(args.figure))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
