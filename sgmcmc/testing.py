"""Conformance checks for samplers: run any :class:`sgmcmc.Sampler` through the contract.

Like scikit-learn's ``check_estimator``::

    from sgmcmc.testing import check_sampler
    check_sampler("sgld")                                # a registered name
    check_sampler("psgld", lr=0.02, alpha=0.9999)        # lr and the sampler's own hyperparameters
    check_sampler("mypkg.samplers:MySampler")            # anything sgmcmc.get resolves, or a class

runs every applicable check, collects the results and raises :class:`ConformanceError` naming each
failed check with its measured numbers. The checks are also exposed one by one, so a test suite can
parametrize over (sampler, check) pairs::

    @pytest.mark.parametrize("check", list_checks("sgld"))
    def test_sgld(check):
        run_check(check, "sgld").raise_for_failure()

The checks (:func:`list_checks` lists them; :data:`CHECKS` maps name -> function):

``stationary``
    On a 10-dimensional Gaussian with a dense covariance of condition number 50 (the potential
    U = 0.5 (x - mu)^T P (x - mu) over N = 100 data, exact full-batch gradients grad L = P (x - mu) / N),
    256 chains run as one ``[chains, d]`` tensor from an overdispersed start (3x the posterior
    spread). After burn-in at T = 1, each coordinate's mean must lie within 4 Monte-Carlo standard
    errors of the truth (MCSE = sd / sqrt(ESS), with ESS from Geyer's initial monotone sequence over
    all split chains, as Stan and ``arviz.ess(method="mean")`` compute it) and each marginal variance
    within 10 %. A sampler whose
    ``uses_noise`` is False (``sgd``) must instead converge to the mode (every chain within 1e-3
    posterior standard deviations of mu).
``tempered``
    The same at T = 0.5 (and another seed): the covariance must be half the posterior's (every
    marginal variance within 10 % of T * Sigma_ii). For ``uses_noise = False``, the mode again.
``gradient_noise``
    As ``stationary``, with minibatch-like gradient noise: each gradient coordinate gets
    N(0, s_i^2) added with s_i = 0.5 * sqrt(P_ii) / N, half the standard deviation of the exact
    gradient over the posterior. Tolerance: mean within 4 MCSE, marginal variances within 15 %
    (largest measured at the default steps: sgld 3 %, psgld 4 %, sghmc 9 %, underdamped 8 %; the
    momentum samplers, with no noise-estimate correction, inflate the covariance by about
    lr * s^2 * N / (2 friction T)). For ``sgd``: the iterate average lies within 4 MCSE of the mode.
``stationary_hypers``
    ``stationary`` again with each of the sampler's own hyperparameters moved far from its default (its
    closed upper bound, halfway to an open one, else 10x): the target must not depend on them. A
    noise scale that is right only at the default value (a Taylor approximation of 1 - exp(-2 gamma),
    say) fails here.
``step_bias``
    Discretisation bias must not shrink when the step grows: the variance error along the stiffest
    eigen-direction of P (where the bias of a discretisation is largest) at 4x the step must exceed
    the one at 1x; a sampler whose error is within Monte-Carlo noise of 0 at both steps (BAOAB is
    exact in position for Gaussians) passes as "no measurable bias". Samplers with noise only.
``temperature_zero``
    The noise is scaled by T: at T = 0 the trajectory does not depend on the random seed. For
    ``uses_noise = False`` the trajectory depends on neither seed nor temperature.
``reproducible``
    The same seed gives the identical trajectory, with the global generator (``torch.manual_seed``)
    and with an explicit ``generator=`` (then independent of the global seed).
``state_dict_resume``
    ``state_dict()`` saved mid-chain (through ``torch.save``/``torch.load``) and loaded into a fresh
    sampler continues the chain bit for bit: with an explicit generator its state travels in the
    state dict; with the global generator the caller saves ``torch.get_rng_state()``. Also on a
    bucket of 90k values, whose CPU noise comes from two noise streams (their states travel too).
``optimizer_api``
    ``step()`` leaves ``p.grad`` as it found it; ``zero_grad()`` (set_to_none, and zeroing),
    ``step(closure)`` returning the loss, and hyperparameters exposed in ``param_groups``.
``lr_schedulers``
    ``LambdaLR`` with polynomial decay lr_t = a (b + t)^-gamma and ``CosineAnnealingWarmRestarts``
    change the group lr, and the sampler uses it: the scheduled run equals a run whose group lr is
    set by hand to the same values, and differs from a constant-lr run. An lr lowered by hand
    mid-chain acts exactly as in a fresh sampler resumed there (nothing derived from lr, such as the
    noise scale, may be kept from an earlier step).
``param_groups``
    Two param groups, the second overriding lr, T and every own hyperparameter (a second valid
    value): the chain equals, bit for bit, that of a sampler built with the overrides as its
    defaults and the first group's values set per group; every group's parameters move.
``independent_noise``
    Parameters that start equal and see equal gradients part ways (in one group and across two):
    each draws its own noise. Samplers with noise only.
``noise_dtype``
    A step on float64 parameters draws float64 noise, one on float32 parameters float32 noise (every
    random op it runs, seen through a ``TorchDispatchMode``). Samplers with noise only.
``copy_and_overlap``
    ``copy.deepcopy`` and ``pickle`` taken mid-chain continue the chain bit for bit, and
    ``overlap_noise=True`` gives the same chain on parameters large enough to be drawn in several
    segments.
``grad_none_skipped``
    A parameter whose ``grad`` is None is left unchanged (as torch.optim does); the others move
    (within three steps: a sampler may move a position only once its velocity has).
``nonfinite_gradient``
    A NaN, +Inf or -Inf gradient (in any parameter, of any group) raises
    :class:`sgmcmc.NonFiniteGradientError` before any parameter or sampler state changes; a huge but
    finite gradient does not; ``check_finite=False`` turns the check off.
``hyperparameter_validation``
    lr <= 0, num_data < 1 or non-integer, temperature < 0, each of the sampler's own ``hypers`` just
    outside its range (and NaN, and infinite where unbounded) and an unknown keyword each raise
    :class:`sgmcmc.HyperparameterError` whose message names the parameter, the value and the valid
    range; a param group added with a bad value is refused and not kept. Every value a sampler
    accepts for its own hyperparameters (probed at 0, -0.05, 1e-6, 1e6 and its range's ends) must
    step 20 times without crashing (diverging, NonFiniteGradientError, is allowed).

Step size: lr is a step on L = U / N (DESIGN.md), so the default is
``lr = step_factor * N / lambda_max(P)`` with ``step_factor = 0.2`` (0.4 here): for SGLD the
stiffest direction's variance is then ~12 % too large and the marginals are right to within
Monte-Carlo error (~3 %); for sghmc / underdamped (second order: their time step is sqrt(lr / N))
it is a small step too. A sampler that rescales its own step (psgld: G ~ N / sqrt(P_ii) here) needs
``lr=`` passed (0.02 for psgld with alpha = 0.9999). Too small a step fails for want of mixing
within the 6000 steps; the failure message says so when the ESS is low.

The chains run single-threaded (the tensors are tiny); each statistical check takes 1-3 s, the
exact ones milliseconds. :func:`measure_bias` tabulates the errors against the step size without
judging them, and ``python -m sgmcmc.testing`` runs either from the command line (see :func:`main`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .base import Diverged, HyperparameterError, NonFiniteGradientError, Sampler

__all__ = [
    "check_sampler", "run_check", "list_checks", "CHECKS", "CheckResult", "CheckFailed",
    "CheckNotApplicable", "ConformanceError", "Protocol", "GaussianProblem", "gaussian_problem",
    "run_chains", "ChainStats", "effective_sample_size", "resolve_sampler", "default_lr", "measure_bias",
]


# ====================================================================== errors and results
class CheckFailed(AssertionError):
    """One check failed; ``numbers`` holds what it measured."""

    def __init__(self, message: str, numbers: dict | None = None):
        super().__init__(message)
        self.numbers = dict(numbers or {})


class CheckNotApplicable(Exception):
    """The check does not apply to this sampler (e.g. ``step_bias`` for a sampler without noise)."""


@dataclass
class CheckResult:
    """The outcome of one check on one sampler: ``status`` is 'passed', 'failed' or 'skipped'."""

    check: str
    sampler: str
    status: str
    message: str = ""
    numbers: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def raise_for_failure(self) -> "CheckResult":
        if self.status == "failed":
            raise CheckFailed(f"{self.sampler}: check {self.check!r} failed: {self.message}", self.numbers)
        return self

    def __str__(self) -> str:
        nums = ", ".join(f"{k}={_fmt(v)}" for k, v in self.numbers.items())
        text = f"[{self.status.upper()}] {self.check} ({self.seconds:.2f} s)"
        if self.message:
            text += f": {self.message}"
        if nums:
            text += f" | {nums}"
        return text


class ConformanceError(AssertionError):
    """Raised by :func:`check_sampler` when any check fails; ``results`` holds every result."""

    def __init__(self, sampler: str, results: list[CheckResult]):
        self.results = results
        self.failed = [r for r in results if r.status == "failed"]
        names = ", ".join(r.check for r in self.failed)
        lines = [f"{sampler} failed {len(self.failed)} of {len(results)} conformance checks: {names}"]
        lines += [f"  {r}" for r in self.failed]
        super().__init__("\n".join(lines))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


# ====================================================================== sampler resolution
def resolve_sampler(sampler: Any) -> type:
    """A Sampler subclass from a class, a registered name, an entry point or 'module:Class'."""
    if isinstance(sampler, type):
        if not issubclass(sampler, Sampler):
            raise TypeError(f"{sampler!r} is not a subclass of sgmcmc.Sampler")
        return sampler
    if isinstance(sampler, str):
        from .registry import get

        return get(sampler)
    raise TypeError(f"expected a Sampler subclass or a name, got {sampler!r}")


def _label(cls: type) -> str:
    """The registered name when it is this very class (a subclass inherits ``name``), else module:Class."""
    from .registry import _REGISTRY

    if cls.name and _REGISTRY.get(cls.name) is cls:
        return cls.name
    return f"{cls.__module__}:{cls.__qualname__}"


# ====================================================================== the test problem
@dataclass(frozen=True)
class Protocol:
    """The settings of the statistical checks (the defaults are the documented contract)."""

    dim: int = 10
    condition: float = 50.0
    num_data: int = 100
    chains: int = 256
    steps: int = 6000
    burn_in: int = 2000
    thin: int = 4
    #: default lr = step_factor * num_data / lambda_max(P)
    step_factor: float = 0.2
    #: chains start at mu + start_scale * (a draw from the posterior)
    start_scale: float = 3.0
    mean_mcse: float = 4.0
    var_tol: float = 0.10
    tempered: float = 0.5
    #: gradient noise sd as a multiple of the exact gradient's sd over the posterior
    grad_noise: float = 0.5
    noise_var_tol: float = 0.15
    bias_factor: float = 4.0
    #: a stiff-direction variance error below bias_floor_se standard errors counts as "none"
    bias_floor_se: float = 3.0
    #: sgd: every chain within mode_tol posterior sds of the mode
    mode_tol: float = 1e-3
    seed: int = 0


DEFAULT_PROTOCOL = Protocol()


@dataclass(frozen=True)
class GaussianProblem:
    """U(x) = 0.5 (x - mean)^T precision (x - mean), summed over ``num_data`` data: L = U / N."""

    precision: torch.Tensor  # float64 [d, d]
    covariance: torch.Tensor  # float64 [d, d]
    mean: torch.Tensor  # float64 [d]
    eigenvalues: torch.Tensor  # of the precision, ascending
    eigenvectors: torch.Tensor
    num_data: int

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues.max())

    @property
    def condition(self) -> float:
        return float(self.eigenvalues.max() / self.eigenvalues.min())

    def grad_mean_loss(self, x: torch.Tensor) -> torch.Tensor:
        """grad L for each chain (row) of x: P (x - mean) / N (the gradient of the summed L)."""
        p = self.precision.to(x.dtype)
        return (x - self.mean.to(x.dtype)) @ p / self.num_data


def gaussian_problem(dim: int = 10, condition: float = 50.0, num_data: int = 100, seed: int = 0) -> GaussianProblem:
    """A dense Gaussian: precision Q diag(lambda) Q^T, lambda log-spaced over [1, condition], Q random."""
    g = torch.Generator().manual_seed(1000 + seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    lam = torch.logspace(0.0, math.log10(condition), dim, dtype=torch.float64)
    precision = q @ torch.diag(lam) @ q.T
    precision = 0.5 * (precision + precision.T)
    covariance = q @ torch.diag(1.0 / lam) @ q.T
    covariance = 0.5 * (covariance + covariance.T)
    mean = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64) + 0.5
    return GaussianProblem(precision, covariance, mean, lam, q, num_data)


def default_lr(problem: GaussianProblem, protocol: Protocol = DEFAULT_PROTOCOL) -> float:
    """step_factor * N / lambda_max(P): a small step on L for a sampler that uses lr as the contract says."""
    return protocol.step_factor * problem.num_data / problem.lambda_max


# ====================================================================== effective sample size
def effective_sample_size(draws: torch.Tensor, *, split: bool = True) -> torch.Tensor:
    """Multi-chain ESS of ``draws`` shaped [chains, draws, *event], per event element.

    The estimator of Stan and arviz (``arviz.ess(method="mean")``): each chain is split in two
    halves (``split``), the autocorrelation rho_t = 1 - (W - mean over chains of acov_t) / var_plus
    combines within- and between-chain variance, and tau = -1 + 2 sum rho_t is truncated by Geyer's
    initial positive and monotone sequence over the pair sums rho_2k + rho_2k+1.
    ESS = chains * draws / tau.
    """
    if draws.dim() < 2:
        raise ValueError("draws must be shaped [chains, draws, ...]")
    event = draws.shape[2:]
    x = draws.detach().to(torch.float64).reshape(draws.shape[0], draws.shape[1], -1)
    if split:
        half = x.shape[1] // 2
        x = torch.cat([x[:, :half], x[:, x.shape[1] - half:]], 0)
    m, n = x.shape[0], x.shape[1]
    if n < 4:
        raise ValueError("need at least 4 draws per chain")
    xc = x - x.mean(1, keepdim=True)
    nfft = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfft(xc, n=nfft, dim=1)
    acov = torch.fft.irfft(f * f.conj(), n=nfft, dim=1)[:, :n] / n  # [m, n, k], biased
    mean_var = acov[:, 0].mean(0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(1).var(0, unbiased=True)
    constant = var_plus <= 0
    var_plus = torch.where(constant, torch.ones_like(var_plus), var_plus)
    rho = 1.0 - (mean_var - acov.mean(0)) / var_plus  # [n, k]
    rho[0] = 1.0
    num_pairs = n // 2 - 1
    pairs = rho[: 2 * num_pairs].reshape(num_pairs, 2, -1).sum(1)  # [J, k]
    # initial positive sequence: the pairs before the first non-positive one (pair 0 always counts;
    # if none is non-positive, the last pair plays its part, as in arviz)
    nonpos = pairs <= 0
    nonpos[0] = False
    nonpos[-1] = True
    first = nonpos.to(torch.int8).argmax(0)
    keep = torch.arange(num_pairs).unsqueeze(1) < first.unsqueeze(0)
    monotone = torch.cummin(pairs, 0).values  # initial monotone sequence
    tau = -1.0 + 2.0 * torch.where(keep, monotone, torch.zeros_like(monotone)).sum(0)
    # plus the even autocorrelation of the truncating pair, where positive
    tau = tau + rho.gather(0, (2 * first).unsqueeze(0)).squeeze(0).clamp(min=0.0)
    total = m * n
    tau = tau.clamp(min=1.0 / math.log10(total))
    ess = total / tau
    ess = torch.where(constant, torch.full_like(ess, float(total)), ess)
    return ess.reshape(event)


# ====================================================================== running chains
@contextlib.contextmanager
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class ChainStats:
    """What a batched run measured: the kept draws and their moments (float64)."""

    lr: float
    temperature: float
    samples: torch.Tensor  # [chains, kept draws, d]
    final: torch.Tensor  # the last state of every chain [chains, d]
    eigenvectors: torch.Tensor  # of the precision (ascending eigenvalue)
    seconds: float

    @functools.cached_property
    def mean(self) -> torch.Tensor:
        return self.samples.reshape(-1, self.samples.shape[-1]).mean(0)

    @functools.cached_property
    def covariance(self) -> torch.Tensor:
        flat = self.samples.reshape(-1, self.samples.shape[-1]) - self.mean
        return flat.T @ flat / (flat.shape[0] - 1)

    @property
    def variance(self) -> torch.Tensor:
        return torch.diagonal(self.covariance)

    @functools.cached_property
    def ess_mean(self) -> torch.Tensor:
        """ESS of each coordinate (for the MCSE of its mean)."""
        return effective_sample_size(self.samples)

    @functools.cached_property
    def ess_var(self) -> torch.Tensor:
        """ESS of each coordinate's squared deviation (for the MCSE of its variance)."""
        return effective_sample_size((self.samples - self.mean) ** 2)

    @functools.cached_property
    def _eig_sq(self) -> torch.Tensor:
        eig = self.samples @ self.eigenvectors
        return (eig - eig.reshape(-1, eig.shape[-1]).mean(0)) ** 2

    @functools.cached_property
    def eig_variance(self) -> torch.Tensor:
        """The variance along each eigenvector of the precision (ascending eigenvalue)."""
        return self._eig_sq.reshape(-1, self._eig_sq.shape[-1]).mean(0)

    @functools.cached_property
    def ess_eig_var(self) -> torch.Tensor:
        return effective_sample_size(self._eig_sq)


