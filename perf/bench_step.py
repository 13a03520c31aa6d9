"""One ``step()`` of every sampler on the parameters of a 784-400-400-10 MLP (478,410 float32 values).

Run (not part of the default test run):

    python -m pytest perf/bench_step.py --benchmark-only --benchmark-columns=min,median,mean

Side by side in one run: each sampler's step, ``torch.optim.SGD(foreach=True)`` (the update alone)
and ``normal_()`` on one flat buffer of the same size (the noise alone). The goal: every sampler's
step costs at most 1.2x its noise. The gradients are filled with random values once; torch keeps
its default thread count. ``python perf/bench_step.py [--json FILE]`` prints the markdown table of
perf/README_step.md from a ``--benchmark-json`` file, or, without one, times the same steps by hand,
interleaved (every round warms and times each case once, so a busy machine skews them alike);
``python perf/bench_step.py --before REV`` times the samplers of git revision REV against the
current ones, interleaved in one process.
"""

from __future__ import annotations

import benchmarks  # noqa: F401  (first: the suite's short OpenMP spin-wait, see benchmarks/__init__.py)
import sys
import time

import pytest
import torch

import sgmcmc

SIZES = [(400, 784), (400,), (400, 400), (400,), (10, 400), (10,)]  # nn.Linear weights and biases
NUM_PARAMS = sum(torch.Size(s).numel() for s in SIZES)  # 478,410
NUM_DATA = 50_000
SAMPLERS = {
    "sgd": dict(lr=0.1),
    "sgld": dict(lr=0.1),
    "psgld": dict(lr=1e-3, alpha=0.99),
    "sghmc": dict(lr=0.01, friction=0.1),
    "underdamped": dict(lr=0.01, friction=0.1),
}


def mlp_params() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.05) for s in SIZES]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    return params


def _finite_check_v0(grads) -> bool:
    """The finite check as first written (foreach 2-norms, stack, isfinite, all), for comparison."""
    return bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())


def make_step(name: str):
    """A zero-argument callable doing one update of ``name``.

    ``name``: a sampler (as constructed by default); 'torch_sgd'; 'normal_' (one call on the flat buffer: the issue's reference); 'noise_blocks' (the
    samplers' own draw alone: ``Sampler._noise``, blocks from parallel streams); 'sgld_no_check' (sgld
    with check_finite=False);
    'finite_check' (the sampler's NaN/Inf check alone) or 'finite_check_v0' (the check as first written).
    """
    if name == "normal_":
        buf = torch.empty(NUM_PARAMS)
        return lambda: buf.normal_()
    params = mlp_params()
    if name == "noise_blocks":
        opt = sgmcmc.SGLD(params, 0.1, num_data=NUM_DATA)
        opt.step()
        return lambda: opt._noise(params)
    if name == "torch_sgd":
        return torch.optim.SGD(params, lr=0.1, foreach=True).step
    if name == "sgld_no_check":
        opt = sgmcmc.SGLD(params, 0.1, num_data=NUM_DATA, check_finite=False)
        opt.step()
        return opt.step
    grads = [p.grad for p in params]
    if name == "finite_check":
        opt = sgmcmc.SGLD(params, 0.1, num_data=NUM_DATA)
        offsets = list(range(len(params)))
        return lambda: opt._check_finite(grads, 0, offsets)
    if name == "finite_check_v0":
        return lambda: _finite_check_v0(grads)
    return _sampler_step(sgmcmc, name, params)


def _sampler_step(mod, name: str, params: list[torch.Tensor], **extra):
    """``opt.step`` of sampler ``name`` from package ``mod`` with its SAMPLERS settings, after one
    untimed step (which allocates its state and buffers)."""
    kw = dict(SAMPLERS[name])
    lr = kw.pop("lr")
    opt = mod.get(name)(params, lr, num_data=NUM_DATA, **kw, **extra)
    opt.step()
    return opt.step


CASES = ["normal_", "noise_blocks", "torch_sgd", *SAMPLERS, "sgld_no_check", "finite_check", "finite_check_v0"]


@pytest.mark.parametrize("name", CASES)
def test_step(benchmark, name):
    assert NUM_PARAMS == 478_410
    benchmark.group = "one step, 784-400-400-10 MLP"
    step = make_step(name)
    benchmark.pedantic(step, rounds=300, iterations=1, warmup_rounds=20)


# ---------------------------------------------------------------------- table
def _table(medians: dict[str, float], mins: dict[str, float]) -> str:
    ref, own = medians["normal_"], medians.get("noise_blocks", float("nan"))
    lines = ["| update | median ms | min ms | median / normal_ | median / noise_blocks |", "|---|---|---|---|---|"]
    for name in CASES:
        if name in medians:
            lines.append(f"| {name} | {medians[name] * 1e3:.3f} | {mins[name] * 1e3:.3f} | {medians[name] / ref:.2f} "
                         f"| {medians[name] / own:.2f} |")
    return "\n".join(lines)


def _from_json(path: str) -> str:
    import json

    data = json.load(open(path))
    med, mn = {}, {}
    for b in data["benchmarks"]:
        name = b["params"]["name"]
        med[name], mn[name] = b["stats"]["median"], b["stats"]["min"]
    return _table(med, mn)


def _interleaved(steps: dict, rounds: int, warm: int) -> tuple[dict, dict]:
    """Each round runs every case ``warm`` times untimed (so its memory is in cache, as in the
    pytest-benchmark run) and times the next call: a busy neighbour skews every case alike instead
    of whichever happened to run at the time."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(warm):
                step()
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    med = {n: sorted(ts)[len(ts) // 2] for n, ts in times.items()}
    mn = {n: min(ts) for n, ts in times.items()}
    return med, mn


def _by_hand(rounds: int = 300, warm: int = 2) -> str:
    med, mn = _interleaved({name: make_step(name) for name in CASES}, rounds, warm)
    return _table(med, mn)


def _before_after(rev: str, rounds: int = 200, warm: int = 2) -> str:
    """The samplers of git revision ``rev`` (extracted to a temporary package) against the current
    ones, interleaved in one process; ratios are to ``normal_`` and, more robust on a busy machine,
    min over min."""
    import importlib
    import subprocess
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    tmp = Path(tempfile.mkdtemp())
    pkg = tmp / "sgmcmc_before"
    pkg.mkdir()
    files = subprocess.run(["git", "ls-tree", "--name-only", rev, "sgmcmc/"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        if f.endswith(".py"):
            text = subprocess.run(["git", "show", f"{rev}:{f}"], cwd=root, check=True, capture_output=True,
                                  text=True).stdout
            (pkg / Path(f).name).write_text(text)
    sys.path.insert(0, str(tmp))
    before = importlib.import_module("sgmcmc_before")
    steps = {"normal_": make_step("normal_"), "noise_blocks": make_step("noise_blocks")}
    for name in SAMPLERS:
        for label, mod in ((f"{name} ({rev})", before), (name, sgmcmc)):
            steps[label] = _sampler_step(mod, name, mlp_params())
    med, mn = _interleaved(steps, rounds, warm)
    lines = ["| update | median ms | min ms | median / normal_ | min / min normal_ |", "|---|---|---|---|---|"]
    for name in steps:
        lines.append(f"| {name} | {med[name] * 1e3:.3f} | {mn[name] * 1e3:.3f} | {med[name] / med['normal_']:.2f} "
                     f"| {mn[name] / mn['normal_']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--json":
        print(_from_json(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--before":
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(_before_after(sys.argv[2]))
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(_by_hand())
