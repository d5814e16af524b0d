"""What a round of :func:`~gmvae_cv.workflows.explore.explore` found, and the stop rule that reads it.

Of a round's biased run: the frames' features and log-weights (metadynamics: :math:`\\beta (V - c(t))`
from the hills of all walkers; OPES: :math:`\\beta V`; plus :math:`\\beta W` of the walls,
``walls.bias``, when the COLVAR has it), the populations of the round's GMVAE clusters, and for
alanine dipeptide the C7eq -> C7ax transitions and dF with its jackknife error. Of a round's
GMVAE: which clusters are new (module docstring of :mod:`gmvae_cv.workflows.explore`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import mdtraj as md

from ..._core.errors import GMVAEInputError
from ..markers import read_done
from .inputs import System
from .plots import plot_round
from .settings import KB, ExploreSettings
from ...analysis import Hills, ct_log_weights, read_plumed
from ...features import load_trajectory_features
from ...analysis import count_transitions
from ...systems import alanine_basin
from ...analysis import delta_f, delta_f_phi, delta_f_running
from ...learn import load_run
from ...metad import WALLS_FIELD

__all__ = ["walker_files", "analyse_round", "cluster_provenance", "stop_rule"]


def walker_files(bias_dir: Path, walkers: int) -> list[tuple[Path, Path]]:
    """``(trajectory, COLVAR)`` of each walker of the biased run in ``bias_dir``."""
    if walkers == 1:
        return [(bias_dir / "traj.dcd", bias_dir / "COLVAR")]
    return [(bias_dir / f"traj.{w}.dcd", bias_dir / f"COLVAR.{w}") for w in range(walkers)]


def _biased_frames(bias_dir: Path, cfg: ExploreSettings, sysm: System, fspec: Any,
                   method: str, t_end_ps: Optional[float] = None) -> tuple[np.ndarray, list, list, list]:
    """Features and log-weights of the biased run's frames (of ``method``), walker by walker.

    ``t_end_ps``: leave out the rows and frames after it (a run stopped by the heating check: its
    last checkpoint).

    Returns ``(x, rows, traj_logw, traj_time)``: the features ``(n_frames, n_features)`` of all
    walkers' trajectory frames; per walker a dict of its COLVAR rows (``time`` ps, ``logw``, ``s``
    the CV and, for alanine dipeptide, ``phi``, ``psi`` rad); per walker the log-weights and the
    times (ps) of its trajectory frames.
    """
    kT = KB * cfg.temperature
    # one bias shared by all walkers: every walker's frames are reweighted with the hills of all of them
    hills = None
    if method == "metad":
        hills = Hills.from_file(bias_dir / "HILLS" if cfg.walkers == 1 else [bias_dir / f"HILLS.{w}" for w in range(cfg.walkers)])
    feats, traj_logw, traj_time, rows = [], [], [], []
    top = md.Topology.from_openmm(sysm.topology)
    for tfile, cfile in walker_files(bias_dir, cfg.walkers):
        colvar = read_plumed(cfile)
        t = np.asarray(colvar["time"], dtype=np.float64)
        upto = slice(None) if t_end_ps is None else slice(0, int(np.searchsorted(t, t_end_ps + 1e-6, side="right")))
        t = t[upto]
        s = np.column_stack([np.asarray(colvar[f"cv.{i}"])[upto] for i in range(cfg.latent_dim)])
        # metadynamics: beta (V - c(t)) from the hills; OPES: beta V, its bias at the frame
        logw = ct_log_weights(hills, s, t, kT) if hills is not None else np.asarray(colvar["opes.bias"], dtype=np.float64)[upto] / kT
        if WALLS_FIELD in colvar.fields:  # the walls biased the run too (zero inside their bounds)
            logw = logw + np.asarray(colvar[WALLS_FIELD], dtype=np.float64)[upto] / kT
        x = load_trajectory_features([tfile], top, fspec)[0]
        # frame i of traj.dcd is at time (i + 1) * frame_ps (the start structure is not saved)
        tf = (np.arange(len(x)) + 1) * cfg.frame_ps
        if t_end_ps is not None:
            x, tf = x[tf <= t_end_ps + 1e-6], tf[tf <= t_end_ps + 1e-6]
        idx = np.clip(np.searchsorted(t, tf - 1e-6), 0, len(t) - 1)
        if len(t) and len(tf) and np.max(np.abs(t[idx] - tf)) > 1e-3:
            raise GMVAEInputError(f"{cfile}: no COLVAR row at the times of the frames of {tfile}")
        feats.append(x)
        traj_logw.append(logw[idx])
        traj_time.append(tf)
        row = {"time": t, "logw": logw, "s": s}
        if sysm.alanine:
            row["phi"], row["psi"] = np.asarray(colvar["phi"])[upto], np.asarray(colvar["psi"])[upto]
        rows.append(row)
    return np.concatenate(feats), rows, traj_logw, traj_time


def _cluster_populations(tr: dict, traj_logw: np.ndarray, n_clusters: int) -> dict:
    """Raw and reweighted populations of the GMVAE's clusters on the biased frames (``tr``: its transform)."""
    lab = tr["clusters"]
    wt = np.exp(traj_logw - traj_logw.max())
    return {
        "biased_raw_populations": [float(np.mean(lab == c)) for c in range(n_clusters)],
        "biased_reweighted_populations": [float(wt[lab == c].sum() / wt.sum()) for c in range(n_clusters)],
    }


