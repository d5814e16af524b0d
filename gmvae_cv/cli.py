"""The ``gmvae-cv`` command line: parses arguments and calls the public API, nothing more.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_cmd_<name>(args)``; ``main`` dispatches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ._validation import GMVAEInputError

__all__ = ["main"]

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(add: Callable[[argparse._SubParsersAction], None]) -> Callable:
    _COMMANDS.append(add)
    return add


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# ---------------------------------------------------------------- simulate
@_command
def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a built-in system and write its trajectory",
        description="Toy systems (four-well, muller-brown) write .npy arrays; alanine-dipeptide runs "
        "OpenMM (amber14, vacuum) and writes DIR/traj.dcd, topology.pdb, state.csv, simulation.json.",
    )
    p.add_argument("system", choices=["four-well", "muller-brown", "alanine-dipeptide"], help="the system")
    p.add_argument("--steps", type=int, required=True, help="integration steps (per walker)")
    p.add_argument(
        "--out",
        required=True,
        help="toy systems: output .npy file (frames x dims); with --walkers > 1, one file per walker: "
        "STEM_<i>.npy. alanine-dipeptide: output folder",
    )
    p.add_argument("--stride", type=int, default=100, help="save every STRIDE steps (default 100)")
    p.add_argument("--walkers", type=int, default=1, help="toy systems: independent walkers (default 1)")
    p.add_argument("--kT", type=float, default=None, help="toy systems: thermal energy in the potential's units")
    p.add_argument("--dt", type=float, default=None, help="toy systems: time step in reduced units")
    p.add_argument("--temperature", type=float, default=300.0, help="alanine-dipeptide: temperature in K (default 300)")
    p.add_argument("--timestep", type=float, default=2.0, help="alanine-dipeptide: time step in fs (default 2)")
    p.add_argument("--friction", type=float, default=1.0, help="alanine-dipeptide: friction in 1/ps (default 1)")
    p.add_argument(
        "--platform", default=None, help="alanine-dipeptide: OpenMM platform (default: the faster of Reference and CPU, measured)"
    )
    p.add_argument(
        "--equilibration", type=int, default=5000, help="alanine-dipeptide: unsaved steps before the first frame (default 5000)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args) -> int:
    from tqdm import tqdm

    if args.system == "alanine-dipeptide":
        return _simulate_alanine(args, tqdm)

    from .systems import SYSTEMS

    kw = {k: v for k, v in (("kT", args.kT), ("dt", args.dt)) if v is not None}
    system = SYSTEMS[args.system](**kw)
    traj = system.simulate(args.steps, n_walkers=args.walkers, stride=args.stride, seed=args.seed, progress=tqdm)
    out = Path(args.out)
    if args.walkers == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{i}{out.suffix or '.npy'}") for i in range(args.walkers)]
    for p, t in zip(paths, traj):
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, t)
        print(f"wrote {p}: {t.shape[0]} frames x {t.shape[1]} dims")
    return 0


def _simulate_alanine(args, progress) -> int:
    from .systems import AlanineDipeptide

    if args.walkers != 1:
        raise GMVAEInputError(f"'--walkers' is {args.walkers}, expected 1 for alanine-dipeptide (run several seeds instead)")
    if args.kT is not None or args.dt is not None:
        raise GMVAEInputError("'--kT'/'--dt' are for toy systems; use --temperature (K) and --timestep (fs) for alanine-dipeptide")
    run = AlanineDipeptide().simulate(
        args.steps,
        args.stride,
        args.out,
        temperature=args.temperature,
        timestep=args.timestep / 1000.0,
        friction=args.friction,
        seed=args.seed,
        platform=args.platform,
        equilibration_steps=args.equilibration,
        progress=progress,
    )
    print(
        f"wrote {run.trajectory} ({run.n_frames} frames), {run.topology}, {run.state_log}, {run.metadata}; "
        f"platform {run.platform}, {run.steps_per_second:.0f} steps/s, mean T {run.temperature_mean:.1f} K"
    )
    return 0


# ---------------------------------------------------------------- features
_READY_SPECS = ("alanine-distances", "alanine-torsions", "alanine-torsions-raw")


@_command
def _add_features(sub) -> None:
    p = sub.add_parser(
        "features",
        help="compute feature matrices of trajectories, or write a ready feature spec",
        description="Compute (n_frames, n_features) matrices of trajectories (any format mdtraj reads) "
        "for a feature spec, and/or save a ready spec as JSON. Ready specs: alanine-distances (25 "
        "heavy-atom distances beyond 1-3, nm), alanine-torsions (sin/cos of phi, psi), "
        "alanine-torsions-raw (phi, psi in rad); they are built on --top (default: the bundled "
        "alanine dipeptide).",
    )
    p.add_argument("--traj", nargs="+", default=None, metavar="T", help="trajectory files")
    p.add_argument("--top", default=None, help="topology file (PDB or any mdtraj topology)")
    p.add_argument("--spec", required=True, help="feature spec JSON file, or one of: " + ", ".join(_READY_SPECS))
    p.add_argument(
        "--out", default=None, help="output .npy; with several trajectories, one file per trajectory: STEM_<i>.npy"
    )
    p.add_argument("--write-spec", default=None, metavar="SPEC.json", help="save the spec as JSON")
    p.add_argument("--stride", type=int, default=1, help="read every STRIDE-th frame (default 1)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="output dtype (default float32)")
    p.add_argument("--no-unit-check", action="store_true", help="skip the Angstrom-read-as-nm check")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args) -> int:
    from tqdm import tqdm

    from .features import load_trajectory_features

    if not args.traj and not args.write_spec:
        raise GMVAEInputError("nothing to do: give --traj (with --out) and/or --write-spec")
    if args.traj and not args.out:
        raise GMVAEInputError("'--out' is missing, expected an .npy path for the feature matrices")
    if args.traj and args.top is None and args.spec in _READY_SPECS:
        raise GMVAEInputError("'--top' is missing, expected the topology of the trajectories")
    spec = _resolve_spec(args.spec, args.top)
    if args.write_spec:
        spec.save(args.write_spec)
        print(f"wrote {args.write_spec}: {spec.n_features} features ({', '.join(spec.names[:4])}{', ...' if spec.n_features > 4 else ''})")
    if not args.traj:
        return 0
    if args.top is None:
        raise GMVAEInputError("'--top' is missing, expected the topology of the trajectories")
    mats = load_trajectory_features(
        args.traj,
        args.top,
        spec,
        stride=args.stride,
        check_units=not args.no_unit_check,
        dtype=np.dtype(args.dtype),
        progress=tqdm if len(args.traj) > 1 else None,
    )
    out = Path(args.out)
    if len(mats) == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{i}{out.suffix or '.npy'}") for i in range(len(mats))]
    for path, traj_file, mat in zip(paths, args.traj, mats):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, mat)
        print(f"wrote {path}: {mat.shape[0]} frames x {mat.shape[1]} features from {traj_file}")
    return 0


def _resolve_spec(name: str, top: Optional[str]):
    """A ready spec by name (alanine-...) or a spec JSON file."""
    from .features import FeatureSpec, alanine_backbone_torsions, alanine_heavy_atom_distances

    if name == "alanine-distances":
        return alanine_heavy_atom_distances(top)
    if name == "alanine-torsions":
        return alanine_backbone_torsions(top, transform="sincos")
    if name == "alanine-torsions-raw":
        return alanine_backbone_torsions(top, transform="raw")
    return FeatureSpec.load(name)


def _read_inputs(args) -> tuple[list[np.ndarray], list[str], object]:
    """Feature matrices from --data files, or from --traj/--top/--spec; returns (arrays, names, spec)."""
    from .data import load_trajectories
    from .features import load_trajectory_features

    if bool(args.data) == bool(args.traj):
        raise GMVAEInputError("give either --data (feature matrices) or --traj with --top and --spec (trajectories)")
    if args.data:
        spec = _resolve_spec(args.spec, None) if args.spec else None
        arrays = load_trajectories(args.data, "data", n_features=spec.n_features if spec is not None else None)
        return arrays, [str(p) for p in args.data], spec
    if args.top is None or args.spec is None:
        raise GMVAEInputError("--traj needs --top (topology file) and --spec (feature spec JSON or a ready spec name)")
    spec = _resolve_spec(args.spec, args.top)
    arrays = load_trajectory_features(args.traj, args.top, spec, stride=args.stride)
    return arrays, [str(p) for p in args.traj], spec


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", default=[], help="feature matrices (.npy or text, frames x features); several files = several trajectories")
    p.add_argument("--traj", nargs="+", default=[], help="trajectories (any format mdtraj reads), instead of --data")
    p.add_argument("--top", default=None, help="topology for --traj (e.g. a PDB)")
    p.add_argument("--spec", default=None, help=f"feature spec JSON, or one of {', '.join(_READY_SPECS)}")
    p.add_argument("--stride", type=int, default=1, help="with --traj: read every STRIDE-th frame")


# ---------------------------------------------------------------- train / transform
@_command
def _add_train(sub) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a GMVAE CV on feature matrices or trajectories")
    _add_input_args(p)
    p.add_argument("--k", type=int, required=True, help="number of mixture components (clusters), >= 2")
    p.add_argument("--latent-dim", type=int, required=True, help="latent dimension = number of CV components, >= 1")
    p.add_argument("--out", required=True, help="run directory to write (resumes an unfinished run there)")
    p.add_argument("--weights", nargs="+", default=None, help="per-frame weights (.npy or text, one file per --data/--traj file)")
    p.add_argument("--lag", type=int, default=d.lag, help="time lag in frames: reconstruct x(t+lag) from x(t) (default 0: no lag)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    p.add_argument("--patience", type=int, default=d.patience, help=f"early-stopping patience in epochs (default {d.patience})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"frames per batch (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--entropy-weight", type=float, default=d.entropy_weight, help=f"weight of the negative entropy of q(y|x) (default {d.entropy_weight})")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help=f"held-out fraction (default {d.val_fraction})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--cluster-init", choices=["gmm", "none"], default=d.cluster_init, help="start q(y|x) from a Gaussian mixture (default) or at random")
    for name, default in (("qy", d.qy_layers), ("qz", d.qz_layers), ("pz", d.pz_layers), ("px", d.px_layers)):
        p.add_argument(f"--{name}-layers", type=_int_list, default=default, help=f"hidden widths of {name}, comma-separated (default {','.join(map(str, default))})")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from ._validation import load_array_file
    from .train import TrainConfig, fit

    arrays, names, spec = _read_inputs(args)
    weights = None
    if args.weights is not None:
        if len(args.weights) != len(arrays):
            raise GMVAEInputError(f"--weights has {len(args.weights)} files for {len(arrays)} trajectories; expected one per trajectory")
        weights = [load_array_file(w, "weights", ndim=1, nonnegative=True) for w in args.weights]
        for wf, w, a, nm in zip(args.weights, weights, arrays, names):
            if len(w) != len(a):
                raise GMVAEInputError(f"{wf}: 'weights' has {len(w)} entries, expected {len(a)} (the frames of {nm})")
    config = TrainConfig(
        k=args.k,
        latent_dim=args.latent_dim,
        lag=args.lag,
        qy_layers=args.qy_layers,
        qz_layers=args.qz_layers,
        pz_layers=args.pz_layers,
        px_layers=args.px_layers,
        entropy_weight=args.entropy_weight,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        val_fraction=args.val_fraction,
        seed=args.seed,
        cluster_init=args.cluster_init,
    )
    run = fit(arrays, config, weights=weights, out=args.out, sources=names, feature_spec=spec, progress=not args.no_progress, overwrite=args.overwrite)
    t = run.info["training"]
    print(
        f"trained GMVAE k={config.k} latent_dim={config.latent_dim} on {sum(len(a) for a in arrays)} frames: "
        f"{t['epochs_run']} epochs, best {t['monitor']} {t['best_loss']:.4f} at epoch {t['best_epoch']}"
        + (" (resumed)" if t["resumed_from_checkpoint"] else "")
    )
    print(f"wrote {args.out}/ (gmvae_run.json, model.pt, loss.png, history.json, checkpoints/)")
    return 0


@_command
def _add_transform(sub) -> None:
    p = sub.add_parser("transform", help="embedding z and cluster probabilities of frames, from a trained run")
    p.add_argument("run", help="run directory written by 'gmvae-cv train'")
    _add_input_args(p)
    p.add_argument("--out", required=True, help="output .npz with arrays z (frames x D), cluster_probs (frames x K), clusters")
    p.add_argument("--float32", action="store_true", help="write float32 (default float64)")
    p.set_defaults(func=_cmd_transform)


def _cmd_transform(args) -> int:
    from ._validation import atomic_write_bytes
    from .train import load_run

    run = load_run(args.run)
    if args.traj and args.spec is None and run.feature_spec is not None:
        args.spec = "__run__"
    if args.spec == "__run__":
        from .features import load_trajectory_features

        if args.top is None:
            raise GMVAEInputError("--traj needs --top (topology file)")
        arrays = load_trajectory_features(args.traj, args.top, run.feature_spec, stride=args.stride)
    else:
        arrays, _, _ = _read_inputs(args)
    x = np.concatenate(arrays)
    out = run.transform(x, dtype=np.float32 if args.float32 else np.float64)
    import io

    buf = io.BytesIO()
    np.savez(buf, **out)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}: z {out['z'].shape}, cluster_probs {out['cluster_probs'].shape}, clusters {out['clusters'].shape}")
    return 0


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmvae-cv", description="GMVAE collective variables: learn, export, bias, check.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gmvae-cv`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GMVAEInputError as exc:
        print(f"gmvae-cv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
