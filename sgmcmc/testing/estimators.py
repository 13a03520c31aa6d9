"""Conformance checks for a gradient *estimator* (e.g. control variates) used with a sampler.

The problem is a finite sum whose posterior is known in closed form, with real minibatch noise:
N data, each with its own quadratic potential

    u_i(x) = 0.5 (x - y_i)^T A_i (x - y_i),     A_i = M diag(w_i) M^T,

with different curvatures A_i (w_i log-normal per datum, M a fixed matrix that sets the condition
number), and a prior 0.5 p0 |x|^2. So U = sum_i u_i + prior, L = U / N, and the posterior is
Gaussian: precision P = sum_i A_i + p0 I, mean P^-1 sum_i A_i y_i. Because the A_i differ, the
control-variate residual (A_B - A_bar)(x - x_hat) is not zero: the checks see its real noise.

:func:`check_estimator` runs three checks, with many chains as the rows of one tensor (as
:func:`sgmcmc.testing.problems.run_chains`), each chain drawing its own minibatch (with replacement):

- ``estimator_noise``: at draws from the exact posterior, the estimator's error against the exact
  gradient: its mean must be zero (within 5 standard errors per coordinate), its variance must be
  at most ``max_noise_ratio`` of the plain minibatch gradient's, and at most ``1 + noise_theory_tol``
  times the control-variate theory's (below). The ratio and the theory are in the result.
- ``estimator_stationary`` (T = 1) and ``estimator_tempered`` (T = 0.5): the sampler reading the
  estimator; means within 4 MCSE, marginal variances within ``var_tol`` + the inflation the theory
  predicts for the estimator's residual noise (no sampler corrects for gradient noise).

Theory. With B data drawn with replacement, the control variate's error at x is the mean of the
per-datum residuals r_i = (A_i - A_bar)(x - x_hat), whose mean over i is zero, so its covariance is
S(x) = E_i[(A_i - A_bar) (x - x_hat)(x - x_hat)^T (A_i - A_bar)] / B; averaged over the target
N(m, T Sigma) this is S_bar = E_i[(A_i - A_bar) C (A_i - A_bar)] / B with C = T Sigma +
(m - x_hat)(m - x_hat)^T. The plain minibatch gradient's error has per-datum terms
(A_i - A_bar) x - (A_i y_i - mean_j A_j y_j), whose covariance does not shrink near the mode. Noise of
covariance S_bar in a step h on L adds h^2 S_bar a step to the sampler's noise 2 h T / N (sgld;
sghmc: to 2 friction h T / N), so the stationary covariance gains X solving H X + X H = (h / gamma)
S_bar, H = P / N, gamma = 1 for a first-order sampler and its ``friction`` for a second-order one:
a relative variance inflation of about h S N / (2 gamma T).

The centre x_hat is deliberately *not* the mode (``centre_offset`` marginal posterior sds from it in
every coordinate): an estimator that is right only at the mode, one that drops g_full(x_hat), say,
is then caught.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..base import Diverged, NonFiniteGradientError
from ..gradients import control_variate
from .core import CheckFailed, CheckResult, _label, resolve_sampler
from .problems import ChainStats, _single_thread
from .statistical import _assert_distribution

__all__ = ["EstimatorProtocol", "FiniteSumProblem", "finite_sum_problem", "ESTIMATORS", "estimator_lr",
           "measure_noise", "run_estimator_chains", "check_estimator"]

#: estimator(grad_fn, theta, batch, centre, centre_grad) -> the gradient estimate of every chain
Estimator = Callable[[Callable, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _minibatch(grad_fn, theta, batch, centre, centre_grad):
    return grad_fn(theta, batch)


#: the estimators :func:`check_estimator` knows by name
ESTIMATORS: dict[str, Estimator] = {"control_variates": control_variate, "minibatch": _minibatch}


@dataclass(frozen=True)
class EstimatorProtocol:
    """The settings of the estimator checks (the defaults are the documented contract)."""

    dim: int = 5
    num_data: int = 500
    batch_size: int = 5
    condition: float = 10.0
    #: sd of log w_i: how much the data's curvatures differ
    curvature_spread: float = 1.0
    #: sd of the data's y_i around their centre
    data_spread: float = 1.0
    prior_precision: float = 1.0
    chains: int = 256
    steps: int = 4000
    burn_in: int = 1000
    thin: int = 4
    #: default lr = step_factor / lambda_max(P / N), times friction for a second-order sampler
    step_factor: float = 0.2
    start_scale: float = 3.0
    #: the centre: mode + centre_offset * (marginal posterior sd) in every coordinate
    centre_offset: float = 0.5
    mean_mcse: float = 4.0
    var_tol: float = 0.10
    tempered: float = 0.5
    noise_draws: int = 8192
    noise_bias_z: float = 5.0
    max_noise_ratio: float = 0.05
    noise_theory_tol: float = 0.25
    seed: int = 0


DEFAULT_ESTIMATOR_PROTOCOL = EstimatorProtocol()


@dataclass(frozen=True)
class FiniteSumProblem:
    """u_i(x) = 0.5 (x - y_i)^T M diag(w_i) M^T (x - y_i), prior 0.5 p0 |x|^2; float64 throughout."""

    m: torch.Tensor  # [d, d]
    w: torch.Tensor  # [N, d]
    y: torch.Tensor  # [N, d]
    prior_precision: float
    precision: torch.Tensor  # P, of U (not L)
    covariance: torch.Tensor
    mean: torch.Tensor
    eigenvalues: torch.Tensor  # of P, ascending
    eigenvectors: torch.Tensor

    @property
    def num_data(self) -> int:
        return self.w.shape[0]

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def curvatures(self) -> torch.Tensor:
        """A_i for every datum [N, d, d]."""
        return torch.einsum("ak,nk,bk->nab", self.m, self.w, self.m)

    def grad_fn(self, dtype: torch.dtype = torch.float64) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """grad_fn(x [C, d], idx [C, B]) -> each chain's minibatch gradient of L on its own batch."""
        m, w, y = self.m.to(dtype), self.w.to(dtype), self.y.to(dtype)
        p0, n = self.prior_precision, self.num_data

        def grad(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            z = ((x.unsqueeze(1) - y[idx]) @ m) * w[idx]  # [C, B, d]: M^T (x - y_b) weighted by w_b
            return z.mean(1) @ m.T + x * (p0 / n)

        return grad

    def full_grad(self, x: torch.Tensor) -> torch.Tensor:
        """The exact grad L = P (x - mean) / N for each row of x (float64)."""
        return (x.to(torch.float64) - self.mean) @ self.precision / self.num_data

    def centre(self, offset: float) -> torch.Tensor:
        return self.mean + offset * torch.sqrt(torch.diagonal(self.covariance))

    def noise_theory(self, centre: torch.Tensor, batch_size: int, temperature: float = 1.0) -> dict[str, torch.Tensor]:
        """The error covariances of the control variate and of the plain minibatch gradient,
        averaged over the target N(mean, T Sigma) (see the module docstring): [d, d] each."""
        a = self.curvatures()
        a_bar = a.mean(0)
        da = a - a_bar
        delta = self.mean - centre
        c = temperature * self.covariance + torch.outer(delta, delta)
        s_cv = torch.einsum("nab,bc,ndc->ad", da, c, da) / (self.num_data * batch_size)
        ay = torch.einsum("nab,nb->na", a, self.y)
        e_mean = da @ self.mean - (ay - ay.mean(0))  # per-datum error at the target's mean
        s_plain = (e_mean.T @ e_mean / self.num_data
                   + torch.einsum("nab,bc,ndc->ad", da, temperature * self.covariance, da) / self.num_data) / batch_size
        return {"cv": s_cv, "minibatch": s_plain}


def finite_sum_problem(protocol: EstimatorProtocol = DEFAULT_ESTIMATOR_PROTOCOL) -> FiniteSumProblem:
    """The problem of the checks, from ``protocol.seed``: M = Q1 diag(sqrt(s)) Q2 with s log-spaced over
    [1, condition], w_i = exp(spread z - spread^2 / 2) (mean 1), y_i = c + data_spread xi."""
    d, n = protocol.dim, protocol.num_data
    g = torch.Generator().manual_seed(4000 + protocol.seed)

    def rotation():
        q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r))

    s = torch.logspace(0.0, math.log10(protocol.condition), d, dtype=torch.float64)
    m = rotation() @ torch.diag(s.sqrt()) @ rotation()
    sp = protocol.curvature_spread
    w = torch.exp(sp * torch.randn(n, d, generator=g, dtype=torch.float64) - 0.5 * sp * sp)
    y = torch.linspace(-1.0, 1.0, d, dtype=torch.float64) + protocol.data_spread * torch.randn(n, d, generator=g,
                                                                                              dtype=torch.float64)
    a = torch.einsum("ak,nk,bk->nab", m, w, m)
    precision = a.sum(0) + protocol.prior_precision * torch.eye(d, dtype=torch.float64)
    precision = 0.5 * (precision + precision.T)
    mean = torch.linalg.solve(precision, torch.einsum("nab,nb->a", a, y))
    lam, vec = torch.linalg.eigh(precision)
    covariance = vec @ torch.diag(1.0 / lam) @ vec.T
    return FiniteSumProblem(m, w, y, protocol.prior_precision, precision, 0.5 * (covariance + covariance.T), mean,
                            lam, vec)


