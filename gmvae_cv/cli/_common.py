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

READY_SPECS = ("alanine-distances", "alanine-torsions", "alanine-torsions-raw", "backbone-torsions")  # = features.READY_SPECS


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
    from ..features import resolve_spec as _resolve

    return _resolve(name, top)


def read_inputs(args, n_features: Optional[int] = None, expected_by: str = "the feature spec") -> tuple[list, list[str], object]:
    """Feature matrices of --data, or of --traj/--top/--spec (:func:`gmvae_cv.learn.feature_inputs`)."""
    from ..learn.data import feature_inputs

    return feature_inputs(data=args.data, traj=args.traj, top=args.top, spec=args.spec, stride=args.stride,
                          n_features=n_features, expected_by=expected_by)


def load_frames(traj: Optional[Sequence[str]], top: Optional[str], stride: int):
    """The frames of --traj with --top (:func:`gmvae_cv.features.load_frames`), or None."""
    if not traj:
        return None
    from ..features import load_frames as _load

    return _load(traj, top, stride=stride)


def numbered_paths(out: Path, n: int) -> list[Path]:
    """``out`` itself for one file, else ``STEM_<i>.SUFFIX`` for each of ``n`` files."""
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix or '.npy'}") for i in range(n)]
