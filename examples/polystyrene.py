"""Polystyrene: a GMVAE CV on one syndiotactic chain's backbone torsions, zigzag (TT) vs helix (TTGG).

The polymorphs of syndiotactic polystyrene differ in chain conformation: planar zigzag chains
(alpha, beta; every diad tt) and TTGG helices (gamma, delta). This example takes one chain of
``--monomers`` units (default 10) in vacuum with the TraPPE-UA united-atom force field
(:class:`gmvae_cv.systems.Polystyrene`) and

1. runs unbiased Langevin MD at ``--temperature`` (default 300 K, 4 fs steps, frames every
   1 ps): one run from the all-trans zigzag, one from the TTGG helix (the zigzag of an isolated
   chain unravels within tens of ps at 300 K; the helix persists), ``--train-ns`` each;
2. trains a GMVAE (k = 3, 2D latent space) on the sines and cosines of the 2N - 2 backbone
   torsions (:func:`gmvae_cv.systems.polystyrene.polystyrene_backbone_torsions`);
3. plots the latent free energy, the latent space coloured by the TT and TTGG fractions, and the
   confusion matrix of the clusters against the conformer labels
   (:func:`gmvae_cv.systems.polystyrene.chain_state`: zigzag-rich, helix-rich, other);
4. exports the CV and checks the export (:func:`gmvae_cv.export`, :func:`gmvae_cv.check_export`);
5. runs well-tempered metadynamics on the 2D CV from the helix (:func:`gmvae_cv.run_metadynamics`)
   and an unbiased run of the same length from the same start, and counts the transitions
   between the zigzag-rich and helix-rich core sets per ns in both.

Writes to OUT (default ``polystyrene_out/``): ``md_zigzag/``, ``md_helix/`` (training runs),
``run/`` (GMVAE), ``exp/`` (export), ``bias/`` (metadynamics), ``md_unbiased/`` (comparison),
``latent.png``, ``confusion.png``, ``transitions.png`` and ``summary.json`` (every number of the
figures, the costs in wall seconds, the commands' parameters). ``--figures DIR`` also copies the
figures and the JSON there.

Cost, measured on a shared, heavily loaded 2-core machine with three seeds running side by side
(``docs/figures/polystyrene/README.md``, ``seeds.json``): the full form (1 ns per training run,
150 epochs, 1 ns biased and 1 ns unbiased) took 1988-2637 s per seed: 750 s training MD, 480 s
GMVAE, 100 s export and check, 535-745 s metadynamics (122-168 ns/day), 80-520 s unbiased MD.
``--quick`` (20 ps per run, 5 epochs, 10 ps biased and unbiased) is the form the tests run
(70-240 s there, by the machine's load).

Usage: ``python examples/polystyrene.py [--out DIR] [--quick] [--monomers N] [--temperature K]
[--train-ns NS] [--bias-ns NS] [--seed S] [--figures DIR]``; ``--summarize OUT0 OUT1 OUT2
--figures DIR`` puts finished runs of several seeds side by side (``DIR/seeds.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

_KB = 0.008314462618  # kJ/mol/K
# All bonds constrained, united atoms. Measured (NVE, 20 ps, Reference, from a 300 K state): total
# energy std 0.14 / 0.31 / 0.66 kJ/mol and drift -20 / -27 / -73 kJ/mol/ns at 2 / 4 / 5 fs.
_TIMESTEP_PS = 0.004
_FRAME_STEPS = 250  # 1 ps per frame
# For 81 united-atom sites the Reference platform outruns CPU (measured 6095 vs 3244 steps/s
# unloaded); the timed probe is fooled by a loaded machine, so the example names the platform.
_PLATFORM = "Reference"


def _free_energy(a: np.ndarray, b: np.ndarray, bins: int, rng, kT: float):
    """-kT ln p on a 2D histogram (kJ/mol, minimum 0; empty bins nan), with the bin edges."""
    h, ea, eb = np.histogram2d(a, b, bins=bins, range=rng)
    with np.errstate(divide="ignore"):
        f = -kT * np.log(h / h.sum())
    f[~np.isfinite(f)] = np.nan
    return f - np.nanmin(f), ea, eb


def _transitions(labels: np.ndarray) -> int:
    """Number of switches between core sets 0 and 1 (frames in neither, -1, are skipped)."""
    core = labels[labels >= 0]
    return int(np.count_nonzero(np.diff(core) != 0))


def _state_summary(phi: np.ndarray, ns: float) -> dict:
    """Core-set occupancy, transitions and TT/TTGG statistics of backbone torsions ``phi`` (rad)."""
    from gmvae_cv.systems.polystyrene import chain_state, tt_fraction, ttgg_fraction

    labels = chain_state(phi)
    tt, ttgg = tt_fraction(phi), ttgg_fraction(phi)
    in_helix = labels == 1
    exits = int(np.count_nonzero(in_helix[:-1] & ~in_helix[1:]))
    first_exit = next((k for k in range(1, len(labels)) if in_helix[k - 1] and not in_helix[k]), None)
    return {
        "transitions": _transitions(labels),
        "transitions_per_ns": _transitions(labels) / ns,
        "fraction_zigzag_rich": float(np.mean(labels == 0)),
        "fraction_helix_rich": float(np.mean(labels == 1)),
        "fraction_other": float(np.mean(labels == -1)),
        "exits_from_helix_rich": exits,
        "first_exit_from_helix_rich_ps": None if first_exit is None else (first_exit + 1) * _FRAME_STEPS * _TIMESTEP_PS,
        "mean_tt_fraction": float(tt.mean()),
        "max_tt_fraction": float(tt.max()),
        "mean_ttgg_fraction": float(ttgg.mean()),
        "ns": ns,
    }


def _bias_and_unbiased_torsions(out: Path, raw) -> tuple[np.ndarray, np.ndarray]:
    """Backbone torsions (rad) of OUT's metadynamics COLVAR and of its unbiased comparison run."""
    from gmvae_cv import load_trajectory_features, read_plumed

    colvar = read_plumed(out / "bias" / "COLVAR")
    phi_b = np.column_stack([colvar[name] for name in raw.names])
    phi_u = load_trajectory_features([out / "md_unbiased" / "traj.dcd"], out / "md_unbiased" / "topology.pdb", raw)[0]
    return phi_b, phi_u


