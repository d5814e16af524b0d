"""Alanine dipeptide in TIP3P water: a biased run finds the states, seeded unbiased runs on Dask, a reversible MSM.

The slow process of the dipeptide in water is the phi flip between the phi < 0 basins (beta/PPII,
alpha_R) and alpha_L (phi > 0): unbiased MD at 300 K visits alpha_L rarely, so one long run
needs a long time to count enough flips. With the defaults (24 runs of 0.5 ns) the MSM resolves
the slowest process within phi < 0 (beta <-> alpha_R, about 0.1 ns) but not the phi flip: no run
left or entered phi > 0 within 0.5 ns (``docs/biasing.md``, "Seeded runs", has the numbers and
what the flip would cost). Here:

1. ``system``: the dipeptide in 225 TIP3P waters (697 atoms, amber14, PME 0.9 nm, hydrogens of
   4 amu, HBonds, 4 fs), minimised, 100 ps at 1 bar (Monte Carlo barostat) and 300 K; the
   equilibrated box is kept for everything after (NVT).
2. ``biased``: ``--biased-ns`` of well-tempered metadynamics on phi/psi
   (:class:`gmvae_cv.metad.WellTemperedMetadynamics`, height 1.2 kJ/mol, sigma 0.35 rad, bias
   factor 6, a hill per ps), a frame per ps: it visits alpha_L within a few hundred ps.
3. ``states``: the frames of the biased run in each core region of (phi, psi), degrees:
   beta (phi < 0, psi > 100 or psi < -150), alpha_R (phi < 0, -100 < psi < 40), alpha_L
   (0 < phi < 120, -30 < psi < 100); ``--seeds`` frames of each, drawn at random, are the starts,
   and as many outside every core with phi > -30 (``phi_barrier``: meant for runs that cross the
   phi barrier; :func:`pick_starts` says where those frames turned out to lie).
4. ``seeded``: one unbiased run of ``--ns-per-run`` from each start through
   :func:`gmvae_cv.workflows.seeded.run_seeded` (Dask, ``--workers`` single-threaded workers, each
   run folder whole or absent; a killed script started again runs only the missing runs).
5. ``msm``: k-means (``--microstates``) on (cos, sin) of phi and psi of all seeded frames, a
   reversible MSM (:class:`gmvae_cv.analysis.MarkovAnalysis`: Bayesian errors, PCCA+ into two
   sets, CK test) at ``--lag`` ps, with implied timescales at lags up to a tenth of a run: whether
   the slowest timescale is resolved (above the lag and flat over three lags,
   :func:`gmvae_cv.analysis.msm_checks.timescale_resolved`), the CK verdict, the sets' populations,
   centres and mean first passage times, and whether the phi > 0 microstates are in the MSM's
   active set (if not, the phi flip is not in the model, and the script says so).

Writes into OUT (default ``docs/figures/water_msm``): ``result.json`` (every number, the command,
the walltime of each stage, ns/day), ``its.png``, ``ck.png``, ``states.png`` (the biased frames and
the starts on phi/psi), ``msm.json``, ``seeded_phipsi.npz`` (phi, psi in rad of every seeded run,
float32, one array per run); the runs go to WORK (default ``water_msm_work``).

Usage: ``python examples/alanine_water_msm.py [--out DIR] [--work DIR] [--biased-ns NS] [--seeds N]
[--ns-per-run NS] [--workers W] [--lag PS] [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

TIMESTEP = 0.004  # ps, with hydrogens of 4 amu
FRAME_STEPS = 250  # 1 ps
TEMPERATURE = 300.0
STATES_DEG = {
    "beta": lambda phi, psi: (phi < 0) & ((psi > 100) | (psi < -150)),
    "alphaR": lambda phi, psi: (phi < 0) & (psi > -100) & (psi < 40),
    "alphaL": lambda phi, psi: (phi > 0) & (phi < 120) & (psi > -30) & (psi < 100),
}


def build_system(work: Path) -> dict:
    """Stage 1: ``work/system.xml``, ``start.pdb``, ``box.npy``, ``start.npy`` (equilibrated, nm)."""
    import openmm
    from openmm import app, unit

    from gmvae_cv._core.files import atomic_write_json, atomic_write_text
    from gmvae_cv.systems import AlanineDipeptide

    if (work / "system.json").is_file():
        return json.loads((work / "system.json").read_text())
    t0 = time.perf_counter()
    ala = AlanineDipeptide()
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(ala.topology, ala.positions * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", numAdded=225)
    system = ff.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                             constraints=app.HBonds, hydrogenMass=4.0 * unit.amu)
    npt = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    npt.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, TEMPERATURE * unit.kelvin))
    integ = openmm.LangevinMiddleIntegrator(TEMPERATURE * unit.kelvin, 1.0 / unit.picosecond, TIMESTEP * unit.picoseconds)
    integ.setRandomNumberSeed(1)
    sim = app.Simulation(modeller.topology, npt, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(modeller.positions)
    sim.minimizeEnergy(maxIterations=500)
    sim.context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, 1)
    sim.step(25_000)  # 100 ps
    st = sim.context.getState(getPositions=True)
    box = st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    pos = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    system.setDefaultPeriodicBoxVectors(*st.getPeriodicBoxVectors())
    top = modeller.topology
    top.setPeriodicBoxVectors(st.getPeriodicBoxVectors())
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "system.xml", openmm.XmlSerializer.serialize(system))
    with open(work / "start.pdb", "w") as fh:
        app.PDBFile.writeFile(top, pos * 10.0 * unit.angstrom, fh)
    np.save(work / "box.npy", box)
    np.save(work / "start.npy", pos)
    info = {"atoms": top.getNumAtoms(), "waters": (top.getNumAtoms() - 22) // 3, "box_nm": float(box[0, 0]),
            "density_g_per_ml": _density(system, box), "wall_s": time.perf_counter() - t0}
    atomic_write_json(work / "system.json", info)
    return info


def _density(system, box: np.ndarray) -> float:
    from openmm import unit

    mass = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
    return float(mass * 1.66054e-24 / (np.linalg.det(box) * 1e-21))


def _torsions(pdb: Path):
    """phi, psi (rad) of the solvated dipeptide as a CV of all its atoms."""
    from gmvae_cv.deploy import feature_cv
    from gmvae_cv.features import alanine_backbone_torsions

    return feature_cv(alanine_backbone_torsions(str(pdb), transform="raw"))


def biased_run(work: Path, ns: float) -> dict:
    """Stage 2: metadynamics on phi/psi; ``work/biased/frames.npy`` (positions, nm) and ``phipsi.npy`` (deg)."""
    import openmm
    from openmm import app, unit

    from gmvae_cv._core.files import atomic_write_json
    from gmvae_cv.metad import WellTemperedMetadynamics

    out = work / "biased"
    if (out / "done.json").is_file():
        return json.loads((out / "done.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    system = openmm.XmlSerializer.deserialize((work / "system.xml").read_text())
    pdb = app.PDBFile(str(work / "start.pdb"))
    pos0 = np.load(work / "start.npy")
    tors = _torsions(work / "start.pdb")
    meta = WellTemperedMetadynamics(tors, temperature=TEMPERATURE, height=1.2, sigma=[0.35, 0.35], bias_factor=6.0,
                                    pace=FRAME_STEPS)
    meta.add_force(system, pos0, topology=pdb.topology)
    integ = openmm.LangevinMiddleIntegrator(TEMPERATURE * unit.kelvin, 1.0 / unit.picosecond, TIMESTEP * unit.picoseconds)
    integ.setRandomNumberSeed(2)
    sim = app.Simulation(pdb.topology, system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(pos0)
    sim.context.setPeriodicBoxVectors(*[openmm.Vec3(*v) * unit.nanometer for v in np.load(work / "box.npy")])
    sim.context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, 2)
    n_frames = int(round(ns * 1000 / (FRAME_STEPS * TIMESTEP)))
    frames, angles = [], []
    for k in range(n_frames):
        meta.step(sim, FRAME_STEPS)
        p = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        frames.append(p.astype(np.float32))
        angles.append(np.degrees(tors(p)))
        if (k + 1) % 100 == 0:
            print(f"  biased: {k + 1}/{n_frames} ps", flush=True)
    np.save(out / "frames.npy", np.asarray(frames))
    np.save(out / "phipsi.npy", np.asarray(angles))
    info = {"ns": n_frames * FRAME_STEPS * TIMESTEP / 1000, "frames": n_frames, "hills": len(meta.hills),
            "route": meta.force_info.get("route"), "wall_s": time.perf_counter() - t0}
    info["ns_per_day"] = info["ns"] / (info["wall_s"] / 86400)
    atomic_write_json(out / "done.json", info)
    return info


def pick_starts(work: Path, n: int, seed: int) -> tuple[dict, dict]:
    """Stage 3: ``n`` biased frames per state and ``n`` on the phi barrier (fewer if fewer lie
    there); returns (starts, counts).

    The ``phi_barrier`` frames (outside every core, phi > -30 deg) are meant for the phi flip:
    without runs that enter and leave phi > 0, its microstates are not reversibly connected to the
    rest and fall out of the MSM's active set. Measured (the stored run): 66 of the 74 such frames
    lie at phi 30-90 deg with psi outside the alpha_L core, inside the phi > 0 basin, since the
    biased run crossed phi = 0 quickly (2 frames at |phi| < 30); the 11 runs that started in the
    phi > 0 basin stayed there for 0.5 ns, and none of the 13 at phi < 0 (one barrier start near
    phi = 180 among them) entered it.
    """
    pp = np.load(work / "biased" / "phipsi.npy")
    frames = np.load(work / "biased" / "frames.npy")
    rng = np.random.default_rng(seed)
    starts, counts = {}, {}
    in_core = np.zeros(len(pp), dtype=bool)
    for inside in STATES_DEG.values():
        in_core |= inside(pp[:, 0], pp[:, 1])
    regions = {**STATES_DEG, "phi_barrier": lambda phi, psi: ~in_core & (phi > -30)}
    for name, inside in regions.items():
        idx = np.flatnonzero(inside(pp[:, 0], pp[:, 1]))
        counts[name] = int(idx.size)
        if idx.size:
            pick = rng.choice(idx, size=min(n, idx.size), replace=False)
            starts[name] = frames[np.sort(pick)].astype(np.float64)
    return starts, counts


def seeded_phipsi(res: dict, top: Path) -> list[np.ndarray]:
    """(phi, psi) in rad of every seeded run's frames, one (n_frames, 2) array per run."""
    import mdtraj as md

    out = []
    for folders in res["runs"].values():
        for f in folders:
            t = md.load(str(Path(f) / "traj.dcd"), top=str(top))
            out.append(np.column_stack([md.compute_phi(t)[1][:, 0], md.compute_psi(t)[1][:, 0]]))
    return out


