"""The seed's last result, time information: the same frames trained without and with a time lag (n_clusters=4, D=1).

A toy with a known slow coordinate, simulated by overdamped Langevin dynamics (``kT = 1``):

- ``x``, the slow coordinate: a double well ``h_x (x^2 - 1)^2`` with an 8 kT barrier;
- ``y``, the fast coordinate: a double well with a 3 kT barrier on a length scale ``b = 0.5``
  (``h_y ((y/b)^2 - 1)^2``), so that it hops many times while x stays in its well;
- three stiff harmonic coordinates ``e_1..e_3`` (fast vibrations).

The features are ``x, y + e_1, y + e_2, y + e_3``: the fast flip shows in three features, the
slow one in one (as in tests/learn/test_train.py's lag test, here from dynamics). Features are
standardised by the model, so the length scales do not matter, only how many features carry
each signal. Without a lag the GMVAE reconstructs x(t) and its 1D embedding follows the fast
flip (it explains three features); with a lag it reconstructs x(t+lag), which only the slow
coordinate predicts, and the embedding follows x.

Writes to OUT (default ``time_lagged_out/``):
- ``z_vs_coordinates.png``: z against the slow and the fast coordinate, for both models;
- ``timeseries.png``: x, y and both embeddings along one walker;
- ``summary.json``: |corr(z, slow)| and |corr(z, fast)| for both models, the autocorrelations
  of x and y at the lag, the spread of z and the reconstruction loss (a collapsed model, whose
  z carries nothing, has a tiny z spread), training summaries.

Usage: ``python examples/time_lagged.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

H_X, H_Y, B_Y, SIGMA_E = 8.0, 3.0, 0.5, 0.15


def gradient(p: np.ndarray) -> np.ndarray:
    """dV/dp of the toy, p = (x, y, e_1, e_2, e_3) per row."""
    g = np.empty_like(p)
    g[:, 0] = 4.0 * H_X * p[:, 0] * (p[:, 0] ** 2 - 1.0)
    u = p[:, 1] / B_Y
    g[:, 1] = 4.0 * H_Y * u * (u**2 - 1.0) / B_Y
    g[:, 2:] = p[:, 2:] / SIGMA_E**2
    return g


def autocorrelation(trajs: np.ndarray, lag: int) -> float:
    """Normalised autocorrelation at ``lag`` frames, pooled over walkers (rows)."""
    a = trajs - trajs.mean()
    return float(np.mean(a[:, :-lag] * a[:, lag:]) / np.mean(a * a))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.corrcoef(a, b)[0, 1]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="time_lagged_out")
    ap.add_argument("--quick", action="store_true", help="less data and fewer epochs (for tests)")
    args = ap.parse_args(argv)

    from gmvae_cv import fit
    from gmvae_cv.analysis.plots import _pyplot, save_figure
    from gmvae_cv.systems import overdamped_langevin

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_walkers, steps, epochs = (16, 250_000, 40) if args.quick else (32, 500_000, 100)
    dt, stride, lag = 1e-3, 500, 20  # frames every 0.5 time units, lag 10 time units
    # walkers start in the four (x, y) minima in turn
    x0 = np.zeros((n_walkers, 5))
    x0[:, 0] = np.where(np.arange(n_walkers) % 2, 1.0, -1.0)
    x0[:, 1] = B_Y * np.where(np.arange(n_walkers) // 2 % 2, 1.0, -1.0)
    traj = overdamped_langevin(gradient, x0, steps, dt, 1.0, stride=stride, seed=1)
    slow, fast = traj[..., 0], traj[..., 1]
    feats = [np.column_stack([w[:, 0]] + [w[:, 1] + w[:, 2 + i] for i in range(3)]) for w in traj]
    x = np.concatenate(feats)
    s, f = slow.ravel(), fast.ravel()

    kw = dict(n_clusters=4, latent_dim=1, epochs=epochs, batch_size=500, lr=3e-3, seed=0, progress=not args.quick)
    models = {}
    for name, lag_frames in (("plain", 0), ("lagged", lag)):
        run_dir = out / f"run_{name}"
        if run_dir.exists():
            # fit(overwrite=True) leaves the old checkpoints there and loads the old best.ckpt
            shutil.rmtree(run_dir)
        run = fit(feats, lag=lag_frames, out=run_dir, **kw)
        res = run.transform(x)
        z = res["z"][:, 0]
        models[name] = {
            "lag_frames": lag_frames,
            "corr_z_slow": _corr(z, s),
            "corr_z_fast": _corr(z, f),
            "z_std": float(z.std()),
            "valid_reconstruction": float(run.info["history"]["valid_reconstruction"][-1]),
            "training": run.info["training"],
            "_z": z,
            "_clusters": res["clusters"],
        }

    plt = _pyplot()
    rng = np.random.default_rng(0)
    show = rng.choice(len(x), min(5000, len(x)), replace=False)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for row, name in enumerate(("plain", "lagged")):
        m = models[name]
        title = "no lag" if name == "plain" else f"lag {lag} frames ({lag * stride * dt:g} time units)"
        for col, (coord, label, key) in enumerate(((s, "slow coordinate x", "corr_z_slow"), (f, "fast coordinate y", "corr_z_fast"))):
            ax = axes[row, col]
            ax.scatter(coord[show], m["_z"][show], c=m["_clusters"][show], cmap="tab10", vmin=0, vmax=9, s=3)
            ax.set_xlabel(label)
            ax.set_ylabel("z")
            ax.set_title(f"{title}: |corr(z, {label.split()[0]})| = {m[key]:.2f}", fontsize=10)
    fig.suptitle("GMVAE (n_clusters=4, D=1) embedding against the slow and the fast coordinate (colour: cluster)")
    fig.tight_layout()
    save_figure(fig, out / "z_vs_coordinates.png")

    n_frames = traj.shape[1]
    t = np.arange(n_frames) * stride * dt
    fig, axes = plt.subplots(4, 1, figsize=(10, 7.5), sharex=True)
    axes[0].plot(t, slow[0], lw=0.8)
    axes[0].set_ylabel("slow x")
    axes[1].plot(t, fast[0], lw=0.5, color="C1")
    axes[1].set_ylabel("fast y")
    for ax, name, color in ((axes[2], "plain", "C2"), (axes[3], "lagged", "C3")):
        ax.plot(t, models[name]["_z"][:n_frames], lw=0.6, color=color)
        ax.set_ylabel(f"z ({'no lag' if name == 'plain' else 'lagged'})")
    axes[-1].set_xlabel("time (reduced units)")
    axes[0].set_title("walker 0: the lagged model's z follows the slow coordinate")
    save_figure(fig, out / "timeseries.png")

    summary = {
        "n_walkers": n_walkers,
        "n_frames": int(len(x)),
        "frame_interval": stride * dt,
        "lag_frames": lag,
        "autocorrelation_at_lag": {"slow": autocorrelation(slow, lag), "fast": autocorrelation(fast, lag)},
        "slow_sign_changes": int(np.count_nonzero(np.diff(np.sign(slow), axis=1))),
        "fast_sign_changes_per_walker": float(np.count_nonzero(np.diff(np.sign(fast), axis=1)) / n_walkers),
        "models": {name: {k: v for k, v in m.items() if not k.startswith("_")} for name, m in models.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    p, q = models["plain"], models["lagged"]
    print(f"|corr(z, slow)|, |corr(z, fast)|: no lag {p['corr_z_slow']:.3f}, {p['corr_z_fast']:.3f}; "
          f"lag {lag} {q['corr_z_slow']:.3f}, {q['corr_z_fast']:.3f}; figures in {out}/")
    return summary


if __name__ == "__main__":
    main()
