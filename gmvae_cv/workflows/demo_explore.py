"""The demo's default route: from a 300 K run stuck in the states it knows to C7ax, its free energy and an MSM.

Stages after the unbiased 300 K run of :func:`~gmvae_cv.workflows.run_demo` (each continues where a
killed demo stopped):

2. ``explore``: :func:`~gmvae_cv.workflows.explore.explore` from the 300 K frames (no frame with
   phi > 0): rounds of GMVAE, export + check, OPES-explore on its CV (1 ns rounds by default), the
   CV kept while no new cluster appears (``cv_policy='keep'``), until the stop rule or the round
   budget;
3. ``analysis``: the free energy on phi/psi and on the 2D latent space of the last round's CV, both
   reweighted (OPES weights and walls) from the whole biased run of that CV (its first 10 % left
   out), with the Kish effective sample size and the block errors stated, basins labelled;
4. MSM on two core sets (milestoning) of k-means states of the latent space of round 0's GMVAE
   (trained on the 300 K run) in the 300 K run: implied timescales with Bayesian errors against the lag, whether the slowest
   (C7eq <-> C5/beta, a few ps) is resolved (above the lag, flat;
   :func:`gmvae_cv.analysis.msm_checks.timescale_resolved`), a Chapman-Kolmogorov test on PCCA+
   sets (:func:`~gmvae_cv.analysis.msm_checks.ck_passed`), and the basins each set holds;
5. ``rates``: C7eq <-> C7ax rates by infrequent metadynamics on the CV the last round biased
   (:mod:`~gmvae_cv.workflows.demo_rates`), with their verdict;
6. ``summary.json`` (the round table included) and ``report.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import mdtraj as md

from .._core.figures import _pyplot, save_figure
from .._core.files import atomic_write_json, atomic_write_text
from ..analysis import (MarkovAnalysis, ReweightedFES, ck_passed, count_transitions, gmvae_states, milestone, msm_summary,
                        read_plumed)
from ..features import alanine_heavy_atom_distances, load_trajectory_features
from ..learn import load_run
from ..systems import alanine_basin
from .demo_rates import run_rates_stage
from .explore import ExploreSettings, explore

__all__ = ["run_explore_route", "fes_minimum", "BASIN_LABELS_DEG"]

KB = 0.008314462618  # kJ/mol/K
BASIN_LABELS_DEG = {"C7eq": (-83.0, 72.0), "C5/beta": (-150.0, 155.0), "alpha_R": (-75.0, -40.0), "C7ax": (72.0, -60.0)}
"""Where the report's figures label the dipeptide's basins, (phi, psi) in degrees."""
FES_BINS = 36
"""Bins per variable of the report's surfaces (10 degrees on phi/psi): with 60 the sampled basins of
a 0.9 ns run (4000 frames) had empty bins inside them."""
MSM_LAGS_PS = (1, 2, 3, 5, 10)
MSM_LAG_PS = 1
MSM_STATES = 20
"""k-means centres in the latent space, the fine states the MSM's core sets are made of."""
MSM_CORE_MEMBERSHIP = 0.8
"""PCCA+ membership from which a k-means state belongs to its set's core."""


