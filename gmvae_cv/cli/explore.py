"""``gmvae-cv explore``: parse the arguments and call :func:`gmvae_cv.explore` (no logic of its own)."""

from __future__ import annotations

import argparse

from .._core.errors import GMVAEInputError

__all__ = ["add_explore", "cmd_explore"]

_METHOD_PARAMS = {"metad": ("bias_factor", "height"), "opes": ("barrier",), "opes-explore": ("barrier",)}


def add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="discover states from a stuck unbiased run: train a GMVAE, bias its CV, retrain on everything, repeat",
        description="Round 0 trains a GMVAE on the given unbiased frames; each round exports and checks the CV, biases it, "
        "and the next round trains on everything sampled so far, until no new cluster appears and dF is stable for two "
        "rounds, or the round budget. Writes DIR/round_NN/ (run, exp, bias, analysis), DIR/summary.json, "
        "DIR/reweighted.npz and plots. Run the same command again to continue a stopped explore.",
    )
    p.add_argument("--out", required=True, help="output directory DIR (continued if it holds the same explore)")
    p.add_argument("--system", choices=["alanine-dipeptide"], default=None, help="built-in system (amber14, vacuum)")
    p.add_argument("--system-xml", default=None, help="your own system: an OpenMM System XML, with --pdb")
    p.add_argument("--pdb", default=None, help="your own system: structure with --system-xml or --forcefield")
    p.add_argument("--forcefield", nargs="+", default=None, metavar="XML", help="OpenMM force-field files")
    p.add_argument("--traj", nargs="+", default=None, help="unbiased trajectories (any format mdtraj reads), with --top")
    p.add_argument("--top", default=None, help="topology of --traj (PDB)")
    p.add_argument("--data", nargs="+", default=None, help="feature matrices (.npy) of the unbiased frames instead of --traj")
    p.add_argument("--spec", default="alanine-distances",
                   help="features: alanine-distances, alanine-torsions, a spec JSON file or an EXP directory (default alanine-distances)")
    p.add_argument("--input-logw", default=None, help="log-weights (.npy) of the given frames, if they come from a biased run")
    p.add_argument("--rounds", type=int, default=6, help="round budget: biased runs at most (default 6)")
    p.add_argument("--ns-per-round", type=float, default=2.0, help="simulated time of each biased run in ns (default 2)")
    p.add_argument("--method", choices=["metad", "opes", "opes-explore"], default="metad", help="bias method (default metad)")
    p.add_argument("--walkers", type=int, default=1, help="walkers sharing one bias per round (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--training-weights", choices=["coverage", "reweighted"], default="coverage",
                   help="frames of the next GMVAE: each counts once (coverage, default) or with its Boltzmann weight")
    p.add_argument("--temperature", type=float, default=None, help="K (default 300)")
    p.add_argument("--timestep", type=float, default=None, help="time step of the biased runs in fs (default 2)")
    p.add_argument("--bias-factor", type=float, default=None, help="metad: well-tempered bias factor (default 10)")
    p.add_argument("--height", type=float, default=None, help="metad: initial hill height in kJ/mol (default 1.2)")
    p.add_argument("--barrier", type=float, default=None, help="opes, opes-explore: barrier to overcome in kJ/mol (default 40)")
    p.add_argument("--epochs", type=int, default=None, help="GMVAE training epochs per round (default 150)")
    p.add_argument("--walls", choices=["on", "off"], default=None,
                   help="walls that keep the biased CV inside its grid (default on; see gmvae-cv bias --walls)")
    p.add_argument("--cv-policy", choices=["keep", "retrain"], default=None,
                   help="keep (default): once a round's CV crosses --keep-crossings times per ns, keep it and continue its run; "
                        "retrain: every round biases its own GMVAE")
    p.add_argument("--keep-method", choices=["metad", "opes", "opes-explore", "same"], default=None,
                   help="method of a kept CV's run (default opes: OPES_METAD converges the free energy; same: --method continued)")
    p.add_argument("--keep-crossings", type=float, default=None,
                   help="crossings between the named states per ns that keep a CV (default 10)")
    p.set_defaults(func=cmd_explore, log_dir=lambda a: a.out)


def cmd_explore(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..workflows.explore import explore

    given = {name: getattr(args, name) for name in ("bias_factor", "height", "barrier") if getattr(args, name) is not None}
    foreign = [n for n in given if n not in _METHOD_PARAMS.get(args.method, ())]
    if foreign:
        owner = "metad" if foreign[0] in _METHOD_PARAMS["metad"] else "opes/opes-explore"
        raise GMVAEInputError(f"{', '.join('--' + n.replace('_', '-') for n in foreign)} belong(s) to --method {owner}, "
                              f"not to --method {args.method}")
    if args.system is not None and (args.system_xml or args.pdb or args.forcefield):
        raise GMVAEInputError("'--system' is a built-in system; do not combine it with --system-xml/--pdb/--forcefield")
    if args.system is None and args.pdb is None:
        raise GMVAEInputError("no system: give --system alanine-dipeptide, or --pdb with --system-xml or --forcefield")
    overrides = {k: v for k, v in (("temperature", args.temperature), ("timestep_fs", args.timestep),
                                   ("epochs", args.epochs), *given.items()) if v is not None}
    if args.walls is not None:
        overrides["walls"] = args.walls == "on"
    if args.cv_policy is not None:
        overrides["cv_policy"] = args.cv_policy
    if args.keep_method is not None:
        overrides["keep_method"] = None if args.keep_method == "same" else args.keep_method
    if args.keep_crossings is not None:
        overrides["keep_min_transitions_per_ns"] = args.keep_crossings
    data = [np.load(p) for p in args.data] if args.data else None
    logw = np.load(args.input_logw) if args.input_logw else None
    summary = explore(args.out, traj=args.traj, top=args.top, data=data, spec=args.spec, system=args.system,
                      pdb=args.pdb, system_xml=args.system_xml, forcefield=args.forcefield, input_logw=logw,
                      rounds=args.rounds, ns_per_round=args.ns_per_round, method=args.method, walkers=args.walkers,
                      seed=args.seed, training_weights=args.training_weights, progress=tqdm, log=print, **overrides)
    final = summary.get("final") or {}
    print(f"{args.out}: {summary['n_rounds']} round(s), {summary['biased_ns_total']:.3g} ns biased; {summary['stop_reason']}")
    print(f"first C7eq -> C7ax transition after {summary.get('first_transition_ns')} ns biased; "
          f"dF(phi>0 - phi<0) = {final.get('delta_f_phi_pos_minus_neg_kjmol')} kJ/mol")
    return 0