def msm_stage(pp: list[np.ndarray], out: Path, lag_ps: int, n_micro: int) -> dict:
    """Stage 5: the MSM on k-means states of (cos, sin) phi/psi; ``its.png``, ``ck.png``, ``msm.json``."""
    from deeptime.clustering import KMeans

    from gmvae_cv.analysis import MarkovAnalysis, ck_passed, msm_summary

    feats = [np.column_stack([np.cos(x[:, 0]), np.sin(x[:, 0]), np.cos(x[:, 1]), np.sin(x[:, 1])]) for x in pp]
    km = KMeans(n_micro, fixed_seed=1, max_iter=200).fit(np.concatenate(feats)).fetch_model()
    dtrajs = [km.transform(f).astype(np.int32) for f in feats]
    # lags up to a tenth of the shortest run: beyond it a run holds under ten lag windows, the
    # sliding-effective counts are too few for the prior not to dominate, and the Bayesian
    # intervals stop containing the ML estimate (measured: at 100 ps on 500 ps runs, 58 ps ML
    # against an interval of 212-26 000 ps)
    max_lag = min(len(d) for d in dtrajs) // 10
    lags = sorted({x for x in (1, 2, 5, 10, 20, 50, 100, 200) if x <= max_lag} | {lag_ps})
    msm = MarkovAnalysis(lags, lagtime=lag_ps, dt=1.0, time_unit="ps", n_samples=100, n_metastable=2,
                         reversible=True).fit(dtrajs).fetch_model()
    msm.plot_implied_timescales(out / "its.png", title="implied timescales: seeded runs in TIP3P, k-means on phi/psi")
    msm.plot_ck_test(out / "ck.png")
    msm.save(out / "msm.json")
    keys = msm_summary(msm, min_lags=3)
    keys["ck_max_deviation"] = ck_passed(msm)["max_deviation"]
    # where the sets lie in phi: the k-means centres (cos phi, sin phi, ...) of each set's microstates
    centres = km.cluster_centers
    phi_c = np.degrees(np.arctan2(centres[:, 1], centres[:, 0]))
    psi_c = np.degrees(np.arctan2(centres[:, 3], centres[:, 2]))
    active = np.asarray(msm.active_set)  # k-means state of each MSM state
    assign = np.asarray(msm.metastable_assignment)  # per k-means state
    # the phi flip is in the model only if phi > 0 microstates are in its (reversibly connected) active set
    frames_pos = np.concatenate([x[:, 0] > 0 for x in pp])
    d_all = np.concatenate(dtrajs)
    keys["phi_positive"] = {
        "microstates": int(np.sum(phi_c > 0)),
        "microstates_in_active_set": int(np.sum(phi_c[active] > 0)),
        "seeded_frames_share": float(frames_pos.mean()),
        "runs_with_both_signs_of_phi": int(sum(np.any(x[:, 0] > 0) and np.any(x[:, 0] < 0) for x in pp)),
        "frames_in_active_set_share": float(np.isin(d_all[frames_pos], active).mean()) if frames_pos.any() else None,
    }
    sets = []
    for k in range(2):
        members = np.flatnonzero(assign == k)  # k-means states (assignment -1 outside the active set)
        sets.append({"set": k, "population": float(msm.metastable_distribution[k]),
                     "microstates": int(members.size), "share_phi_positive": float(np.mean(phi_c[members] > 0)) if members.size else None,
                     "centres_deg": [[round(float(a), 1), round(float(b), 1)] for a, b in zip(phi_c[members], psi_c[members])]})
    keys["sets"] = sets
    keys["mfpt_ps"] = np.asarray(msm.metastable_mfpt).tolist() if msm.metastable_mfpt is not None else None
    keys["lags_ps"] = lags
    keys["timescales_ps"] = np.asarray(msm.timescales)[:, :3].tolist()
    keys["timescales_lower_ps"] = np.asarray(msm.timescales_lower)[:, :3].tolist()
    keys["timescales_upper_ps"] = np.asarray(msm.timescales_upper)[:, :3].tolist()
    return keys


