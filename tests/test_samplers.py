"""Exact math of every built-in sampler: with a fixed generator, steps equal the docs/contract.md formulas
computed here by hand; plus the base class's bookkeeping (buckets, skipped parameters, finite
check, validation messages, state dict).

The noise a step uses is one flat N(0, 1) buffer per (device, dtype) bucket, filled by one
``normal_`` call and split in parameter order, so ``torch.randn(total, generator=g)`` seeded alike
reproduces it. Tests run in float64 and compare with a relative tolerance of 1e-12.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sgmcmc
from sgmcmc import HyperparameterError, NonFiniteGradientError

SHAPES = [(3, 4), (5,), (2, 2, 2)]
N = 40
SEED = 1234


def make_params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SHAPES]


def grads_for(step: int, scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(100 + step)
    return [scale * torch.randn(s, generator=g, dtype=dtype) for s in SHAPES]


def noise_stream(seed: int, steps: int, dtype=torch.float64):
    """The per-step noise a sampler with generator=Generator().manual_seed(seed) draws."""
    g = torch.Generator().manual_seed(seed)
    total = sum(math.prod(s) for s in SHAPES)
    out = []
    for _ in range(steps):
        flat = torch.randn(total, generator=g, dtype=dtype)
        out.append([c.view(s) for c, s in zip(torch.split(flat, [math.prod(s) for s in SHAPES]), SHAPES)])
    return out


def run(name, steps, lr=0.05, lrs=None, **kw):
    params = make_params()
    opt = sgmcmc.get(name)(params, lr, num_data=N, generator=torch.Generator().manual_seed(SEED), **kw)
    for t in range(steps):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        for p, g in zip(params, grads_for(t)):
            p.grad = g
        opt.step()
    return [p.detach() for p in params], opt


def close(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------- the formulas, by hand
def test_sgld_formula():
    h, T, steps = 0.05, 0.7, 3
    got, _ = run("sgld", steps, lr=h, temperature=T)
    theta = [p.detach().clone() for p in make_params()]
    xis = noise_stream(SEED, steps)
    for t in range(steps):
        theta = [th - h * g + math.sqrt(2 * h * T / N) * xi for th, g, xi in zip(theta, grads_for(t), xis[t])]
    close(got, theta)


def test_sgld_at_zero_temperature_is_sgd_exactly():
    for dtype in (torch.float32, torch.float64):
        a, b = make_params(dtype), make_params(dtype)
        sgld = sgmcmc.SGLD(a, 0.1, num_data=N, temperature=0.0)
        sgd = sgmcmc.SGD(b, 0.1, num_data=N)
        torch.manual_seed(0)
        for t in range(5):
            for p, q, g in zip(a, b, grads_for(t, dtype=dtype)):
                p.grad, q.grad = g.clone(), g.clone()
            sgld.step()
            sgd.step()
        for p, q in zip(a, b):
            assert torch.equal(p, q)


def test_sgd_formula_ignores_temperature_and_noise():
    h = 0.05
    got, _ = run("sgd", 2, lr=h, temperature=3.0)
    theta = [p.detach().clone() for p in make_params()]
    for t in range(2):
        theta = [th - h * g for th, g in zip(theta, grads_for(t))]
    close(got, theta)


def test_psgld_formula_including_first_step_init():
    h, T, alpha, eps, steps = 0.01, 0.8, 0.9, 1e-3, 3
    got, opt = run("psgld", steps, lr=h, temperature=T, alpha=alpha, eps=eps)
    theta = [p.detach().clone() for p in make_params()]
    xis = noise_stream(SEED, steps)
    V = None
    for t in range(steps):
        gs = grads_for(t)
        V = [g * g for g in gs] if V is None else [alpha * v + (1 - alpha) * g * g for v, g in zip(V, gs)]
        G = [1.0 / (eps + torch.sqrt(v)) for v in V]
        theta = [th - h * Gi * g + torch.sqrt(2 * h * T * Gi / N) * xi for th, Gi, g, xi in zip(theta, G, gs, xis[t])]
    close(got, theta)
    close([opt.state[p]["square_avg"] for p in opt.param_groups[0]["params"]], V)


def test_sghmc_formula():
    h, T, f, steps = 0.05, 1.3, 0.3, 3
    got, opt = run("sghmc", steps, lr=h, temperature=T, friction=f)
    theta = [p.detach().clone() for p in make_params()]
    v = [torch.zeros_like(th) for th in theta]
    xis = noise_stream(SEED, steps)
    for t in range(steps):
        v = [(1 - f) * vi - h * g + math.sqrt(2 * f * h * T / N) * xi for vi, g, xi in zip(v, grads_for(t), xis[t])]
        theta = [th + vi for th, vi in zip(theta, v)]
    close(got, theta)
    close([opt.state[p]["velocity"] for p in opt.param_groups[0]["params"]], v)


def test_sghmc_friction_one_is_sgld_with_lr_squared_scaling():
    """friction = 1 forgets the velocity: theta += -h g + sqrt(2 h T / N) xi, i.e. SGLD."""
    a, _ = run("sghmc", 3, lr=0.05, friction=1.0)
    b, _ = run("sgld", 3, lr=0.05)
    close(a, b)


def test_underdamped_baoab_formula_with_pending_half_kick_and_lr_change():
    """BAOAB, one gradient a step: the closing B of step n uses step n's lr and the next gradient."""
    T, f = 0.9, 0.4
    lrs = [0.05, 0.02, 0.08]  # an lr schedule: the pending half kick keeps each step's own lr
    got, opt = run("underdamped", 3, lrs=lrs, temperature=T, friction=f)
    c = math.exp(-f)
    theta = [p.detach().clone() for p in make_params()]
    u = [torch.zeros_like(th) for th in theta]
    xis = noise_stream(SEED, 3)
    pending = 0.0
    for t, h in enumerate(lrs):
        gs = grads_for(t)  # the gradient at the current theta
        u = [ui - pending * g for ui, g in zip(u, gs)]  # B: closing half kick of the previous step
        u = [ui - 0.5 * h * g for ui, g in zip(u, gs)]  # B: opening half kick
        theta = [th + 0.5 * ui for th, ui in zip(theta, u)]  # A
        s = math.sqrt((1 - c * c) * h * T / N)
        u = [c * ui + s * xi for ui, xi in zip(u, xis[t])]  # O, exact
        theta = [th + 0.5 * ui for th, ui in zip(theta, u)]  # A
        pending = 0.5 * h
    close(got, theta)
    params = opt.param_groups[0]["params"]
    close([opt.state[p]["velocity"] for p in params], u)
    assert all(opt.state[p]["pending_half_kick"] == pytest.approx(0.5 * lrs[-1]) for p in params)


