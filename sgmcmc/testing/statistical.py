"""The statistical checks: chains on the dense Gaussian must sample exp(-U / T) within the
documented tolerances (see :mod:`sgmcmc.testing`); and :func:`measure_bias`, the same numbers
against the step size, without judging them."""

from __future__ import annotations

import dataclasses
import math

import torch

from ..base import Diverged
from .core import CheckFailed, CheckNotApplicable, _check, _first_valid, _fmt_item, _label, _other_value, resolve_sampler
from .problems import DEFAULT_PROTOCOL, ChainStats, GaussianProblem, default_lr, gaussian_problem, run_chains

__all__ = ["check_stationary", "check_tempered", "check_stationary_hypers", "check_gradient_noise",
           "check_step_bias", "measure_bias"]


def _setup(cls, lr, protocol, num_data=None):
    """The protocol, the problem over ``num_data`` data (default ``protocol.num_data``) and the lr.

    Every N runs the same mean loss L (:meth:`GaussianProblem.with_num_data`), so the default lr,
    a step on L, is the same at every N."""
    protocol = protocol or DEFAULT_PROTOCOL
    problem = gaussian_problem(protocol.dim, protocol.condition, protocol.num_data, protocol.seed)
    problem = problem.with_num_data(protocol.num_data if num_data is None else num_data)
    lr = default_lr(problem, protocol) if lr is None else float(lr)
    return protocol, problem, lr


def _run(cls, problem, lr, protocol, hyper, **kw) -> ChainStats:
    try:
        return run_chains(cls, problem, lr=lr, protocol=protocol, hyper=hyper, **kw)
    except Diverged as exc:
        raise CheckFailed(f"the chains {exc} with lr={lr:.4g} (pass a smaller lr=)", {"lr": lr, "diverged_at": exc.step}) from None


def _distribution_numbers(stats: ChainStats, problem: GaussianProblem, temperature: float) -> dict:
    sd_true = torch.sqrt(torch.diagonal(problem.covariance) * temperature)
    var_true = torch.diagonal(problem.covariance) * temperature
    sd_est = torch.sqrt(stats.variance)
    mcse = sd_est / torch.sqrt(stats.ess_mean)
    z = (stats.mean - problem.mean) / mcse
    var_err = stats.variance / var_true - 1.0
    eig_err = stats.eig_variance * problem.eigenvalues / temperature - 1.0
    return {
        "mean_z": z,  # (estimate - truth) / MCSE, per coordinate
        "mean_err_sd": (stats.mean - problem.mean) / sd_true,
        "var_rel_err": var_err,
        "eig_var_rel_err": eig_err,
        "ess_mean_min": float(stats.ess_mean.min()),
        "ess_var_min": float(stats.ess_var.min()),
    }


def _distribution_problems(stats, problem, temperature, protocol, var_tol, widen=None) -> tuple[dict, list[str]]:
    """The numbers of one run and what is wrong with them: every coordinate's mean within
    ``protocol.mean_mcse`` MCSE, every marginal variance's relative error within [-var_tol, var_tol
    + widen_i] (``widen``: a per-coordinate allowance above, default none)."""
    nums = _distribution_numbers(stats, problem, temperature)
    z, var_err = nums["mean_z"], nums["var_rel_err"]
    out = {
        "lr": stats.lr,
        "T": temperature,
        "N": problem.num_data,
        "max_abs_mean_z": float(z.abs().max()),
        "max_abs_var_err": float(var_err.abs().max()),
        "mean_var_err": float(var_err.mean()),
        "stiff_var_err": float(nums["eig_var_rel_err"][-1]),
        "max_abs_mean_err_sd": float(nums["mean_err_sd"].abs().max()),
        "ess_mean_min": nums["ess_mean_min"],
        "ess_var_min": nums["ess_var_min"],
        "seconds_chains": stats.seconds,
    }
    problems = []
    bad_mean = (z.abs() > protocol.mean_mcse).nonzero().flatten().tolist()
    if bad_mean:
        i = bad_mean[0]
        problems.append(
            f"mean of coordinate {i} is {float(stats.mean[i]):.4f} vs {float(problem.mean[i]):.4f}, "
            f"{float(z[i]):+.1f} MCSE (limit {protocol.mean_mcse}); {len(bad_mean)} coordinate(s) off"
        )
    high = torch.full_like(var_err, var_tol) + (0.0 if widen is None else widen.clamp(min=0.0))
    excess = torch.maximum(var_err - high, -var_tol - var_err)  # > 0: outside [-var_tol, high]
    bad_var = (excess > 0).nonzero().flatten().tolist()
    if bad_var:
        i = max(bad_var, key=lambda j: float(excess[j]))
        limit = (f"limit {var_tol:.0%}" if widen is None else
                 f"limits {-var_tol:+.1%} and {float(high[i]):+.1%}")
        problems.append(
            f"marginal variance of coordinate {i} is {float(stats.variance[i]):.4g} vs "
            f"{float(problem.covariance[i, i] * temperature):.4g} (T * Sigma_ii), relative error "
            f"{float(var_err[i]):+.1%} ({limit}); {len(bad_var)} coordinate(s) off"
        )
    if problems and min(out["ess_mean_min"], out["ess_var_min"]) < 1000:
        problems.append(
            f"note: the chains mixed poorly (smallest ESS {min(out['ess_mean_min'], out['ess_var_min']):.0f}); "
            f"a larger lr, or more steps in the Protocol, may be needed before the check means much"
        )
    return out, problems


