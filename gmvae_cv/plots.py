"""Plots written next to results (matplotlib, Agg backend, PNG files written atomically)."""

from __future__ import annotations

import io
import os
from typing import Optional, Sequence

import numpy as np

from ._validation import atomic_write_bytes

__all__ = [
    "plot_loss_curve",
    "plot_confusion_matrix",
    "plot_fes",
    "plot_implied_timescales",
    "plot_ck_test",
    "save_figure",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_loss_curve(history: dict[str, list], path: str | os.PathLike) -> None:
    """Training and validation loss (and the loss parts) against epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ep = history.get("epoch", [])
    for key, style in (("train_loss", "-"), ("valid_loss", "--")):
        if history.get(key):
            axes[0].plot(ep[: len(history[key])], history[key], style, label=key.replace("_", " "))
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("negative ELBO per frame")
    axes[0].legend()
    for key in ("reconstruction", "kl_z", "kl_y", "entropy"):
        name = f"valid_{key}" if history.get(f"valid_{key}") else f"train_{key}"
        if history.get(name):
            axes[1].plot(ep[: len(history[name])], history[name], label=name)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("loss part")
    axes[1].legend(fontsize=8)
    fig.suptitle("GMVAE training")
    save_figure(fig, path)


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