def test_underdamped_skipped_parameter_keeps_its_own_pending_kick():
    """A parameter with grad None on step 1 gets only the opening half kick on its first real step."""
    h, f = 0.05, 0.4
    c = math.exp(-f)
    params = make_params()
    opt = sgmcmc.UnderdampedLangevin(params, h, num_data=N, friction=f, generator=torch.Generator().manual_seed(SEED))
    g0, g1 = grads_for(0), grads_for(1)
    params[0].grad, params[1].grad, params[2].grad = g0[0], None, g0[2]
    opt.step()
    b0 = params[1].detach().clone()
    for p, g in zip(params, g1):
        p.grad = g
    # replay the generator: step 1 drew noise for params 0 and 2 only
    gen = torch.Generator().manual_seed(SEED)
    torch.randn(12 + 8, generator=gen, dtype=torch.float64)
    xi = torch.randn(12 + 5 + 8, generator=gen, dtype=torch.float64)[12:17]
    opt.step()
    u = -0.5 * h * g1[1]
    theta = b0 + 0.5 * u
    u = c * u + math.sqrt((1 - c * c) * h / N) * xi
    theta = theta + 0.5 * u
    torch.testing.assert_close(params[1].detach(), theta, rtol=1e-12, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 1.0),
    temperature=st.floats(0.0, 2.0),
    num_data=st.integers(1, 10**6),
    friction=st.floats(0.01, 1.0),
)
def test_one_step_formulas_hold_for_any_hyperparameters(lr, temperature, num_data, friction):
    theta0 = make_params()
    g = grads_for(0)
    xi = noise_stream(SEED, 1)[0]
    for name, expected in (
        ("sgld", [th - lr * gi + math.sqrt(2 * lr * temperature / num_data) * x for th, gi, x in zip(theta0, g, xi)]),
        ("sghmc", [th - lr * gi + math.sqrt(2 * friction * lr * temperature / num_data) * x
                   for th, gi, x in zip(theta0, g, xi)]),
    ):
        params = make_params()
        kw = {"friction": friction} if name == "sghmc" else {}
        opt = sgmcmc.get(name)(params, lr, num_data=num_data, temperature=temperature,
                               generator=torch.Generator().manual_seed(SEED), **kw)
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
        for p, e in zip(params, expected):
            torch.testing.assert_close(p.detach(), e.detach(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- buckets and groups
def test_mixed_dtypes_and_param_groups_each_use_their_own_lr():
    a = torch.nn.Parameter(torch.ones(3, dtype=torch.float32))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    c = torch.nn.Parameter(torch.ones(4, dtype=torch.float32))
    opt = sgmcmc.SGLD([{"params": [a, b]}, {"params": [c], "lr": 0.5}], 0.1, num_data=N, temperature=0.0)
    for p in (a, b, c):
        p.grad = torch.ones_like(p)
    opt.step()
    assert torch.equal(a, torch.full((3,), 0.9, dtype=torch.float32))
    assert torch.equal(b, torch.full((2,), 0.9, dtype=torch.float64))
    assert torch.equal(c, torch.full((4,), 0.5, dtype=torch.float32))


def test_grad_none_is_skipped_by_every_sampler():
    for name in sgmcmc.available():
        if name not in {"sgd", "sgld", "psgld", "sghmc", "underdamped"}:
            continue
        params = make_params()
        opt = sgmcmc.get(name)(params, 0.05, num_data=N)
        params[0].grad = torch.ones_like(params[0])
        before = [p.detach().clone() for p in params]
        opt.step()
        assert not torch.equal(before[0], params[0])
        assert torch.equal(before[1], params[1]) and torch.equal(before[2], params[2])
        assert len(opt.state) <= 1


# ---------------------------------------------------------------------- the finite check
@pytest.mark.parametrize("name", ["sgld", "psgld", "sghmc", "underdamped", "sgd"])
def test_nonfinite_gradient_raises_before_anything_moves(name):
    params = make_params()
    opt = sgmcmc.get(name)(params, 0.05, num_data=N)
    for p, g in zip(params, grads_for(0)):
        p.grad = g
    opt.step()
    for p, g in zip(params, grads_for(1)):
        p.grad = g
    params[2].grad[1, 0, 1] = float("nan")
    before = [p.detach().clone() for p in params]
    with pytest.raises(NonFiniteGradientError) as info:
        opt.step()
    assert info.value.param_index == 2 and info.value.group_index == 0 and info.value.step == 1
    assert "parameter 2" in str(info.value) and "step 1" in str(info.value)
    assert all(torch.equal(b, p) for b, p in zip(before, params))


@pytest.mark.parametrize("name", ["sgld", "psgld", "sghmc", "underdamped", "sgd"])
def test_nonfinite_gradient_in_a_later_bucket_leaves_earlier_buckets_alone(name):
    """Every bucket (device, dtype) is prepared and checked before any is updated."""
    a = torch.nn.Parameter(torch.ones(4, dtype=torch.float32))
    b = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = sgmcmc.get(name)([a, b], 0.05, num_data=N)
    for _ in range(2):
        a.grad, b.grad = torch.full_like(a, 0.5), torch.full_like(b, 0.5)
        opt.step()
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[a].items()}
    before = a.detach().clone(), b.detach().clone()
    a.grad, b.grad = torch.full_like(a, 0.5), torch.tensor([0.5, float("inf"), 0.5], dtype=torch.float64)
    with pytest.raises(NonFiniteGradientError):
        opt.step()
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])
    for k, v in opt.state[a].items():
        assert torch.equal(v, state[k]) if isinstance(v, torch.Tensor) else v == state[k]
    b.grad = torch.full_like(b, 0.5)
    opt.step()  # and the chain goes on
    assert not torch.equal(a, before[0])


