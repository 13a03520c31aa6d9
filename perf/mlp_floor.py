"""The floor under one MLP run of the MNIST default profile on this machine: what its parts cost when
each is done by torch alone, with no sampler, task or runner around it.

    python perf/mlp_floor.py [--rounds 3] [--threads N]

A run of the default profile (``benchmarks/tasks/mnist.py``) is 20 epochs of 500 steps at batch 100
on the 784-400-400-10 MLP, then 50 evaluation passes over the 38,724 test and OOD images (MNIST
test, notMNIST_small, Fashion-MNIST test), one for each kept sample. This times, on random data of
those shapes and torch's thread count:

- ``train``: one step of a bare loop, forward, cross-entropy, backward and ``torch.optim.SGD``
  (what SGD's run cannot go below);
- ``normal_``: the 478,410 normals a sampler adds each step, as torch draws them (one thread);
- ``noise blocks``: the same draw as the samplers make it (blocks of 2^16 from parallel streams);
- ``eval``: one forward pass and softmax over 38,724 images.

It prints each part's median over ``rounds`` and the sums they imply for 10,000 steps and 50 passes:
SGD's floor (train + eval) and a sampler's (train + noise blocks + eval, before its update
arithmetic). Not part of the test run; no data needed.
"""

from __future__ import annotations

import benchmarks  # noqa: F401  (first: the suite's short OpenMP spin-wait, see benchmarks/__init__.py)
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import sgmcmc
from benchmarks.models import build_model

STEPS, PASSES, EVAL_IMAGES, BATCH = 10_000, 50, 38_724, 100


def _median_time(fn, repeat: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean seconds of one call in ``repeat`` calls."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("mlp")
    params = list(model.parameters())
    x, y = torch.rand(50_000, 784), torch.randint(0, 10, (50_000,))
    opt = torch.optim.SGD(params, lr=0.01)
    pos = [0]

    def train_step() -> None:
        i = pos[0] = (pos[0] + 1) % (50_000 // BATCH)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i * BATCH:(i + 1) * BATCH]), y[i * BATCH:(i + 1) * BATCH]).backward()
        opt.step()

    numel = sum(p.numel() for p in params)
    buf = torch.empty(numel)
    noise_params = [p.detach().clone().requires_grad_(True) for p in params]  # the MLP's shapes, one bucket
    for p in noise_params:
        p.grad = torch.zeros_like(p)
    sampler = sgmcmc.get("sgld")(noise_params, lr=1e-3, num_data=50_000)
    sampler.step()  # allocates the buffer and the noise streams
    eval_x = torch.rand(EVAL_IMAGES, 784)

    @torch.inference_mode()
    def eval_pass() -> None:
        F.softmax(model(eval_x), dim=1)

    parts = {
        "train": _median_time(train_step, 500, args.rounds),
        "normal_": _median_time(buf.normal_, 200, args.rounds),
        "noise blocks": _median_time(lambda: sampler._noise(noise_params), 200, args.rounds),
        "eval": _median_time(eval_pass, 3, args.rounds),
    }
    totals = {
        "SGD run floor (train + eval)": STEPS * parts["train"] + PASSES * parts["eval"],
        "sampler run floor (train + noise blocks + eval)":
            STEPS * (parts["train"] + parts["noise blocks"]) + PASSES * parts["eval"],
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {numel:,} parameters, "
          f"median of {args.rounds} rounds")
    for name, sec in parts.items():
        unit = f"{sec * 1e3:.3f} ms" + (f" a step, {STEPS * sec:.1f} s over {STEPS:,} steps" if name != "eval"
                                        else f" a pass, {PASSES * sec:.1f} s over {PASSES} passes")
        print(f"  {name:<14} {unit}")
    for name, sec in totals.items():
        print(f"  {name}: {sec:.1f} s")
    return {**parts, **totals}


if __name__ == "__main__":
    main()
