"""sgmcmc.testing: every sampler (the five built-ins and a third-party one) passes the conformance
checks, and samplers that break the contract fail them, each with the failed check named.

Default run: every exact check on every sampler, the ``stationary`` check (T = 1, 256 chains x 6000
steps) on every sampler, ``step_bias`` on sgld, and the deliberately wrong samplers. The full
``check_sampler`` run of every sampler (adding ``tempered``, ``gradient_noise``, ``step_bias``) is
marked slow. Everything is seeded, so each statistical outcome is fixed; the tolerances are the
documented ones in :mod:`sgmcmc.testing` (mean within 4 MCSE, variances within 10 %; under gradient
noise 15 %, plus above the inflation the sampler's own noise-only run predicts).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import sgmcmc
from sgmcmc import SGLD
from sgmcmc.testing import (
    CHECKS,
    CheckResult,
    ConformanceError,
    Protocol,
    check_sampler,
    effective_sample_size,
    gaussian_problem,
    list_checks,
    measure_bias,
    run_check,
)

PLUGIN = "tests.plugin_sampler:LeimkuhlerMatthews"

# (sampler, keyword arguments for the statistical checks)
SAMPLERS = {
    "sgd": {},
    "sgld": {},
    "psgld": {"lr": 0.02, "alpha": 0.9999},  # preconditioned: its own step scale (see sgmcmc.testing)
    "sghmc": {},
    "underdamped": {},
    PLUGIN: {},
}
EXACT_CHECKS = list_checks(statistical=False)


def _hyper(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "lr"}


# ---------------------------------------------------------------------- the suite itself
def test_list_checks_names_and_applicability():
    names = list_checks()
    assert names == list(CHECKS)
    for expected in ("stationary", "tempered", "gradient_noise", "step_bias", "reproducible", "state_dict_resume",
                     "optimizer_api", "lr_schedulers", "grad_none_skipped", "nonfinite_gradient",
                     "hyperparameter_validation", "temperature_zero"):
        assert expected in names
    assert "step_bias" not in list_checks("sgd")  # no noise, no stationary variance
    assert "step_bias" in list_checks("sgld")
    assert set(list_checks(statistical=True)) == {"stationary", "stationary_hypers", "tempered", "gradient_noise",
                                                  "step_bias"}
    assert "stationary_hypers" in list_checks("sghmc") and "stationary_hypers" not in list_checks("sgld")  # no own hypers
    with pytest.raises(KeyError, match="valid"):
        run_check("no_such_check", "sgld")


def test_gaussian_problem_is_as_documented():
    problem = gaussian_problem()
    assert problem.dim == 10
    assert problem.condition == pytest.approx(50.0)
    cov = problem.covariance
    off = cov - torch.diag(torch.diagonal(cov))
    assert float(off.abs().max()) > 0.1 * float(torch.diagonal(cov).min())  # dense, not diagonal
    assert torch.allclose(problem.precision @ cov, torch.eye(10, dtype=torch.float64), atol=1e-10)


def test_ess_matches_arviz():
    """Our ESS is arviz's ess(method='bulk') (sgmcmc.diagnostics.ess_geyer: split, rank-normalised, Geyer)."""
    az = pytest.importorskip("arviz")
    g = torch.Generator().manual_seed(0)
    chains, n = 8, 1000
    for rho in (0.0, 0.5, 0.9, 0.99):
        x = torch.zeros(chains, n, dtype=torch.float64)
        e = torch.randn(chains, n, generator=g, dtype=torch.float64)
        x[:, 0] = e[:, 0] / math.sqrt(1 - rho**2) if rho < 1 else e[:, 0]
        for t in range(1, n):
            x[:, t] = rho * x[:, t - 1] + e[:, t]
        ours = float(effective_sample_size(x.unsqueeze(-1)))
        ref = float(az.ess(x.numpy(), method="bulk"))
        assert ours == pytest.approx(ref, rel=1e-6), (rho, ours, ref)


def test_run_check_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    run_check("reproducible", "sgld")
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------------- every sampler, exact checks
@pytest.mark.parametrize("check", EXACT_CHECKS)
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_exact_check(sampler, check):
    run_check(check, sampler, **SAMPLERS[sampler]).raise_for_failure()


