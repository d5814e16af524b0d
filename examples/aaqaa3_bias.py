"""AAQAA3: the GMVAE CV exported, checked and biased at 340 K; helix <-> coil transitions per ns against unbiased MD.

Steps (the MD and the GMVAE as in ``examples/aaqaa3.py``, shorter):

1. Training MD: one run from the built alpha helix and one from the extended chain, Langevin at
   ``--temperature`` (340 K), 4 fs with HMR 1.5 amu, friction 1/ps, 10 ps equilibration, a frame
   every 0.4 ps, ``--train-steps`` each (default 25,000 = 0.1 ns); reused when WORK/md holds runs
   with the same settings.
2. GMVAE 60D -> 2D on ``backbone_torsions`` with ``--k`` components (default 6: the count that
   ``examples/aaqaa3.py`` selected on its 0.3 ns runs, ``docs/figures/aaqaa3/summary.json``).
3. :func:`gmvae_cv.export` (plumed inputs at the run temperature, a hill per ps) and
   :func:`gmvae_cv.check_export`; when only finite-difference rows failed because too many
   coordinates of the 4 check frames lie at ReLU kinks, checked again on 16 other frames, as
   ``gmvae_cv.workflows.explore.stages.export_stage`` does. A failed check stops the script.
4. Method probe (``--probe-ns``, default 0.02 ns, seed 0, from the helix): well-tempered
   metadynamics (height 1.2 kJ/mol, bias factor 10, a hill per ps) and OPES-explore (barrier
   40 kJ/mol, a kernel per ps), the explore workflow's defaults, walls on. The method kept for the
   comparison is the one whose probe reached the fewest residues in DSSP 'H' (then: the larger
   CV excursion from the start in units of SIGMA); ``--method`` names it instead.
5. Per seed of ``--seeds``: the biased run and an unbiased run (``AAQAA3.simulate``, the same
   LangevinMiddleIntegrator, CPU platform, no equilibration, as the biased run) of ``--bias-ns``
   each from the built helix with that seed; DSSP on frames every 0.4 ps.
   Transitions are counted between core sets of the DSSP state (``aaqaa3.dssp_state``):
   all-coil (no residue in 'H') and mostly helical (>= 8 of 15); partly helical frames belong to
   neither and are skipped, so one transition is a passage from one core to the other. Counted
   frame by frame, and again on the running median of the helical-residue count over 5 frames
   (2 ps), which removes the one- and two-frame DSSP flickers (a single frame with no residue in
   'H' inside a helical stretch counts two transitions frame by frame).

Writes ``bias.json`` (every number, the command, walltimes, ns/day), ``bias_helicity.png``
(helicity against time, biased and unbiased, per seed) and ``bias_cv.png`` (the CV of the biased
and unbiased frames on the training frames) into OUT (default ``docs/figures/aaqaa3``); the runs
go to WORK (default ``aaqaa3_bias_work``). Measured costs: ``docs/figures/aaqaa3/README.md``.

Usage: ``python examples/aaqaa3_bias.py [--out DIR] [--work DIR] [--train-steps N] [--k K]
[--bias-ns NS] [--seeds S ...] [--method {metad,opes-explore}] [--probe-ns NS] [--quick]``;
``--recount`` recomputes bias.json's rows and the figures from the runs kept in WORK (no MD).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aaqaa3 as _base  # noqa: E402  (examples/aaqaa3.py: the training MD and the DSSP states)

TIMESTEP_PS = 0.004
FRAME_STEPS = 100  # 0.4 ps
PACE = 250  # a hill (kernel) per ps
SMOOTH_FRAMES = 5  # 2 ps: the running median that removes one- and two-frame DSSP flickers
METHODS = {"metad": {"height": 1.2, "bias_factor": 10.0}, "opes-explore": {"barrier": 40.0}}


def core_transitions(states: np.ndarray) -> dict:
    """Passages between the all-coil (0) and mostly helical (2) cores; state 1 (partly helical) skipped.

    Parameters
    ----------
    states : (n_frames,) int array
        DSSP states per frame (0, 1, 2).

    Returns
    -------
    dict
        ``transitions`` (all), ``helix_to_coil``, ``coil_to_helix``.
    """
    core = np.asarray(states)[np.asarray(states) != 1]
    step = np.diff(core)
    return {"transitions": int(np.count_nonzero(step)), "helix_to_coil": int(np.count_nonzero(step < 0)),
            "coil_to_helix": int(np.count_nonzero(step > 0))}


def running_median(n_helical: np.ndarray, window: int) -> np.ndarray:
    """Running median of ``n_helical`` over ``window`` frames (odd; the ends padded with their edge values).

    Parameters
    ----------
    n_helical : (n_frames,) array
        Residues in DSSP 'H' per frame.
    window : int
        Frames in the window (1: unchanged).

    Returns
    -------
    (n_frames,) float array
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"'window' is {window}, expected an odd number >= 1")
    a = np.asarray(n_helical, dtype=np.float64)
    h = window // 2
    padded = np.concatenate([np.full(h, a[0]), a, np.full(h, a[-1])])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def _train(work: Path, steps: int, T: float, k: int, epochs: int, quick: bool):
    """Training MD (two starts), features, the GMVAE; returns (run, spec, features list, helix trajectory, MD info)."""
    import mdtraj as md

    from gmvae_cv import fit
    from gmvae_cv.features.peptide import backbone_torsions

    runs = _base._md(work / "md", steps, T, 10 if quick else FRAME_STEPS, 0 if quick else 2500)
    trajs = [md.load(str(r["dir"] / "traj.dcd"), top=str(r["dir"] / "topology.pdb")) for r in runs]
    spec = backbone_torsions(trajs[0].topology)
    xs = [spec.compute(t) for t in trajs]
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # fit(overwrite=True) would load the previous run's best.ckpt
    t0 = time.perf_counter()
    run = fit(xs, k=k, seed=0, feature_spec=spec, out=run_dir, progress=False, latent_dim=2, batch_size=256,
              lr=3e-3, epochs=epochs, patience=20)
    info = {"runs": [{"start": r["start"], "reused": r["reused"], "n_steps": r["meta"]["n_steps"],
                      "wall_s": r["meta"]["performance"]["wall_s"], "ns_per_day": r["meta"]["performance"]["ns_per_day"]}
                     for r in runs],
            "n_frames": int(sum(len(x) for x in xs)), "fit_wall_s": time.perf_counter() - t0, "k": k, "epochs": epochs,
            "best_epoch": run.info["training"].get("best_epoch")}
    return run, spec, xs, trajs[0], info


