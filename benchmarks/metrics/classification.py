"""Classification and out-of-distribution metrics of a predictive distribution.

``probs``: [n, K] predictive probabilities whose rows sum to 1; ``labels``: integers [n]. Inputs
are numpy arrays, torch tensors or array-likes, computed in float64:

    accuracy, nll, brier, ece, reliability_curve, predictive_entropy, max_probability,
    ood_metrics, roc_curve_ood, classification_metrics.
"""

from __future__ import annotations

import numpy as np

from ._arrays import _to_numpy

__all__ = [
    "NLL_CLIP", "accuracy", "nll", "brier", "ece", "reliability_curve", "predictive_entropy", "max_probability",
    "ood_metrics", "roc_curve_ood", "classification_metrics",
]

NLL_CLIP = 1e-12  # probabilities are clipped below at this value before taking logs


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
