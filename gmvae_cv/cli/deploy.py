"""``gmvae-cv export`` (a trained run as files for PLUMED and OpenMM-Torch) and ``gmvae-cv check``
(load those files as PLUMED and OpenMM do and compare with the Python model)."""

from __future__ import annotations

from ._common import float_list, load_frames


def add_export(sub) -> None:
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
    p.add_argument("--sigma", type=float_list, default=None, help="METAD/OPES SIGMA per CV component (default: from the data)")
    p.add_argument("--height", type=float, default=1.2, help="METAD hill height in kJ/mol (default 1.2)")
    p.add_argument("--pace", type=int, default=500, help="METAD/OPES deposition pace in steps (default 500)")
    p.add_argument("--bias-factor", type=float, default=10.0, help="METAD bias factor (default 10)")
    p.add_argument("--temperature", type=float, default=300.0, help="temperature in K (default 300)")
    p.add_argument("--barrier", type=float, default=40.0, help="OPES_METAD BARRIER in kJ/mol (default 40)")
    p.add_argument("--grid-min", type=float_list, default=None, help="METAD GRID_MIN per component (default: from the data)")
    p.add_argument("--grid-max", type=float_list, default=None, help="METAD GRID_MAX per component (default: from the data)")
    p.add_argument("--check-frames", type=int, default=32, help="frames stored for 'gmvae-cv check' (default 32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    p.set_defaults(func=export)


def export(args) -> int:
    import numpy as np

    from ..deploy import MetadSettings, OpesSettings
    from ..deploy import export as export_cv

    frames = load_frames(args.traj, args.top, args.stride)
    data = [np.load(f, allow_pickle=False) for f in args.data] if args.data else None
    metad = MetadSettings(
        sigma=args.sigma, height=args.height, pace=args.pace, bias_factor=args.bias_factor,
        temperature=args.temperature, grid_min=args.grid_min, grid_max=args.grid_max,
    )
    opes = OpesSettings(barrier=args.barrier, pace=args.pace, temperature=args.temperature, sigma=args.sigma)
    out = export_cv(args.run, args.out, data=data, frames=frames, metad=metad, opes=opes,
                    n_check_frames=args.check_frames, overwrite=args.overwrite)
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def add_check(sub) -> None:
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
    p.set_defaults(func=check)


def check(args) -> int:
    from ..deploy import check_export

    frames = load_frames(args.traj, args.top, args.stride)
    report = check_export(args.exp, frames, n_fd_frames=args.fd_frames)
    print(report.to_text())
    return 0 if report.passed else 1


def add_plumed_input(sub) -> None:
    p = sub.add_parser(
        "plumed-input",
        help="render an export's plumed.dat/plumed_opes.dat for another topology of the same molecule",
        description="Map the atoms the features use onto TOP by residue name, residue number and atom name "
        "(GROMACS' Amber names of the caps and protonation variants are accepted; the mapping must be "
        "one-to-one, or it is refused naming the atoms), write OUT/plumed.dat (METAD) and OUT/plumed_opes.dat "
        "(OPES_METAD) with TOP's atom numbers and the export's bias settings, and copy model_plumed.ptc and "
        "model_clusters.ptc beside them. OUT is then a run folder for 'gmx mdrun -plumed plumed.dat'.",
    )
    p.add_argument("exp", help="export directory")
    p.add_argument("--top", required=True, help="the topology the MD engine runs, e.g. conf.gro or a PDB (solvent may follow)")
    p.add_argument("--out", required=True, help="run folder to write (created)")
    p.add_argument("--residue-offset", type=int, default=0, help="added to the export's residue numbers before matching (default 0)")
    p.add_argument("--walkers", type=int, default=0, metavar="N",
                   help="also walker_0.dat ... walker_{N-1}.dat: N walkers sharing one METAD bias in OUT (default: none)")
    p.set_defaults(func=plumed_input)


def plumed_input(args) -> int:
    from ..deploy.plumed_topology import write_plumed_for_topology

    written, mapping = write_plumed_for_topology(args.exp, args.top, args.out, residue_offset=args.residue_offset,
                                                 n_walkers=args.walkers)
    moved = sum(o != n for o, n in mapping.old_to_new.items())
    print(f"{args.top}: {mapping.n_atoms} atoms; the {len(mapping.old_to_new)} atoms the features use map one-to-one "
          f"({moved} renumbered)")
    print(f"wrote {args.out}: " + ", ".join(p.name for p in written))
    return 0