def test_huge_finite_gradient_is_not_mistaken_for_divergence():
    """The 2-norm of 1e30s overflows float32; the element-wise confirmation clears it."""
    p = torch.nn.Parameter(torch.zeros(10_000))
    opt = sgmcmc.SGD([p], 1e-30, num_data=1)
    p.grad = torch.full((10_000,), 1e30)
    assert not math.isfinite(float(torch.linalg.vector_norm(p.grad)))
    opt.step()
    assert torch.allclose(p, torch.full((10_000,), -1.0))


# ---------------------------------------------------------------------- validation messages
@pytest.mark.parametrize(
    "name, kwargs, bad, valid",
    [
        ("sgld", {"lr": 0.0}, "lr=0.0", "(0.0, inf)"),
        ("sgld", {"lr": -1.0}, "lr=-1.0", "(0.0, inf)"),
        ("sgld", {"lr": float("inf")}, "lr=inf", "(0.0, inf)"),
        ("sgld", {"num_data": 0}, "num_data=0", "an integer in [1, inf)"),
        ("sgld", {"num_data": 2.5}, "num_data=2.5", "an integer in [1, inf)"),
        ("sgld", {"num_data": float("nan")}, "num_data=nan", "an integer in [1, inf)"),
        ("sgld", {"temperature": -0.1}, "temperature=-0.1", "[0.0, inf)"),
        ("sghmc", {"friction": 0.0}, "friction=0.0", "(0.0, 1.0]"),
        ("sghmc", {"friction": 1.5}, "friction=1.5", "(0.0, 1.0]"),
        ("psgld", {"alpha": 1.0}, "alpha=1.0", "[0.0, 1.0)"),
        ("psgld", {"alpha": -0.1}, "alpha=-0.1", "[0.0, 1.0)"),
        ("psgld", {"eps": 0.0}, "eps=0.0", "(0.0, inf)"),
        ("underdamped", {"friction": -1.0}, "friction=-1.0", "[1e-06, inf)"),
        ("sgld", {"lr": True}, "lr=True", "is not a number"),
        ("sgld", {"lr": "0.1"}, "lr='0.1'", "is not a number"),
    ],
)
def test_bad_hyperparameter_message_names_parameter_value_and_range(name, kwargs, bad, valid):
    args = {"lr": 0.1, "num_data": N, **kwargs}
    lr = args.pop("lr")
    with pytest.raises(HyperparameterError) as info:
        sgmcmc.get(name)(make_params(), lr, **args)
    assert bad in str(info.value) and valid in str(info.value)


