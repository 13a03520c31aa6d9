"""Scores against a reference posterior (a long HMC run on the same posterior).

Function space, as the NeurIPS 2021 Bayesian deep learning competition scores approximate
inference against HMC (Wilson, Izmailov, Hoffman, Gal, Li, Pan, Yang, Chen and Tran 2022,
"Evaluating approximate inference in Bayesian deep learning", PMLR 176; Izmailov, Vikram, Hoffman
and Wilson 2021, "What are Bayesian neural network posteriors really like?"), over n evaluation
points with predictive class probabilities p (the method's) and p_ref (HMC's):

    agreement       = (1/n) sum_i [argmax_c p_ic = argmax_c p_ref,ic]
    total_variation = (1/n) sum_i 1/2 sum_c |p_ic - p_ref,ic|

Parameter space, for a posterior whose parameters are identified (the log-concave logistic
regression), per parameter j with reference mean m_j and sd s_j:

    standardized_mean_error_j = |mean_j - m_j| / s_j
    log_sd_ratio_j            = |log(sd_j / s_j)|
"""

from __future__ import annotations

import numpy as np

from ._arrays import _to_numpy

__all__ = ["agreement", "total_variation", "standardized_mean_error", "log_sd_ratio"]


def _pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    p, q = _to_numpy(p), _to_numpy(q)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"probabilities must be two [n, K] arrays of one shape, got {p.shape} and {q.shape}")
    return p, q


def agreement(probs, probs_ref) -> float:
    """(1/n) sum_i [argmax p_i = argmax p_ref,i]: the fraction of points whose predicted class is
    the reference's (1 is perfect)."""
    p, q = _pair(probs, probs_ref)
    return float(np.mean(p.argmax(axis=1) == q.argmax(axis=1)))


def total_variation(probs, probs_ref) -> float:
    """(1/n) sum_i 1/2 sum_c |p_ic - p_ref,ic|: the mean total-variation distance between the two
    predictive distributions, in [0, 1] (0 is perfect)."""
    p, q = _pair(probs, probs_ref)
    return float(np.mean(0.5 * np.abs(p - q).sum(axis=1)))


def standardized_mean_error(mean, mean_ref, sd_ref) -> np.ndarray:
    """|mean_j - mean_ref,j| / sd_ref,j per parameter (an array)."""
    return np.abs(_to_numpy(mean) - _to_numpy(mean_ref)) / _to_numpy(sd_ref)


def log_sd_ratio(sd, sd_ref) -> np.ndarray:
    """|log(sd_j / sd_ref,j)| per parameter (an array; 0 is perfect, log 2 = 0.69 a factor 2)."""
    with np.errstate(divide="ignore"):
        return np.abs(np.log(_to_numpy(sd)) - np.log(_to_numpy(sd_ref)))