def _export_checked(run, exp_dir: Path, xs: list, frames, T: float) -> dict:
    """Export and check (a second check on 16 other frames when only ReLU-kink rows failed)."""
    from gmvae_cv import MetadSettings, OpesSettings, check_export, export

    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    t0 = time.perf_counter()
    export(run, exp_dir, data=np.concatenate(xs), frames=frames,
           metad=MetadSettings(temperature=T, pace=PACE, **METHODS["metad"]),
           opes=OpesSettings(temperature=T, pace=PACE, **METHODS["opes-explore"]))
    report = check_export(exp_dir)
    reports = [report]
    failed = [q for q in report.rows if not q.passed]
    if failed and all("finite differences of the energy" in q.quantity and not math.isfinite(q.max_abs_error)
                      for q in failed):
        idx = np.sort(np.random.default_rng(0).choice(len(frames), size=min(32, len(frames)), replace=False))
        report = check_export(exp_dir, frames=np.asarray(frames.xyz[idx], dtype=np.float64), n_fd_frames=16)
        reports.append(report)
    if not report.passed:
        raise RuntimeError(f"{exp_dir}: the exported CV disagrees with the Python model:\n{report.to_text()}")
    return {"passed": True, "n_checks": len(reports), "wall_s": time.perf_counter() - t0,
            "failed_rows_first_check": [q.quantity for q in failed],
            "rows": [{"quantity": q.quantity, "passed": bool(q.passed),
                      "max_abs_error": float(q.max_abs_error) if math.isfinite(q.max_abs_error) else None}
                     for q in report.rows]}


