"""MCMC diagnostics: bulk effective sample size and rank-normalised split R-hat.

One implementation, used by the conformance suite (``sgmcmc.testing``) and by the benchmark
suite's metrics alike. Inputs are numpy arrays or torch tensors shaped [chains, draws, dim] (or
[chains, draws] for a scalar quantity); every computation runs in float64 with numpy and scipy.
Per-coordinate results have shape [dim] (shape () for [chains, draws] input).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import special
from scipy.fft import next_fast_len

__all__ = ["ess_bulk", "ess_geyer", "mixing_diagnostics", "split_rhat", "max_split_rhat"]


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


# --------------------------------------------------------------------------------------------
# MCMC diagnostics: bulk ESS and rank-normalised split R-hat
# --------------------------------------------------------------------------------------------

_MIN_DRAWS = 4  # as arviz: fewer draws per chain give nan


def _as_draws(draws: Any) -> tuple[np.ndarray, bool]:
    """[chains, draws(, dim)] -> float64 [chains, draws, dim]; flag: dim was absent."""
    x = _to_numpy(draws)
    if x.ndim == 2:
        return x[:, :, None], True
    if x.ndim != 3:
        raise ValueError(f"draws must be shaped [chains, draws, dim] or [chains, draws], got {x.shape}")
    return x, False


def _split_chains(x: np.ndarray) -> np.ndarray:
    """[C, N, D] -> contiguous [D, 2C, N // 2]: the first and the last half of each chain (the
    middle draw is dropped when N is odd), coordinates first."""
    chains, n_draws, d = x.shape
    half = n_draws // 2
    out = np.empty((d, 2 * chains, half), dtype=np.float64)
    out[:, :chains] = np.moveaxis(x[:, :half], 2, 0)
    out[:, chains:] = np.moveaxis(x[:, n_draws - half :], 2, 0)
    return out


def _sort_rows(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, sorted values) along the last axis of [D, S]."""
    order = np.argsort(flat, axis=1)
    return order, np.take_along_axis(flat, order, axis=1)


