"""Speed of metadynamics on a GMVAE CV in OpenMM: four routes, measured in one run, JSON out.

Routes (same 2D GMVAE-shaped CV: 25 heavy-atom distances -> [32] -> 2, k = 4, random weights;
same height, sigma, bias factor; pace 500 steps, hill deposition and grid updates included):

a  unbiased MD
b  ``openmm.app.Metadynamics`` on native phi/psi (``CustomTorsionForce`` in ``CustomCVForce``)
c  naive: ``app.Metadynamics`` with one ``TorchForce`` per GMVAE component inside ``CustomCVForce``
d  this project: :class:`gmvae_cv.metad.engine.WellTemperedMetadynamics` (one compiled TorchForce: CV and
   tabulated bias, energy and forces in one call, no autograd); variants: autograd route, float32

The overhead of (d) is broken down with forces built the same way (compiled, outputs forces,
table parameter) whose energy stops after the features, after the CV, or is the full bias:
plumbing = trivial TorchForce - unbiased; features; model; bias (spline); deposition = (d) with
hills - (d) without. Every figure is the median over interleaved rounds, so ratios come from the
same minutes of the same machine. Usage::

    python benchmarks/bias_speed.py --out benchmarks/bias_speed.json [--quick] [--no-water]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as _platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openmm  # noqa: E402
from openmm import app, unit  # noqa: E402
from openmmtorch import TorchForce  # noqa: E402

from gmvae_cv.metad.engine import WellTemperedMetadynamics  # noqa: E402
from gmvae_cv.metad.force import VERSION_PARAMETER, _CompiledForceBox, _CompiledForceNoBox, _SharedTable, compile_energy_and_forces, write_table  # noqa: E402
from gmvae_cv.metad.grid import BiasGrid  # noqa: E402
from gmvae_cv.deploy.loaders import random_gmvae_cv  # noqa: E402
from gmvae_cv.features import FeatureSpec, alanine_heavy_atom_distances  # noqa: E402
from gmvae_cv.systems import AlanineDipeptide  # noqa: E402

PHI, PSI = (4, 6, 8, 14), (6, 8, 14, 16)
HEIGHT, SIGMA, GAMMA, PACE, TEMP = 1.2, 0.1, 10.0, 500, 300.0


class _Component(torch.nn.Module):
    """CV component ``i`` as an energy (the naive route's CustomCVForce variable)."""

    def __init__(self, cv, i: int) -> None:
        super().__init__()
        self.cv = cv
        self.i = i

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.cv(positions.to(torch.float64), None)[self.i]


class _ComponentBox(torch.nn.Module):
    def __init__(self, cv, i: int) -> None:
        super().__init__()
        self.cv = cv
        self.i = i

    def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self.cv(positions.to(torch.float64), box.to(torch.float64))[self.i]


class _Trivial(torch.nn.Module):
    def forward(self, positions: torch.Tensor, version: torch.Tensor):
        return torch.zeros((), dtype=torch.float64), torch.zeros_like(positions)


class _FeaturesEnergy(torch.nn.Module):
    """Energy = w . features (stops after the features)."""

    def __init__(self, features, n: int) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("w", torch.linspace(0.5, 1.5, n, dtype=torch.float64))

    def forward(self, positions: torch.Tensor, table: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (self.features(positions, box) * self.w).sum()


class _CVEnergy(torch.nn.Module):
    """Energy = sum of the CV components (features + model, no bias)."""

    def __init__(self, cv) -> None:
        super().__init__()
        self.cv = cv

    def forward(self, positions: torch.Tensor, table: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.cv(positions, box).sum()


def _wrapped_force(energy, pos, table_path, n_rows, n_cols, box=None):
    t = torch.zeros((n_rows, n_cols), dtype=torch.float64)
    example = (torch.as_tensor(pos), t) if box is None else (torch.as_tensor(pos), t, torch.as_tensor(box))
    ef = compile_energy_and_forces(energy, example)
    cls = _CompiledForceNoBox if box is None else _CompiledForceBox
    f = TorchForce(torch.jit.script(cls(ef, _SharedTable(str(table_path), n_rows, n_cols, torch.float64), torch.float64)))
    f.addGlobalParameter(VERSION_PARAMETER, 0.0)
    f.setOutputsForces(True)
    f.setUsesPeriodicBoundaryConditions(box is not None)
    return f


def _torsion(atoms):
    f = openmm.CustomTorsionForce("theta")
    f.addTorsion(*atoms)
    return f


class Case:
    """One timed configuration: a Simulation, optionally a metadynamics driver."""

    def __init__(self, name, system, topology, positions, platform, meta=None, kind="plain", threads=None):
        integ = openmm.LangevinMiddleIntegrator(TEMP, 1.0, 0.002)
        integ.setRandomNumberSeed(7)
        props = {"Threads": str(threads)} if (platform == "CPU" and threads) else {}
        self.sim = app.Simulation(topology, system, integ, openmm.Platform.getPlatformByName(platform), props)
        self.sim.context.setPositions(positions)
        self.sim.context.setVelocitiesToTemperature(TEMP, 7)
        self.name, self.meta, self.kind, self.platform = name, meta, kind, platform
        if kind == "ours":
            meta.sync([self.sim.context])
        self.samples = []

    def run(self, n):
        t0 = time.perf_counter()
        if self.kind == "plain":
            self.sim.step(n)
        else:
            self.meta.step(self.sim, n)
        self.sim.context.getState(getEnergy=True)
        return (time.perf_counter() - t0) / n


def _measure(cases, steps, rounds, warm):
    for c in cases:
        c.run(warm)
    for _ in range(rounds):
        for c in cases:
            c.samples.append(c.run(steps[c.name]))
    return {c.name: float(np.median(c.samples)) * 1e6 for c in cases}


def vacuum(args, workdir: Path) -> dict:
    ala = AlanineDipeptide()
    spec = alanine_heavy_atom_distances()
    cv = random_gmvae_cv(spec, n_cvs=2, n_clusters=4, hidden=32, seed=0, path=workdir / "gmvae_standin.pt")
    s0 = cv(ala.positions)
    lo, hi = (s0 - 3.0).tolist(), (s0 + 3.0).tolist()
    bins = [int(math.ceil(5 * 6.0 / SIGMA))] * 2
    results = {"cv": "random GMVAE stand-in: 25 heavy-atom distances -> [32] -> 2, k = 4 (gmvae_cv.deploy.loaders.random_gmvae_cv)",
               "grid": {"min": lo, "max": hi, "bins": bins}, "pace": PACE, "platforms": {}}
    cases = []
    platforms = ["Reference", "CPU"]
    for plat in platforms:
        cases.append(Case(f"a_unbiased@{plat}", ala.create_system(), ala.topology, ala.positions, plat))
        # b: app.Metadynamics on native phi/psi
        sb = ala.create_system()
        mb = app.Metadynamics(sb, [app.BiasVariable(_torsion(a), -math.pi, math.pi, 0.35, True, 91) for a in (PHI, PSI)],
                              TEMP, GAMMA, HEIGHT, PACE)
        cases.append(Case(f"b_phipsi@{plat}", sb, ala.topology, ala.positions, plat, mb, "app"))
        # c: naive
        sc = ala.create_system()
        comps = [TorchForce(torch.jit.script(_Component(cv.module, i))) for i in range(2)]
        mc = app.Metadynamics(sc, [app.BiasVariable(f, lo[i], hi[i], SIGMA, False, bins[i] + 1) for i, f in enumerate(comps)],
                              TEMP, GAMMA, HEIGHT, PACE)
        cases.append(Case(f"c_naive@{plat}", sc, ala.topology, ala.positions, plat, mc, "app"))
        # d: ours (and variants)
        for variant, kw in (("d_ours", {}), ("d_autograd", {"route": "autograd"}), ("d_float32", {"dtype": "float32"})):
            sd = ala.create_system()
            md = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA, pace=PACE,
                                          grid_min=lo, grid_max=hi, grid_bin=bins, table_path=workdir / f"{variant}_{plat}.f64", **kw)
            md.add_force(sd, ala.positions)
            cases.append(Case(f"{variant}@{plat}", sd, ala.topology, ala.positions, plat, md, "ours"))
            if variant == "d_ours":
                results.setdefault("force_info", md.force_info)
        # breakdown forces (no deposition)
        g = BiasGrid(lo, hi, bins, [False, False])
        g.add_hill(s0, [SIGMA, SIGMA], HEIGHT)
        table = workdir / f"breakdown_{plat}.f64"
        write_table(table, g.force_table())
        n_rows, n_cols = g.force_table_shape
        st = ala.create_system()
        f = TorchForce(torch.jit.script(_Trivial()))
        f.addGlobalParameter(VERSION_PARAMETER, 0.0)
        f.setOutputsForces(True)
        st.addForce(f)
        cases.append(Case(f"x_plumbing@{plat}", st, ala.topology, ala.positions, plat))
        for name, energy in (("x_features", _FeaturesEnergy(spec.torch_module(), spec.n_features)), ("x_cv", _CVEnergy(cv.module))):
            sx = ala.create_system()
            sx.addForce(_wrapped_force(energy, ala.positions, table, n_rows, n_cols))
            cases.append(Case(f"{name}@{plat}", sx, ala.topology, ala.positions, plat))
        sx = ala.create_system()
        mx = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA, pace=PACE,
                                      grid_min=lo, grid_max=hi, grid_bin=bins, table_path=table)
        mx.grid.values = g.values
        mx._write_table()
        mx.add_force(sx, ala.positions)
        cases.append(Case(f"x_full_no_deposit@{plat}", sx, ala.topology, ala.positions, plat, mx, "ours"))
        cases[-1].kind = "plain"
    steps = {}
    for c in cases:
        fast = c.name.startswith(("a_", "b_", "x_plumbing")) and c.platform == "Reference"
        steps[c.name] = (20 if args.quick else 50) * PACE if fast else (2 if args.quick else 4) * PACE
    us = _measure(cases, steps, 2 if args.quick else args.rounds, PACE)
    results["us_per_step"] = us
    results["steps_per_s"] = {k: 1e6 / v for k, v in us.items()}
    best = {}
    for route in ("a_unbiased", "b_phipsi", "c_naive", "d_ours", "d_autograd", "d_float32"):
        plat = min(platforms, key=lambda p: us[f"{route}@{p}"])
        best[route] = {"platform": plat, "us_per_step": us[f"{route}@{plat}"], "steps_per_s": 1e6 / us[f"{route}@{plat}"]}
    results["fastest_platform"] = best
    a = best["a_unbiased"]["us_per_step"]
    results["overhead_us_per_step_vs_unbiased"] = {k: v["us_per_step"] - a for k, v in best.items() if k != "a_unbiased"}
    results["ratios"] = {
        "d_over_c_steps_per_s": best["c_naive"]["us_per_step"] / best["d_ours"]["us_per_step"],
        "d_over_a_steps_per_s": a / best["d_ours"]["us_per_step"],
        "b_over_a_steps_per_s": a / best["b_phipsi"]["us_per_step"],
        "c_over_a_steps_per_s": a / best["c_naive"]["us_per_step"],
        "d_autograd_over_d": best["d_ours"]["us_per_step"] / best["d_autograd"]["us_per_step"],
    }
    p = best["d_ours"]["platform"]
    results["breakdown_d_us_per_step"] = {
        "platform": p,
        "md": us[f"a_unbiased@{p}"],
        "openmm_torchforce_plumbing": us[f"x_plumbing@{p}"] - us[f"a_unbiased@{p}"],
        "features": us[f"x_features@{p}"] - us[f"x_plumbing@{p}"],
        "model": us[f"x_cv@{p}"] - us[f"x_features@{p}"],
        "bias_spline": us[f"x_full_no_deposit@{p}"] - us[f"x_cv@{p}"],
        "deposition_and_grid_update": us[f"d_ours@{p}"] - us[f"x_full_no_deposit@{p}"],
        "total_d": us[f"d_ours@{p}"],
        "note": "differences of medians; features/model/bias include their share of the energy+forces graph",
    }
    results["grid_update"] = _grid_update_cost(ala, cv, lo, hi, bins, workdir)
    results["breakdown_d_direct_us_per_step"] = _direct_breakdown(ala, spec, cv, g, table, results, p, us)
    return results


def _time_calls(fn, n=2000, repeats=7) -> float:
    for _ in range(200):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def _direct_breakdown(ala, spec, cv, g, table, results, platform, us) -> dict:
    """The same split, timing the compiled energy+forces graphs directly (frozen, as the TorchForce
    runs them; best of 7 x 2000 calls from Python, minus the cost of calling a trivial frozen graph)."""
    from gmvae_cv.metad.force import _Energy

    pos = torch.as_tensor(ala.positions)
    tab = torch.as_tensor(g.force_table())

    def frozen(energy):
        return torch.jit.freeze(compile_energy_and_forces(energy, (pos, tab)).eval())

    class _Nothing(torch.nn.Module):
        def forward(self, positions: torch.Tensor, table: torch.Tensor):
            return positions.sum(), positions

    trivial = torch.jit.freeze(torch.jit.script(_Nothing()).eval())
    graphs = {"features": frozen(_FeaturesEnergy(spec.torch_module(), spec.n_features)), "cv": frozen(_CVEnergy(cv.module)),
              "full": frozen(_Energy(cv.module, [0, 1], g.torch_module(), torch.float64))}
    t = {k: _time_calls(lambda m=m: m(pos, tab)) for k, m in graphs.items()}
    t0 = _time_calls(lambda: trivial(pos, tab))
    dep = results["grid_update"]["deposit_and_table_write_ms"] + results["grid_update"]["first_evaluation_after_update_ms"] \
        - results["grid_update"]["plain_evaluation_ms"]
    return {
        "md": us[f"a_unbiased@{platform}"],
        "openmm_torchforce_plumbing": us[f"x_plumbing@{platform}"] - us[f"a_unbiased@{platform}"],
        "features": t["features"] - t0,
        "model": t["cv"] - t["features"],
        "bias_spline": t["full"] - t["cv"],
        "deposition_and_grid_update": 1e3 * dep / PACE,
        "graph_ops": {k: sum(1 for n in m.graph.nodes() if n.kind().startswith("aten::")) for k, m in graphs.items()},
        "python_call_of_trivial_graph_us": t0,
        "note": "graphs timed from Python (best of 7 x 2000 calls); deposition per hill / pace",
    }


def _grid_update_cost(ala, cv, lo, hi, bins, workdir) -> dict:
    """What one hill costs: deposit + table write + setParameter + first evaluation; vs re-creating the context."""
    system = ala.create_system()
    meta = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA, pace=PACE,
                                    grid_min=lo, grid_max=hi, grid_bin=bins, table_path=workdir / "update.f64")
    meta.add_force(system, ala.positions)
    integ = openmm.VerletIntegrator(0.001)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(ala.positions)
    meta.sync([ctx])
    ctx.getState(getForces=True)
    s = meta.cv_values(ctx)
    t_dep, t_eval, t_plain = [], [], []
    for k in range(20):
        t0 = time.perf_counter()
        meta.deposit([s], k, 0.0)
        t1 = time.perf_counter()
        meta.sync([ctx])
        ctx.getState(getForces=True)
        t2 = time.perf_counter()
        ctx.setPositions(ala.positions)
        ctx.getState(getForces=True)
        t3 = time.perf_counter()
        t_dep.append(t1 - t0)
        t_eval.append(t2 - t1)
        t_plain.append(t3 - t2)
    t0 = time.perf_counter()
    ctx.reinitialize(preserveState=True)
    ctx.getState(getForces=True)
    t_reinit = time.perf_counter() - t0
    return {
        "deposit_and_table_write_ms": 1e3 * float(np.median(t_dep)),
        "first_evaluation_after_update_ms": 1e3 * float(np.median(t_eval)),
        "plain_evaluation_ms": 1e3 * float(np.median(t_plain)),
        "context_reinitialize_ms": 1e3 * t_reinit,
        "table_bytes": int(np.prod(meta.grid.force_table_shape)) * 8,
    }


