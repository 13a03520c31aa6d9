"""Checks that need a CUDA GPU (skipped without one; run by the prepared device script
``perf/gpu_check.sh``): the samplers' state and noise stay on the device and have the right scale,
a chain continues bit for bit from a saved state there, and `--device cuda` runs the toy and MNIST
tasks end to end with records that say so and metrics that agree with the CPU's within their
statistical spread."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

import sgmcmc
from benchmarks.__main__ import main
from benchmarks.tasks.base import RunContext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SAMPLERS = ["sgd", "sgld", "psgld", "sghmc", "underdamped", "sgnht"]
LR = {"sgd": 1e-3, "sgld": 1e-3, "psgld": 1e-4, "sghmc": 1e-3, "underdamped": 1e-3, "sgnht": 1e-3}


@pytest.mark.parametrize("name", SAMPLERS)
def test_step_keeps_state_on_the_device_and_resumes_bit_for_bit(name):
    # 3 x 70,000 values: more than one 2^16 noise block, so the multi-segment path runs too
    p = torch.zeros(3, 70_000, device="cuda", requires_grad=True)
    q = torch.zeros(17, device="cuda", requires_grad=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    opt = sgmcmc.get(name)([p, q], lr=LR[name], num_data=10, generator=gen)
    for t in range(3):
        p.grad, q.grad = torch.full_like(p, 0.1), torch.full_like(q, -0.1)
        opt.step()
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                assert v.device.type == "cuda"
    assert torch.isfinite(p).all() and torch.isfinite(q).all()
    # torch.optim's state_dict() holds references to the live state: copy it, as torch.save would
    saved, snapshot = copy.deepcopy(opt.state_dict()), (p.detach().clone(), q.detach().clone())
    p.grad, q.grad = torch.full_like(p, 0.1), torch.full_like(q, -0.1)
    opt.step()
    after = (p.detach().clone(), q.detach().clone())
    with torch.no_grad():
        p.copy_(snapshot[0])
        q.copy_(snapshot[1])
    opt.load_state_dict(saved)
    opt.step()
    assert torch.equal(p, after[0]) and torch.equal(q, after[1])


def test_sgld_noise_on_cuda_has_the_contract_scale():
    # zero gradient: one step adds sqrt(2 h T / N) xi; 210k draws estimate the variance to ~0.3 %
    h, n, temp = 0.01, 50, 0.5
    p = torch.zeros(3, 70_000, device="cuda", requires_grad=True)
    opt = sgmcmc.get("sgld")([p], lr=h, num_data=n, temperature=temp,
                             generator=torch.Generator(device="cuda").manual_seed(1))
    p.grad = torch.zeros_like(p)
    opt.step()
    var = p.detach().double().var().item()
    assert var == pytest.approx(2 * h * temp / n, rel=0.02)
    assert abs(p.detach().double().mean().item()) < 4 * math.sqrt(var / p.numel())


def _records(folder):
    return [json.loads(f.read_text()) for f in sorted((folder / "records").glob("*.json"))]


def test_toy_suite_on_cuda_agrees_with_the_cpu(tmp_path):
    args = ["run", "toy", "--tasks", "gauss-iso-100", "--samplers", "sgld,psgld,sghmc", "--seeds", "1",
            "--profile", "quick", "--no-sweep", "--no-report"]
    assert main([*args, "--device", "cuda", "--results-dir", str(tmp_path / "gpu")]) == 0
    assert main([*args, "--device", "cpu", "--results-dir", str(tmp_path / "cpu")]) == 0
    gpu = {(r["config"]["task"], r["config"]["sampler"]): r for r in _records(tmp_path / "gpu")}
    cpu = {(r["config"]["task"], r["config"]["sampler"]): r for r in _records(tmp_path / "cpu")}
    assert gpu.keys() == cpu.keys() and len(gpu) == 3
    for key, rec in gpu.items():
        assert rec["status"] == "ok", key
        assert "cuda" in str(rec["provenance"]["device"]), rec["provenance"]
        g, c = rec["metrics"], cpu[key]["metrics"]
        assert rec["grad_evals"] == cpu[key]["grad_evals"]
        # different random numbers, the same chain law. On the CPU, seeds 0-2 of these quick runs give
        # variance errors 0.060-0.061 (sgld), 0.089-0.095 (psgld), 0.031-0.036 (sghmc): a spread of
        # ~0.005; twice the right noise variance would read ~0.7. Tolerance 0.02.
        assert abs(g["var_error"] - c["var_error"]) < 0.02, (key, g["var_error"], c["var_error"])
        assert abs(g["mean_error"] - c["mean_error"]) < 0.2, (key, g["mean_error"], c["mean_error"])


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_mnist_task_on_cuda_runs_every_sampler(model):
    import dataclasses

    from tests.test_mnist_task import synthetic_data
    from benchmarks.tasks import mnist as mnist_task

    def on_device(ctx, evaluate_on="test"):  # a task's data function hands over tensors on ctx.device
        data = synthetic_data(ctx, evaluate_on)
        return dataclasses.replace(data, train_x=data.train_x.to(ctx.device), train_y=data.train_y.to(ctx.device),
                                   test_x=data.test_x.to(ctx.device), test_y=data.test_y.to(ctx.device),
                                   ood={k: v.to(ctx.device) for k, v in data.ood.items()})

    task = mnist_task.MNISTTask("mnist-synthetic", model, ("quick",), "synthetic", data=on_device,
                                protocol_overrides={"epochs": 3, "burn_in_epochs": 1, "thin": 2, "batch_size": 20})
    for name in SAMPLERS:
        torch.manual_seed(0)
        result = task.run(sgmcmc.get(name), {"lr": 0.05 if name in ("sgd", "sgld") else LR[name] * 10},
                          RunContext(seed=0, profile="quick", device=torch.device("cuda")))
        assert result.metrics["samples"] > 0
        assert result.metrics["accuracy"] > 0.5, (model, name, result.metrics["accuracy"])