def _resolve_estimator(estimator: str | Estimator) -> tuple[str, Estimator]:
    if callable(estimator):
        return getattr(estimator, "__name__", repr(estimator)), estimator
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)} or a callable "
                         f"estimator(grad_fn, theta, batch, centre, centre_grad)")
    return estimator, ESTIMATORS[estimator]


def _gamma(cls: type, hyper: dict) -> float:
    """1 for a first-order sampler, its friction for a second-order one (a ``friction`` hyperparameter)."""
    spec = getattr(cls, "hypers", {}).get("friction")
    return float(hyper.get("friction", spec.default)) if spec is not None else 1.0


def estimator_lr(cls: type, problem: FiniteSumProblem, protocol: EstimatorProtocol, hyper: dict) -> float:
    """step_factor * N / lambda_max(P), times the friction of a second-order sampler (whose gradient
    noise inflates the variance 1 / friction times more at the same step)."""
    return protocol.step_factor * problem.num_data / float(problem.eigenvalues.max()) * _gamma(cls, hyper)


def _inflation(problem: FiniteSumProblem, s_bar: torch.Tensor, lr: float, gamma: float, temperature: float) -> torch.Tensor:
    """The predicted relative inflation of each marginal variance: diag(X) / (T Sigma_ii) with
    H X + X H = (lr / gamma) S_bar, H = P / N (solved in H's eigenbasis)."""
    lam = problem.eigenvalues / problem.num_data
    v = problem.eigenvectors
    rhs = v.T @ s_bar @ v * (lr / gamma)
    x = v @ (rhs / (lam[:, None] + lam[None, :])) @ v.T
    return torch.diagonal(x) / (temperature * torch.diagonal(problem.covariance))


