"""The seed's first result: a GMVAE (1D -> 1D, n_clusters=4) on the four-well potential, next to a plain VAE.

Writes to OUT (default ``four_well_out/``):
- ``potential.png``: the potential with its wells and barriers;
- ``confusion.png``: confusion matrix of GMVAE clusters against the true wells;
- ``z_vs_x.png``: the embedding z against x, GMVAE (coloured by cluster) and VAE;
- ``summary.json``: accuracy, per-well purity, training summary.

Usage: ``python examples/four_well.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="four_well_out")
    ap.add_argument("--quick", action="store_true", help="less data and fewer epochs (for tests)")
    args = ap.parse_args(argv)
    import torch
    from mlcolvar.cvs import VariationalAutoEncoderCV

    from gmvae_cv import FourWell, cluster_confusion, fit
    from gmvae_cv.analysis.plots import _pyplot, plot_confusion_matrix, save_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fw = FourWell()
    steps, epochs = (200_000, 60) if args.quick else (400_000, 150)
    traj = fw.simulate(steps, n_walkers=4, stride=200, seed=1)
    x = traj.reshape(-1, 1)
    wells = fw.basin(x)
    run = fit([t for t in traj], n_clusters=4, latent_dim=1, epochs=epochs, batch_size=500, lr=3e-3, seed=0, progress=not args.quick, out=out / "run", overwrite=True)
    res = run.transform(x)
    cc = cluster_confusion(wells, res["clusters"], 4, 4)
    order = [cc["matching"][w] for w in range(4)]
    plot_confusion_matrix(cc["matrix"][:, order], out / "confusion.png", row_labels=[f"well {i}" for i in range(4)],
                          col_labels=[f"c{j}" for j in order], title=f"GMVAE, accuracy {cc['accuracy']:.3f}")

    # a plain VAE of comparable widths, for the seed's comparison
    from lightning import Trainer
    from mlcolvar.data import DictDataset, DictModule

    torch.manual_seed(0)
    vae = VariationalAutoEncoderCV(1, [1, 32], [128, 1])
    dm = DictModule(DictDataset({"data": torch.as_tensor(x, dtype=torch.float32)}), lengths=(0.8, 0.2), batch_size=500,
                    generator=torch.Generator().manual_seed(0))
    Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(vae, dm)
    with torch.no_grad():
        z_vae = vae(torch.as_tensor(x, dtype=torch.float32)).numpy()

    plt = _pyplot()
    grid = np.linspace(-2.2, 2.2, 500)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(grid, fw.potential(grid), "k")
    for b in fw.barriers:
        ax.axvline(b, color="grey", ls=":")
    ax.set_ylim(-0.5, 12)
    ax.set_xlabel("x")
    ax.set_ylabel("V(x) / kT")
    ax.set_title("(a) four-well potential")
    save_figure(fig, out / "potential.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sel = np.random.default_rng(0).choice(len(x), min(4000, len(x)), replace=False)
    sc = axes[0].scatter(x[sel, 0], res["z"][sel, 0], c=res["clusters"][sel], cmap="tab10", s=3, vmin=0, vmax=9)
    axes[0].set_title("(c) z via the GMVAE (colour: cluster)")
    axes[1].scatter(x[sel, 0], z_vae[sel, 0], c=wells[sel], cmap="tab10", s=3, vmin=0, vmax=9)
    axes[1].set_title("(d) z via the VAE (colour: true well)")
    for a in axes:
        a.set_xlabel("x")
        a.set_ylabel("z")
    save_figure(fig, out / "z_vs_x.png")
    summary = {
        "n_frames": int(len(x)),
        "accuracy": cc["accuracy"],
        "purity_per_well": cc["purity"].tolist(),
        "confusion_matrix": cc["matrix"].tolist(),
        "training": run.info["training"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"four-well GMVAE accuracy {cc['accuracy']:.3f}; figures in {out}/")
    return summary


if __name__ == "__main__":
    main()
