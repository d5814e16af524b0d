"""Speed of metadynamics on a GMVAE CV in OpenMM: four routes, measured in one run, JSON out.

Routes (same 2D GMVAE-shaped CV: 25 heavy-atom distances -> [32] -> 2, k = 4, random weights;
same height, sigma, bias factor; pace 500 steps, hill deposition and grid updates included):

a  unbiased MD
b  ``openmm.app.Metadynamics`` on native phi/psi (``CustomTorsionForce`` in ``CustomCVForce``)
c  naive: ``app.Metadynamics`` with one ``TorchForce`` per GMVAE component inside ``CustomCVForce``
d  this project: :class:`gmvae_cv.metad.engine.WellTemperedMetadynamics` on its default route, the
   native kernel (features, network, spline and forces compiled by numba behind one ``PythonForce``);
   variants: the compiled TorchForce route (CV and tabulated bias, energy and forces in one graph),
   the autograd route, float32 (which the native route does not do: compiled)

The overhead of the compiled route is broken down with forces built the same way (compiled,
outputs forces, table parameter) whose energy stops after the features, after the CV, or is the
full bias: plumbing = trivial TorchForce - unbiased; features; model; bias (spline); deposition =
(d) with hills - (d) without; the native route's into the ``PythonForce`` plumbing, the kernel and
the rest. Every figure is the median over interleaved rounds, so ratios come from the same minutes
of the same machine; in water, where the CPU platform's own step time varies by several per cent
from round to round, the ratio is also taken per round (paired) with a bootstrap interval, next to
the ratio of two identical unbiased runs. Also: the Lepton expression route (the network written
out as a ``CustomCVForce`` energy) at small widths, and a CV of a larger system's size (200
features). Usage::

    python benchmarks/bias_speed.py --out benchmarks/bias_speed.json [--quick] [--no-water]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as _platform
import sys
import subprocess
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openmm  # noqa: E402
from openmm import app, unit  # noqa: E402
from openmmtorch import TorchForce  # noqa: E402

from gmvae_cv.metad.engine import BiasRouteWarning, WellTemperedMetadynamics  # noqa: E402
from gmvae_cv.metad.force import VERSION_PARAMETER, _CompiledForceBox, _CompiledForceNoBox, compile_energy_and_forces, write_table
from gmvae_cv.metad.table_file import SharedTable as _SharedTable  # noqa: E402
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
        t0, c0 = time.perf_counter(), time.process_time()
        if self.kind == "plain":
            self.sim.step(n)
        else:
            self.meta.step(self.sim, n)
        self.sim.context.getState(getEnergy=True)
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


WALL: dict = {}  # name -> median wall us/step of the last _measure


def _measure(cases, steps, rounds, warm):
    """Median CPU microseconds per step (all threads of this process) per case; wall times in WALL."""
    for c in cases:
        c.run(warm)
    for _ in range(rounds):
        for c in cases:
            c.samples.append(c.run(steps[c.name]))
    for c in cases:
        WALL[c.name] = float(np.median([w for w, _ in c.samples])) * 1e6
    return {c.name: float(np.median([u for _, u in c.samples])) * 1e6 for c in cases}


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
        for variant, kw in (("d_ours", {"route": "native"}), ("d_compiled", {"route": "compiled"}), ("d_autograd", {"route": "autograd"}),
                            ("d_float32", {"dtype": "float32"})):
            sd = ala.create_system()
            md = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA, pace=PACE,
                                          grid_min=lo, grid_max=hi, grid_bin=bins, table_path=workdir / f"{variant}_{plat}.f64", **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BiasRouteWarning)  # float32: the native route falls back (recorded)
                md.add_force(sd, ala.positions)
            cases.append(Case(f"{variant}@{plat}", sd, ala.topology, ala.positions, plat, md, "ours"))
            results.setdefault("force_info", {}).setdefault(variant, md.force_info)
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
        sp = ala.create_system()
        zeros = np.zeros((len(ala.positions), 3))
        sp.addForce(openmm.PythonForce(lambda state: (0.0, zeros)))
        cases.append(Case(f"x_pythonforce_plumbing@{plat}", sp, ala.topology, ala.positions, plat))
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
        fast = c.name.startswith(("a_", "b_", "x_plumbing", "x_pythonforce", "d_ours")) and c.platform == "Reference"
        steps[c.name] = (4 if args.quick else 10) * PACE if fast else (1 if args.quick else 2) * PACE
    us = _measure(cases, steps, 2 if args.quick else args.rounds, PACE)
    results["us_per_step"] = us
    results["wall_us_per_step"] = dict(WALL)
    results["steps_per_s"] = {k: 1e6 / v for k, v in us.items()}
    best = {}
    for route in ("a_unbiased", "b_phipsi", "c_naive", "d_ours", "d_compiled", "d_autograd", "d_float32"):
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
        "d_over_d_compiled_steps_per_s": best["d_compiled"]["us_per_step"] / best["d_ours"]["us_per_step"],
        "d_compiled_over_c_steps_per_s": best["c_naive"]["us_per_step"] / best["d_compiled"]["us_per_step"],
        "d_compiled_over_a_steps_per_s": a / best["d_compiled"]["us_per_step"],
    }
    results["ratios_same_platform_reference"] = {
        "d_over_a_steps_per_s": us["a_unbiased@Reference"] / us["d_ours@Reference"],
        "d_over_c_steps_per_s": us["c_naive@Reference"] / us["d_ours@Reference"],
    }
    pn = best["d_ours"]["platform"]
    kernel_us = _native_kernel_us(ala, cv, g)
    results["breakdown_native_us_per_step"] = {
        "platform": pn,
        "md": us[f"a_unbiased@{pn}"],
        "pythonforce_plumbing": us[f"x_pythonforce_plumbing@{pn}"] - us[f"a_unbiased@{pn}"],
        "kernel_from_python": kernel_us,
        "rest_incl_positions_copy_and_deposition": us[f"d_ours@{pn}"] - us[f"x_pythonforce_plumbing@{pn}"] - kernel_us,
        "total_d": us[f"d_ours@{pn}"],
    }
    p = best["d_compiled"]["platform"]
    results["breakdown_compiled_us_per_step"] = {
        "platform": p,
        "md": us[f"a_unbiased@{p}"],
        "openmm_torchforce_plumbing": us[f"x_plumbing@{p}"] - us[f"a_unbiased@{p}"],
        "features": us[f"x_features@{p}"] - us[f"x_plumbing@{p}"],
        "model": us[f"x_cv@{p}"] - us[f"x_features@{p}"],
        "bias_spline": us[f"x_full_no_deposit@{p}"] - us[f"x_cv@{p}"],
        "deposition_and_grid_update": us[f"d_compiled@{p}"] - us[f"x_full_no_deposit@{p}"],
        "total_d_compiled": us[f"d_compiled@{p}"],
        "note": "differences of medians; features/model/bias include their share of the energy+forces graph",
    }
    results["grid_update"] = _grid_update_cost(ala, cv, lo, hi, bins, workdir)
    results["breakdown_compiled_direct_us_per_step"] = _direct_breakdown(ala, spec, cv, g, table, results, p, us)
    return results


def _native_kernel_us(ala, cv, g) -> float:
    """The native kernel (energy + forces) called from Python, CPU us (best of 5 x 2000 calls)."""
    from gmvae_cv.metad.native import NativeBias, recipe_from_module

    nb = NativeBias(recipe_from_module(cv.module, cv.n_cvs), [0, 1], g, np.ascontiguousarray(g.force_table()))
    pos = np.ascontiguousarray(ala.positions, dtype=np.float64)
    return _time_calls(lambda: nb.energy_forces(pos), n=2000, repeats=5)


def _time_calls(fn, n=2000, repeats=7) -> float:
    for _ in range(200):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n)
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
    for variant, kw, route in (("d_ours", {"topology": top}, "native"), ("d_compiled", {"topology": top}, "compiled"),
                               ("d_ours_with_box_autograd", {"use_box": True}, "native")):
        sd = make_system()
        md = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA, pace=PACE,
                                      grid_min=lo, grid_max=hi, grid_bin=bins, table_path=workdir / f"w_{variant}.f64", route=route)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BiasRouteWarning)  # with the box: falls back to autograd (recorded)
            md.add_force(sd, pos, box, **kw)
        force_info[variant] = md.force_info
        cases.append(Case(f"{variant}@CPU", sd, top, pos, "CPU", md, "ours", threads=threads))
    # the same unbiased system again: the ratio of two identical runs is the resolution of this measurement
    cases.insert(1, Case("a_unbiased_replica@CPU", make_system(), top, pos, "CPU", threads=threads))
    steps = {c.name: PACE for c in cases}
    us = _measure(cases, steps, 2 if args.quick else args.water_rounds, PACE)
    nsday = {k: 0.002 * 86400.0 / (v * 1e-6) / 1000.0 for k, v in us.items()}  # ps/step * s/day / (s/step) = ps/day; /1000: ns/day
    a = nsday["a_unbiased@CPU"]
    by_name = {c.name: c for c in cases}
    paired = {}
    for c in cases[1:]:
        paired[c.name] = {clock: _paired_ratio([s[i] for s in by_name["a_unbiased@CPU"].samples],
                                               [s[i] for s in c.samples]) for i, clock in enumerate(("wall", "cpu"))}
    call_meta = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA, SIGMA], bias_factor=GAMMA,
                                         pace=PACE, grid_min=lo, grid_max=hi, grid_bin=bins, table_path=workdir / "w_call.f64",
                                         route="native")
    call = _bias_call_us(make_system, pos, call_meta, box, top, threads)
    step_wall = float(np.median([s[0] for s in by_name["a_unbiased@CPU"].samples])) * 1e6
    return {
        "paired_ratio_vs_unbiased": paired,
        "paired_note": ("per round, unbiased time / route time (the two ran within seconds of each other); median over "
                        f"{len(by_name['a_unbiased@CPU'].samples)} rounds of {PACE} steps and a 95 % bootstrap interval "
                        "(2000 resamples of the rounds, seed 0). a_unbiased_replica is the same unbiased system again: its "
                        "ratio is what identical runs give here"),
        "native_force_call": {**call, "unbiased_wall_us_per_step": step_wall,
                              "implied_ratio_vs_unbiased": step_wall / (step_wall + call["added_us"]),
                              "route": call_meta.force_info["route"],
                              "note": "the bias force's own cost: in one context, Context.getState(forces) of its force group "
                                      "alone minus that of an empty group, alternated (median of the paired differences); "
                                      "implied ratio = unbiased step / (unbiased step + cost)"},
        "system": f"alanine dipeptide + {(n_atoms - 22) // 3} TIP3P waters, {n_atoms} atoms, PME 0.9 nm, HBonds, CPU platform",
        "cpu_threads": threads,
        "us_per_step": us,
        "wall_us_per_step": {k: WALL[k] for k in us},
        "ns_per_day": nsday,
        "ratios_vs_unbiased_ns_per_day": {k: v / a for k, v in nsday.items()},
        "force_info": force_info,
    }


def _paired_ratio(ref: list, other: list, n_boot: int = 2000) -> dict:
    """Median over rounds of ``ref[i] / other[i]`` (seconds per step), with a 95 % bootstrap interval."""
    r = np.asarray(ref) / np.asarray(other)
    rng = np.random.default_rng(0)
    boot = np.median(r[rng.integers(0, len(r), size=(n_boot, len(r)))], axis=1)
    return {"median": float(np.median(r)), "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "rounds": int(len(r)), "min": float(r.min()), "max": float(r.max())}


def _bias_call_us(make_system, pos, meta, box, top, threads, repeats: int = 30, calls: int = 200) -> dict:
    """Wall us of one evaluation of the native bias force alone: in one context, ``Context.getState(forces)``
    of the bias's force group (31) minus that of an empty group (30), alternated ``repeats`` times
    (``calls`` each); the median of the paired differences (the call's fixed cost cancels)."""
    props = {"Threads": str(threads)} if threads else {}
    s = make_system()
    meta.add_force(s, pos, box, topology=top, force_group=31)
    ctx = openmm.Context(s, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"), props)
    ctx.setPositions(pos)
    meta.sync([ctx])
    t = {30: [], 31: []}
    for r in range(repeats + 1):
        for g in (30, 31):
            t0 = time.perf_counter()
            for _ in range(calls):
                ctx.getState(getForces=True, groups={g})
            if r:  # the first pair warms up
                t[g].append((time.perf_counter() - t0) / calls * 1e6)
    diff = np.asarray(t[31]) - np.asarray(t[30])
    del ctx
    return {"empty_group_getstate_us": float(np.median(t[30])), "bias_group_getstate_us": float(np.median(t[31])),
            "added_us": float(np.median(diff)), "added_us_quartiles": [float(np.percentile(diff, 25)), float(np.percentile(diff, 75))],
            "repeats": repeats, "calls_per_repeat": calls}


def _lscpu() -> dict:
    """CPU model and flags (the issue asks for them in every benchmark JSON)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"lscpu": None}
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    flags = fields.get("Flags", "").split()
    return {"cpu_model": fields.get("Model name"), "cpu_flags": flags, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "hypervisor": fields.get("Hypervisor vendor")}


def _steps_cost(system_fn, force, platform, n=500, rounds=3, positions=None):
    """CPU us per step of a system with ``force`` (group 31) and the context build time (s)."""
    s = system_fn()
    if force is not None:
        force.setForceGroup(31)
        s.addForce(force)
    integ = openmm.LangevinMiddleIntegrator(TEMP, 1.0, 0.002)
    c0 = time.process_time()
    props = {"Threads": "1"} if platform == "CPU" else {}
    ctx = openmm.Context(s, integ, openmm.Platform.getPlatformByName(platform), props)
    ctx.setPositions(positions)
    e0 = ctx.getState(getEnergy=True, groups={31}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    build = time.process_time() - c0
    ctx.e0 = e0  # the bias energy at ``positions`` (before any step)
    integ.step(50)
    best = []
    for _ in range(rounds):
        c0 = time.process_time()
        integ.step(n)
        ctx.getState(getEnergy=True)
        best.append((time.process_time() - c0) / n * 1e6)
    return float(np.median(best)), build, ctx


def _lepton_network(head, n_f: int, hidden: int) -> list:
    """Definitions of the random GMVAE head's CV components s0, s1 over feature variables f0.. (Lepton)."""
    sd = {k: v.detach().double().numpy() for k, v in head.state_dict().items()}
    wy = sd["qy_w1"] * sd["scale"][None]
    by = sd["qy_b1"] - wy @ sd["shift"]
    wz = sd["qz_w1"] * sd["scale"][None]
    bz = -wz @ sd["shift"]
    k, d = sd["qy_w2"].shape[0], sd["qz_wm"].shape[0]

    def lin(w, b, xs):
        return "+".join(f"{float(w[i])!r}*{xs[i]}" for i in range(len(xs))) + f"+{float(b)!r}"

    fs = [f"f{m}" for m in range(n_f)]
    defs = []
    for j in range(hidden):
        defs.append(f"uy{j}={lin(wy[j], by[j], fs)}")
        defs.append(f"hy{j}=select(step(uy{j}),uy{j},0)")
        defs.append(f"uz{j}={lin(wz[j], bz[j], fs)}")
    hy = [f"hy{j}" for j in range(hidden)]
    for i in range(k):
        defs.append(f"e{i}=exp({lin(sd['qy_w2'][i], sd['qy_b2'][i], hy)})")
        for j in range(hidden):
            defs.append(f"v{i}_{j}=uz{j}+{float(sd['qz_embed'][i, j])!r}")
            defs.append(f"a{i}_{j}=select(step(v{i}_{j}),v{i}_{j},0)")
        for c in range(d):
            defs.append(f"z{i}_{c}=" + lin(sd["qz_wm"][c], sd["qz_bm"][c], [f"a{i}_{j}" for j in range(hidden)]))
    defs.append("den=" + "+".join(f"e{i}" for i in range(k)))
    for c in range(d):
        defs.append(f"s{c}=(" + "+".join(f"e{i}*z{i}_{c}" for i in range(k)) + ")/den")
    return defs[::-1]  # Lepton: a definition may use the ones after it


def expression_route(args) -> dict:
    """The Lepton expression route, measured: CustomCVForce over one CustomBondForce per distance,
    energy table(s0, s1) with the network written out; the cost of a CustomCVForce variable; the cost
    of a tabulated-function update per hill."""
    ala = AlanineDipeptide()
    spec = alanine_heavy_atom_distances()
    pairs = [f.atoms for f in spec.features]
    out: dict = {"cv": "random GMVAE head over the 25 heavy-atom distances, k = 2, D = 2; hidden widths below",
                 "platform": "Reference (its CustomCVForce variables are cheapest there, see per_variable)", "by_hidden": {}}
    pos = ala.positions
    base, _, _ = _steps_cost(ala.create_system, None, "Reference", positions=pos)
    out["unbiased_us_per_step"] = base
    for h in args.expression_widths:
        cv = random_gmvae_cv(spec, n_cvs=2, n_clusters=2, hidden=h, seed=0)
        s0 = cv(pos)
        g = BiasGrid(s0 - 3.0, s0 + 3.0, [300, 300], [False, False])
        g.add_hill(s0, [SIGMA, SIGMA], HEIGHT)
        f = openmm.CustomCVForce("; ".join(["table(s0,s1)"] + _lepton_network(cv.module.head, len(pairs), h)))
        for m, (i, j) in enumerate(pairs):
            b = openmm.CustomBondForce("r")
            b.addBond(i, j, [])
            f.addCollectiveVariable(f"f{m}", b)
        f.addTabulatedFunction("table", g.openmm_function())
        us, build, ctx = _steps_cost(ala.create_system, f, "Reference", positions=pos)
        e = ctx.e0
        fn = f.getTabulatedFunction(0)
        c0 = time.process_time()
        for _ in range(5):
            fn.setFunctionParameters(*g.shape, g.values.flatten(order="F"), g.lower[0], g.upper[0], g.lower[1], g.upper[1])
            f.updateParametersInContext(ctx)
            ctx.getState(getEnergy=True)
        update = (time.process_time() - c0) / 5
        out["by_hidden"][str(h)] = {"build_s": build, "us_per_step": us, "overhead_us_per_step": us - base,
                                    "energy_minus_grid_bias_kJmol": e - float(g.evaluate(s0[None])[0][0]),
                                    "network_multiply_adds": 25 * 2 * h + h * 2 + 2 * h * 2}
        out["grid_update_ms_per_hill_301x301"] = 1e3 * update
        out["grid_update_us_per_step_at_pace"] = 1e6 * update / PACE
    per = {}
    for plat in ("Reference", "CPU"):
        b0, _, _ = _steps_cost(ala.create_system, None, plat, positions=pos)
        f = openmm.CustomCVForce("+".join(f"0.001*f{m}" for m in range(25)))
        for m, (i, j) in enumerate(pairs):
            b = openmm.CustomBondForce("r")
            b.addBond(i, j, [])
            f.addCollectiveVariable(f"f{m}", b)
        us, _, _ = _steps_cost(ala.create_system, f, plat, positions=pos)
        per[plat] = {"us_per_variable_per_step": (us - b0) / 25, "unbiased_us_per_step": b0}
    out["per_variable"] = per
    out["note"] = ("Lepton differentiates the expression once per variable (no reverse mode) and stores trees, not "
                   "graphs, with a quadratic search for common subexpressions: build time grows steeply with width; the "
                   "default GMVAE size (25 features, [32], k = 4) did not build within 600 s on this machine")
    return out


def large_cv(args, workdir: Path) -> dict:
    """A CV of the size a larger system needs: 200 distances, [128] hidden, k = 6, D = 3 (3D grid), vacuum
    dipeptide (200 of its 231 atom pairs), Reference platform: native, compiled and naive routes."""
    from gmvae_cv.features import FeatureSpec as _Spec, distance as _distance

    ala = AlanineDipeptide()
    pairs = [(i, j) for i in range(22) for j in range(i + 1, 22)][:200]
    spec = _Spec([_distance(i, j) for i, j in pairs], n_atoms=22, periodic=False)
    cv = random_gmvae_cv(spec, n_cvs=3, n_clusters=6, hidden=128, seed=0, path=workdir / "large.pt")
    s0 = cv(ala.positions)
    lo, hi, bins = (s0 - 2.0).tolist(), (s0 + 2.0).tolist(), [40, 40, 40]
    cases, build = [Case("a_unbiased@Reference", ala.create_system(), ala.topology, ala.positions, "Reference")], {}
    for route in ("native", "compiled"):
        sd = ala.create_system()
        c0 = time.process_time()
        md = WellTemperedMetadynamics(cv, temperature=TEMP, height=HEIGHT, sigma=[SIGMA] * 3, bias_factor=GAMMA, pace=PACE,
                                      grid_min=lo, grid_max=hi, grid_bin=bins, route=route, table_path=workdir / f"large_{route}.f64")
        md.add_force(sd, ala.positions)
        cases.append(Case(f"d_{route}@Reference", sd, ala.topology, ala.positions, "Reference", md, "ours"))
        build[route] = time.process_time() - c0
    sc = ala.create_system()
    c0 = time.process_time()
    comps = [TorchForce(torch.jit.script(_Component(cv.module, i))) for i in range(3)]
    mc = app.Metadynamics(sc, [app.BiasVariable(f, lo[i], hi[i], SIGMA, False, bins[i] + 1) for i, f in enumerate(comps)],
                          TEMP, GAMMA, HEIGHT, PACE)
    cases.append(Case("c_naive@Reference", sc, ala.topology, ala.positions, "Reference", mc, "app"))
    build["naive"] = time.process_time() - c0
    steps = {c.name: (1 if args.quick else 2) * PACE for c in cases}
    us = _measure(cases, steps, 2 if args.quick else 3, 100)
    a = us["a_unbiased@Reference"]
    return {"cv": "random GMVAE stand-in: 200 distances -> [128] -> 3, k = 6; 3D grid 40^3", "us_per_step": us,
            "wall_us_per_step": {k: WALL[k] for k in us}, "overhead_us_per_step": {k: v - a for k, v in us.items()},
            "build_s_cpu": build, "ratios": {"native_over_unbiased": a / us["d_native@Reference"],
                                             "native_over_compiled": us["d_compiled@Reference"] / us["d_native@Reference"],
                                             "native_over_naive": us["c_naive@Reference"] / us["d_native@Reference"]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("bias_speed.json")))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (a smoke test)")
    ap.add_argument("--no-water", action="store_true")
    ap.add_argument("--no-vacuum", action="store_true")
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--no-expression", action="store_true")
    ap.add_argument("--expression-widths", type=int, nargs="*", default=[2, 4, 8])
    ap.add_argument("--water-rounds", type=int, default=40, help="interleaved rounds of 500 steps in water")
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
                         "rounds": args.rounds, "water_rounds": args.water_rounds, "quick": args.quick,
                         "command": "python benchmarks/bias_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)},
            "machine": {"platform": _platform.platform(), "cpus": os.cpu_count(), **_lscpu(),
                        "load_average_start": os.getloadavg(), "note": "times are CPU us of this process unless 'wall'"},
            "versions": {"openmm": openmm.__version__, "torch": torch.__version__, "numpy": np.__version__},
        }
        if not args.no_vacuum:
            out["vacuum"] = vacuum(args, workdir)
        if not args.no_water:
            out["water"] = water(args, workdir)
        if not args.no_large:
            out["large_cv"] = large_cv(args, workdir)
        if not args.no_expression:
            out["expression_route"] = expression_route(args)
        out["torchscript_cpu_fuser"] = {"llvm_enabled": bool(torch._C._llvm_enabled()),
                                        "note": "NNC generates CPU code only with LLVM; without it the fuser cannot help"}
    out["machine"]["load_average_end"] = os.getloadavg()
    out["wall_s"] = time.time() - t0
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    v = out.get("vacuum", {})
    print(json.dumps({"vacuum_ratios": v.get("ratios"), "breakdown_native": v.get("breakdown_native_us_per_step"),
                      "breakdown_compiled": v.get("breakdown_compiled_us_per_step"),
                      "large_cv": out.get("large_cv", {}).get("ratios"),
                      "water": out.get("water", {}).get("paired_ratio_vs_unbiased"),
                      "water_native_call": out.get("water", {}).get("native_force_call")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
