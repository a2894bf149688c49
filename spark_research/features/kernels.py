"""Window-local numba kernels the shipped features are built from (user features may use them too).

Every output value at bar *t* is computed from scratch out of ``x[t - w + 1 .. t]`` in a fixed
order, never from a running sum: the value is then a function of its window alone, bit for
bit, whatever came before. That is what makes an incremental update of the store and the
live one-bar path give *identical* numbers to a full recompute (a pandas ``rolling().mean()``
carries a running sum, so its last bits depend on where the series started). The cost is
O(n * w) instead of O(n), cheap for the windows features use. A window with a NaN gives NaN.

Example::

    >>> import numpy as np
    >>> window_mean(np.arange(5.0), 2)
    array([nan, 0.5, 1.5, 2.5, 3.5])
"""
from __future__ import annotations

import numpy as np
from numba import njit


#: Outputs computed together: the inner loop runs over consecutive bars (SIMD-friendly, no
#: dependency chain) while each bar's own sum still adds its window in the same fixed order.
_BLOCK = 256


@njit(cache=True, nogil=True)
def _window_sums(x: np.ndarray, w: int, out: np.ndarray) -> None:
    """``out[t] = x[t-w+1] + ... + x[t]`` added left to right, for t >= w - 1."""
    n = len(x)
    acc = np.empty(_BLOCK)
    for t0 in range(w - 1, n, _BLOCK):
        m = min(_BLOCK, n - t0)
        a = acc[:m]
        a[:] = 0.0
        for k in range(w):
            xs = x[t0 - w + 1 + k: t0 - w + 1 + k + m]  # contiguous views: the j loop vectorises
            for j in range(m):
                a[j] += xs[j]
        out[t0:t0 + m] = a


@njit(cache=True, nogil=True)
def _window_sq_dev(x: np.ndarray, w: int, mean: np.ndarray, out: np.ndarray) -> None:
    """``out[t] = sum((x[t-w+1+k] - mean[t])**2)`` over k, left to right, for t >= w - 1."""
    n = len(x)
    acc = np.empty(_BLOCK)
    for t0 in range(w - 1, n, _BLOCK):
        m = min(_BLOCK, n - t0)
        a = acc[:m]
        a[:] = 0.0
        ms = mean[t0:t0 + m]
        for k in range(w):
            xs = x[t0 - w + 1 + k: t0 - w + 1 + k + m]
            for j in range(m):
                d = xs[j] - ms[j]
                a[j] += d * d
        out[t0:t0 + m] = a


@njit(cache=True, nogil=True)
def window_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of each trailing window of ``w`` values (NaN for the first ``w - 1``)."""
    out = np.full(len(x), np.nan)
    _window_sums(x, w, out)
    out[w - 1:] /= w
    return out


@njit(cache=True, nogil=True)
def window_std(x: np.ndarray, w: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of each trailing window of ``w`` values (two passes)."""
    mean = window_mean(x, w)
    out = np.full(len(x), np.nan)
    _window_sq_dev(x, w, mean, out)
    out[w - 1:] = np.sqrt(out[w - 1:] / (w - 1))
    return out


@njit(cache=True, nogil=True)
def window_zscore(x: np.ndarray, w: int) -> np.ndarray:
    """``(x[t] - mean) / std`` over each trailing window of ``w`` values (NaN when std is 0)."""
    n = len(x)
    mean = window_mean(x, w)
    sd = np.full(n, np.nan)
    _window_sq_dev(x, w, mean, sd)
    out = np.full(n, np.nan)
    for t in range(w - 1, n):
        s = np.sqrt(sd[t] / (w - 1))
        if s > 0.0:
            out[t] = (x[t] - mean[t]) / s
    return out


