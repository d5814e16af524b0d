"""``gmvae-cv features``: feature matrices of trajectories, or a ready feature spec as JSON."""

from __future__ import annotations

from pathlib import Path

from .._core.errors import GMVAEInputError
from ._common import READY_SPECS, numbered_paths, resolve_spec


def add(sub) -> None:
    p = sub.add_parser(
        "features",
        help="compute feature matrices of trajectories, or write a ready feature spec",
        description="Compute (n_frames, n_features) matrices of trajectories (any format mdtraj reads) "
        "for a feature spec, and/or save a ready spec as JSON. Ready specs: alanine-distances (25 "
        "heavy-atom distances beyond 1-3, nm), alanine-torsions (sin/cos of phi, psi), "
        "alanine-torsions-raw (phi, psi in rad); they are built on --top (default: the bundled "
        "alanine dipeptide). backbone-torsions: sin/cos of every phi/psi of any peptide on --top "
        "(60 for ACE-(AAQAA)3-NME).",
    )
    p.add_argument("--traj", nargs="+", default=None, metavar="T", help="trajectory files")
    p.add_argument("--top", default=None, help="topology file (PDB or any mdtraj topology)")
    p.add_argument("--spec", required=True, help="feature spec JSON file, or one of: " + ", ".join(READY_SPECS))
    p.add_argument(
        "--out", default=None, help="output .npy; with several trajectories, one file per trajectory: STEM_<i>.npy"
    )
    p.add_argument("--write-spec", default=None, metavar="SPEC.json", help="save the spec as JSON")
    p.add_argument("--stride", type=int, default=1, help="read every STRIDE-th frame (default 1)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="output dtype (default float32)")
    p.add_argument("--no-unit-check", action="store_true", help="skip the Angstrom-read-as-nm check")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.traj and not args.write_spec:
        raise GMVAEInputError("nothing to do: give --traj (with --out) and/or --write-spec")
    if args.traj and not args.out:
        raise GMVAEInputError("'--out' is missing, expected an .npy path for the feature matrices")
    if args.traj and args.top is None:
        raise GMVAEInputError("'--top' is missing, expected the topology of the trajectories")
    import numpy as np
    from tqdm import tqdm

    from ..features import load_trajectory_features

    spec = resolve_spec(args.spec, args.top)
    if args.write_spec:
        spec.save(args.write_spec)
        more = ", ..." if spec.n_features > 4 else ""
        print(f"wrote {args.write_spec}: {spec.n_features} features ({', '.join(spec.names[:4])}{more})")
    if not args.traj:
        return 0
    mats = load_trajectory_features(
        args.traj,
        args.top,
        spec,
        stride=args.stride,
        check_units=not args.no_unit_check,
        dtype=np.dtype(args.dtype),
        progress=tqdm if len(args.traj) > 1 else None,
    )
    for path, traj_file, mat in zip(numbered_paths(Path(args.out), len(mats)), args.traj, mats):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, mat)
        print(f"wrote {path}: {mat.shape[0]} frames x {mat.shape[1]} features from {traj_file}")
    return 0
