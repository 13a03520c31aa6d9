"""``sgnht``, the stochastic gradient Nose-Hoover thermostat: its update by hand, its stationary
distribution and its thermostat's equilibrium against the exact answers, the guards (clamped
friction, T = 0), its state, the tested example of docs/adding-a-sampler.md, and a benchmark run.

The statistical tests run 256 chains as the rows of one float64 tensor on a diagonal Gaussian
(precisions 1 to 50, N = 100, exact gradients unless stated), started at 3 posterior sds, 3,000
steps of which 1,000 are burn-in, every step kept, at a fixed seed. What the theory says (see
:mod:`sgmcmc.sgnht`): theta ~ N(mu, T / lambda); the thermostat's mean is A (A + h N s^2 / (2 T)
under gradient noise of variance s^2 per coordinate) and its variance h T / N; the kinetic energy
the thermostat reads, E[u^2], is h T / N.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from pathlib import Path

import pytest
import torch

import sgmcmc
from sgmcmc import registry
from sgmcmc.sgnht import SGNHT

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------- the formula, by hand
from tests.test_samplers import N, SEED, SHAPES, grads_for, make_params, noise_stream  # noqa: E402,F401  (the shared fixtures)


def close(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_formula_by_hand_including_a_negative_and_a_clamped_thermostat():
    """v <- (1 - min(xi, 1)) v - h g + sqrt(2 A h T / N) eta; theta += v; xi += u^2 - h T / N with
    u = (v_old + v_new) / 2; xi starts at A. A tiny A lets xi go negative (1 - xi > 1, heating),
    and a gradient 40x larger on step 3 pushes it above 1 (the velocity factor is clamped at 0)."""
    h, T, A, steps = 0.05, 1.3, 0.001, 5
    scales = [1.0, 1.0, 40.0, 1.0, 1.0]
    params = make_params()
    opt = SGNHT(params, h, num_data=N, temperature=T, A=A, generator=torch.Generator().manual_seed(SEED))
    theta = [p.detach().clone() for p in params]
    v = [torch.zeros_like(t) for t in theta]
    xi = [torch.full_like(t, A) for t in theta]
    etas = noise_stream(SEED, steps)
    seen_negative = seen_clamped = False
    for t in range(steps):
        gs = grads_for(t, scales[t])
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
        seen_negative |= any(bool((x < 0).any()) for x in xi)
        seen_clamped |= any(bool((x > 1).any()) for x in xi)
        v_old = v
        v = [(1 - torch.clamp(x, max=1.0)) * vi - h * g + math.sqrt(2 * A * h * T / N) * e
             for x, vi, g, e in zip(xi, v, gs, etas[t])]
        theta = [th + vi for th, vi in zip(theta, v)]
        xi = [x + ((a + b) / 2) ** 2 - h * T / N for x, a, b in zip(xi, v_old, v)]
    assert seen_negative and seen_clamped  # both branches of the update were exercised
    close([p.detach() for p in params], theta)
    close([opt.state[p]["velocity"] for p in params], v)
    close([opt.state[p]["xi"] for p in params], xi)


# ---------------------------------------------------------------------- the stationary distribution
LAM = torch.tensor([1.0, 2.0, 5.0, 10.0, 20.0, 50.0], dtype=torch.float64)  # precisions of U
MU = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
NUM_DATA = 100


def run_gaussian(*, lr, A=0.1, T=1.0, grad_noise=0.0, sampler=SGNHT, chains=256, steps=3000, burn_in=1000, seed=0):
    """Chains on U = sum_i lambda_i (theta_i - mu_i)^2 / 2 (L = U / N). Returns the moments over
    chains and kept steps: mean and variance of theta, and (for sgnht) the mean and variance of
    xi and the mean of u^2, per coordinate."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.Parameter(MU + 3.0 * torch.randn(chains, 6, generator=g, dtype=torch.float64) / LAM.sqrt())
    hyper = {"A": A} if sampler is SGNHT else {"friction": A}
    opt = sampler([x], lr, num_data=NUM_DATA, temperature=T, generator=torch.Generator().manual_seed(seed + 1), **hyper)
    noise_gen = torch.Generator().manual_seed(seed + 2)
    sums = {k: torch.zeros(6, dtype=torch.float64) for k in ("x", "x2", "xi", "xi2", "u2")}
    kept = 0
    for t in range(steps):
        with torch.no_grad():
            grad = (x - MU) * LAM / NUM_DATA
            if grad_noise:
                grad += grad_noise * torch.randn(x.shape, generator=noise_gen, dtype=torch.float64)
        x.grad = grad
        v_old = opt.state[x]["velocity"].clone() if t else torch.zeros_like(x)
        opt.step()
        if t >= burn_in:
            xd = x.detach()
            sums["x"] += xd.sum(0)
            sums["x2"] += (xd * xd).sum(0)
            if sampler is SGNHT:
                st = opt.state[x]
                sums["xi"] += st["xi"].sum(0)
                sums["xi2"] += (st["xi"] ** 2).sum(0)
                sums["u2"] += (0.25 * (v_old + st["velocity"]) ** 2).sum(0)
            kept += chains
    m = {k: v / kept for k, v in sums.items()}
    return {"mean": m["x"], "var": m["x2"] - m["x"] ** 2, "xi_mean": m["xi"], "xi_var": m["xi2"] - m["xi"] ** 2,
            "u2": m["u2"]}


