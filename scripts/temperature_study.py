"""The cold-posterior curve on MNIST: what the temperature T buys and costs, per sampler.

Wenzel et al. (2020) reported that SG-MCMC predictions in deep nets improve when the posterior is
tempered, exp(-U / T) with T < 1; the suite's headline rows show both ends of that trade-off (T = 1
loses accuracy to SGD, while only T = 1 says "I do not know" to letters). This study fills in the
curve between: every sampler at its tuned step size (``benchmarks/configs/mnist.toml``), the same
protocol as the leaderboard (default profile, MNIST test set), at each temperature, with SGD as the
reference line.

    python scripts/temperature_study.py [--samplers sgld,psgld,sghmc,underdamped]
        [--temperatures 1,0.3,0.1,0.03,0.01,0] [--seeds 1] [--jobs 2]
        [--results-dir results/studies/temperature] [--figure results/mnist-mlp_temperature.png]

Every point is an ordinary run with its record under ``--results-dir`` (variant ``T=<T>``), so a
rerun skips what is done and only redraws. Prints a markdown table (test error %, NLL, ECE,
notMNIST AUROC by entropy, letters called a digit with p > 0.9; mean over seeds) and writes the
figure: one panel per metric against T on a log axis, SGD as a dashed line, T = 0 (a sampler
without its noise: psgld's is RMSprop) as a dotted one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from benchmarks import executors, grid, lineup, records
from benchmarks.figures import sampler_style, save_figure

TASK = "mnist-mlp"
#: (metric key, axis label, table format)
METRICS = [
    ("error", "test error %", ".2f"),
    ("nll", "NLL", ".4f"),
    ("ece", "ECE", ".4f"),
    ("auroc_entropy", "notMNIST AUROC (entropy)", ".3f"),
    ("notmnist_confident", "letters called a digit, p > 0.9", ".3f"),
]


#: every built-in but the baseline, sgd (the reference line): benchmarks/configs/samplers.toml
DEFAULT_SAMPLERS = ",".join(lineup.tuned_samplers())
DEFAULT_TEMPERATURES = "1,0.3,0.1,0.03,0.01,0"
DEFAULT_FIGURE = "results/mnist-mlp_temperature.png"
DEFAULT_RESULTS = "results/studies/temperature"  # the published study's records, drawn in DEFAULT_FIGURE


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}={text!r}: expected comma-separated numbers") from None
    if not values or any(not 0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{name}={text!r}: every temperature must be finite and >= 0")
    return values


def build_specs(samplers: list[str], temperatures: list[float], seeds: int, profile: str = "default",
                configs: dict | None = None) -> list[records.RunSpec]:
    """SGD (the reference) and every (sampler, T, seed) at the sampler's tuned hyperparameters."""
    cfg = (grid.load_configs() if configs is None else configs).get(TASK, {})
    specs = [records.RunSpec.make(TASK, "sgd", grid.hyper_for(cfg, "sgd"), s, profile, "tuned") for s in range(seeds)]
    for name in samplers:
        base = grid.hyper_for(cfg, name)
        for t in temperatures:
            specs += [records.RunSpec.make(TASK, name, {**base, "temperature": t}, s, profile, f"T={t:g}")
                      for s in range(seeds)]
    return specs


def summarize(records: list[dict], keys: set[str]) -> pd.DataFrame:
    """One row per (sampler, T): the mean of each metric over the ok seeds, and how many there were."""
    rows = []
    for rec in records:
        if rec.get("key") not in keys or rec.get("status") != "ok":
            continue
        cfg = rec["config"]
        temp = float("nan") if cfg["sampler"] == "sgd" else float(cfg["hyper"].get("temperature", 1.0))
        rows.append({"sampler": cfg["sampler"], "T": temp, **{k: rec["metrics"][k] for k, _, _ in METRICS}})
    if not rows:
        return pd.DataFrame(columns=["sampler", "T", "seeds", *[k for k, _, _ in METRICS]])
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["sampler", "T"], dropna=False)
    out = grouped.mean().reset_index()
    out.insert(2, "seeds", grouped.size().values)
    return out.sort_values(["sampler", "T"], ascending=[True, False]).reset_index(drop=True)


