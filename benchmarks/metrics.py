"""Every number a leaderboard shows, defined once, each with its formula.

Inputs are numpy arrays (torch tensors and array-likes are accepted and converted); every
computation runs in float64. Scalar metrics return Python floats; per-coordinate metrics return
numpy arrays, as each docstring states.

Gaussian / MCMC metrics (the exact answer is a Gaussian N(mean, cov)):
    mahalanobis_mean_error, marginal_variance_error, wasserstein2_gaussian, kl_gaussian,
    ess_bulk, ess_geyer, split_rhat, max_split_rhat, ess_rates, RunningMoments.

Classification / out-of-distribution metrics (``probs``: [n, K] predictive probabilities whose
rows sum to 1; ``labels``: integers [n]):
    accuracy, nll, brier, ece, reliability_curve, predictive_entropy, max_probability,
    ood_metrics, roc_curve_ood, classification_metrics.

Conventions for MCMC draws: an array shaped [chains, draws, dim] (or [chains, draws] for a
scalar quantity). Per-coordinate results have shape [dim] (shape () for [chains, draws] input).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

__all__ = [
    "mahalanobis_mean_error",
    "marginal_variance_error",
    "wasserstein2_gaussian",
    "kl_gaussian",
    "ess_bulk",
    "ess_geyer",
    "split_rhat",
    "max_split_rhat",
    "ess_rates",
    "RunningMoments",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "reliability_curve",
    "predictive_entropy",
    "max_probability",
    "ood_metrics",
    "roc_curve_ood",
    "classification_metrics",
]

NLL_CLIP = 1e-12  # probabilities are clipped below at this value before taking logs


# --------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _to_numpy(x: Any, dtype=np.float64) -> np.ndarray:
    """numpy array (float64 by default) from a numpy array, torch tensor, list or scalar."""
    if _is_torch(x):
        x = x.detach().cpu()
        if dtype is not None and x.dtype.is_floating_point:
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


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


# --------------------------------------------------------------------------------------------
# Gaussian metrics
# --------------------------------------------------------------------------------------------


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


# MCMC diagnostics (bulk ESS, split R-hat) live in sgmcmc.diagnostics, shared with the
# conformance suite; re-exported here so that every leaderboard number has one home.
from sgmcmc.diagnostics import (  # noqa: E402,F401
    ess_bulk, ess_geyer, max_split_rhat, mixing_diagnostics, split_rhat,
)



def ess_rates(min_ess, wall_seconds, grad_evals) -> dict:
    """Sampling efficiency from the minimum bulk ESS over coordinates:

    ess_per_second = min_ess / wall_seconds; ess_per_1k_grads = 1000 * min_ess / grad_evals
    (grad_evals counts minibatch gradient evaluations, summed over chains). nan where the
    denominator is not positive.
    """
    ess = float(min_ess)
    seconds = float(wall_seconds)
    grads = float(grad_evals)
    return {
        "ess_per_second": ess / seconds if seconds > 0 else float("nan"),
        "ess_per_1k_grads": 1000.0 * ess / grads if grads > 0 else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# multimodal targets: does each chain weigh the modes right?
# --------------------------------------------------------------------------------------------


def mode_mass_errors(in_region, mass) -> tuple[float, float]:
    """How well kept draws weigh a region (one mode's basin) whose exact probability is ``mass``.

    ``in_region``: bool [chains, draws], whether each kept draw lies in the region. Returns
    (pooled, per_chain) with pooled = |mean over all draws - mass| and per_chain = mean over
    chains c of |mean over chain c's draws - mass|. The pooled error can be small by the luck of
    where the chains started (each chain stuck in its first mode, in the right proportion); the
    per-chain error cannot: it is 0 only if every chain visits the region for the right share of
    its time, and mass (1 - mass) * 2 when every chain stays where it started with the right odds.
    """
    x = np.asarray(in_region, dtype=bool)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"in_region must be [chains, draws] with draws >= 1, got shape {x.shape}")
    if not 0.0 <= mass <= 1.0:
        raise ValueError(f"mass={mass!r} is out of range; valid: [0, 1]")
    per_chain = x.mean(axis=1)
    return float(abs(per_chain.mean() - mass)), float(np.mean(np.abs(per_chain - mass)))


def mode_switches(x, low: float, high: float) -> float:
    """Mean over chains of the number of mode changes seen in a coordinate's kept draws, with
    hysteresis: a chain is in the low mode once a draw is <= ``low``, in the high mode once a draw
    is >= ``high``, and keeps its mode while its draws stay in between; a switch is a change of
    mode. A draw in a mode's tail that strays past the boundary between them, but not into the
    other mode's core, is not a switch (with one boundary at 0, iid draws from one mode of the
    mixture task alone would count ~1 crossing per 740 draws). ``x``: [chains, draws]."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"x must be [chains, draws], got shape {x.shape}")
    if not low < high:
        raise ValueError(f"low={low!r} must be below high={high!r}")
    state = np.where(x <= low, -1, np.where(x >= high, 1, 0))  # 0: between the cores
    counts = []
    for row in state:
        seen = row[row != 0]
        counts.append(int(np.sum(seen[1:] != seen[:-1])) if seen.size > 1 else 0)
    return float(np.mean(counts)) if counts else 0.0


