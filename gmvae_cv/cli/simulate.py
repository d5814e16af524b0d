"""``gmvae-cv simulate``: a built-in system's trajectory (toy potentials, alanine dipeptide)."""

from __future__ import annotations

from pathlib import Path

from .._core.errors import GMVAEInputError
from ._common import numbered_paths


_OPENMM_SYSTEMS = ("alanine-dipeptide", "aaqaa3", "polystyrene")


def add(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a built-in system and write its trajectory",
        description="Toy systems (four-well, muller-brown) write .npy arrays; alanine-dipeptide runs "
        "OpenMM (amber14, vacuum), aaqaa3 (amber14 + GBn2) and polystyrene (one TraPPE-UA united-atom "
        "chain, vacuum) write DIR/traj.dcd, topology.pdb, state.csv, simulation.json.",
    )
    p.add_argument("system", choices=["four-well", "muller-brown", *_OPENMM_SYSTEMS], help="the system")
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
    p.add_argument("--start", choices=["helix", "extended"], default="helix",
                   help="aaqaa3: start conformation (default helix); the OpenMM options are alanine-dipeptide's")
    p.add_argument("--monomers", type=int, default=10, help="polystyrene: styrene units (default 10)")
    p.add_argument("--tacticity", default="syndiotactic", help="polystyrene: syndiotactic (default), isotactic or atactic")
    p.add_argument("--conformation", default="zigzag", help="polystyrene: start conformation, zigzag (default) or helix")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run, log_dir=lambda a: a.out if a.system in _OPENMM_SYSTEMS else None)


def run(args) -> int:
    from tqdm import tqdm

    if args.system in _OPENMM_SYSTEMS:
        return _openmm_system(args, tqdm)

    import numpy as np

    from ..systems import SYSTEMS

    kw = {k: v for k, v in (("kT", args.kT), ("dt", args.dt)) if v is not None}
    system = SYSTEMS[args.system](**kw)
    traj = system.simulate(args.steps, n_walkers=args.walkers, stride=args.stride, seed=args.seed, progress=tqdm)
    for p, t in zip(numbered_paths(Path(args.out), args.walkers), traj):
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, t)
        print(f"wrote {p}: {t.shape[0]} frames x {t.shape[1]} dims")
    return 0


def _openmm_system(args, progress) -> int:
    from ..systems import AAQAA3, AlanineDipeptide, Polystyrene

    if args.walkers != 1:
        raise GMVAEInputError(f"'--walkers' is {args.walkers}, expected 1 for {args.system} (run several seeds instead)")
    if args.kT is not None or args.dt is not None:
        raise GMVAEInputError(f"'--kT'/'--dt' are for toy systems; use --temperature (K) and --timestep (fs) for {args.system}")
    if args.system == "polystyrene":
        system = Polystyrene(args.monomers, args.tacticity, conformation=args.conformation, seed=args.seed)
    elif args.system == "aaqaa3":
        system = AAQAA3(args.start)
    else:
        system = AlanineDipeptide()
    run = system.simulate(
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