def plot_states(work: Path, starts: dict, path: Path) -> None:
    from gmvae_cv._core.figures import _pyplot, save_figure

    plt = _pyplot()
    pp = np.load(work / "biased" / "phipsi.npy")
    fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    ax.scatter(pp[:, 0], pp[:, 1], s=2, c="0.7", label="biased frames (metadynamics on phi/psi)")
    tors = _torsions(work / "start.pdb")
    for name, x in starts.items():
        a = np.degrees(np.array([tors(p) for p in x]))
        ax.scatter(a[:, 0], a[:, 1], s=25, label=f"starts: {name} ({len(x)})")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xlabel("phi (deg)")
    ax.set_ylabel("psi (deg)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures" / "water_msm")
    p.add_argument("--work", type=Path, default=Path("water_msm_work"))
    p.add_argument("--biased-ns", type=float, default=1.0)
    p.add_argument("--seeds", type=int, default=6, help="starts per state")
    p.add_argument("--ns-per-run", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--lag", type=int, default=10, help="MSM lag, ps")
    p.add_argument("--microstates", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests): 0.05 ns biased, 2 starts of 0.02 ns")
    args = p.parse_args(argv)
    if args.quick:
        args.biased_ns, args.seeds, args.ns_per_run, args.lag, args.microstates = 0.05, 2, 0.02, 2, 10
    from gmvae_cv._core.files import atomic_write_bytes, atomic_write_json
    from gmvae_cv._core.versions import machine_info
    from gmvae_cv.workflows.seeded import SeededSettings, run_seeded

    args.out.mkdir(parents=True, exist_ok=True)
    walls = {}
    print("[1/5] system: dipeptide in 225 TIP3P waters, 100 ps at 1 bar", flush=True)
    system = build_system(args.work)
    walls["system"] = system["wall_s"]  # as recorded when it ran (a resumed script reads it back)
    print(f"[2/5] metadynamics on phi/psi, {args.biased_ns:g} ns", flush=True)
    biased = biased_run(args.work, args.biased_ns)
    walls["biased"] = biased["wall_s"]
    starts, counts = pick_starts(args.work, args.seeds, seed=3)
    print(f"[3/5] states of the biased frames: {counts}; starts: { {k: len(v) for k, v in starts.items()} }", flush=True)
    plot_states(args.work, starts, args.out / "states.png")
    print(f"[4/5] seeded runs: {sum(len(v) for v in starts.values())} x {args.ns_per_run:g} ns on {args.workers} worker(s)",
          flush=True)
    t0 = time.perf_counter()
    settings = SeededSettings(ns_per_run=args.ns_per_run, timestep=TIMESTEP, temperature=TEMPERATURE, report_ps=1.0)
    res = run_seeded(args.work / "system.xml", args.work / "start.pdb", starts, args.work / "seeded", settings,
                     box=np.load(args.work / "box.npy"), workers=args.workers, log=print)
    # the seeded stage's walltime as it ran: kept in WORK, so that a script resumed after the runs
    # (e.g. to redo the MSM) reports the time the runs took, not the seconds it spent finding them
    seeded_wall = args.work / "seeded_walltime.json"
    if res["ran"] or not seeded_wall.is_file():
        atomic_write_json(seeded_wall, {"wall_s": time.perf_counter() - t0, "runs_done": res["ran"],
                                        "workers": args.workers})
    walls["seeded"] = json.loads(seeded_wall.read_text())["wall_s"]
    runs = [json.loads((Path(f) / "result.json").read_text()) for fs in res["runs"].values() for f in fs]
    print(f"[5/5] MSM at a {args.lag} ps lag", flush=True)
    pp = seeded_phipsi(res, args.work / "start.pdb")
    # the MSM's input, kept beside its figures: the MSM stage can be redone without the runs
    buf = io.BytesIO()
    np.savez_compressed(buf, *[x.astype(np.float32) for x in pp])
    atomic_write_bytes(args.out / "seeded_phipsi.npz", buf.getvalue())
    msm = msm_stage(pp, args.out, args.lag, args.microstates)
    flips = sum(int(np.count_nonzero(np.diff((x[:, 0] > 0).astype(int)) != 0)) for x in pp)
    result = {
        "command": " ".join(["python", "examples/alanine_water_msm.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {**machine_info(), "python": platform.python_version()},
        "system": system, "biased": biased, "state_frames_biased": counts,
        "starts": {k: len(v) for k, v in starts.items()}, "seeded_ns": res["ns"],
        "seeded_ns_per_day_median": float(np.median([r["ns_per_day"] for r in runs])),
        "phi_sign_changes_seeded": flips, "msm": msm, "walltime_s": walls,
    }
    atomic_write_json(args.out / "result.json", result)
    v = msm["slowest_its_ps"]
    pos = msm["phi_positive"]
    if pos["microstates"] and not pos["microstates_in_active_set"]:
        print(f"the phi flip is not in the model: none of the {pos['microstates']} phi > 0 microstates is reversibly "
              f"connected to the rest ({pos['runs_with_both_signs_of_phi']} run(s) visited both signs of phi); the slowest process "
              "below is within phi < 0")
    print(f"slowest ITS {v[0]:.4g} ({v[1]:.4g}-{v[2]:.4g}) ps at lag {msm['msm_lag_ps']:g} ps: "
          f"{'resolved' if msm['its_resolved'] else 'NOT resolved: ' + msm['its_reason']}; CK {'passed' if msm['ck_passed'] else 'FAILED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