# --------------------------------------------------------------------------------------------
# streaming moments
# --------------------------------------------------------------------------------------------


class RunningMoments:
    """Pooled mean and covariance of a stream of samples, each update a batch over chains.

    ``update(x)`` takes x [chains, d] (or [d], one chain), numpy or torch. Sums are kept in
    float64 on the first input's backend (numpy on CPU, or torch on the tensor's device), shifted
    by the first batch's mean K for accuracy over ~1e5 updates:

        n = number of samples (chains x steps), s1 = sum (x - K), s2 = sum (x - K)(x - K)^T,
        mean = K + s1 / n, cov = (s2 - s1 s1^T / n) / (n - 1) (unbiased), var = diag(cov).

    ``full_cov=False`` keeps only the diagonal (sum of squares), for large d; ``cov`` then raises.
    Properties return numpy float64 arrays (nan before two samples for cov/var).
    """

    def __init__(self, full_cov: bool = True):
        self.full_cov = bool(full_cov)
        self._n = 0
        self._torch = False
        self._shift = None
        self._s1 = None
        self._s2 = None

    def update(self, x) -> None:
        if self._n == 0:
            self._torch = _is_torch(x)
        if self._torch:
            import torch

            if not _is_torch(x):
                x = torch.as_tensor(np.asarray(x))
            device = self._shift.device if self._shift is not None else x.device
            x = x.detach().to(device=device, dtype=torch.float64)
        else:
            x = _to_numpy(x)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"RunningMoments.update expects [chains, d], got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return
        if self._shift is None:
            self._shift = x.mean(0)
            self._s1 = self._shift * 0.0
            d = x.shape[1]
            if self.full_cov:
                self._s2 = (
                    x.new_zeros((d, d)) if self._torch else np.zeros((d, d), dtype=np.float64)
                )
            else:
                self._s2 = self._shift * 0.0
        elif x.shape[1] != self._shift.shape[0]:
            raise ValueError(f"dimension changed: {x.shape[1]} vs {self._shift.shape[0]}")
        xc = x - self._shift
        self._s1 = self._s1 + xc.sum(0)
        if self.full_cov:
            self._s2 = self._s2 + xc.T @ xc
        else:
            self._s2 = self._s2 + (xc * xc).sum(0)
        self._n += int(x.shape[0])

    def _np(self, t) -> np.ndarray:
        if self._torch:
            return t.detach().cpu().numpy().astype(np.float64)
        return np.asarray(t, dtype=np.float64)

    @property
    def count(self) -> int:
        return self._n

    @property
    def mean(self) -> np.ndarray:
        if self._n == 0:
            raise ValueError("RunningMoments has no samples yet")
        return self._np(self._shift) + self._np(self._s1) / self._n

    @property
    def cov(self) -> np.ndarray:
        if not self.full_cov:
            raise ValueError("RunningMoments(full_cov=False) keeps only the variances")
        if self._n == 0:
            raise ValueError("RunningMoments has no samples yet")
        s1 = self._np(self._s1)
        if self._n < 2:
            return np.full((s1.shape[0], s1.shape[0]), np.nan)
        c = (self._np(self._s2) - np.outer(s1, s1) / self._n) / (self._n - 1)
        return 0.5 * (c + c.T)

    @property
    def var(self) -> np.ndarray:
        if self._n == 0:
            raise ValueError("RunningMoments has no samples yet")
        s1 = self._np(self._s1)
        if self._n < 2:
            return np.full(s1.shape[0], np.nan)
        s2 = self._np(self._s2)
        sq = np.diag(s2) if self.full_cov else s2
        return np.clip((sq - s1 * s1 / self._n) / (self._n - 1), 0.0, None)