def _z_from_sorted(order: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Rank normalisation of the rows of [D, S], given their sort (``_sort_rows``):
    z = Phi^-1((r - 3/8) / (S + 1/4)), r the average rank (ties share their mean rank).

    Average ranks are integers or half-integers, so every z comes from one grid of 2 S - 1
    normal quantiles: the sorted row gets the integer-rank grid, then each group of L tied
    values starting at sorted position p (0-based) gets the mean rank p + (L + 1) / 2."""
    d, size = ordered.shape
    half_grid = special.ndtri((1.0 + 0.5 * np.arange(2 * size - 1) - 0.375) / (size + 0.25))
    z = np.empty((d, size), dtype=np.float64)
    np.put_along_axis(z, order, half_grid[None, ::2], axis=1)
    rows, cols = np.nonzero(ordered[:, 1:] == ordered[:, :-1])  # element cols + 1 equals cols
    if rows.size:
        pair = rows * size + cols  # flat index of each tie's left element, ascending
        run_first = np.flatnonzero(np.diff(pair, prepend=-2) != 1)  # rows never chain: gap >= 2
        run_last = np.append(run_first[1:] - 1, pair.size - 1)
        start = pair[run_first]
        length = pair[run_last] - start + 2
        value = half_grid[2 * (start % size) + length - 1]
        offsets = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        sorted_flat = np.repeat(start, length) + offsets
        row_of = sorted_flat // size
        z.ravel()[row_of * size + order.ravel()[sorted_flat]] = np.repeat(value, length)
    return z


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank normalisation per coordinate of [D, M, n] over all M n chains x draws (Vehtari et
    al. 2021, eq. 14): z = Phi^-1((r - 3/8) / (M n + 1/4)), r the average rank."""
    flat = x.reshape(x.shape[0], -1)
    return _z_from_sorted(*_sort_rows(flat)).reshape(x.shape)


def _autocov_mean(x: np.ndarray) -> np.ndarray:
    """[D, M, n] -> [D, n]: autocovariance at every lag (biased, divided by n), averaged over chains.
    FFT with zero padding to next_fast_len(2 n); computed in coordinate chunks to bound memory."""
    d, chains, n = x.shape
    fft_len = next_fast_len(2 * n, real=True)
    out = np.empty((d, n), dtype=np.float64)
    step = max(1, int(4_000_000 // max(1, chains * fft_len)))
    for start in range(0, d, step):
        block = x[start : start + step]
        block = block - block.mean(axis=2, keepdims=True)
        f = sp_fft.rfft(block, n=fft_len, axis=2)
        power = f.real**2
        power += f.imag**2
        acov = sp_fft.irfft(power, n=fft_len, axis=2)[:, :, :n]
        out[start : start + step] = acov.mean(axis=1) / n
    return out


def _ess_geyer_z(z: np.ndarray) -> np.ndarray:
    """ESS per coordinate of [D, M, n] (already split and normalised), Geyer's initial monotone
    sequence exactly as Stan / arviz compute it (arviz.stats.diagnostics._ess), vectorised."""
    d, chains, n = z.shape
    size = chains * n
    mean_acov = _autocov_mean(z)  # [D, n]
    mean_var = mean_acov[:, 0] * n / (n - 1.0)  # W: mean within-chain variance (ddof 1)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(z.mean(axis=2), axis=1, ddof=1)  # + B / n
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]  # [D, n]
    rho[:, 0] = 1.0
    # pairs Gamma_k = rho_2k + rho_2k+1, k = 0..k_max (as in arviz's loop bound t < n - 3)
    k_max = max((n - 3) // 2, 0)
    pairs = rho[:, : 2 * k_max + 2].reshape(d, k_max + 1, 2).sum(axis=2)  # [D, k_max + 1]
    # truncation: the first pair that is not positive (initial positive sequence), or k_max
    nonpos = ~(pairs > 0)
    first = np.where(nonpos.any(axis=1), np.argmax(nonpos, axis=1), k_max + 1)
    k_last = np.minimum(first, k_max)
    # initial monotone sequence over the kept pairs 0..k_last-1: running minimum
    mono = np.minimum.accumulate(pairs, axis=1)
    keep = np.arange(k_max + 1)[None, :] < k_last[:, None]
    sum_pairs = np.where(keep, mono, 0.0).sum(axis=1)
    rows = np.arange(d)
    even_last = rho[rows, 2 * k_last]
    pair_last = pairs[rows, k_last]
    tail = np.where((pair_last >= 0) | (even_last > 0), even_last, 0.0)
    tau = -1.0 + 2.0 * sum_pairs + tail
    tau = np.maximum(tau, 1.0 / np.log10(size))
    ess = size / tau
    ess[np.isnan(rho).any(axis=1)] = np.nan
    constant = (z.max(axis=(1, 2)) - z.min(axis=(1, 2))) < np.finfo(np.float64).resolution
    ess[constant] = float(size)
    return ess


def _finish(values: np.ndarray, scalar: bool) -> np.ndarray:
    return np.asarray(values[0]) if scalar else values


def ess_geyer(draws) -> np.ndarray:
    """Bulk effective sample size per coordinate (Vehtari, Gelman, Simpson, Carpenter & Buerkner
    2021), vectorised over coordinates; the same number as ``ess_bulk`` (arviz), faster.

    draws: [chains, draws, dim] (or [chains, draws]) -> ESS [dim] (or shape ()).

    1. Split each chain into its first and last halves: M = 2 * chains chains of n = draws // 2.
    2. Rank-normalise each coordinate over all M n values: z = Phi^-1((r - 3/8) / (M n + 1/4)).
    3. Autocovariances gamma_m(t) per chain by FFT; W = mean_m gamma_m(0) n / (n - 1),
       var+ = W (n - 1) / n + var_m(mean of chain m) (ddof 1),
       rho(t) = 1 - (W - mean_m gamma_m(t)) / var+, rho(0) = 1.
    4. Geyer's initial monotone sequence on pairs P_k = rho(2k) + rho(2k+1): keep P_0..P_{K-1},
       K the first k with P_k <= 0 (or the last k with 2k < n - 2), replace each P_k by
       min(P_0..P_k); tau = -1 + 2 sum_{k<K} P_k + rho(2K) (the last term only if positive or
       P_K >= 0), tau >= 1 / log10(M n).
    5. ESS = M n / tau. nan if any draw is nan or draws < 4; M n if the coordinate is constant.
    """
    x, scalar = _as_draws(draws)
    out = np.full(x.shape[2], np.nan)
    if x.shape[1] < _MIN_DRAWS or x.shape[0] < 1:
        return _finish(out, scalar)
    ok = ~np.isnan(x).any(axis=(0, 1))
    if np.any(ok):
        out[ok] = _ess_geyer_z(_z_scale(_split_chains(x[:, :, ok] if not ok.all() else x)))
    return _finish(out, scalar)


def ess_bulk(draws) -> np.ndarray:
    """Bulk effective sample size per coordinate, computed by arviz (the reference
    implementation): ``arviz.ess(dataset, method="bulk")`` (Vehtari et al. 2021; the formula is
    spelled out in ``ess_geyer``, which gives the same numbers vectorised and faster).

    draws: [chains, draws, dim] (or [chains, draws]) -> ESS [dim] (or shape ()).
    """
    x = _to_numpy(draws)
    if x.ndim not in (2, 3):
        raise ValueError(f"draws must be shaped [chains, draws, dim] or [chains, draws], got {x.shape}")
    az = _arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if x.ndim == 2:
            return np.asarray(az.ess(x, method="bulk"), dtype=np.float64)
        dataset = az.convert_to_dataset(x)  # dims (chain, draw, x_dim_0)
        return np.asarray(az.ess(dataset, method="bulk")["x"].values, dtype=np.float64)


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz 0.23 announces its refactor on import
        import arviz

    return arviz


def _rhat_z(z: np.ndarray) -> np.ndarray:
    """Classic R-hat of [D, M, n]: sqrt(((n - 1) / n W + B / n) / W), W the mean within-chain
    variance (ddof 1), B / n the variance of the chain means (ddof 1)."""
    n = z.shape[2]
    within = np.var(z, axis=2, ddof=1).mean(axis=1)
    between = n * np.var(z.mean(axis=2), axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1.0) / n)


def _split_rhat_sorted(split: np.ndarray, order: np.ndarray, ordered: np.ndarray, bulk_z: np.ndarray | None = None) -> np.ndarray:
    """Split R-hat of [D, M, n] given the sort of its rows (and, optionally, their bulk z)."""
    size = ordered.shape[1]
    if bulk_z is None:
        bulk_z = _z_from_sorted(order, ordered).reshape(split.shape)
    bulk = _rhat_z(bulk_z)
    # folded draws |x - median|: in x's sorted order they fall then rise (two sorted runs),
    # which a stable sort (timsort) merges in linear time
    median = 0.5 * (ordered[:, (size - 1) // 2] + ordered[:, size // 2])
    folded = np.abs(ordered - median[:, None])
    merge = np.argsort(folded, axis=1, kind="stable")
    order_folded = np.take_along_axis(order, merge, axis=1)
    folded_sorted = np.take_along_axis(folded, merge, axis=1)
    tail = _rhat_z(_z_from_sorted(order_folded, folded_sorted).reshape(split.shape))
    # as arviz's max(): a nan tail term (every folded draw equal: chains stuck at points spaced
    # evenly around the median) must not hide an infinite bulk term; nan only if both are
    return np.fmax(bulk, tail)


def mixing_diagnostics(draws) -> tuple[np.ndarray, np.ndarray]:
    """``(ess_geyer(draws), split_rhat(draws))``, the same numbers, computed from one split, one
    sort and one rank normalisation of the draws instead of three (the sort dominates the cost)."""
    x, _ = _as_draws(draws)
    chains, n_draws, _d = x.shape
    if chains < 2 or n_draws < _MIN_DRAWS or np.isnan(x).any():
        return ess_geyer(draws), split_rhat(draws)
    split = _split_chains(x)
    order, ordered = _sort_rows(split.reshape(split.shape[0], -1))
    z = _z_from_sorted(order, ordered).reshape(split.shape)
    ess, rhat = _ess_geyer_z(z), _split_rhat_sorted(split, order, ordered, bulk_z=z)
    if np.ndim(draws) == 2:
        return np.asarray(ess[0]), np.asarray(rhat[0])
    return ess, rhat


def split_rhat(draws) -> np.ndarray:
    """Rank-normalised split R-hat per coordinate (Vehtari et al. 2021), as arviz
    ``rhat(method="rank")`` computes it, vectorised over coordinates.

    draws: [chains, draws, dim] (or [chains, draws]) -> R-hat [dim] (or shape ()).

    Split each chain in halves (M = 2 * chains chains of n = draws // 2), then
    R-hat = max(R(z(x)), R(z(|x - median(x)|))) with z the rank normalisation of ``ess_geyer``
    and R(y) = sqrt(((n - 1) / n W + B / n) / W), W = mean of the within-chain variances, B / n =
    variance of the chain means (both ddof 1). The second (folded) term catches chains that agree
    in location but not in scale. ~1 when mixed; > 1.01 (strict) or > 1.1 (lax) flags trouble.
    nan for fewer than 2 chains or 4 draws (as arviz), for nan draws, or a constant coordinate;
    inf (or ~1e16, as arviz) for chains that each stay at a different point.
    """
    x, scalar = _as_draws(draws)
    chains, n_draws, d = x.shape
    out = np.full(d, np.nan)
    if chains < 2 or n_draws < _MIN_DRAWS:
        return _finish(out, scalar)
    ok = ~np.isnan(x).any(axis=(0, 1))
    if np.any(ok):
        split = _split_chains(x[:, :, ok] if not ok.all() else x)
        flat = split.reshape(split.shape[0], -1)
        out[ok] = _split_rhat_sorted(split, *_sort_rows(flat))
    return _finish(out, scalar)


def max_split_rhat(draws) -> float:
    """max over coordinates of ``split_rhat(draws)`` (nan if any coordinate is nan)."""
    return float(np.max(split_rhat(draws)))