def measure_noise(estimator: str | Estimator = "control_variates",
                  protocol: EstimatorProtocol = DEFAULT_ESTIMATOR_PROTOCOL, temperature: float = 1.0) -> dict:
    """The estimator's error against the exact gradient at ``noise_draws`` draws from the target
    N(mean, T Sigma), each with its own minibatch: mean (bias) z-scores, the error covariance's
    trace, and the same for the plain minibatch gradient, with the theory's traces."""
    _, est = _resolve_estimator(estimator)
    problem = finite_sum_problem(protocol)
    g = torch.Generator().manual_seed(protocol.seed + 31)
    k, d = protocol.noise_draws, problem.dim
    chol = torch.linalg.cholesky(temperature * problem.covariance)
    x = problem.mean + torch.randn(k, d, generator=g, dtype=torch.float64) @ chol.T
    idx = torch.randint(problem.num_data, (k, protocol.batch_size), generator=g)
    grad_fn = problem.grad_fn(torch.float64)
    centre = problem.centre(protocol.centre_offset)
    centre_grad = problem.full_grad(centre.unsqueeze(0)).squeeze(0)
    exact = problem.full_grad(x)
    err = est(grad_fn, x, idx, centre, centre_grad) - exact
    plain = grad_fn(x, idx) - exact
    bias_z = err.mean(0) / (err.std(0) / math.sqrt(k))
    theory = problem.noise_theory(centre, protocol.batch_size, temperature)
    trace = float((err - err.mean(0)).square().sum(1).mean())
    trace_plain = float(plain.square().sum(1).mean())
    return {
        "bias_z_max": float(bias_z.abs().max()),
        "noise_trace": trace,
        "noise_trace_minibatch": trace_plain,
        "noise_ratio": trace / trace_plain,
        "theory_trace_cv": float(torch.trace(theory["cv"])),
        "theory_trace_minibatch": float(torch.trace(theory["minibatch"])),
        "theory_ratio": float(torch.trace(theory["cv"]) / torch.trace(theory["minibatch"])),
        "noise_cov": ((err - err.mean(0)).T @ (err - err.mean(0)) / (k - 1)),
    }


