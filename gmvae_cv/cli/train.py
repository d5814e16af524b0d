"""``gmvae-cv train`` (a GMVAE run directory) and ``gmvae-cv transform`` (z and cluster
probabilities of frames from a run)."""

from __future__ import annotations

from .._core.errors import GMVAEInputError
from ._common import add_input_args, int_list, read_inputs

# TrainConfig's defaults, written out so that the parser (and --help) needs no torch; the
# command passes only the options given, so TrainConfig's own defaults apply.
# tests/cli/test_cli.py checks that these equal TrainConfig().
TRAIN_DEFAULTS = {
    "lag": 0,
    "epochs": 300,
    "patience": 30,
    "batch_size": 5000,
    "lr": 1e-3,
    "entropy_weight": 0.05,
    "val_fraction": 0.2,
    "seed": 0,
    "cluster_init": "gmm",
    "qy_layers": [32],
    "qz_layers": [16],
    "pz_layers": [16],
    "px_layers": [128],
}


def add_train(sub) -> None:
    d = TRAIN_DEFAULTS
    p = sub.add_parser("train", help="train a GMVAE CV on feature matrices or trajectories")
    add_input_args(p)
    p.add_argument("--n-clusters", "--k", dest="n_clusters", type=int, required=True,
                   help="number of mixture components (clusters), >= 2 (--k is the old name)")
    p.add_argument("--latent-dim", type=int, required=True, help="latent dimension = number of CV components, >= 1")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], default="cpu",
                   help="Lightning accelerator for training (default cpu; auto picks a GPU when there is one)")
    p.add_argument("--out", required=True, help="run directory to write (resumes an unfinished run there)")
    p.add_argument("--weights", nargs="+", default=None, help="per-frame weights (.npy or text, one file per --data/--traj file)")
    p.add_argument("--lag", type=int, default=None, help=f"time lag in frames: reconstruct x(t+lag) from x(t) (default {d['lag']}: no lag)")
    p.add_argument("--epochs", type=int, default=None, help=f"maximum epochs (default {d['epochs']})")
    p.add_argument("--patience", type=int, default=None, help=f"early-stopping patience in epochs (default {d['patience']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"frames per batch (default {d['batch_size']})")
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {d['lr']})")
    p.add_argument("--entropy-weight", type=float, default=None, help=f"weight of the negative entropy of q(y|x) (default {d['entropy_weight']})")
    p.add_argument("--val-fraction", type=float, default=None, help=f"held-out fraction (default {d['val_fraction']})")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {d['seed']})")
    p.add_argument("--cluster-init", choices=["gmm", "none"], default=None,
                   help=f"start q(y|x) from a Gaussian mixture (default: {d['cluster_init']}) or at random (none)")
    for name in ("qy", "qz", "pz", "px"):
        default = d[f"{name}_layers"]
        p.add_argument(f"--{name}-layers", type=int_list, default=None,
                       help=f"hidden widths of {name}, comma-separated (default {','.join(map(str, default))})")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=train, log_dir=lambda a: a.out)


def train(args) -> int:
    from .._core.checks import load_array_file
    from .._core.quiet import route_library_loggers
    from ..learn import TrainConfig, fit

    route_library_loggers()  # Lightning is imported now

    arrays, names, spec = read_inputs(args)
    weights = None
    if args.weights is not None:
        if len(args.weights) != len(arrays):
            raise GMVAEInputError(f"--weights has {len(args.weights)} files for {len(arrays)} trajectories; expected one per trajectory")
        weights = [load_array_file(w, "weights", ndim=1, nonnegative=True) for w in args.weights]
        for wf, w, a, nm in zip(args.weights, weights, arrays, names):
            if len(w) != len(a):
                raise GMVAEInputError(f"{wf}: 'weights' has {len(w)} entries, expected {len(a)} (the frames of {nm})")
    given = {k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k) is not None}
    config = TrainConfig(n_clusters=args.n_clusters, latent_dim=args.latent_dim, **given)
    run = fit(arrays, config, weights=weights, out=args.out, sources=names, feature_spec=spec,
              progress=not args.no_progress, overwrite=args.overwrite, accelerator=args.accelerator)
    t = run.info["training"]
    print(
        f"trained GMVAE n_clusters={config.n_clusters} latent_dim={config.latent_dim} on {sum(len(a) for a in arrays)} frames: "
        f"{t['epochs_run']} epochs, best {t['monitor']} {t['best_loss']:.4f} at epoch {t['best_epoch']}"
        + (" (resumed)" if t["resumed_from_checkpoint"] else "")
    )
    print(f"wrote {args.out}/ (gmvae_run.json, model.pt, loss.png, history.json, checkpoints/)")
    return 0


def add_transform(sub) -> None:
    p = sub.add_parser("transform", help="embedding z and cluster probabilities of frames, from a trained run")
    p.add_argument("run", help="run directory written by 'gmvae-cv train'")
    add_input_args(p)
    p.add_argument("--out", required=True,
                   help="output .npz with arrays z (frames x latent_dim), cluster_probs (frames x n_clusters), clusters")
    p.add_argument("--float32", action="store_true", help="write float32 (default float64)")
    p.set_defaults(func=transform)


def transform(args) -> int:
    import io

    import numpy as np

    from .._core.files import atomic_write_bytes
    from ..learn import load_run

    run = load_run(args.run)
    if args.traj and args.spec is None and run.feature_spec is not None:
        from ..features import load_trajectory_features

        if args.top is None:
            raise GMVAEInputError("--traj needs --top (topology file)")
        arrays = load_trajectory_features(args.traj, args.top, run.feature_spec, stride=args.stride)
        names = [str(p) for p in args.traj]
    else:
        arrays, names, _ = read_inputs(args, n_features=run.n_features, expected_by=f"the model in {args.run}")
    x = np.concatenate(arrays)
    out = run.transform(x, dtype=np.float32 if args.float32 else np.float64, source=names[0] if len(names) == 1 else None)
    buf = io.BytesIO()
    np.savez(buf, **out)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}: z {out['z'].shape}, cluster_probs {out['cluster_probs'].shape}, clusters {out['clusters'].shape}")
    return 0