def table(summary: pd.DataFrame, samplers: list[str]) -> str:
    head = "| sampler | T | seeds | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRICS))]
    order = ["sgd", *samplers]
    for name in order:
        for r in summary[summary.sampler == name].itertuples():
            temp = "-" if name == "sgd" else f"{r.T:g}"
            cells = [format(getattr(r, k), fmt) for k, _, fmt in METRICS]
            lines.append(f"| {name} | {temp} | {r.seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: pd.DataFrame, samplers: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.6))
    sgd = summary[summary.sampler == "sgd"]
    for ax, (key, label, _) in zip(axes, METRICS):
        for name in samplers:
            sub = summary[summary.sampler == name]
            hot = sub[sub["T"] > 0]
            color = sampler_style(name)["color"]  # the colours of the leaderboard's figures
            if len(hot):
                ax.plot(hot["T"], hot[key], marker="o", label=name, color=color)
            for value in sub[sub["T"] == 0][key]:  # T = 0 (no noise: the optimiser) has no place on a log axis
                ax.axhline(value, color=color, ls=":", lw=1.2, label=f"{name}, T = 0")
        if len(sgd):
            ax.axhline(float(sgd[key].iloc[0]), color="k", ls="--", lw=1, label="sgd")
        ax.set_xscale("log")
        ax.invert_xaxis()  # hot (T = 1) on the left, cold on the right
        ax.set_xlabel("temperature T")
        ax.set_title(label, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(f"{TASK}: tempering the posterior (each sampler at its tuned step size)")
    fig.tight_layout(rect=(0, 0, 0.91, 1))
    return save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samplers", default=DEFAULT_SAMPLERS)
    ap.add_argument("--temperatures", default=DEFAULT_TEMPERATURES, type=lambda s: _floats(s, "--temperatures"))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--profile", default="default", choices=["quick", "default", "full"])
    ap.add_argument("--results-dir", default=DEFAULT_RESULTS)
    ap.add_argument("--figure", default=None,
                    help=f"where to draw the curves (default {DEFAULT_FIGURE}, and then only for the whole default "
                         f"grid: a subset would overwrite the published figure with part of it)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        ap.error(f"--seeds={args.seeds} --jobs={args.jobs}: both must be >= 1")
    samplers = [s for s in args.samplers.split(",") if s]
    unknown = [s for s in samplers if s not in lineup.tuned_samplers()]
    if unknown:
        ap.error(f"--samplers: {', '.join(unknown)} not studied; valid: "
                 f"{', '.join(lineup.tuned_samplers())} (sgd is always the reference)")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        ap.error(f"--data-dir {args.data_dir}: no such directory")
    specs = build_specs(samplers, args.temperatures, args.seeds, args.profile)
    print(f"temperature study ({args.profile}): {len(specs)} runs, results in {args.results_dir}/records"
          + (f", {args.jobs} jobs" if args.jobs > 1 else ""), file=sys.stderr, flush=True)
    opts = executors.RunOptions(results_dir=args.results_dir, show_progress=True, data_dir=args.data_dir)
    summary_line = executors.execute(specs, opts, jobs=args.jobs, log=lambda m: print(m, file=sys.stderr))
    print(summary_line.line(), file=sys.stderr)
    summary = summarize(records.load_records(args.results_dir), {s.key for s in specs})
    print(table(summary, samplers))
    if summary_line.interrupted:
        print("interrupted: every finished run has its record (run the same command again to resume); "
              "no figure drawn", file=sys.stderr)
        return summary_line.exit_status
    figure = args.figure
    if figure is None:
        # the published figure is redrawn only from the published grid: the whole default grid, in
        # the published folder (a subset, another profile or another folder would replace it with
        # part of it or with other runs)
        whole = (samplers == DEFAULT_SAMPLERS.split(",") and args.profile == "default"
                 and Path(args.results_dir).resolve() == Path(DEFAULT_RESULTS).resolve()
                 and set(args.temperatures) >= set(_floats(DEFAULT_TEMPERATURES, "--temperatures")))
        if not whole:
            print(f"figure: not redrawn ({DEFAULT_FIGURE} shows the whole default grid of "
                  f"{DEFAULT_RESULTS}; pass --figure PATH to draw these curves)", file=sys.stderr)
            return summary_line.exit_status
        figure = DEFAULT_FIGURE
    print(f"figure: {plot(summary, samplers, Path(figure))}", file=sys.stderr)
    return summary_line.exit_status


if __name__ == "__main__":
    sys.exit(main())