def test_unknown_keyword_is_named_with_its_value_and_the_valid_names():
    with pytest.raises(HyperparameterError) as info:
        sgmcmc.SGLD(make_params(), 0.1, num_data=N, momentum=0.9)
    msg = str(info.value)
    assert "momentum=0.9" in msg and "valid: lr, num_data, temperature" in msg
    with pytest.raises(HyperparameterError, match="alpha"):
        sgmcmc.SGHMC(make_params(), 0.1, num_data=N, alpha=0.1)


def test_numpy_and_tensor_scalars_are_accepted():
    opt = sgmcmc.PSGLD(make_params(), np.float32(0.1), num_data=np.int64(100), temperature=torch.tensor(0.5),
                       alpha=np.float64(0.99))
    group = opt.param_groups[0]
    assert group["num_data"] == 100 and isinstance(group["num_data"], int)
    assert group["lr"] == pytest.approx(0.1) and group["temperature"] == 0.5 and group["alpha"] == 0.99


# ---------------------------------------------------------------------- state dict
def test_state_dict_carries_generator_and_step_count():
    params = make_params()
    opt = sgmcmc.SGHMC(params, 0.05, num_data=N, generator=torch.Generator().manual_seed(3))
    for t in range(3):
        for p, g in zip(params, grads_for(t)):
            p.grad = g
        opt.step()
    sd = opt.state_dict()
    assert sd["step_count"] == 3 and isinstance(sd["generator_state"], torch.Tensor)
    fresh = sgmcmc.SGHMC(make_params(), 0.05, num_data=N, generator=torch.Generator().manual_seed(99))
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.generator.get_state(), opt.generator.get_state())
    assert fresh.state_dict()["step_count"] == 3
    bad = sgmcmc.SGHMC(make_params(), 0.05, num_data=N)
    sd["param_groups"][0]["friction"] = 2.0
    with pytest.raises(HyperparameterError, match="friction=2.0"):
        bad.load_state_dict(sd)


