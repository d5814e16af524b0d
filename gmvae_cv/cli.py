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

    from .features import (
        FeatureSpec,
        alanine_backbone_torsions,
        alanine_heavy_atom_distances,
        load_trajectory_features,
    )

    if not args.traj and not args.write_spec:
        raise GMVAEInputError("nothing to do: give --traj (with --out) and/or --write-spec")
    if args.traj and not args.out:
        raise GMVAEInputError("'--out' is missing, expected an .npy path for the feature matrices")
    if args.traj and args.top is None and args.spec in _READY_SPECS:
        raise GMVAEInputError("'--top' is missing, expected the topology of the trajectories")
    if args.spec == "alanine-distances":
        spec = alanine_heavy_atom_distances(args.top)
    elif args.spec == "alanine-torsions":
        spec = alanine_backbone_torsions(args.top, transform="sincos")
    elif args.spec == "alanine-torsions-raw":
        spec = alanine_backbone_torsions(args.top, transform="raw")
    else:
        spec = FeatureSpec.load(args.spec)
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

    from .features import check_length_units

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
    from .export import export
    from .plumed_inputs import MetadSettings, OpesSettings

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
    from .export import check_export

    frames = _load_frames(args.traj, args.top, args.stride)
    report = check_export(args.exp, frames, n_fd_frames=args.fd_frames)
    print(report.to_text())
    return 0 if report.passed else 1


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