# ---------------------------------------------------------------------- every sampler, statistics
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_stationary(sampler):
    result = run_check("stationary", sampler, **SAMPLERS[sampler]).raise_for_failure()
    if sgmcmc.testing.resolve_sampler(sampler).uses_noise:
        assert result.numbers["max_abs_var_err"] <= 0.10
        assert result.numbers["max_abs_mean_z"] <= 4.0
        assert result.numbers["ess_mean_min"] > 400  # enough mixing for the tolerances to mean something
    else:
        assert result.numbers["max_dist_to_mode_sd"] <= 1e-3


@pytest.mark.parametrize("sampler", ["sghmc", "underdamped", "psgld"])
def test_stationary_with_each_own_hyperparameter_moved(sampler):
    result = run_check("stationary_hypers", sampler, **SAMPLERS[sampler]).raise_for_failure()
    assert result.numbers and all(err <= 0.10 for err in result.numbers.values())
    for setting, err in result.numbers.items():  # printed as "friction=1: worst error 2.2 %"
        assert f"{setting}: worst error {100 * err:.1f} %" in str(result)


def test_result_lines_read_as_settings_and_values():
    hypers = CheckResult("stationary_hypers", "x", "passed", "", {"A=0.3": 0.028, "C=1": 0.0312})
    assert str(hypers).endswith("| A=0.3: worst error 2.8 %, C=1: worst error 3.1 %")
    plain = CheckResult("param_groups", "x", "passed", "", {"overridden": {"lr": 0.005, "friction": 0.2},
                                                             "CosineAnnealingWarmRestarts(T_0=4) first lrs": [0.01, 0.5],
                                                             "lr": 0.4})
    assert str(plain).endswith("| overridden: lr=0.005, friction=0.2, "
                               "CosineAnnealingWarmRestarts(T_0=4) first lrs: [0.01, 0.5], lr=0.4")


def test_the_checks_problem_keeps_the_mean_loss_at_another_num_data():
    base = gaussian_problem()
    other = base.with_num_data(300)
    assert other.num_data == 300 and base.with_num_data(100) is base
    x = torch.randn(4, 10, dtype=torch.float64)
    assert torch.allclose(other.grad_mean_loss(x), base.grad_mean_loss(x))  # the same L, so the same lr
    assert torch.allclose(other.covariance * 3, base.covariance)  # three times the data: a third the variance
    assert sgmcmc.testing.default_lr(other) == pytest.approx(sgmcmc.testing.default_lr(base))


class TaylorOStep(sgmcmc.UnderdampedLangevin):
    """WRONG: approximates the O-step's 1 - exp(-2 gamma) by 2 gamma (1 - gamma): right to 3 % at the
    default friction 0.1, no noise at all at friction 1."""

    @staticmethod
    def _scale(group):
        f = group["friction"]
        return math.sqrt(2 * f * (1 - f) * group["lr"] * group["temperature"] / group["num_data"]) / (-math.expm1(-f))


def test_a_noise_scale_right_only_at_the_default_hyperparameter_is_caught():
    assert run_check("stationary", TaylorOStep).status == "passed"  # at the default friction it looks right
    result = run_check("stationary_hypers", TaylorOStep)
    assert result.status == "failed" and "friction=1" in result.message


def test_step_bias_grows_for_sgld():
    result = run_check("step_bias", "sgld").raise_for_failure()
    n = result.numbers
    assert n["stiff_var_err_4x"] > n["stiff_var_err_1x"] + 5 * n["stiff_var_se_4x"]