def _assert_distribution(name, stats, problem, temperature, protocol, var_tol, lr, widen=None) -> dict:
    out, problems = _distribution_problems(stats, problem, temperature, protocol, var_tol, widen)
    if problems:
        raise CheckFailed(f"{name} at T={temperature:g}, N={problem.num_data}, lr={lr:.4g}: " + "; ".join(problems), out)
    return out


def _assert_mode(name, stats, problem, protocol, lr, temperature) -> dict:
    sd = torch.sqrt(torch.diagonal(problem.covariance))
    dist = ((stats.final - problem.mean) / sd).abs()
    out = {"lr": lr, "T": temperature, "N": problem.num_data, "max_dist_to_mode_sd": float(dist.max())}
    if not float(dist.max()) <= protocol.mode_tol:
        raise CheckFailed(
            f"{name}: a sampler without noise must converge to the mode; after {protocol.steps} steps at "
            f"lr={lr:.4g}, T={temperature:g}, N={problem.num_data} the farthest chain is {float(dist.max()):.3g} "
            f"posterior sds away (limit {protocol.mode_tol})",
            out,
        )
    out["_message"] = "uses_noise is False: converged to the mode"
    return out


@_check("stationary", statistical=True)
def check_stationary(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """T = 1, exact gradients: mean within 4 MCSE, marginal variances within 10 % (sgd: the mode)."""
    protocol, problem, lr = _setup(cls, lr, protocol)
    stats = _run(cls, problem, lr, protocol, hyper, temperature=1.0)
    if not cls.uses_noise:
        return _assert_mode("stationary", stats, problem, protocol, lr, 1.0)
    return _assert_distribution("stationary", stats, problem, 1.0, protocol, protocol.var_tol, lr)


def _worst_of(results: list[dict]) -> dict:
    """The numbers of several runs as one result: T and N as lists, each error the worst of the runs
    (each ESS the smallest), and the largest variance error of each run as ``max_abs_var_err_by_run``."""
    pick = {"max_abs_mean_z": max, "max_abs_var_err": max, "max_abs_mean_err_sd": max, "max_dist_to_mode_sd": max,
            "ess_mean_min": min, "ess_var_min": min, "seconds_chains": sum,
            "mean_var_err": lambda xs: max(xs, key=abs), "stiff_var_err": lambda xs: max(xs, key=abs)}
    out = {"lr": results[0]["lr"], "T": [r["T"] for r in results], "N": [r["N"] for r in results]}
    for key, how in pick.items():
        if key in results[0]:
            out[key] = how([r[key] for r in results])
    if "max_abs_var_err" in results[0]:
        out["max_abs_var_err_by_run"] = [r["max_abs_var_err"] for r in results]
    return out


@_check("tempered", statistical=True)
def check_tempered(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """T = 0.5 (N = 1000) and T = 2 (N = 37): the covariance is T * Sigma (marginals within 10 %), mean
    within 4 MCSE (sgd: the mode)."""
    protocol = protocol or DEFAULT_PROTOCOL
    runs = list(zip((protocol.tempered, protocol.tempered_hot), protocol.tempered_num_data))
    results, problems = [], []
    for k, (temperature, num_data) in enumerate(runs):
        _, problem, lr_k = _setup(cls, lr, protocol, num_data)
        # other seeds: independent replicates, not the T = 1 chains rescaled
        stats = _run(cls, problem, lr_k, protocol, hyper, temperature=temperature, seed=protocol.seed + 1 + k)
        if not cls.uses_noise:
            results.append(_assert_mode("tempered", stats, problem, protocol, lr_k, temperature))
            continue
        out, found = _distribution_problems(stats, problem, temperature, protocol, protocol.var_tol)
        results.append(out)
        if found:
            problems.append(f"at T={temperature:g}, N={num_data}, lr={lr_k:.4g}: " + "; ".join(found))
    out = _worst_of(results)
    if problems:
        raise CheckFailed("tempered " + "; tempered ".join(problems), out)
    if not cls.uses_noise:
        out["_message"] = "uses_noise is False: converged to the mode at both temperatures"
    return out


def _far_value(spec, value):
    """A valid value of a numeric hyperparameter far from ``value``: its closed upper bound, halfway to
    an open one, else 10x (None when there is none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if spec.high is not None:
        far = spec.high if not spec.high_open else 0.5 * (value + spec.high)
    else:
        far = 10 * value if value > 0 else value + 10.0
    return _first_valid(spec, value, [far, _other_value(spec, value)])


def _render_hypers(numbers: dict) -> list[str]:
    """``name=value: worst error 2.8 %`` for each value tried (the largest relative error of a marginal
    variance there); the other numbers (those of a failed run) as usual."""
    out = []
    for key, value in numbers.items():
        if "=" in key and isinstance(value, float):
            out.append(f"{key}: worst error {100 * value:.1f} %")
        else:
            out.append(_fmt_item(key, value))
    return out


@_check("stationary_hypers", statistical=True, applies=lambda cls: bool(cls.uses_noise and cls.hypers),
        render=_render_hypers)
def check_stationary_hypers(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """``stationary`` again with each own hyperparameter moved far from its default (its upper bound,
    or 10x): the target must not depend on them (a noise scale right only at the default fails)."""
    protocol, problem, lr = _setup(cls, lr, protocol)
    out = {}
    for k, (name, spec) in enumerate(cls.hypers.items()):
        value = _far_value(spec, hyper.get(name, spec.default))
        if value is None:
            continue
        stats = _run(cls, problem, lr, protocol, {**hyper, name: value}, temperature=1.0, seed=protocol.seed + 10 + k)
        try:
            numbers = _assert_distribution(f"stationary_hypers ({name}={value:g})", stats, problem, 1.0, protocol,
                                           protocol.var_tol, lr)
        except CheckFailed as exc:
            raise CheckFailed(str(exc), {name: value, **exc.numbers}) from None
        out[f"{name}={value:g}"] = numbers.get("max_abs_var_err")
    if not out:
        raise CheckNotApplicable(f"{_label(cls)} has no numeric hyperparameter of its own to move")
    return out


def _noise_only_inflation(cls, problem, lr, protocol, hyper) -> tuple[torch.Tensor | None, str]:
    """Each marginal variance that the gradient noise alone gives through the sampler's own dynamics,
    relative to Sigma_ii: chains at T = 0 (no injected noise), started at the mode, under the same
    gradient noise. For a sampler linear in its noise (sgld, sghmc, underdamped on a Gaussian) the
    covariance under gradient noise at T = 1 is the T = 1 covariance plus this one. None (and why)
    when those chains diverge."""
    quick = dataclasses.replace(protocol, chains=protocol.noise_only_chains, steps=protocol.noise_only_steps,
                                burn_in=protocol.noise_only_burn_in, start_scale=0.0)
    try:
        stats = run_chains(cls, problem, lr=lr, temperature=0.0, protocol=quick, grad_noise=protocol.grad_noise,
                           seed=protocol.seed + 3, hyper=hyper)
    except Diverged as exc:
        return None, f"the noise-only chains (T = 0) {exc}: no inflation allowed"
    return stats.variance / torch.diagonal(problem.covariance), ""


@_check("gradient_noise", statistical=True)
def check_gradient_noise(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Gradient + N(0, (0.5 sd of the exact gradient)^2), N = 300: mean within 4 MCSE, variances within
    15 % below and 15 % + the inflation of the sampler's own noise-only run above."""
    protocol = protocol or DEFAULT_PROTOCOL
    protocol, problem, lr = _setup(cls, lr, protocol, protocol.grad_noise_num_data)
    stats = _run(cls, problem, lr, protocol, hyper, temperature=1.0, grad_noise=protocol.grad_noise)
    if not cls.uses_noise:
        nums = _distribution_numbers(stats, problem, 1.0)
        z = nums["mean_z"]
        out = {"lr": lr, "N": problem.num_data, "grad_noise": protocol.grad_noise, "max_abs_mean_z": float(z.abs().max()),
               "max_abs_mean_err_sd": float(nums["mean_err_sd"].abs().max())}
        if float(z.abs().max()) > protocol.mean_mcse:
            raise CheckFailed(f"gradient_noise: the iterate average is {float(z.abs().max()):.1f} MCSE from the mode "
                              f"(limit {protocol.mean_mcse})", out)
        out["_message"] = "uses_noise is False: the iterate average sits at the mode"
        return out
    inflation, note = _noise_only_inflation(cls, problem, lr, protocol, hyper)
    var_err = stats.variance / torch.diagonal(problem.covariance) - 1.0
    i = int(var_err.argmax())
    extra = {"grad_noise": protocol.grad_noise,
             "max_var_err": float(var_err[i]),
             "predicted_inflation_there": float(inflation[i]) if inflation is not None else 0.0,
             "max_predicted_inflation": float(inflation.max()) if inflation is not None else 0.0}
    try:
        out = _assert_distribution("gradient_noise", stats, problem, 1.0, protocol, protocol.noise_var_tol, lr,
                                   widen=inflation)
    except CheckFailed as exc:
        raise CheckFailed(str(exc) + (f"; {note}" if note else ""), {**exc.numbers, **extra}) from None
    out.update(extra)
    out["_message"] = (f"largest variance error {float(var_err[i]):+.1%} (coordinate {i}), where the sampler's own "
                       f"noise-only run predicts an inflation of {extra['predicted_inflation_there']:+.1%}; limits "
                       f"{-protocol.noise_var_tol:+.0%} and {protocol.noise_var_tol:+.0%} + that inflation"
                       + (f"; {note}" if note else ""))
    return out


@_check("step_bias", statistical=True, applies=lambda cls: bool(cls.uses_noise))
def check_step_bias(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """The stiff-direction variance error at 4x the step exceeds the one at 1x (or both are nil)."""
    if not cls.uses_noise:
        raise CheckNotApplicable("a sampler without noise has no stationary variance")
    protocol, problem, lr = _setup(cls, lr, protocol)
    errs, ses = [], []
    out: dict = {"lr": lr, "factor": protocol.bias_factor}
    for f in (1.0, protocol.bias_factor):
        try:
            stats = run_chains(cls, problem, lr=lr * f, protocol=protocol, hyper=hyper)
        except Diverged as exc:
            raise CheckFailed(f"step_bias: the chains {exc} at lr={lr * f:.4g}", out) from None
        err = stats.eig_variance[-1] * problem.eigenvalues[-1] - 1.0
        se = math.sqrt(2.0 / float(stats.ess_eig_var[-1]))
        nums = _distribution_numbers(stats, problem, 1.0)
        tag = "1x" if f == 1.0 else f"{f:g}x"
        out[f"stiff_var_err_{tag}"] = float(err)
        out[f"stiff_var_se_{tag}"] = se
        out[f"max_abs_var_err_{tag}"] = float(nums["var_rel_err"].abs().max())
        out[f"max_abs_mean_err_sd_{tag}"] = float(nums["mean_err_sd"].abs().max())
        errs.append(abs(float(err)))
        ses.append(se)
    e1, e4 = errs
    if e4 > e1:
        out["_message"] = f"stiff-direction variance error grows from {e1:.3g} to {e4:.3g}"
        return out
    if max(e1 / ses[0], e4 / ses[1]) < protocol.bias_floor_se:
        out["_message"] = (f"no measurable bias at either step (errors {e1:.3g}, {e4:.3g} within "
                           f"{protocol.bias_floor_se} standard errors of 0)")
        return out
    raise CheckFailed(
        f"step_bias: the stiff-direction variance error at {protocol.bias_factor:g}x the step ({e4:.3g}) "
        f"does not exceed the one at 1x ({e1:.3g}); the bias should grow with the step", out)


def measure_bias(
    sampler: Any,
    lrs: list[float],
    *,
    temperature: float = 1.0,
    grad_noise: float = 0.0,
    protocol: Protocol | None = None,
    **hyper,
) -> list[dict]:
    """The errors of ``sampler`` on the checks' Gaussian at each step in ``lrs`` (no pass/fail).

    Per lr: the largest and the average relative marginal-variance error, the relative variance
    error along the stiffest eigen-direction of P (with its standard error), the largest mean error
    in posterior sds, the Mahalanobis norm of the mean error, the smallest ESS, and seconds.
    """
    cls = resolve_sampler(sampler)
    protocol = protocol or DEFAULT_PROTOCOL
    problem = gaussian_problem(protocol.dim, protocol.condition, protocol.num_data, protocol.seed)
    rows = []
    for lr in lrs:
        try:
            stats = run_chains(cls, problem, lr=lr, temperature=temperature, protocol=protocol,
                               grad_noise=grad_noise, hyper=hyper)
        except Diverged as exc:
            rows.append({"lr": lr, "diverged": str(exc)})
            continue
        nums = _distribution_numbers(stats, problem, temperature)
        err = stats.mean - problem.mean
        rows.append({
            "lr": lr,
            "max_abs_var_err": float(nums["var_rel_err"].abs().max()),
            "mean_var_err": float(nums["var_rel_err"].mean()),
            "stiff_var_err": float(nums["eig_var_rel_err"][-1]),
            "stiff_var_se": math.sqrt(2.0 / float(stats.ess_eig_var[-1])),
            "max_abs_mean_err_sd": float(nums["mean_err_sd"].abs().max()),
            "mahalanobis_mean_err": float(torch.sqrt(err @ problem.precision @ err / temperature)),
            "ess_mean_min": nums["ess_mean_min"],
            "seconds": stats.seconds,
        })
    return rows
