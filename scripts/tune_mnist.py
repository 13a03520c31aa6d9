"""How benchmarks/configs/mnist.toml was chosen: candidate hyperparameters on the MNIST validation set.

Every candidate is a normal run (default profile: 20 epochs, burn-in 10, a sample every 100 steps)
with ``evaluate_on = "validation"`` and seed 100 (not one of the published seeds), recorded under
``results/tuning/`` like any run (so a rerun skips what is done). The test set is never read.

    python scripts/tune_mnist.py [--task mnist-mlp] [--only sgld,psgld] [--jobs 1]

Prints, per candidate: validation error %, NLL, ECE, notMNIST AUROC, and the wall time.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import executors, grid, records
from benchmarks.tasks import get_task
from benchmarks.tasks.mnist import MNISTTask

#: (sampler, hyperparameters) candidates; the prior is part of the candidate
CANDIDATES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.3}),
    ("sgld", {"lr": 0.1}),
    ("sgld", {"lr": 0.1, "prior": "fanin"}),
    ("sgld", {"lr": 0.1, "prior": "fanin", "prior_sd": 3.0}),
    ("sgld", {"lr": 0.1, "prior_sd": 0.1}),
    ("sgld", {"lr": 0.03}),
    ("sgld", {"lr": 0.3}),
    ("sgld", {"lr": 1.0}),
    ("psgld", {"lr": 0.001, "alpha": 0.99}),
    ("psgld", {"lr": 0.0003, "alpha": 0.99}),
    ("psgld", {"lr": 0.003, "alpha": 0.99}),
    ("sghmc", {"lr": 0.01, "friction": 0.1}),
    ("sghmc", {"lr": 0.003, "friction": 0.1}),
    ("sghmc", {"lr": 0.03, "friction": 0.1}),
    ("sghmc", {"lr": 0.1, "friction": 0.1}),
    ("underdamped", {"lr": 0.01, "friction": 0.1}),
    ("underdamped", {"lr": 0.03, "friction": 0.1}),
    ("underdamped", {"lr": 0.1, "friction": 0.1}),
    # a geometric decay of the step over the run (lr_decay_to: the last step's fraction of lr)
    ("sgd", {"lr": 1.0, "lr_decay_to": 0.1}),
    ("sgld", {"lr": 1.0, "lr_decay_to": 0.1}),
    ("sgld", {"lr": 0.3, "lr_decay_to": 0.1}),
    ("psgld", {"lr": 0.003, "alpha": 0.99, "lr_decay_to": 0.1}),
    ("sghmc", {"lr": 0.1, "friction": 0.1, "lr_decay_to": 0.1}),
    ("underdamped", {"lr": 0.1, "friction": 0.1, "lr_decay_to": 0.1}),
]

#: candidates of the cyclical protocol (task mnist-mlp-cyclical): the step size at each cycle's start
CYCLICAL_CANDIDATES = [
    ("sgd", {"lr": 0.1}), ("sgd", {"lr": 0.3}), ("sgd", {"lr": 1.0}),
    ("sgld", {"lr": 0.1}), ("sgld", {"lr": 0.3}), ("sgld", {"lr": 0.5}), ("sgld", {"lr": 0.7}), ("sgld", {"lr": 1.0}),
    ("psgld", {"lr": 0.0003, "alpha": 0.99}), ("psgld", {"lr": 0.0005, "alpha": 0.99}),
    ("psgld", {"lr": 0.001, "alpha": 0.99}), ("psgld", {"lr": 0.002, "alpha": 0.99}),
    ("psgld", {"lr": 0.003, "alpha": 0.99}),
    ("sghmc", {"lr": 0.03, "friction": 0.1}), ("sghmc", {"lr": 0.1, "friction": 0.1}),
    ("sghmc", {"lr": 0.3, "friction": 0.1}),
    ("underdamped", {"lr": 0.03, "friction": 0.1}), ("underdamped", {"lr": 0.1, "friction": 0.1}),
    ("underdamped", {"lr": 0.3, "friction": 0.1}),
]
#: the cycle count (the same for every sampler: it is the protocol's), each sampler at its tuned lr;
#: 4 cycles are the candidates above
CYCLICAL_CANDIDATES += [(s, {**h, "cycles": c}) for c in (5, 8, 10) for s, h in (
    ("sgd", {"lr": 0.3}), ("sgld", {"lr": 0.5}), ("psgld", {"lr": 0.001, "alpha": 0.99}),
    ("sghmc", {"lr": 0.1, "friction": 0.1}), ("underdamped", {"lr": 0.1, "friction": 0.1}))]
#: candidates for the CNN (full profile only; ~13 min a run on 2 CPU cores, ~30 s on a GPU): a decade
#: around docs/contract.md's baselines (run on a GPU, `--device cuda`), then one step up for the samplers
#: whose best was the largest (run on the CPU)
CNN_CANDIDATES = [
    *[("sgd", {"lr": lr}) for lr in (0.03, 0.1, 0.3, 1.0)],
    *[("sgld", {"lr": lr}) for lr in (0.03, 0.1, 0.3, 1.0)],
    *[("psgld", {"lr": lr, "alpha": 0.99}) for lr in (0.0003, 0.001, 0.003)],
    *[("sghmc", {"lr": lr, "friction": 0.1}) for lr in (0.003, 0.01, 0.03, 0.1)],
    *[("underdamped", {"lr": lr, "friction": 0.1}) for lr in (0.003, 0.01, 0.03, 0.1)],
]
#: the step sizes either side of each sampler's, re-checked at the chosen 5 cycles
CYCLICAL_CANDIDATES += [(s, {**h, "cycles": 5}) for s, h in (
    ("sgld", {"lr": 0.3}), ("sgld", {"lr": 0.7}),
    ("psgld", {"lr": 0.0005, "alpha": 0.99}), ("psgld", {"lr": 0.002, "alpha": 0.99}),
    ("sghmc", {"lr": 0.03, "friction": 0.1}), ("sghmc", {"lr": 0.3, "friction": 0.1}),
    ("underdamped", {"lr": 0.03, "friction": 0.1}), ("underdamped", {"lr": 0.3, "friction": 0.1}))]
CANDIDATES_BY_TASK = {"mnist-mlp-cyclical": CYCLICAL_CANDIDATES, "mnist-cnn": CNN_CANDIDATES}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="mnist-mlp")
    ap.add_argument("--only", default=None, help="comma-separated samplers")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--profile", default=None, help="default: 'default', or the task's only profile (the CNN's 'full')")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    ap.add_argument("--then-test", default=None, metavar="RESULTS_DIR",
                    help="after tuning, run each sampler's chosen candidate (lowest validation NLL) on the test "
                         "set with the profile's seeds, as the config rows that name it would, into RESULTS_DIR")
    ap.add_argument("--results-dir", default="results/tuning")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    args = ap.parse_args(argv)

    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        ap.error(f"--jobs={args.jobs} --threads={args.threads}: each must be an integer >= 1")
    try:
        executors.resolve_device(args.device)
        task = get_task(args.task)
    except ValueError as exc:
        ap.error(str(exc))
    if not isinstance(task, MNISTTask):  # tuning reads the validation split, which only the MNIST tasks have
        ap.error(f"--task {args.task} is not an MNIST task; valid: {', '.join(CANDIDATES_BY_TASK)}, mnist-mlp "
                 f"(for the toy tasks: scripts/tune_toy.py)")
    if args.profile is None:
        args.profile = "default" if "default" in task.profiles else task.profiles[-1]
    elif args.profile not in task.profiles:
        ap.error(f"--profile {args.profile!r} is not one of {args.task}'s; valid: {', '.join(task.profiles)}")
    candidates = CANDIDATES_BY_TASK.get(args.task, CANDIDATES)
    names = sorted({s for s, _h in candidates})
    only = {s.strip() for s in args.only.split(",") if s.strip()} if args.only is not None else None
    if only is not None and (not only or only - set(names)):
        ap.error(f"--only {args.only!r}: unknown or no sampler(s) {', '.join(sorted(only - set(names))) or '(none)'}; "
                 f"valid: {', '.join(names)}")
    specs = [records.RunSpec.make(args.task, s, {**h, "evaluate_on": "validation"}, 100, args.profile, "tuning")
             for s, h in candidates if only is None or s in only]
    summary = executors.execute(specs, executors.RunOptions(results_dir=args.results_dir, show_progress=True,
                                                      threads=args.threads, device=args.device),
                             jobs=args.jobs, log=lambda m: print(m, file=sys.stderr))
    print(summary.line())
    keys = {s.key for s in specs}
    rows = []
    for rec in records.load_records(args.results_dir):
        if rec["key"] not in keys:
            continue
        m, h = rec["metrics"], dict(rec["config"]["hyper"])
        h.pop("evaluate_on", None)
        if rec["status"] != "ok":
            rows.append(f"| {rec['config']['sampler']} | {h} | {rec['status']} | | | | |")
            continue
        rows.append(f"| {rec['config']['sampler']} | {h} | {m['error']:.2f} | {m['nll']:.4f} | {m['ece']:.4f} | "
                    f"{m['auroc_entropy']:.3f} | {rec['wall_time_s']:.0f} |")
    print("| sampler | hyper | val error % | NLL | ECE | notMNIST AUROC | wall s |\n|---|---|---|---|---|---|---|")
    print("\n".join(sorted(rows)))
    if args.then_test and not summary.interrupted:
        return then_test(args, specs, rows_of=records.load_records(args.results_dir))
    return summary.exit_status


def then_test(args, specs: list, rows_of) -> int:
    """Each sampler's candidate with the lowest validation NLL (the rule of benchmarks/configs), run on
    the test set: hyperparameters = the config's task-wide keys + the candidate's, variant "tuned", so
    the records are the ones `run` makes once the config names that candidate."""
    keys = {s.key for s in specs}
    best: dict[str, tuple[float, dict]] = {}
    tried: dict[str, list[dict]] = {}
    for rec in rows_of:
        if rec["key"] not in keys:
            continue
        sampler, h = rec["config"]["sampler"], dict(rec["config"]["hyper"])
        h.pop("evaluate_on", None)
        tried.setdefault(sampler, []).append(h)
        if rec["status"] == "ok" and (sampler not in best or rec["metrics"]["nll"] < best[sampler][0]):
            best[sampler] = (rec["metrics"]["nll"], h)
    task_wide = grid.task_wide_keys(grid.load_configs().get(args.task, {}))
    print("\nchosen (lowest validation NLL):")
    for sampler, (nll, h) in sorted(best.items()):
        lrs = sorted(c["lr"] for c in tried[sampler] if {k: v for k, v in c.items() if k != "lr"} ==
                     {k: v for k, v in h.items() if k != "lr"})
        edge = len(lrs) < 3 or h["lr"] in (lrs[0], lrs[-1])
        print(f"  {sampler}: {h}, validation NLL {nll:.4f}" + ("  (at the edge of its candidates: not bracketed)" if edge else ""))
    seeds = grid.DEFAULT_SEEDS[args.profile]
    test_specs = [records.RunSpec.make(args.task, sampler, {**task_wide, **h}, seed, args.profile)
                  for sampler, (_nll, h) in sorted(best.items()) for seed in range(seeds)]
    summary = executors.execute(test_specs, executors.RunOptions(results_dir=args.then_test, show_progress=True,
                                                           threads=args.threads, device=args.device),
                             jobs=args.jobs, log=lambda m: print(m, file=sys.stderr))
    print(summary.line())
    return summary.exit_status


if __name__ == "__main__":
    sys.exit(main())
