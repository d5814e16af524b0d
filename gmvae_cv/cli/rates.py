"""``gmvae-cv rates``: rates by infrequent metadynamics on Dask (parses, then calls
:func:`gmvae_cv.workflows.rates.run_rates`)."""

from __future__ import annotations

__all__ = ["add_rates"]


def add_rates(sub) -> None:
    p = sub.add_parser(
        "rates",
        help="rates by infrequent metadynamics: independent runs on Dask, KS test, tau against pace",
        description="N independent infrequent-metadynamics runs on the CV of EXP (or 'phi-psi', 'phi', 'psi'), each stopped when it "
        "enters the target state, through Dask (a LocalCluster, or --scheduler). Writes DIR/runs/<from>-<to>/pace<P>/"
        "run<i>/ (each whole or absent), DIR/summary.json (tau with its interval, KS p-value, median/mean, pace test, "
        "dF from both directions), ecdf.png and tau_vs_pace.png. Run the same command again to do only the missing runs.",
    )
    p.add_argument("exp", nargs="?", default=None,
                   help="EXP directory (gmvae-cv export) whose CV is biased, or 'phi-psi', 'phi' or 'psi' (the backbone torsions; not for --system double-well)")
    p.add_argument("--system", choices=["alanine-dipeptide", "double-well"], default="alanine-dipeptide")
    p.add_argument("--from", dest="origin", default=None,
                   help="start state: C7eq, C7ax (phi/psi core sets) or cluster:<i> (GMVAE cluster); left/right for double-well")
    p.add_argument("--to", dest="target", default=None, help="target state (as --from)")
    p.add_argument("--runs", type=int, required=True, help="runs per direction and pace (>= 1; 3 or more for statistics)")
    p.add_argument("--out", required=True, help="output folder DIR")
    p.add_argument("--pace", type=int, nargs="+", default=[2500], help="deposition pace(s) in MD steps (default 2500)")
    p.add_argument("--height", type=float, default=1.0, help="initial hill height, kJ/mol (default 1.0)")
    p.add_argument("--sigma", type=float, nargs="+", default=None, help="hill widths in CV units (default: EXP's METAD sigma)")
    p.add_argument("--bias-factor", type=float, default=10.0, help="well-tempered bias factor (default 10)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs (default 2; double-well: 1000 x its reduced time step)")
    p.add_argument("--max-ns", type=float, default=20.0, help="biased ns after which a run stops unescaped (default 20; double-well: 1e6 reduced units per ns)")
    p.add_argument("--one-way", action="store_true", help="only --from -> --to (default: both directions)")
    p.add_argument("--components", type=int, nargs="+", default=None, help="CV components to bias (default all)")
    p.add_argument("--platform", default="Reference", help="OpenMM platform of each run (default Reference)")
    p.add_argument("--barrier", type=float, default=8.0, help="double-well only: barrier in kT (default 8)")
    p.add_argument("--reweighting-df", type=float, nargs=3, default=None, metavar=("DF", "LOW", "HIGH"),
                   help="F(to) - F(from) in kJ/mol from reweighting, to compare with the dF the two directions' rates imply")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (dask-jobqueue on SLURM); default a LocalCluster")
    p.add_argument("--workers", type=int, default=1, help="LocalCluster worker processes (default 1)")
    p.set_defaults(func=_cmd_rates, log_dir=lambda a: a.out)


def _cmd_rates(args) -> int:
    from .._core.errors import GMVAEInputError
    from ..workflows.rates import RateSettings, run_rates

    if args.runs < 1:
        raise GMVAEInputError(f"'--runs' is {args.runs}, expected at least 1 run (3 or more for the statistics)")
    toy = args.system == "double-well"
    origin = args.origin or ("left" if toy else "C7eq")
    target = args.target or ("right" if toy else "C7ax")
    settings = RateSettings(
        paces=tuple(args.pace), height=args.height, sigma=None if args.sigma is None else tuple(args.sigma),
        bias_factor=args.bias_factor, temperature=args.temperature, timestep=args.timestep / 1000.0,
        max_ps=args.max_ns * 1000.0, components=None if args.components is None else tuple(args.components),
        platform=args.platform, barrier=args.barrier,
    )
    summary = run_rates(args.exp, args.out, system=args.system, origin=origin, target=target, n_runs=args.runs,
                        settings=settings, both_directions=not args.one_way, seed=args.seed,
                        scheduler=args.scheduler, workers=args.workers,
                        reweighting_df=args.reweighting_df, log=print)
    for key in sorted(k for k in summary if k.startswith("tau_")):
        v = summary[key]
        print(f"{key}: {v[0]:.4g} [{v[1]:.4g}, {v[2]:.4g}]")
    for key in ("rates_ks_pvalue", "rates_runs", "delta_f_from_rates_kjmol", "delta_f_reweighting_kjmol", "delta_f_consistent",
                "rates_checks_passed"):
        if key in summary:
            print(f"{key}: {summary[key]}")
    for failed in summary.get("rates_failed_checks") or []:
        print(f"  failed: {failed}")
    return 0