def _biased(cv, out: Path, pep, n_steps: int, method: str, T: float, seed: int) -> dict:
    """One biased run from ``pep``'s positions; its DSSP states, CV and cost."""
    from gmvae_cv import read_plumed, run_metadynamics

    if out.exists():
        shutil.rmtree(out)
    plumed = cv.meta["cv_json"]["plumed"]
    sigma = (plumed.get("opes") or plumed["metad"])["sigma"] if method == "opes-explore" else plumed["metad"]["sigma"]
    t0 = time.perf_counter()
    res = run_metadynamics(cv, out, system=pep.create_system(), topology=pep.topology, positions=pep.positions,
                           n_steps=n_steps, method=method, sigma=sigma, pace=PACE, temperature=T, timestep=TIMESTEP_PS,
                           friction=1.0, seed=seed, platform="CPU", walls=True, traj_stride=FRAME_STEPS,
                           colvar_stride=FRAME_STEPS, **METHODS[method])
    wall = time.perf_counter() - t0
    col = read_plumed(out / "COLVAR")
    bias_col = "opes.bias" if method.startswith("opes") else "metad.bias"
    z = np.column_stack([col[n] for n in cv.names])
    return {"dir": out, "traj": out / "traj.dcd", "z": z, "bias": np.asarray(col[bias_col]), "sigma": list(map(float, sigma)),
            "wall_s": wall, "ns_per_day": float(res.ns_per_day), "platform": res.platform, "n_hills": int(res.n_hills),
            "route": (res.info.get("force") or {}).get("route", res.info.get("route"))}


def _unbiased(out: Path, pep, n_steps: int, T: float, seed: int) -> dict:
    """The unbiased run of ``n_steps`` from ``pep``'s positions (no equilibration, as the biased run)."""
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    r = pep.simulate(n_steps, FRAME_STEPS, out, temperature=T, timestep=TIMESTEP_PS, friction=1.0, seed=seed,
                     platform="CPU", equilibration_steps=0)
    meta = json.loads((out / "simulation.json").read_text())
    return {"dir": out, "traj": out / "traj.dcd", "wall_s": time.perf_counter() - t0,
            "ns_per_day": float(meta["performance"]["ns_per_day"]), "platform": meta["platform"]["name"], "run": r}


