"""Kaldi's ``add-deltas`` and ``splice-feats``, vectorised with numpy.

Deltas follow Kaldi's ``DeltaFeatures`` exactly: the order-``k`` filter is the order-``k-1`` filter
convolved with ``[-N..N]`` and divided by ``sum(n^2 for n in -N..N)`` (10 for ``N = 2``), so a
linear ramp of slope ``a`` has delta ``a`` and delta-delta 0 away from the edges. Frames outside the
utterance are copies of the first/last frame (Kaldi clamps the index), which keeps the output length
equal to the input length.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=16)
def delta_filters(order: int, window: int) -> tuple[np.ndarray, ...]:
    """Kaldi's delta filters for orders ``0..order``; filter ``k`` has ``2*k*window + 1`` taps."""
    if order < 0 or window < 1:
        raise ValueError(f"delta order must be >= 0 and window >= 1, got order={order}, window={window}")
    taps = np.arange(-window, window + 1, dtype=np.float64)
    norm = float(np.sum(taps * taps))
    filters = [np.ones(1)]
    for _ in range(order):
        # Kaldi: cur[j + k] += taps[j] * prev[k] (written out so the sign convention is explicit)
        prev = filters[-1]
        cur = np.zeros(len(prev) + 2 * window)
        for j, w in enumerate(taps):
            cur[j : j + len(prev)] += w * prev
        filters.append(cur / norm)
    return tuple(filters)


def _apply_filter(feats: np.ndarray, filt: np.ndarray) -> np.ndarray:
    """``out[t] = sum_i filt[i] * feats[clamp(t + i - half)]`` over all columns at once."""
    half = len(filt) // 2
    if half == 0:
        return feats * filt[0]
    padded = np.pad(feats, ((half, half), (0, 0)), mode="edge")
    n = len(feats)
    out = np.zeros_like(feats)
    for i, w in enumerate(filt):
        if w != 0.0:
            out += w * padded[i : i + n]
    return out


def compute_deltas(feats: np.ndarray, window: int = 2, order: int = 1) -> np.ndarray:
    """Only the order-``order`` deltas of ``feats`` (T × D), same shape and dtype."""
    feats = np.asarray(feats)
    filt = delta_filters(order, window)[order].astype(feats.dtype if feats.dtype.kind == "f" else np.float64)
    if len(feats) == 0:
        return feats.copy()
    return _apply_filter(feats, filt)


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi's ``add-deltas``: ``[x, Δx, ΔΔx, ...]`` along the feature axis (T × D·(order+1))."""
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"add_deltas expects a (frames × dims) matrix, got shape {feats.shape}")
    dtype = feats.dtype if feats.dtype.kind == "f" else np.float64
    feats = feats.astype(dtype, copy=False)
    if len(feats) == 0:
        return np.zeros((0, feats.shape[1] * (order + 1)), dtype)
    filters = delta_filters(order, window)
    half = len(filters[-1]) // 2
    padded = np.pad(feats, ((half, half), (0, 0)), mode="edge")
    n, d = feats.shape
    out = np.empty((n, d * (order + 1)), dtype)
    out[:, :d] = feats
    for k in range(1, order + 1):
        filt = filters[k]
        off = half - len(filt) // 2
        acc = np.zeros((n, d), dtype)
        for i, w in enumerate(filt):
            if w != 0.0:
                acc += dtype.type(w) * padded[off + i : off + i + n]
        out[:, k * d : (k + 1) * d] = acc
    return out


def splice(feats: np.ndarray, left: int, right: int | None = None) -> np.ndarray:
    """Kaldi's ``splice-feats``: frames ``t-left .. t+right`` side by side (edge frames repeated).

    Output column block ``j`` holds frame ``t - left + j``, so with ``left = right = N`` the
    centre frame is block ``N``: T × D·(left+right+1).
    """
    if right is None:
        right = left
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"splice expects a (frames × dims) matrix, got shape {feats.shape}")
    if left < 0 or right < 0:
        raise ValueError(f"splice context must be >= 0, got left={left}, right={right}")
    n, d = feats.shape
    width = left + right + 1
    if n == 0:
        return np.zeros((0, d * width), feats.dtype)
    padded = np.pad(feats, ((left, right), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=0)  # (n, d, width)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)).reshape(n, d * width)