def run_explore_route(out: Path, cfg: Any, md_dir: Path, n_md: int, md_info: dict,
                      progress: Optional[Callable], log: Callable[[str], None]) -> dict:
    """Stages 2-6 of the module docstring into ``out``; return the content of ``summary.json``.

    ``cfg``: the demo's :class:`~gmvae_cv.workflows.DemoSettings`; ``md_dir``: its 300 K run
    (``traj.dcd``, ``topology.pdb``, a frame per ps) of ``n_md`` steps; ``md_info``: that stage's
    ``done.json``.
    """
    settings = ExploreSettings(rounds=cfg.rounds, ns_per_round=cfg.ns_per_round, method="opes-explore", seed=cfg.seed,
                               n_clusters=cfg.n_clusters, latent_dim=cfg.latent_dim, lag=cfg.lag,
                               entropy_weight=cfg.entropy_weight, epochs=cfg.explore_epochs)
    log(f"[2/6] explore from the 300 K frames: OPES-explore on the GMVAE CV, up to {cfg.rounds} rounds of {cfg.ns_per_round:g} ns")
    ex = explore(out / "explore", traj=md_dir / "traj.dcd", top=md_dir / "topology.pdb", settings=settings,
                 progress=progress, log=lambda s: log("      " + s))
    last = ex["rounds"][-1]
    bias_dir = out / "explore" / f"round_{last['round']:02d}" / "bias"
    log("[3/6] free energies on phi/psi and on the latent space, reweighted")
    an = out / "analysis"
    an.mkdir(exist_ok=True)
    colvar = bias_dir / "COLVAR"
    tmax = last.get("analysed_until_ps")  # the heating check stopped the run: the rows explore analysed
    t_end = float(read_plumed(colvar)["time"][-1]) if tmax is None else tmax
    tmin = settings.discard_fraction * t_end
    rama = ReweightedFES(["phi", "psi"], method="opes", temperature=settings.temperature, bins=[FES_BINS, FES_BINS],
                         n_blocks=10, tmin=tmin, tmax=tmax).fit(colvar).fetch_model()
    latent = ReweightedFES(["cv.0", "cv.1"], method="opes", temperature=settings.temperature, bins=[FES_BINS, FES_BINS],
                           n_blocks=10, tmin=tmin, tmax=tmax).fit(colvar).fetch_model()
    rama.write_dat(an / "fes_phi_psi.dat")
    latent.write_dat(an / "fes_latent.dat")
    plot_landscapes(an / "landscapes.png", rama, latent, colvar, tmin, tmax)
    log("[4/6] MSM on round 0's GMVAE latent space of the 300 K run: implied timescales, CK test")
    x = load_trajectory_features([md_dir / "traj.dcd"], md_dir / "topology.pdb", alanine_heavy_atom_distances())[0]
    phi_u, psi_u = _phi_psi(md_dir)
    msm, msm_keys = state_msm(load_run(out / "explore" / "round_00" / "run"), x, an, phi_u, psi_u)
    cv_round = last["cv_round"]
    log(f"[5/6] rates C7eq <-> C7ax by infrequent metadynamics on round {cv_round}'s CV: {cfg.rate_runs} runs per direction "
        f"and pace")
    dfc = (ex.get("final") or {}).get("delta_f_c7ax_minus_c7eq_kjmol")
    rates_keys = run_rates_stage(out / "rates", out / "explore" / f"round_{cv_round:02d}" / "exp", cfg,
                                 tuple(dfc) if dfc else None, log)
    rates_keys["rates_cv_round"] = cv_round
    summary = _summary(ex, rama, {**msm_keys, **rates_keys}, md_info, n_md, phi_u, psi_u, cfg, out)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", _report(summary))
    log(f"[6/6] wrote {out / 'report.md'} and {out / 'summary.json'}")
    return summary


