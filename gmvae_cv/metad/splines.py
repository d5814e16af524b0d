"""Cubic splines along grid lines, as OpenMM's ``SplineFitter`` builds them for its tabulated functions.

The slopes at the nodes of natural (zero second derivative at the ends) or periodic splines with
uniform spacing, for all lines of an array at once, and the node table of values and mixed
derivatives that :class:`gmvae_cv.metad.grid.BiasGrid` interpolates with Hermite patches.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
from scipy.fft import dst, idst
from scipy.linalg.lapack import dgtsv

__all__ = ["HERMITE_BASIS", "hermite_table", "spline_slopes", "natural_slopes", "scatter_add"]

HERMITE_BASIS = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [-3, -2, 3, -1], [2, 1, -2, 1]], dtype=np.float64)
"""The cubic Hermite basis in powers of u (rows 1, u, u^2, u^3); columns h00, h10, h01, h11 (value
at 0, slope at 0, value at 1, slope at 1), i.e. ordered as corner * 2 + derivative."""


def spline_slopes(y: np.ndarray, axis: int, h: float, periodic: bool) -> np.ndarray:
    """First derivatives at the nodes of the cubic spline through ``y`` along ``axis``.

    Natural (zero second derivative at both ends) or periodic (``y`` first == last), uniform
    spacing ``h``: the spline OpenMM's ``SplineFitter`` builds, solved here for all lines at once
    (discrete sine transform for the natural spline, FFT for the periodic one).
    """
    y = np.moveaxis(y, axis, 0)
    n = y.shape[0]
    flat = y.reshape(n, -1)
    if periodic:
        m = n - 1
        yy = flat[:m]
        rhs = 6.0 / (h * h) * (np.roll(yy, -1, axis=0) - 2.0 * yy + np.roll(yy, 1, axis=0))
        eig = 4.0 + 2.0 * np.cos(2.0 * np.pi * np.arange(m // 2 + 1) / m)
        second = np.fft.irfft(np.fft.rfft(rhs, axis=0) / eig[:, None], n=m, axis=0)
        second = np.vstack([second, second[:1]])
    else:
        # interior rows M[i-1] + 4 M[i] + M[i+1] = r[i] with M = 0 at both ends: a symmetric
        # Toeplitz system that the type-I discrete sine transform diagonalises
        rhs = 6.0 / (h * h) * (flat[2:] - 2.0 * flat[1:-1] + flat[:-2])
        second = np.zeros_like(flat)
        if n > 2:
            eig = 4.0 + 2.0 * np.cos(np.pi * np.arange(1, n - 1) / (n - 1))
            second[1:-1] = idst(dst(rhs, type=1, axis=0) / eig[:, None], type=1, axis=0)
    slope = np.empty_like(flat)
    slope[:-1] = (flat[1:] - flat[:-1]) / h - h * (2.0 * second[:-1] + second[1:]) / 6.0
    slope[-1] = (flat[-1] - flat[-2]) / h + h * (second[-2] + 2.0 * second[-1]) / 6.0
    if periodic:
        slope[-1] = slope[0]
    return np.moveaxis(slope.reshape(y.shape), 0, axis)


def scatter_add(target: np.ndarray, source: np.ndarray, pieces: Sequence[Sequence[tuple]]) -> None:
    """``target[nodes] += source[positions]`` for the product over axes of ``(node, position,
    length)`` runs (contiguous slices; the runs of one axis address distinct nodes)."""
    for combo in itertools.product(*pieces):
        target[tuple(slice(t, t + k) for t, _, k in combo)] += source[tuple(slice(q, q + k) for _, q, k in combo)]


def natural_slopes(y: np.ndarray, axis: int, h: float) -> np.ndarray:
    """:func:`spline_slopes` of a natural spline, solved in slope form with LAPACK's tridiagonal
    ``dgtsv`` (``2 k_0 + k_1 = 3 (y_1 - y_0) / h``, ``k_{i-1} + 4 k_i + k_{i+1} = 3 (y_{i+1} -
    y_{i-1}) / h``, ``k_{n-2} + 2 k_{n-1} = 3 (y_{n-1} - y_{n-2}) / h``): no BLAS, so the result does
    not depend on the number of BLAS threads (a run must be reproducible bit for bit)."""
    y = np.moveaxis(y, axis, -1)  # lines along the last axis: the Fortran-ordered right-hand sides of dgtsv
    n = y.shape[-1]
    flat = y.reshape(-1, n)
    rhs = np.empty_like(flat)
    rhs[:, 0] = flat[:, 1] - flat[:, 0]
    rhs[:, 1:-1] = flat[:, 2:] - flat[:, :-2]
    rhs[:, -1] = flat[:, -1] - flat[:, -2]
    rhs *= 3.0 / h
    diag = np.full(n, 4.0)
    diag[0] = diag[-1] = 2.0
    off = np.ones(n - 1)
    *_, slope, info = dgtsv(off, diag, off, rhs.T, overwrite_b=True)
    if info != 0:  # diagonally dominant: cannot happen
        raise FloatingPointError(f"dgtsv failed (info {info})")
    return np.moveaxis(slope.T.reshape(y.shape), -1, axis)


def hermite_table(values: np.ndarray, spacing: Sequence[float], periodic: Sequence[bool]) -> np.ndarray:
    """Node values and (mixed) spline derivatives, shape ``(values.size, 2**D)``; see :meth:`BiasGrid.node_table`."""
    d = values.ndim
    data = {0: np.asarray(values, dtype=np.float64)}
    for channel in range(1, 2**d):
        a = max(b for b in range(d) if (channel >> b) & 1)  # the operators along different axes commute
        data[channel] = spline_slopes(data[channel & ~(1 << a)], a, float(spacing[a]), bool(periodic[a]))
    return np.stack([data[c].reshape(-1) for c in range(2**d)], axis=1)