@pytest.mark.parametrize("T", [1.0, 0.3])
def test_stationary_distribution_and_thermostat_equilibrium_match_the_theory(T):
    """At lr 0.2 (h lambda / N up to 0.1): each mean within 0.05 posterior sds of mu, each
    variance within 5 % of T / lambda (the discretisation bias of sghmc at these steps is <= 3 %);
    the thermostat's mean within 0.003 of A (Monte-Carlo error ~0.0005; Ding et al.'s reading of
    the kinetic energy, v_new^2, would settle at 0.1057), its variance within 25 % of h T / N, and
    E[u^2] within 1 % of h T / N."""
    lr, A = 0.2, 0.1
    out = run_gaussian(lr=lr, A=A, T=T)
    sd = torch.sqrt(T / LAM)
    assert float(((out["mean"] - MU) / sd).abs().max()) < 0.05
    var_err = out["var"] / (T / LAM) - 1.0
    assert float(var_err.abs().max()) < 0.05, var_err
    target = lr * T / NUM_DATA
    assert float((out["xi_mean"] - A).abs().max()) < 0.003, out["xi_mean"]
    assert float((out["xi_var"] / target - 1.0).abs().max()) < 0.25, out["xi_var"] / target
    assert float((out["u2"] / target - 1.0).abs().max()) < 0.01, out["u2"] / target


def test_the_thermostat_absorbs_gradient_noise_that_sghmc_does_not():
    """Gradient noise of sd s = 0.1 per coordinate (h = 0.1, N = 100, T = 1): the thermostat
    settles at A + h N s^2 / (2 T) = 0.15 and the variances stay within 5 % of the truth, while
    sghmc at friction A runs hot by about h N s^2 / (2 A T) = 50 %."""
    lr, A, s = 0.1, 0.1, 0.1
    out = run_gaussian(lr=lr, A=A, grad_noise=s)
    assert float((out["xi_mean"] - (A + lr * NUM_DATA * s * s / 2)).abs().max()) < 0.005, out["xi_mean"]
    assert float((out["var"] * LAM - 1.0).abs().max()) < 0.05, out["var"] * LAM
    hot = run_gaussian(lr=lr, A=A, grad_noise=s, sampler=sgmcmc.SGHMC, steps=2000)
    assert float((hot["var"] * LAM - 1.0).min()) > 0.35