# ---------------------------------------------------------------------- groups and state that fail validation
def test_a_param_group_that_fails_validation_is_not_kept():
    p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    opt = sgmcmc.SGHMC([p], 0.1, num_data=10)
    with pytest.raises(sgmcmc.HyperparameterError, match="lr=-1 is out of range"):
        opt.add_param_group({"params": [q], "lr": -1})
    assert len(opt.param_groups) == 1
    p.grad = torch.ones(3)
    opt.step()  # the sampler is as it was
    opt.add_param_group({"params": [q], "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]


@pytest.mark.parametrize("name", sorted(sgmcmc.available()))
@pytest.mark.parametrize("key, bad", [("lr", -5.0), ("temperature", -1.0), ("num_data", 0)])
def test_a_bad_value_written_into_param_groups_is_refused_at_the_next_step(name, key, bad):
    """A hyperparameter changed after construction (by hand, or a scheduler gone wrong) is checked
    before anything moves: a HyperparameterError names it, the parameters, the sampler's state and
    its noise stream are left as they were, and a good value steps again."""
    p = torch.nn.Parameter(torch.ones(4))
    opt = sgmcmc.get(name)([p], lr=0.1, num_data=10, generator=torch.Generator().manual_seed(0))
    p.grad = torch.ones(4)
    opt.step()
    before = (p.detach().clone(), copy.deepcopy(opt.state_dict()))
    opt.param_groups[0][key] = bad
    with pytest.raises(HyperparameterError, match=f"{key}={bad}"):
        opt.step()
    assert torch.equal(p.detach(), before[0])
    after = opt.state_dict()
    assert after["step_count"] == before[1]["step_count"]
    assert torch.equal(after["generator_state"], before[1]["generator_state"])
    for k, v in before[1]["state"].get(0, {}).items():
        assert torch.equal(torch.as_tensor(after["state"][0][k]), torch.as_tensor(v)), k
    opt.param_groups[0][key] = {"lr": 0.05, "temperature": 0.5, "num_data": 20}[key]
    opt.step()
    assert not torch.equal(p.detach(), before[0])


@pytest.mark.parametrize("name", sorted(sgmcmc.available()))
def test_an_unknown_param_group_key_is_refused_with_the_valid_keys(name):
    """A misspelt key, or another optimiser's, would otherwise be ignored without a word."""
    cls = sgmcmc.get(name)
    p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(HyperparameterError) as info:
        cls([{"params": [p], "lr ": 0.5}], 0.1, num_data=10)
    msg = str(info.value)
    assert "'lr '" in msg and "param group 0" in msg and "valid: params, " in msg
    assert all(k in msg for k in cls.all_hypers())
    opt = cls([p], 0.1, num_data=10)
    with pytest.raises(HyperparameterError, match="'weight_decay' in param group 1"):
        opt.add_param_group({"params": [q], "weight_decay": 1e-4})
    assert len(opt.param_groups) == 1  # nothing kept


def test_param_group_keys_of_torch_optim_itself_are_accepted():
    """Named parameters (param_names) and what torch's schedulers keep in a group are not refused."""
    if tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 6):  # torch.optim takes names since 2.6
        model = torch.nn.Linear(3, 2)
        opt = sgmcmc.SGLD(model.named_parameters(), 0.1, num_data=10)
        assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    p = torch.nn.Parameter(torch.zeros(3))
    opt = sgmcmc.SGLD([{"params": [p], "initial_lr": 0.1, "temperature": 0.5}], 0.1, num_data=10)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    q = torch.nn.Parameter(torch.zeros(2))
    opt.add_param_group({"params": [q], **{k: v for k, v in opt.param_groups[0].items() if k != "params"}})
    p.grad, q.grad = torch.ones(3), torch.ones(2)
    opt.step()
    sched.step()
    assert opt.param_groups[1]["temperature"] == 0.5


def test_loading_a_state_dict_with_a_bad_hyperparameter_changes_nothing():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = sgmcmc.SGLD([p], 0.1, num_data=10, generator=torch.Generator().manual_seed(0))
    p.grad = torch.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = -5.0
    sd["step_count"] = 99
    with pytest.raises(sgmcmc.HyperparameterError, match="lr=-5.0 is out of range"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.state_dict()["step_count"] == 1


def test_a_saved_generator_state_without_a_generator_to_load_it_into_warns():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = sgmcmc.SGLD([p], 0.1, num_data=10, generator=torch.Generator().manual_seed(0))
    p.grad = torch.ones(3)
    opt.step()
    fresh = sgmcmc.SGLD([p], 0.1, num_data=10)
    with pytest.warns(UserWarning, match="not restored"):
        fresh.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("dtype, kind", [(torch.complex64, "is complex"), (torch.int64, "is non-floating")])
def test_parameters_that_are_not_real_floating_point_are_refused(dtype, kind):
    p = torch.zeros(3, dtype=dtype)
    with pytest.raises(sgmcmc.HyperparameterError, match=f"parameter 0 of param group 0 {kind}"):
        sgmcmc.SGLD([p], 0.1, num_data=10)


# ---------------------------------------------------------------------- found by an audit of the API (session 8)
def _stepped(name, n=3, **kw):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.ones(4))
    opt = sgmcmc.get(name)([p], lr=0.1, num_data=10, generator=torch.Generator().manual_seed(0), **kw)
    for _ in range(n):
        p.grad = torch.ones(4)
        opt.step()
    return p, opt


def test_a_refused_state_dict_changes_nothing_and_another_samplers_state_is_refused():
    p, opt = _stepped("sghmc", 5)
    q = [torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(2))]
    two_groups = sgmcmc.SGHMC([{"params": [q[0]]}, {"params": [q[1]]}], lr=0.1, num_data=10).state_dict()
    two_groups["step_count"] = 999
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict(two_groups)
    assert opt.state_dict()["step_count"] == 5
    _p, psgld = _stepped("psgld")
    with pytest.raises(ValueError, match=r"saved by sgmcmc\.psgld\.PSGLD, not by sgmcmc\.sghmc\.SGHMC"):
        opt.load_state_dict(psgld.state_dict())
    foreign = torch.optim.SGD([torch.nn.Parameter(torch.ones(4))], lr=0.1, momentum=0.9).state_dict()
    with pytest.raises(HyperparameterError, match="unknown key.*'dampening'"):
        opt.load_state_dict(foreign)
    assert opt.state_dict()["step_count"] == 5


