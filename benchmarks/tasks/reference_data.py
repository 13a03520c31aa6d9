"""The reference-posterior problems: data, features, prior and likelihood, defined once.

The reference track scores samplers against a long full-batch HMC run on the same posterior.
Both sides must see exactly the same problem, so the task (``benchmarks/tasks/reference.py``) and
the script that computes the reference (``scripts/make_reference.py``) build it here.

``mnist-logreg``: Bayesian multinomial logistic regression on MNIST.
    - Data: the first ``n_train`` = 10,000 images of MNIST's 50,000-image training split; the
      validation split's first 10,000 images for step-size selection; the 10,000 test images
      as the evaluation set.
    - Features: pixels / 255, centred by the training mean, projected on the first
      ``components`` = 30 principal components fitted on the training images (SVD), each scaled
      to unit variance on the training images (whitened), so one isotropic prior fits every
      coordinate. 30 components keep ~73 % of the pixel variance and give a linear classifier
      ~88 % test accuracy; a full-batch gradient costs ~1 ms, which puts a converged 4-chain NUTS
      reference inside 20 minutes on 2 cores.
    - Model: logits = z W + b, W [30, 10], b [10] (310 parameters, flattened W row-major then b),
      p(y | z) = softmax(logits)_y.
    - Prior: N(0, 1) on every parameter. With whitened inputs a unit change of a weight moves a
      logit by one standard deviation of its feature: sd 1 allows any plausible classifier while
      pinning the softmax's shift direction (adding a constant to every class's weights changes
      no prediction, so only the prior bounds it). It is also the MNIST tasks' prior.
    - U(theta) = -sum_i log p(y_i | z_i, theta) + |theta|^2 / 2 (up to a constant).

``digits-mlp``: a small Bayesian neural network on scikit-learn's ``load_digits`` (1,797 real
8 x 8 handwritten digits, shipped with scikit-learn, so no download).
    - Split (a fixed permutation, seed 0): 1,000 training, 297 validation, 500 test images.
    - Inputs: pixels / 16 (the data's range is 0..16), centred by the training mean.
    - Model: 64 -> 16 tanh -> 10 (1,210 parameters: W1 [64, 16], b1 [16], W2 [16, 10], b2 [10],
      flattened in that order, each row-major).
    - Prior: N(0, 1) on every parameter. The posterior is multimodal (hidden-unit permutations
      and sign flips, and genuinely different functions), so it is compared in function space
      only, as Izmailov et al. (2021) do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PRIOR_SD = 1.0
LOGREG_TRAIN = 10_000
LOGREG_VALID = 10_000
LOGREG_COMPONENTS = 30
NUM_CLASSES = 10
DIGITS_HIDDEN = 16
DIGITS_SPLIT = (1000, 297, 500)


@dataclass
class Problem:
    """Float32 features and int64 labels for the three splits of a reference problem."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    #: dataset provenance for the record (name -> sha256 or origin)
    datasets: dict

    @property
    def num_params(self) -> int:
        return num_params(self.name, self.x_train.shape[1])


def num_params(name: str, num_features: int) -> int:
    if name == "mnist-logreg":
        return (num_features + 1) * NUM_CLASSES
    if name == "digits-mlp":
        return num_features * DIGITS_HIDDEN + DIGITS_HIDDEN + DIGITS_HIDDEN * NUM_CLASSES + NUM_CLASSES
    raise ValueError(f"unknown reference problem {name!r}; valid: mnist-logreg, digits-mlp")


def _pca_whiten(train: np.ndarray, others: list[np.ndarray], components: int) -> list[np.ndarray]:
    """Project on the first ``components`` principal axes of ``train`` and scale to unit variance.
    Each axis's sign is fixed (its largest-magnitude loading positive), so the features do not
    depend on the LAPACK build's sign choice."""
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    axes = vt[:components]
    flip = np.sign(axes[np.arange(components), np.abs(axes).argmax(axis=1)])
    axes = axes * flip[:, None]
    z_train = (train - mean) @ axes.T
    scale = z_train.std(axis=0)
    return [((x - mean) @ axes.T / scale).astype(np.float32) for x in [train, *others]]


def logreg_problem(data_dir: str | None = None, offline: bool | None = None) -> Problem:
    """The ``mnist-logreg`` problem (see the module docstring); MNIST through the suite's loader."""
    from ..data import load_mnist

    def split(name: str, n: int | None):
        ds = load_mnist(name, data_dir=data_dir, offline=offline)
        images = ds.images if n is None else ds.images[:n]
        labels = ds.labels if n is None else ds.labels[:n]
        x = images.reshape(images.shape[0], -1).numpy().astype(np.float64) / 255.0
        return x, labels.numpy().astype(np.int64), ds.provenance.sha256

    x_tr, y_tr, sha_tr = split("train", LOGREG_TRAIN)
    x_va, y_va, sha_va = split("validation", LOGREG_VALID)
    x_te, y_te, sha_te = split("test", None)
    z_tr, z_va, z_te = _pca_whiten(x_tr, [x_va, x_te], LOGREG_COMPONENTS)
    return Problem("mnist-logreg", z_tr, y_tr, z_va, y_va, z_te, y_te,
                   {"mnist/train": sha_tr, "mnist/validation": sha_va, "mnist/test": sha_te})


def digits_problem() -> Problem:
    """The ``digits-mlp`` problem (see the module docstring), from scikit-learn's ``load_digits``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    n_tr, n_va, n_te = DIGITS_SPLIT
    tr, va, te = order[:n_tr], order[n_tr : n_tr + n_va], order[n_tr + n_va : n_tr + n_va + n_te]
    mean = x[tr].mean(axis=0)
    f = lambda idx: (x[idx] - mean).astype(np.float32)  # noqa: E731
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(digits.data).tobytes() + y.tobytes()).hexdigest()
    return Problem("digits-mlp", f(tr), y[tr], f(va), y[va], f(te), y[te], {"sklearn/load_digits": digest})


def load_problem(name: str, data_dir: str | None = None, offline: bool | None = None) -> Problem:
    if name == "mnist-logreg":
        return logreg_problem(data_dir, offline)
    if name == "digits-mlp":
        return digits_problem()
    raise ValueError(f"unknown reference problem {name!r}; valid: mnist-logreg, digits-mlp")


# ------------------------------------------------------------------ the model, in torch


def unflatten(name: str, theta: torch.Tensor, num_features: int) -> list[torch.Tensor]:
    """The flat parameter vector (or a batch [..., P] of them) as the model's tensors."""
    if name == "mnist-logreg":
        shapes = [(num_features, NUM_CLASSES), (NUM_CLASSES,)]
    else:
        shapes = [(num_features, DIGITS_HIDDEN), (DIGITS_HIDDEN,), (DIGITS_HIDDEN, NUM_CLASSES), (NUM_CLASSES,)]
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(theta[..., start : start + size].reshape(*theta.shape[:-1], *shape))
        start += size
    return out


def logits(name: str, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits [n, 10] of one parameter setting (the model's tensors, as ``unflatten`` gives)."""
    if name == "mnist-logreg":
        w, b = params
        return x @ w + b
    w1, b1, w2, b2 = params
    return torch.tanh(x @ w1 + b1) @ w2 + b2


def potential(name: str, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """U(theta) = -sum_i log p(y_i | x_i, theta) + |theta|^2 / (2 PRIOR_SD^2), full batch."""
    params = unflatten(name, theta, x.shape[1])
    nll = torch.nn.functional.cross_entropy(logits(name, params, x), y, reduction="sum")
    return nll + 0.5 * (theta * theta).sum() / PRIOR_SD**2
