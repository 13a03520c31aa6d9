"""The problems the checks run samplers on: the dense Gaussian of the statistical checks (with
:func:`run_chains`, many chains as one tensor, and :class:`ChainStats`), and the toy quadratic of
the exact checks (with its trajectory helpers)."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass

import torch

from ..base import Diverged, NonFiniteGradientError
from ..diagnostics import ess_geyer
from .core import resolve_sampler

__all__ = ["Protocol", "DEFAULT_PROTOCOL", "GaussianProblem", "gaussian_problem", "default_lr",
           "effective_sample_size", "ChainStats", "run_chains"]


# ====================================================================== the test problem
@dataclass(frozen=True)
class Protocol:
    """The settings of the statistical checks (the defaults are the documented contract)."""

    dim: int = 10
    condition: float = 50.0
    #: N of ``stationary``, ``stationary_hypers`` and ``step_bias``; the other checks run the same mean
    #: loss L = U / N over other N (:meth:`GaussianProblem.with_num_data`), so that a sampler that
    #: misreads num_data cannot pass them all
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
    #: ``tempered`` runs at these two temperatures, the first over ``tempered_num_data[0]`` data and
    #: the second over ``tempered_num_data[1]``
    tempered: float = 0.5
    tempered_hot: float = 2.0
    tempered_num_data: tuple[int, int] = (1000, 37)
    #: gradient noise sd as a multiple of the exact gradient's sd over the posterior
    grad_noise: float = 0.5
    noise_var_tol: float = 0.15
    grad_noise_num_data: int = 300
    #: the noise-only run of ``gradient_noise`` (T = 0, gradient noise only, started at the mode)
    noise_only_chains: int = 64
    noise_only_steps: int = 2500
    noise_only_burn_in: int = 1000
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

    def with_num_data(self, num_data: int) -> "GaussianProblem":
        """The same mean loss L = U / N over ``num_data`` data: U = num_data * L, so the precision
        scales by num_data / N and the covariance by N / num_data, while grad L, and so what a step
        ``lr`` does to L, stay as they are. A sampler that keeps the contract (lr the step on L,
        noise sqrt(T / N)) runs the same chain up to the scale sqrt(N / num_data) about the mean."""
        if num_data == self.num_data:
            return self
        r = num_data / self.num_data
        return GaussianProblem(self.precision * r, self.covariance / r, self.mean, self.eigenvalues * r,
                               self.eigenvectors, int(num_data))

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
def effective_sample_size(draws: torch.Tensor) -> torch.Tensor:
    """Bulk ESS of ``draws`` shaped [chains, draws, *event], per event element (float64 tensor):
    :func:`sgmcmc.diagnostics.ess_geyer` (split chains, rank-normalised, Geyer's initial monotone
    sequence; arviz's ``ess(method="bulk")``), the one implementation the benchmark records use."""
    if draws.dim() < 2:
        raise ValueError("draws must be shaped [chains, draws, ...]")
    if draws.shape[1] < 4:
        raise ValueError("need at least 4 draws per chain")
    event = draws.shape[2:]
    flat = draws.detach().reshape(draws.shape[0], draws.shape[1], -1)
    return torch.as_tensor(ess_geyer(flat), dtype=torch.float64).reshape(event)


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


# ====================================================================== the toy problem of the exact checks
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