def run_chains(
    sampler: Any,
    problem: GaussianProblem,
    *,
    lr: float,
    temperature: float = 1.0,
    protocol: Protocol = DEFAULT_PROTOCOL,
    grad_noise: float = 0.0,
    seed: int | None = None,
    hyper: dict | None = None,
) -> ChainStats:
    """Run ``protocol.chains`` chains as one [chains, d] float32 parameter on ``problem``.

    The gradient of the summed loss, row by row, is each chain's own grad L. ``grad_noise`` adds
    N(0, (grad_noise * sqrt(P_ii) / N)^2) to every gradient coordinate. Raises :class:`Diverged`
    if the chains leave the finite numbers.
    """
    cls = resolve_sampler(sampler)
    seed = protocol.seed if seed is None else seed
    d = problem.dim
    gen = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(problem.covariance)
    x0 = problem.mean + protocol.start_scale * torch.randn(protocol.chains, d, generator=gen, dtype=torch.float64) @ chol.T
    x = torch.nn.Parameter(x0.to(torch.float32))
    precision = problem.precision.to(torch.float32)
    mean = problem.mean.to(torch.float32)
    noise_sd = (grad_noise * torch.sqrt(torch.diagonal(problem.precision)) / problem.num_data).to(torch.float32)
    noise_gen = torch.Generator().manual_seed(seed + 7919)
    n_keep = len(range(protocol.burn_in, protocol.steps, protocol.thin))
    draws = torch.empty(n_keep, protocol.chains, d, dtype=torch.float32)
    t0 = time.perf_counter()
    # the tensors are tiny ([chains, d]): intra-op threads only add synchronisation (and suffer
    # badly on a shared machine), so the chains run single-threaded
    with _single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # for samplers that ignore generator=
        opt = cls([x], lr, num_data=problem.num_data, temperature=temperature,
                  generator=torch.Generator().manual_seed(seed + 2), **(hyper or {}))
        k = 0
        for t in range(protocol.steps):
            with torch.no_grad():
                g = torch.mm(x - mean, precision).div_(problem.num_data)
                if grad_noise:
                    g.addcmul_(torch.randn(g.shape, generator=noise_gen), noise_sd)
            x.grad = g
            try:
                opt.step()
            except NonFiniteGradientError as exc:
                raise Diverged(t, str(exc)) from None
            if t >= protocol.burn_in and (t - protocol.burn_in) % protocol.thin == 0:
                draws[k] = x.detach()
                k += 1
            if t % 500 == 499 and not bool(torch.isfinite(x).all()):
                raise Diverged(t, "non-finite parameters")
    seconds = time.perf_counter() - t0
    if not bool(torch.isfinite(draws).all()):
        raise Diverged(protocol.steps, "non-finite parameters")
    return ChainStats(
        lr=lr,
        temperature=temperature,
        samples=draws.to(torch.float64).transpose(0, 1).contiguous(),
        final=x.detach().to(torch.float64),
        eigenvectors=problem.eigenvectors,
        seconds=seconds,
    )


