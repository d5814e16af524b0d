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
    p.add_argument("--sigma", type=float, nargs="+", required=True, help="hill widths in CV units, one per biased component")
    p.add_argument("--bias-factor", type=float, default=10.0, help="well-tempered bias factor gamma > 1 (default 10)")
    p.add_argument("--pace", type=int, default=500, help="steps between hills (default 500)")
    p.add_argument("--components", type=int, nargs="+", default=None, help="CV components to bias, 1 to 3 (default all)")
    p.add_argument("--grid-min", type=float, nargs="+", default=None, help="grid minimum per biased component, CV units")
    p.add_argument("--grid-max", type=float, nargs="+", default=None, help="grid maximum per biased component, CV units")
    p.add_argument("--grid-bin", type=int, nargs="+", default=None, help="grid bins per biased component")
    p.add_argument("--kernel", choices=["stretched-gaussian", "gaussian"], default="stretched-gaussian",
                   help="hill shape: PLUMED's (default) or openmm.app.Metadynamics' untruncated Gaussian")
    p.add_argument("--walkers", type=int, default=1, help="walkers sharing one bias (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--platform", default=None, help="OpenMM platform (default: the faster of Reference and CPU, measured)")
    p.add_argument("--colvar-stride", type=int, default=None, help="steps between COLVAR rows (default pace/5)")
    p.add_argument("--traj-stride", type=int, default=None, help="steps between trajectory frames (default pace; 0: none)")
    p.add_argument("--checkpoint-interval", type=int, default=None, help="steps between checkpoints, a multiple of pace")
    p.add_argument("--route", choices=["compiled", "autograd"], default="compiled", help="how the bias force is evaluated")
    p.add_argument("--precision", choices=["float64", "float32"], default="float64", help="arithmetic inside the bias force")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads during the run (default 1)")
    p.add_argument("--cpu-threads", type=int, default=None, help="threads of OpenMM's CPU platform")
    p.add_argument("--overwrite", action="store_true", help="replace a run in --out that has other parameters")
    p.set_defaults(func=_cmd_bias)


def _cmd_bias(args) -> int:
    from tqdm import tqdm

    from .bias_run import run_metadynamics
    from .cvfile import load_cv

    if args.system is not None and (args.system_xml or args.pdb or args.forcefield):
        raise GMVAEInputError("'--system' is a built-in system; do not combine it with --system-xml/--pdb/--forcefield")
    extra = None
    if args.system == "alanine-dipeptide":
        from .features import alanine_backbone_torsions
        from .systems import AlanineDipeptide

        ala = AlanineDipeptide()
        system, topology, positions = ala.create_system(), ala.topology, ala.positions
        description = {"name": "alanine dipeptide (ACE-ALA-NME), vacuum", "forcefield": list(ala.forcefield_files),
                       "nonbonded": "NoCutoff", "constraints": "HBonds", "pdb": str(ala.pdb_path)}
        extra = alanine_backbone_torsions(transform="raw")
    elif args.pdb is not None:
        from .systems.openmm_files import load_md_system

        md = load_md_system(args.pdb, system_xml=args.system_xml, forcefield=args.forcefield)
        system, topology, positions, description = md.system, md.topology, md.positions, md.description
    else:
        raise GMVAEInputError("no system: give --system alanine-dipeptide, or --pdb with --system-xml or --forcefield")
    if args.timestep <= 0:
        raise GMVAEInputError(f"'--timestep' is {args.timestep}, expected a time step > 0 in fs")
    n_steps = args.steps if args.steps is not None else int(round(args.ns * 1e6 / args.timestep))
    res = run_metadynamics(
        load_cv(args.exp), args.out, system=system, topology=topology, positions=positions, n_steps=n_steps,
        sigma=args.sigma, temperature=args.temperature, height=args.height, bias_factor=args.bias_factor,
        pace=args.pace, components=args.components, grid_min=args.grid_min, grid_max=args.grid_max,
        grid_bin=args.grid_bin, kernel=args.kernel, walkers=args.walkers, seed=args.seed,
        timestep=args.timestep / 1000.0, friction=args.friction, platform=args.platform,
        colvar_stride=args.colvar_stride, traj_stride=args.traj_stride, checkpoint_interval=args.checkpoint_interval,
        route=args.route, dtype=args.precision, torch_threads=args.torch_threads, cpu_threads=args.cpu_threads,
        extra_colvar=extra, description=description, overwrite=args.overwrite, progress=tqdm,
    )
    again = f" (continued from step {res.resumed_from})" if res.resumed_from is not None else ""
    print(
        f"{res.path}: {res.steps} steps x {args.walkers} walker(s){again}, {res.n_hills} hills, platform {res.platform}, "
        f"{res.ns_per_day:.1f} ns/day per walker; COLVAR, HILLS, bias_grid.dat, fes.dat, run.json"
    )
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