def _dssp(traj_file: Path, top, spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_helical per frame, DSSP state per frame, features) of a trajectory."""
    import mdtraj as md

    from gmvae_cv.systems import dssp_helicity

    tr = md.load(str(traj_file), top=top)
    _, per_res = dssp_helicity(tr)
    n_h = per_res.sum(axis=1)
    return n_h, _base.dssp_state(n_h, per_res.shape[1]), spec.compute(tr)


def _pair_summary(run_info: dict, n_h: np.ndarray, ns: float) -> dict:
    """Transitions per ns (frame by frame, and on the 2 ps running median), state fractions and cost of one run."""
    states = _base.dssp_state(n_h, 15)
    tr = core_transitions(states)
    sm = core_transitions(_base.dssp_state(running_median(n_h, SMOOTH_FRAMES), 15))
    return {**tr, "transitions_per_ns": tr["transitions"] / ns, "ns": ns,
            f"median_{SMOOTH_FRAMES}_frames": {**sm, "transitions_per_ns": sm["transitions"] / ns},
            "state_fractions": {n: float(np.mean(states == i)) for i, n in enumerate(_base.STATE_NAMES)},
            "mean_helicity": float(n_h.mean() / 15.0), "min_n_helical": int(n_h.min()), **run_info}


def _spread(rows: list, part: str, key: str) -> dict:
    """Values over seeds of ``row[part][key]`` with mean, sample std, min and max."""
    v = np.array([r[part][key] for r in rows], dtype=float)
    return {"values": v.tolist(), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max())}


def _seed_row(seed: int, work: Path, run, cv, spec, top, ns: float) -> tuple[dict, dict]:
    """The row of bias.json and the figure traces of one seed, read from WORK/bias_s<seed> and WORK/unbiased_s<seed>."""
    from gmvae_cv import read_plumed

    bd, ud = work / f"bias_s{seed}", work / f"unbiased_s{seed}"
    info = json.loads((bd / "run.json").read_text())
    meta = json.loads((ud / "simulation.json").read_text())
    col = read_plumed(bd / "COLVAR")
    zb = np.column_stack([col[n] for n in cv.names])
    bias_col = next(c for c in ("opes.bias", "metad.bias") if c in col.fields)
    nb, _, _ = _dssp(bd / "traj.dcd", top, spec)
    nu, _, xu = _dssp(ud / "traj.dcd", top, spec)
    zu = run.transform(xu)["z"]
    perf = info["performance"]
    row = {"seed": seed,
           "biased": {**_pair_summary({"wall_s": perf["wall_s"], "ns_per_day": perf["ns_per_day_per_walker"],
                                       "platform": info["platform"]["name"]}, nb, ns),
                      "n_hills": int(info["n_hills"]), "route": info["force"]["route"],
                      "final_bias_kJ_mol": float(col[bias_col][-1]), "cv_range": np.ptp(zb, axis=0).tolist()},
           "unbiased": {**_pair_summary({"wall_s": meta["performance"]["wall_s"], "ns_per_day": meta["performance"]["ns_per_day"],
                                         "platform": meta["platform"]["name"]}, nu, ns),
                        "cv_range": np.ptp(zu, axis=0).tolist()}}
    return row, {"biased": {"n_h": nb, "z": zb}, "unbiased": {"n_h": nu, "z": zu}}


def _with_spread(result: dict, rows: list) -> dict:
    """``result`` with its ``seeds`` set to ``rows`` and the ``spread`` over them."""
    keys = ("transitions_per_ns", "ns_per_day", "mean_helicity", "wall_s")
    result["seeds"] = rows
    result["spread"] = {f"{p}.{key}": _spread(rows, p, key) for p in ("biased", "unbiased") for key in keys}
    sm = f"median_{SMOOTH_FRAMES}_frames"
    for p in ("biased", "unbiased"):
        v = np.array([r[p][sm]["transitions_per_ns"] for r in rows], dtype=float)
        result["spread"][f"{p}.{sm}.transitions_per_ns"] = {
            "values": v.tolist(), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max())}
        v = np.array([r[p]["state_fractions"]["all-coil"] for r in rows], dtype=float)
        result["spread"][f"{p}.all_coil_fraction"] = {"values": v.tolist(), "mean": float(v.mean()),
                                                      "std": float(v.std(ddof=1)) if len(v) > 1 else None}
    return result


def _probe(cv, work: Path, pep, n_steps: int, T: float, spec, top) -> dict:
    """Both methods for ``n_steps`` from the helix, seed 0: the fewest helical residues reached and the CV excursion."""
    out = {}
    for method in METHODS:
        b = _biased(cv, work / f"probe_{method}", pep, n_steps, method, T, 0)
        n_h, _, _ = _dssp(b["traj"], top, spec)
        exc = np.max(np.linalg.norm((b["z"] - b["z"][0]) / np.asarray(b["sigma"]), axis=1))
        out[method] = {"min_n_helical": int(n_h.min()), "final_n_helical": int(n_h[-1]),
                       "max_cv_excursion_sigma": float(exc), "final_bias_kJ_mol": float(b["bias"][-1]),
                       "ns_per_day": b["ns_per_day"], "wall_s": b["wall_s"], "route": b["route"]}
    best = min(out, key=lambda m: (out[m]["min_n_helical"], -out[m]["max_cv_excursion_sigma"]))
    return {"ns": n_steps * TIMESTEP_PS / 1000.0, "seed": 0, "results": out, "chosen": best,
            "rule": "fewest residues in DSSP 'H' reached, then the larger CV excursion from the start (in SIGMA)"}


def _figures(out: Path, rows: list, traces: list, z_train: np.ndarray, method: str) -> None:
    """``bias_helicity.png`` (residues in 'H' against time per seed) and ``bias_cv.png`` (the runs in the latent space)."""
    from gmvae_cv.analysis.plots import _pyplot, save_figure

    plt = _pyplot()
    n = len(traces)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.3 * n + 0.6), sharex=True, squeeze=False, layout="constrained")
    for ax, tr, r in zip(axes[:, 0], traces, rows):
        for name, c in (("unbiased", "0.45"), ("biased", "C3")):
            t_ps = np.arange(1, len(tr[name]["n_h"]) + 1) * FRAME_STEPS * TIMESTEP_PS
            ax.plot(t_ps, tr[name]["n_h"], lw=0.7, color=c,
                    label=f"{name}: {r[name]['transitions']} transitions frame by frame, "
                          f"{r[name][f'median_{SMOOTH_FRAMES}_frames']['transitions']} on the 2 ps median")
        ax.axhspan(-0.5, 0.5, color="C0", alpha=0.15, lw=0)
        ax.axhspan(7.5, 13.5, color="C1", alpha=0.15, lw=0)
        ax.set_ylim(-0.5, 13.5)
        ax.set_ylabel("residues in 'H'")
        ax.set_title(f"seed {r['seed']}: {method} on the GMVAE CV vs unbiased MD (shaded: coil / helix cores)", fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("time (ps)")
    save_figure(fig, out / "bias_helicity.png")

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.3), sharex=True, sharey=True, layout="constrained")
    for ax, name in zip(axes, ("unbiased", "biased")):
        ax.scatter(z_train[:, 0], z_train[:, 1], s=2, color="0.8", label="training frames")
        for i, tr in enumerate(traces):
            ax.plot(tr[name]["z"][:, 0], tr[name]["z"][:, 1], lw=0.4, color=f"C{i}", label=f"seed {rows[i]['seed']}")
        ax.set_title(f"{name} runs in the latent space", fontsize=10)
        ax.set_xlabel("z0")
    axes[0].set_ylabel("z1")
    axes[1].legend(fontsize=8, markerscale=4)
    save_figure(fig, out / "bias_cv.png")


def recount(out: Path, work: Path, argv: list) -> dict:
    """No runs: recompute every seed's row of OUT/bias.json and the figures from the runs kept in WORK."""
    import mdtraj as md

    from gmvae_cv import load_cv
    from gmvae_cv._core.files import atomic_write_json
    from gmvae_cv.learn.rundir import load_run
    from gmvae_cv.features.peptide import backbone_torsions

    result = json.loads((out / "bias.json").read_text())
    run, cv = load_run(work / "run"), load_cv(work / "exp")
    trajs = [md.load(str(work / "md" / f"{st}_s{sd}" / "traj.dcd"), top=str(work / "md" / f"{st}_s{sd}" / "topology.pdb"))
             for st, sd in _base.RUNS]
    spec = backbone_torsions(trajs[0].topology)
    rows, traces = [], []
    for r in result["seeds"]:
        row, tr = _seed_row(r["seed"], work, run, cv, spec, trajs[0].topology, result["md"]["ns_per_run"])
        rows.append(row)
        traces.append(tr)
    _with_spread(result, rows)
    import gmvae_cv

    result["recount"] = {"command": "python examples/aaqaa3_bias.py " + " ".join(argv), "gmvae_cv": gmvae_cv.__file__,
                         "what": "rows and spread recomputed from the kept runs; costs are those of the runs"}
    atomic_write_json(out / "bias.json", result)
    _figures(out, rows, traces, run.transform(np.concatenate([spec.compute(t) for t in trajs]))["z"], result["method"]["name"])
    return result


