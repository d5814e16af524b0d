"""AAQAA3 (ACE-(AAQAA)3-NME, amber14 + GBn2): GMVAE 60D -> 2D on backbone torsions, against DSSP helicity.

Steps:

1. MD (OpenMM, :class:`gmvae_cv.systems.AAQAA3`): one run from the built alpha helix and one from
   the extended chain, Langevin at ``--temperature`` (default 340 K, above the simulation
   temperature of the helix experiments so that the helix frays and unfolds within the run),
   4 fs steps with hydrogen mass repartitioning (1.5 amu) and HBonds constraints, friction
   1/ps, a frame every 0.4 ps. The two runs together sample helix, partly helical and coil
   conformations; they are **not** an equilibrium ensemble (AAQAA3 folds on the 100 ns scale,
   far beyond this budget), so the latent "free energy" below is that of the sampled frames.
2. Features: ``backbone_torsions`` (sin/cos of the 30 phi/psi of the 15 residues = 60); DSSP
   per frame and residue (:func:`gmvae_cv.systems.dssp_helicity`, 'H' = alpha/3-10/pi helix).
3. Number of states: :func:`gmvae_cv.learn.selection.select_n_clusters`, as on the toys: a GMVAE
   with k_max = 6 components, then the slow eigenvalues (>= 1/e at a lag of 10 frames = 4 ps) of
   the cluster transition matrix in each strongly connected set, median over 3 seeds.
4. GMVAE 60D -> 2D with that k; latent FES coloured by helicity; per cluster: population, mean
   helicity, helix profile per residue, a representative structure (PDB: the frame closest to
   the cluster's median z); confusion against DSSP states (all-coil: no residue in 'H';
   partly helical: 1 to 7 of the 15 residues; mostly helical: 8 or more, i.e. helicity >= 0.5);
   ``gmvae-cv explain`` on the run.

Writes figures and ``summary.json`` into OUT (default ``docs/figures/aaqaa3``) and the MD and the
trained run into WORK (default ``aaqaa3_work``). ``--md DIR`` reuses trajectories made with the
same settings (``DIR/helix_s0``, ``DIR/extended_s1`` with their ``simulation.json``).

Measured (2-core shared machine, load 9-34, OpenMM 8.5 CPU platform): the MD costs 132 steps per
CPU-second per run (46 ns/day per free core at 4 fs; 10 ns/day at 2 fs without HMR, wall, at load
9); the stored result (``docs/figures/aaqaa3/summary.json``) comes from two runs stopped at
73,700 / 74,000 of 100,000 steps (0.295 ns each, 1477 frames; the rest would have taken another
hour at that load), reused with ``--md``; the analysis took 9 min wall (3 selection fits 332 s,
the final fit 63 s, explain 9 s). With these two runs the state count saturates at k_max = 6 for
all three seeds: the helix-start and extended-start runs never exchange and the extended chain
drifts one way through its coil clusters, so every cluster is its own metastable set; k = 6 is a
lower bound, used as such.

Usage: ``python examples/aaqaa3.py [--out DIR] [--work DIR] [--md DIR] [--steps N] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

RUNS = (("helix", 0), ("extended", 1))
STATE_NAMES = ("all-coil", "partly helical", "mostly helical")
KB = 0.008314462618  # kJ/mol/K


def dssp_state(n_helical: np.ndarray, n_residues: int = 15) -> np.ndarray:
    """0 all-coil (no residue 'H'), 1 partly helical (< half the residues), 2 mostly helical (>= half)."""
    return np.where(n_helical == 0, 0, np.where(n_helical < 0.5 * n_residues, 1, 2)).astype(np.int64)


def _md(md_dir: Path, steps: int, temperature: float, report: int, equil: int) -> list[dict]:
    from gmvae_cv.systems import AAQAA3

    out = []
    for start, seed in RUNS:
        d = md_dir / f"{start}_s{seed}"
        meta_f = d / "simulation.json"
        if not meta_f.is_file() and (d / "traj.dcd").is_file() and (d / "topology.pdb").is_file():
            # trajectories given as they are (e.g. a run stopped early): used, described by --md-note
            out.append({"start": start, "dir": d, "meta": None, "reused": True})
            continue
        if meta_f.is_file():
            meta = json.loads(meta_f.read_text())
            if (meta.get("n_steps") == steps and meta.get("temperature_K") == temperature
                    and meta.get("report_interval_steps") == report and meta.get("seed") == seed):
                out.append({"start": start, "dir": d, "meta": meta, "reused": True})
                continue
        pep = AAQAA3(start, hydrogen_mass=1.5)
        pep.simulate(steps, report, d, temperature=temperature, timestep=0.004, friction=1.0, seed=seed,
                     platform="CPU", equilibration_steps=equil)
        out.append({"start": start, "dir": d, "meta": json.loads(meta_f.read_text()), "reused": False})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/figures/aaqaa3")
    ap.add_argument("--work", default="aaqaa3_work")
    ap.add_argument("--md", default=None, help="folder with helix_s0/ and extended_s1/ runs to reuse (default WORK/md)")
    ap.add_argument("--steps", type=int, default=100_000, help="MD steps per run (4 fs; default 100000 = 0.4 ns)")
    ap.add_argument("--temperature", type=float, default=340.0)
    ap.add_argument("--md-note", default=None, help="text recorded in summary.json about trajectories given with --md")
    ap.add_argument("--quick", action="store_true", help="a few ps of MD and a few epochs (for tests)")
    args = ap.parse_args(argv)

    import mdtraj as md

    from gmvae_cv import cluster_confusion, fit
    from gmvae_cv.analysis.explain import explain
    from gmvae_cv.learn.selection import select_n_clusters
    from gmvae_cv.features.peptide import backbone_torsions, feature_residues
    from gmvae_cv.analysis.plots import _pyplot, plot_confusion_matrix, save_figure
    from gmvae_cv.systems import dssp_helicity

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    steps = 1000 if args.quick else args.steps
    report = 10 if args.quick else 100
    equil = 0 if args.quick else 2500
    md_dir = Path(args.md) if args.md else work / "md"
    t0 = time.perf_counter()
    runs = _md(md_dir, steps, args.temperature, report, equil)
    md_wall = time.perf_counter() - t0

    # features and DSSP
    trajs, xs, hel, is_h = [], [], [], []
    spec = None
    for r in runs:
        tr = md.load(str(r["dir"] / "traj.dcd"), top=str(r["dir"] / "topology.pdb"))
        spec = spec or backbone_torsions(tr.topology)
        trajs.append(tr)
        xs.append(spec.compute(tr))
        h, per_res = dssp_helicity(tr)
        hel.append(h)
        is_h.append(per_res)
    x, helicity, is_helix = np.concatenate(xs), np.concatenate(hel), np.concatenate(is_h)
    n_res = is_helix.shape[1]
    residues = list(dict.fromkeys(feature_residues(spec)))
    n_helical = is_helix.sum(axis=1)
    states = dssp_state(n_helical, n_res)
    start_of_frame = np.concatenate([[i] * len(a) for i, a in enumerate(xs)])

    # number of states
    fit_kw = dict(latent_dim=2, batch_size=256, lr=3e-3, epochs=3 if args.quick else 80, patience=20)
    t0 = time.perf_counter()
    lag = 2 if args.quick else 10
    sel = select_n_clusters(xs, k_max=3 if args.quick else 6, lag=lag, seeds=(0,) if args.quick else (0, 1, 2), **fit_kw)
    select_wall = time.perf_counter() - t0
    k = sel["k"]

    # the GMVAE with that k
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # fit(overwrite=True) would load the previous run's best.ckpt
    t0 = time.perf_counter()
    run = fit(xs, k=k, seed=0, feature_spec=spec, out=run_dir, progress=False, **fit_kw)
    fit_wall = time.perf_counter() - t0
    res = run.transform(x)
    z, clusters, probs = res["z"], res["clusters"], res["cluster_probs"]
    T = args.temperature
    kT = KB * T

    plt = _pyplot()
    # latent free energy of the sampled frames, and the frames coloured by helicity
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), constrained_layout=True)
    h2, ex, ey = np.histogram2d(z[:, 0], z[:, 1], bins=40)
    with np.errstate(divide="ignore"):
        f = -kT * np.log(h2.T / h2.sum())
    f -= np.nanmin(f[np.isfinite(f)])
    cx, cy = 0.5 * (ex[1:] + ex[:-1]), 0.5 * (ey[1:] + ey[:-1])
    cs = axes[0].contourf(cx, cy, np.where(np.isfinite(f), f, np.nan), levels=np.linspace(0, 6 * kT, 13), cmap="viridis")
    fig.colorbar(cs, ax=axes[0], label="F (kJ/mol), sampled frames")
    sc = axes[1].scatter(z[:, 0], z[:, 1], c=helicity, s=4, cmap="coolwarm", vmin=0, vmax=13 / 15)
    fig.colorbar(sc, ax=axes[1], label="DSSP helicity (fraction of 15 residues)")
    for c in range(k):
        if np.any(clusters == c):
            m = np.median(z[clusters == c], axis=0)
            for ax in axes:
                ax.annotate(str(c), m, fontsize=12, weight="bold", color="k")
    for ax in axes:
        ax.set_xlabel("z0")
        ax.set_ylabel("z1")
    axes[0].set_title(f"latent free energy at {T:g} K (numbers: clusters)")
    axes[1].set_title("frames coloured by helicity")
    save_figure(fig, out / "latent_fes_helicity.png")

    # per cluster: population, helicity, helix profile, representative structure
    per_cluster = {}
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for c in range(k):
        sel_c = clusters == c
        if not sel_c.any():
            per_cluster[str(c)] = {"population": 0.0}
            continue
        med = np.median(z[sel_c], axis=0)
        idx = np.flatnonzero(sel_c)[np.argmin(np.linalg.norm(z[sel_c] - med, axis=1))]
        ti = int(start_of_frame[idx])
        fi = int(idx - np.flatnonzero(start_of_frame == ti)[0])
        trajs[ti][fi].save_pdb(str(out / f"cluster_{c}_representative.pdb"))
        profile = is_helix[sel_c].mean(axis=0)
        per_cluster[str(c)] = {
            "population": float(sel_c.mean()),
            "n_frames": int(sel_c.sum()),
            "mean_helicity": float(helicity[sel_c].mean()),
            "helicity_std": float(helicity[sel_c].std()),
            "helix_profile": profile.tolist(),
            "dssp_state_fractions": {n: float(np.mean(states[sel_c] == i)) for i, n in enumerate(STATE_NAMES)},
            "frames_from_start": {RUNS[i][0]: int(np.sum(sel_c & (start_of_frame == i))) for i in range(len(RUNS))},
            "representative": {"file": f"cluster_{c}_representative.pdb", "run": RUNS[ti][0], "frame": fi,
                               "helicity": float(helicity[idx]), "q_y": float(probs[idx, c])},
        }
        ax.plot(range(n_res), profile, "o-", label=f"cluster {c} ({sel_c.mean():.0%}, <h> {helicity[sel_c].mean():.2f})")
    ax.set_xticks(range(n_res), residues, rotation=90)
    ax.set_ylabel("fraction of frames in DSSP 'H'")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("helix profile per cluster")
    save_figure(fig, out / "helix_profile.png")

    cc = cluster_confusion(states, clusters, 3, k)
    plot_confusion_matrix(cc["matrix"], out / "confusion_dssp.png", row_labels=list(STATE_NAMES),
                          col_labels=[f"c{j}" for j in range(k)],
                          title="DSSP states (coil: 0, partly: 1-7, mostly: >= 8 of 15 in H) vs clusters")

    # k selection figure: the transition spectrum of each seed's k_max model, per connected set
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, ps in enumerate(sel["per_seed"]):
        for j, st in enumerate(ps["sets"]):
            ev = st["eigenvalues"]
            ax.plot(np.arange(1, len(ev) + 1) + 0.08 * i, ev, "o-" if j == 0 else "s--", color=f"C{i}",
                    label=f"seed {ps['seed']}: {ps['n_states']} states" if j == 0 else None)
    ax.axhline(np.exp(-1), color="0.5", ls=":", label="1/e")
    ax.set_xlabel("eigenvalue index (per connected set)")
    ax.set_ylabel(f"eigenvalue of T({lag} frames)")
    ax.legend(fontsize=8)
    ax.set_title(f"metastable states of the k_max = {sel['k_max']} clusters: k = {k}")
    save_figure(fig, out / "select_k.png")

    t0 = time.perf_counter()
    ex_rep = explain(run, x, out=out / "explain")
    explain_wall = time.perf_counter() - t0

    md_cost = [{"start": r["start"], "reused": r["reused"], "n_steps": r["meta"]["n_steps"],
                "simulated_ns": r["meta"]["n_steps"] * r["meta"]["timestep_ps"] / 1000.0,
                "wall_s": r["meta"]["performance"]["wall_s"], "ns_per_day": r["meta"]["performance"]["ns_per_day"],
                "platform": r["meta"]["platform"]["name"]} if r["meta"] is not None else
               {"start": r["start"], "reused": True, "n_frames": int(len(xs[i])),
                "simulated_ns": len(xs[i]) * report * 0.004 / 1000.0, "metadata": "none (given trajectory)"}
               for i, r in enumerate(runs)]
    summary = {
        "system": "ACE-(AAQAA)3-NME, amber14 (ff14SB) + GBn2, 183 atoms",
        "md": {"temperature_K": T, "timestep_fs": 4.0, "hydrogen_mass_amu": 1.5, "friction_per_ps": 1.0,
               "frame_interval_ps": report * 0.004, "runs": md_cost, "wall_s_this_invocation": md_wall,
               "note": args.md_note},
        "n_frames": int(len(x)),
        "n_features": int(x.shape[1]),
        "dssp": {"helix_codes": "simplified DSSP 'H' (alpha, 3-10, pi)", "max_helicity_possible": (n_res - 2) / n_res,
                 "state_thresholds": "all-coil: 0 residues in H; partly helical: 1-7; mostly helical: >= 8 (of 15)",
                 "state_fractions": {n: float(np.mean(states == i)) for i, n in enumerate(STATE_NAMES)},
                 "mean_helicity_per_start": {RUNS[i][0]: float(helicity[start_of_frame == i].mean()) for i in range(len(RUNS))},
                 "helix_fraction_per_residue": dict(zip(residues, is_helix.mean(axis=0).tolist()))},
        "selection": sel | {"wall_s": select_wall},
        "k": k,
        "training": {"wall_s": fit_wall, **{kk: run.info["training"][kk] for kk in ("best_epoch", "best_loss") if kk in run.info["training"]}},
        "clusters": per_cluster,
        "confusion_dssp": {"rows": list(STATE_NAMES), "matrix": cc["matrix"].tolist(), "accuracy": cc["accuracy"],
                           "purity": cc["purity"].tolist()},
        "explain": {"ranking_top5": {j: r[:5] for j, r in ex_rep["ranking"].items()},
                    "residue_ranking_top5": {j: r[:5] for j, r in ex_rep["residues"]["ranking"].items()} if ex_rep["residues"] else None,
                    "wall_s": explain_wall},
        "quick": bool(args.quick),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"AAQAA3: {len(x)} frames, k = {k}; clusters " + "; ".join(
        f"{c}: {v['population']:.2f} pop, <h> {v.get('mean_helicity', float('nan')):.2f}" for c, v in per_cluster.items())
        + f"; figures in {out}/")
    return summary


if __name__ == "__main__":
    main()
