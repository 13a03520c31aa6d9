"""How a toy task's step sizes are chosen: every sampler over a grid of lr, on a seed that is not
published (100), recorded under ``results/tuning/`` like any run (a rerun skips what is done).

    python scripts/tune_toy.py --task mixture-2d [--lrs 0.001,0.003,...] [--only sgld,psgld] [--jobs 2]

Prints one row per (sampler, lr) with the task's metrics; the choice rule is the config file's
(benchmarks/configs/toy.toml says it per task).
"""

from __future__ import annotations

import argparse
import math
import sys

import sgmcmc
from benchmarks import executors, lineup, records
from benchmarks.tasks import get_task
from benchmarks.tasks.gaussian import GaussianTask

#: the built-ins but the baseline (sgd takes sgld's lr), each with its hyperparameters other than lr
#: held fixed as on the other toy tasks: both from benchmarks/configs/samplers.toml
SAMPLERS = lineup.tuned_samplers()
FIXED = {name: lineup.fixed_hypers(name) for name in SAMPLERS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--lrs", default="0.001,0.003,0.01,0.03,0.1,0.3", help="comma-separated step sizes")
    ap.add_argument("--only", default=None, help=f"comma-separated samplers (default: {', '.join(SAMPLERS)})")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--results-dir", default=None, help="default: results/tuning/<task>")
    args = ap.parse_args(argv)
    try:
        task = get_task(args.task)
        lrs = [float(x) for x in args.lrs.split(",") if x.strip()]
    except ValueError as exc:
        ap.error(str(exc))

    if not isinstance(task, GaussianTask):  # an MNIST task's metrics here would be the test set's
        ap.error(f"--task {args.task} is not a toy task; tune the MNIST tasks on the validation set with "
                 f"scripts/tune_mnist.py")
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        ap.error(f"--lrs {args.lrs!r}: every step size must be a finite number > 0")
    if args.jobs < 1:
        ap.error(f"--jobs={args.jobs}: must be an integer >= 1")
    if args.profile not in task.profiles:
        ap.error(f"--profile {args.profile!r} is not one of {task.name}'s; valid: {', '.join(task.profiles)}")
    samplers = [s.strip() for s in args.only.split(",") if s.strip()] if args.only is not None else list(SAMPLERS)
    try:
        for name in samplers:
            sgmcmc.get(name)
    except (ValueError, ImportError, TypeError) as exc:
        ap.error(f"--only {args.only!r}: {exc}")
    if not samplers:
        ap.error(f"--only {args.only!r} names no sampler")
    results = args.results_dir or f"results/tuning/{task.name}"
    specs = [records.RunSpec.make(task.name, s, {**FIXED.get(s, {}), "lr": lr}, args.seed, args.profile, "tuning")
             for s in samplers for lr in lrs]
    summary = executors.execute(specs, executors.RunOptions(results_dir=results, show_progress=True),
                             jobs=args.jobs, log=lambda m: print(m, file=sys.stderr))
    print(summary.line())
    keys = {s.key for s in specs}
    columns = [m for m in task.metrics if m.key != "ess_per_second"]
    print("| sampler | lr | status | " + " | ".join(m.label for m in columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    rows = []
    for rec in records.load_records(results):
        if rec["key"] not in keys:
            continue
        cfg, m = rec["config"], rec["metrics"]
        cells = [format(m[c.key], c.fmt) if isinstance(m.get(c.key), (int, float)) else "-" for c in columns]
        rows.append(((cfg["sampler"], cfg["hyper"]["lr"]),
                     f"| {cfg['sampler']} | {cfg['hyper']['lr']:g} | {rec['status']} | " + " | ".join(cells) + " |"))
    print("\n".join(row for _key, row in sorted(rows)))
    return summary.exit_status


if __name__ == "__main__":
    sys.exit(main())