def _alanine_transitions(rows: list, biased_ns: float, t0_ps: float = 0.0) -> dict:
    """C7eq <-> C7ax transitions of all walkers after ``t0_ps`` and the first C7eq -> C7ax one (ns after ``t0_ps``).

    ``t0_ps``: where this round's part of a continued run begins (0 for a run of its own); the core
    sets remember the basin of the frames before it, so a run split into rounds counts each
    transition once.
    """
    trans, first = 0, None
    for q in rows:
        lab_c = alanine_basin(q["phi"], q["psi"])
        before = q["time"] <= t0_ps + 1e-6
        trans += count_transitions(lab_c) - count_transitions(lab_c[before])
        core = np.flatnonzero(lab_c >= 0)
        hits = core[1:][(lab_c[core[1:]] == 1) & (lab_c[core[:-1]] == 0) & ~before[core[1:]]]
        if len(hits):
            tt = (float(q["time"][hits[0]]) - t0_ps) / 1000.0
            first = tt if first is None else min(first, tt)
    return {"transitions": int(trans), "transitions_per_ns": trans / biased_ns, "first_transition_in_round_ns": first}


def _alanine_delta_f(arrays: dict, kT: float, n_blocks: int) -> dict:
    """dF (phi > 0 against phi < 0, C7ax against C7eq) of the kept frames, and dF along the round (kJ/mol)."""
    phi, psi, keep, lw_all = arrays["phi"], arrays["psi"], arrays["keep"], arrays["logw"]
    d1 = delta_f_phi(phi[keep], lw_all[keep], kT, n_blocks=n_blocks)
    core = alanine_basin(phi[keep], psi[keep])
    d2 = delta_f(core == 0, core == 1, lw_all[keep], kT, n_blocks=n_blocks)
    info = {"delta_f_phi_pos_minus_neg_kjmol": d1.to_list(), "delta_f_c7ax_minus_c7eq_kjmol": d2.to_list()}
    # dF against time within the round (for the plot)
    n = int(keep.sum())
    ends = [max(2, int(round(f * n))) for f in np.linspace(0.1, 1.0, 10)]
    ph, lw = np.angle(np.exp(1j * phi[keep])), lw_all[keep]
    run_df = delta_f_running(ph < 0, ph > 0, lw, kT, ends, n_blocks=n_blocks)
    t_keep = arrays["time"][keep]
    info["delta_f_running"] = [[float(t_keep[e - 1]) / 1000.0, *d.to_list()] for e, d in zip(ends, run_df)]
    return info


