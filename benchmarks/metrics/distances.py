"""Distances between a fitted Gaussian and the exact one (the toy tasks' answers are Gaussians).

Every argument is a numpy array, torch tensor or array-like, computed in float64; each returns a
Python float. ``mean``/``cov`` pairs are a vector [d] and a symmetric matrix [d, d] (a scalar pair
is a 1-d Gaussian):

    mahalanobis_mean_error, marginal_variance_error, wasserstein2_gaussian, kl_gaussian.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from ._arrays import _to_numpy

__all__ = ["mahalanobis_mean_error", "marginal_variance_error", "wasserstein2_gaussian", "kl_gaussian"]


def _mean_cov(mean: Any, cov: Any, name_mean: str, name_cov: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d], cov [d, d]) in float64; a scalar mean/cov is a 1-d Gaussian."""
    m = np.atleast_1d(_to_numpy(mean))
    c = _to_numpy(cov)
    if c.ndim == 0:
        c = c.reshape(1, 1)
    if m.ndim != 1:
        raise ValueError(f"{name_mean} must be a vector [d], got shape {m.shape}")
    d = m.shape[0]
    if c.shape != (d, d):
        raise ValueError(f"{name_cov} must have shape ({d}, {d}) to match {name_mean}, got {c.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
        raise ValueError(f"{name_mean} and {name_cov} must be finite")
    scale = max(float(np.max(np.abs(c))), np.finfo(np.float64).tiny)
    if np.max(np.abs(c - c.T)) > 1e-6 * scale:
        raise ValueError(f"{name_cov} is not symmetric")
    return m, 0.5 * (c + c.T)


def _cholesky(cov: np.ndarray, name: str) -> np.ndarray:
    """Lower Cholesky factor; ValueError naming the argument if it is not positive definite."""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} is not positive definite") from None
    if not np.all(np.isfinite(chol)) or np.any(np.diag(chol) <= 0):
        raise ValueError(f"{name} is not positive definite")
    return chol


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (tiny negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh(0.5 * (mat + mat.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def mahalanobis_mean_error(mean_hat, mean, cov) -> float:
    """Mean error in the units of the true posterior: sqrt((m_hat - m)^T S^-1 (m_hat - m)).

    ``cov`` = S is the TRUE covariance. Computed as ||L^-1 (m_hat - m)||_2 with S = L L^T
    (Cholesky, triangular solve; no explicit inverse).
    """
    m, s = _mean_cov(mean, cov, "mean", "cov")
    m_hat = np.atleast_1d(_to_numpy(mean_hat))
    if m_hat.shape != m.shape:
        raise ValueError(f"mean_hat has shape {m_hat.shape}, expected {m.shape}")
    chol = _cholesky(s, "cov")
    z = linalg.solve_triangular(chol, m_hat - m, lower=True)
    return float(np.sqrt(z @ z))


def marginal_variance_error(var_hat, var) -> float:
    """Mean absolute log ratio of marginal variances: mean_i |log(var_hat_i / var_i)|.

    0 is exact; log(2) ~ 0.69 means the variances are off by a factor 2 on average (in either
    direction). A zero ``var_hat_i`` gives inf.
    """
    vh = np.atleast_1d(_to_numpy(var_hat))
    v = np.atleast_1d(_to_numpy(var))
    if vh.shape != v.shape:
        raise ValueError(f"var_hat has shape {vh.shape}, var has shape {v.shape}")
    if np.any(v <= 0):
        raise ValueError("var must be positive")
    if np.any(vh < 0):
        raise ValueError("var_hat must be non-negative")
    with np.errstate(divide="ignore"):
        return float(np.mean(np.abs(np.log(vh) - np.log(v))))


def wasserstein2_gaussian(mean1, cov1, mean2, cov2) -> float:
    """2-Wasserstein distance between N(m1, S1) and N(m2, S2):

        W2^2 = ||m1 - m2||^2 + tr(S1 + S2 - 2 (S2^{1/2} S1 S2^{1/2})^{1/2}).

    S2^{1/2} is the symmetric square root (eigh, tiny negative eigenvalues clipped to 0);
    tr((S2^{1/2} S1 S2^{1/2})^{1/2}) is the sum of the square roots of the (clipped) eigenvalues
    of the symmetrised product; W2^2 is clipped at 0 before the square root. Symmetric in its
    two arguments; covariances only need to be positive semi-definite.
    """
    m1, s1 = _mean_cov(mean1, cov1, "mean1", "cov1")
    m2, s2 = _mean_cov(mean2, cov2, "mean2", "cov2")
    if m1.shape != m2.shape:
        raise ValueError(f"dimensions differ: {m1.shape[0]} vs {m2.shape[0]}")
    root2 = _psd_sqrt(s2)
    middle = root2 @ s1 @ root2
    eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    cross = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    delta = m1 - m2
    w2_sq = float(delta @ delta) + float(np.trace(s1) + np.trace(s2)) - 2.0 * cross
    return float(np.sqrt(max(w2_sq, 0.0)))


def kl_gaussian(mean_hat, cov_hat, mean, cov) -> float:
    """KL(N(m_hat, S_hat) || N(m, S)), the fitted Gaussian against the true one:

        0.5 [tr(S^-1 S_hat) + (m - m_hat)^T S^-1 (m - m_hat) - d + log det S - log det S_hat].

    With S = L L^T and S_hat = L_hat L_hat^T (Cholesky): tr(S^-1 S_hat) = ||L^-1 L_hat||_F^2,
    the quadratic term is ||L^-1 (m - m_hat)||^2 and log det S = 2 sum log diag L.
    Raises ValueError naming ``cov_hat`` or ``cov`` if it is not positive definite.
    """
    m_hat, s_hat = _mean_cov(mean_hat, cov_hat, "mean_hat", "cov_hat")
    m, s = _mean_cov(mean, cov, "mean", "cov")
    if m_hat.shape != m.shape:
        raise ValueError(f"dimensions differ: {m_hat.shape[0]} vs {m.shape[0]}")
    chol_hat = _cholesky(s_hat, "cov_hat")
    chol = _cholesky(s, "cov")
    d = m.shape[0]
    a = linalg.solve_triangular(chol, chol_hat, lower=True)
    z = linalg.solve_triangular(chol, m - m_hat, lower=True)
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    logdet_hat = 2.0 * np.sum(np.log(np.diag(chol_hat)))
    kl = 0.5 * (np.sum(a * a) + z @ z - d + logdet - logdet_hat)
    return float(max(kl, 0.0))
