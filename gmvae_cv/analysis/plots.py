"""Plots written next to results (matplotlib, Agg backend, PNG files written atomically)."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from .._core.figures import _pyplot, save_figure

__all__ = [
    "plot_confusion_matrix",
    "plot_fes",
    "plot_implied_timescales",
    "plot_ck_test",
    "save_figure",
]


def plot_confusion_matrix(
    matrix: np.ndarray,
    path: str | os.PathLike,
    *,
    row_labels: Optional[Sequence[str]] = None,
    col_labels: Optional[Sequence[str]] = None,
    title: str = "",
) -> None:
    """Row-normalised confusion matrix with the counts' fractions printed in the cells."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * m.shape[1] + 2, 1.0 * m.shape[0] + 1.5))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{frac[i, j]:.2f}", ha="center", va="center", color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(m.shape[1]), col_labels or [str(j) for j in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), row_labels or [str(i) for i in range(m.shape[0])])
    ax.set_xlabel("GMVAE cluster")
    ax.set_ylabel("true state")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(fig, path)


def plot_fes(fes, path: str | os.PathLike, *, max_energy: Optional[float] = None, title: str = "") -> None:
    """A free-energy surface: curve with its error band (1D) or filled contours (2D).

    Parameters
    ----------
    fes : FreeEnergySurface
    path : path
        PNG file.
    max_energy : float, optional
        Upper limit of the colour scale / y axis (energy units); default ``12 kT``.
    title : str
    """
    plt = _pyplot()
    unit = fes.energy_unit
    top = max_energy if max_energy is not None else 12.0 * fes.kT
    f = np.where(np.isfinite(fes.free_energy), fes.free_energy, np.nan)
    if fes.ndim == 1:
        x = fes.centers[0]
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.plot(x, f, "-", color="C0", label="F")
        err = np.where(np.isfinite(fes.error), fes.error, 0.0)
        ax.fill_between(x, f - err, f + err, color="C0", alpha=0.3, label="block error")
        ax.set_xlabel(fes.variables[0])
        ax.set_ylabel(f"free energy ({unit})")
        ax.set_ylim(-0.05 * top, top)
        ax.legend(fontsize=8)
    elif fes.ndim == 2:
        x, y = fes.centers
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        levels = np.linspace(0.0, top, 13)
        cs = ax.contourf(x, y, np.clip(f, 0, top).T, levels=levels, cmap="viridis")
        ax.contour(x, y, np.clip(f, 0, top).T, levels=levels, colors="k", linewidths=0.3)
        fig.colorbar(cs, ax=ax, label=f"free energy ({unit})")
        ax.set_xlabel(fes.variables[0])
        ax.set_ylabel(fes.variables[1])
    else:
        raise ValueError(f"plot_fes: {fes.ndim}D surfaces are not plotted; use the .dat or JSON output")
    ax.set_title(title or f"{fes.info.get('method', '')} reweighting, {fes.n_frames} frames, n_eff {fes.n_effective:.0f}")
    save_figure(fig, path)


def plot_implied_timescales(res, path: str | os.PathLike, *, n_processes: Optional[int] = None, title: str = "") -> None:
    """Implied timescales against lag time, PyEMMA style.

    Log-scale timescales; maximum-likelihood estimates as lines with markers, Bayesian confidence
    bands shaded; the line timescale = lag time, with the region below it (processes faster than
    the lag, not resolved) shaded grey.

    Parameters
    ----------
    res : MarkovAnalysisResult
    path : path
        PNG file.
    n_processes : int, optional
        Processes drawn (default all).
    """
    plt = _pyplot()
    lag_t = res.lagtimes_time
    its = res.timescales
    k = its.shape[1] if n_processes is None else min(n_processes, its.shape[1])
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for i in range(k):
        color = f"C{i % 10}"
        if np.isfinite(res.timescales_lower[:, i]).any():
            ax.fill_between(lag_t, res.timescales_lower[:, i], res.timescales_upper[:, i], color=color, alpha=0.25, linewidth=0)
        ax.plot(lag_t, its[:, i], "-o", color=color, markersize=4, label=f"process {i + 1}")
    lo = lag_t.min()
    hi = lag_t.max()
    ax.plot([lo, hi], [lo, hi], "k-", linewidth=1)
    ax.fill_between([lo, hi], [lo * 1e-3, hi * 1e-3], [lo, hi], color="0.8", alpha=0.8, linewidth=0)
    finite = its[np.isfinite(its)]
    ymin = min(lo, float(finite.min()) if finite.size else lo) / 2
    ymax = max(hi, float(np.nanmax(res.timescales_upper)) if np.isfinite(res.timescales_upper).any() else hi, float(finite.max()) if finite.size else hi) * 2
    ax.set_yscale("log")
    ax.set_ylim(ymin, ymax)
    ax.set_xlim(lo, hi)
    ax.axvline(res.lagtime * res.dt, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel(f"lag time ({res.time_unit})")
    ax.set_ylabel(f"implied timescale ({res.time_unit})")
    ax.set_title(title or f"implied timescales ({int(res.confidence * 100)}% Bayesian bands)")
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def plot_ck_test(res, path: str | os.PathLike, *, title: str = "") -> None:
    """Chapman-Kolmogorov test: a matrix of panels, set i -> set j.

    Blue: estimated at each lag (with its confidence band); red dashed: predicted from the
    model at the chosen lag (with its band). Probabilities on [0, 1].
    """
    plt = _pyplot()
    if res.ck_lagtimes is None:
        raise ValueError("plot_ck_test: the result has no CK test (n_metastable was not set)")
    n = res.ck_predictions.shape[1]
    t = res.ck_lagtimes * res.dt
    fig, axes = plt.subplots(n, n, figsize=(2.2 * n + 0.6, 2.0 * n + 0.4), sharex=True, sharey=True, squeeze=False)
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if res.ck_estimates_lower is not None:
                ax.fill_between(t, res.ck_estimates_lower[:, i, j], res.ck_estimates_upper[:, i, j], color="C0", alpha=0.25, linewidth=0)
                ax.fill_between(t, res.ck_predictions_lower[:, i, j], res.ck_predictions_upper[:, i, j], color="C3", alpha=0.2, linewidth=0)
            ax.plot(t, res.ck_estimates[:, i, j], "-", color="C0", label="estimate")
            ax.plot(t, res.ck_predictions[:, i, j], "--", color="C3", label="prediction")
            ax.set_ylim(-0.05, 1.05)
            ax.text(0.95, 0.9 if i != j else 0.1, f"{i} -> {j}", transform=ax.transAxes, ha="right", fontsize=8)
            if i == n - 1:
                ax.set_xlabel(f"lag time ({res.time_unit})")
            if j == 0:
                ax.set_ylabel("probability")
    axes[0, 0].legend(fontsize=7, loc="center right")
    fig.suptitle(title or f"Chapman-Kolmogorov test, model lag {res.lagtime * res.dt:g} {res.time_unit}")
    save_figure(fig, path)