# ---------------------------------------------------------------------- T = 0 and the guard
def test_at_temperature_zero_no_noise_is_drawn_the_thermostat_only_rises_and_the_chain_reaches_the_mode():
    trajectories = []
    for seed in (0, 1):
        x = torch.nn.Parameter(MU + 3.0 / LAM.sqrt())
        gen = torch.Generator().manual_seed(seed)
        before = gen.get_state()
        opt = SGNHT([x], 0.2, num_data=NUM_DATA, temperature=0.0, generator=gen)
        xi_prev, traj = None, []
        for _ in range(3000):
            x.grad = (x.detach() - MU) * LAM / NUM_DATA
            opt.step()
            xi = opt.state[x]["xi"].clone()
            assert xi_prev is None or bool((xi >= xi_prev).all())
            xi_prev = xi
            traj.append(x.detach().clone())
        assert torch.equal(gen.get_state(), before)  # nothing drawn
        trajectories.append(torch.stack(traj))
    assert torch.equal(trajectories[0], trajectories[1])
    assert float(((trajectories[0][-1] - MU) * LAM.sqrt()).abs().max()) < 1e-2


def test_a_hot_start_drives_the_thermostat_above_2_and_the_clamp_keeps_the_chain_finite():
    """Started 1,000 sds away, u^2 is far above h T / N and xi passes 2, where an unclamped
    velocity factor 1 - xi < -1 would amplify v every step. With the clamp the chain descends as
    SGD does once xi >= 1 (the slowest coordinate, lambda = 1, by the factor 1 - h lambda / N a
    step: to 1000 * 0.998^2000 = 18 sds) and stays finite."""
    x = torch.nn.Parameter((MU + 1000.0 / LAM.sqrt()).repeat(4, 1))
    opt = SGNHT([x], 0.2, num_data=NUM_DATA, generator=torch.Generator().manual_seed(0))
    for _ in range(2000):
        x.grad = (x.detach() - MU) * LAM / NUM_DATA
        opt.step()
    assert float(opt.state[x]["xi"].min()) > 2.0
    assert bool(torch.isfinite(x).all())
    assert float(((x.detach() - MU) * LAM.sqrt()).abs().max()) < 20.0


