"""``gmvae-cv bias``: well-tempered metadynamics in OpenMM on an exported CV (a restartable run
directory with COLVAR, HILLS, traj.dcd, bias_grid.dat, fes.dat, checkpoint.npz, run.json)."""

from __future__ import annotations

from .._core.errors import GMVAEInputError


def add(sub) -> None:
    p = sub.add_parser(
        "bias",
        help="well-tempered metadynamics or OPES in OpenMM on an exported CV",
        description="Bias along the CV of EXP (an EXP directory with model_openmm.pt, or the .pt file itself) "
        "with well-tempered metadynamics (--method metad) or OPES (--method opes, opes-explore: PLUMED's OPES_METAD, "
        "OPES_METAD_EXPLORE). Writes RUN/COLVAR, HILLS (metad) or KERNELS (opes), PLUMED format, traj.dcd, "
        "bias_grid.dat, fes.dat, checkpoint.npz and run.json. Run the same command again to continue a stopped run.",
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
    p.add_argument("--method", choices=["metad", "opes", "opes-explore"], default="metad",
                   help="well-tempered metadynamics (default), OPES_METAD or OPES_METAD_EXPLORE")
    p.add_argument("--height", type=float, default=None, help="metad: initial hill height in kJ/mol (default 1.2)")
    p.add_argument("--sigma", type=float, nargs="+", default=None,
                   help="hill widths in CV units, one per biased component (default: the METAD SIGMA in EXP/cv.json)")
    p.add_argument("--bias-factor", type=float, default=None, help="metad: well-tempered bias factor gamma > 1 (default 10)")
    p.add_argument("--barrier", type=float, default=None,
                   help="opes: free-energy barrier in kJ/mol (default: the OPES_METAD BARRIER in EXP/cv.json, else 40)")
    p.add_argument("--pace", type=int, default=None,
                   help="steps between hills or kernels (default 500, or the OPES_METAD PACE in EXP/cv.json for opes)")
    p.add_argument("--components", type=int, nargs="+", default=None, help="CV components to bias, 1 to 3 (default all)")
    p.add_argument("--grid-min", type=float, nargs="+", default=None, help="grid minimum per biased component, CV units")
    p.add_argument("--grid-max", type=float, nargs="+", default=None, help="grid maximum per biased component, CV units")
    p.add_argument("--grid-bin", type=int, nargs="+", default=None, help="grid bins per biased component")
    p.add_argument("--walls", choices=["on", "off"], default="on",
                   help="walls on the non-periodic biased components that keep the CV inside the grid (PLUMED's "
                   "UPPER_WALLS/LOWER_WALLS, EXP=2; their energy is the COLVAR column walls.bias; default on)")
    p.add_argument("--wall-margin", type=float, nargs="+", default=None,
                   help="distance of the walls inside the grid edges per biased component, CV units (default 4 sigma)")
    p.add_argument("--wall-kappa", type=float, nargs="+", default=None,
                   help="walls' stiffness per biased component, kJ/mol/CV-unit^2 (default 2 kT / sigma^2)")
    p.add_argument("--kernel", choices=["stretched-gaussian", "gaussian"], default=None,
                   help="metad: hill shape: PLUMED's stretched Gaussian (default) or openmm.app.Metadynamics' untruncated Gaussian")
    p.add_argument("--walkers", type=int, default=1, help="walkers sharing one bias in this process, in lock-step (default 1)")
    p.add_argument("--walkers-dir", default=None, metavar="SHARED",
                   help="share the bias with walkers in other processes (each with its own --out and --walker-id) through "
                   "this directory: each publishes its hills to SHARED/HILLS.<id> and reads the others' (as PLUMED's WALKERS_DIR)")
    p.add_argument("--walker-id", type=int, default=None, help="this process's walker id in --walkers-dir (unique, >= 0)")
    p.add_argument("--walkers-stride", type=int, default=10,
                   help="own hills between exchanges with the other walkers; each exchange is a checkpoint (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--platform", default=None, metavar="auto|CUDA|CPU|Reference",
                   help="OpenMM platform (default auto: the fastest that works, measured at start: Reference, CPU, and "
                   "CUDA with the CUDA build of OpenMM-Torch; the choice is recorded in run.json)")
    p.add_argument("--colvar-stride", type=int, default=None, help="steps between COLVAR rows (default pace/5)")
    p.add_argument("--traj-stride", type=int, default=None, help="steps between trajectory frames (default pace; 0: none)")
    p.add_argument("--checkpoint-interval", type=int, default=None, help="steps between checkpoints, a multiple of pace")
    p.add_argument("--route", choices=["auto", "native", "compiled", "autograd"], default="auto",
                   help="how the bias force is evaluated: native (a numba-compiled kernel in a PythonForce), compiled or "
                        "autograd (TorchScript in a TorchForce); auto (default): native where it applies, else compiled")
    p.add_argument("--precision", choices=["float64", "float32"], default="float64", help="arithmetic inside the bias force")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads during the run (default 1)")
    p.add_argument("--heating-limit", default="auto",
                   help="stop when a walker's kinetic temperature exceeds this many times --temperature "
                        "('auto': the 1e-12 equilibrium tail; 'off': never; non-finite values always stop the run)")
    p.add_argument("--cpu-threads", type=int, default=None, help="threads of OpenMM's CPU platform")
    p.add_argument("--overwrite", action="store_true", help="replace a run in --out that has other parameters")
    p.set_defaults(func=run, log_dir=lambda a: a.out)


def heating_limit(text: str):
    """'auto', 'off' (None) or a number (checked by the engine)."""
    if text in ("auto", "off"):
        return None if text == "off" else "auto"
    try:
        return float(text)
    except ValueError:
        raise GMVAEInputError(f"'--heating-limit' is {text!r}, expected 'auto', 'off' or a number > 1") from None


def _system(args):
    """(system, topology, positions, description, extra COLVAR features) of --system or --pdb."""
    if args.system is not None and (args.system_xml or args.pdb or args.forcefield):
        raise GMVAEInputError("'--system' is a built-in system; do not combine it with --system-xml/--pdb/--forcefield")
    if args.system == "alanine-dipeptide":
        from ..features import alanine_backbone_torsions
        from ..systems import AlanineDipeptide

        ala = AlanineDipeptide()
        description = {"name": "alanine dipeptide (ACE-ALA-NME), vacuum", "forcefield": list(ala.forcefield_files),
                       "nonbonded": "NoCutoff", "constraints": "HBonds", "pdb": str(ala.pdb_path)}
        return ala.create_system(), ala.topology, ala.positions, description, alanine_backbone_torsions(transform="raw")
    if args.pdb is not None:
        from ..metad import load_md_system

        md = load_md_system(args.pdb, system_xml=args.system_xml, forcefield=args.forcefield)
        return md.system, md.topology, md.positions, md.description, None
    raise GMVAEInputError("no system: give --system alanine-dipeptide, or --pdb with --system-xml or --forcefield")


_METAD_ONLY = (("height", "--height"), ("bias_factor", "--bias-factor"), ("kernel", "--kernel"))


def _bias_keywords(args, cv) -> dict:
    """The bias parameters for --method, defaults from EXP/cv.json; a parameter of another method is
    refused by name."""
    plumed = (cv.meta.get("cv_json") or {}).get("plumed") or {}
    if args.method == "metad":
        if args.barrier is not None:
            raise GMVAEInputError("'--barrier' is an OPES parameter; it is not used with --method metad "
                                  "(give --bias-factor and --height, or --method opes)")
        return {"sigma": _default_sigma(args, plumed.get("metad", {}).get("sigma"), "METAD"),
                "height": 1.2 if args.height is None else args.height,
                "bias_factor": 10.0 if args.bias_factor is None else args.bias_factor,
                "pace": 500 if args.pace is None else args.pace,
                "kernel": args.kernel or "stretched-gaussian"}
    given = [flag for key, flag in _METAD_ONLY if getattr(args, key) is not None]
    if given:
        raise GMVAEInputError(f"'{given[0]}' is a metadynamics parameter; --method {args.method} does not take it "
                              "(OPES sets its bias factor from --barrier: barrier / kT)")
    opes = plumed.get("opes", {})
    return {"sigma": _default_sigma(args, opes.get("sigma"), "OPES_METAD"),
            "barrier": args.barrier if args.barrier is not None else float(opes.get("barrier", 40.0)),
            "pace": args.pace if args.pace is not None else int(opes.get("pace", 500))}


def _default_sigma(args, exported, action: str) -> list:
    if args.sigma is not None:
        return args.sigma
    if exported is None:
        raise GMVAEInputError(f"'--sigma' is missing and {args.exp} has no cv.json with a {action} sigma; "
                              "give one width per biased component")
    comps = args.components if args.components is not None else range(len(exported))
    return [float(exported[c]) for c in comps]


def run(args) -> int:
    if args.timestep <= 0:
        raise GMVAEInputError(f"'--timestep' is {args.timestep}, expected a time step > 0 in fs")
    limit = heating_limit(args.heating_limit)
    from tqdm import tqdm

    from ..deploy import load_cv
    from ..metad import run_metadynamics

    system, topology, positions, description, extra = _system(args)
    n_steps = args.steps if args.steps is not None else int(round(args.ns * 1e6 / args.timestep))
    cv = load_cv(args.exp)
    bias = _bias_keywords(args, cv)
    res = run_metadynamics(
        cv, args.out, system=system, topology=topology, positions=positions, n_steps=n_steps, method=args.method,
        temperature=args.temperature, components=args.components, grid_min=args.grid_min, grid_max=args.grid_max,
        grid_bin=args.grid_bin, walls=args.walls == "on", wall_margin=args.wall_margin, wall_kappa=args.wall_kappa,
        walkers=args.walkers, seed=args.seed,
        timestep=args.timestep / 1000.0, friction=args.friction, platform=args.platform,
        colvar_stride=args.colvar_stride, traj_stride=args.traj_stride, checkpoint_interval=args.checkpoint_interval,
        route=args.route, dtype=args.precision, torch_threads=args.torch_threads, cpu_threads=args.cpu_threads,
        extra_colvar=extra, description=description, overwrite=args.overwrite, progress=tqdm,
        heating_limit=limit,
        walkers_dir=args.walkers_dir, walker_id=args.walker_id, walkers_stride=args.walkers_stride, **bias,
    )
    again = f" (continued from step {res.resumed_from})" if res.resumed_from is not None else ""
    shared = res.info.get("shared_walkers")
    if shared:
        read = sum(shared["hills_read"].values())
        again += f", walker {shared['walker_id']}: {shared['own_hills']} own hills, {read} read from other walkers"
    ns = res.steps * args.timestep * 1e-6
    what, files = ("hills", "HILLS") if args.method == "metad" else ("kernels", "KERNELS")
    print(
        f"{res.path}: {res.steps} steps ({ns:.3g} ns) x {args.walkers} walker(s){again}, {res.n_hills} {what}, "
        f"platform {res.platform}, {res.ns_per_day:.1f} ns/day per walker; COLVAR, {files}, bias_grid.dat, fes.dat, run.json"
    )
    return 0
