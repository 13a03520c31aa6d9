"""The README's headline table (MNIST MLP: accuracy, calibration, OOD) from the leaderboard CSV.

    python -m benchmarks report            # rebuilds results/leaderboard.csv from the records
    python scripts/headline_table.py [--csv results/leaderboard.csv] [--task mnist-mlp]

One row per (sampler, variant): test error %, NLL, ECE, notMNIST AUROC by predictive entropy and
its margin over SGD's, the share of notMNIST letters called a digit with p > 0.9, and the
Fashion-MNIST AUROC; means over seeds, so the README quotes exactly what the records hold.
"""

from __future__ import annotations

import argparse

import pandas as pd

from benchmarks.lineup import display_rank


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default="results/leaderboard.csv")
    ap.add_argument("--task", default="mnist-mlp")
    args = ap.parse_args(argv)
    try:
        frame = pd.read_csv(args.csv)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        ap.error(f"--csv {args.csv}: cannot read it as a leaderboard CSV ({exc})")
    needed = {"task", "sampler", "variant", "hyperparameters", "temperature", "metric", "mean"}
    if not needed <= set(frame.columns):
        ap.error(f"--csv {args.csv}: not a leaderboard.csv (the long table `report` writes); missing columns "
                 f"{', '.join(sorted(needed - set(frame.columns)))}")
    tasks = sorted(set(frame.task))
    frame = frame[frame.task == args.task]
    wanted = {"error", "nll", "ece", "auroc_entropy", "notmnist_confident", "fashion_auroc_entropy"}
    if frame.empty or not wanted <= set(frame.metric):
        mnist = [t for t in tasks if t.startswith("mnist")]
        ap.error(f"--task {args.task}: no MNIST rows for it in {args.csv}; valid: {', '.join(mnist) or '(none here)'}")
    wide = frame.pivot_table(index=["sampler", "variant", "hyperparameters", "temperature"], columns="metric",
                             values="mean").reset_index()
    wide["order"] = [(v != "tuned", display_rank(s), s)
                     for s, v in zip(wide.sampler, wide.variant)]
    wide = wide.sort_values("order")
    # the margin is over the SGD row of the same variant (a `--hyper` run's SGD ran under the same
    # override), else over the tuned SGD row
    sgd = {v: float(a) for v, a in zip(wide[wide.sampler == "sgd"].variant, wide[wide.sampler == "sgd"].auroc_entropy)}
    print("| sampler | T | test error % | NLL | ECE | notMNIST AUROC (entropy) | margin over SGD "
          "| letters called a digit with p > 0.9 | Fashion AUROC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in wide.itertuples():
        hyper = ", ".join(h for h in r.hyperparameters.split(", ") if not h.startswith("prior"))
        name = f"{r.sampler} ({hyper})" if r.variant == "tuned" else f"{r.sampler}, {r.variant}"
        temp = "-" if r.sampler == "sgd" else f"{r.temperature:g}"
        base = sgd.get(r.variant, sgd.get("tuned", float("nan")))
        margin = "" if r.sampler == "sgd" else f"{r.auroc_entropy - base:+.3f}"
        print(f"| {name} | {temp} | {r.error:.2f} | {r.nll:.3f} | {r.ece:.4f} | {r.auroc_entropy:.3f} | {margin} "
              f"| {100 * r.notmnist_confident:.1f} % | {r.fashion_auroc_entropy:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
