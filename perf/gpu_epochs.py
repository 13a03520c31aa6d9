"""Epoch times of the MNIST networks on a device: the prepared GPU check of the scale-out issue.

    python perf/gpu_epochs.py --device cuda [--epochs 3] [--samplers sgd,sgld]
    python perf/gpu_epochs.py --device cpu --epochs 1        # the CPU figures beside it

Runs the real MNIST task (MLP and CNN) through the same code path as the suite
(``MNISTTask.run``, data moved to the device once, batches, sampler noise and evaluation there) for
a few epochs, and prints one markdown row per (network, sampler): seconds per training epoch (the
sampling loop only) and per evaluation pass, plus the test accuracy as a sanity check.
Needs the datasets (``python -m benchmarks data fetch``). Nothing else in the suite needs a GPU.
"""

from __future__ import annotations

import argparse
import sys

import torch

import sgmcmc
from benchmarks.executors import resolve_device, seed_everything
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.mnist import MNISTTask

HYPER = {"sgd": {"lr": 0.1}, "sgld": {"lr": 0.1}, "psgld": {"lr": 0.001}, "sghmc": {"lr": 0.01},
         "underdamped": {"lr": 0.01}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samplers", default="sgd,sgld")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.epochs} epochs, the last one keeps 5 samples\n")
    print("| network | sampler | device | s / train epoch | s / eval pass | test acc |")
    print("|---|---|---|---|---|---|")
    for model in args.models.split(","):
        task = MNISTTask(f"mnist-{model}", model, ("quick",), "timing",
                         protocol_overrides={"epochs": args.epochs, "burn_in_epochs": args.epochs - 1, "thin": 100})
        for sampler in args.samplers.split(","):
            seed_everything(0)
            ctx = RunContext(seed=0, profile="quick", device=device, data_dir=args.data_dir)
            result = task.run(sgmcmc.get(sampler), HYPER[sampler], ctx)
            m = result.metrics
            print(f"| {model} | {sampler} | {device.type} | {m['train_time_s'] / args.epochs:.2f} | "
                  f"{m['eval_time_s'] / m['samples']:.3f} | {m['accuracy']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
