"""The seed talk's 25D -> 2D result: a GMVAE (n_clusters=4, D=2) on alanine dipeptide's heavy-atom distances.

Alanine dipeptide in vacuum (amber14, Langevin, 300 K by default) is simulated with
:class:`gmvae_cv.systems.AlanineDipeptide` (or a trajectory of your own is read with ``--traj``
and ``--top``), its 25 heavy-atom distances (1-2 and 1-3 pairs left out) train a GMVAE with k=4
clusters and a 2D latent space, and the latent space is set next to the Ramachandran plot of
the same frames. An MSM on the GMVAE clusters gives implied timescales and a Chapman-Kolmogorov
test.

Writes to OUT (default ``alanine_dipeptide_out/``):
- ``fes.png``: free energy -kT ln p of the latent z (2D histogram) next to the Ramachandran
  free energy (phi, psi from mdtraj) of the same frames;
- ``clusters.png``: the latent space and the Ramachandran plot, frames coloured by cluster;
- ``its.png``, ``ck.png``, ``msm.json``: the MSM on the GMVAE clusters;
- ``summary.json``: FES minima (and the basin of the Ramachandran minimum), per-cluster
  population and mean (phi, psi), ITS, CK agreement, training summary.

Usage: ``python examples/alanine_dipeptide.py [--out DIR] [--quick] [--ns NS] [--temperature K]
[--traj FILE ... --top PDB --dt PS]``
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

_KB = 0.008314462618  # kJ/mol/K


def _free_energy(a: np.ndarray, b: np.ndarray, bins: int, rng, kT: float):
    """-kT ln p on a 2D histogram (kJ/mol, minimum 0; empty bins nan), with the bin edges."""
    h, ea, eb = np.histogram2d(a, b, bins=bins, range=rng)
    with np.errstate(divide="ignore"):
        f = -kT * np.log(h / h.sum())
    f[~np.isfinite(f)] = np.nan
    return f - np.nanmin(f), ea, eb, h


def _circular_mean_deg(a: np.ndarray) -> float:
    return float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(a))))))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="alanine_dipeptide_out")
    ap.add_argument("--quick", action="store_true", help="a short simulation and few epochs (for tests)")
    ap.add_argument("--ns", type=float, default=None, help="simulated time, ns (default 4; 0.4 with --quick)")
    ap.add_argument("--temperature", type=float, default=300.0, help="K, of the simulation and of kT in the plots")
    ap.add_argument("--traj", nargs="+", default=None, help="your own trajectory file(s) instead of simulating")
    ap.add_argument("--top", default=None, help="topology (PDB) of --traj")
    ap.add_argument("--dt", type=float, default=None, help="ps between frames of --traj (required with it)")
    args = ap.parse_args(argv)
    if (args.traj is None) != (args.top is None):
        ap.error("--traj and --top go together")
    if args.traj is not None and not (args.dt or 0) > 0:
        # not read from the file: mdtraj reports 1 ps for the 0.1 ps frames of an OpenMM DCD
        ap.error("--traj needs --dt, the time between frames in ps (> 0)")
    import mdtraj as md

    from gmvae_cv import (
        AlanineDipeptide,
        MarkovAnalysis,
        alanine_basin,
        alanine_heavy_atom_distances,
        fit,
        gmvae_states,
        load_trajectory_features,
        phi_psi,
    )
    from gmvae_cv.analysis.plots import _pyplot, save_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = 25 if args.quick else 150
    if args.traj is None:
        ns = args.ns if args.ns is not None else (0.4 if args.quick else 4.0)
        report_interval = 50 if args.quick else 100  # 0.1 ps / 0.2 ps per frame
        n_steps = int(round(ns * 1e6 / 2 / report_interval)) * report_interval
        md_run = AlanineDipeptide().simulate(n_steps, report_interval, out / "md", temperature=args.temperature, seed=0)
        traj_files, top = [md_run.trajectory], md_run.topology
        dt = report_interval * 0.002
        source = {"simulated_ns": n_steps * 0.002 / 1000.0, "temperature_K": args.temperature, "platform": md_run.platform}
    else:
        traj_files, top = [Path(f) for f in args.traj], Path(args.top)
        source = {"trajectories": [str(f) for f in traj_files], "topology": str(top), "temperature_K": args.temperature}
    spec = alanine_heavy_atom_distances(None if args.traj is None else top)
    xs = load_trajectory_features(traj_files, top, spec)
    trajs = [md.load(str(f), top=str(top)) for f in traj_files]
    if args.traj is not None:
        dt = args.dt
    angles = np.concatenate([phi_psi(t, unit="deg") for t in trajs])
    phi, psi = angles[:, 0], angles[:, 1]
    basin = alanine_basin(np.radians(phi), np.radians(psi))  # 0 C7eq, 1 C7ax, -1 other

    run_dir = out / "run"
    if run_dir.exists():
        # fit(overwrite=True) leaves the old checkpoints there and loads the old best.ckpt
        shutil.rmtree(run_dir)
    run = fit(xs, n_clusters=4, latent_dim=2, epochs=epochs, batch_size=500, lr=3e-3, seed=0, feature_spec=spec,
              progress=not args.quick, out=run_dir)
    x = np.concatenate(xs)
    res = run.transform(x)
    z, clusters = res["z"], res["clusters"]
    kT = _KB * args.temperature

    # free energies: latent space and Ramachandran, same frames
    pad = 0.05 * (z.max(axis=0) - z.min(axis=0))
    zr = [[z[:, 0].min() - pad[0], z[:, 0].max() + pad[0]], [z[:, 1].min() - pad[1], z[:, 1].max() + pad[1]]]
    bins = 40 if len(x) < 10_000 else 60
    fz, ez0, ez1, _ = _free_energy(z[:, 0], z[:, 1], bins, zr, kT)
    fr, ephi, epsi, _ = _free_energy(phi, psi, bins, [[-180, 180], [-180, 180]], kT)
    iz = np.unravel_index(np.nanargmin(fz), fz.shape)
    ir = np.unravel_index(np.nanargmin(fr), fr.shape)
    z_min = [0.5 * (ez0[iz[0]] + ez0[iz[0] + 1]), 0.5 * (ez1[iz[1]] + ez1[iz[1] + 1])]
    rama_min = [0.5 * (ephi[ir[0]] + ephi[ir[0] + 1]), 0.5 * (epsi[ir[1]] + epsi[ir[1] + 1])]
    rama_min_basin = int(alanine_basin(np.radians([rama_min[0]]), np.radians([rama_min[1]]))[0])
    # where do the frames of the latent minimum bin lie in the Ramachandran plot?
    in_zmin = ((np.digitize(z[:, 0], ez0) - 1) == iz[0]) & ((np.digitize(z[:, 1], ez1) - 1) == iz[1])

    plt = _pyplot()
    top_f = 2.0 * np.ceil(4.0 * kT)  # about 8 kT, in whole kJ/mol
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"wspace": 0.3})
    for ax, (f, e0, e1, xl, yl, title) in zip(axes, (
        (fz, ez0, ez1, "z0", "z1", "GMVAE latent space (25 distances -> 2D)"),
        (fr, ephi, epsi, "phi (deg)", "psi (deg)", "Ramachandran plot, same frames"),
    )):
        pm = ax.pcolormesh(e0, e1, f.T, vmin=0, vmax=top_f, cmap="viridis")
        fig.colorbar(pm, ax=ax, label="-kT ln p (kJ/mol)")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title, fontsize=10)
    axes[0].plot(*z_min, "r+", markersize=12)
    axes[1].plot(*rama_min, "r+", markersize=12)
    fig.suptitle(f"free energy of {len(x)} frames at {args.temperature:g} K (+: minimum)", fontsize=10)
    save_figure(fig, out / "fes.png")

    sel = np.random.default_rng(0).choice(len(x), min(6000, len(x)), replace=False)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"wspace": 0.25})
    axes[0].scatter(z[sel, 0], z[sel, 1], c=clusters[sel], cmap="tab10", vmin=0, vmax=9, s=3)
    axes[0].set_xlabel("z0")
    axes[0].set_ylabel("z1")
    axes[0].set_title("latent space by GMVAE cluster")
    for j in range(4):
        pick = sel[clusters[sel] == j]
        axes[1].scatter(phi[pick], psi[pick], color=f"C{j}", s=3, label=f"cluster {j}")
    axes[1].set_xlim(-180, 180)
    axes[1].set_ylim(-180, 180)
    axes[1].set_xlabel("phi (deg)")
    axes[1].set_ylabel("psi (deg)")
    axes[1].legend(fontsize=8, markerscale=3)
    axes[1].set_title("Ramachandran plot by GMVAE cluster")
    save_figure(fig, out / "clusters.png")

    # MSM on the cluster trajectories
    dtrajs = gmvae_states(run, xs)
    longest = max(len(d) for d in dtrajs)
    lags = [lag for lag in (1, 2, 5, 10, 20, 50) if lag < longest // 4] or [1]
    lagtime = lags[min(3, len(lags) - 1)]
    msm = MarkovAnalysis(lags, lagtime=lagtime, dt=dt, time_unit="ps", n_samples=20 if args.quick else 100,
                         n_metastable=2).fit(dtrajs).fetch_model()
    msm.plot_implied_timescales(out / "its.png", n_processes=len(msm.active_set) - 1,
                                title="implied timescales of the GMVAE-cluster MSM")
    msm.plot_ck_test(out / "ck.png")
    msm.save(out / "msm.json")
    ck_dev = np.abs(msm.ck_predictions - msm.ck_estimates)[1:]

    names = {0: "C7eq", 1: "C7ax", -1: "other"}
    summary = {
        **source,
        "n_frames": int(len(x)),
        "n_features": int(x.shape[1]),
        "dt_ps": dt,
        "frames_in_core": {names[b]: int(np.sum(basin == b)) for b in (0, 1, -1)},
        "ramachandran_fes_minimum_deg": rama_min,
        "ramachandran_fes_minimum_basin": names[rama_min_basin],
        "latent_fes_minimum": z_min,
        "latent_minimum_frames_in_c7eq": float(np.mean(basin[in_zmin] == 0)),
        "clusters": {
            str(j): {
                "population": float(np.mean(clusters == j)),
                "mean_phi_psi_deg": [_circular_mean_deg(phi[clusters == j]), _circular_mean_deg(psi[clusters == j])]
                if np.any(clusters == j) else None,
                "fraction_in_c7eq": float(np.mean(basin[clusters == j] == 0)) if np.any(clusters == j) else None,
            }
            for j in range(4)
        },
        "msm": {
            "lagtime_ps": lagtime * dt,
            "active_set": msm.active_set.astype(int).tolist(),
            "lagtimes_ps": (msm.lagtimes * dt).tolist(),
            "slowest_its_ps": [None if not np.isfinite(t) else float(t) for t in msm.timescales[:, 0]],
            "slowest_its_at_model_lag_ps": msm.slowest_timescale(),
            "ck_max_abs_deviation": float(ck_dev.max()) if ck_dev.size else None,
            "ck_mean_abs_deviation": float(ck_dev.mean()) if ck_dev.size else None,
        },
        "training": run.info["training"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"alanine dipeptide: {len(x)} frames; Ramachandran FES minimum at ({rama_min[0]:.0f}, {rama_min[1]:.0f}) deg "
          f"({names[rama_min_basin]}); slowest cluster-MSM ITS {msm.slowest_timescale():.3g} ps at lag {lagtime * dt:g} ps; "
          f"figures in {out}/")
    return summary


if __name__ == "__main__":
    main()
