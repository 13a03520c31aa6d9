"""MCMC diagnostics and sampling efficiency, and what a multimodal target's draws are scored by.

- ``ess_bulk``, ``ess_geyer``, ``split_rhat``, ``max_split_rhat``, ``mixing_diagnostics``: the
  rank-normalised bulk ESS and split R-hat, defined once in :mod:`sgmcmc.diagnostics` (shared with
  the conformance suite) and re-exported here, so every leaderboard number has one home;
- ``ess_rates``: ESS per second and per 1,000 gradient evaluations;
- ``mode_mass_errors``, ``mode_switches``: does each chain weigh the modes right (the mixture task);
- ``RunningMoments``: a streaming pooled mean and covariance.

Conventions for MCMC draws: an array shaped [chains, draws, dim] (or [chains, draws] for a
scalar quantity). Per-coordinate results have shape [dim] (shape () for [chains, draws] input).
"""

from __future__ import annotations

import numpy as np
from sgmcmc.diagnostics import ess_bulk, ess_geyer, max_split_rhat, mixing_diagnostics, split_rhat

from ._arrays import _is_torch, _to_numpy

__all__ = [
    "ess_bulk", "ess_geyer", "split_rhat", "max_split_rhat", "mixing_diagnostics", "ess_rates",
    "mode_mass_errors", "mode_switches", "RunningMoments",
]


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