# ====================================================================== check registry
@dataclass(frozen=True)
class _Check:
    name: str
    func: Callable[..., dict]
    statistical: bool
    applies: Callable[[type], bool]
    doc: str


CHECKS: dict[str, Callable[..., dict]] = {}
_SPECS: dict[str, _Check] = {}


def _check(name: str, *, statistical: bool = False, applies: Callable[[type], bool] = lambda cls: True):
    def deco(func):
        doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
        _SPECS[name] = _Check(name, func, statistical, applies, doc)
        CHECKS[name] = func
        return func

    return deco


def list_checks(sampler: Any = None, *, statistical: bool | None = None) -> list[str]:
    """Names of the checks (in run order) that apply to ``sampler`` (all when None).

    ``statistical=True`` lists only the chain-running checks, ``False`` only the fast exact ones.
    """
    cls = None if sampler is None else resolve_sampler(sampler)
    out = []
    for name, spec in _SPECS.items():
        if cls is not None and not spec.applies(cls):
            continue
        if statistical is not None and spec.statistical != statistical:
            continue
        out.append(name)
    return out


def run_check(name: str, sampler: Any, *, lr: float | None = None, protocol: Protocol | None = None, **hyper) -> CheckResult:
    """Run one check; never raises for a failure (see :meth:`CheckResult.raise_for_failure`)."""
    if name not in _SPECS:
        raise KeyError(f"unknown check {name!r}; valid: {', '.join(_SPECS)}")
    cls = resolve_sampler(sampler)
    label = _label(cls)
    if not _SPECS[name].applies(cls):
        return CheckResult(name, label, "skipped", f"does not apply to {label}", {}, 0.0)
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):  # the checks seed the global generator; leave the caller's alone
            numbers = _SPECS[name].func(cls, lr=lr, protocol=protocol, **hyper)
    except CheckNotApplicable as exc:
        return CheckResult(name, label, "skipped", str(exc), {}, time.perf_counter() - t0)
    except CheckFailed as exc:
        return CheckResult(name, label, "failed", str(exc), exc.numbers, time.perf_counter() - t0)
    except Exception as exc:  # a crash is a failure of the check, reported with its cause
        where = traceback.extract_tb(exc.__traceback__)[-1]
        msg = f"raised {type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return CheckResult(name, label, "failed", msg, {}, time.perf_counter() - t0)
    numbers = dict(numbers or {})
    message = numbers.pop("_message", "")
    return CheckResult(name, label, "passed", message, numbers, time.perf_counter() - t0)


