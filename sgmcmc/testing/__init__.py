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
    U = 0.5 (x - mu)^T P (x - mu) over N = 100 data, exact full-batch gradients grad L = P (x - mu) / N;
    the other checks run the same mean loss L over other N, see below),
    256 chains run as one ``[chains, d]`` tensor from an overdispersed start (3x the posterior
    spread). After burn-in at T = 1, each coordinate's mean must lie within 4 Monte-Carlo standard
    errors of the truth (MCSE = sd / sqrt(ESS), with the bulk ESS of :func:`sgmcmc.diagnostics.ess_geyer`:
    rank-normalised split chains, Geyer's initial monotone sequence, as Stan and
    ``arviz.ess(method="bulk")`` compute it) and each marginal variance within 10 %. A sampler whose
    ``uses_noise`` is False (``sgd``) must instead converge to the mode (every chain within 1e-3
    posterior standard deviations of mu).
``tempered``
    The same at two temperatures, each over another N and with its own seed: T = 0.5 over N = 1000
    data and T = 2 over N = 37. The covariance must be T times the posterior's (every marginal
    variance within 10 % of T * Sigma_ii) at both, so the temperature law is pinned on either side
    of T = 1 (a variance that goes as sqrt(T) is +41 % off at T = 0.5 and -29 % at T = 2). The
    result reports the worst of the two runs, T and N as lists, and ``max_abs_var_err_by_run``. For
    ``uses_noise = False``, the mode again at both.
``gradient_noise``
    As ``stationary``, over N = 300 data, with minibatch-like gradient noise: each gradient coordinate
    gets N(0, s_i^2) added with s_i = 0.5 * sqrt(P_ii) / N, half the standard deviation of the exact
    gradient over the posterior. Tolerance: mean within 4 MCSE; each marginal variance no more than 15 %
    below T * Sigma_ii and no more than 15 % plus its predicted inflation above it. A sampler without a
    noise-estimate correction turns gradient noise into extra spread: about lr * s^2 * N / (2 T)
    for sgld, and lr * s^2 * N / (2 friction T) for the momentum samplers (sghmc, underdamped:
    +9 % at friction 0.1, +15 % at 0.05, +37 % at 0.02 on this problem). The prediction is measured,
    not assumed: the sampler's own noise-only run (64 chains x 2500 steps at T = 0, started at the mode, the same
    lr, hyperparameters and gradient noise) gives the variance the gradient noise alone produces,
    and for a sampler linear in its noise (sgld, sghmc and underdamped on a Gaussian) the covariance
    under gradient noise at T = 1 is the T = 1 covariance plus that one. So any sampler at any
    setting is held to its own dynamics, with no hook to declare; a sampler that corrects for the
    noise (and so comes out below the prediction) is held to the plain 15 % below. The result
    reports the largest variance error beside the inflation predicted for that coordinate
    (``max_var_err``, ``predicted_inflation_there``, ``max_predicted_inflation``). If the noise-only
    chains diverge, no inflation is allowed. For ``sgd``: the iterate average lies within 4 MCSE of
    the mode.
``stationary_hypers``
    ``stationary`` again with each of the sampler's own hyperparameters moved far from its default (its
    closed upper bound, halfway to an open one, else 10x): the target must not depend on them. A
    noise scale that is right only at the default value (a Taylor approximation of 1 - exp(-2 gamma),
    say) fails here. The result gives, for each value tried, its largest marginal-variance error
    (printed ``friction=1: worst error 2.2 %``).
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
    Each parameter draws its own noise. Parameters that start equal and see equal gradients part ways
    (in one group and across two); and no parameter's noise is correlated with another's: 400 fresh
    samplers (generator= seeded 0 .. 399) each step three small parameters (two in one group, one in
    a second) twice from 0 under a fixed gradient, and no value's displacement may correlate with a
    value of another parameter: every |r| < 5 / sqrt(400) (five null standard deviations). From rest
    each displacement is linear in that value's own draws, so momentum samplers pass; noise shared
    out in overlapping slices of one draw (r = 1) fails. Samplers with noise only.
``noise_dtype``
    A step on float64 parameters draws float64 noise, one on float32 parameters float32 noise (every
    random op it runs, seen through a ``TorchDispatchMode``). Samplers with noise only.
``copy_and_pickle``
    ``copy.deepcopy`` and ``pickle`` taken mid-chain continue the chain bit for bit (on parameters
    large enough to be drawn from several noise streams).
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

Step size: lr is a step on L = U / N (docs/contract.md), so the default is
``lr = step_factor * N / lambda_max(P)`` with ``step_factor = 0.2`` (0.4 here): for SGLD the
stiffest direction's variance is then ~12 % too large and the marginals are right to within
Monte-Carlo error (~3 %); for sghmc / underdamped (second order: their time step is sqrt(lr / N))
it is a small step too. A sampler that rescales its own step (psgld: G ~ N / sqrt(P_ii) here) needs
``lr=`` passed (0.02 for psgld with alpha = 0.9999). Too small a step fails for want of mixing
within the 6000 steps; the failure message says so when the ESS is low.

Other N: ``tempered`` and ``gradient_noise`` keep the mean loss L = U / N of the N = 100 problem
and change N (:meth:`GaussianProblem.with_num_data`): U = N L, so the posterior covariance scales
as 1 / N while grad L, and so the meaning of lr, stays. A sampler that keeps the contract runs the
same chain at every N, up to the scale sqrt(100 / N), with the same default lr; one that misreads
num_data (say, always 100) is off by N / 100 in variance at every N but 100.

The chains run single-threaded (the tensors are tiny); each statistical check takes 1-4 s, the
exact ones milliseconds (``independent_noise``, with its 400 samplers, a fraction of a second). :func:`measure_bias` tabulates the errors against the step size without
judging them, and ``python -m sgmcmc.testing`` runs either from the command line (see :func:`main`).

The package: :mod:`~sgmcmc.testing.core` (results, the check registry, :func:`check_sampler`),
:mod:`~sgmcmc.testing.problems` (the Gaussian and the toy problems, :func:`run_chains`),
:mod:`~sgmcmc.testing.statistical` and :mod:`~sgmcmc.testing.api` (the checks, registered in that
order), :mod:`~sgmcmc.testing.cli` (``python -m sgmcmc.testing``).
"""

from __future__ import annotations

from . import statistical  # noqa: F401,I001 (registers the statistical checks first: list_checks runs them first)
from . import api  # noqa: F401,I001
from .api import *  # noqa: F401,F403 (the check functions)
from .cli import main
from .core import (CHECKS, CheckFailed, CheckNotApplicable, CheckResult, ConformanceError, check_sampler, list_checks,
                   resolve_sampler, run_check)
from .problems import (DEFAULT_PROTOCOL, ChainStats, GaussianProblem, Protocol, default_lr, effective_sample_size,
                       gaussian_problem, run_chains)
from .statistical import *  # noqa: F401,F403 (the check functions)
from .statistical import measure_bias

__all__ = [
    "check_sampler", "run_check", "list_checks", "CHECKS", "CheckResult", "CheckFailed",
    "CheckNotApplicable", "ConformanceError", "Protocol", "GaussianProblem", "gaussian_problem",
    "run_chains", "ChainStats", "effective_sample_size", "resolve_sampler", "default_lr", "measure_bias",
    "main", "DEFAULT_PROTOCOL",
]
