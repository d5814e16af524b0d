"""``gmvae-cv fes`` (a reweighted free-energy surface from PLUMED files) and ``gmvae-cv msm``
(a Markov state model, or TRAM, on GMVAE states)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .._core.errors import GMVAEInputError
from ._common import add_temperature, grid_spec, int_list, name_list, ranges


# ---------------------------------------------------------------- fes
def add_fes(sub) -> None:
    p = sub.add_parser(
        "fes",
        help="reweighted free-energy surface from PLUMED COLVAR/HILLS files",
        description=(
            "Free energy along 1 or 2 COLVAR variables, reweighted from a biased run, with block-averaging errors. "
            "Writes a table (variables, free energy, error), a PNG and a JSON. The temperature comes from --temperature "
            "or --kT, or from '#! SET temperature' / '#! SET kT' in the run's files; there is no default."
        ),
    )
    p.add_argument("colvar", nargs="+", help="COLVAR file(s); several = walkers sharing one bias")
    p.add_argument("--cv", type=name_list, required=True, help="COLVAR fields of the surface, e.g. phi,psi")
    p.add_argument("--weights", required=True, choices=["none", "final", "ct", "opes", "bias"],
                   help="none: unbiased; final: final bias (needs --tmin); ct: Tiwary-Parrinello c(t) (needs --hills); "
                   "opes: exp(beta opes.bias); bias: exp(beta COLUMN) for --bias-column; all but none also "
                   "add beta walls.bias when the COLVAR has it (the walls that keep the CV inside the bias grid)")
    p.add_argument("--hills", nargs="+", default=None, help="HILLS file(s) of the run (final, ct)")
    p.add_argument("--bias-column", default=None, help="bias field for --weights bias (e.g. metad.rbias) or opes")
    add_temperature(p, "the run")
    p.add_argument("--bins", type=int_list, default=[50], help="bins per variable (default 50)")
    p.add_argument("--range", dest="ranges", type=ranges, default=None,
                   help="MIN:MAX per variable, comma-separated (pi allowed; write --range=-pi:pi when MIN is negative); default: period or data range")
    p.add_argument("--periodic", default="auto",
                   help="'auto' (from '#! SET min_/max_' in COLVAR), 'none', or the periodic variables' names")
    p.add_argument("--tmin", type=float, default=None, help="first time used (COLVAR time units)")
    p.add_argument("--tmax", type=float, default=None, help="last time used")
    p.add_argument("--blocks", type=int, default=5, help="blocks for the error (default 5)")
    p.add_argument("--ct-grid", type=grid_spec, default=None,
                   help="MIN:MAX:BINS per biased CV for c(t), as PLUMED's GRID_MIN/MAX/BIN (default: the hills' extent)")
    p.add_argument("--out", required=True, help="output table, e.g. fes.dat")
    p.add_argument("--png", default=None, help="plot (default: OUT with .png)")
    p.add_argument("--json", default=None, help="JSON with arrays and units (default: OUT with .json)")
    p.set_defaults(func=fes)


def _periodic(args) -> Optional[list[bool]]:
    if args.periodic == "auto":
        return None
    if args.periodic == "none":
        return [False] * len(args.cv)
    names = name_list(args.periodic)
    unknown = [n for n in names if n not in args.cv]
    if unknown:
        raise GMVAEInputError(f"--periodic names {unknown}, which are not among --cv {args.cv}")
    return [c in names for c in args.cv]


def fes(args) -> int:
    from tqdm import tqdm

    from ..analysis import GridSpec, Hills, ReweightedFES

    d = len(args.cv)
    bins = args.bins * d if len(args.bins) == 1 else args.bins
    periodic = _periodic(args)
    hills = Hills.from_file(args.hills) if args.hills else None
    ct_grid = None
    if args.ct_grid is not None:
        if hills is None:
            raise GMVAEInputError("--ct-grid needs --hills")
        if len(args.ct_grid) != hills.n_cvs:
            raise GMVAEInputError(f"--ct-grid has {len(args.ct_grid)} entries, the hills bias {hills.n_cvs} CV(s)")
        ct_grid = GridSpec(
            tuple(g[0] for g in args.ct_grid), tuple(g[1] for g in args.ct_grid), tuple(g[2] for g in args.ct_grid),
            tuple(p is not None for p in hills.periodic),
        )
    est = ReweightedFES(
        args.cv, method=args.weights, temperature=args.temperature, kT=args.kT, bias_column=args.bias_column,
        bins=bins, ranges=args.ranges, periodic=periodic, n_blocks=args.blocks, tmin=args.tmin, tmax=args.tmax,
        ct_grid=ct_grid, progress=tqdm,
    )
    surface = est.fit(args.colvar, hills=hills).fetch_model()
    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    js = Path(args.json) if args.json else out.with_suffix(".json")
    surface.write_dat(out)
    surface.save(js)
    if surface.ndim <= 2:
        surface.plot(png)
    t = f"{surface.temperature:g} K" if surface.temperature is not None else f"kT {surface.kT:g}"
    print(f"{args.weights} reweighting at {t} (from {surface.info['temperature_from']}): {surface.n_frames} frames, "
          f"{surface.n_effective:.0f} effective, {surface.n_outside} outside the ranges")
    print(f"wrote {out}, {js}" + (f", {png}" if surface.ndim <= 2 else ""))
    return 0


# ---------------------------------------------------------------- msm
def add_msm(sub) -> None:
    p = sub.add_parser(
        "msm",
        help="Markov state model on GMVAE states: implied timescales, CK test, PCCA+, MFPTs (or TRAM)",
        description=(
            "Implied timescales with Bayesian error bands over --lags, and at --lag: PCCA+ sets, the "
            "Chapman-Kolmogorov test, the stationary distribution and mean first-passage times between states. "
            "States come from --dtraj files or from a trained run (--run RUN --data X.npy). Frames of a biased run "
            "are refused (give their COLVAR with --colvar to have them checked); with a static bias per ensemble use "
            "--tram with --bias-energies."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dtraj", nargs="+", help="integer .npy files of states, one per trajectory")
    src.add_argument("--run", help="a trained GMVAE run directory (with --data)")
    p.add_argument("--data", nargs="+", help="feature .npy files (n_frames, n_features), one per trajectory, for --run")
    p.add_argument("--states", choices=["clusters", "kmeans"], default="clusters", help="with --run: GMVAE clusters (default) or k-means on z")
    p.add_argument("--n-clusters", type=int, default=None, help="k-means centres (--states kmeans)")
    p.add_argument("--seed", type=int, default=42, help="k-means seed (default 42)")
    p.add_argument("--lags", type=int_list, required=True, help="lag times in frames for the implied timescales, e.g. 1,2,5,10")
    p.add_argument("--lag", type=int, required=True, help="lag time (frames) of the model analysed")
    p.add_argument("--dt", "--dt-ps", dest="dt", type=float, required=True, help="time between frames (in --time-unit, default ps)")
    p.add_argument("--time-unit", default="ps", help="unit of --dt (default ps)")
    p.add_argument("--n-its", type=int, default=None, help="implied timescales per lag (default n_states - 1, at most 10)")
    p.add_argument("--metastable", type=int, default=None, help="PCCA+ sets; also enables the CK test")
    p.add_argument("--ck-multiples", type=int, default=5, help="CK test up to this multiple of --lag (default 5)")
    p.add_argument("--samples", type=int, default=100, help="Bayesian samples for the error bands (default 100; 0 = none)")
    p.add_argument("--count-mode", default="sliding-effective", choices=["sliding-effective", "effective", "sliding", "sample"],
                   help="transition counting (default sliding-effective)")
    p.add_argument("--colvar", nargs="+", default=None, help="COLVAR of each trajectory: a non-zero bias column makes the MSM refuse")
    p.add_argument("--bias-column", default=None, help="bias field to check in --colvar (default: every field ending in .bias or .rbias)")
    p.add_argument("--tram", action="store_true", help="multi-ensemble TRAM instead of a plain MSM (needs --bias-energies)")
    p.add_argument("--bias-energies", nargs="+", default=None,
                   help="with --tram: .npy (n_frames, n_ensembles) per trajectory, the bias of each frame in every ensemble")
    p.add_argument("--ensembles", type=int_list, default=None, help="with --tram: ensemble index of each trajectory (default 0, 1, 2, ...)")
    add_temperature(p, "the ensembles (--tram)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=msm, log_dir=lambda a: a.out)


def _dtrajs(args, out: Path) -> tuple[list, list[str]]:
    """The state trajectories: read from --dtraj, or assigned by the run of --run to --data."""
    from ..analysis.msm_inputs import read_dtrajs, run_states

    if args.dtraj:
        return read_dtrajs(args.dtraj), list(args.dtraj)
    return run_states(args.run, args.data, method=args.states, n_clusters=args.n_clusters, seed=args.seed, out=out), list(args.data or [])


def _tram(args, dtrajs, out: Path) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..analysis import TRAMAnalysis
    from ..analysis.msm_inputs import read_bias_energies

    bias = read_bias_energies(args.bias_energies, len(dtrajs))
    res = TRAMAnalysis(args.lag, temperature=args.temperature, kT=args.kT, progress=tqdm).fit(dtrajs, bias, ensembles=args.ensembles).fetch_model()
    res.save(out / "tram.json")
    print("TRAM stationary distribution:", np.array2string(res.stationary_distribution, precision=4))
    print(f"wrote {out / 'tram.json'}")
    return 0


def msm(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..analysis import MarkovAnalysis
    from ..analysis.msm_inputs import colvar_bias

    out = Path(args.out)
    dtrajs, names = _dtrajs(args, out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tram:
        return _tram(args, dtrajs, out)
    bias = None
    if args.colvar:
        if len(args.colvar) != len(dtrajs):
            raise GMVAEInputError(f"--colvar has {len(args.colvar)} files for {len(dtrajs)} trajectories")
        bias = colvar_bias(args.colvar, args.bias_column)
    est = MarkovAnalysis(
        args.lags, lagtime=args.lag, dt=args.dt, time_unit=args.time_unit, n_timescales=args.n_its,
        n_metastable=args.metastable, ck_multiples=args.ck_multiples, n_samples=args.samples,
        count_mode=args.count_mode, progress=tqdm,
    )
    res = est.fit(dtrajs, bias=bias).fetch_model()
    res.info["sources"] = names
    res.save(out / "msm.json")
    res.plot_implied_timescales(out / "its.png")
    written = ["msm.json", "its.png"]
    if res.ck_lagtimes is not None:
        res.plot_ck_test(out / "ck.png")
        written.append("ck.png")
    tu = res.time_unit
    print(f"{res.info['n_frames']} frames in {res.info['n_trajectories']} trajectories, {res.n_states} states, "
          f"lag {args.lag} frames ({args.lag * args.dt:g} {tu})")
    print(f"slowest implied timescale at lag {args.lag}: {res.slowest_timescale():.4g} {tu}")
    print("stationary distribution:", np.array2string(res.stationary_distribution, precision=4))
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


# ---------------------------------------------------------------- explain
def add_explain(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="what each CV component and each cluster of a trained run depends on",
        description="Sensitivity of each CV component to each feature (mlcolvar), per-cluster feature "
        "means/spreads and standardised differences, and (for peptide specs) both folded per residue. "
        "Writes DIR/explain.json, sensitivity.csv, clusters.csv, sensitivity.png, cluster_separation.png "
        "(and residues.png).",
    )
    p.add_argument("run", help="run directory written by 'gmvae-cv train'")
    p.add_argument("--data", nargs="+", default=None, metavar="X.npy",
                   help="feature matrices (frames x features) to explain on; default: the run's training files")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=explain, log_dir=lambda a: a.out)


def explain(args) -> int:
    from ..analysis.explain import explain as explain_run

    rep = explain_run(args.run, args.data, out=args.out)
    tops = ", ".join(f"{j}: {r[0]}" for j, r in rep["ranking"].items())
    print(f"wrote {args.out}/explain.json ({rep['n_frames']} frames; names from {rep['feature_names_from']}); "
          f"most sensitive feature per component {tops}")
    return 0
