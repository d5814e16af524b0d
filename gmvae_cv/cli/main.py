"""The ``gmvae-cv`` command line: parses arguments and calls the public API, nothing more.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_cmd_<name>(args)``; ``main`` dispatches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError, SimulationUnstableError

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

    from ..systems import SYSTEMS

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
    from ..systems import AlanineDipeptide

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

    from ..features.spec import load_trajectory_features

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
    from ..features.spec import FeatureSpec, alanine_backbone_torsions, alanine_heavy_atom_distances

    if name == "alanine-distances":
        return alanine_heavy_atom_distances(top)
    if name == "alanine-torsions":
        return alanine_backbone_torsions(top, transform="sincos")
    if name == "alanine-torsions-raw":
        return alanine_backbone_torsions(top, transform="raw")
    return FeatureSpec.load(name)


def _read_inputs(args) -> tuple[list[np.ndarray], list[str], object]:
    """Feature matrices from --data files, or from --traj/--top/--spec; returns (arrays, names, spec)."""
    from ..learn.data import load_trajectories
    from ..features.spec import load_trajectory_features

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
    from ..learn.train import TrainConfig

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
    from .._core.checks import load_array_file
    from ..learn.train import TrainConfig, fit

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
    from .._core.files import atomic_write_bytes
    from ..learn.train import load_run

    run = load_run(args.run)
    if args.traj and args.spec is None and run.feature_spec is not None:
        args.spec = "__run__"
    if args.spec == "__run__":
        from ..features.spec import load_trajectory_features

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


# ---------------------------------------------------------------- fes (reweighting)
def _name_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _ranges(text: str) -> list[tuple[float, float]]:
    from ..analysis.plumed_files import parse_plumed_number

    out = []
    for part in text.split(","):
        bits = part.split(":")
        if len(bits) != 2:
            raise argparse.ArgumentTypeError(f"expected MIN:MAX[,MIN:MAX], got {text!r}")
        try:
            out.append((parse_plumed_number(bits[0]), parse_plumed_number(bits[1])))
        except GMVAEInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return out


def _grid_spec(text: str) -> list[tuple[float, float, int]]:
    from ..analysis.plumed_files import parse_plumed_number

    out = []
    for part in text.split(","):
        bits = part.split(":")
        if len(bits) != 3:
            raise argparse.ArgumentTypeError(f"expected MIN:MAX:BINS[,...] (PLUMED's GRID_MIN, GRID_MAX, GRID_BIN), got {text!r}")
        try:
            out.append((parse_plumed_number(bits[0]), parse_plumed_number(bits[1]), int(bits[2])))
        except (GMVAEInputError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return out


def _add_temperature(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--temperature", type=float, default=None, help=f"temperature of {what} in K (energies in kJ/mol)")
    g.add_argument("--kT", type=float, default=None, help=f"thermal energy of {what} in the bias' energy units (reduced-unit systems)")


@_command
def _add_fes(sub) -> None:
    p = sub.add_parser(
        "fes",
        help="reweighted free-energy surface from PLUMED COLVAR/HILLS files",
        description=(
            "Free energy along 1 or 2 COLVAR variables, reweighted from a biased run, with block-averaging errors. "
            "Writes a table (variables, free energy, error), a PNG and a JSON. The temperature comes from --temperature "
            "or --kT, or from '#! SET temperature' / '#! SET kT' in the run's files; there is no default."
        ),
    )
    p.add_argument("colvar", nargs="+", help="COLVAR file(s); several = walkers sharing one bias")
    p.add_argument("--cv", type=_name_list, required=True, help="COLVAR fields of the surface, e.g. phi,psi")
    p.add_argument("--weights", required=True, choices=["none", "final", "ct", "opes", "bias"],
                   help="none: unbiased; final: final bias (needs --tmin); ct: Tiwary-Parrinello c(t) (needs --hills); "
                   "opes: exp(beta opes.bias); bias: exp(beta COLUMN) for --bias-column")
    p.add_argument("--hills", nargs="+", default=None, help="HILLS file(s) of the run (final, ct)")
    p.add_argument("--bias-column", default=None, help="bias field for --weights bias (e.g. metad.rbias) or opes")
    _add_temperature(p, "the run")
    p.add_argument("--bins", type=_int_list, default=[50], help="bins per variable (default 50)")
    p.add_argument("--range", dest="ranges", type=_ranges, default=None,
                   help="MIN:MAX per variable, comma-separated (pi allowed; write --range=-pi:pi when MIN is negative); default: period or data range")
    p.add_argument("--periodic", default="auto",
                   help="'auto' (from '#! SET min_/max_' in COLVAR), 'none', or the periodic variables' names")
    p.add_argument("--tmin", type=float, default=None, help="first time used (COLVAR time units)")
    p.add_argument("--tmax", type=float, default=None, help="last time used")
    p.add_argument("--blocks", type=int, default=5, help="blocks for the error (default 5)")
    p.add_argument("--ct-grid", type=_grid_spec, default=None,
                   help="MIN:MAX:BINS per biased CV for c(t), as PLUMED's GRID_MIN/MAX/BIN (default: the hills' extent)")
    p.add_argument("--out", required=True, help="output table, e.g. fes.dat")
    p.add_argument("--png", default=None, help="plot (default: OUT with .png)")
    p.add_argument("--json", default=None, help="JSON with arrays and units (default: OUT with .json)")
    p.set_defaults(func=_cmd_fes)


def _cmd_fes(args) -> int:
    from tqdm import tqdm

    from ..analysis.hills import GridSpec, Hills
    from ..analysis.reweight import ReweightedFES

    d = len(args.cv)
    bins = args.bins * d if len(args.bins) == 1 else args.bins
    if args.periodic == "auto":
        periodic = None
    elif args.periodic == "none":
        periodic = [False] * d
    else:
        names = _name_list(args.periodic)
        unknown = [n for n in names if n not in args.cv]
        if unknown:
            raise GMVAEInputError(f"--periodic names {unknown}, which are not among --cv {args.cv}")
        periodic = [c in names for c in args.cv]
    hills = Hills.from_file(args.hills) if args.hills else None
    ct_grid = None
    if args.ct_grid is not None:
        if hills is None:
            raise GMVAEInputError("--ct-grid needs --hills")
        if len(args.ct_grid) != hills.n_cvs:
            raise GMVAEInputError(f"--ct-grid has {len(args.ct_grid)} entries, the hills bias {hills.n_cvs} CV(s)")
        ct_grid = GridSpec(
            tuple(g[0] for g in args.ct_grid), tuple(g[1] for g in args.ct_grid), tuple(g[2] for g in args.ct_grid),
            tuple(p is not None for p in hills.periodic),
        )
    est = ReweightedFES(
        args.cv,
        method=args.weights,
        temperature=args.temperature,
        kT=args.kT,
        bias_column=args.bias_column,
        bins=bins,
        ranges=args.ranges,
        periodic=periodic,
        n_blocks=args.blocks,
        tmin=args.tmin,
        tmax=args.tmax,
        ct_grid=ct_grid,
        progress=tqdm,
    )
    fes = est.fit(args.colvar, hills=hills).fetch_model()
    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    js = Path(args.json) if args.json else out.with_suffix(".json")
    fes.write_dat(out)
    fes.save(js)
    if fes.ndim <= 2:
        fes.plot(png)
    t = f"{fes.temperature:g} K" if fes.temperature is not None else f"kT {fes.kT:g}"
    print(f"{args.weights} reweighting at {t} (from {fes.info['temperature_from']}): {fes.n_frames} frames, "
          f"n_eff {fes.n_effective:.0f}, {fes.n_outside} outside the ranges")
    print(f"wrote {out}, {js}" + (f", {png}" if fes.ndim <= 2 else ""))
    return 0


# ---------------------------------------------------------------- msm
@_command
def _add_msm(sub) -> None:
    p = sub.add_parser(
        "msm",
        help="Markov state model on GMVAE states: implied timescales, CK test, PCCA+, MFPTs (or TRAM)",
        description=(
            "Implied timescales with Bayesian error bands over --lags, and at --lag: PCCA+ sets, the "
            "Chapman-Kolmogorov test, the stationary distribution and mean first-passage times between states. "
            "States come from --dtraj files or from a trained run (--run RUN --data X.npy). Frames of a biased run "
            "are refused (give their COLVAR with --colvar to have them checked); with a static bias per ensemble use "
            "--tram with --bias-energies."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dtraj", nargs="+", help="integer .npy files of states, one per trajectory")
    src.add_argument("--run", help="a trained GMVAE run directory (with --data)")
    p.add_argument("--data", nargs="+", help="feature .npy files (n_frames, n_features), one per trajectory, for --run")
    p.add_argument("--states", choices=["clusters", "kmeans"], default="clusters", help="with --run: GMVAE clusters (default) or k-means on z")
    p.add_argument("--n-clusters", type=int, default=None, help="k-means centres (--states kmeans)")
    p.add_argument("--seed", type=int, default=42, help="k-means seed (default 42)")
    p.add_argument("--lags", type=_int_list, required=True, help="lag times in frames for the implied timescales, e.g. 1,2,5,10")
    p.add_argument("--lag", type=int, required=True, help="lag time (frames) of the model analysed")
    p.add_argument("--dt", "--dt-ps", dest="dt", type=float, required=True, help="time between frames (in --time-unit, default ps)")
    p.add_argument("--time-unit", default="ps", help="unit of --dt (default ps)")
    p.add_argument("--n-its", type=int, default=None, help="implied timescales per lag (default n_states - 1, at most 10)")
    p.add_argument("--metastable", type=int, default=None, help="PCCA+ sets; also enables the CK test")
    p.add_argument("--ck-multiples", type=int, default=5, help="CK test up to this multiple of --lag (default 5)")
    p.add_argument("--samples", type=int, default=100, help="Bayesian samples for the error bands (default 100; 0 = none)")
    p.add_argument("--count-mode", default="sliding-effective", choices=["sliding-effective", "effective", "sliding", "sample"], help="transition counting (default sliding-effective)")
    p.add_argument("--colvar", nargs="+", default=None, help="COLVAR of each trajectory: a non-zero bias column makes the MSM refuse")
    p.add_argument("--bias-column", default=None, help="bias field to check in --colvar (default: every field ending in .bias or .rbias)")
    p.add_argument("--tram", action="store_true", help="multi-ensemble TRAM instead of a plain MSM (needs --bias-energies)")
    p.add_argument("--bias-energies", nargs="+", default=None, help="with --tram: .npy (n_frames, n_ensembles) per trajectory, the bias of each frame in every ensemble")
    p.add_argument("--ensembles", type=_int_list, default=None, help="with --tram: ensemble index of each trajectory (default 0, 1, 2, ...)")
    _add_temperature(p, "the ensembles (--tram)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_cmd_msm)


def _colvar_bias(paths: list[str], column: Optional[str]) -> list[np.ndarray]:
    from ..analysis.plumed_files import PlumedFile

    out = []
    for pth in paths:
        pf = PlumedFile(pth)
        cols = [column] if column else [f for f in pf.fields if f.endswith(".bias") or f.endswith(".rbias") or f == "bias"]
        if not cols:
            out.append(np.zeros(1))
            continue
        pf.check_fields(cols)
        out.append(pf.read(cols).ravel())
    return out


def _cmd_msm(args) -> int:
    from tqdm import tqdm

    from .._core.checks import load_array_file
    from ..analysis.msm import MarkovAnalysis, TRAMAnalysis, check_dtrajs, gmvae_states

    out = Path(args.out)
    if args.dtraj:
        raw = []
        for pth in args.dtraj:
            if not Path(pth).is_file():
                raise GMVAEInputError(f"{pth}: file not found (expected an integer .npy of states)")
            try:
                raw.append(np.load(pth, allow_pickle=False))
            except Exception as exc:
                raise GMVAEInputError(f"{pth}: cannot be read as a .npy array ({exc})") from None
        dtrajs = check_dtrajs(raw, sources=args.dtraj)
        names = list(args.dtraj)
    else:
        from ..learn.train import load_run

        if not args.data:
            raise GMVAEInputError("--run needs --data (the features of each trajectory)")
        run = load_run(args.run)
        data = [load_array_file(pth, "data", ndim=2, min_rows=2) for pth in args.data]
        dtrajs = gmvae_states(run, data, method=args.states, n_clusters=args.n_clusters, seed=args.seed)
        names = list(args.data)
        out.mkdir(parents=True, exist_ok=True)
        for pth, d in zip(args.data, dtrajs):
            np.save(out / f"states_{Path(pth).stem}.npy", d)
    out.mkdir(parents=True, exist_ok=True)
    if args.tram:
        if not args.bias_energies:
            raise GMVAEInputError("--tram needs --bias-energies (one .npy per trajectory)")
        if len(args.bias_energies) != len(dtrajs):
            raise GMVAEInputError(f"--bias-energies has {len(args.bias_energies)} files for {len(dtrajs)} trajectories")
        bias = [load_array_file(pth, "bias_energies", ndim=2) for pth in args.bias_energies]
        res = TRAMAnalysis(args.lag, temperature=args.temperature, kT=args.kT, progress=tqdm).fit(dtrajs, bias, ensembles=args.ensembles).fetch_model()
        res.save(out / "tram.json")
        print("TRAM stationary distribution:", np.array2string(res.stationary_distribution, precision=4))
        print(f"wrote {out / 'tram.json'}")
        return 0
    bias = None
    if args.colvar:
        if len(args.colvar) != len(dtrajs):
            raise GMVAEInputError(f"--colvar has {len(args.colvar)} files for {len(dtrajs)} trajectories")
        bias = _colvar_bias(args.colvar, args.bias_column)
    est = MarkovAnalysis(
        args.lags,
        lagtime=args.lag,
        dt=args.dt,
        time_unit=args.time_unit,
        n_timescales=args.n_its,
        n_metastable=args.metastable,
        ck_multiples=args.ck_multiples,
        n_samples=args.samples,
        count_mode=args.count_mode,
        progress=tqdm,
    )
    res = est.fit(dtrajs, bias=bias).fetch_model()
    res.info["sources"] = names
    res.save(out / "msm.json")
    res.plot_implied_timescales(out / "its.png")
    written = ["msm.json", "its.png"]
    if res.ck_lagtimes is not None:
        res.plot_ck_test(out / "ck.png")
        written.append("ck.png")
    tu = res.time_unit
    print(f"{res.info['n_frames']} frames in {res.info['n_trajectories']} trajectories, {res.n_states} states, lag {args.lag} frames")
    print(f"slowest implied timescale at lag {args.lag}: {res.slowest_timescale():.4g} {tu}")
    print("stationary distribution:", np.array2string(res.stationary_distribution, precision=4))
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


# ---------------------------------------------------------------- export / check
def _float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _load_frames(traj: Optional[Sequence[str]], top: Optional[str], stride: int):
    """An mdtraj trajectory of the given files (joined), or None."""
    if not traj:
        return None
    if top is None:
        raise GMVAEInputError("'--top' is missing, expected the topology of --traj")
    import mdtraj as md

    from ..features.spec import check_length_units

    for f in traj:
        if not Path(f).is_file():
            raise GMVAEInputError(f"{f}: file not found (expected a trajectory)")
    try:
        t = md.join([md.load(str(f), top=top, stride=stride) for f in traj])
    except Exception as exc:  # mdtraj raises many types for bad files
        raise GMVAEInputError(f"{traj[0]}: cannot read as a trajectory with topology {top} ({exc})") from None
    check_length_units(t, t.topology, source=traj[0])
    return t


@_command
def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained run for PLUMED (PYTORCH_MODEL) and OpenMM-Torch",
        description="Write EXP/: model_plumed.ptc, model_clusters.ptc (features in, float32 (1, n)), "
        "model_openmm.pt (positions in nm), plumed.dat (METAD), plumed_opes.dat (OPES_METAD), cv.json, "
        "run/ (a copy of the run), frames.npy (frames for 'gmvae-cv check') and README.md. SIGMA and the grid are "
        "chosen from the CV on the training frames (--traj/--top or --data) unless given.",
    )
    p.add_argument("run", help="run directory (from training)")
    p.add_argument("--out", required=True, help="export directory")
    p.add_argument("--traj", nargs="+", default=None, metavar="T", help="training trajectories (positions; also stored as check frames)")
    p.add_argument("--top", default=None, help="topology of --traj")
    p.add_argument("--stride", type=int, default=1, help="read every STRIDE-th frame of --traj (default 1)")
    p.add_argument("--data", nargs="+", default=None, metavar="X.npy", help="training feature matrices (instead of --traj)")
    p.add_argument("--sigma", type=_float_list, default=None, help="METAD/OPES SIGMA per CV component (default: from the data)")
    p.add_argument("--height", type=float, default=1.2, help="METAD hill height in kJ/mol (default 1.2)")
    p.add_argument("--pace", type=int, default=500, help="METAD/OPES deposition pace in steps (default 500)")
    p.add_argument("--bias-factor", type=float, default=10.0, help="METAD bias factor (default 10)")
    p.add_argument("--temperature", type=float, default=300.0, help="temperature in K (default 300)")
    p.add_argument("--barrier", type=float, default=40.0, help="OPES_METAD BARRIER in kJ/mol (default 40)")
    p.add_argument("--grid-min", type=_float_list, default=None, help="METAD GRID_MIN per component (default: from the data)")
    p.add_argument("--grid-max", type=_float_list, default=None, help="METAD GRID_MAX per component (default: from the data)")
    p.add_argument("--check-frames", type=int, default=32, help="frames stored for 'gmvae-cv check' (default 32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from ..deploy.writer import export
    from ..deploy.plumed import MetadSettings, OpesSettings

    frames = _load_frames(args.traj, args.top, args.stride)
    data = [np.load(f, allow_pickle=False) for f in args.data] if args.data else None
    metad = MetadSettings(
        sigma=args.sigma, height=args.height, pace=args.pace, bias_factor=args.bias_factor,
        temperature=args.temperature, grid_min=args.grid_min, grid_max=args.grid_max,
    )
    opes = OpesSettings(barrier=args.barrier, pace=args.pace, temperature=args.temperature, sigma=args.sigma)
    out = export(args.run, args.out, data=data, frames=frames, metad=metad, opes=opes,
                 n_check_frames=args.check_frames, overwrite=args.overwrite)
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


@_command
def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="load an export the way PLUMED and OpenMM do and compare with the Python model",
        description="Checks sha256 of every file, the .ptc files under PLUMED's pattern (freeze, "
        "optimize_for_inference, float32, autograd per output) against the Python model and finite "
        "differences, model_openmm.pt in an OpenMM Context (TorchForce in CustomCVForce) against "
        "the Python model and finite differences. Prints a table, writes EXP/check.json; exit "
        "status 1 if any check fails.",
    )
    p.add_argument("exp", help="export directory")
    p.add_argument("--traj", nargs="+", default=None, metavar="T", help="frames to check on (default: EXP/frames.npy)")
    p.add_argument("--top", default=None, help="topology of --traj")
    p.add_argument("--stride", type=int, default=1, help="read every STRIDE-th frame of --traj (default 1)")
    p.add_argument("--fd-frames", type=int, default=4, help="frames for the finite-difference checks (default 4)")
    p.set_defaults(func=_cmd_check)


def _cmd_check(args) -> int:
    from ..deploy.writer import check_export

    frames = _load_frames(args.traj, args.top, args.stride)
    report = check_export(args.exp, frames, n_fd_frames=args.fd_frames)
    print(report.to_text())
    return 0 if report.passed else 1


# ---------------------------------------------------------------- bias
@_command
def _add_bias(sub) -> None:
    p = sub.add_parser(
        "bias",
        help="well-tempered metadynamics in OpenMM on an exported CV",
        description="Bias along the CV of EXP (an EXP directory with model_openmm.pt, or the .pt file itself) "
        "with well-tempered metadynamics. Writes RUN/COLVAR, HILLS (PLUMED format), traj.dcd, bias_grid.dat, "
        "fes.dat, checkpoint.npz and run.json. Run the same command again to continue a stopped run.",
    )
    p.add_argument("exp", help="EXP directory (model_openmm.pt inside) or a CV .pt file")
    p.add_argument("--out", required=True, help="run directory RUN (continued if it holds the same run)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="MD steps per walker")
    length.add_argument("--ns", type=float, help="simulated time per walker in ns")
    p.add_argument("--system", choices=["alanine-dipeptide"], default=None, help="built-in system (amber14, vacuum)")
    p.add_argument("--system-xml", default=None, help="your own system: an OpenMM System XML (XmlSerializer), with --pdb")
    p.add_argument("--pdb", default=None, help="your own system: structure (PDB/mmCIF) with --system-xml or --forcefield")
    p.add_argument("--forcefield", nargs="+", default=None, metavar="XML", help="OpenMM force-field files, e.g. amber14-all.xml amber14/tip3p.xml")
    p.add_argument("--temperature", type=float, default=300.0, help="temperature in K (default 300)")
    p.add_argument("--timestep", type=float, default=2.0, help="time step in fs (default 2)")
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction in 1/ps (default 1)")
    p.add_argument("--height", type=float, default=1.2, help="initial hill height in kJ/mol (default 1.2)")
    p.add_argument("--sigma", type=float, nargs="+", default=None,
                   help="hill widths in CV units, one per biased component (default: the METAD SIGMA in EXP/cv.json)")
    p.add_argument("--bias-factor", type=float, default=10.0, help="well-tempered bias factor gamma > 1 (default 10)")
    p.add_argument("--pace", type=int, default=500, help="steps between hills (default 500)")
    p.add_argument("--components", type=int, nargs="+", default=None, help="CV components to bias, 1 to 3 (default all)")
    p.add_argument("--grid-min", type=float, nargs="+", default=None, help="grid minimum per biased component, CV units")
    p.add_argument("--grid-max", type=float, nargs="+", default=None, help="grid maximum per biased component, CV units")
    p.add_argument("--grid-bin", type=int, nargs="+", default=None, help="grid bins per biased component")
    p.add_argument("--kernel", choices=["stretched-gaussian", "gaussian"], default="stretched-gaussian",
                   help="hill shape: PLUMED's (default) or openmm.app.Metadynamics' untruncated Gaussian")
    p.add_argument("--walkers", type=int, default=1, help="walkers sharing one bias in this process, in lock-step (default 1)")
    p.add_argument("--walkers-dir", default=None, metavar="SHARED",
                   help="share the bias with walkers in other processes (each with its own --out and --walker-id) through "
                   "this directory: each publishes its hills to SHARED/HILLS.<id> and reads the others' (as PLUMED's WALKERS_DIR)")
    p.add_argument("--walker-id", type=int, default=None, help="this process's walker id in --walkers-dir (unique, >= 0)")
    p.add_argument("--walkers-stride", type=int, default=10,
                   help="own hills between exchanges with the other walkers; each exchange is a checkpoint (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--platform", default=None, help="OpenMM platform (default: the faster of Reference and CPU, measured)")
    p.add_argument("--colvar-stride", type=int, default=None, help="steps between COLVAR rows (default pace/5)")
    p.add_argument("--traj-stride", type=int, default=None, help="steps between trajectory frames (default pace; 0: none)")
    p.add_argument("--checkpoint-interval", type=int, default=None, help="steps between checkpoints, a multiple of pace")
    p.add_argument("--route", choices=["compiled", "autograd"], default="compiled", help="how the bias force is evaluated")
    p.add_argument("--precision", choices=["float64", "float32"], default="float64", help="arithmetic inside the bias force")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads during the run (default 1)")
    p.add_argument("--heating-limit", default="auto",
                   help="stop when a walker's kinetic temperature exceeds this many times --temperature "
                        "('auto': the 1e-12 equilibrium tail; 'off': never; non-finite values always stop the run)")
    p.add_argument("--cpu-threads", type=int, default=None, help="threads of OpenMM's CPU platform")
    p.add_argument("--overwrite", action="store_true", help="replace a run in --out that has other parameters")
    p.set_defaults(func=_cmd_bias)


def _cmd_bias(args) -> int:
    from tqdm import tqdm

    from ..metad.run import run_metadynamics
    from ..deploy.loaders import load_cv

    if args.system is not None and (args.system_xml or args.pdb or args.forcefield):
        raise GMVAEInputError("'--system' is a built-in system; do not combine it with --system-xml/--pdb/--forcefield")
    extra = None
    if args.system == "alanine-dipeptide":
        from ..features.spec import alanine_backbone_torsions
        from ..systems import AlanineDipeptide

        ala = AlanineDipeptide()
        system, topology, positions = ala.create_system(), ala.topology, ala.positions
        description = {"name": "alanine dipeptide (ACE-ALA-NME), vacuum", "forcefield": list(ala.forcefield_files),
                       "nonbonded": "NoCutoff", "constraints": "HBonds", "pdb": str(ala.pdb_path)}
        extra = alanine_backbone_torsions(transform="raw")
    elif args.pdb is not None:
        from ..metad.user_system import load_md_system

        md = load_md_system(args.pdb, system_xml=args.system_xml, forcefield=args.forcefield)
        system, topology, positions, description = md.system, md.topology, md.positions, md.description
    else:
        raise GMVAEInputError("no system: give --system alanine-dipeptide, or --pdb with --system-xml or --forcefield")
    if args.timestep <= 0:
        raise GMVAEInputError(f"'--timestep' is {args.timestep}, expected a time step > 0 in fs")
    n_steps = args.steps if args.steps is not None else int(round(args.ns * 1e6 / args.timestep))
    cv = load_cv(args.exp)
    sigma = args.sigma
    if sigma is None:
        exported = ((cv.meta.get("cv_json") or {}).get("plumed") or {}).get("metad", {}).get("sigma")
        if exported is None:
            raise GMVAEInputError(f"'--sigma' is missing and {args.exp} has no cv.json with a METAD sigma; give one width per biased component")
        comps = args.components if args.components is not None else range(len(exported))
        sigma = [float(exported[c]) for c in comps]
    res = run_metadynamics(
        cv, args.out, system=system, topology=topology, positions=positions, n_steps=n_steps,
        sigma=sigma, temperature=args.temperature, height=args.height, bias_factor=args.bias_factor,
        pace=args.pace, components=args.components, grid_min=args.grid_min, grid_max=args.grid_max,
        grid_bin=args.grid_bin, kernel=args.kernel, walkers=args.walkers, seed=args.seed,
        timestep=args.timestep / 1000.0, friction=args.friction, platform=args.platform,
        colvar_stride=args.colvar_stride, traj_stride=args.traj_stride, checkpoint_interval=args.checkpoint_interval,
        route=args.route, dtype=args.precision, torch_threads=args.torch_threads, cpu_threads=args.cpu_threads,
        extra_colvar=extra, description=description, overwrite=args.overwrite, progress=tqdm,
        heating_limit=_heating_limit(args.heating_limit),
        walkers_dir=args.walkers_dir, walker_id=args.walker_id, walkers_stride=args.walkers_stride,
    )
    again = f" (continued from step {res.resumed_from})" if res.resumed_from is not None else ""
    shared = res.info.get("shared_walkers")
    if shared:
        read = sum(shared["hills_read"].values())
        again += f", walker {shared['walker_id']}: {shared['own_hills']} own hills, {read} read from other walkers"
    print(
        f"{res.path}: {res.steps} steps x {args.walkers} walker(s){again}, {res.n_hills} hills, platform {res.platform}, "
        f"{res.ns_per_day:.1f} ns/day per walker; COLVAR, HILLS, bias_grid.dat, fes.dat, run.json"
    )
    return 0


# ---------------------------------------------------------------- demo
@_command
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job on alanine dipeptide: MD, GMVAE, export+check, metadynamics, FES, MSM, report")
    p.add_argument("--out", default="gmvae_demo", help="output folder (finished stages there are reused; default gmvae_demo)")
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 cores)")
    p.add_argument("--train-temperature", type=float, default=None,
                   help="temperature of the unbiased run that trains the GMVAE, K (default 700: at 300 K it never sees C7ax)")
    p.set_defaults(func=_cmd_demo)


def _heating_limit(text: str):
    if text in ("auto", "off"):
        return None if text == "off" else "auto"
    try:
        value = float(text)
    except ValueError:
        raise GMVAEInputError(f"'--heating-limit' is {text!r}, expected 'auto', 'off' or a number > 1") from None
    return value


def _cmd_demo(args) -> int:
    import dataclasses

    from tqdm import tqdm

    from ..workflows.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.train_temperature is not None:
        if args.train_temperature <= 0:
            raise GMVAEInputError(f"'--train-temperature' is {args.train_temperature}, expected a temperature > 0 in K")
        settings = dataclasses.replace(settings, train_temperature=args.train_temperature)
    summary = run_demo(args.out, settings=settings, progress=tqdm, log=print)
    for key in ("check_passed", "transitions_biased", "transitions_per_ns_biased", "delta_f_c7ax_minus_c7eq_kjmol", "slowest_its_ps"):
        print(f"{key}: {summary[key]}")
    return 0


# ---------------------------------------------------------------- rates (its own module)
from .rates import add_rates as _add_rates  # noqa: E402

_command(_add_rates)


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
    except SimulationUnstableError as exc:
        print(f"gmvae-cv {args.command}: the simulation became unstable: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