def _machine() -> dict:
    """CPU model, core count, Python, the imported package and the thread settings."""
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    import gmvae_cv

    return {"cpu": model, "n_cpus": os.cpu_count(), "python": platform.python_version(), "gmvae_cv": gmvae_cv.__file__,
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENMM_CPU_THREADS")}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/figures/aaqaa3")
    ap.add_argument("--work", default="aaqaa3_bias_work")
    ap.add_argument("--train-steps", type=int, default=None, help="training MD steps per start (default 25000 = 0.1 ns)")
    ap.add_argument("--k", type=int, default=None, help="GMVAE components (default 6; 3 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="default 80; 3 with --quick")
    ap.add_argument("--bias-ns", type=float, default=None, help="ns per biased and per unbiased run (default 0.2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--method", choices=list(METHODS), default=None, help="default: chosen by the probe")
    ap.add_argument("--probe-ns", type=float, default=None, help="ns of each method's probe (default 0.02; 0: none)")
    ap.add_argument("--temperature", type=float, default=340.0)
    ap.add_argument("--quick", action="store_true", help="a few ps everywhere (for tests)")
    ap.add_argument("--recount", action="store_true", help="no runs: recount OUT/bias.json from the runs kept in WORK")
    args = ap.parse_args(argv)
    if args.recount:
        return recount(Path(args.out), Path(args.work), sys.argv[1:] if argv is None else list(argv))

    import mdtraj as md

    from gmvae_cv import load_cv
    from gmvae_cv._core.files import atomic_write_json
    from gmvae_cv.systems import AAQAA3

    q = args.quick
    t_start, load_start = time.perf_counter(), os.getloadavg()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    T = args.temperature
    train_steps = args.train_steps or (1000 if q else 25_000)
    k = args.k or (3 if q else 6)
    bias_ns = args.bias_ns or (0.004 if q else 0.2)
    n_bias = max(1, int(round(bias_ns * 1000 / TIMESTEP_PS / PACE))) * PACE
    ns = n_bias * TIMESTEP_PS / 1000.0
    probe_ns = args.probe_ns if args.probe_ns is not None else (0.0 if q else 0.02)

    run, spec, xs, helix_traj, train_info = _train(work, train_steps, T, k, args.epochs or (3 if q else 80), q)
    check = _export_checked(run, work / "exp", xs, helix_traj, T)
    cv = load_cv(work / "exp")
    pep = AAQAA3("helix", hydrogen_mass=1.5)
    top = md.Topology.from_openmm(pep.topology)
    probe = _probe(cv, work, pep, max(PACE, int(round(probe_ns * 1e3 / TIMESTEP_PS / PACE)) * PACE), T, spec, top) \
        if probe_ns > 0 else None
    method = args.method or (probe["chosen"] if probe else "metad")
    z_train = run.transform(np.concatenate(xs))["z"]

    result = {"system": "ACE-(AAQAA)3-NME, amber14 (ff14SB) + GBn2, 183 atoms, from the built helix",
              "command": "python examples/aaqaa3_bias.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": _machine(), "load_average_1_5_15_at_start": list(load_start),
              "md": {"temperature_K": T, "timestep_fs": TIMESTEP_PS * 1000, "hydrogen_mass_amu": 1.5, "friction_per_ps": 1.0,
                     "frame_interval_ps": FRAME_STEPS * TIMESTEP_PS, "integrator": "LangevinMiddleIntegrator",
                     "platform": "CPU", "ns_per_run": ns},
              "training": train_info, "export_check": check, "method_probe": probe,
              "method": {"name": method, "pace_steps": PACE, **METHODS[method], "walls": True,
                         "sigma": cv.meta["cv_json"]["plumed"]["opes" if method == "opes-explore" else "metad"]["sigma"],
                         "why": "named with --method" if args.method else ("chosen by the probe" if probe else "default")},
              "core_sets": "all-coil (0 of 15 residues in DSSP 'H') and mostly helical (>= 8); partly helical (1-7) "
                           "is neither; a transition is a passage from one core to the other",
              "seeds": [], "quick": bool(q)}
    rows, traces = [], []
    for seed in args.seeds:
        b = _biased(cv, work / f"bias_s{seed}", pep, n_bias, method, T, seed)
        u = _unbiased(work / f"unbiased_s{seed}", pep, n_bias, T, seed)
        row, tr = _seed_row(seed, work, run, cv, spec, top, ns)
        rows.append(row)
        traces.append(tr)
        _with_spread(result, rows)
        result["wall_s_total"] = time.perf_counter() - t_start
        result["load_average_1_5_15_at_end"] = list(os.getloadavg())
        atomic_write_json(out / "bias.json", result)  # after every seed: a stopped run keeps its seeds
        print(f"seed {seed}: transitions per ns biased {row['biased']['transitions_per_ns']:.1f}, unbiased "
              f"{row['unbiased']['transitions_per_ns']:.1f}; {b['ns_per_day']:.1f} / {u['ns_per_day']:.1f} ns/day",
              flush=True)
    _figures(out, rows, traces, z_train, method)
    sp = result["spread"]
    print(f"AAQAA3 {method}: {len(rows)} seeds x {ns:g} ns; transitions per ns biased {sp['biased.transitions_per_ns']['mean']:.1f}, "
          f"unbiased {sp['unbiased.transitions_per_ns']['mean']:.1f}; {result['wall_s_total']:.0f} s; {out}/bias.json")
    return result


if __name__ == "__main__":
    main()