@pytest.mark.slow
def test_step_bias_grows_for_psgld():
    result = run_check("step_bias", "psgld", **SAMPLERS["psgld"]).raise_for_failure()
    n = result.numbers
    assert n["stiff_var_err_4x"] > n["stiff_var_err_1x"] + 5 * n["stiff_var_se_4x"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_check_sampler_full(sampler):
    results = check_sampler(sampler, **SAMPLERS[sampler])
    assert [r.check for r in results] == list_checks(sampler)
    assert all(r.status == "passed" for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("sampler, hyper", [("underdamped", {"friction": 0.05}), ("sghmc", {"friction": 0.05}),
                                            ("underdamped", {"friction": 0.02})])
def test_check_sampler_full_at_legal_non_default_settings(sampler, hyper):
    results = check_sampler(sampler, **hyper)
    assert all(r.status == "passed" for r in results)


# ---------------------------------------------------------------------- samplers that break the contract
class NoiseWithoutN(SGLD):
    """WRONG: noise sqrt(2 h T) instead of sqrt(2 h T / N): the variance comes out N times too large."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        scale = math.sqrt(2.0 * group["lr"] * group["temperature"])
        torch._foreach_add_(params, self._noise(params, std=scale))


class NoiseWithoutFactorTwo(SGLD):
    """WRONG: noise sqrt(h T / N): the variance comes out half as large."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        scale = math.sqrt(group["lr"] * group["temperature"] / group["num_data"])
        torch._foreach_add_(params, self._noise(params, std=scale))


class IgnoresTemperature(SGLD):
    """WRONG: always samples at T = 1."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        torch._foreach_add_(params, self._noise(params, std=math.sqrt(2.0 * group["lr"] / group["num_data"])))


@pytest.mark.parametrize("wrong", [NoiseWithoutN, NoiseWithoutFactorTwo])
def test_wrong_noise_fails_stationary(wrong):
    with pytest.raises(ConformanceError) as info:
        check_sampler(wrong, checks=["stationary", "reproducible"])
    err = info.value
    assert [r.check for r in err.failed] == ["stationary"]  # the exact check passes; the statistics do not
    message = str(err)
    assert "stationary" in message and "marginal variance" in message
    assert "reproducible" not in message.split("\n", 1)[1]
    numbers = err.failed[0].numbers
    expected = 100.0 if wrong is NoiseWithoutN else 0.5  # N = 100
    # the measured variance ratio is reported, and is what the bug predicts
    assert numbers["mean_var_err"] == pytest.approx(expected - 1.0, rel=0.1)


@pytest.mark.slow
def test_ignoring_temperature_fails_tempered():
    results = check_sampler(IgnoresTemperature, checks=["stationary", "tempered"], raise_on_failure=False)
    status = {r.check: r.status for r in results}
    assert status == {"stationary": "passed", "tempered": "failed"}


class NumDataFixedAt100(SGLD):
    """WRONG: reads num_data as 100 whatever the param group says (right only when N = 100)."""

    def _update(self, group, params, grads):
        super()._update({**group, "num_data": 100}, params, grads)


def test_a_sampler_that_ignores_num_data_is_caught():
    """The checks run at N = 100 (stationary), 1000 and 37 (tempered) and 300 (gradient_noise)."""
    assert run_check("stationary", NumDataFixedAt100).status == "passed"  # at N = 100 it is right
    result = run_check("gradient_noise", NumDataFixedAt100)
    assert result.status == "failed" and "N=300" in result.message
    # N = 300 read as 100: the noise variance, so the covariance, three times too large
    assert result.numbers["mean_var_err"] == pytest.approx(2.0, rel=0.1)
    tempered = run_check("tempered", NumDataFixedAt100, protocol=Protocol(steps=1500, burn_in=500))
    assert tempered.status == "failed" and "N=1000" in tempered.message and "N=37" in tempered.message


class QuarterPowerTemperature(SGLD):
    """WRONG: noise sd proportional to T ** 0.25, so the variance goes as sqrt(T)."""

    def noise_scale(self, group):
        return math.sqrt(2.0 * group["lr"] / group["num_data"]) * group["temperature"] ** 0.25


class NeverHotterThanOne(SGLD):
    """WRONG: a temperature above 1 samples at T = 1 (right at T = 0, 0.5 and 1)."""

    def noise_scale(self, group):
        return math.sqrt(2.0 * group["lr"] * min(group["temperature"], 1.0) / group["num_data"])


@pytest.mark.parametrize("wrong, failed_at", [(QuarterPowerTemperature, ("T=0.5", "T=2")),
                                              (NeverHotterThanOne, ("T=2",))])
def test_the_temperature_law_is_pinned_at_two_temperatures(wrong, failed_at):
    result = run_check("tempered", wrong, protocol=Protocol(steps=2000, burn_in=1000))
    assert result.status == "failed"
    assert [t for t in ("T=0.5", "T=2") if f"tempered at {t}," in result.message] == list(failed_at)
    by_run = dict(zip(result.numbers["T"], result.numbers["max_abs_var_err_by_run"]))
    # the variance is off by sqrt(T) / T (+41 % at T = 0.5, -29 % at T = 2), or 1 / T at T = 2 (-50 %)
    for temperature, err in by_run.items():
        assert err > 0.2 if f"T={temperature:g}" in failed_at else err < 0.1
    assert run_check("stationary", wrong, protocol=Protocol(steps=2000, burn_in=1000)).status == "passed"


@pytest.mark.parametrize("sampler, friction", [("underdamped", 0.05), ("underdamped", 0.02), ("sghmc", 0.05)])
def test_gradient_noise_allows_the_inflation_a_momentum_sampler_predicts(sampler, friction):
    """Without a noise-estimate correction a momentum sampler's covariance grows by about
    lr s^2 N / (2 friction T) under gradient noise: +15 % to +37 % here, past the plain 15 %."""
    result = run_check("gradient_noise", sampler, friction=friction).raise_for_failure()
    n = result.numbers
    assert n["max_var_err"] > (0.13 if friction == 0.05 else 0.30)  # the plain 15 % would fail or nearly
    assert n["predicted_inflation_there"] == pytest.approx(n["max_var_err"], abs=0.03)  # the prediction holds
    assert "predicts an inflation of" in result.message


def test_conformance_error_lists_every_failed_check_with_numbers():
    protocol = Protocol(steps=1500, burn_in=500)  # quick: the bug is gross
    with pytest.raises(ConformanceError) as info:
        check_sampler(NoiseWithoutN, checks=["stationary", "gradient_noise", "optimizer_api"], protocol=protocol)
    err = info.value
    assert [r.check for r in err.failed] == ["stationary", "gradient_noise"]
    text = str(err)
    assert "failed 2 of 3 conformance checks: stationary, gradient_noise" in text
    assert "max_abs_var_err=" in text and "lr=" in text


class CachesLr(SGLD):
    """WRONG: reads lr once at construction, so schedulers have no effect."""

    def __init__(self, params, lr, **kw):
        super().__init__(params, lr, **kw)
        self._lr0 = lr

    def _update(self, group, params, grads):
        super()._update({**group, "lr": self._lr0}, params, grads)


class GlobalNoise(SGLD):
    """WRONG: ignores generator= and draws from the global generator."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        for p in params:
            p.add_(torch.randn_like(p), alpha=self.noise_scale(group))


class MovesBeforeChecking(SGLD):
    """WRONG: updates first, checks finiteness afterwards."""

    def __init__(self, params, lr, *, check_finite=True, **kw):
        super().__init__(params, lr, check_finite=False, **kw)
        self._really_check = check_finite

    def _update(self, group, params, grads):
        super()._update(group, params, grads)
        if self._really_check and not all(bool(torch.isfinite(g).all()) for g in grads):
            raise sgmcmc.NonFiniteGradientError("late", step=0, group_index=0, param_index=0)


class ForgetsResumeState(sgmcmc.SGHMC):
    """WRONG: drops its velocity from state_dict(), so a resumed chain restarts at rest."""

    def state_dict(self):
        sd = super().state_dict()
        sd["state"] = {}
        return sd


class NoValidation(SGLD):
    """WRONG: skips hyperparameter validation."""

    def _validate(self, group):
        pass


class FirstGroupOnly(SGLD):
    """WRONG: updates only the first param group."""

    def _update(self, group, params, grads):
        if group is self.param_groups[0]:
            super()._update(group, params, grads)


class FrictionFromDefaults(sgmcmc.SGHMC):
    """WRONG: reads friction from the constructor's defaults, not from the param group."""

    def _update(self, group, params, grads):
        super()._update({**group, "friction": self.defaults["friction"]}, params, grads)


class MutatesGrad(SGLD):
    """WRONG: scales p.grad in place (a caller logging or clipping after the step sees garbage)."""

    def _update(self, group, params, grads):
        torch._foreach_mul_(grads, -group["lr"])
        torch._foreach_add_(params, grads)


class CachesNoiseScale(SGLD):
    """WRONG: keeps the noise scale of its first step, so a later lr change moves only the drift."""

    def noise_scale(self, group):
        if not hasattr(self, "_std0"):
            self._std0 = SGLD.noise_scale(group)
        return self._std0


class HoldsALambda(SGLD):
    """WRONG: keeps an attribute that pickle and deepcopy drop, so a copy cannot step."""

    def __init__(self, params, lr, **kw):
        super().__init__(params, lr, **kw)
        self._scale = lambda: 1.0

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_scale", None)
        return state

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"] * self._scale())


class OneSeedPerStep(SGLD):
    """WRONG: a fresh generator per tensor, seeded by the step count: equal-shaped tensors get equal noise."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        t = self.state[params[0]].get("t", 0)
        for p in params:
            g = torch.Generator().manual_seed(1000 + t)
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype), alpha=self.noise_scale(group))
        self.state[params[0]]["t"] = t + 1


class OverlappingNoise(SGLD):
    """WRONG: one noise draw shared out in overlapping slices, tensor k getting values k .. k + numel: no
    two tensors get equal noise, but each tensor's noise is its neighbour's shifted by one."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        draw = torch.randn(max(p.numel() for p in params) + len(params), generator=self.generator,
                           dtype=params[0].dtype)
        for k, p in enumerate(params):
            p.add_(draw[k:k + p.numel()].view_as(p), alpha=self.noise_scale(group))


def test_correlated_noise_across_parameters_is_caught():
    result = run_check("independent_noise", OverlappingNoise)
    assert result.status == "failed"
    # parameter 1's value j is parameter 0's value j + 1: r = 1, against the bound 5 / sqrt(400)
    found = re.search(r"value (\d) of parameter 0 and value (\d) of parameter 1 \(in one group\) are correlated, "
                      r"r = \+1\.000", result.message)
    assert found and int(found[1]) == int(found[2]) + 1, result.message
    assert result.numbers["max_abs_corr"] == pytest.approx(1.0) and result.numbers["bound"] == pytest.approx(0.25)


class Float32Noise(SGLD):
    """WRONG: draws float32 noise whatever the parameters' dtype (float64 parameters get upcast draws)."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        for p in params:
            p.add_(torch.randn(p.shape, generator=self.generator).to(p.dtype), alpha=self.noise_scale(group))


class UnboundedFriction(sgmcmc.SGHMC):
    """WRONG: declares friction without a range, and a negative one crashes the step."""

    hypers = {"friction": sgmcmc.Hyper(0.1, doc="no range declared")}


@pytest.mark.parametrize(
    "wrong, check",
    [
        (FirstGroupOnly, "param_groups"),
        (FrictionFromDefaults, "param_groups"),
        (MutatesGrad, "optimizer_api"),
        (CachesNoiseScale, "lr_schedulers"),
        (HoldsALambda, "copy_and_pickle"),
        (OneSeedPerStep, "independent_noise"),
        (OverlappingNoise, "independent_noise"),
        (Float32Noise, "noise_dtype"),
        (UnboundedFriction, "hyperparameter_validation"),
        (CachesLr, "lr_schedulers"),
        (GlobalNoise, "reproducible"),
        (MovesBeforeChecking, "nonfinite_gradient"),
        (ForgetsResumeState, "state_dict_resume"),
        (NoValidation, "hyperparameter_validation"),
        (IgnoresTemperature, "temperature_zero"),
    ],
)
def test_exact_checks_catch_broken_samplers(wrong, check):
    results = check_sampler(wrong, checks=EXACT_CHECKS, raise_on_failure=False)
    failed = [r.check for r in results if r.status == "failed"]
    assert check in failed, [str(r) for r in results]


def test_a_crashing_sampler_is_reported_not_raised():
    class Crashes(SGLD):
        def _update(self, group, params, grads):
            raise RuntimeError("boom")

    result = run_check("reproducible", Crashes)
    assert result.status == "failed" and "RuntimeError: boom" in result.message


def test_check_sampler_accepts_names_paths_and_classes():
    for spec in ("sgld", "sgmcmc.sgld:SGLD", SGLD, PLUGIN):
        results = check_sampler(spec, checks=["optimizer_api"])
        assert results[0].passed
    with pytest.raises(TypeError):
        check_sampler(object)


def test_measure_bias_reports_errors_per_step():
    rows = measure_bias("sgld", [0.4, 1.6], protocol=Protocol(steps=2000, burn_in=1000))
    assert [r["lr"] for r in rows] == [0.4, 1.6]
    assert rows[1]["stiff_var_err"] > rows[0]["stiff_var_err"]
    assert all(np.isfinite(r["max_abs_var_err"]) for r in rows)


def test_command_line(capsys):
    from sgmcmc.testing import main

    assert main(["sgld", "sghmc", "--checks", "optimizer_api,lr_schedulers"]) == 0
    assert main(["psgld", "--checks", "optimizer_api", "--hyper", "alpha=0.9"]) == 0
    out = capsys.readouterr().out
    assert "== sgld" in out and "[PASSED] lr_schedulers" in out and "alpha" in out
    assert main(["tests.test_conformance:CachesLr", "--checks", "lr_schedulers"]) == 1
    assert "[FAILED] lr_schedulers" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["sgld", "--checks", "bogus"], "unknown check(s) bogus; valid: stationary"),
    (["sgld", "--checks", ","], "(none named); valid: stationary"),
    (["nosuch"], "unknown sampler 'nosuch'; valid: "),
    (["os:path"], "not a subclass of sgmcmc.Sampler"),
    (["--bias", "nosuch"], "unknown sampler 'nosuch'"),
])
def test_command_line_errors_exit_2_naming_the_valid_values(argv, needle, capsys):
    from sgmcmc.testing import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err