@njit(cache=True, nogil=True)
def window_dot(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum(weights[k] * x[t - k])`` for k = 0 .. len(weights) - 1: a causal fixed-width filter."""
    n, width = len(x), len(weights)
    out = np.full(n, np.nan)
    acc = np.empty(_BLOCK)
    for t0 in range(width - 1, n, _BLOCK):
        m = min(_BLOCK, n - t0)
        a = acc[:m]
        a[:] = 0.0
        for k in range(width):
            wk = weights[k]
            xs = x[t0 - k: t0 - k + m]
            for j in range(m):
                a[j] += wk * xs[j]
        out[t0:t0 + m] = a
    return out


@njit(cache=True, nogil=True)
def window_autocorr(x: np.ndarray, w: int, lag: int) -> np.ndarray:
    """Pearson correlation of ``x[t-w+1..t]`` with ``x[t-w+1-lag..t-lag]`` (NaN if either is flat)."""
    n = len(x)
    out = np.full(n, np.nan)
    if n <= w - 1 + lag:
        return out
    ma = window_mean(x, w)
    mb = np.full(n, np.nan)
    mb[lag:] = ma[:n - lag]  # mean of the lagged window is the mean of the window lag bars ago
    acc_ab = np.empty(_BLOCK)
    acc_aa = np.empty(_BLOCK)
    acc_bb = np.empty(_BLOCK)
    for t0 in range(w - 1 + lag, n, _BLOCK):
        m = min(_BLOCK, n - t0)
        ab, aa, bb = acc_ab[:m], acc_aa[:m], acc_bb[:m]
        ab[:] = 0.0
        aa[:] = 0.0
        bb[:] = 0.0
        mas, mbs = ma[t0:t0 + m], mb[t0:t0 + m]
        for k in range(w):
            xa = x[t0 - w + 1 + k: t0 - w + 1 + k + m]
            xb = x[t0 - w + 1 + k - lag: t0 - w + 1 + k - lag + m]
            for j in range(m):
                a = xa[j] - mas[j]
                b = xb[j] - mbs[j]
                ab[j] += a * b
                aa[j] += a * a
                bb[j] += b * b
        for j in range(m):
            if aa[j] > 0.0 and bb[j] > 0.0:
                out[t0 + j] = ab[j] / np.sqrt(aa[j] * bb[j])
    return out


@njit(cache=True, nogil=True)
def window_beta(y: np.ndarray, x: np.ndarray, w: int) -> np.ndarray:
    """OLS slope of ``y`` on ``x`` over each trailing window of ``w`` pairs: ``cov(x, y) / var(x)``
    (two passes, NaN when ``x`` is flat or the window holds a NaN)."""
    n = len(x)
    out = np.full(n, np.nan)
    mx = window_mean(x, w)
    my = window_mean(y, w)
    acc_xy = np.empty(_BLOCK)
    acc_xx = np.empty(_BLOCK)
    for t0 in range(w - 1, n, _BLOCK):
        m = min(_BLOCK, n - t0)
        xy, xx = acc_xy[:m], acc_xx[:m]
        xy[:] = 0.0
        xx[:] = 0.0
        mxs, mys = mx[t0:t0 + m], my[t0:t0 + m]
        for k in range(w):
            xs = x[t0 - w + 1 + k: t0 - w + 1 + k + m]
            ys = y[t0 - w + 1 + k: t0 - w + 1 + k + m]
            for j in range(m):
                a = xs[j] - mxs[j]
                xy[j] += a * (ys[j] - mys[j])
                xx[j] += a * a
        for j in range(m):
            if xx[j] > 0.0:
                out[t0 + j] = xy[j] / xx[j]
    return out


@njit(cache=True, nogil=True)
def rsi(close: np.ndarray, w: int) -> np.ndarray:
    """Cutler's RSI: 100 * gains / (gains + losses) over the last ``w`` price changes (50 when flat)."""
    n = len(close)
    out = np.full(n, np.nan)
    for t in range(w, n):
        up = 0.0
        down = 0.0
        for k in range(t - w + 1, t + 1):
            d = close[k] - close[k - 1]
            if d > 0.0:
                up += d
            else:
                down -= d
        tot = up + down
        out[t] = 100.0 * up / tot if tot > 0.0 else (50.0 if tot == 0.0 else np.nan)
    return out


@njit(cache=True, nogil=True)
def cross_mean_change(x: np.ndarray, h: int) -> np.ndarray:
    """Per row t of the 2-D ``x`` (bars x symbols): the mean over symbols of ``x[t] - x[t - h]``,
    skipping symbols where either value is NaN (NaN when none has both), added in column order."""
    n, m = x.shape
    out = np.full(n, np.nan)
    for t in range(h, n):
        s = 0.0
        c = 0
        for j in range(m):
            d = x[t, j] - x[t - h, j]
            if d == d and abs(d) != np.inf:
                s += d
                c += 1
        if c > 0:
            out[t] = s / c
    return out


def lag_diff(x: np.ndarray, h: int) -> np.ndarray:
    """``x[t] - x[t - h]`` (NaN for the first ``h``)."""
    out = np.full(len(x), np.nan)
    if h < len(x):
        out[h:] = x[h:] - x[:-h] if h else 0.0
    return out


def ema_weights(span: int, width: int) -> np.ndarray:
    """Weights of an EMA of ``span`` truncated to ``width`` bars and renormalised (newest first)."""
    alpha = 2.0 / (span + 1.0)
    w = (1.0 - alpha) ** np.arange(width, dtype=np.float64)
    return w / w.sum()


def ffd_weights(d: float, threshold: float, max_width: int = 10_000) -> np.ndarray:
    """Fixed-width fractional differencing weights (AFML 5.4.2): ``w_k = -w_{k-1} (d - k + 1) / k``
    until ``|w_k| < threshold`` (newest first).

    Example::

        >>> ffd_weights(1.0, 1e-5)   # d = 1 is the first difference
        array([ 1., -1.])
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    w = [1.0]
    k = 1
    while k < max_width:
        nxt = -w[-1] * (d - k + 1) / k
        if abs(nxt) < threshold:
            break
        w.append(nxt)
        k += 1
    return np.asarray(w, dtype=np.float64)


__all__ = ["cross_mean_change", "ema_weights", "ffd_weights", "lag_diff", "rsi", "window_autocorr", "window_beta", "window_dot",
           "window_mean", "window_std", "window_zscore"]