def run_estimator_chains(sampler: Any, estimator: str | Estimator = "control_variates", *, lr: float,
                         temperature: float = 1.0, protocol: EstimatorProtocol = DEFAULT_ESTIMATOR_PROTOCOL,
                         seed: int | None = None, hyper: dict | None = None) -> ChainStats:
    """``protocol.chains`` chains of ``sampler`` as one [chains, d] float32 parameter, each reading
    the estimator on its own minibatch of ``batch_size`` (drawn with replacement) every step."""
    cls = resolve_sampler(sampler)
    _, est = _resolve_estimator(estimator)
    problem = finite_sum_problem(protocol)
    seed = protocol.seed if seed is None else seed
    d, n = problem.dim, problem.num_data
    gen = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(problem.covariance)
    x0 = problem.mean + protocol.start_scale * torch.randn(protocol.chains, d, generator=gen,
                                                           dtype=torch.float64) @ chol.T
    x = torch.nn.Parameter(x0.to(torch.float32))
    grad_fn = problem.grad_fn(torch.float32)
    centre64 = problem.centre(protocol.centre_offset)
    centre = centre64.to(torch.float32)
    centre_grad = problem.full_grad(centre64.unsqueeze(0)).squeeze(0).to(torch.float32)
    batch_gen = torch.Generator().manual_seed(seed + 7919)
    n_keep = len(range(protocol.burn_in, protocol.steps, protocol.thin))
    draws = torch.empty(n_keep, protocol.chains, d, dtype=torch.float32)
    t0 = time.perf_counter()
    with _single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        opt = cls([x], lr, num_data=n, temperature=temperature, generator=torch.Generator().manual_seed(seed + 2),
                  **(hyper or {}))
        k = 0
        for t in range(protocol.steps):
            idx = torch.randint(n, (protocol.chains, protocol.batch_size), generator=batch_gen)
            with torch.no_grad():
                x.grad = est(grad_fn, x.detach(), idx, centre, centre_grad)
            try:
                opt.step()
            except NonFiniteGradientError as exc:
                raise Diverged(t, str(exc)) from None
            if t >= protocol.burn_in and (t - protocol.burn_in) % protocol.thin == 0:
                draws[k] = x.detach()
                k += 1
            if t % 500 == 499 and not bool(torch.isfinite(x).all()):
                raise Diverged(t, "non-finite parameters")
    if not bool(torch.isfinite(draws).all()):
        raise Diverged(protocol.steps, "non-finite parameters")
    return ChainStats(lr=lr, temperature=temperature, samples=draws.to(torch.float64).transpose(0, 1).contiguous(),
                      final=x.detach().to(torch.float64), eigenvectors=problem.eigenvectors,
                      seconds=time.perf_counter() - t0)


