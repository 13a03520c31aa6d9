"""The multimodal study: the two-mode mixture task and its mode-mass metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sgmcmc
from benchmarks import metrics as M
from benchmarks.__main__ import main
from benchmarks.tasks import get_task, suites
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.gaussian import GaussianMixture2D


# ---------------------------------------------------------------------- metrics, hand cases
def test_mode_mass_errors_hand_cases():
    every_chain_right = np.array([[True, False, False, False]] * 3)  # each chain 1/4 of its time in the region
    assert M.mode_mass_errors(every_chain_right, 0.25) == (0.0, 0.0)
    stuck = np.array([[True] * 4, [False] * 4, [False] * 4, [False] * 4])  # one chain in, three out: pooled 1/4
    pooled, per_chain = M.mode_mass_errors(stuck, 0.25)
    assert pooled == 0.0  # right by the luck of the starts
    assert per_chain == pytest.approx((0.75 + 3 * 0.25) / 4)  # = 2 p (1 - p) = 0.375
    with pytest.raises(ValueError, match="mass=1.5 is out of range"):
        M.mode_mass_errors(stuck, 1.5)
    with pytest.raises(ValueError, match="must be \\[chains, draws\\]"):
        M.mode_mass_errors(np.ones(4, dtype=bool), 0.5)


def test_mode_switches_count_changes_between_cores_only():
    x = np.array([
        [-1.0, 1.0, 0.9, -0.8, 1.2],     # left, right, right, left, right: 3 switches
        [-1.0, 0.2, 0.5, -0.1, -1.3],    # strays past 0 but never reaches the right core: 0
        [0.0, 0.1, 1.0, 0.3, -0.9],      # starts between the cores, then right, then left: 1
        [-1.0, -1.1, -0.9, -1.2, -1.0],  # stays: 0
    ])
    assert M.mode_switches(x, -0.75, 0.75) == pytest.approx((3 + 0 + 1 + 0) / 4)
    assert M.mode_switches(np.zeros((2, 1)), -0.75, 0.75) == 0.0
    with pytest.raises(ValueError, match="low=1 must be below high=0"):
        M.mode_switches(x, 1, 0)


# ---------------------------------------------------------------------- the task
def test_the_mixture_gradient_is_autograds():
    task = GaussianMixture2D()
    task.prepare(torch.device("cpu"), torch.float64)
    theta = (3 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).requires_grad_()
    w = torch.tensor(task.weights, dtype=torch.float64)
    c = torch.tensor(task.centers, dtype=torch.float64)
    log_p = torch.logsumexp(w.log() - ((theta[:, None] - c) ** 2).sum(-1) / (2 * task.sd**2), dim=1)
    (-log_p.sum()).backward()
    out = torch.empty(16, 2, dtype=torch.float64)
    task.grad_(theta.detach(), out, None)
    torch.testing.assert_close(out, theta.grad, rtol=1e-12, atol=1e-12)


def test_the_exact_answers_match_exact_draws_from_the_mixture():
    """Moments and the right-mode mass against 400k independent draws (tolerances ~5 sd of the
    Monte-Carlo error); iid draws score near 0 on the per-chain error and switch sides often."""
    task = GaussianMixture2D()
    rng = np.random.default_rng(0)
    n = 400_000
    comp = rng.random(n) < task.weights[1]
    x = rng.normal(size=(n, 2)) * task.sd + np.asarray(task.centers)[comp.astype(int)]
    assert abs((x[:, 0] > 0).mean() - task.right_mass) < 5 * np.sqrt(0.21 / n)
    assert task.right_mass == pytest.approx(0.3005, abs=1e-4)
    np.testing.assert_allclose(x.mean(0), task.target.mean.numpy(), atol=0.01)
    np.testing.assert_allclose(np.cov(x, rowvar=False), task.target.cov.numpy(), atol=0.02)
    trace = torch.from_numpy(x[:32_000].reshape(1000, 32, 2))  # [draws, chains, d]: 32 iid "chains"
    m = task.evaluate(trace, 1.0, 32_000)
    assert m["chain_mass_error"] < 0.05 and m["mass_error"] < 0.02 and m["switches"] > 300
    assert m["var_error"] < 0.05 and m["rhat_max"] < 1.01


def test_chains_that_never_cross_are_caught_by_the_per_chain_error_only():
    task = GaussianMixture2D()
    rng = np.random.default_rng(1)
    right = np.arange(32) < 10  # 10 of 32 chains (~0.31) sit in the right mode for good
    centers = np.asarray(task.centers)[right.astype(int)]  # [chains, d]
    x = rng.normal(size=(500, 32, 2)) * task.sd + centers
    m = task.evaluate(torch.from_numpy(x), 1.0, 16_000)
    assert m["mass_error"] < 0.02  # pooled: right by the luck of the starts
    assert m["chain_mass_error"] > 0.4 and m["rhat_max"] > 1.2  # R-hat flags it too
    # some draws in a mode's far tail (3 sd, ~1 in 740) land past the boundary at 0, none in the
    # other mode's core (4.5 sd): no switch is counted
    assert (x[..., 0] * np.where(right, -1, 1) > 0).any() and m["switches"] == 0.0


def test_sgld_on_the_mixture_crosses_and_sgd_does_not():
    """A short run through the task's own loop (quick profile) with the study's configured lr."""
    task = get_task("mixture-2d")
    ctx = RunContext(seed=0, profile="quick")
    sgld = task.run(sgmcmc.get("sgld"), {"lr": 0.1}, ctx).metrics
    sgd = task.run(sgmcmc.get("sgd"), {"lr": 0.1}, ctx).metrics
    assert sgld["switches"] > 2 and sgd["switches"] == 0.0
    assert sgd["chain_mass_error"] > sgld["chain_mass_error"]


def test_the_multimodal_study_is_its_own_suite_outside_all():
    known = suites()
    assert known["multimodal"] == ["mixture-2d"] and "mixture-2d" not in known["all"]


def test_run_multimodal_end_to_end_writes_its_table_and_sweep_figure(tmp_path, capsys):
    args = ["run", "multimodal", "--profile", "quick", "--samplers", "sgld,sghmc", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    board = (tmp_path / "leaderboard.md").read_text()
    assert "per-chain mode-mass err" in board and "mode switches / chain" in board
    assert (tmp_path / "sweep_mixture-2d.png").stat().st_size > 10_000


# ---------------------------------------------------------------------- cyclical step sizes on the toy tasks
def test_keep_plan_constant_is_the_protocols_and_cyclical_keeps_each_cycles_tail():
    task = GaussianMixture2D()
    proto = dict(steps=40, burn_in=10, thin=2, chains=2)
    assert [t for t, k in enumerate(task.keep_plan(proto)) if k] == list(range(11, 40, 2))
    kept = [t for t, k in enumerate(task.keep_plan(proto, cycles=4, keep_last=0.5)) if k]
    # cycles of 10 steps; the last 5 of each (positions 5..9) after burn-in, every 2nd step
    assert kept == [15, 17, 19, 25, 27, 29, 35, 37, 39]


def test_a_cyclical_toy_run_follows_the_cosine_and_keeps_the_tails():
    seen = []

    class Recording(sgmcmc.get("sgld")):
        def _update(self, group, params, grads):
            seen.append(group["lr"])
            super()._update(group, params, grads)

    task = get_task("mixture-2d")
    res = task.run(Recording, {"lr": 0.2, "cycles": 4, "keep_last": 0.25}, RunContext(seed=0, profile="quick"))
    steps = task.protocol("quick")["steps"]  # 4 cycles of a quarter of the quick profile's steps
    length = steps // 4
    expected = [0.2 * (1 + np.cos(np.pi * (t % length) / length)) / 2 for t in range(steps)]
    np.testing.assert_allclose(seen, expected, rtol=1e-9, atol=1e-12)
    assert res.metrics["switches"] >= 0 and np.isfinite(res.metrics["chain_mass_error"])


@pytest.mark.parametrize("opts,message", [
    ({"cycles": 3}, "cycles=3 is out of range; valid: 0 (a constant step) or an integer that divides the step counts"),
    ({"cycles": -1}, "cycles=-1 is out of range"),
    ({"cycles": 2.5}, "cycles=2.5 is out of range"),
    ({"cycles": 4, "keep_last": 0.0}, "keep_last=0.0 is out of range; valid: (0, 1]"),
    ({"keep_last": 0.5}, "keep_last=0.5 applies to a cyclical schedule only"),
])
def test_bad_cyclical_keys_are_refused_naming_the_value(opts, message):
    with pytest.raises(ValueError) as info:
        GaussianMixture2D().check_task_keys(opts)
    assert message in str(info.value)


def test_a_bad_cycle_count_stops_the_grid_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "multimodal", "--hyper", "cycles=3", "--results-dir", str(tmp_path)])
    assert info.value.code == 2
    assert "cycles=3.0 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "records").exists()


# ---------------------------------------------------------------------- the sampling loop every family shares
def test_the_shared_loop_calls_its_hooks_in_order_counts_and_keeps_the_plan():
    from benchmarks.tasks.base import SamplingLoop, keep_every

    calls = []
    theta = torch.zeros(3, 2, requires_grad=True)

    class Recording(SamplingLoop):
        def gradient(self, t, batch):
            calls.append(("gradient", t, batch))
            theta.grad = torch.ones_like(theta)

        def before_step(self, t):
            calls.append(("before", t))

        def after_step(self, t):
            calls.append(("after", t))

        def consume(self, t):
            calls.append(("consume", t, self.kept))

    sampler = sgmcmc.get("sgd")([theta], lr=0.1, num_data=1)
    keep = keep_every(6, burn_in=2, thin=2)
    assert [t for t, k in enumerate(keep) if k] == [3, 5]
    done = Recording(sampler, keep, RunContext(seed=0), "test", batches="abcdef", grads_per_step=3).run()
    assert calls[:3] == [("gradient", 0, "a"), ("before", 0), ("after", 0)]
    assert [c for c in calls if c[0] == "consume"] == [("consume", 3, 0), ("consume", 5, 1)]
    assert (done.steps, done.kept, done.grad_evals) == (6, 2, 18)
    assert done.sampling_time_s >= 0 and done.eval_time_s == 0
    torch.testing.assert_close(theta.detach(), torch.full((3, 2), -0.6))


def test_the_shared_loop_turns_a_non_finite_gradient_into_diverged_at_its_step():
    from benchmarks.tasks.base import Diverged, SamplingLoop

    theta = torch.zeros(2, requires_grad=True)

    class Exploding(SamplingLoop):
        def gradient(self, t, batch):
            theta.grad = torch.full_like(theta, float("nan") if t == 4 else 1.0)

        def consume(self, t):
            pass

    sampler = sgmcmc.get("sgld")([theta], lr=0.1, num_data=1)
    with pytest.raises(Diverged) as exc:
        Exploding(sampler, [False] * 10, RunContext(seed=0), "test").run()
    assert exc.value.step == 4
