"""One MLP training step (forward, backward, prior gradient, ``step()``) per sampler: what a step
costs inside a training loop, where the noise draw competes with the forward and backward.

    python perf/bench_train_step.py [--rounds 3] [--steps 400]

Each sampler runs in its own process, ``rounds`` times in rotation, on 784-400-400-10 with random
inputs at batch 100 and torch's default thread count; it prints ms per step for every round. Not
part of the test run.
"""

from __future__ import annotations

import benchmarks  # noqa: F401  (first: the suite's short OpenMP spin-wait, see benchmarks/__init__.py)
import argparse
import subprocess
import sys
import time

CASES = ["sgd", "sgld", "psgld", "sghmc", "underdamped"]
LR = {"sgd": 0.05, "sgld": 0.05, "psgld": 1e-4, "sghmc": 0.005, "underdamped": 0.005}


def one(name: str, steps: int) -> float:
    import torch
    import torch.nn.functional as F

    import sgmcmc
    from benchmarks.models import build_model

    torch.manual_seed(0)
    x, y = torch.rand(50_000, 784), torch.randint(0, 10, (50_000,))
    model = build_model("mlp")
    params = list(model.parameters())
    opt = sgmcmc.get(name)(params, LR[name], num_data=50_000)

    def loop(n: int) -> None:
        for i in range(n):
            xb, yb = x[i * 100:(i + 1) * 100], y[i * 100:(i + 1) * 100]
            for p in params:
                p.grad = None
            F.cross_entropy(model(xb), yb).backward()
            for p in params:
                p.grad.add_(p.detach(), alpha=1 / 50_000)
            opt.step()

    loop(50)
    t0 = time.perf_counter()
    loop(steps)
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--one", metavar="SAMPLER", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(f"{one(args.one, args.steps):.3f}")
        return
    times: dict[str, list[float]] = {c: [] for c in CASES}
    for _ in range(args.rounds):
        for name in CASES:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True).stdout
            times[name].append(float(out))
    print("| sampler | ms per training step, each round |")
    print("|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in ts)} |")


if __name__ == "__main__":
    main()
