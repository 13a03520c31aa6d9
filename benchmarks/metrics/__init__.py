"""Every number a leaderboard shows, defined once, each with its formula (in its docstring).

Inputs are numpy arrays (torch tensors and array-likes are accepted and converted); every
computation runs in float64. Scalar metrics return Python floats; per-coordinate metrics return
numpy arrays, as each docstring states. One module per family, every public name re-exported
here (``from benchmarks import metrics as M; M.kl_gaussian``):

- :mod:`.distances`, Gaussian distances (the exact answer is a Gaussian N(mean, cov)):
  mahalanobis_mean_error, marginal_variance_error, wasserstein2_gaussian, kl_gaussian;
- :mod:`.diagnostics`, MCMC diagnostics and efficiency: ess_bulk, ess_geyer, split_rhat,
  max_split_rhat, mixing_diagnostics (from :mod:`sgmcmc.diagnostics`), ess_rates, RunningMoments,
  and the multimodal scores mode_mass_errors, mode_switches;
- :mod:`.classification`, classification and out-of-distribution metrics (``probs``: [n, K]
  predictive probabilities whose rows sum to 1; ``labels``: integers [n]): accuracy, nll, brier,
  ece, reliability_curve, predictive_entropy, max_probability, ood_metrics, roc_curve_ood,
  classification_metrics;
- :mod:`.reference`, scores against a reference posterior (HMC): agreement, total_variation,
  standardized_mean_error, log_sd_ratio.

Conventions for MCMC draws: an array shaped [chains, draws, dim] (or [chains, draws] for a
scalar quantity). Per-coordinate results have shape [dim] (shape () for [chains, draws] input).

This package imports nothing else from ``benchmarks``: numpy, scipy, scikit-learn and
:mod:`sgmcmc.diagnostics` only.
"""

from __future__ import annotations

from . import classification, diagnostics, distances, reference
from .classification import (
    NLL_CLIP, accuracy, brier, classification_metrics, ece, max_probability, nll, ood_metrics, predictive_entropy,
    reliability_curve, roc_curve_ood,
)
from .diagnostics import (
    RunningMoments, ess_bulk, ess_geyer, ess_rates, max_split_rhat, mixing_diagnostics, mode_mass_errors,
    mode_switches, split_rhat,
)
from .distances import kl_gaussian, mahalanobis_mean_error, marginal_variance_error, wasserstein2_gaussian
from .reference import agreement, log_sd_ratio, standardized_mean_error, total_variation

__all__ = [*distances.__all__, *diagnostics.__all__, *classification.__all__, *reference.__all__]