def analyse_round(rd: Path, r: int, cfg: ExploreSettings, sysm: System, fspec: Any, out: Path,
                  plan: Optional[dict] = None) -> dict:
    """Reweighting, dF, transitions, clusters and plots of one round's biased run.

    ``plan`` (:func:`~.state.round_plan`): for a round that continued an earlier round's run, the
    reweighting and dF use the whole run (its first ``discard_fraction`` left out), the
    transitions and the training frames (``features.npy``) only this round's part of it.
    Writes ``rd/analysis/features.npy``, ``frames.npz``, ``latent.png`` (and ``coverage.png``);
    returns the content of ``analysis.json`` but its ``seconds``.
    """
    kT = KB * cfg.temperature
    an = rd / "analysis"
    plan = plan or {"cv_round": r, "method": cfg.method, "continues": None, "segment": 0}
    run = load_run(rd / "run")
    bias_done = read_done(rd / "bias_stage")
    # a run stopped by the heating check: up to its last checkpoint
    t_end_ps = bias_done["checkpoint_step"] * cfg.timestep_fs / 1000.0 if bias_done.get("unstable") else None
    x_all, rows, traj_logw, traj_time = _biased_frames(rd / "bias", cfg, sysm, fspec, plan["method"], t_end_ps)
    t0_ps = plan["segment"] * cfg.steps_per_round * cfg.timestep_fs / 1000.0
    segment = np.concatenate(traj_time) > t0_ps + 1e-6
    np.save(an / "features.npy", x_all[segment])
    seg_ps = cfg.steps_per_round * cfg.timestep_fs / 1000.0 if t_end_ps is None else max(t_end_ps - t0_ps, 0.0)
    biased_ns = float(seg_ps * 1e-3 * cfg.walkers)
    info: dict[str, Any] = {"round": r, "biased_ns": biased_ns, "cv_round": plan["cv_round"], "method": plan["method"],
                            "continues": plan["continues"], "run_ns": (t0_ps + seg_ps) * 1e-3 * cfg.walkers,
                            "unstable": bias_done.get("unstable"), "analysed_until_ps": t_end_ps}
    keep = np.concatenate([q["time"] >= cfg.discard_fraction * q["time"][-1] for q in rows])
    arrays = {"time": np.concatenate([q["time"] for q in rows]), "logw": np.concatenate([q["logw"] for q in rows]),
              "keep": keep, "traj_logw": np.concatenate(traj_logw), "traj_segment": segment}
    # clusters of this round's GMVAE on its biased frames (raw and reweighted)
    tr = run.transform(x_all)
    info["clusters"] = _cluster_populations(tr, arrays["traj_logw"], cfg.n_clusters)
    if sysm.alanine:
        arrays["phi"] = np.concatenate([q["phi"] for q in rows])
        arrays["psi"] = np.concatenate([q["psi"] for q in rows])
        info.update(_alanine_transitions(rows, max(biased_ns, 1e-9), t0_ps))
        info["fraction_phi_positive"] = float(np.mean(np.angle(np.exp(1j * arrays["phi"])) > 0))
        info.update(_alanine_delta_f(arrays, kT, cfg.n_blocks))
    np.savez(an / "frames.npz", **arrays)
    info["kinetic_temperature"] = bias_done.get("kinetic_temperature")
    info["edge_events"] = bias_done.get("edge_events")
    plot_round(rd, r, arrays, tr, out, sysm, cfg)
    return info


def cluster_provenance(run_dir: Path, blocks: list, r: int, names: list, cfg: ExploreSettings) -> dict:
    """Training-set populations of the GMVAE's clusters and which of them are new (module docstring).

    ``names``: of the blocks (``input[i]``, ``round_NN``); the previous round's GMVAE was trained on
    all but ``round_{r-1}``.
    """
    run = load_run(run_dir)
    x = np.concatenate(blocks)
    lab = run.transform(x)["clusters"]
    old = np.concatenate([np.full(len(b), n != f"round_{r - 1:02d}") for b, n in zip(blocks, names)])
    pops, old_frac, new = [], [], []
    for c in range(cfg.n_clusters):
        m = lab == c
        pops.append(float(m.mean()))
        of = float(old[m].mean()) if m.any() else float("nan")
        old_frac.append(of)
        if m.mean() >= cfg.min_cluster_fraction and (r == 0 or of < cfg.new_cluster_old_fraction):
            new.append(c)
    occupied = [c for c in range(cfg.n_clusters) if pops[c] >= cfg.min_cluster_fraction]
    return {"training_populations": pops, "fraction_from_earlier_data": old_frac, "occupied": occupied, "new": new}


def stop_rule(rounds: list[dict], clusters_now: dict, cfg: ExploreSettings) -> Optional[str]:
    """The stop reason, or None (module docstring)."""
    if len(rounds) < 3 or clusters_now["new"] or rounds[-1]["clusters"]["new"]:
        return None
    df = [q["delta_f_phi_pos_minus_neg_kjmol"] for q in rounds[-3:]]
    if any(v is None or v[0] is None or v[1] is None for v in df):
        return None
    if max(v[1] for v in df) > cfg.max_df_error:  # "stable within its error" says nothing when the error is large
        return None
    for (a, ea), (b, eb) in ((df[0], df[1]), (df[1], df[2])):
        if abs(a - b) > cfg.stable_sigmas * math.hypot(ea, eb):
            return None
    return (f"stop rule: no new cluster in rounds {len(rounds) - 1} and {len(rounds)}, dF stable within "
            f"{cfg.stable_sigmas:g} x its error (each at most {cfg.max_df_error:g} kJ/mol) over rounds "
            f"{len(rounds) - 3}..{len(rounds) - 1}")