def water(args, workdir: Path) -> dict:
    ala = AlanineDipeptide()
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(ala.topology, ala.positions * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", numAdded=225)
    top, pos = modeller.topology, np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))
    n_atoms = top.getNumAtoms()

    def make_system():
        return ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)

    # equilibrate briefly so that timings are not those of a minimisation start
    s = make_system()
    integ = openmm.LangevinMiddleIntegrator(TEMP, 1.0, 0.002)
    ctx = openmm.Context(s, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(TEMP, 3)
    integ.step(2000)
    state = ctx.getState(getPositions=True)
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    top.setPeriodicBoxVectors(state.getPeriodicBoxVectors())
    del ctx

    vac = alanine_heavy_atom_distances()  # the dipeptide's atoms come first in the solvated topology
    spec = FeatureSpec(vac.features, n_atoms=n_atoms, periodic=True, atom_labels=vac.atom_labels,
                       description="alanine dipeptide heavy-atom distances in water")
    cv = random_gmvae_cv(spec, n_cvs=2, n_clusters=4, hidden=32, seed=0, path=workdir / "gmvae_water.pt")
    s0 = cv(pos, box)
    lo, hi = (s0 - 3.0).tolist(), (s0 + 3.0).tolist()
    bins = [int(math.ceil(5 * 6.0 / SIGMA))] * 2
    threads = args.cpu_threads
    cases = [Case("a_unbiased@CPU", make_system(), top, pos, "CPU", threads=threads)]
    sb = make_system()
    mb = app.Metadynamics(sb, [app.BiasVariable(_torsion(a), -math.pi, math.pi, 0.35, True, 91) for a in (PHI, PSI)], TEMP, GAMMA, HEIGHT, PACE)
    cases.append(Case("b_phipsi@CPU", sb, top, pos, "CPU", mb, "app", threads=threads))
    sc = make_system()
    comps = []
    for i in range(2):
        f = TorchForce(torch.jit.script(_ComponentBox(cv.module, i)))
        f.setUsesPeriodicBoundaryConditions(True)
        comps.append(f)
    mc = app.Metadynamics(sc, [app.BiasVariable(f, lo[i], hi[i], SIGMA, False, bins[i] + 1) for i, f in enumerate(comps)], TEMP, GAMMA, HEIGHT, PACE)
    cases.append(Case("c_naive@CPU", sc, top, pos, "CPU", mc, "app", threads=threads))
    force_info = {}
    for variant, kw in (("d_ours", {"topology": top}), ("d_ours_with_box_autograd", {"use_box": True})):
        sd = make_system()
        md = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA, pace=PACE,
                                      grid_min=lo, grid_max=hi, grid_bin=bins, table_path=workdir / f"w_{variant}.f64")
        md.add_force(sd, pos, box, **kw)
        force_info[variant] = md.force_info
        cases.append(Case(f"{variant}@CPU", sd, top, pos, "CPU", md, "ours", threads=threads))
    steps = {c.name: (1 if args.quick else 2) * PACE for c in cases}
    us = _measure(cases, steps, 2 if args.quick else args.rounds, PACE)
    nsday = {k: 0.002 * 86.4 / (v * 1e-6) / 1000.0 for k, v in us.items()}
    a = nsday["a_unbiased@CPU"]
    return {
        "system": f"alanine dipeptide + {(n_atoms - 22) // 3} TIP3P waters, {n_atoms} atoms, PME 0.9 nm, HBonds, CPU platform",
        "cpu_threads": threads,
        "us_per_step": us,
        "ns_per_day": nsday,
        "ratios_vs_unbiased_ns_per_day": {k: v / a for k, v in nsday.items()},
        "force_info": force_info,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("bias_speed.json")))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (a smoke test)")
    ap.add_argument("--no-water", action="store_true")
    ap.add_argument("--no-vacuum", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--cpu-threads", type=int, default=None)
    args = ap.parse_args(argv)
    import tempfile

    torch.set_num_threads(args.torch_threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        out = {
            "benchmark": "bias_speed",
            "settings": {"height_kJmol": HEIGHT, "sigma": SIGMA, "bias_factor": GAMMA, "pace": PACE, "temperature_K": TEMP,
                         "timestep_ps": 0.002, "torch_threads": args.torch_threads, "cpu_threads": args.cpu_threads,
                         "rounds": args.rounds, "quick": args.quick},
            "machine": {"platform": _platform.platform(), "cpus": os.cpu_count(),
                        "load_average_start": os.getloadavg()},
            "versions": {"openmm": openmm.__version__, "torch": torch.__version__, "numpy": np.__version__},
        }
        if not args.no_vacuum:
            out["vacuum"] = vacuum(args, workdir)
        if not args.no_water:
            out["water"] = water(args, workdir)
    out["machine"]["load_average_end"] = os.getloadavg()
    out["wall_s"] = time.time() - t0
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    v = out.get("vacuum", {})
    print(json.dumps({"vacuum_ratios": v.get("ratios"), "breakdown": v.get("breakdown_d_us_per_step"),
                      "breakdown_direct": v.get("breakdown_d_direct_us_per_step"),
                      "water": out.get("water", {}).get("ratios_vs_unbiased_ns_per_day")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