def check_sampler(
    sampler: Any,
    *,
    lr: float | None = None,
    checks: list[str] | None = None,
    protocol: Protocol | None = None,
    raise_on_failure: bool = True,
    **hyper,
) -> list[CheckResult]:
    """Run every applicable check (or those named in ``checks``) on ``sampler``.

    ``sampler``: a Sampler subclass, a registered name, an entry point or 'module:Class'.
    ``lr``: the step of the statistical checks (default :func:`default_lr`); ``hyper``: the
    sampler's own hyperparameters (e.g. ``alpha=0.9999``), passed to every construction.
    Collects every result and, if any failed and ``raise_on_failure``, raises
    :class:`ConformanceError` naming each failed check with its measured numbers.
    """
    cls = resolve_sampler(sampler)
    names = list_checks(cls) if checks is None else list(checks)
    results = [run_check(n, cls, lr=lr, protocol=protocol, **hyper) for n in names]
    if raise_on_failure and any(r.status == "failed" for r in results):
        raise ConformanceError(_label(cls), results)
    return results


# ====================================================================== statistical checks
def _setup(cls, lr, protocol):
    protocol = protocol or DEFAULT_PROTOCOL
    problem = gaussian_problem(protocol.dim, protocol.condition, protocol.num_data, protocol.seed)
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


