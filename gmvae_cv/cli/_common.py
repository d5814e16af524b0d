"""Argument types and input readers shared by several verbs.

Imports nothing heavy at module level: the parser is built (and ``--help`` answered) without
torch, Lightning, mlcolvar or OpenMM; the readers import what they need when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from .._core.errors import GMVAEInputError
from .._core.numbers import parse_plumed_number

READY_SPECS = ("alanine-distances", "alanine-torsions", "alanine-torsions-raw", "backbone-torsions")


# ---------------------------------------------------------------- argument types
def int_list(text: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]``."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    """``"0.1,0.2"`` -> ``[0.1, 0.2]``."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def name_list(text: str) -> list[str]:
    """``"phi,psi"`` -> ``["phi", "psi"]``."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def ranges(text: str) -> list[tuple[float, float]]:
    """``"-pi:pi,0:1"`` -> ``[(-3.14..., 3.14...), (0.0, 1.0)]``."""
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


def grid_spec(text: str) -> list[tuple[float, float, int]]:
    """``"-pi:pi:100"`` -> ``[(-3.14..., 3.14..., 100)]`` (PLUMED's GRID_MIN, GRID_MAX, GRID_BIN)."""
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


# ---------------------------------------------------------------- argument groups
def add_input_args(p: argparse.ArgumentParser) -> None:
    """--data, or --traj with --top and --spec: the frames a command reads."""
    p.add_argument("--data", nargs="+", default=[], help="feature matrices (.npy or text, frames x features); several files = several trajectories")
    p.add_argument("--traj", nargs="+", default=[], help="trajectories (any format mdtraj reads), instead of --data")
    p.add_argument("--top", default=None, help="topology for --traj (e.g. a PDB)")
    p.add_argument("--spec", default=None, help=f"feature spec JSON, or one of {', '.join(READY_SPECS)}")
    p.add_argument("--stride", type=int, default=1, help="with --traj: read every STRIDE-th frame")


def add_temperature(p: argparse.ArgumentParser, what: str) -> None:
    """--temperature (K) or --kT (reduced units), not both."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--temperature", type=float, default=None, help=f"temperature of {what} in K (energies in kJ/mol)")
    g.add_argument("--kT", type=float, default=None, help=f"thermal energy of {what} in the bias' energy units (reduced-unit systems)")


# ---------------------------------------------------------------- readers (run inside commands)
def resolve_spec(name: str, top: Optional[str]):
    """A ready spec by name (alanine-...) or a spec JSON file."""
    from ..features import FeatureSpec, alanine_backbone_torsions, alanine_heavy_atom_distances

    if name == "alanine-distances":
        return alanine_heavy_atom_distances(top)
    if name == "alanine-torsions":
        return alanine_backbone_torsions(top, transform="sincos")
    if name == "alanine-torsions-raw":
        return alanine_backbone_torsions(top, transform="raw")
    if name == "backbone-torsions":
        from ..features import backbone_torsions

        if top is None:
            raise GMVAEInputError("'--top' is missing: backbone-torsions is built on the peptide's topology (a PDB)")
        return backbone_torsions(top)
    return FeatureSpec.load(name)


def read_inputs(args, n_features: Optional[int] = None, expected_by: str = "the feature spec") -> tuple[list, list[str], object]:
    """Feature matrices from --data files, or from --traj/--top/--spec; returns (arrays, names, spec).

    ``n_features`` (e.g. a trained model's) is checked for every --data file, the message naming
    the file and ``expected_by``; a --spec given with --data sets it otherwise."""
    from ..features import load_trajectory_features
    from ..learn import load_trajectories

    if bool(args.data) == bool(args.traj):
        raise GMVAEInputError("give either --data (feature matrices) or --traj with --top and --spec (trajectories)")
    if args.data:
        spec = resolve_spec(args.spec, None) if args.spec else None
        if n_features is None and spec is not None:
            n_features = spec.n_features
        arrays = load_trajectories(args.data, "data", n_features=n_features, expected_by=expected_by)
        return arrays, [str(p) for p in args.data], spec
    if args.top is None or args.spec is None:
        raise GMVAEInputError("--traj needs --top (topology file) and --spec (feature spec JSON or a ready spec name)")
    spec = resolve_spec(args.spec, args.top)
    arrays = load_trajectory_features(args.traj, args.top, spec, stride=args.stride)
    return arrays, [str(p) for p in args.traj], spec


def load_frames(traj: Optional[Sequence[str]], top: Optional[str], stride: int):
    """An mdtraj trajectory of the given files (joined), or None."""
    if not traj:
        return None
    if top is None:
        raise GMVAEInputError("'--top' is missing, expected the topology of --traj")
    import mdtraj as md

    from ..features import check_length_units

    for f in traj:
        if not Path(f).is_file():
            raise GMVAEInputError(f"{f}: file not found (expected a trajectory)")
    try:
        t = md.join([md.load(str(f), top=top, stride=stride) for f in traj])
    except Exception as exc:  # mdtraj raises many types for bad files
        raise GMVAEInputError(f"{traj[0]}: cannot read as a trajectory with topology {top} ({exc})") from None
    check_length_units(t, t.topology, source=traj[0])
    return t


def numbered_paths(out: Path, n: int) -> list[Path]:
    """``out`` itself for one file, else ``STEM_<i>.SUFFIX`` for each of ``n`` files."""
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix or '.npy'}") for i in range(n)]
