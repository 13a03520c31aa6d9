"""Gaussian toy posteriors: tasks whose exact answer is known.

Each task is a Gaussian target N(mu, Sigma) written as a potential over ``num_data`` data, so that
the sampler contract holds as for a real model: the sampler is given ``grad L_hat`` with
L = U / N. For the pure Gaussians U(theta) = 0.5 (theta - mu)^T P (theta - mu) with N = 1 (exact
gradients); Bayesian linear regression has N = 10,000 real data and minibatch gradients, while its
posterior is still Gaussian in closed form.

Many chains run as one batched tensor ``theta`` of shape [chains, d] through the ordinary Sampler
interface: chains are independent, so the gradient of the summed potential is each chain's own
gradient, and element-wise preconditioners (psgld) stay per coordinate per chain. Gradients are
analytic (no autograd).

Fitted Gaussian: the kept draws' mean and covariance; for a diagonal target (isotropic, d = 1000)
the fit is diagonal too. KL and W2 of the fit therefore mix the sampler's bias with the Monte-Carlo
error of a finite run at the task's fixed budget: that is the accuracy a user gets for that cost.

Protocol (per profile, the same for every sampler): ``steps`` gradient evaluations per chain, the
first ``burn_in`` discarded, then every ``thin``-th state kept. The kept draws (all chains pooled)
give the fitted Gaussian (mean, covariance) compared with the truth; the per-chain traces give the
bulk ESS and split R-hat. The steps run in the loop every family shares (:class:`.base.SamplingLoop`),
with :class:`GaussianLoop`'s hooks: every chain's analytic gradient, each kept state into a trace.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import metrics as M
from .base import (Diverged, Metric, RunContext, RunResult, SamplingLoop, Task, build_sampler, check_profile, ladder_rung,
                   sampler_label)

#: chains, steps (gradient evaluations per chain), burn_in, thin; quick is a smoke test (every task,
#: sampler, metric and figure in about a minute; its records are not published): 3 sweep points
TOY_PROFILES = {
    "quick": dict(chains=8, steps=1_000, burn_in=250, thin=5, sweep_points=3),
    "default": dict(chains=32, steps=10_000, burn_in=2_000, thin=10),
    "full": dict(chains=64, steps=50_000, burn_in=10_000, thin=25),
}

TOY_METRICS = (
    Metric("kl", "KL(fit, true)", "min"),
    Metric("w2", "W2", "min"),
    Metric("mean_error", "mean err (Mahal.)", "min"),
    Metric("var_error", "var err |log|", "min"),
    Metric("ess_min", "min bulk ESS", "max", ".0f"),
    Metric("ess_per_1k_grads", "ESS / 1k grads", "max", ".3g"),
    Metric("ess_per_second", "ESS / s", "max", ".0f"),
    Metric("rhat_max", "max R-hat", "min", ".3f"),
)


@dataclass
class GaussianTarget:
    """The exact answer: N(mean, cov); ``precision`` = cov^-1 (``precision_diag`` when diagonal)."""

    mean: torch.Tensor
    cov: torch.Tensor
    precision: torch.Tensor
    diagonal: bool

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @classmethod
    def from_cov(cls, mean: torch.Tensor, cov: torch.Tensor, diagonal: bool = False) -> "GaussianTarget":
        cov = 0.5 * (cov + cov.T)
        return cls(mean=mean, cov=cov, precision=torch.linalg.inv(cov), diagonal=diagonal)


def _rotation(d: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


class GaussianLoop(SamplingLoop):
    """The toy tasks' hooks: the analytic gradient of every chain (:meth:`GaussianTask.grad_`, its
    minibatch indices, if any, from ``gen``), and a kept state copied into ``trace`` [kept, chains, d]."""

    def __init__(self, task: "GaussianTask", theta: torch.Tensor, gen: torch.Generator, sampler, keep: list[bool],
                 ctx: RunContext, desc: str, grad=None, **loop_options) -> None:
        super().__init__(sampler, keep, ctx, desc, **loop_options)
        self.task, self.theta, self.gen = task, theta, gen
        #: grad(theta, out, gen): the task's gradient estimator (default :meth:`GaussianTask.grad_`)
        self.grad = task.grad_ if grad is None else grad
        self.trace = torch.empty(sum(keep), *theta.shape, dtype=theta.dtype, device=theta.device)

    def gradient(self, t, batch):
        self.grad(self.theta, self.theta.grad, self.gen)

    def consume(self, t):
        self.trace[self.kept] = self.theta


#: task-wide keys of the toy tasks (``--hyper cycles=40 --hyper keep_last=0.25``): a cyclical
#: step-size schedule, none by default (see :meth:`GaussianTask.keep_plan`)
TOY_TASK_KEYS = {"cycles": 0, "keep_last": 1.0, "replicate": 0}
#: seeds of a toy's replicates: replicate r draws its target from ``target_seed + REPLICATE_STRIDE * r``
REPLICATE_STRIDE = 1000


class GaussianTask(Task):
    """A Gaussian potential with exact gradients; subclasses define the target."""

    suite = "toy"
    metrics = TOY_METRICS
    task_keys = TOY_TASK_KEYS
    num_data = 1
    #: seed of the target itself (fixed: every run sees the same posterior)
    target_seed = 20261127

    def __init__(self) -> None:
        self._target: GaussianTarget | None = None

    # -- the target -----------------------------------------------------------
    def make_target(self, gen: torch.Generator) -> GaussianTarget:
        raise NotImplementedError

    @property
    def target(self) -> GaussianTarget:
        if self._target is None:
            self._target = self.make_target(torch.Generator().manual_seed(self.target_seed))
        return self._target

    def protocol(self, profile: str) -> dict:
        return dict(TOY_PROFILES[check_profile(profile)])

    # -- tuning (benchmarks.tuning): an independent replicate of the task, scored by KL ------------
    #: a trial runs on replicate 1: the same family of target drawn from another seed (for blr, new
    #: data), so no step size is chosen on the target it is scored on
    tuning_keys = {"replicate": 1}
    tuning_metric = "kl"

    def tuning_eligible(self, metrics: dict) -> bool:
        """Only a converged trial may be chosen: max split R-hat < 1.1 (a step too small to mix can
        show a small KL by luck of its start)."""
        rhat = metrics.get("rhat_max")
        return isinstance(rhat, (int, float)) and rhat < 1.1

    @property
    def tune_lr_max(self) -> float:
        """10 / lambda_max of grad^2 L (= P / N), up to the ladder: well above the stability limit
        2 / lambda_max of a gradient step, the same for every sampler."""
        lam = float(torch.linalg.eigvalsh(self.target.precision).max()) / self.num_data
        return ladder_rung(10.0 / lam, up=True)

    def check_task_keys(self, opts: dict) -> None:
        """``cycles``: an integer >= 0 that divides every profile's step count (0: a constant
        step); ``keep_last``: in (0, 1], and below 1 only with cycles; ``replicate``: an integer
        >= 0 (0: the published target; r > 0: the same family of target from another seed, the
        tuning protocol's validation target)."""
        replicate = opts.get("replicate", 0)
        if not (isinstance(replicate, (int, float)) and not isinstance(replicate, bool)
                and float(replicate).is_integer() and 0 <= replicate <= 10**6):
            raise ValueError(f"replicate={replicate!r} is out of range; valid: an integer in [0, 1000000] "
                             f"(0: the published target)")
        cycles, keep_last = opts.get("cycles", 0), opts.get("keep_last", 1.0)
        steps = sorted({self.protocol(p)["steps"] for p in self.profiles})
        if not (isinstance(cycles, (int, float)) and float(cycles).is_integer() and cycles >= 0) or any(
                s % int(cycles) for s in steps if cycles):
            raise ValueError(f"cycles={cycles!r} is out of range; valid: 0 (a constant step) or an integer that "
                             f"divides the step counts of {self.name}'s profiles ({', '.join(map(str, steps))})")
        if not (isinstance(keep_last, (int, float)) and 0.0 < keep_last <= 1.0):
            raise ValueError(f"keep_last={keep_last!r} is out of range; valid: (0, 1]")
        if keep_last != 1.0 and not cycles:
            raise ValueError(f"keep_last={keep_last!r} applies to a cyclical schedule only; valid: 1 without cycles")

    def keep_plan(self, proto: dict, cycles: int = 0, keep_last: float = 1.0) -> list[bool]:
        """Which steps' states are kept: after ``burn_in``, every ``thin``-th. With ``cycles`` the
        step size follows a cosine from ``lr`` down to ~0 within each of ``cycles`` equal cycles
        (``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``, as the cyclical MNIST task;
        Zhang et al. 2020), the noise stays on throughout, and only states in the last ``keep_last``
        share of each cycle (the small steps) are kept: large steps to cross between modes, small
        ones for the draws."""
        steps, burn_in, thin = proto["steps"], proto["burn_in"], proto["thin"]
        length = steps // cycles if cycles else steps  # no cycles: one cycle, kept whole (keep_last = 1)
        first = length - max(1, round(keep_last * length))
        return [t >= burn_in and (t - burn_in + 1) % thin == 0 and t % length >= first for t in range(steps)]

    # -- the potential ----------------------------------------------------------
    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        t = self.target
        self._mu = t.mean.to(device, dtype)
        self._prec = (torch.diagonal(t.precision) if t.diagonal else t.precision).to(device, dtype)

    def grad_(self, theta: torch.Tensor, out: torch.Tensor, gen: torch.Generator) -> None:
        """out <- grad L_hat(theta) = P (theta - mu) / N for every chain (rows of theta)."""
        if self.target.diagonal:
            torch.sub(theta, self._mu, out=out).mul_(self._prec)  # no temporary
        else:
            torch.matmul(theta - self._mu, self._prec, out=out)
        if self.num_data != 1:
            out.div_(self.num_data)

    def init(self, chains: int, gen: torch.Generator) -> torch.Tensor:
        """Over-dispersed start: mu + 3 * chol(Sigma) xi, so R-hat can see unmixed chains."""
        t = self.target
        chol = torch.linalg.cholesky(t.cov)
        xi = torch.randn(chains, t.dim, generator=gen, dtype=torch.float64)
        return t.mean + 3.0 * xi @ chol.T

    # -- one run ----------------------------------------------------------------
    def replicate(self, r: int) -> "GaussianTask":
        """This task with its target drawn from another seed (r = 0: itself)."""
        if not r:
            return self
        twin = copy.copy(self)
        twin.target_seed = self.target_seed + REPLICATE_STRIDE * int(r)
        twin._target = None
        return twin

    def run(self, sampler_cls: type, hyper: dict, ctx: RunContext) -> RunResult:
        if hyper.get("replicate", 0):
            self.check_task_keys({"replicate": hyper["replicate"]})
            twin = self.replicate(int(hyper["replicate"]))
            return twin.run(sampler_cls, {k: v for k, v in hyper.items() if k != "replicate"}, ctx)
        # the tensors are tiny ([chains, d]): intra-op threads only add synchronisation, and with
        # several runs in parallel they oversubscribe the cores; one thread per run is fastest
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        ctx.threads = 1
        try:
            return self._run(sampler_cls, hyper, ctx)
        finally:
            torch.set_num_threads(threads)

    def _run(self, sampler_cls: type, hyper: dict, ctx: RunContext) -> RunResult:
        proto = self.protocol(ctx.profile)
        chains, steps = proto["chains"], proto["steps"]
        dtype = torch.float32
        # init from a CPU generator (float64), minibatches from one on the run's device, so a GPU run
        # draws its indices where the data is; the samplers' noise comes from the global generator
        theta = self.init(chains, torch.Generator().manual_seed(ctx.seed)).to(ctx.device, dtype).requires_grad_(True)
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        self.prepare(ctx.device, dtype)
        theta.grad = torch.zeros_like(theta)
        hyper = dict(hyper)
        opts = {k: hyper.pop(k, v) for k, v in self.task_keys.items()}
        self.check_task_keys(opts)
        cycles = int(opts["cycles"])
        proto, grad, grads_per_step, setup_cost = self.gradient_setup(proto, opts, theta, gen)
        steps = proto["steps"]
        sampler = build_sampler(sampler_cls, [theta], hyper, self.num_data)
        keep_at = self.keep_plan(proto, cycles, float(opts["keep_last"]))
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(sampler, T_0=steps // cycles) if cycles else None
        keep = sum(keep_at)
        if keep < 2:
            raise ValueError(f"the protocol keeps {keep} draw(s) a chain; ESS and R-hat need >= 2: {proto}, {opts}")
        loop = GaussianLoop(self, theta, gen, sampler, keep_at, ctx, f"{self.name} {sampler_label(sampler_cls)}",
                            grad=grad, schedule=schedule, grads_per_step=grads_per_step * chains)
        done = loop.run()
        trace = loop.trace
        if not bool(torch.isfinite(trace).all()):
            raise Diverged(steps, "non-finite parameters in the kept draws")
        grad_evals = done.grad_evals + setup_cost * chains
        return RunResult(
            metrics=self.evaluate(trace, done.sampling_time_s, grad_evals),
            grad_evals=grad_evals,
            sampling_time_s=done.sampling_time_s,
        )

    def gradient_setup(self, proto: dict, opts: dict, theta: torch.Tensor,
                       gen: torch.Generator) -> tuple[dict, object, int, int]:
        """(protocol, grad, gradients per chain per step, set-up cost per chain) of a run: the plain
        task steps ``proto`` with :meth:`grad_` (one gradient a step, nothing spent before). A task
        with another estimator (:class:`BayesianLinearRegression`'s control variates) may move
        ``theta`` to where its chains start and shorten the protocol so the total stays the budget."""
        return proto, self.grad_, 1, 0

    def fit_metrics(self, trace: torch.Tensor, seconds: float,
                    grad_evals: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
        """What every toy task reports from the kept draws [draws, chains, d]: mean and marginal
        variance errors, min bulk ESS (and its rates), max R-hat; with the per-chain draws
        [chains, draws, d], the fitted mean and the fitted covariance (diagonal for a diagonal
        target: a full d x d fit in d = 1000 from ~1e4 draws would measure the estimator's noise,
        ~d^2 / 4n, not the sampler)."""
        t = self.target
        draws = trace.double().cpu().numpy()
        flat = draws.reshape(-1, draws.shape[-1])
        mean_hat = flat.mean(0)
        cov = t.cov.numpy()
        cov_hat = np.diag(flat.var(0, ddof=1)) if t.diagonal else np.atleast_2d(np.cov(flat, rowvar=False))
        per_chain = np.ascontiguousarray(draws.transpose(1, 0, 2))  # [chains, draws, d]
        ess, rhat = M.mixing_diagnostics(per_chain)
        ess_min = float(np.min(ess))
        out = {
            "mean_error": M.mahalanobis_mean_error(mean_hat, t.mean.numpy(), cov),
            "var_error": M.marginal_variance_error(np.diag(cov_hat), np.diag(cov)),
            "ess_min": ess_min,
            "rhat_max": float(np.max(rhat)),
        }
        out.update(M.ess_rates(ess_min, seconds, grad_evals))
        return out, per_chain, mean_hat, cov_hat

    def evaluate(self, trace: torch.Tensor, seconds: float, grad_evals: int) -> dict[str, float]:
        """Fitted Gaussian vs the truth (KL, W2), and :meth:`fit_metrics`."""
        t = self.target
        out, _per_chain, mean_hat, cov_hat = self.fit_metrics(trace, seconds, grad_evals)
        mean, cov = t.mean.numpy(), t.cov.numpy()
        try:
            kl = M.kl_gaussian(mean_hat, cov_hat, mean, cov)
        except ValueError:  # fitted covariance singular (the chains collapsed): KL(fit || true) = +inf
            kl = float("inf")
        out.update(kl=kl, w2=M.wasserstein2_gaussian(mean_hat, cov_hat, mean, cov))
        return out


class IsotropicGaussian(GaussianTask):
    name = "gauss-iso-100"
    description = "isotropic Gaussian, d = 100, Sigma = I, mean drawn from N(0, I)"

    def make_target(self, gen):
        d = 100
        return GaussianTarget.from_cov(torch.randn(d, generator=gen, dtype=torch.float64),
                                       torch.eye(d, dtype=torch.float64), diagonal=True)


class IllConditionedGaussian(GaussianTask):
    name = "gauss-illcond-100"
    description = "ill-conditioned Gaussian, d = 100, dense Sigma (random rotation), variances log-spaced over [0.01, 1] (condition number 100)"

    def make_target(self, gen):
        d = 100
        q = _rotation(d, gen)
        var = torch.logspace(-2, 0, d, dtype=torch.float64)
        return GaussianTarget.from_cov(torch.randn(d, generator=gen, dtype=torch.float64), q @ torch.diag(var) @ q.T)


class CorrelatedGaussian(GaussianTask):
    name = "gauss-corr-2d"
    description = "strongly correlated 2-d Gaussian, unit variances, rho = 0.95 (condition number 39)"

    def make_target(self, gen):
        rho = 0.95
        cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
        return GaussianTarget.from_cov(torch.tensor([1.0, -1.0], dtype=torch.float64), cov)


class HighDimGaussian(GaussianTask):
    name = "gauss-diag-1000"
    description = "high-dimensional Gaussian, d = 1000, diagonal, variances log-spaced over [0.1, 1]"

    def make_target(self, gen):
        d = 1000
        var = torch.logspace(-1, 0, d, dtype=torch.float64)
        return GaussianTarget.from_cov(torch.randn(d, generator=gen, dtype=torch.float64), torch.diag(var), diagonal=True)

    def protocol(self, profile):
        # fewer chains and kept draws: the rank-normalised ESS / R-hat of 1000 coordinates costs
        # a sort of chains x draws values per coordinate
        proto = super().protocol(profile)
        proto["chains"] = min(proto["chains"], 16)
        proto["thin"] *= 2
        return proto


class BayesianLinearRegression(GaussianTask):
    """y = X w + e, e ~ N(0, sigma^2), prior w ~ N(0, I / prior_precision); N = 10,000, d = 10.

    Posterior: P = X^T X / sigma^2 + prior_precision I, mean = P^-1 X^T y / sigma^2 (closed form).
    Minibatch gradient for each chain from its own batch of 100 indices drawn with replacement:
    grad L_hat = -(1/B) sum_b x_b (y_b - x_b^T w) / sigma^2 + prior_precision w / N.

    Task-wide key ``gradient``: ``"minibatch"`` (the default, above) or ``"cv"``, control variates
    (:mod:`sgmcmc.gradients`; Baker et al. 2019): grad_hat(w) = g_B(w) - g_B(w_hat) + g_full(w_hat),
    both minibatch terms on the chain's same batch. The budget is the same ``steps`` gradients of
    batch 100 per chain, split as (all counted in the record's ``grad_evals``):

    - the centre: ``steps // 10`` SGD steps from the chain's own start (lr :attr:`centre_lr`, a
      batch of 100 each), w_hat = the average of their second half;
    - the full gradient at w_hat: N / 100 = 100 minibatch gradients;
    - the sampler: the rest, (steps - steps // 10 - 100) // 2 steps of two gradients each, starting
      at w_hat, with the burn-in scaled by the same ratio and the same thinning (so the kept share
      of the steps is the plain protocol's). Default profile: 1,000 + 100 + 2 x 4,450 of 10,000.
    """

    name = "blr"
    description = "Bayesian linear regression, N = 10,000, d = 10, correlated features (condition number ~16), minibatch 100 (real data noise)"
    task_keys = {**TOY_TASK_KEYS, "gradient": "minibatch"}
    #: the step of the SGD that finds the control variates' centre (on L: 0.8 of 2 / lambda_max)
    centre_lr = 0.05
    num_data = 10_000
    dim = 10
    batch_size = 100
    noise_sd = 1.0
    prior_precision = 1.0

    def make_target(self, gen):
        n, d = self.num_data, self.dim
        # correlated features with a controlled spectrum: Cov(x) = Q diag(s^2) Q^T, s log-spaced
        # over [1, 4], so the posterior's condition number is about 16
        q = _rotation(d, gen)
        x = torch.randn(n, d, generator=gen, dtype=torch.float64) @ (q * torch.logspace(0, math.log10(4), d, dtype=torch.float64)) @ q.T
        w_true = torch.randn(d, generator=gen, dtype=torch.float64)
        y = x @ w_true + self.noise_sd * torch.randn(n, generator=gen, dtype=torch.float64)
        self._x64, self._y64 = x, y
        prec = x.T @ x / self.noise_sd**2 + self.prior_precision * torch.eye(d, dtype=torch.float64)
        cov = torch.linalg.inv(prec)
        mean = cov @ (x.T @ y) / self.noise_sd**2
        return GaussianTarget(mean=mean, cov=0.5 * (cov + cov.T), precision=prec, diagonal=False)

    def prepare(self, device, dtype):
        _ = self.target
        self._x = self._x64.to(device, dtype)
        self._y = self._y64.to(device, dtype)

    def grad_(self, theta, out, gen):
        chains = theta.shape[0]
        idx = torch.randint(self.num_data, (chains, self.batch_size), generator=gen, device=theta.device)
        self.batch_grad(theta, idx, out)

    def batch_grad(self, theta: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """grad L_hat(theta) of every chain (row of theta) on its own minibatch (row of ``idx``)."""
        xb, yb = self._x[idx], self._y[idx]  # [C, B, d], [C, B]
        resid = yb - torch.einsum("cbd,cd->cb", xb, theta)
        g = torch.einsum("cbd,cb->cd", xb, resid)
        out = g if out is None else out.copy_(g)
        return out.mul_(-1.0 / (idx.shape[1] * self.noise_sd**2)).add_(theta, alpha=self.prior_precision / self.num_data)

    # -- control variates (gradient = "cv") --------------------------------------
    def check_task_keys(self, opts):
        """The toy keys, and ``gradient``: ``"minibatch"`` (plain minibatch gradients) or ``"cv"``
        (control variates, with a constant step: not with ``cycles``)."""
        super().check_task_keys(opts)
        gradient = opts.get("gradient", "minibatch")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient={gradient!r} is not a gradient estimator of {self.name}; valid: "
                             f"{', '.join(GRADIENTS)}")
        if gradient == "cv" and opts.get("cycles", 0):
            raise ValueError(f"gradient='cv' runs with a constant step on {self.name}; valid with it: cycles=0")

    def gradient_setup(self, proto, opts, theta, gen):
        """With ``gradient = "cv"``: find each chain's centre, compute the full gradient there, start
        the chain at its centre, and spend the rest of the budget on steps of two gradients each
        (see the class docstring)."""
        if opts.get("gradient", "minibatch") != "cv":
            return super().gradient_setup(proto, opts, theta, gen)
        from sgmcmc.gradients import control_variate, full_gradient

        chains, n, b = theta.shape[0], self.num_data, self.batch_size
        steps = proto["steps"]
        sgd_steps = steps // 10
        with torch.no_grad():
            x = theta.detach().clone()
            avg = torch.zeros_like(x)
            g = torch.empty_like(x)
            for t in range(sgd_steps):  # SGD from the chains' start, averaged over its second half
                idx = torch.randint(n, (chains, b), generator=gen, device=x.device)
                x.sub_(self.batch_grad(x, idx, g), alpha=self.centre_lr)
                if t >= sgd_steps // 2:
                    avg.add_(x)
            centre = avg.div_(sgd_steps - sgd_steps // 2)
            chunks = (torch.arange(i, min(i + b, n), device=x.device).expand(chains, -1) for i in range(0, n, b))
            centre_grad, _ = full_gradient(self.batch_grad, centre, chunks, size=lambda idx: idx.shape[1])
            theta.copy_(centre)
        setup = sgd_steps + math.ceil(n / b)
        cv_steps = (steps - setup) // 2
        scaled = dict(proto, steps=cv_steps, burn_in=round(proto["burn_in"] * cv_steps / steps))

        def grad(theta, out, gen):
            idx = torch.randint(n, (chains, b), generator=gen, device=theta.device)
            out.copy_(control_variate(self.batch_grad, theta, idx, centre, centre_grad))

        return scaled, grad, 2, setup


#: the gradient estimators of :class:`BayesianLinearRegression` (task-wide key ``gradient``)
GRADIENTS = ("minibatch", "cv")


#: the mixture's columns: the mode weights first, then the toy columns that still mean something
#: for two modes (a Gaussian fit's KL and W2 do not)
MIXTURE_METRICS = (
    Metric("chain_mass_error", "per-chain mode-mass err", "min", ".3f"),
    Metric("mass_error", "pooled mode-mass err", "min", ".3f"),
    Metric("switches", "mode switches / chain", "max", ".1f"),
    *(m for m in TOY_METRICS if m.key not in ("kl", "w2")),
)


class GaussianMixture2D(GaussianTask):
    """Two modes: U(theta) = -log sum_k w_k N(theta; c_k, s^2 I), d = 2, exact gradients.

    w = (0.7, 0.3), c = (-1.5, 0) and (1.5, 0), s = 0.5: the modes are 6 s apart, and the density at
    the saddle (the origin) is e^-4.5 of the smaller mode's peak, a barrier a chain crosses a few
    times in a run at a sampler's stable step sizes. The exact answers: the mixture's mean and
    covariance (for the mean and variance errors; the chains start over-dispersed around them, as on
    the other toy tasks, so they start in both modes) and the mass of the right half-plane,
    P(theta_1 > 0) = sum_k w_k Phi(c_k1 / s) = 0.3005, the share of its time a chain should spend in
    the right mode. The headline is the per-chain error of that share
    (:func:`metrics.mode_mass_errors`): a sampler whose chains never cross scores ~0.42 however well
    its pooled draws happen to be split. Mode switches are counted between the modes' cores
    (theta_1 <= -0.75 and >= 0.75, 1.5 sd from each centre: :func:`metrics.mode_switches`), so a
    tail draw that strays past 0 is not one. A Gaussian fit (KL, W2) means nothing for two modes and is
    not reported. The gradient is sum_k r_k (theta - c_k) / s^2 with r the component
    responsibilities (a softmax over k).
    """

    def protocol(self, profile: str) -> dict:
        # a study outside `all`: its quick profile keeps the 2,000 steps a chain needs to cross the
        # barrier a few times (the smoke profile's 1,000 would leave the mode switches to chance)
        proto = super().protocol(profile)
        if profile == "quick":
            proto.update(steps=2_000, burn_in=500)
        return proto

    #: the tuning protocol scores the per-chain mode-mass error (the headline; a Gaussian fit's KL
    #: means nothing for two modes) among trials that sample the right spread (configs/toy.toml)
    tuning_metric = "chain_mass_error"

    def tuning_eligible(self, metrics: dict) -> bool:
        err = metrics.get("var_error")
        return isinstance(err, (int, float)) and abs(err) <= 0.1

    name = "mixture-2d"
    suite = "multimodal"
    in_all = False
    description = ("two-mode Gaussian mixture, d = 2: 0.7 N((-1.5, 0), 0.5^2 I) + 0.3 N((1.5, 0), 0.5^2 I); "
                   "does each chain weigh the modes right?")
    metrics = MIXTURE_METRICS
    summary_keys = ("chain_mass_error", "switches")
    sweep_keys = ("chain_mass_error", "var_error", "switches")
    weights = (0.7, 0.3)
    centers = ((-1.5, 0.0), (1.5, 0.0))
    sd = 0.5

    def make_target(self, gen):
        w = torch.tensor(self.weights, dtype=torch.float64)
        c = torch.tensor(self.centers, dtype=torch.float64)
        mean = w @ c
        spread = (c - mean).T @ torch.diag(w) @ (c - mean)
        return GaussianTarget.from_cov(mean, self.sd**2 * torch.eye(2, dtype=torch.float64) + spread)

    @property
    def cores(self) -> tuple[float, float]:
        """theta_1 at or below the first value is the left mode's core, at or above the second the
        right one's: 1.5 sd from each centre towards the other (a mode switch is counted between
        cores, see :func:`metrics.mode_switches`)."""
        return self.centers[0][0] + 1.5 * self.sd, self.centers[1][0] - 1.5 * self.sd

    @property
    def right_mass(self) -> float:
        """P(theta_1 > 0) under the mixture: sum_k w_k Phi(c_k1 / s)."""
        from scipy.stats import norm

        return float(sum(w * norm.cdf(c[0] / self.sd) for w, c in zip(self.weights, self.centers)))

    def prepare(self, device, dtype):
        _ = self.target
        self._c = torch.tensor(self.centers, dtype=dtype, device=device)  # [K, d]
        self._logw = torch.tensor(self.weights, dtype=torch.float64).log().to(device, dtype)

    def grad_(self, theta, out, gen):
        """out <- grad U(theta) = sum_k r_k(theta) (theta - c_k) / s^2 for every chain (N = 1)."""
        diff = theta.unsqueeze(1) - self._c  # [C, K, d]
        logits = self._logw - diff.square().sum(-1) / (2 * self.sd**2)  # [C, K]
        r = torch.softmax(logits, dim=1)
        torch.sum(r.unsqueeze(-1) * diff, dim=1, out=out)
        out.div_(self.sd**2)

    def evaluate(self, trace, seconds, grad_evals):
        """Mode weights per chain and pooled, mode switches, and :meth:`fit_metrics` (no KL, W2)."""
        out, per_chain, _mean_hat, _cov_hat = self.fit_metrics(trace, seconds, grad_evals)
        pooled, chain = M.mode_mass_errors(per_chain[..., 0] > 0.0, self.right_mass)
        out.update(chain_mass_error=chain, mass_error=pooled,
                   switches=M.mode_switches(per_chain[..., 0], *self.cores))
        return out


TOY_TASKS: tuple[GaussianTask, ...] = (
    IsotropicGaussian(), IllConditionedGaussian(), CorrelatedGaussian(), HighDimGaussian(), BayesianLinearRegression(),
    GaussianMixture2D(),
)