def _assert_distribution(name, stats, problem, temperature, protocol, var_tol, lr) -> dict:
    nums = _distribution_numbers(stats, problem, temperature)
    z, var_err = nums["mean_z"], nums["var_rel_err"]
    out = {
        "lr": lr,
        "T": temperature,
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
    bad_var = (var_err.abs() > var_tol).nonzero().flatten().tolist()
    if bad_var:
        i = max(bad_var, key=lambda j: abs(float(var_err[j])))
        problems.append(
            f"marginal variance of coordinate {i} is {float(stats.variance[i]):.4g} vs "
            f"{float(problem.covariance[i, i] * temperature):.4g} (T * Sigma_ii), relative error "
            f"{float(var_err[i]):+.1%} (limit {var_tol:.0%}); {len(bad_var)} coordinate(s) off"
        )
    if problems:
        if min(out["ess_mean_min"], out["ess_var_min"]) < 1000:
            problems.append(
                f"note: the chains mixed poorly (smallest ESS {min(out['ess_mean_min'], out['ess_var_min']):.0f}); "
                f"a larger lr, or more steps in the Protocol, may be needed before the check means much"
            )
        raise CheckFailed(f"{name} at T={temperature}, lr={lr:.4g}: " + "; ".join(problems), out)
    return out


def _assert_mode(name, stats, problem, protocol, lr, temperature) -> dict:
    sd = torch.sqrt(torch.diagonal(problem.covariance))
    dist = ((stats.final - problem.mean) / sd).abs()
    out = {"lr": lr, "T": temperature, "max_dist_to_mode_sd": float(dist.max())}
    if not float(dist.max()) <= protocol.mode_tol:
        raise CheckFailed(
            f"{name}: a sampler without noise must converge to the mode; after {protocol.steps} steps at "
            f"lr={lr:.4g} the farthest chain is {float(dist.max()):.3g} posterior sds away (limit {protocol.mode_tol})",
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


@_check("tempered", statistical=True)
def check_tempered(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """T = 0.5: the covariance is T * Sigma (marginals within 10 %), mean within 4 MCSE (sgd: the mode)."""
    protocol, problem, lr = _setup(cls, lr, protocol)
    temperature = protocol.tempered
    # another seed: an independent replicate, not the T = 1 chains rescaled
    stats = _run(cls, problem, lr, protocol, hyper, temperature=temperature, seed=protocol.seed + 1)
    if not cls.uses_noise:
        return _assert_mode("tempered", stats, problem, protocol, lr, temperature)
    return _assert_distribution("tempered", stats, problem, temperature, protocol, protocol.var_tol, lr)


def _first_valid(spec, value, candidates):
    """The first of ``candidates`` (rounded for an integer hyperparameter) that ``spec`` accepts and that
    differs from ``value``; None if none does."""
    for c in candidates:
        if c is None:
            continue
        c = int(round(c)) if spec.integer else float(c)
        try:
            spec.check("", "", c)
        except HyperparameterError:
            continue
        if c != value:
            return c
    return None


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


@_check("stationary_hypers", statistical=True, applies=lambda cls: bool(cls.uses_noise and cls.hypers))
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
            raise CheckFailed(str(exc), {**exc.numbers, name: value}) from None
        out[f"{name}={value:g}"] = numbers.get("max_abs_var_err")
    if not out:
        raise CheckNotApplicable(f"{_label(cls)} has no numeric hyperparameter of its own to move")
    return out


@_check("gradient_noise", statistical=True)
def check_gradient_noise(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Gradient + N(0, (0.5 sd of the exact gradient)^2): mean within 4 MCSE, variances within 15 %."""
    protocol, problem, lr = _setup(cls, lr, protocol)
    stats = _run(cls, problem, lr, protocol, hyper, temperature=1.0, grad_noise=protocol.grad_noise)
    if not cls.uses_noise:
        nums = _distribution_numbers(stats, problem, 1.0)
        z = nums["mean_z"]
        out = {"lr": lr, "grad_noise": protocol.grad_noise, "max_abs_mean_z": float(z.abs().max()),
               "max_abs_mean_err_sd": float(nums["mean_err_sd"].abs().max())}
        if float(z.abs().max()) > protocol.mean_mcse:
            raise CheckFailed(f"gradient_noise: the iterate average is {float(z.abs().max()):.1f} MCSE from the mode "
                              f"(limit {protocol.mean_mcse})", out)
        out["_message"] = "uses_noise is False: the iterate average sits at the mode"
        return out
    out = _assert_distribution("gradient_noise", stats, problem, 1.0, protocol, protocol.noise_var_tol, lr)
    out["grad_noise"] = protocol.grad_noise
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


# ====================================================================== exact (non-statistical) checks
_TOY_N = 50


def _toy_params(seed: int = 0, dtype=torch.float32, big: bool = False) -> list[torch.Tensor]:
    """Three small parameters; with ``big`` the middle one has 300 x 300 values, so the bucket's CPU
    noise is drawn in two blocks from two noise streams (see ``Sampler._noise``)."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(3, 4, generator=g, dtype=dtype)),
        torch.nn.Parameter(torch.randn(*((300, 300) if big else (5,)), generator=g, dtype=dtype)),
        torch.nn.Parameter(torch.randn(2, 2, 2, generator=g, dtype=dtype)),
    ]


def _toy_grads(params) -> None:
    """Fill p.grad for a separable quadratic loss: grad L = (1 + i) (p - 0.3 (1 + i)) for parameter i."""
    with torch.no_grad():
        for i, p in enumerate(params):
            p.grad = (p - 0.3 * (i + 1)) * (1.0 + i)


_TOY_LR = 0.01


def _build(cls, params, hyper, lr=None, **kw):
    return cls(params, _TOY_LR if lr is None else lr, num_data=_TOY_N, **kw, **hyper)


def _snapshot(params) -> torch.Tensor:
    """Every parameter's current values, flattened into one new tensor."""
    return torch.cat([p.detach().reshape(-1).clone() for p in params])


def _advance(opt, params, steps: int, before_step=None) -> list[torch.Tensor]:
    """``steps`` steps of ``opt`` on the toy gradients; the parameters' snapshot after each."""
    out = []
    for t in range(steps):
        _toy_grads(params)
        if before_step is not None:
            before_step(opt, t)
        opt.step()
        out.append(_snapshot(params))
    return out


def _trajectory(cls, hyper, steps=8, *, params=None, opt_kwargs=None, before_step=None, lr=None) -> list[torch.Tensor]:
    params = _toy_params() if params is None else params
    return _advance(_build(cls, params, hyper, lr=lr, **(opt_kwargs or {})), params, steps, before_step)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _first_diff(a, b) -> str:
    for t, (x, y) in enumerate(zip(a, b)):
        if not torch.equal(x, y):
            return f"step {t}: max abs difference {float((x - y).abs().max()):.3g}"
    return "trajectories of different lengths" if len(a) != len(b) else "identical"


@_check("temperature_zero")
def check_temperature_zero(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """At T = 0 the trajectory does not depend on the seed (sgd: on neither seed nor T)."""
    runs = {}
    temps = (0.0,) if cls.uses_noise else (0.0, 1.0, 0.5)
    for temp in temps:
        for seed in (1, 2):
            torch.manual_seed(seed)
            runs[(temp, seed)] = _trajectory(cls, hyper, opt_kwargs={"temperature": temp,
                                                                    "generator": torch.Generator().manual_seed(seed)})
    ref = runs[(0.0, 1)]
    for key, traj in runs.items():
        if not _same(ref, traj):
            raise CheckFailed(f"temperature_zero: at T={key[0]} with seed {key[1]} the trajectory differs from "
                              f"T=0, seed 1 ({_first_diff(ref, traj)}); the noise must scale with T"
                              + ("" if cls.uses_noise else " and a sampler without noise must ignore T and the seed"))
    moved = float((ref[-1] - torch.cat([p.detach().reshape(-1) for p in _toy_params()])).abs().max())
    if moved == 0.0:
        raise CheckFailed("temperature_zero: the parameters did not move at all")
    return {"temperatures": list(temps), "max_move": moved}


@_check("reproducible")
def check_reproducible(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Same seed, same trajectory: global generator, and explicit generator= (then global-seed free)."""
    def global_run(seed):
        torch.manual_seed(seed)
        return _trajectory(cls, hyper)

    a, b = global_run(123), global_run(123)
    if not _same(a, b):
        raise CheckFailed(f"reproducible: torch.manual_seed(123) twice gave different trajectories ({_first_diff(a, b)})")
    c = global_run(124)
    if cls.uses_noise and _same(a, c):
        raise CheckFailed("reproducible: seeds 123 and 124 gave the same trajectory: the noise ignores the global generator")

    def explicit_run(gseed, global_seed):
        torch.manual_seed(global_seed)
        return _trajectory(cls, hyper, opt_kwargs={"generator": torch.Generator().manual_seed(gseed)})

    e1, e2, e3 = explicit_run(7, 1), explicit_run(7, 2), explicit_run(8, 1)
    if not _same(e1, e2):
        raise CheckFailed(f"reproducible: with generator= seeded alike but different global seeds the trajectories "
                          f"differ ({_first_diff(e1, e2)}); the noise must come from the given generator")
    if cls.uses_noise and _same(e1, e3):
        raise CheckFailed("reproducible: generators seeded 7 and 8 gave the same trajectory: the noise ignores generator=")
    return {"steps": len(a)}


@_check("state_dict_resume")
def check_state_dict_resume(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """state_dict() mid-chain, loaded into a fresh sampler, continues the chain bit for bit (with generator=,
    with the global generator, and on a bucket large enough to be drawn from several noise streams)."""
    total, half = 10, 5
    out = {}
    for mode in ("explicit", "global", "streams"):
        big = mode == "streams"

        def generator_kw(seed):
            return {"generator": torch.Generator().manual_seed(seed)} if mode != "global" else {}

        def make(params, seed):
            return _build(cls, params, hyper, **generator_kw(seed))

        torch.manual_seed(11)
        straight = _trajectory(cls, hyper, total, params=_toy_params(big=big), opt_kwargs=generator_kw(5))

        torch.manual_seed(11)
        params = _toy_params(big=big)
        opt = make(params, 5)
        resumed = _advance(opt, params, half)
        buf = io.BytesIO()
        torch.save({"sampler": opt.state_dict(), "params": [p.detach().clone() for p in params],
                    "rng": torch.get_rng_state()}, buf)
        # keep the old chain running a little: the checkpoint must be a snapshot, not a live view
        _toy_grads(params)
        opt.step()
        buf.seek(0)
        ckpt = torch.load(buf, weights_only=True)
        fresh = [torch.nn.Parameter(t.clone()) for t in ckpt["params"]]
        opt2 = make(fresh, 999)  # a different seed: the state dict must restore it
        opt2.load_state_dict(ckpt["sampler"])
        torch.manual_seed(4242)  # scramble the global generator, then restore it as a caller would
        if mode == "global":
            torch.set_rng_state(ckpt["rng"])
        resumed += _advance(opt2, fresh, total - half)
        if not _same(straight, resumed):
            raise CheckFailed(f"state_dict_resume ({mode} generator): the resumed chain differs from the straight one "
                              f"({_first_diff(straight, resumed)})", {"mode": mode})
        out[f"resumed_{mode}"] = True
    sd = _build(cls, _toy_params(), hyper, generator=torch.Generator().manual_seed(1)).state_dict()
    if "generator_state" not in sd and cls.uses_noise:
        raise CheckFailed("state_dict_resume: state_dict() of a sampler with generator= lacks 'generator_state'")
    return out


@_check("optimizer_api")
def check_optimizer_api(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """step() leaves p.grad alone; zero_grad (to None and to zeros), step(closure) returns the loss, hypers in param_groups."""
    params = _toy_params()
    opt = _build(cls, params, hyper)
    _toy_grads(params)
    grads = [p.grad.clone() for p in params]
    opt.step()
    changed = [i for i, (p, g) in enumerate(zip(params, grads)) if not torch.equal(p.grad, g)]
    if changed:
        raise CheckFailed(f"optimizer_api: step() changed p.grad of parameter(s) {changed}; a sampler must only read "
                          f"the gradients (a caller may log or clip them after the step)")
    opt.zero_grad()
    if any(p.grad is not None for p in params):
        raise CheckFailed("optimizer_api: zero_grad() left gradients that are not None")
    _toy_grads(params)
    opt.zero_grad(set_to_none=False)
    if any(p.grad is None or bool(p.grad.ne(0).any()) for p in params):
        raise CheckFailed("optimizer_api: zero_grad(set_to_none=False) did not zero the gradients")
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = sum(((p - 0.5) ** 2).sum() for p in params)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in params]
    loss = opt.step(closure)
    if not calls or not calls[0]:
        raise CheckFailed("optimizer_api: step(closure) did not call the closure with gradients enabled")
    if not isinstance(loss, torch.Tensor):
        raise CheckFailed(f"optimizer_api: step(closure) returned {loss!r}, not the closure's loss")
    if all(torch.equal(b, p) for b, p in zip(before, params)):
        raise CheckFailed("optimizer_api: step(closure) did not move the parameters")
    group = opt.param_groups[0]
    missing = [k for k in ("lr", "num_data", "temperature", *hyper) if k not in group]
    if missing:
        raise CheckFailed(f"optimizer_api: param_groups[0] lacks {missing}")
    wrong = {k: (group[k], v) for k, v in hyper.items() if group[k] != v}
    if wrong:
        raise CheckFailed(f"optimizer_api: param_groups[0] holds {wrong} (got, passed)")
    return {"hypers_in_group": sorted(k for k in group if k != "params")}


@_check("lr_schedulers")
def check_lr_schedulers(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """LambdaLR a*(b+t)^-gamma and CosineAnnealingWarmRestarts change the group lr and the sampler uses it."""
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LambdaLR

    b, gamma = 3.0, 0.55
    schedulers = {
        # lr_t = a (b + t)^-gamma with a = lr0 b^gamma, so that lr_0 = lr0
        "LambdaLR(a*(b+t)^-gamma)": lambda opt: LambdaLR(opt, lambda t: (b / (b + t)) ** gamma),
        "CosineAnnealingWarmRestarts(T_0=4)": lambda opt: CosineAnnealingWarmRestarts(opt, T_0=4, eta_min=1e-4),
    }
    out = {}
    steps = 12
    for label, make in schedulers.items():
        torch.manual_seed(3)
        params = _toy_params()
        opt = _build(cls, params, hyper)
        sched = make(opt)
        lrs, scheduled = [], []
        for t in range(steps):
            _toy_grads(params)
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            scheduled.append(_snapshot(params))
        if len(set(lrs)) < 3:
            raise CheckFailed(f"lr_schedulers: {label} did not change the group lr (saw {lrs})")

        def by_hand(o, t):
            for g in o.param_groups:
                g["lr"] = lrs[t]

        torch.manual_seed(3)
        manual = _trajectory(cls, hyper, steps=steps, before_step=by_hand)
        torch.manual_seed(3)
        constant = _trajectory(cls, hyper, steps=steps)
        if not _same(scheduled, manual):
            raise CheckFailed(f"lr_schedulers: {label}: the scheduled run differs from one with the same lr set by hand "
                              f"({_first_diff(scheduled, manual)})", {"lrs": lrs})
        if _same(scheduled, constant):
            raise CheckFailed(f"lr_schedulers: {label}: the scheduled run equals the constant-lr run: the sampler "
                              f"ignores param_groups[i]['lr']", {"lrs": lrs})
        out[label] = [round(x, 6) for x in lrs[:6]]
    # an lr changed by hand mid-chain must act as it does in a fresh sampler resumed at that point
    # (a sampler that caches anything derived from lr, e.g. its noise scale, at its first step fails)
    gen = torch.Generator().manual_seed(21)
    params = _toy_params()
    opt = _build(cls, params, hyper, generator=gen)
    _advance(opt, params, 3)
    checkpoint = copy.deepcopy(opt.state_dict())
    saved = [p.detach().clone() for p in params]
    low = 0.25 * opt.param_groups[0]["lr"]

    def steps_at(o, ps) -> list[torch.Tensor]:
        for g in o.param_groups:
            g["lr"] = low
        return _advance(o, ps, 3)

    went_on = steps_at(opt, params)
    fresh = [torch.nn.Parameter(t) for t in saved]
    opt2 = _build(cls, fresh, hyper, lr=low, generator=torch.Generator().manual_seed(99))
    opt2.load_state_dict(checkpoint)
    resumed = steps_at(opt2, fresh)
    if not _same(went_on, resumed):
        raise CheckFailed(f"lr_schedulers: after lr was lowered by hand mid-chain the chain differs from a fresh "
                          f"sampler resumed there at the new lr ({_first_diff(went_on, resumed)}): something derived "
                          f"from lr (the noise scale?) was kept from an earlier step")
    return out


def _other_value(spec, value):
    """A second valid value of a numeric hyperparameter (or None when there is none to try)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    candidates = [value * 2 if value > 0 else value + 1.0, value * 0.5 if value > 0 else value - 1.0]
    if spec.high is not None:
        candidates.append(0.5 * (value + spec.high))
    return _first_valid(spec, value, candidates)


@_check("param_groups")
def check_param_groups(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Every hyperparameter is read per param group: a group that overrides them steps exactly as a sampler
    built with them; every group's parameters move."""
    own = cls.hypers
    base = {k: hyper.get(k, spec.default) for k, spec in own.items()}
    other = {k: _other_value(spec, base[k]) for k, spec in own.items()}
    other = {k: v for k, v in other.items() if v is not None}
    over = {"lr": 0.5 * _TOY_LR, **({"temperature": 0.5} if cls.uses_noise else {}), **other}

    def run(groups, lr_, temperature, own_hyper):
        params = _toy_params()
        gs = [{"params": params[:2], **groups[0]}, {"params": params[2:], **groups[1]}]
        opt = cls(gs, lr_, num_data=_TOY_N, temperature=temperature, generator=torch.Generator().manual_seed(13),
                  **own_hyper)
        start = [p.detach().clone() for p in params]
        traj = _advance(opt, params, 6)
        still = [i for i, (a, p) in enumerate(zip(start, params)) if torch.equal(a, p)]
        if still:
            raise CheckFailed(f"param_groups: parameter(s) {still} (of two groups) never moved in 6 steps: "
                              f"every param group must be updated")
        return traj

    plain = {"lr": _TOY_LR, "temperature": 1.0, **base}
    a = run([{}, over], _TOY_LR, 1.0, base)  # group 2 overrides
    b = run([plain, {}], over["lr"], over.get("temperature", 1.0), {**base, **other})  # group 1 overrides back
    if not _same(a, b):
        raise CheckFailed(f"param_groups: a group overriding {sorted(over)} does not step as a sampler built with "
                          f"those values ({_first_diff(a, b)}): some hyperparameter is read from the defaults, not "
                          f"from the group", {"overridden": over})
    return {"overridden": over}


@_check("independent_noise", applies=lambda cls: bool(cls.uses_noise))
def check_independent_noise(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Two parameters that start equal and see equal gradients part ways: each draws its own noise
    (in one group and across groups)."""
    def twins(groups):
        a, b, c = (torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(3))
        params = [a, b, c] if groups == 1 else [{"params": [a, b]}, {"params": [c]}]
        opt = _build(cls, params, hyper, generator=torch.Generator().manual_seed(8))
        for _ in range(3):
            for p in (a, b, c):
                p.grad = p.detach() - 0.3
            opt.step()
        return a, b, c

    for groups in (1, 2):
        a, b, c = twins(groups)
        same = [name for name, (x, y) in (("a, b", (a, b)), ("a, c", (a, c)), ("b, c", (b, c))) if torch.equal(x, y)]
        if same:
            raise CheckFailed(f"independent_noise: parameters {', '.join(same)} started equal, saw equal gradients and are "
                              f"still equal after 3 steps ({groups} group(s)): they drew the same noise")
    return {}


@_check("noise_dtype", applies=lambda cls: bool(cls.uses_noise))
def check_noise_dtype(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """The noise is drawn in the parameters' own dtype (float64 parameters get float64 draws, float32 ones
    float32): every random op a step runs makes tensors of the dtype of the parameters it serves."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RandomOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[tuple[str, torch.dtype]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if torch.Tag.nondeterministic_seeded in getattr(func, "tags", ()):
                for t in (out if isinstance(out, (list, tuple)) else [out]):
                    if isinstance(t, torch.Tensor):
                        self.seen.append((str(func.overloadpacket.__name__), t.dtype))
            return out

    out = {}
    for dtype in (torch.float64, torch.float32):
        params = _toy_params(dtype=dtype)
        opt = _build(cls, params, hyper, generator=torch.Generator().manual_seed(2))
        _toy_grads(params)
        with RandomOps() as mode:
            opt.step()
        if not mode.seen:
            raise CheckFailed(f"noise_dtype: a step on {dtype} parameters ran no random op torch knows of")
        wrong = sorted({f"{name} -> {d}" for name, d in mode.seen if d != dtype})
        if wrong:
            raise CheckFailed(f"noise_dtype: a step on {dtype} parameters drew {', '.join(wrong)}: draw the noise "
                              f"in the parameters' dtype (float32 draws upcast lose precision; float64 draws "
                              f"cost twice and are rounded away)")
        out[str(dtype).replace("torch.", "")] = sorted({name for name, _ in mode.seen})
    return out


@_check("copy_and_overlap")
def check_copy_and_overlap(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """deepcopy / pickle mid-chain continue the chain bit for bit; overlap_noise=True gives the same chain on
    parameters large enough to be drawn in several segments."""
    import pickle

    def grads_for(params, t):
        g = torch.Generator().manual_seed(1000 + t)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1 + p.detach()

    def chain(overlap, copy_at=None, how=None, steps=4):
        g = torch.Generator().manual_seed(5)
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((300, 250), (17,), (200, 400), (5,))]
        opt = _build(cls, params, hyper, lr=1e-3, generator=torch.Generator().manual_seed(3), overlap_noise=overlap)
        out = []
        for t in range(steps):
            if t == copy_at:
                opt = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
                params = [p for group in opt.param_groups for p in group["params"]]
            grads_for(params, t)
            opt.step()
            out.append(_snapshot(params))
        return out

    ref = chain(False)
    for how in ("deepcopy", "pickle"):
        other = chain(False, copy_at=2, how=how)
        if not _same(ref, other):
            raise CheckFailed(f"copy_and_overlap: a {how} taken mid-chain does not continue the chain "
                              f"({_first_diff(ref, other)}): keep every piece of the chain in self.state / "
                              f"param_groups (or implement __getstate__)")
    overlapped = chain(True)
    if not _same(ref, overlapped):
        raise CheckFailed(f"copy_and_overlap: overlap_noise=True changes the chain ({_first_diff(ref, overlapped)}): "
                          f"_update_noise must work on any run of a bucket's parameters (it gets segments)")
    return {"values": int(ref[0].numel())}


@_check("grad_none_skipped")
def check_grad_none_skipped(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """A parameter whose grad is None is left unchanged; the others move."""
    params = _toy_params()
    opt = _build(cls, params, hyper)
    start = [p.detach().clone() for p in params]
    for t in range(3):
        _toy_grads(params)
        params[1].grad = None
        before = [p.detach().clone() for p in params]
        opt.step()
        if not torch.equal(before[1], params[1]):
            raise CheckFailed(f"grad_none_skipped: the parameter with grad None changed at step {t}")
    # (over the three steps: a sampler may move a position only from its second step, e.g. after a velocity)
    if torch.equal(start[0], params[0]) or torch.equal(start[2], params[2]):
        raise CheckFailed("grad_none_skipped: a parameter with a gradient did not move in three steps")
    # a parameter that had a gradient before (and so has state) and then has none
    _toy_grads(params)
    opt.step()
    _toy_grads(params)
    params[0].grad = None
    before = params[0].detach().clone()
    opt.step()
    if not torch.equal(before, params[0]):
        raise CheckFailed("grad_none_skipped: a parameter with state but grad None changed")
    return {}


def _state_snapshot(opt) -> list:
    snap = []
    for p, st in opt.state.items():
        for k, v in sorted(st.items()):
            snap.append((k, v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)))
    return snap


def _same_state(a, b) -> bool:
    if len(a) != len(b):
        return False
    for (ka, va), (kb, vb) in zip(a, b):
        if ka != kb:
            return False
        if isinstance(va, torch.Tensor):
            if not (isinstance(vb, torch.Tensor) and torch.equal(va, vb)):
                return False
        elif va != vb:
            return False
    return True


@_check("nonfinite_gradient")
def check_nonfinite_gradient(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """NaN / Inf gradients raise NonFiniteGradientError before anything changes (parameters, state, the
    generator; in line and with the noise overlapped); huge finite ones do not."""
    tried = 0
    for bad in (float("nan"), float("inf"), float("-inf")):
        for where in ("last param", "second group"):
            params = _toy_params()
            gen = torch.Generator().manual_seed(0)
            if where == "second group":  # and the noise drawn while a worker thread checks
                opt = _build(cls, [{"params": params[:2]}, {"params": params[2:]}], hyper, generator=gen,
                             overlap_noise=True)
            else:
                opt = _build(cls, params, hyper, generator=gen)
            for _ in range(2):  # build up state (momentum, V, pending half kick)
                _toy_grads(params)
                opt.step()
            _toy_grads(params)
            params[2].grad[0, 1, 0] = bad
            before = [p.detach().clone() for p in params]
            state_before = _state_snapshot(opt)
            gen_before = gen.get_state()
            try:
                opt.step()
            except NonFiniteGradientError:
                pass
            else:
                raise CheckFailed(f"nonfinite_gradient: a {bad} gradient in the {where} did not raise NonFiniteGradientError")
            if not all(torch.equal(b, p) for b, p in zip(before, params)):
                raise CheckFailed(f"nonfinite_gradient: parameters changed before NonFiniteGradientError ({bad}, {where})")
            if not _same_state(state_before, _state_snapshot(opt)):
                raise CheckFailed(f"nonfinite_gradient: the sampler state changed before NonFiniteGradientError ({bad}, {where})")
            if not torch.equal(gen_before, gen.get_state()):
                raise CheckFailed(f"nonfinite_gradient: the refused step used up random numbers ({bad}, {where}): "
                                  f"the chain after it is not the chain without it")
            _toy_grads(params)
            opt.step()  # the chain can go on once the gradient is finite again
            tried += 1
    params = _toy_params()
    opt = _build(cls, params, hyper)
    _toy_grads(params)
    # every value and its square fit float32, but sums of squares (norms, psgld's V) overflow
    params[0].grad.fill_(1e19)
    try:
        opt.step()
    except NonFiniteGradientError as exc:
        raise CheckFailed(f"nonfinite_gradient: a finite gradient of 1e19 raised NonFiniteGradientError: {exc}") from None
    params = _toy_params()
    opt = _build(cls, params, hyper, check_finite=False)
    _toy_grads(params)
    params[0].grad[0, 0] = float("nan")
    try:
        opt.step()
    except NonFiniteGradientError:
        raise CheckFailed("nonfinite_gradient: check_finite=False still raised NonFiniteGradientError") from None
    return {"cases": tried}


def _out_of_range(spec) -> list[Any]:
    vals: list[Any] = [float("nan")]
    if spec.low is not None:
        vals.append(spec.low if spec.low_open else spec.low - max(1.0, abs(spec.low)))
    else:
        vals.append(float("-inf"))
    if spec.high is not None:
        vals.append(spec.high if spec.high_open else spec.high + max(0.5, abs(spec.high)))
    else:
        vals.append(float("inf"))
    if spec.integer:
        lo = spec.low if spec.low is not None else 0
        vals.append(lo + 1.5)
    return vals


@_check("hyperparameter_validation")
def check_hyperparameter_validation(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Out-of-range hyperparameters and unknown keywords raise HyperparameterError naming name, value, range."""
    good = {"lr": 0.01, "num_data": _TOY_N, "temperature": 1.0, **hyper}
    cases = []
    for name, spec in cls.all_hypers().items():
        for value in _out_of_range(spec):
            cases.append((name, value, spec.describe()))
    cases.append(("temperature", -0.5, None))
    cases.append(("lr", 0.0, None))
    cases.append(("lr", -1e-3, None))
    cases.append(("num_data", 0, None))
    cases.append(("num_data", 2.5, None))
    failures = []
    for name, value, valid in cases:
        kwargs = dict(good)
        kwargs[name] = value
        lr_value = kwargs.pop("lr")
        try:
            cls(_toy_params(), lr_value, **kwargs)
        except HyperparameterError as exc:
            msg = str(exc)
            valid = valid or cls.all_hypers()[name].describe()
            missing = [what for what, text in (("name", name), ("value", repr(value)), ("range", valid)) if text not in msg]
            if missing:
                failures.append(f"{name}={value!r}: message {msg!r} lacks the {'/'.join(missing)}")
        except Exception as exc:
            failures.append(f"{name}={value!r} raised {type(exc).__name__} ({exc}), not HyperparameterError")
        else:
            failures.append(f"{name}={value!r} was accepted")
    # unknown keyword
    try:
        cls(_toy_params(), 0.01, num_data=_TOY_N, not_a_hyperparameter=3, **hyper)
    except HyperparameterError as exc:
        msg = str(exc)
        if "not_a_hyperparameter" not in msg or "3" not in msg or "lr" not in msg:
            failures.append(f"unknown keyword: message {msg!r} should name it, its value and the valid names")
    except Exception as exc:
        failures.append(f"unknown keyword raised {type(exc).__name__}, not HyperparameterError")
    else:
        failures.append("an unknown keyword was accepted")
    # a bad value in a param group added later is refused, and the group is not kept
    opt = cls(_toy_params(), 0.01, num_data=_TOY_N, **hyper)
    try:
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": -1.0})
    except HyperparameterError:
        if len(opt.param_groups) != 1:
            failures.append("add_param_group refused lr=-1.0 but kept the group")
    else:
        failures.append("add_param_group accepted lr=-1.0")
    # every value a sampler accepts must step: probes at and around each own hyperparameter's edges
    for name, spec in cls.hypers.items():
        probes = {0.0, -0.05, 1e-6, 1e6, *(v for v in (spec.low, spec.high) if v is not None)}
        for value in sorted(probes):
            kwargs = {**hyper, name: int(value) if spec.integer else value}
            try:
                opt = cls(_toy_params(), 0.01, num_data=_TOY_N, **kwargs)
            except HyperparameterError:
                continue
            params = [p for group in opt.param_groups for p in group["params"]]
            try:
                for _ in range(20):
                    _toy_grads(params)
                    opt.step()
            except NonFiniteGradientError:
                pass  # a value that makes the chain diverge may be valid; one that crashes it is not
            except Exception as exc:
                failures.append(f"{name}={value!r} was accepted but step() raised {type(exc).__name__} ({exc}); "
                                f"declare the valid range in hypers (now {spec.describe()})")
    if failures:
        raise CheckFailed(f"hyperparameter_validation: {len(failures)} problem(s): " + "; ".join(failures),
                          {"cases": len(cases) + 2, "failures": len(failures)})
    return {"cases": len(cases) + 2}


# ====================================================================== command line
def _parse_hyper(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"--hyper expects key=value, got {item!r}")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sgmcmc.testing SAMPLER [--lr LR] [--hyper k=v ...] [--checks a,b]``: run the checks.

    ``python -m sgmcmc.testing --bias SAMPLER [SAMPLER ...] --lrs 0.2,0.4 [--hyper k=v]
    [--grad-noise 0.5] [--temperature T]``: print the error table of :func:`measure_bias`.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sgmcmc.testing", description=main.__doc__)
    parser.add_argument("samplers", nargs="+", help="registered names, entry points or module:Class")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--hyper", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--checks", default=None, help="comma-separated check names (default: all that apply)")
    parser.add_argument("--bias", action="store_true", help="print errors per step size instead of checking")
    parser.add_argument("--lrs", default="0.2,0.4,0.8,1.6")
    parser.add_argument("--grad-noise", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args(argv)
    hyper = _parse_hyper(args.hyper)
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks is not None else None
    unknown = [c for c in checks or () if c not in _SPECS]
    if checks is not None and (unknown or not checks):
        parser.error(f"--checks {args.checks!r}: unknown check(s) {', '.join(unknown) or '(none named)'}; "
                     f"valid: {', '.join(_SPECS)}")
    for name in args.samplers:
        try:
            resolve_sampler(name)
        except (LookupError, ImportError, TypeError, ValueError) as exc:  # UnknownSamplerError is a ValueError
            parser.error(str(exc))
    if args.bias:
        lrs = [float(x) for x in args.lrs.split(",")]
        print("| sampler | lr | max abs var err | mean var err | stiff-direction var err (se) "
              "| max abs mean err (sd) | Mahalanobis mean err | min ESS |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.samplers:
            for row in measure_bias(name, lrs, temperature=args.temperature, grad_noise=args.grad_noise, **hyper):
                if "diverged" in row:
                    print(f"| {name} | {row['lr']:g} | diverged | | | | | |")
                    continue
                print(f"| {name} | {row['lr']:g} | {row['max_abs_var_err']:.3f} | {row['mean_var_err']:+.3f} | "
                      f"{row['stiff_var_err']:+.3f} ({row['stiff_var_se']:.3f}) | {row['max_abs_mean_err_sd']:.3f} | "
                      f"{row['mahalanobis_mean_err']:.3f} | {row['ess_mean_min']:.0f} |")
        return 0
    status = 0
    for name in args.samplers:
        results = check_sampler(name, lr=args.lr, checks=checks, raise_on_failure=False, **hyper)
        print(f"== {name}")
        for r in results:
            print(f"  {r}")
        status |= any(r.status == "failed" for r in results)
    return int(status)


if __name__ == "__main__":
    raise SystemExit(main())
