"""sgmcmc.gradients (control variates): the estimate is exact where the theory says it is, its cost is
counted, misuse is refused; with sgld and sghmc it passes the estimator conformance checks
(sgmcmc.testing.estimators) and wrong estimators fail them; the benchmark's cv rows keep the
gradient budget; the user-facing example in docs/control-variates.md runs."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import sgmcmc
from sgmcmc.testing.estimators import (DEFAULT_ESTIMATOR_PROTOCOL, check_estimator, finite_sum_problem,
                                       measure_noise)

ROOT = Path(__file__).resolve().parent.parent


# ====================================================================== a small model with autograd
def _logreg(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = (x[:, 0] - x[:, 1] > 0).long()
    model = torch.nn.Linear(4, 3).double()
    torch.nn.init.normal_(model.weight, generator=g)

    def loss_fn(batch):
        xb, yb = batch
        prior = sum((p * p).sum() for p in model.parameters()) / (2 * n)
        return torch.nn.functional.cross_entropy(model(xb), yb) + prior

    return model, x, y, loss_fn


def _grads(model, loss_fn, batch):
    model.zero_grad()
    loss_fn(batch).backward()
    return [p.grad.clone() for p in model.parameters()]


def _epoch(x, y, b):
    return [(x[i:i + b], y[i:i + b]) for i in range(0, len(x), b)]


def test_estimate_is_the_control_variate_formula_and_exact_at_the_centre():
    model, x, y, loss_fn = _logreg()
    full = _grads(model, loss_fn, (x, y))
    cv = sgmcmc.ControlVariates(model.parameters(), loss_fn)
    cv.set_centre(_epoch(x, y, 20))
    for a, b in zip(cv.centre_grad, full):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    batch = (x[5:25], y[5:25])
    cv.backward(batch)  # at the centre: g_B(theta_hat) - g_B(theta_hat) + g_full = g_full exactly
    for p, f in zip(model.parameters(), full):
        torch.testing.assert_close(p.grad, f, rtol=1e-12, atol=1e-14)
    at_centre = _grads(model, loss_fn, batch)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    moved = [p.detach().clone() for p in model.parameters()]
    at_theta = _grads(model, loss_fn, batch)
    loss = cv.backward(batch)
    for p, a, c, f, m in zip(model.parameters(), at_theta, at_centre, full, moved):
        torch.testing.assert_close(p.grad, a - c + f, rtol=1e-10, atol=1e-12)
        assert torch.equal(p.detach(), m)  # the parameters are back where they were
    torch.testing.assert_close(loss, loss_fn(batch).detach())


def test_unbiased_over_an_epoch_and_less_noisy_than_the_minibatch_gradient():
    model, x, y, loss_fn = _logreg()
    cv = sgmcmc.ControlVariates(model.parameters(), loss_fn)
    cv.set_centre(_epoch(x, y, 30))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    exact = _grads(model, loss_fn, (x, y))
    est, plain = [], []
    for batch in _epoch(x, y, 10):  # equal batches partitioning the data: the mean is the full gradient
        cv.backward(batch)
        est.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        plain.append(torch.cat([g.flatten() for g in _grads(model, loss_fn, batch)]))
    exact = torch.cat([g.flatten() for g in exact])
    est, plain = torch.stack(est), torch.stack(plain)
    torch.testing.assert_close(est.mean(0), exact, rtol=1e-10, atol=1e-12)
    assert (est - exact).square().sum() < 0.05 * (plain - exact).square().sum()


def test_full_gradient_weights_unequal_batches_and_counts_its_cost():
    model, x, y, loss_fn = _logreg()
    full = _grads(model, loss_fn, (x, y))
    cv = sgmcmc.ControlVariates(model.parameters(), loss_fn, batch_size=10)
    loss = cv.set_centre([(x[:7], y[:7]), (x[7:100], y[7:100]), (x[100:], y[100:])])
    for a, b in zip(cv.centre_grad, full):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss.double(), loss_fn((x, y)).detach())
    assert cv.num_data == 120 and cv.grad_evals == 12.0  # N / batch_size
    cv.backward((x[:10], y[:10]))
    cv.backward((x[10:20], y[10:20]))
    assert cv.grad_evals == 16.0  # + 2 a step
    default = sgmcmc.ControlVariates(model.parameters(), loss_fn)
    default.set_centre(_epoch(x, y, 25))  # 25, 25, 25, 25, 20: the unit is the largest batch
    assert default.batch_size == 25 and default.grad_evals == pytest.approx(120 / 25)


def test_both_passes_see_the_same_random_draws():
    torch.manual_seed(0)
    model, x, y, _ = _logreg()
    drop = torch.nn.Dropout(0.5)

    def loss_fn(batch):
        xb, yb = batch
        return torch.nn.functional.cross_entropy(model(drop(xb)), yb)

    cv = sgmcmc.ControlVariates(model.parameters(), loss_fn)
    cv.set_centre(_epoch(x, y, 40))
    state = torch.get_rng_state()
    cv.backward((x[:40], y[:40]))  # at the centre: the same mask in both passes cancels exactly
    for p, f in zip(model.parameters(), cv.centre_grad):
        torch.testing.assert_close(p.grad, f, rtol=0, atol=1e-14)
    after_cv = torch.get_rng_state()
    torch.set_rng_state(state)
    loss_fn((x[:40], y[:40]))
    assert torch.equal(after_cv, torch.get_rng_state())  # the generator advanced once, as one backward


def test_misuse_is_refused_with_a_clear_error():
    model, x, y, loss_fn = _logreg()
    cv = sgmcmc.ControlVariates(model.parameters(), loss_fn)
    with pytest.raises(sgmcmc.CentreNotSetError, match="set_centre"):
        cv.backward((x[:10], y[:10]))
    with pytest.raises(ValueError, match="no data"):
        cv.set_centre([])
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite"):
        cv.set_centre(_epoch(x, y, 60))
    assert cv.centre is None
    with torch.no_grad():
        model.weight[0, 0] = 0.0
    cv.set_centre(_epoch(x, y, 60))
    model.weight = torch.nn.Parameter(torch.zeros(3, 5, dtype=torch.float64))
    cv.params[0] = model.weight
    with pytest.raises(ValueError, match="shape"):
        cv.backward((x[:10], y[:10]))
    with pytest.raises(ValueError, match="no parameter that requires grad"):
        sgmcmc.ControlVariates([torch.zeros(3)], loss_fn)
    with pytest.raises(TypeError, match="not a tensor"):
        sgmcmc.ControlVariates([3.0], loss_fn)


def test_functional_form_matches_the_definition():
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(200, 3, generator=g, dtype=torch.float64), torch.randn(200, generator=g, dtype=torch.float64)

    def grad_fn(w, idx):
        xb, yb = X[idx], Y[idx]
        return -torch.einsum("cbd,cb->cd", xb, yb - torch.einsum("cbd,cd->cb", xb, w)) / idx.shape[1] + w / 200

    theta, centre = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    chunks = [torch.arange(i, min(i + 30, 200)).expand(4, -1) for i in range(0, 200, 30)]
    centre_grad, n = sgmcmc.full_gradient(grad_fn, centre.expand(4, 3), chunks, size=lambda i: i.shape[1])
    assert n == 200
    exact = -X.T @ (Y - X @ centre) / 200 + centre / 200
    torch.testing.assert_close(centre_grad, exact.expand(4, 3))
    idx = torch.randint(200, (4, 10), generator=g)
    est = sgmcmc.control_variate(grad_fn, theta, idx, centre, centre_grad)
    torch.testing.assert_close(est, grad_fn(theta, idx) - grad_fn(centre.expand(4, 3), idx) + centre_grad)
    with pytest.raises(FloatingPointError):
        sgmcmc.control_variate(grad_fn, theta, idx, centre, centre_grad * float("inf"))


def test_the_documented_example_runs():
    text = (ROOT / "docs" / "control-variates.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(snippet, "docs/control-variates.md", "exec"), scope)
    assert scope["cv"].grad_evals == 2_000 / 50 + 2 * 400
    samples = torch.stack(scope["samples"])
    assert torch.isfinite(samples).all() and samples.std(0).max() > 0


# ====================================================================== conformance
def test_the_noise_theory_matches_the_measurement():
    nums = measure_noise("control_variates")
    assert nums["theory_ratio"] < 1e-3
    assert nums["noise_ratio"] == pytest.approx(nums["theory_ratio"], rel=0.1)
    assert nums["noise_trace_minibatch"] == pytest.approx(nums["theory_trace_minibatch"], rel=0.1)


@pytest.mark.parametrize("sampler", ["sgld", "sghmc"])
def test_control_variates_pass_the_estimator_checks(sampler):
    results = check_estimator(sampler, "control_variates")
    assert [r.check for r in results] == ["estimator_noise", "estimator_stationary", "estimator_tempered"]
    for r in results:
        r.raise_for_failure()


SHORT = replace(DEFAULT_ESTIMATOR_PROTOCOL, chains=128, steps=2000, burn_in=500)


def _forgets_the_full_gradient(grad_fn, theta, batch, centre, centre_grad):
    return grad_fn(theta, batch) - grad_fn(centre.expand_as(theta), batch)


def _other_minibatch(grad_fn, theta, batch, centre, centre_grad):
    other = batch.roll(1, dims=0)  # another chain's minibatch: independent of this chain's
    return grad_fn(theta, batch) - grad_fn(centre.expand_as(theta), other) + centre_grad


@pytest.mark.parametrize("estimator, failing", [
    (_forgets_the_full_gradient, {"estimator_noise", "estimator_stationary", "estimator_tempered"}),
    (_other_minibatch, {"estimator_noise", "estimator_stationary", "estimator_tempered"}),
])
def test_wrong_estimators_fail(estimator, failing):
    results = {r.check: r for r in check_estimator("sgld", estimator, protocol=SHORT)}
    assert {name for name, r in results.items() if r.status == "failed"} == failing, {
        k: r.message for k, r in results.items()}


def test_plain_minibatch_gradient_fails_the_noise_check():
    results = check_estimator("sgld", "minibatch", protocol=replace(SHORT, steps=600, burn_in=200))
    assert results[0].status == "failed" and "of the plain minibatch" in results[0].message


def test_the_problem_is_a_finite_sum_with_different_curvatures():
    p = finite_sum_problem()
    a = p.curvatures()
    assert (a - a.mean(0)).abs().amax() > 0.5 * a.mean(0).abs().max()
    x = torch.randn(3, p.dim, dtype=torch.float64)
    full = p.grad_fn()(x, torch.arange(p.num_data).expand(3, -1))
    torch.testing.assert_close(full, p.full_grad(x))


# ====================================================================== the benchmark's cv rows
def test_blr_cv_keeps_the_budget_and_beats_plain_sgld_quick():
    from benchmarks.tasks import get_task
    from benchmarks.tasks.base import RunContext

    task = get_task("blr")
    proto = task.protocol("quick")
    runs = {}
    for gradient in ("minibatch", "cv"):  # lr 0.01: the plain chains' variances ~2.6x too large (var err ~1)
        torch.manual_seed(0)  # the samplers' noise comes from the global generator
        runs[gradient] = task.run(sgmcmc.get("sgld"), {"lr": 0.01, "gradient": gradient},
                                  RunContext(seed=0, profile="quick"))
    plain, cv = runs["minibatch"], runs["cv"]
    budget = proto["chains"] * proto["steps"]
    assert plain.grad_evals == budget and budget - 2 * proto["chains"] < cv.grad_evals <= budget
    assert plain.metrics["var_error"] > 0.8 and cv.metrics["var_error"] < 0.25  # seed 0: 0.955 and 0.140
    assert cv.metrics["kl"] < 0.1 * plain.metrics["kl"]  # 0.37 against 9.4


def test_gradient_key_is_checked():
    from benchmarks.tasks import get_task

    blr = get_task("blr")
    with pytest.raises(ValueError, match="valid: minibatch, cv"):
        blr.check_task_keys({"gradient": "svrg"})
    with pytest.raises(ValueError, match="cycles=0"):
        blr.check_task_keys({"gradient": "cv", "cycles": 10})
    blr.check_task_keys({"gradient": "cv"})
    with pytest.raises(ValueError, match="valid: minibatch, cv"):
        get_task("mnist-logreg").check_task_keys({"gradient": "CV"})


def test_configs_hold_the_cv_rows():
    from benchmarks.grid import build_grid

    toy = build_grid("toy", "quick", samplers=["sgld", "sghmc"], seeds=1, sweep=False, tasks=["blr"])
    rows = {(s.sampler, s.variant): s.hyper_dict for s in toy}
    assert rows[("sgld", "+cv")] == {"lr": 0.003, "gradient": "cv"}
    assert rows[("sghmc", "+cv")]["gradient"] == "cv" and ("sgld", "tuned") in rows
    ref = build_grid("reference", "quick", samplers=["sgld"], seeds=1, sweep=False, tasks=["mnist-logreg"])
    assert {(s.sampler, s.variant) for s in ref} == {("sgld", "tuned"), ("sgld", "+cv"), ("sgld", "cyclical")}


def test_a_parameter_the_loss_never_reaches_keeps_no_gradient_and_frozen_ones_are_skipped():
    """As after a plain backward(): an unused parameter keeps grad None (a sampler then leaves it
    alone); a frozen one is not the estimator's; a loss of none of the parameters is refused."""
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.Linear(3, 1), "c": torch.nn.Linear(3, 1)})
    model["c"].requires_grad_(False)
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    loss_fn = lambda batch: ((model["a"](batch[0]) - batch[1]) ** 2).mean()  # noqa: E731
    cv = sgmcmc.ControlVariates(model.parameters(), loss_fn)
    assert len(cv.params) == 4  # a and b; c is frozen
    cv.set_centre([(x[:10], y[:10]), (x[10:], y[10:])])
    cv.backward((x[:5], y[:5]))
    assert model["a"].weight.grad is not None and model["b"].weight.grad is None
    other = sgmcmc.ControlVariates(model["b"].parameters(), loss_fn)
    with pytest.raises(ValueError, match="depends on none of the parameters"):
        other.set_centre([(x, y)])
    state = cv.state_dict()
    wrong_state = {**state, "centre": [torch.zeros(2, 3), torch.zeros(2)] + state["centre"][2:]}
    with pytest.raises(ValueError, match="another model"):
        cv.load_state_dict(wrong_state)