def test_each_coordinate_has_its_own_thermostat_so_chains_held_as_rows_do_not_couple():
    """A chain started 1,000 sds away, as row 0 of the tensor, leaves row 1 as it would be alone."""
    def rows(x0):
        x = torch.nn.Parameter(x0.clone())
        opt = SGNHT([x], 0.2, num_data=NUM_DATA, temperature=0.0)
        for _ in range(300):
            x.grad = (x.detach() - MU) * LAM / NUM_DATA
            opt.step()
        return x.detach(), opt.state[x]["xi"]

    calm = MU + 1.0 / LAM.sqrt()
    both, xi_both = rows(torch.stack([MU + 1000.0 / LAM.sqrt(), calm]))
    alone, xi_alone = rows(calm[None])
    torch.testing.assert_close(both[1], alone[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(xi_both[1], xi_alone[0], rtol=1e-12, atol=1e-14)
    assert float(xi_both[0].min()) > 10 * float(xi_both[1].max())


# ---------------------------------------------------------------------- state
def _steps(opt, params, ts):
    for t in ts:
        for p, g in zip(params, grads_for(t, dtype=params[0].dtype)):
            p.grad = g
        opt.step()


def test_state_dict_round_trip_carries_velocity_and_thermostat_and_continues_bit_for_bit():
    params = make_params(torch.float32)
    opt = SGNHT(params, 0.05, num_data=N, A=0.2, generator=torch.Generator().manual_seed(SEED))
    _steps(opt, params, range(5))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # state_dict() holds the live tensors, as torch.optim's does
    buffer.seek(0)
    saved = torch.load(buffer)
    assert set(saved["state"][0]) == {"velocity", "xi"}
    assert saved["state"][0]["xi"].shape == params[0].shape
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = SGNHT(copies, 0.05, num_data=N, A=0.2, generator=torch.Generator().manual_seed(999))
    resumed.load_state_dict(saved)
    for p, q in zip(params, copies):
        assert torch.equal(resumed.state[q]["xi"], opt.state[p]["xi"])
    _steps(opt, params, range(5, 10))
    _steps(resumed, copies, range(5, 10))
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["xi"], resumed.state[q]["xi"])


def test_the_thermostat_moves_with_its_parameter_to_another_dtype():
    """model.double() mid-chain: the next step runs in float64 from the float32 state, cast (T = 0,
    so the step is known exactly: v' = (1 - min(xi, 1)) v - h g, xi' = xi + ((v + v') / 2)^2)."""
    model = torch.nn.Linear(3, 2)
    h = 0.05
    opt = SGNHT(model.parameters(), h, num_data=N, temperature=0.0)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
    v, xi = (opt.state[model.weight][k].double() for k in ("velocity", "xi"))
    model.double()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    state = opt.state[model.weight]
    assert state["xi"].dtype == state["velocity"].dtype == torch.float64
    v_new = (1 - xi.clamp(max=1.0)) * v - h
    torch.testing.assert_close(state["velocity"], v_new, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(state["xi"], xi + ((v + v_new) / 2) ** 2, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------- the documented example
def docs_example() -> str:
    """The python block after the ``<!-- example: sgnht`` marker in docs/adding-a-sampler.md."""
    text = (ROOT / "docs" / "adding-a-sampler.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- example: sgnht\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert found, "docs/adding-a-sampler.md has no python block after '<!-- example: sgnht' "
    return found.group(1)


def test_the_documented_example_is_the_builtin_sgnht_bit_for_bit(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    namespace = {"__name__": "docs_sgnht_example"}
    exec(compile(docs_example(), "docs/adding-a-sampler.md", "exec"), namespace)
    cls = sgmcmc.get("my-sgnht")
    assert cls is namespace["MySGNHT"] and cls is not SGNHT
    assert {k: dataclasses.replace(v, doc="") for k, v in cls.hypers.items()} == \
        {k: dataclasses.replace(v, doc="") for k, v in SGNHT.hypers.items()}  # the same range and default
    for T in (1.0, 0.0):
        a, b = make_params(torch.float32), make_params(torch.float32)
        mine = cls(a, 0.05, num_data=N, temperature=T, A=0.3, generator=torch.Generator().manual_seed(SEED))
        ours = SGNHT(b, 0.05, num_data=N, temperature=T, A=0.3, generator=torch.Generator().manual_seed(SEED))
        for t in range(30):
            scale = 30.0 if t == 3 else 1.0  # once past xi = 1, so the clamp is compared too
            for p, q, g in zip(a, b, grads_for(t, scale, torch.float32)):
                p.grad, q.grad = g, g.clone()
            mine.step()
            ours.step()
            for p, q in zip(a, b):
                assert torch.equal(p, q), (T, t)
        for p, q in zip(a, b):
            assert torch.equal(mine.state[p]["xi"], ours.state[q]["xi"])


# ---------------------------------------------------------------------- the benchmark
def test_sgnht_runs_through_the_benchmark_on_a_toy_task(tmp_path, monkeypatch):
    """`python -m benchmarks run toy --tasks gauss-iso-100 --samplers sgnht --seeds 1 --profile quick
    --no-sweep`, with the quick profile shrunk to a few hundred steps: a finished record, with
    finite metrics, made by this class with its default A."""
    import json

    from benchmarks.__main__ import main
    from benchmarks.tasks import gaussian

    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", dict(chains=4, steps=400, burn_in=100, thin=5))
    rc = main(["run", "toy", "--tasks", "gauss-iso-100", "--samplers", "sgnht", "--seeds", "1", "--profile", "quick",
               "--results-dir", str(tmp_path), "--no-sweep"])
    assert rc == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert record["status"] == "ok", record.get("error")
    assert record["provenance"]["sampler"]["class"] == "sgmcmc.sgnht.SGNHT"
    assert record["provenance"]["sampler"]["hypers"]["A"] == 0.1
    assert all(math.isfinite(v) for v in record["metrics"].values())