def _result(name: str, label: str, fn) -> CheckResult:
    t0 = time.perf_counter()
    try:
        numbers = fn()
    except CheckFailed as exc:
        return CheckResult(name, label, "failed", str(exc), exc.numbers, time.perf_counter() - t0)
    except Diverged as exc:
        return CheckResult(name, label, "failed", f"the chains {exc}", {}, time.perf_counter() - t0)
    message = numbers.pop("_message", "")
    return CheckResult(name, label, "passed", message, numbers, time.perf_counter() - t0)


def check_estimator(sampler: Any, estimator: str | Estimator = "control_variates", *, lr: float | None = None,
                    protocol: EstimatorProtocol | None = None, **hyper) -> list[CheckResult]:
    """Run ``estimator_noise``, ``estimator_stationary`` and ``estimator_tempered`` (module docstring)
    for ``sampler`` reading ``estimator`` ("control_variates", "minibatch", or a callable
    ``estimator(grad_fn, theta, batch, centre, centre_grad)``) on the finite-sum problem. ``lr``
    defaults to :func:`estimator_lr`; ``hyper`` are the sampler's own hyperparameters. Returns one
    :class:`~sgmcmc.testing.core.CheckResult` per check (never raises for a failure: see
    ``CheckResult.raise_for_failure``)."""
    protocol = protocol or DEFAULT_ESTIMATOR_PROTOCOL
    cls = resolve_sampler(sampler)
    name, est = _resolve_estimator(estimator)
    label = f"{_label(cls)} + {name}"
    problem = finite_sum_problem(protocol)
    lr = estimator_lr(cls, problem, protocol, hyper) if lr is None else float(lr)
    gamma = _gamma(cls, hyper)
    centre = problem.centre(protocol.centre_offset)

    def noise() -> dict:
        out = {k: v for k, v in measure_noise(est, protocol).items() if k != "noise_cov"}
        problems = []
        if out["bias_z_max"] > protocol.noise_bias_z:
            problems.append(f"the estimate is biased: its mean error is {out['bias_z_max']:.1f} standard errors "
                            f"from 0 (limit {protocol.noise_bias_z})")
        if out["noise_ratio"] > protocol.max_noise_ratio:
            problems.append(f"its error variance is {out['noise_ratio']:.3g} of the plain minibatch gradient's "
                            f"(limit {protocol.max_noise_ratio}; control-variate theory {out['theory_ratio']:.3g})")
        if out["noise_trace"] > (1.0 + protocol.noise_theory_tol) * out["theory_trace_cv"]:
            problems.append(f"its error variance (trace) {out['noise_trace']:.3g} exceeds the control-variate "
                            f"theory's {out['theory_trace_cv']:.3g} by more than {protocol.noise_theory_tol:.0%}")
        if problems:
            raise CheckFailed("estimator_noise: " + "; ".join(problems), out)
        return out

    def distribution(check: str, temperature: float, seed: int) -> Callable[[], dict]:
        def run() -> dict:
            s_bar = problem.noise_theory(centre, protocol.batch_size, temperature)["cv"]
            predicted = _inflation(problem, s_bar, lr, gamma, temperature)
            tol = protocol.var_tol + float(predicted.max())
            stats = run_estimator_chains(cls, est, lr=lr, temperature=temperature, protocol=protocol, seed=seed,
                                         hyper=hyper)
            try:
                out = _assert_distribution(check, stats, problem, temperature, protocol, tol, lr)
            except CheckFailed as exc:
                raise CheckFailed(str(exc), {**exc.numbers, "var_tol": tol,
                                             "predicted_inflation_max": float(predicted.max())}) from None
            out.update(var_tol=tol, predicted_inflation_max=float(predicted.max()))
            return out
        return run

    with torch.random.fork_rng(devices=[]):
        return [
            _result("estimator_noise", label, noise),
            _result("estimator_stationary", label, distribution("estimator_stationary", 1.0, protocol.seed)),
            _result("estimator_tempered", label,
                    distribution("estimator_tempered", protocol.tempered, protocol.seed + 1)),
        ]