def summarize(dirs, dest) -> dict:
    """Seeds side by side: every OUT's summary.json numbers, recomputed from its runs, with mean and spread."""
    from gmvae_cv.systems.polystyrene import polystyrene_backbone_torsions

    rows = []
    for d in map(Path, dirs):
        s = json.loads((d / "summary.json").read_text())
        raw = polystyrene_backbone_torsions(d / "md_unbiased" / "topology.pdb", transform="raw")
        phi_b, phi_u = _bias_and_unbiased_torsions(d, raw)
        ns = s["parameters"]["bias_ns"]
        rows.append({"out": str(d), "seed": s["parameters"]["seed"], "cluster_accuracy": s["confusion"]["accuracy"],
                     "confusion": s["confusion"]["matrix"], "export_check_passed": s["export_check_passed"],
                     "metadynamics": {**_state_summary(phi_b, ns), "ns_per_day": s["metadynamics"]["ns_per_day"]},
                     "unbiased": {**_state_summary(phi_u, ns), "ns_per_day": s["unbiased"]["ns_per_day"]},
                     "wall_s": s["wall_s"], "training_labels": s["training_labels"]})
    spread = {}
    for part in ("metadynamics", "unbiased"):
        for key in ("transitions_per_ns", "fraction_helix_rich", "fraction_zigzag_rich", "exits_from_helix_rich",
                    "mean_tt_fraction", "max_tt_fraction", "mean_ttgg_fraction", "ns_per_day"):
            v = np.array([r[part][key] for r in rows], dtype=float)
            spread[f"{part}.{key}"] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                                       "min": float(v.min()), "max": float(v.max())}
    v = np.array([r["cluster_accuracy"] for r in rows])
    spread["cluster_accuracy"] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                                  "min": float(v.min()), "max": float(v.max())}
    result = {"n_seeds": len(rows), "seeds": rows, "spread": spread,
              "machine_note": "wall times and speeds from a shared 2-core machine running the seeds side by side"}
    Path(dest).mkdir(parents=True, exist_ok=True)
    (Path(dest) / "seeds.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="polystyrene_out")
    ap.add_argument("--quick", action="store_true", help="short runs and few epochs (for tests)")
    ap.add_argument("--monomers", type=int, default=10)
    ap.add_argument("--temperature", type=float, default=300.0, help="K (all runs)")
    ap.add_argument("--train-ns", type=float, default=None, help="ns per training run (default 1; 0.02 with --quick)")
    ap.add_argument("--bias-ns", type=float, default=None, help="ns biased and unbiased (default 1; 0.01 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 150; 5 with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", default=None, help="also copy the figures and summary.json into this folder")
    ap.add_argument("--summarize", nargs="+", default=None, metavar="OUT",
                    help="no runs: put finished OUT folders (one per seed) side by side in FIGURES/seeds.json")
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize, args.figures or ".")

    import mdtraj as md

    from gmvae_cv import check_export, cluster_confusion, export, fit, load_cv, load_trajectory_features, run_metadynamics
    from gmvae_cv.analysis.plots import _pyplot, save_figure
    from gmvae_cv.systems.polystyrene import (
        CHAIN_STATE_NAMES,
        Polystyrene,
        chain_state,
        polystyrene_backbone_torsions,
        tt_fraction,
        ttgg_fraction,
    )

    t_start = time.perf_counter()
    wall: dict[str, float] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_ns = args.train_ns if args.train_ns is not None else (0.02 if args.quick else 1.0)
    bias_ns = args.bias_ns if args.bias_ns is not None else (0.01 if args.quick else 1.0)
    epochs = args.epochs if args.epochs is not None else (5 if args.quick else 150)
    T = args.temperature
    kT = _KB * T

    # 1. unbiased training runs from the zigzag and the helix
    t0 = time.perf_counter()
    starts = {c: Polystyrene(args.monomers, "syndiotactic", conformation=c) for c in ("zigzag", "helix")}
    n_train = int(round(train_ns * 1000 / _TIMESTEP_PS / _FRAME_STEPS)) * _FRAME_STEPS
    md_runs = {}
    for i, (name, ps) in enumerate(starts.items()):
        md_runs[name] = ps.simulate(n_train, _FRAME_STEPS, out / f"md_{name}", temperature=T, timestep=_TIMESTEP_PS,
                                    seed=args.seed + i, equilibration_steps=0, platform=_PLATFORM)
    wall["training_md"] = time.perf_counter() - t0
    top = md_runs["zigzag"].topology
    spec = polystyrene_backbone_torsions(top)
    raw = polystyrene_backbone_torsions(top, transform="raw")
    files = [md_runs[n].trajectory for n in starts]
    xs = load_trajectory_features(files, top, spec)
    phis = load_trajectory_features(files, top, raw)
    phi = np.concatenate(phis)
    labels = chain_state(phi)
    tt, ttgg = tt_fraction(phi), ttgg_fraction(phi)

    # 2. GMVAE
    t0 = time.perf_counter()
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run = fit(xs, k=3, latent_dim=2, epochs=epochs, batch_size=256, lr=3e-3, seed=args.seed, feature_spec=spec,
              progress=False, out=run_dir, sources=[str(f) for f in files])
    wall["training_gmvae"] = time.perf_counter() - t0
    x = np.concatenate(xs)
    res = run.transform(x)
    z, clusters = res["z"], res["clusters"]

    # 3. latent free energy, coloured by the conformer fractions; clusters vs labels
    plt = _pyplot()
    pad = 0.05 * (z.max(axis=0) - z.min(axis=0)) + 1e-9
    zr = [[z[:, 0].min() - pad[0], z[:, 0].max() + pad[0]], [z[:, 1].min() - pad[1], z[:, 1].max() + pad[1]]]
    fz, e0, e1 = _free_energy(z[:, 0], z[:, 1], 40, zr, kT)
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6), layout="constrained")
    pm = axes[0].pcolormesh(e0, e1, fz.T, vmin=0, vmax=2.0 * np.ceil(4.0 * kT), cmap="viridis")
    fig.colorbar(pm, ax=axes[0], label="-kT ln p (kJ/mol)")
    axes[0].set_title(f"latent free energy, {len(x)} frames at {T:g} K", fontsize=10)
    for ax, (c, lab, cmap) in zip(axes[1:], ((tt, "TT fraction (zigzag)", "coolwarm"),
                                             (ttgg, "TTGG fraction (helix)", "coolwarm"),
                                             (clusters, "GMVAE cluster", "tab10"))):
        kw = {"vmin": 0, "vmax": 9} if cmap == "tab10" else {"vmin": 0, "vmax": 1}
        sc = ax.scatter(z[:, 0], z[:, 1], c=c, cmap=cmap, s=3, **kw)
        if cmap != "tab10":
            fig.colorbar(sc, ax=ax, label=lab)
        ax.set_title(f"latent space by {lab}", fontsize=10)
    for ax in axes:
        ax.set_xlabel("z0")
        ax.set_ylabel("z1")
    save_figure(fig, out / "latent.png")

    true = np.where(labels == -1, 2, labels)  # 0 zigzag-rich, 1 helix-rich, 2 other
    conf = cluster_confusion(true, clusters.astype(np.int64), n_states=3, n_clusters=3)
    matrix = np.asarray(conf["matrix"])
    fig, ax = plt.subplots(figsize=(5.2, 4.2), layout="constrained")
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(3), [f"cluster {j}" for j in range(3)])
    ax.set_yticks(range(3), ["zigzag-rich", "helix-rich", "other"])
    ax.set_title(f"clusters vs conformer labels (accuracy {conf['accuracy']:.2f})", fontsize=10)
    save_figure(fig, out / "confusion.png")

    # 4. export and check
    t0 = time.perf_counter()
    exp_dir = out / "exp"
    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    frames = md.load(str(files[1]), top=str(top))
    export(run, exp_dir, data=x, frames=frames)
    report = check_export(exp_dir)
    wall["export_and_check"] = time.perf_counter() - t0
    if not report.passed:
        raise RuntimeError(f"{exp_dir}: the exported CV disagrees with the Python model:\n{report.to_text()}")

    # 5. metadynamics on the CV and unbiased MD of the same length, both from the helix
    t0 = time.perf_counter()
    cv = load_cv(exp_dir)
    sigma = cv.meta["cv_json"]["plumed"]["metad"]["sigma"]
    pace = _FRAME_STEPS  # one hill per ps
    n_bias = int(round(bias_ns * 1000 / _TIMESTEP_PS / pace)) * pace
    helix = starts["helix"]
    bias_dir = out / "bias"
    if bias_dir.exists():
        shutil.rmtree(bias_dir)
    bias = run_metadynamics(
        cv, bias_dir, system=helix.create_system(), topology=helix.topology, positions=helix.positions, n_steps=n_bias,
        sigma=sigma, temperature=T, height=1.2, bias_factor=10.0, pace=pace, seed=args.seed, timestep=_TIMESTEP_PS,
        colvar_stride=_FRAME_STEPS, extra_colvar=raw,
        description={"name": f"polystyrene, {args.monomers} monomers, syndiotactic, TraPPE-UA, vacuum"},
    )
    wall["metadynamics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    unb = helix.simulate(n_bias, _FRAME_STEPS, out / "md_unbiased", temperature=T, timestep=_TIMESTEP_PS,
                         seed=args.seed + 10, equilibration_steps=0, platform=_PLATFORM)
    wall["unbiased_md"] = time.perf_counter() - t0
    phi_b, phi_u = _bias_and_unbiased_torsions(out, raw)
    lab_b, lab_u = chain_state(phi_b), chain_state(phi_u)
    ns_b = ns_u = n_bias * _TIMESTEP_PS / 1000.0

    fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, layout="constrained")
    for ax, (p, lab, title) in zip(axes, ((phi_b, lab_b, "metadynamics on the GMVAE CV"),
                                          (phi_u, lab_u, "unbiased MD, same start and length"))):
        t_ps = np.arange(1, len(p) + 1) * _FRAME_STEPS * _TIMESTEP_PS
        ax.plot(t_ps, tt_fraction(p), lw=0.8, label="TT fraction")
        ax.plot(t_ps, ttgg_fraction(p), lw=0.8, label="TTGG fraction")
        ax.fill_between(t_ps, 0, 1, where=lab == 0, color="C0", alpha=0.15, step="mid", label="zigzag-rich")
        ax.fill_between(t_ps, 0, 1, where=lab == 1, color="C1", alpha=0.15, step="mid", label="helix-rich")
        ax.set_title(f"{title}: {_transitions(lab)} transitions", fontsize=10)
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8, ncol=4, loc="upper right")
    axes[1].set_xlabel("time (ps)")
    save_figure(fig, out / "transitions.png")

    wall["total"] = time.perf_counter() - t_start
    train_meta = {n: json.loads(r.metadata.read_text()) for n, r in md_runs.items()}
    summary = {
        "system": f"polystyrene, {args.monomers} monomers, syndiotactic, TraPPE-UA united atoms, vacuum",
        "machine_note": "wall times from a shared 2-core machine",
        "parameters": {"temperature_K": T, "timestep_ps": _TIMESTEP_PS, "frame_interval_ps": _FRAME_STEPS * _TIMESTEP_PS,
                       "train_ns_per_run": n_train * _TIMESTEP_PS / 1000.0, "training_starts": list(starts),
                       "epochs": epochs, "k": 3, "latent_dim": 2, "seed": args.seed,
                       "bias_ns": n_bias * _TIMESTEP_PS / 1000.0, "metad": {"sigma": list(map(float, sigma)), "height_kJ_mol": 1.2,
                                                                           "bias_factor": 10.0, "pace_steps": pace},
                       "core_sets": "chain_state defaults: zigzag-rich TT fraction >= 0.75, helix-rich TTGG fraction >= 0.6",
                       "quick": bool(args.quick)},
        "training_frames": int(len(x)),
        "training_labels": {CHAIN_STATE_NAMES[s]: int(np.sum(labels == s)) for s in (0, 1, -1)},
        "training_runs": {n: {"steps_per_s": m["performance"]["steps_per_s"], "ns_per_day": m["performance"]["ns_per_day"],
                              "platform": m["platform"]["name"], "mean_temperature_K": m["temperature_summary_K"]["mean"]}
                          for n, m in train_meta.items()},
        "clusters": {str(j): {"population": float(np.mean(clusters == j)),
                              "mean_tt_fraction": float(tt[clusters == j].mean()) if np.any(clusters == j) else None,
                              "mean_ttgg_fraction": float(ttgg[clusters == j].mean()) if np.any(clusters == j) else None}
                     for j in range(3)},
        "confusion": {"rows": ["zigzag-rich", "helix-rich", "other"], "matrix": matrix.astype(int).tolist(),
                      "accuracy": float(conf["accuracy"]), "matching": {str(k): int(v) for k, v in dict(conf["matching"]).items()}},
        "export_check_passed": bool(report.passed),
        "metadynamics": {**_state_summary(phi_b, ns_b), "n_hills": int(bias.n_hills), "ns_per_day": float(bias.ns_per_day),
                         "platform": bias.platform},
        "unbiased": {**_state_summary(phi_u, ns_u), "ns_per_day": float(unb.steps_per_second * _TIMESTEP_PS * 86.4),
                     "platform": unb.platform},
        "training": run.info["training"],
        "wall_s": wall,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.figures:
        dest = Path(args.figures)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("latent.png", "confusion.png", "transitions.png", "summary.json"):
            shutil.copyfile(out / name, dest / name)
    print(f"polystyrene: {len(x)} training frames; cluster accuracy {conf['accuracy']:.2f}; export check "
          f"{'passed' if report.passed else 'FAILED'}; transitions per ns: metadynamics "
          f"{summary['metadynamics']['transitions_per_ns']:.1f}, unbiased {summary['unbiased']['transitions_per_ns']:.1f}; "
          f"{wall['total']:.0f} s; figures in {out}/")
    return summary


if __name__ == "__main__":
    main()
