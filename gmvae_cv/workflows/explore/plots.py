"""The figures of :func:`~gmvae_cv.workflows.explore.explore`: each round's latent space and coverage, dF over the rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import mdtraj as md

from .inputs import System
from .settings import ExploreSettings
from ..._core.figures import _pyplot, save_figure

__all__ = ["plot_round", "plot_delta_f"]


def plot_round(rd: Path, r: int, arrays: dict, tr: dict, out: Path, sysm: System, cfg: ExploreSettings) -> None:
    """``rd/analysis/latent.png`` (the latent space of the biased frames) and, for alanine dipeptide, ``coverage.png`` (phi/psi).

    ``arrays``: the content of ``frames.npz``; ``tr``: the GMVAE's transform of the biased frames.
    """
    plt = _pyplot()
    an = rd / "analysis"
    z = tr["z"]
    fig, axes = plt.subplots(1, 2 if sysm.alanine else 1, figsize=(11 if sysm.alanine else 5.5, 4.4),
                             layout="constrained", squeeze=False)
    ax = axes[0, 0]
    ax.scatter(z[:, 0], z[:, 1] if z.shape[1] > 1 else np.zeros(len(z)), c=tr["clusters"], cmap="tab10", s=3, vmin=0, vmax=9)
    ax.set_title(f"round {r}: latent space of its biased frames, by cluster")
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    if sysm.alanine:
        xt = md.load(str(rd / "bias" / ("traj.dcd" if cfg.walkers == 1 else "traj.0.dcd")), top=md.Topology.from_openmm(sysm.topology))
        phi_t = md.compute_phi(xt)[1][:, 0]
        n = min(len(phi_t), len(z))
        sc = axes[0, 1].scatter(z[:n, 0], z[:n, 1] if z.shape[1] > 1 else np.zeros(n), c=np.degrees(phi_t[:n]), cmap="twilight",
                                s=3, vmin=-180, vmax=180)
        fig.colorbar(sc, ax=axes[0, 1], label="phi (deg)")
        axes[0, 1].set_title("the same, coloured by phi")
        axes[0, 1].set_xlabel("z0")
    save_figure(fig, an / "latent.png")
    if sysm.alanine:
        fig, ax = plt.subplots(figsize=(5.5, 4.6), layout="constrained")
        inp = np.load(out / "input" / "frames.npz")
        if "phi" in inp:
            ax.scatter(np.degrees(inp["phi"]), np.degrees(inp["psi"]), s=1, c="0.7", label="unbiased input")
        ax.scatter(np.degrees(arrays["phi"]), np.degrees(arrays["psi"]), s=1, c=arrays["time"] / 1000.0, cmap="viridis")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xlabel("phi (deg)")
        ax.set_ylabel("psi (deg)")
        ax.set_title(f"round {r}: phi/psi coverage (colour: ns into the round)")
        save_figure(fig, an / "coverage.png")



def plot_delta_f(out: Path, rounds: list[dict]) -> None:
    """``out/delta_f.png``: each round's dF (phi > 0 against phi < 0) against the biased time of all rounds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    acc, start = 0.0, 0.0
    for q in rounds:
        if q.get("continues") is None:  # a run of its own starts here; a continued one where its first round did
            start = acc
        pts = [p for p in (q.get("delta_f_running") or []) if p[1] is not None]
        if pts:
            t = np.array([start + p[0] for p in pts])
            v = np.array([p[1] for p in pts])
            e = np.array([p[2] if p[2] is not None else np.nan for p in pts])
            ax.plot(t, v, "-o", ms=3, label=f"round {q['round']} (CV of round {q.get('cv_round', q['round'])}, {q.get('method') or ''})")
            ax.fill_between(t, v - e, v + e, alpha=0.25)
        acc += q["biased_ns"]
        ax.axvline(acc, color="0.8", lw=0.8)
    ax.set_xlabel("biased simulated time, ns (all rounds)")
    ax.set_ylabel("F(phi>0) - F(phi<0), kJ/mol")
    ax.set_title("dF per round against simulated time (band: jackknife error)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_figure(fig, out / "delta_f.png")