# --------------------------------------------------------------------------------------------
# classification and out-of-distribution metrics
# --------------------------------------------------------------------------------------------


def _probs(probs) -> np.ndarray:
    """[n, K] rows of class probabilities: finite, >= 0 and summing to 1 (within float32 softmax
    rounding), else a ValueError saying which (logits or unnormalised scores give impossible
    ECE, Brier and entropies, not an error, if let through)."""
    p = _to_numpy(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be [n, K], got shape {p.shape}")
    if p.size:
        if not np.isfinite(p).all():
            raise ValueError(f"probs hold {int((~np.isfinite(p)).any(axis=1).sum())} row(s) with NaN or Inf")
        if p.min() < -1e-6:
            raise ValueError(f"probs must be >= 0, got a minimum of {p.min():.3g} (logits? apply softmax first)")
        worst = float(np.abs(p.sum(axis=1) - 1.0).max())
        if worst > 1e-3:
            raise ValueError(f"each row of probs must sum to 1, one is off by {worst:.3g} (logits? apply softmax first)")
    return p


def _probs_labels(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    p = _probs(probs)
    y = _to_numpy(labels, dtype=None)
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"labels must be [n] with n = {p.shape[0]}, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(y == np.round(y)):
            raise ValueError("labels must be integers")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]})")
    return p, y


def accuracy(probs, labels) -> float:
    """Fraction of samples whose most probable class (argmax, first on ties) is the label."""
    p, y = _probs_labels(probs, labels)
    return float(np.mean(np.argmax(p, axis=1) == y))


def nll(probs, labels) -> float:
    """Mean negative log-likelihood: mean_i -log max(p_i[y_i], 1e-12) (natural log)."""
    p, y = _probs_labels(probs, labels)
    py = p[np.arange(p.shape[0]), y]
    return float(np.mean(-np.log(np.clip(py, NLL_CLIP, None))))