def _phi_psi(md_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """phi, psi (rad) of the frames of the 300 K run."""
    t = md.load(str(md_dir / "traj.dcd"), top=str(md_dir / "topology.pdb"))
    return md.compute_phi(t)[1][:, 0], md.compute_psi(t)[1][:, 0]


def state_msm(run: Any, x: np.ndarray, an: Path, phi: np.ndarray, psi: np.ndarray) -> tuple[Any, dict]:
    """MSM on core sets in the GMVAE latent space of ``x`` (frames 1 ps apart): ``an/its.png``, ``ck.png``, ``msm.json``.

    The states: :data:`MSM_STATES` k-means centres of the latent means z (not the GMVAE's
    clusters: their q(y|x) is nearly uniform on the 300 K frames, so the most probable cluster
    changes at every fluctuation); PCCA+ of an MSM on them at the model lag gives two sets, and
    each k-means state whose membership is at least :data:`MSM_CORE_MEMBERSHIP` joins its set's
    core; the MSM is built on the milestoning trajectory of these cores
    (:func:`~gmvae_cv.analysis.dtrajs.milestone`), so that recrossings of a boundary between
    k-means states count as no transition. The model lag is :data:`MSM_LAG_PS`: the slowest
    process left at phi < 0, C7eq <-> C5/beta, takes about 4 ps in vacuum at 300 K (alpha_R
    holds about 1 % of the frames), so a 10 ps lag cannot resolve it (it did not, measured), and
    the next process is below 1 ps: two sets. On 10 k-means states themselves the slowest
    timescale grew from 2.6 to 3.7 ps between lags of 1 and 3 ps; on the cores of 20 it stayed at
    4.5-4.6 ps from 1 to 5 ps (measured, a 2 ns run). ``phi``, ``psi`` (rad) of the frames name the
    basins each core holds.

    Returns the fitted :class:`~gmvae_cv.analysis.MarkovAnalysisResult` and its summary keys
    (:func:`~gmvae_cv.analysis.msm_checks.msm_summary`, plus ``ck_max_deviation``, ``msm_states``,
    ``msm_state_definition`` and ``msm_sets``: per core its stationary weight, its frames and the
    share of them in each basin).
    """
    fine = gmvae_states(run, [x], method="kmeans", n_clusters=MSM_STATES, seed=1)[0]
    lags = [lag for lag in MSM_LAGS_PS if lag < len(x) // 10] or [1, 2, 3]
    lagtime = MSM_LAG_PS if MSM_LAG_PS in lags else lags[0]
    pcca = MarkovAnalysis([lagtime], lagtime=lagtime, dt=1.0, time_unit="ps", n_samples=0,
                          n_metastable=2).fit([fine]).fetch_model()
    mem = np.nan_to_num(np.asarray(pcca.memberships, dtype=float), nan=0.0)
    core = np.where(mem.max(axis=1) >= MSM_CORE_MEMBERSHIP, mem.argmax(axis=1), -1)
    definition = f"PCCA+ membership >= {MSM_CORE_MEMBERSHIP}"
    if len(np.unique(core[core >= 0])) < 2:  # a set with no state that clearly belongs to it: crisp sets, said so
        core = np.where(mem.max(axis=1) > 0, mem.argmax(axis=1), -1)
        definition = f"crisp PCCA+ sets (no state of one set reached membership {MSM_CORE_MEMBERSHIP})"
    cores, _ = milestone(fine, core)
    msm = MarkovAnalysis(lags, lagtime=lagtime, dt=1.0, time_unit="ps", n_samples=50,
                         n_metastable=2).fit([cores]).fetch_model()
    msm.plot_implied_timescales(an / "its.png", title="implied timescales: core sets in the GMVAE latent space, 300 K run")
    msm.plot_ck_test(an / "ck.png")
    msm.save(an / "msm.json")
    keys = msm_summary(msm, min_lags=3)
    keys["ck_max_deviation"] = ck_passed(msm)["max_deviation"]
    keys["msm_states"] = MSM_STATES
    keys["msm_state_definition"] = (f"two core sets of {MSM_STATES} k-means states of the GMVAE latent means z "
                                    f"({definition}), milestoning")
    keys["msm_sets"] = _core_basins(msm, core[fine], phi, psi)
    return msm, keys


def _core_basins(msm: Any, in_core: np.ndarray, phi: np.ndarray, psi: np.ndarray) -> list[dict]:
    """Per core set: its stationary weight in ``msm``, its frames (``in_core``: the core of each frame,
    -1 outside) and the share of them near each basin of :data:`BASIN_LABELS_DEG` (within 40
    degrees; the rest 'other')."""
    pd, qd = np.degrees(phi), np.degrees(psi)
    dist = np.stack([np.hypot((pd - p0 + 180) % 360 - 180, (qd - q0 + 180) % 360 - 180)
                     for p0, q0 in BASIN_LABELS_DEG.values()])
    near = np.where(dist.min(0) < 40.0, dist.argmin(0), -1)
    names = list(BASIN_LABELS_DEG)
    pi = np.asarray(msm.stationary_distribution)
    out = []
    for k in range(len(pi)):
        m = in_core == k
        share = {n: round(float(np.mean(near[m] == i)), 3) for i, n in enumerate(names)} if m.any() else {}
        share = {n: v for n, v in share.items() if v >= 0.01}
        if m.any() and np.mean(near[m] == -1) >= 0.01:
            share["other"] = round(float(np.mean(near[m] == -1)), 3)
        out.append({"set": k, "weight": float(pi[k]), "frames": int(m.sum()), "basins": share})
    return out


def _basin_centres_latent(colvar: Path, tmin: float, tmax: Optional[float] = None) -> dict:
    """Weighted mean latent position (cv.0, cv.1) of the frames near each labelled basin (within 25 deg)."""
    c = read_plumed(colvar)
    t = np.asarray(c["time"])
    sel = (t >= tmin) & (t <= (np.inf if tmax is None else tmax))
    phi, psi = np.degrees(np.asarray(c["phi"])[sel]), np.degrees(np.asarray(c["psi"])[sel])
    s = np.column_stack([np.asarray(c["cv.0"])[sel], np.asarray(c["cv.1"])[sel]])
    lw = np.asarray(c["opes.bias"])[sel] / (KB * 300.0)
    if "walls.bias" in c.fields:
        lw = lw + np.asarray(c["walls.bias"])[sel] / (KB * 300.0)
    w = np.exp(lw - lw.max())
    out = {}
    for name, (p0, q0) in BASIN_LABELS_DEG.items():
        d = np.hypot((phi - p0 + 180) % 360 - 180, (psi - q0 + 180) % 360 - 180)
        m = d < 25.0
        if m.sum() >= 5:
            out[name] = (np.average(s[m], axis=0, weights=w[m]), int(m.sum()))
    return out


def plot_landscapes(path: Path, rama: Any, latent: Any, colvar: Path, tmin: float, tmax: Optional[float] = None,
                    f_max: float = 40.0) -> None:
    """The free energy on phi/psi (degrees) next to the one on the latent space, basins labelled.

    Both surfaces come from the same reweighted frames; the titles give the frames, the Kish
    effective sample size and the median block error of F where F < 20 kJ/mol. Empty bins are white.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    for ax, fes, deg in ((axes[0], rama, True), (axes[1], latent, False)):
        e0, e1 = (np.degrees(fes.edges[0]), np.degrees(fes.edges[1])) if deg else (fes.edges[0], fes.edges[1])
        f = np.where(np.isfinite(fes.free_energy), np.minimum(fes.free_energy, f_max), np.nan)
        im = ax.pcolormesh(e0, e1, f.T, cmap="viridis", vmin=0, vmax=f_max, shading="flat")
        low = np.isfinite(fes.free_energy) & (fes.free_energy < 20.0) & np.isfinite(fes.error)
        err = float(np.median(fes.error[low])) if low.any() else float("nan")
        ax.set_title(f"{fes.n_frames} frames, effective {fes.n_effective:.0f} (Kish); median error {err:.1f} kJ/mol "
                     "where F < 20", fontsize=9)
        fig.colorbar(im, ax=ax, label="F (kJ/mol)")
    label = {"color": "black", "fontsize": 10, "ha": "center", "weight": "bold",
             "bbox": {"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0}}
    for name, (p0, q0) in BASIN_LABELS_DEG.items():
        axes[0].annotate(name, (p0, q0), **label)
    for name, (centre, n) in _basin_centres_latent(colvar, tmin, tmax).items():
        axes[1].annotate(name, tuple(centre), **label)
    axes[0].set_xlabel("phi (deg)")
    axes[0].set_ylabel("psi (deg)")
    axes[0].set_xlim(-180, 180)
    axes[0].set_ylim(-180, 180)
    axes[1].set_xlabel("z0 (GMVAE CV, component 0)")
    axes[1].set_ylabel("z1 (GMVAE CV, component 1)")
    fig.suptitle("Free energy at 300 K, reweighted from the biased run of the last CV (OPES weights): Ramachandran and latent space")
    save_figure(fig, path)


def fes_minimum(fes: Any) -> tuple[float, float, str]:
    """The centre (phi, psi in degrees) of the lowest bin of a phi/psi surface, and its basin ('C7eq', 'C7ax' or 'other')."""
    i, j = np.unravel_index(np.nanargmin(fes.free_energy), fes.free_energy.shape)  # empty bins are +inf
    phi = 0.5 * (fes.edges[0][i] + fes.edges[0][i + 1])
    psi = 0.5 * (fes.edges[1][j] + fes.edges[1][j + 1])
    basin = {0: "C7eq", 1: "C7ax"}.get(int(alanine_basin(np.array([phi]), np.array([psi]))[0]), "other")
    return math.degrees(phi), math.degrees(psi), basin


def _summary(ex: dict, rama: Any, stage_keys: dict, md_info: dict, n_md: int, phi_u: np.ndarray, psi_u: np.ndarray,
             cfg: Any, out: Path) -> dict:
    """The content of the demo's ``summary.json`` on the explore route (None where not computed);
    ``stage_keys``: those of the MSM and the rates stages."""
    last = ex["rounds"][-1]
    final = ex.get("final") or {}
    unbiased_ns = n_md * 0.002 / 1000.0
    dfc = final.get("delta_f_c7ax_minus_c7eq_kjmol") or [None, None]
    summary = {
        "route": "explore",
        "check_passed": True,  # explore stops at an export that disagrees with its model
        "latent_dim": cfg.latent_dim,
        "n_clusters": cfg.n_clusters,
        "unbiased_ns": unbiased_ns,
        "training_temperature_K": 300.0,
        "unbiased_frames_phi_positive": int(np.count_nonzero(phi_u > 0)),
        "biased_ns": ex["biased_ns_total"],
        "n_rounds": ex["n_rounds"],
        "stop_reason": ex["stop_reason"],
        "first_transition_ns": ex["first_transition_ns"],
        "ns_per_day_unbiased": md_info["steps_per_second"] * 0.002 * 86400 / 1000.0,
        "ns_per_day_biased": last["ns_per_day"],
        "platform_unbiased": md_info["platform"],
        "transitions_biased": last["transitions"],
        "transitions_per_ns_biased": last["transitions_per_ns"],
        "transitions_biased_all_rounds": int(sum(q["transitions"] or 0 for q in ex["rounds"])),
        "transitions_per_ns_unbiased": count_transitions(alanine_basin(phi_u, psi_u)) / unbiased_ns,
        "biased_timestep_fs": ex["settings"]["timestep_fs"],
        "biased_mean_kinetic_temperature_K": (last.get("kinetic_temperature") or {}).get("mean"),
        "delta_f_phi_pos_minus_neg_kjmol": final.get("delta_f_phi_pos_minus_neg_kjmol"),
        "delta_f_c7ax_minus_c7eq_kjmol": dfc[0],
        "delta_f_c7ax_minus_c7eq_error_kjmol": dfc[1],
        "fes_minimum_basin": fes_minimum(rama)[2],
        "fes_n_frames": rama.n_frames,
        "fes_n_effective": rama.n_effective,
        **stage_keys,
        "rounds": [{k: q.get(k) for k in ("round", "cv_round", "biased_ns", "run_ns", "walltime_s", "transitions",
                                          "transitions_per_ns", "delta_f_phi_pos_minus_neg_kjmol")}
                   | {"new_clusters": q["clusters"]["new"], "method": q.get("method"), "heated_up": bool(q.get("unstable")),
                      "mean_kinetic_temperature_K": (q.get("kinetic_temperature") or {}).get("mean")}
                   for q in ex["rounds"]],
        "explore_summary": str((out / "explore" / "summary.json").resolve()),
        "reweighted": ex.get("reweighted"),
        "walltime_s_explore": float(sum(q["walltime_s"] for q in ex["rounds"])),
        "settings": dict(cfg.__dict__),
    }
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def _fmt(v: Any) -> str:
    if v is None:
        return "not computed"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(q) for q in v) + "]"
    return str(v)


def _report(summary: dict) -> str:
    """The text of ``report.md`` on the explore route."""
    lines = [
        "# gmvae-cv demo: alanine dipeptide, from a stuck 300 K run",
        "",
        f"Unbiased MD {summary['unbiased_ns']:.2f} ns at 300 K ({summary['ns_per_day_unbiased']:.0f} ns/day): it stays at "
        f"phi < 0 (C7eq, C5/beta, alpha_R). `explore` trained a GMVAE on it, biased its CV with OPES-explore and "
        f"retrained on what it sampled: {summary['n_rounds']} round(s), {summary['biased_ns']:g} ns biased in all, "
        f"first C7eq -> C7ax transition after {_fmt(summary['first_transition_ns'])} ns; {summary['stop_reason']}.",
        "",
        "| round | CV of round | method | ns | transitions | per ns | F(phi>0) - F(phi<0), kJ/mol | new clusters | heated up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for q in summary["rounds"]:
        lines.append(f"| {q['round']} | {q['cv_round']} | {q['method']} | {q['biased_ns']:g} | {q['transitions']} | "
                     f"{_fmt(q['transitions_per_ns'])} | {_fmt(q['delta_f_phi_pos_minus_neg_kjmol'])} | {q['new_clusters']} | "
                     f"{'yes' if q['heated_up'] else ''} |")
    lines += ["", "| quantity | value |", "|---|---|"]
    for key in ("check_passed", "transitions_biased", "transitions_per_ns_biased", "transitions_per_ns_unbiased",
                "biased_mean_kinetic_temperature_K", "delta_f_phi_pos_minus_neg_kjmol", "delta_f_c7ax_minus_c7eq_kjmol",
                "delta_f_c7ax_minus_c7eq_error_kjmol", "fes_minimum_basin", "fes_n_effective", "slowest_its_ps",
                "msm_lag_ps", "its_resolved", "its_reason", "ck_passed", "rates_cv_round", "rates_paces_ps", "rates_runs",
                "tau_c7eq_to_c7ax_ns", "tau_c7ax_to_c7eq_ns", "rates_ks_pvalue", "delta_f_from_rates_kjmol",
                "delta_f_consistent", "rates_checks_passed"):
        lines.append(f"| {key} | {_fmt(summary.get(key))} |")
    for w in (summary.get("rates_failed_checks") or []) + (summary.get("rates_warnings") or []):
        lines += ["", f"Rates: {w}"]
    lines += ["", "![free energy: Ramachandran and latent space](analysis/landscapes.png)", "",
              "![dF against simulated time](explore/delta_f.png)", "",
              "![implied timescales](analysis/its.png)", "", "![CK test](analysis/ck.png)", "",
              "![rescaled escape times against an exponential](rates/ecdf.png)", ""]
    return "\n".join(lines)
