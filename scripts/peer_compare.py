"""Compare the posteriors peer samplers with the built-ins they mirror (docs/peers.md).

    python scripts/peer_compare.py                       # conformance side by side, then step cost
    python scripts/peer_compare.py --part cost           # only the step cost
    python scripts/peer_compare.py --part conformance --checks stationary,tempered

1. Conformance (``sgmcmc.testing``) of each pair, ours and the peer, at the same lr and own
   hyperparameters: the stationary-distribution checks (the numbers side by side) and the random
   number checks.
2. The cost of one step on the benchmark's MNIST MLP (784-400-400-10, 478k parameters, a random
   batch of 100), one thread, min over blocks of steps (timeit):
   - update only: ``step()`` of ours and of the adapter with the gradients already in ``p.grad``,
     and posteriors' own ``update`` called directly on its state with the same fixed gradient;
   - full step, the gradient included: ours ``zero_grad(); loss.backward(); step()``, against
     posteriors' ``update`` with its log posterior the model's (it differentiates it itself, with
     ``torch.func``), as posteriors' documentation writes it.

Needs posteriors: pip install -e '.[peers]'. Runs in a few minutes on one core.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import timeit
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sgmcmc  # noqa: E402
from sgmcmc.testing import run_check  # noqa: E402

#: (ours, peer, lr or None for the default, own hyperparameters): every pair at the suite's default
#: lr (0.4), and the momentum pairs also at lr 0.1, where posteriors' sghmc and sgnht are stable
PAIRS = [
    ("sgld", "posteriors-sgld", None, {}),
    ("sghmc", "posteriors-sghmc", None, {"friction": 0.1}),
    ("sghmc", "posteriors-sghmc", 0.1, {"friction": 0.1}),
    ("sgnht", "posteriors-sgnht", None, {"A": 0.1}),
    ("sgnht", "posteriors-sgnht", 0.1, {"A": 0.1}),
    ("underdamped", "posteriors-baoa", None, {"friction": 0.1}),
]
CHECKS = ("stationary", "tempered", "temperature_zero", "reproducible", "state_dict_resume")


def _cell(res) -> str:
    if res.status == "skipped":
        return "n/a"
    n = res.numbers
    if res.check in ("stationary", "tempered", "gradient_noise"):
        if "diverged_at" in n:
            return f"FAIL: diverged at step {n['diverged_at']}"
        body = f"{100 * n['max_abs_var_err']:.1f} %, {100 * n['stiff_var_err']:+.1f} %, ESS {n['ess_mean_min']:.0f}"
        return body if res.passed else f"FAIL: {body}"
    return "pass" if res.passed else "FAIL: " + res.message.split(";")[0][:80]


def conformance(checks) -> None:
    print("\n## Conformance, side by side (max |var err|, stiff-direction var err, min ESS)\n")
    print("| ours | peer | lr | hypers | check | ours | peer |")
    print("|---|---|---|---|---|---|---|")
    for ours, peer, lr, hyper in PAIRS:
        if ours not in sgmcmc.available():
            continue
        for check in checks:
            a = run_check(check, ours, lr=lr, **hyper)
            b = run_check(check, peer, lr=lr, **hyper)
            hy = ", ".join(f"{k}={v}" for k, v in hyper.items()) or "-"
            print(f"| {ours} | {peer} | {lr or 0.4} | {hy} | {check} | {_cell(a)} | {_cell(b)} |", flush=True)


# ------------------------------------------------------------------ step cost
def _best(fn, steps: int, blocks: int) -> float:
    """Seconds per call: the fastest of ``blocks`` blocks of ``steps`` calls."""
    fn()  # warm up (state, caches)
    return min(timeit.repeat(fn, number=steps, repeat=blocks)) / steps


def step_cost(steps: int, blocks: int) -> None:
    from torch.func import functional_call

    from benchmarks.models import build_model
    from benchmarks.peers import posteriors as peers

    torch.set_num_threads(1)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.split(":")[-1]
    n_data, batch = 60_000, 100
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 784, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    loss_fn = torch.nn.functional.cross_entropy

    def fresh_model():
        torch.manual_seed(0)
        return build_model("mlp")

    n_params = sum(p.numel() for p in fresh_model().parameters())
    print(f"\n## Step cost: MNIST MLP 784-400-400-10 ({n_params:,} parameters), batch {batch}, 1 thread, "
          f"{cpu.strip()}\n")
    print(f"min over {blocks} blocks of {steps} steps.\n")
    print("| pair | ours | adapter (posteriors via sgmcmc) | posteriors update() | ratio posteriors / ours |")
    print("|---|---|---|---|---|")
    pairs = [("sgld", "posteriors-sgld", {}), ("sghmc", "posteriors-sghmc", {"friction": 0.1}),
             ("underdamped", "posteriors-baoa", {"friction": 0.1})]
    full_rows = []
    for ours_name, peer_name, hyper in pairs:
        row = {}
        for label, name in (("ours", ours_name), ("adapter", peer_name)):
            model = fresh_model()
            params = list(model.parameters())
            opt = sgmcmc.get(name)(params, lr=1e-4, num_data=n_data, **hyper)
            loss_fn(model(x), y).backward()  # a fixed gradient in p.grad
            with torch.no_grad():
                row[label] = _best(opt.step, steps, blocks)
            # the full step, gradient included
            def full(model=model, opt=opt):
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
            if label == "ours":
                row["ours_full"] = _best(full, steps, blocks)
        # posteriors' own update on its own state, with the same fixed gradient
        cls = sgmcmc.get(peer_name)
        model = fresh_model()
        loss_fn(model(x), y).backward()
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        params = {k: p.detach().clone() for k, p in model.named_parameters()}
        kwargs = peers.translate(cls._their_name, 1e-4, n_data, 1.0, hyper.get("friction"))
        module = cls._module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            state = module.init(params) if not cls._has_momenta else module.init(params, momenta=0.0)

        def fixed_log_post(ps, _batch):
            return -sum((ps[k] * grads[k]).sum() for k in ps), torch.tensor([])

        row["theirs"] = _best(lambda: module.update(state, None, fixed_log_post, inplace=True, **kwargs), steps, blocks)

        # posteriors as its documentation writes it: the log posterior is the model's, per datum
        model2 = fresh_model()
        params2 = {k: p.detach().clone() for k, p in model2.named_parameters()}
        state2 = module.init(params2) if not cls._has_momenta else module.init(params2, momenta=0.0)

        def model_log_post(ps, b):
            out = functional_call(model2, ps, (b[0],))
            return -loss_fn(out, b[1]), out

        row["theirs_full"] = _best(lambda: module.update(state2, (x, y), model_log_post, inplace=True, **kwargs),
                                   steps, blocks)
        print(f"| {ours_name} / {peer_name} | {1e6 * row['ours']:.0f} us | {1e6 * row['adapter']:.0f} us | "
              f"{1e6 * row['theirs']:.0f} us | {row['theirs'] / row['ours']:.2f} |", flush=True)
        full_rows.append((ours_name, peer_name, row))
    print("\nFull step, gradient included (ours: zero_grad, forward, backward, step; posteriors: update with the "
          "model's log posterior):\n")
    print("| pair | ours | posteriors update() | ratio posteriors / ours |")
    print("|---|---|---|---|")
    for ours_name, peer_name, row in full_rows:
        print(f"| {ours_name} / {peer_name} | {1e3 * row['ours_full']:.2f} ms | {1e3 * row['theirs_full']:.2f} ms | "
              f"{row['theirs_full'] / row['ours_full']:.2f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("all", "conformance", "cost"), default="all")
    ap.add_argument("--checks", default=",".join(CHECKS), help="conformance checks to run (comma-separated)")
    ap.add_argument("--steps", type=int, default=30, help="steps per timing block")
    ap.add_argument("--blocks", type=int, default=5, help="timing blocks (the fastest counts)")
    args = ap.parse_args(argv)
    try:
        import benchmarks.peers.posteriors  # noqa: F401
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    import posteriors

    print(f"posteriors {posteriors.__version__}, torch {torch.__version__}")
    if args.part in ("all", "conformance"):
        conformance([c for c in args.checks.split(",") if c])
    if args.part in ("all", "cost"):
        step_cost(args.steps, args.blocks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