@pytest.mark.parametrize("name", ["sgld", "psgld", "sghmc", "underdamped"])
def test_a_parameter_moved_to_float64_mid_chain_takes_its_state_along(name):
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = sgmcmc.get(name)(m.parameters(), lr=0.01, num_data=100)
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    m.double()
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    for p in m.parameters():
        assert p.dtype == torch.float64 and torch.isfinite(p).all()
        assert all(v.dtype == torch.float64 for v in opt.state[p].values() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("name", sorted(sgmcmc.available()))
def test_a_sparse_gradient_after_dense_ones_is_refused_before_anything_moves(name):
    emb = torch.nn.Embedding(5, 3, sparse=True)
    opt = sgmcmc.get(name)(emb.parameters(), lr=0.1, num_data=10)
    emb.weight.grad = torch.zeros(5, 3)
    opt.step()
    before = emb.weight.detach().clone()
    emb.weight.grad = None
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight.detach(), before)


def test_a_key_added_to_or_removed_from_a_group_mid_chain_is_refused_at_the_next_step():
    p, opt = _stepped("sgld")
    before = p.detach().clone()
    opt.param_groups[0]["lr "] = 0.5
    with pytest.raises(HyperparameterError, match="unknown key.*'lr '"):
        opt.step()
    del opt.param_groups[0]["lr "]
    del opt.param_groups[0]["temperature"]
    with pytest.raises(HyperparameterError, match="temperature is required"):
        opt.step()
    assert torch.equal(p.detach(), before)
    opt.param_groups[0]["temperature"] = 1.0
    opt.step()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_underdamped_at_its_smallest_friction_stays_finite_in_every_dtype(dtype):
    p = torch.nn.Parameter(torch.ones(8, dtype=dtype))
    lowest = sgmcmc.get("underdamped").hypers["friction"].low
    opt = sgmcmc.get("underdamped")([p], lr=0.01, num_data=100, friction=lowest)
    for _ in range(5):
        p.grad = torch.ones_like(p)
        opt.step()
    assert torch.isfinite(p).all() and not torch.equal(p.detach(), torch.ones_like(p))


def test_a_non_finite_gradient_names_the_parameter_when_built_from_named_parameters():
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    opt = sgmcmc.get("sgld")(m.named_parameters(), lr=0.1, num_data=10)
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    m[1].weight.grad[0, 0] = float("nan")
    with pytest.raises(NonFiniteGradientError, match=r"parameter 2 \('1.weight'\) of param group 0"):
        opt.step()