def brier(probs, labels) -> float:
    """Brier score: mean_i sum_k (p_ik - 1[y_i = k])^2 (0 is perfect, 2 is the worst)."""
    p, y = _probs_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1]: bin b is (b / B, (b + 1) / B], bin 0 also holds 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def reliability_curve(probs, labels, n_bins: int = 15) -> dict:
    """Per-bin calibration on the top probability, for reliability diagrams.

    Bins as in ``ece``. Returns arrays of length n_bins: ``bin_lower``, ``bin_upper`` (edges),
    ``confidence`` (mean top probability in the bin), ``accuracy`` (fraction correct in the
    bin), ``count`` (samples in the bin); confidence and accuracy are nan for empty bins.
    """
    if int(n_bins) < 1:
        raise ValueError("n_bins must be >= 1")
    n_bins = int(n_bins)
    p, y = _probs_labels(probs, labels)
    conf = np.max(p, axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    idx = _bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_correct = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.where(count > 0, sum_conf / count, np.nan)
        mean_acc = np.where(count > 0, sum_correct / count, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "confidence": mean_conf,
        "accuracy": mean_acc,
        "count": count,
    }


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error on the top probability with ``n_bins`` equal-width bins:

        ECE = sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|,

    B_b the samples whose top probability lies in (b / n_bins, (b + 1) / n_bins] (the first bin
    also holds 0), acc the fraction whose argmax is the label, conf the mean top probability.
    """
    curve = reliability_curve(probs, labels, n_bins)
    count = curve["count"]
    total = count.sum()
    if total == 0:
        return float("nan")
    nonempty = count > 0
    gap = np.abs(curve["accuracy"][nonempty] - curve["confidence"][nonempty])
    return float(np.sum(count[nonempty] / total * gap))


def predictive_entropy(probs) -> np.ndarray:
    """Entropy of each predictive distribution, H_i = -sum_k p_ik log p_ik (natural log,
    0 log 0 = 0): [n]. log K for the uniform distribution over K classes."""
    p = _probs(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -np.sum(terms, axis=1)


def max_probability(probs) -> np.ndarray:
    """Top predictive probability of each sample, max_k p_ik: [n]."""
    return np.max(_probs(probs), axis=1)


def _ood_scores(probs_in, probs_out, score: str) -> tuple[np.ndarray, np.ndarray]:
    p_in, p_out = _probs(probs_in), _probs(probs_out)
    if p_in.shape[1] != p_out.shape[1]:
        raise ValueError(f"class counts differ: {p_in.shape[1]} vs {p_out.shape[1]}")
    if p_in.shape[0] == 0 or p_out.shape[0] == 0:
        raise ValueError("probs_in and probs_out must both be non-empty")
    if score == "entropy":
        s_in, s_out = predictive_entropy(p_in), predictive_entropy(p_out)
    else:
        s_in, s_out = -max_probability(p_in), -max_probability(p_out)
    y = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    return y, np.concatenate([s_in, s_out])


def ood_metrics(probs_in, probs_out) -> dict:
    """Out-of-distribution detection from the predictive, OOD the positive class (label 1):

    - ``auroc_entropy``: area under the ROC curve with score = predictive entropy
      (= P(H_out > H_in) + 0.5 P(H_out = H_in), sklearn roc_auc_score);
    - ``aupr_entropy``: average precision with the same score (sklearn average_precision_score;
      its chance level is the OOD fraction n_out / (n_in + n_out));
    - ``auroc_maxprob``: AUROC with score = -max probability (higher means more OOD);
    - ``entropy_in``, ``entropy_out``: mean predictive entropy on each set.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s_entropy = _ood_scores(probs_in, probs_out, "entropy")
    _, s_maxprob = _ood_scores(probs_in, probs_out, "maxprob")
    n_in = int(np.sum(y == 0))
    return {
        "auroc_entropy": float(roc_auc_score(y, s_entropy)),
        "aupr_entropy": float(average_precision_score(y, s_entropy)),
        "auroc_maxprob": float(roc_auc_score(y, s_maxprob)),
        "entropy_in": float(np.mean(s_entropy[:n_in])),
        "entropy_out": float(np.mean(s_entropy[n_in:])),
    }


def roc_curve_ood(probs_in, probs_out) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr) of OOD detection by predictive entropy (OOD positive), for plots."""
    from sklearn.metrics import roc_curve

    y, s = _ood_scores(probs_in, probs_out, "entropy")
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr


def classification_metrics(probs, labels, n_bins: int = 15) -> dict:
    """{accuracy, nll, ece, brier} of a predictive in one call (definitions above)."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels, n_bins),
        "brier": brier(probs, labels),
    }
