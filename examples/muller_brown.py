"""The reference code's example: a GMVAE (2D -> 1D, n_clusters=5) on the Mueller-Brown potential, and an MSM on its clusters.

Overdamped Langevin walkers on the Mueller-Brown potential (``kT = 8``, two walkers started in
each minimum; at this temperature basin A is not left in the run, B and C exchange often) give
frames (x, y). A GMVAE with k=5 clusters and a 1D latent z is trained on them; its clusters are
compared with the basins' core sets (frames below the basin's lowest saddle) and a Markov state
model is estimated on the cluster trajectories of the walkers (largest connected set: the
clusters of B and C; A is not left at this temperature, so it is not part of the MSM).
Whether the small basin C gets a cluster of its own depends on the data set and the training
length (see the comment in ``main``).

Writes to OUT (default ``muller_brown_out/``):
- ``clusters.png``: the frames on the potential's contours, coloured by GMVAE cluster;
- ``latent.png``: the frames coloured by z, and the distribution of z per core set;
- ``confusion.png``: core sets against clusters;
- ``its.png``, ``ck.png``: implied timescales and Chapman-Kolmogorov test of the cluster MSM;
- ``msm.json``: the MSM (transition matrix, timescales, CK test);
- ``summary.json``: per-basin core purity, implied timescales, CK agreement, training summary.

Usage: ``python examples/muller_brown.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

BASINS = ("A", "B", "C")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="muller_brown_out")
    ap.add_argument("--quick", action="store_true", help="less data and fewer epochs (for tests)")
    args = ap.parse_args(argv)

    from gmvae_cv import MarkovAnalysis, MullerBrown, cluster_confusion, fit, gmvae_states
    from gmvae_cv.analysis.plots import _pyplot, plot_confusion_matrix, save_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mb = MullerBrown(kT=8.0)
    # tests/learn/test_train.py's data (40000 steps, 6 walkers, simulation seed 3); the full form trains
    # 100 epochs instead of 60 and draws more Bayesian MSM samples. The small core of basin C (5 %
    # of the frames) is not resolved robustly: with simulation seeds 1, 2 or 4, or with 12 walkers,
    # the k=5 mixture splits the heavy basin B further and merges C with the near side of B (owner
    # purity of C 0.17-0.83, measured).
    steps, n_walkers, stride, epochs = 40_000, 6, 20, 60 if args.quick else 100
    traj = mb.simulate(steps, n_walkers=n_walkers, stride=stride, seed=3)
    trajs = [t for t in traj]
    x = traj.reshape(-1, 2)
    core = mb.core(x)  # 0, 1, 2 = A, B, C core sets; -1 = transition region
    run_dir = out / "run"
    if run_dir.exists():
        # fit(overwrite=True) leaves the old checkpoints there and loads the old best.ckpt
        shutil.rmtree(run_dir)
    run = fit(trajs, n_clusters=5, latent_dim=1, epochs=epochs, batch_size=500, lr=3e-3, seed=0, progress=not args.quick,
              out=run_dir)
    res = run.transform(x)
    clusters, z = res["clusters"], res["z"][:, 0]

    # clusters against core sets: each basin's most common cluster and the fraction of that
    # cluster's core frames that are in the basin (owner purity)
    sel = core >= 0
    cc = cluster_confusion(core[sel], clusters[sel], 3, 5)
    plot_confusion_matrix(cc["matrix"], out / "confusion.png", row_labels=[f"core {b}" for b in BASINS],
                          col_labels=[f"c{j}" for j in range(5)], title="Mueller-Brown core sets against GMVAE clusters")
    # every cluster with core frames, labelled by the basin holding most of them
    m = cc["matrix"]
    cluster_basin = {j: BASINS[int(m[:, j].argmax())] for j in range(5) if m[:, j].sum() > 0}

    # MSM on the cluster trajectories of the walkers
    dt = mb.dt * stride
    lags = [1, 2, 5, 10, 20, 50]
    lagtime = 10
    dtrajs = gmvae_states(run, trajs)
    msm = MarkovAnalysis(lags, lagtime=lagtime, dt=dt, time_unit="reduced time", n_samples=20 if args.quick else 100,
                         n_metastable=2).fit(dtrajs).fetch_model()
    msm.plot_implied_timescales(out / "its.png", n_processes=len(msm.active_set) - 1,
                                title="implied timescales of the GMVAE-cluster MSM")
    msm.plot_ck_test(out / "ck.png")
    msm.save(out / "msm.json")
    ck_dev = np.abs(msm.ck_predictions - msm.ck_estimates)[1:]  # lag 0 is the identity for both
    active_basins = sorted({cluster_basin[int(s)] for s in msm.active_set if int(s) in cluster_basin})
    # the core basin holding most frames of each PCCA+ set
    frame_set = msm.metastable_assignment[clusters]
    pcca_basin = {}
    for i in range(msm.n_metastable):
        counts = np.bincount(core[sel & (frame_set == i)], minlength=3)
        pcca_basin[str(i)] = BASINS[int(counts.argmax())] if counts.sum() else None

    plt = _pyplot()
    gx, gy = np.meshgrid(np.linspace(-1.6, 1.1, 220), np.linspace(-0.4, 2.1, 220))
    v = mb.potential(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    levels = np.linspace(v.min(), v.min() + 180.0, 19)
    rng = np.random.default_rng(0)
    show = rng.choice(len(x), min(6000, len(x)), replace=False)

    def contours(ax):
        ax.contour(gx, gy, np.minimum(v, levels[-1]), levels=levels, colors="0.5", linewidths=0.5)
        for name, p in zip(BASINS, mb.minima):
            ax.annotate(name, p, xytext=(6, 6), textcoords="offset points", fontsize=11, weight="bold")
        ax.plot(*mb.saddles.T, "kx", markersize=7)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_xlim(gx.min(), gx.max())
        ax.set_ylim(gy.min(), gy.max())

    fig, ax = plt.subplots(figsize=(5.8, 5.0))
    contours(ax)
    for j in range(5):
        pick = show[clusters[show] == j]
        if len(pick):
            ax.scatter(x[pick, 0], x[pick, 1], s=3, color=f"C{j}", label=f"cluster {j} ({cluster_basin.get(j, '-')})")
    ax.legend(fontsize=8, markerscale=3, loc="upper right")
    ax.set_title(f"GMVAE clusters (n_clusters=5, D=1), kT={mb.kT:g}; x: saddles")
    save_figure(fig, out / "clusters.png")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"wspace": 0.3})
    contours(axes[0])
    sc = axes[0].scatter(x[show, 0], x[show, 1], c=z[show], s=3, cmap="viridis")
    fig.colorbar(sc, ax=axes[0], label="z")
    axes[0].set_title("frames coloured by the latent z")
    bins = np.linspace(z.min(), z.max(), 80)
    for b, name in enumerate(BASINS):
        axes[1].hist(z[core == b], bins=bins, histtype="step", linewidth=1.5, label=f"core {name}")
    axes[1].hist(z[core < 0], bins=bins, histtype="step", color="0.5", label="transition region")
    axes[1].set_xlabel("z")
    axes[1].set_ylabel("frames")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=8)
    axes[1].set_title("distribution of z per core set")
    save_figure(fig, out / "latent.png")

    summary = {
        "kT": mb.kT,
        "n_walkers": n_walkers,
        "n_frames": int(len(x)),
        "core_frames": {name: int(np.sum(core == b)) for b, name in enumerate(BASINS)},
        "core_owner_purity": {name: float(cc["owner_purity"][b]) for b, name in enumerate(BASINS)},
        "core_top_cluster": {name: int(cc["top_cluster"][b]) for b, name in enumerate(BASINS)},
        "distinct_top_clusters": len(set(cc["top_cluster"].tolist())),
        "cluster_majority_basin": {str(j): b for j, b in cluster_basin.items()},
        "confusion_matrix": m.tolist(),
        "msm": {
            "dt": dt,
            "time_unit": "reduced time",
            "lagtime_frames": lagtime,
            "active_set": msm.active_set.astype(int).tolist(),
            "active_basins": active_basins,
            "pcca_set_basins": pcca_basin,
            "lagtimes_frames": msm.lagtimes.astype(int).tolist(),
            "slowest_its": [None if not np.isfinite(t) else float(t) for t in msm.timescales[:, 0]],
            "slowest_its_at_model_lag": msm.slowest_timescale(),
            "ck_max_abs_deviation": float(ck_dev.max()),
            "ck_mean_abs_deviation": float(ck_dev.mean()),
        },
        "training": run.info["training"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    pur = ", ".join(f"{k} {p:.3f}" for k, p in summary["core_owner_purity"].items())
    print(f"Mueller-Brown core purity {pur}; slowest ITS {msm.slowest_timescale():.4g} (lag {lagtime * dt:g}), "
          f"CK max deviation {ck_dev.max():.3f}; figures in {out}/")
    return summary


if __name__ == "__main__":
    main()
