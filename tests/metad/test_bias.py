"""Tests of the metadynamics engine (gmvae_cv.metad.engine, bias_grid, bias_force, bias_run, cvfile).

Each test measures against an independent answer: OpenMM's own tabulated functions and
``openmm.app.Metadynamics``, the real PLUMED kernel (``plumed sum_hills``), finite differences,
closed-form kernels, and an uninterrupted run for the kill -9 restart.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmtorch")
from openmm import app, unit  # noqa: E402

from gmvae_cv._core.errors import GMVAEInputError, SimulationUnstableError  # noqa: E402
from gmvae_cv.metad.engine import BiasEdgeWarning, WellTemperedMetadynamics  # noqa: E402
from gmvae_cv.metad.force import VERSION_PARAMETER, BiasForceBuilder, write_table  # noqa: E402
from gmvae_cv.metad.grid import BiasGrid, DP2CUTOFF  # noqa: E402
from gmvae_cv.metad.run import run_metadynamics  # noqa: E402
from gmvae_cv.deploy.loaders import feature_cv, load_cv, random_gmvae_cv  # noqa: E402
from gmvae_cv.features import alanine_backbone_torsions, alanine_heavy_atom_distances  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PHI_ATOMS = (4, 6, 8, 14)
PSI_ATOMS = (6, 8, 14, 16)


@pytest.fixture(scope="module")
def gmvae_cv(tmp_path_factory):
    return random_gmvae_cv(alanine_heavy_atom_distances(), seed=3, path=tmp_path_factory.mktemp("cv") / "gmvae.pt")


# ------------------------------------------------------------------------------------------ grid
def test_kernels_match_closed_forms():
    g = BiasGrid([-1.0], [1.0], [200], [False])
    x = g.axis(0)
    k = g.kernel([0.1], [0.2], "stretched-gaussian")
    d2 = 0.5 * ((x - 0.1) / 0.2) ** 2
    a = 1.0 / (1.0 - math.exp(-DP2CUTOFF))
    expected = np.where(d2 < DP2CUTOFF, a * np.exp(-d2) - a * math.exp(-DP2CUTOFF), 0.0)
    assert np.max(np.abs(k - expected)) < 1e-15
    assert k.max() == pytest.approx(1.0, abs=1e-3)  # the node at 0.1 (continuous at the cut-off, 1 at the centre)
    assert np.max(np.abs(g.kernel([0.1], [0.2], "gaussian") - np.exp(-d2))) < 1e-15
    # periodic: minimum image, and the last node equals the first
    gp = BiasGrid([-math.pi], [math.pi], [90], [True])
    kp = gp.kernel([3.0], [0.3], "gaussian")
    dx = np.angle(np.exp(1j * (gp.axis(0) - 3.0)))
    assert np.max(np.abs(kp - np.exp(-0.5 * (dx / 0.3) ** 2))) < 1e-12
    assert kp[0] == kp[-1]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("periodic", [False, True])
def test_grid_interpolation_equals_openmm_tabulated_function(dims, periodic):
    """Energy and gradient of BiasGrid (NumPy) and GridBias (TorchScript) against OpenMM's table()."""
    rng = np.random.default_rng(dims * 10 + periodic)
    lo = [-math.pi] * dims if periodic else list(rng.uniform(-2, -1, dims))
    hi = [math.pi] * dims if periodic else list(rng.uniform(1, 2, dims))
    g = BiasGrid(lo, hi, [int(b) for b in rng.integers(6, 12, dims)], [periodic] * dims)
    for k in range(4):
        g.add_hill(rng.uniform(-1, 1, dims), rng.uniform(0.3, 0.6, dims), rng.uniform(0.5, 1.5),
                   "gaussian" if k % 2 else "stretched-gaussian")
    names = "xyz"[:dims]
    force = openmm.CustomCompoundBondForce(1, f"table({', '.join(n + '1' for n in names)})")
    force.addTabulatedFunction("table", g.openmm_function())
    force.addBond([0], [])
    system = openmm.System()
    system.addParticle(1.0)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    pts = rng.uniform(-7, 7, (40, dims)) if periodic else rng.uniform(-2.5, 2.5, (40, dims))  # includes points outside
    e_omm, g_omm = [], []
    for p in pts:
        xyz = np.zeros(3)
        xyz[:dims] = p
        ctx.setPositions([xyz])
        st = ctx.getState(getEnergy=True, getForces=True)
        e_omm.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        g_omm.append(-st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)[0, :dims])
    e_omm, g_omm = np.array(e_omm), np.array(g_omm)
    value, grad = g.evaluate(pts)
    assert np.max(np.abs(value - e_omm)) < 1e-12
    assert np.max(np.abs(grad - g_omm)) < 1e-11
    module = torch.jit.script(g.torch_module())
    table = torch.as_tensor(g.force_table())
    for p, e_ref, g_ref in zip(pts, e_omm, g_omm):
        s = torch.tensor(p, requires_grad=True)
        e = module(s, table)
        e.backward()
        assert abs(float(e) - e_ref) < 1e-12
        assert np.max(np.abs(s.grad.numpy() - g_ref)) < 1e-11
    assert e_omm.max() > 0.5  # the comparison is not between zeros


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_local_deposition_equals_a_table_from_scratch(dims, tmp_path, torsion_cv):
    """add_hill updates the cached force table only on the hill's window + SPLINE_MARGIN nodes: after
    many random hills (near and beyond the edges, across periodic boundaries, wide ones reaching the
    whole axis, both kernels) the table equals one computed from scratch to 1e-12 relative, the
    values equal a sum of whole-grid kernels (bit for bit for the stretched kernel), and the rows
    written to the shared table file (TableFile.write_region) are all the rows that changed."""
    from gmvae_cv.metad.force import TableFile
    from gmvae_cv.metad.grid import SPLINE_MARGIN, hermite_table

    rng = np.random.default_rng(dims)
    bins = {1: [[400], [300]], 2: [[240, 200]], 3: [[100, 84, 96]]}[dims]
    per = {1: [[True], [False]], 2: [[True, False]], 3: [[True, False, True]]}[dims]
    n_hills = {1: 400, 2: 300, 3: 30}[dims]
    for b, p in zip(bins, per):
        lo = np.where(p, -math.pi, -1.0)
        hi = np.where(p, math.pi, 2.0)
        g = BiasGrid(lo, hi, b, p)
        whole = np.zeros(g.shape)
        table_file = TableFile(tmp_path / f"{dims}_{b}.f64", g.force_table_shape)
        table_file.write(g.force_table())
        local_updates = 0
        for k in range(n_hills):
            kernel = "gaussian" if (dims < 3 and k % 4 == 1) else "stretched-gaussian"
            sigma = g.spacing * rng.uniform(0.5, 2.0 if dims == 3 else 6.0, dims)
            if k % 50 == 7:
                sigma = (hi - lo) * 0.2  # reaches every node of the axis
            center = rng.uniform(lo, hi)
            if k % 3 == 0:  # near an edge, beyond it, or across the periodic boundary
                center = np.where(rng.random(dims) < 0.5, lo, hi) + rng.normal(0, 4, dims) * g.spacing
            height = rng.uniform(0.2, 2.0)
            region = g.add_hill(center, sigma, height, kernel)
            whole += height * g.kernel(center, sigma, kernel)
            local_updates += "force" in g._cache
            table_file.write_region(g.force_table(), g.shape, region)
        scratch = hermite_table(g.values, g.spacing, g.periodic) * g._channel_scale()
        table = g.force_table()
        rel = np.abs(table - scratch).max(axis=0) / np.abs(scratch).max(axis=0)
        assert rel.max() < 1e-12, rel
        assert np.abs(scratch).max(axis=0).min() > 0.1  # every channel is far from zero
        assert np.max(np.abs(g.values - whole)) < 1e-15 * np.abs(whole).max()  # the Gaussian's e^-45 tails
        assert np.array_equal(np.fromfile(table_file.path, dtype=np.float64).reshape(table.shape), table)
        assert local_updates > n_hills // 2  # most hills did not recompute the table
        assert SPLINE_MARGIN == 32
    # the stretched kernel: values bit for bit those of whole-grid kernels
    g = BiasGrid([-math.pi] * dims, [math.pi] * dims, [50] * dims, [True] * dims)
    whole = np.zeros(g.shape)
    for _ in range(20):
        c, sg, h = rng.uniform(-4, 4, dims), rng.uniform(0.05, 0.5, dims), rng.uniform(0.5, 2)
        g.add_hill(c, sg, h)
        whole += h * g.kernel(c, sg)
    assert np.array_equal(g.values, whole)
    outside = BiasGrid([0.0] * dims, [1.0] * dims, [20] * dims, [False] * dims)
    assert outside.add_hill([5.0] * dims, [0.01] * dims, 1.0) == tuple([] for _ in range(dims))
    assert not outside.values.any()
    if dims == 2:  # the engine: the shared file always holds the table, also after a direct grid edit
        meta = _meta(torsion_cv, sigma=[0.05, 0.05], grid_bin=[400, 400], table_path=tmp_path / "meta.f64")
        for k, s in enumerate([[0.1, 0.2], [3.1, -3.1], [-1.0, 1.0]]):
            meta.deposit([np.array(s)], 100 * (k + 1), 0.2 * (k + 1))
            if k == 1:
                meta.grid.add_hill([2.0, -2.0], [0.05, 0.05], 3.0)
        table = meta.grid.force_table()
        assert np.array_equal(np.fromfile(tmp_path / "meta.f64").reshape(table.shape), table)
        scratch = hermite_table(meta.grid.values, meta.grid.spacing, meta.grid.periodic) * meta.grid._channel_scale()
        assert np.max(np.abs(table - scratch)) < 1e-12 * np.abs(scratch).max()


# ------------------------------------------------------------------------------------------ force
@pytest.mark.parametrize("route, dtype", [("compiled", "float64"), ("autograd", "float64"), ("compiled", "float32")])
def test_bias_force_energy_forces_and_table_updates(ala, gmvae_cv, tmp_path, route, dtype):
    """The TorchForce: energy = grid at the CV, forces = -dE/dx (central differences), table updates."""
    tol = 1e-12 if dtype == "float64" else 2e-5
    s0 = gmvae_cv(ala.positions)
    g = BiasGrid(s0 - 2.0, s0 + 2.0, [40, 40], [False, False])
    g.add_hill(s0 + 0.05, [0.3, 0.3], 2.0)
    table = tmp_path / "table.f64"
    write_table(table, g.force_table())
    builder = BiasForceBuilder(gmvae_cv.module, [0, 1], g, table, route=route, dtype=dtype)
    force = builder.force(ala.positions)
    force.setForceGroup(31)
    system = ala.create_system(constraints=None)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(ala.positions)

    def energy(x):
        ctx.setPositions(x)
        return ctx.getState(getEnergy=True, groups={31}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    e0 = energy(ala.positions)
    assert e0 == pytest.approx(g.evaluate(s0[None])[0][0], abs=tol)
    ctx.setPositions(ala.positions)
    f = ctx.getState(getForces=True, groups={31}).getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    if dtype == "float64":
        h = 1e-5
        fd = np.zeros_like(f)
        for atom in range(22):
            for k in range(3):
                xp = ala.positions.copy()
                xm = ala.positions.copy()
                xp[atom, k] += h
                xm[atom, k] -= h
                fd[atom, k] = -(energy(xp) - energy(xm)) / (2 * h)
        assert np.abs(f).max() > 1.0
        assert np.max(np.abs(f - fd)) < 1e-5
    # a new table: float64 forces read the shared file directly, float32 ones re-convert on a version change
    g2 = g.copy()
    g2.add_hill(s0, [0.3, 0.3], 1.0)
    write_table(table, g2.force_table())
    e2 = g2.evaluate(s0[None])[0][0]
    if dtype == "float32":
        assert energy(ala.positions) == pytest.approx(e0, abs=tol)
        ctx.setParameter(VERSION_PARAMETER, 1.0)
    assert energy(ala.positions) == pytest.approx(e2, abs=tol)
    if route == "compiled":
        assert builder.info["compiled_vs_autograd_max_rel_error"] < (1e-12 if dtype == "float64" else 1e-4)


# ------------------------------------------------------------------------------------------ vs OpenMM
def test_matches_openmm_app_metadynamics_on_native_torsions(ala, torsion_cv):
    """phi/psi through the TorchScript path vs app.Metadynamics on CustomTorsionForce phi, psi.

    Same hills (app.Metadynamics' trajectory drives both), same bias on the grid, forces of the
    bias equal to 1e-4 kJ/mol/nm along the trajectory; then both engines run their own dynamics
    from the same state and deposit the same hills.
    """
    bins, sigma, height, gamma, pace, temp = 60, 0.35, 1.2, 6.0, 50, 300.0
    platform = openmm.Platform.getPlatformByName("Reference")

    def torsion(atoms):
        f = openmm.CustomTorsionForce("theta")
        f.addTorsion(*atoms)
        return f

    def simulation(system, seed=11):
        integ = openmm.LangevinMiddleIntegrator(temp, 1.0, 0.002)
        integ.setRandomNumberSeed(seed)
        sim = app.Simulation(ala.topology, system, integ, platform)
        sim.context.setPositions(ala.positions)
        sim.context.setVelocitiesToTemperature(temp, seed)
        return sim

    sys_a = ala.create_system()
    variables = [app.BiasVariable(torsion(a), -math.pi, math.pi, sigma, True, bins + 1) for a in (PHI_ATOMS, PSI_ATOMS)]
    meta_a = app.Metadynamics(sys_a, variables, temp, gamma, height, pace)
    sim_a = simulation(sys_a)
    group_a = sys_a.getForce(sys_a.getNumForces() - 1).getForceGroup()

    sys_b = ala.create_system()
    meta_b = WellTemperedMetadynamics(torsion_cv, temperature=temp, height=height, sigma=[sigma, sigma], bias_factor=gamma,
                                      pace=pace, grid_bin=[bins, bins], kernel="gaussian")
    meta_b.add_force(sys_b, ala.positions)
    sim_b = simulation(sys_b)
    group_b = meta_b._force_groups[id(sys_b)]
    assert group_a == group_b

    def bias_forces(sim, group, pos):
        sim.context.setPositions(pos)
        st = sim.context.getState(getForces=True, getEnergy=True, groups={group})
        return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))

    max_df, max_de, max_f = 0.0, 0.0, 0.0
    for k in range(12):
        meta_a.step(sim_a, pace)
        state = sim_a.context.getState(getPositions=True)
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        s_omm = np.array(meta_a.getCollectiveVariables(sim_a))
        s_torch = torsion_cv(pos)
        assert np.max(np.abs(np.angle(np.exp(1j * (s_omm - s_torch))))) < 1e-10
        meta_b.deposit([s_omm], sim_a.currentStep, state.getTime().value_in_unit(unit.picosecond))
        meta_b.sync([sim_b.context])
        # same bias on the grid after the same hills (app.Metadynamics stores axes reversed)
        assert np.max(np.abs(meta_b.grid.values - meta_a._totalBias.T)) < 1e-12
        # forces of the bias at this configuration and at a displaced one
        for shift in (0.0, 0.01):
            x = pos + shift * np.sin(np.arange(66.0)).reshape(22, 3)
            ea, fa = bias_forces(sim_a, group_a, x)
            eb, fb = bias_forces(sim_b, group_b, x)
            max_de = max(max_de, abs(ea - eb))
            max_df = max(max_df, float(np.abs(fa - fb).max()))
            max_f = max(max_f, float(np.abs(fa).max()))
    assert max_f > 1.0  # the bias pushes
    assert max_df < 1e-4
    assert max_de < 1e-9
    assert meta_b.free_energy() == pytest.approx(meta_a.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole).T, abs=1e-10)

    # both engines drive their own identical simulations: same hills
    sys_c = ala.create_system()
    meta_c = app.Metadynamics(sys_c, [app.BiasVariable(torsion(a), -math.pi, math.pi, sigma, True, bins + 1)
                                      for a in (PHI_ATOMS, PSI_ATOMS)], temp, gamma, height, pace)
    sim_c = simulation(sys_c, seed=5)
    meta_c.step(sim_c, 6 * pace)  # run before creating the next context: Reference keeps one RNG per process
    sys_d = ala.create_system()
    meta_d = WellTemperedMetadynamics(torsion_cv, temperature=temp, height=height, sigma=[sigma, sigma], bias_factor=gamma,
                                      pace=pace, grid_bin=[bins, bins], kernel="gaussian")
    meta_d.add_force(sys_d, ala.positions)
    sim_d = simulation(sys_d, seed=5)
    meta_d.step(sim_d, 6 * pace)
    assert len(meta_d.hills) == 6
    assert np.max(np.abs(meta_d.grid.values - meta_c._totalBias.T)) < 1e-6


# ------------------------------------------------------------------------------------------ PLUMED
def _plumed():
    from plumed_tool import PLUMED

    if PLUMED is None:
        pytest.skip("no working 'plumed' command (PLUMED kernel) found")
    return PLUMED


def test_plumed_sum_hills_gives_the_final_bias(ala, torsion_cv, gmvae_cv, tmp_path):
    """The real PLUMED kernel sums RUN/HILLS to the run's final grid, to float tolerance."""
    exe = _plumed()
    cases = [
        ("tors", torsion_cv, dict(sigma=[0.35, 0.3], grid_bin=[60, 50], walkers=2)),
        ("gmvae", gmvae_cv, dict(sigma=[0.2], components=[1], grid_min=[-2.5], grid_max=[2.5], grid_bin=[100], walkers=1)),
    ]
    for name, cv, kw in cases:
        out = tmp_path / name
        res = run_metadynamics(cv, out, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                               n_steps=1500, height=1.5, bias_factor=8.0, pace=50, platform="Reference", traj_stride=0, **kw)
        meta = res.info["params"]["metadynamics"]
        hills = [str(out / f) for f in sorted(os.listdir(out)) if f.startswith("HILLS")]
        assert res.n_hills == 30 * kw["walkers"]
        lo, hi, bins = meta["grid_min"], meta["grid_max"], meta["grid_bin"]
        cmd = [exe, "sum_hills", "--hills", ",".join(hills), "--outfile", str(out / "sum.dat"),
               "--min", ",".join(repr(x) for x in lo), "--max", ",".join(repr(x) for x in hi),
               "--bin", ",".join(str(b) for b in bins)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        summed = np.loadtxt(out / "sum.dat", comments="#")
        d = len(bins)
        gamma = meta["bias_factor"]
        v_plumed = -summed[:, d] * (gamma - 1.0) / gamma  # sum_hills gives -gamma/(gamma-1) V for well-tempered hills
        ours = np.loadtxt(out / "bias_grid.dat", comments="#")
        assert ours.shape[0] == summed.shape[0]
        key = lambda a: np.lexsort([np.round(a[:, k], 9) for k in range(d)])  # noqa: E731
        a, b = ours[key(ours)], summed[key(summed)]
        assert np.max(np.abs(a[:, :d] - b[:, :d])) < 1e-8
        assert np.max(np.abs(a[:, d] - v_plumed[key(summed)])) < 1e-9 * max(1.0, np.abs(a[:, d]).max())
        assert np.abs(a[:, d]).max() > 1.0


# ------------------------------------------------------------------------------------------ walkers
def test_walkers_feel_each_others_hills(ala, torsion_cv):
    """Two lock-step walkers: each one's bias force includes the other's hills."""
    meta = WellTemperedMetadynamics(torsion_cv, temperature=300, height=2.0, sigma=[0.3, 0.3], bias_factor=10, pace=100,
                                    grid_bin=[72, 72])
    sims = []
    for w in range(2):
        system = ala.create_system()
        meta.add_force(system, ala.positions)
        integ = openmm.LangevinMiddleIntegrator(300, 1.0, 0.002)
        integ.setRandomNumberSeed(w + 1)
        sim = app.Simulation(ala.topology, system, integ, openmm.Platform.getPlatformByName("Reference"))
        sim.context.setPositions(ala.positions)
        sim.context.setVelocitiesToTemperature(300, w + 1)
        sims.append(sim)
    group = meta._force_groups[id(sims[0].system)]
    hills = meta.step(sims, 300)
    assert [h.walker for h in hills] == [0, 1, 0, 1, 0, 1]
    for w, sim in enumerate(sims):
        s = meta.cv_values(sim.context)
        felt = sim.context.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        own = BiasGrid(meta.grid.lower, meta.grid.upper, meta.grid.bins, meta.grid.periodic)
        both = own.copy()
        for h in hills:
            both.add_hill(h.center, h.sigma, h.height)
            if h.walker == w:
                own.add_hill(h.center, h.sigma, h.height)
        v_both = both.evaluate(s[None])[0][0]
        v_own = own.evaluate(s[None])[0][0]
        assert felt == pytest.approx(v_both, abs=1e-10)
        assert abs(v_both - v_own) > 0.05  # the other walker's hills are felt
    # heights of a round come from the bias before that round (as WALKERS_MPI)
    assert hills[0].height == pytest.approx(2.0) and hills[1].height == pytest.approx(2.0)


def test_shared_walkers_directory_partial_lines_restarts_and_refusals(torsion_cv, tmp_path):
    """Walkers of one walkers_dir (here two objects in one process): hills published by one are read
    by the other once; a line half-written by a killed publisher is not read, and the publisher
    continued from its state cuts it and publishes the hill whole; a state older than the published
    hills, a stale HILLS file, a walker id in use and other parameters are refused."""
    shared = tmp_path / "shared"
    kw = dict(temperature=300, height=1.2, sigma=[0.35, 0.35], bias_factor=6, pace=50, walkers_dir=shared)
    a = WellTemperedMetadynamics(torsion_cv, walker_id=0, **kw)
    b = WellTemperedMetadynamics(torsion_cv, walker_id=1, **kw)
    rng = np.random.default_rng(0)

    def deposit(meta, k):
        return meta.deposit([rng.uniform(-3, 3, 2)], 50 * k, 0.1 * k, [meta.walker_id])[0]

    own_a = [deposit(a, k) for k in range(1, 4)]
    assert b.exchange() == []  # nothing published yet
    assert a.exchange() == [] and a.walkers.published == 3
    got = b.read_walkers()
    assert [h.walker for h in got] == [0, 0, 0] and [h.step for h in got] == [-1, -1, -1]
    assert all(np.array_equal(g.center, h.center) and g.time == h.time and g.height == pytest.approx(h.height, rel=1e-15)
               for g, h in zip(got, own_a))
    assert b.read_walkers() == []  # read once
    own_b = [deposit(b, k) for k in range(1, 3)]
    b.exchange()
    got_a = a.read_walkers()
    assert len(got_a) == 2 and all(np.array_equal(g.center, h.center) for g, h in zip(got_a, own_b))
    assert np.max(np.abs(a.grid.values - b.grid.values)) < 1e-12
    assert a.state_dict()["walkers"] == {"walker_id": 0, "read": {"1": [(shared / "HILLS.1").stat().st_size, 2]}}
    # a is killed while publishing its 4th hill: half a line in HILLS.0
    hill4 = deposit(a, 4)
    state = a.state_dict()  # the checkpoint that holds the 4th hill
    g = 6.0
    line = " ".join("%.17g" % v for v in [hill4.time, *hill4.center, *hill4.sigma, hill4.height * g / (g - 1), g]) + "\n"
    with open(shared / "HILLS.0", "ab") as fh:
        fh.write(line[:25].encode())
    assert b.read_walkers() == []
    a.close()
    a2 = WellTemperedMetadynamics(torsion_cv, walker_id=0, **kw)
    a2.load_state_dict(state)
    assert a2.publish_hills() == 1
    (h,) = b.read_walkers()
    assert np.array_equal(h.center, hill4.center)
    assert (shared / "HILLS.0").read_text().count("\n") == (shared / "HILLS.1").read_text().count("\n") + 2
    assert np.max(np.abs(a2.grid.values - b.grid.values)) < 1e-12  # both: 4 hills of a, 2 of b
    # continuing from a state older than the hills already published is refused
    older = WellTemperedMetadynamics(torsion_cv, temperature=300, height=1.2, sigma=[0.35, 0.35], bias_factor=6, pace=50)
    for hh in own_a:
        older.deposit([np.array(hh.center)], hh.step, hh.time, [0])
    old_state = older.state_dict()
    a2.close()
    a3 = WellTemperedMetadynamics(torsion_cv, walker_id=0, **kw)
    a3.load_state_dict(old_state)
    with pytest.raises(GMVAEInputError, match="holds 4 hills that are not the first hills of this walker"):
        a3.publish_hills()
    a3.close()
    fresh = WellTemperedMetadynamics(torsion_cv, walker_id=0, **kw)  # another run with walker id 0
    with pytest.raises(GMVAEInputError, match=r"holds 4 hills that are not the first hills of this walker \(0 deposited\)"):
        fresh.publish_hills()
    with pytest.raises(GMVAEInputError, match="walker id 1 is in use"):
        WellTemperedMetadynamics(torsion_cv, walker_id=1, **kw)
    with pytest.raises(GMVAEInputError, match=r"other parameters \(sigma: \[0.35, 0.35\] there, \[0.3, 0.3\] here"):
        WellTemperedMetadynamics(torsion_cv, walker_id=3, grid_bin=[90, 90], **{**kw, "sigma": [0.3, 0.3]})
    with pytest.raises(GMVAEInputError, match="without 'walkers_dir'"):
        WellTemperedMetadynamics(torsion_cv, walker_id=3, **{k: v for k, v in kw.items() if k != "walkers_dir"})
    b.close()
    fresh.close()


_WALKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from gmvae_cv.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _hills_rows(path, n=None):
    rows = np.loadtxt(path, comments="#", ndmin=2)
    return rows if n is None else rows[:n]


def _interleaved(ckpt: Path, walker: int) -> bool:
    """Whether a walker's checkpoint lists a hill of another walker after one of its own (read mid-run)."""
    try:
        with np.load(ckpt) as z:
            who = z["hills"][:, 1]
    except (OSError, ValueError, KeyError):  # not there yet
        return False
    own = np.flatnonzero(who == walker)
    return own.size > 0 and bool(np.any(who[own[0]:] != walker))


@pytest.mark.parametrize("kill", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_walkers_in_separate_processes_share_one_bias(ala, torsion_cv, tmp_path, kill):
    """Two `gmvae-cv bias --walkers-dir` processes run at once and exchange hills (with ``kill``,
    walker 1 is then killed with SIGKILL and continued). Each walker's final grid is the sum of its own hills and the hills it
    read of the other's published file (each once, in the order its checkpoint lists them); every
    own hill's height is the well-tempered height of the bias it felt, which includes the other
    walker's hills; each published HILLS.<w> equals the run's own HILLS (no hill lost or repeated
    across the kill), and `plumed sum_hills` over the two files gives each walker's final grid."""
    exe = _plumed()
    shared = tmp_path / "SHARED"
    script = tmp_path / "walker.py"
    script.write_text(_WALKER.format(root=str(ROOT)))
    pace, stride, gamma, height = 50, 2, 8.0, 1.5
    n_steps = {0: 12000, 1: 4000} if kill else {0: 5000, 1: 5000}  # walker 0 outlives walker 1's restart

    def command(w):
        return [sys.executable, str(script), "bias", str(torsion_cv.path), "--system", "alanine-dipeptide", "--steps",
                str(n_steps[w]), "--pace", str(pace), "--sigma", "0.35", "0.35", "--grid-bin", "200", "200", "--height",
                str(height), "--bias-factor", str(gamma), "--out", str(tmp_path / f"RUN_{w}"), "--platform", "Reference",
                "--traj-stride", "0", "--walkers-dir", str(shared), "--walker-id", str(w), "--walkers-stride", str(stride)]

    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(command(w), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    # both have read hills the other deposited after their own first hill: they run at the same time
    t0 = time.time()
    while not all(_interleaved(tmp_path / f"RUN_{w}" / "checkpoint.npz", w) for w in (0, 1)):
        assert all(p.poll() is None for p in procs) and time.time() - t0 < 120, "the walkers did not run at the same time"
        time.sleep(0.05)
    if kill:
        time.sleep(np.random.default_rng(1).uniform(0.0, 0.3))
        assert procs[1].poll() is None, "walker 1 finished before it could be killed"
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        procs[1] = subprocess.Popen(command(1), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
    assert ("continued from step" in stdout) == kill and "read from other walkers" in stdout

    kt_bias = 300.0 * (gamma - 1.0) * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    felt = {}
    for w, other in ((0, 1), (1, 0)):
        run = tmp_path / f"RUN_{w}"
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "complete" and info["shared_walkers"]["walker_id"] == w
        assert (info["resumed_from_step"] is not None) == (kill and w == 1)
        # the published file is the run's own HILLS, byte for byte: nothing lost or repeated
        assert (shared / f"HILLS.{w}").read_bytes() == (run / "HILLS").read_bytes()
        assert len(_hills_rows(run / "HILLS")) == n_steps[w] // pace
        with np.load(run / "checkpoint.npz") as z:
            rows, values = z["hills"], z["grid_values"]
            ck = json.loads(bytes(z["info"]).decode())
        n_read = ck["shared_walkers"]["read"][str(other)][1]
        assert info["shared_walkers"]["hills_read"] == {str(other): n_read}
        theirs = rows[rows[:, 1] == other]
        assert len(theirs) == n_read > 0
        np.testing.assert_array_equal(theirs[:, 2:5], _hills_rows(shared / f"HILLS.{other}", n_read)[:, :3])
        # replay the checkpoint's hill list in its order: every own height is W0 exp(-V/kT_bias) of
        # the bias then, other walker's hills included
        meta = info["params"]["metadynamics"]
        grid = BiasGrid(meta["grid_min"], meta["grid_max"], meta["grid_bin"], meta["periodic"])
        own_only = grid.copy()
        gain = []
        for r in rows:
            center, sig, h = r[3:5], r[5:7], r[7]
            if r[1] == w:
                v_all = grid.evaluate(center[None])[0][0]
                v_own = own_only.evaluate(center[None])[0][0]
                assert h == pytest.approx(height * math.exp(-v_all / kt_bias), rel=1e-9)
                gain.append(v_all - v_own)
                own_only.add_hill(center, sig, h)
            grid.add_hill(center, sig, h)
        assert np.max(np.abs(grid.values - values)) < 1e-10
        felt[w] = max(gain)
        # PLUMED sums this walker's published hills and the other's, as far as it read them
        part = tmp_path / f"HILLS.{other}.read_by_{w}"
        lines = (shared / f"HILLS.{other}").read_text().splitlines(keepends=True)
        header = [x for x in lines if x.startswith("#")]
        part.write_text("".join(header + [x for x in lines if not x.startswith("#")][:n_read]))
        _assert_sum_hills_is_the_grid(exe, [shared / f"HILLS.{w}", part], meta, run / "bias_grid.dat", tmp_path / f"sum_{w}.dat")
    assert min(felt.values()) > 0.1, felt  # each walker's hills were lowered by the other's bias during the run


def _assert_sum_hills_is_the_grid(exe, hills, meta, grid_file, outfile):
    cmd = [exe, "sum_hills", "--hills", ",".join(str(h) for h in hills), "--outfile", str(outfile),
           "--min", ",".join(repr(x) for x in meta["grid_min"]), "--max", ",".join(repr(x) for x in meta["grid_max"]),
           "--bin", ",".join(str(b) for b in meta["grid_bin"])]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(outfile).parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summed = np.loadtxt(outfile, comments="#")
    d = len(meta["grid_bin"])
    gamma = meta["bias_factor"]
    v_plumed = -summed[:, d] * (gamma - 1.0) / gamma
    ours = np.loadtxt(grid_file, comments="#")
    key = lambda a: np.lexsort([np.round(a[:, k], 9) for k in range(d)])  # noqa: E731
    a, b = ours[key(ours)], summed[key(summed)]
    assert np.max(np.abs(a[:, :d] - b[:, :d])) < 1e-8
    assert np.max(np.abs(a[:, d] - v_plumed[key(summed)])) < 1e-9 * max(1.0, np.abs(a[:, d]).max())
    assert np.abs(a[:, d]).max() > 1.0


# ------------------------------------------------------------------------------------------ restart
_RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import torch
    from gmvae_cv.deploy.loaders import load_cv
    from gmvae_cv.metad.run import run_metadynamics
    from gmvae_cv.features import alanine_backbone_torsions
    from gmvae_cv.systems import AlanineDipeptide
    ala = AlanineDipeptide()
    run_metadynamics(load_cv({cv!r}), sys.argv[1], system=ala.create_system(), topology=ala.topology,
                     positions=ala.positions, n_steps={n_steps}, sigma=[0.35, 0.35], height=1.2, bias_factor=6.0,
                     grid_bin=[200, 200], pace=50, colvar_stride=10, traj_stride=50, checkpoint_interval=200, platform="Reference",
                     walkers={walkers}, seed=4, extra_colvar=alanine_backbone_torsions(transform="raw"))
    """
)


@pytest.mark.parametrize("walkers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_kill_9_and_restart_loses_and_repeats_no_hill(ala, torsion_cv, tmp_path, walkers):
    """SIGKILL a run mid-way, start it again with the same command: outputs equal an uninterrupted run.

    The grid (200 bins per 2 pi, sigma of 11 nodes) is large enough for hills to update the table
    locally, which a restart cannot repeat: the run recomputes the table at every checkpoint.
    (2400 steps finished within half a second of the first checkpoint on a 2-core Intel Xeon VM,
    before the kill: 10 000 steps, killed within 0.2 s.)"""
    n_steps = 10_000
    script = tmp_path / "runner.py"
    script.write_text(_RUNNER.format(root=str(ROOT), cv=str(torsion_cv.path), n_steps=n_steps, walkers=walkers))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "reference"
    run_metadynamics(torsion_cv, ref, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                     n_steps=n_steps, sigma=[0.35, 0.35], height=1.2, bias_factor=6.0, grid_bin=[200, 200], pace=50, colvar_stride=10,
                     traj_stride=50, checkpoint_interval=200, platform="Reference", walkers=walkers, seed=4,
                     extra_colvar=alanine_backbone_torsions(transform="raw"))
    run = tmp_path / "killed"
    rng = np.random.default_rng(walkers)
    proc = subprocess.Popen([sys.executable, str(script), str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (run / "checkpoint.npz").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.2))
    killed_at = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = json.loads(bytes(np.load(run / "checkpoint.npz")["info"]).decode())["step"]
    assert killed_at is not None and killed_at < n_steps, "the run finished before it could be killed"
    sfx = [""] if walkers == 1 else [f".{w}" for w in range(walkers)]
    hills_at_kill = sum(len(np.loadtxt(run / f"HILLS{s}", comments="#", ndmin=2)) for s in sfx)
    assert hills_at_kill >= killed_at // 50 * walkers  # hills past the checkpoint were on disk when killed
    done = subprocess.run([sys.executable, str(script), str(run)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed_from_step"] == killed_at
    for s in sfx:
        assert (run / f"HILLS{s}").read_bytes() == (ref / f"HILLS{s}").read_bytes()
        assert (run / f"COLVAR{s}").read_bytes() == (ref / f"COLVAR{s}").read_bytes()
    trajs = ["traj.dcd"] if walkers == 1 else [f"traj.{w}.dcd" for w in range(walkers)]
    for t in trajs:
        assert (run / t).read_bytes()[:8] == (ref / t).read_bytes()[:8]
        import mdtraj

        a = mdtraj.load_dcd(str(run / t), top=mdtraj.Topology.from_openmm(ala.topology))
        b = mdtraj.load_dcd(str(ref / t), top=mdtraj.Topology.from_openmm(ala.topology))
        assert a.n_frames == b.n_frames == n_steps // 50
        assert np.array_equal(a.xyz, b.xyz)
    n_hills = sum(len(np.loadtxt(run / f"HILLS{s}", comments="#", ndmin=2)) for s in sfx)
    assert n_hills == n_steps // 50 * walkers
    np.testing.assert_array_equal(np.loadtxt(run / "bias_grid.dat", comments="#"), np.loadtxt(ref / "bias_grid.dat", comments="#"))


# ------------------------------------------------------------------------------------------ instability
@pytest.mark.parametrize("heating_limit, seen", [("auto", "kinetic temperature"), (None, "non-finite")])
def test_unstable_run_stops_with_a_clear_error(ala, torsion_cv, tmp_path, heating_limit, seen):
    """Hills far too high and narrow for a 2 fs step heat the dipeptide until it blows up: the run
    stops with SimulationUnstableError (heating first when checked, non-finite values otherwise),
    and run.json says so."""
    out = tmp_path / "run"
    with pytest.raises(SimulationUnstableError) as err:
        run_metadynamics(torsion_cv, out, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                         n_steps=4000, sigma=[0.02, 0.02], height=2000.0, bias_factor=10, pace=20, grid_bin=[600, 600],
                         platform="Reference", seed=1, heating_limit=heating_limit)
    assert "walker 0, step" in str(err.value) and seen in str(err.value)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "unstable" and seen in info["error"]["message"] and 0 < info["error"]["step"] < 4000


def test_heating_limit_is_the_equilibrium_tail_of_the_kinetic_temperature(ala, torsion_cv, tmp_path):
    """'auto': the kinetic temperature exceeds the limit with probability 1e-12 at equilibrium
    (chi-squared, 3N - constraints - 3 degrees of freedom); an unbiased-like run never trips it."""
    from scipy.stats import chi2

    system = ala.create_system()
    dof = 3 * system.getNumParticles() - system.getNumConstraints() - 3
    meta = _meta(torsion_cv)
    assert meta.temperature_limit(system) == pytest.approx(300.0 * chi2.isf(1e-12, dof) / dof)
    assert _meta(torsion_cv, heating_limit=2.5).temperature_limit(system) == pytest.approx(750.0)
    assert _meta(torsion_cv, heating_limit=None).temperature_limit(system) is None
    with pytest.raises(GMVAEInputError, match="'heating_limit' is 0.5, expected 'auto', None or a number > 1"):
        _meta(torsion_cv, heating_limit=0.5)
    # the kinetic temperature of a thermostatted run samples chi-squared: far below the limit
    meta = _meta(torsion_cv, heating_limit=2.0)
    meta.add_force(system, ala.positions)
    integ = openmm.LangevinMiddleIntegrator(300, 1.0, 0.002)
    integ.setRandomNumberSeed(3)
    sim = app.Simulation(ala.topology, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(ala.positions)
    sim.context.setVelocitiesToTemperature(300, 3)
    temps = []
    for _ in range(40):
        meta.step(sim, 100)
        ke = sim.context.getState(getEnergy=True).getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        temps.append(2 * ke / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)))
    assert 240 < np.mean(temps) < 360 and max(temps) < 600


# ------------------------------------------------------------------------------------------ bad input
def _meta(cv, **kw):
    args = dict(temperature=300, height=1.2, sigma=[0.35, 0.35], bias_factor=6, pace=100)
    args.update(kw)
    return WellTemperedMetadynamics(cv, **args)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(temperature=0.0), "'temperature' is 0.0, expected a number > 0"),
        (dict(temperature=-5 * unit.kelvin), "'temperature'"),
        (dict(sigma=[0.35]), "'sigma' has 1 value(s), expected 2"),
        (dict(sigma=[0.3, 0.3, 0.3]), "'sigma' has 3 value(s), expected 2"),
        (dict(sigma=[0.3, -0.1]), "expected widths > 0"),
        (dict(pace=0), "'pace' is 0, expected an integer >= 1"),
        (dict(bias_factor=1.0), "'bias_factor' is 1.0, expected a number > 1"),
        (dict(bias_factor=0.5), "expected a number > 1"),
        (dict(height=0), "'height'"),
        (dict(components=[0, 2]), "expected distinct indices below D = 2"),
        (dict(components=[0, 1, 0, 1]), "expected 1 to 3 components"),
        (dict(kernel="box"), "'kernel' is 'box'"),
        (dict(grid_bin=[60]), "'grid_bin' has 1 value(s), expected 2"),
        (dict(grid_min=[-1.0, -1.0], grid_max=[1.0, 1.0]), "periodic on"),
    ],
)
def test_bad_parameters_are_refused_with_clear_errors(torsion_cv, kw, message):
    with pytest.raises(GMVAEInputError) as err:
        _meta(torsion_cv, **kw)
    assert message in str(err.value)


def test_grid_must_cover_the_cv_and_hills_near_the_edge_warn(ala, gmvae_cv):
    s0 = gmvae_cv(ala.positions)
    with pytest.raises(GMVAEInputError, match="no 'cv_range'"):
        _meta(gmvae_cv, sigma=[0.1, 0.1])
    meta = _meta(gmvae_cv, sigma=[0.1, 0.1], grid_min=s0 + 0.5, grid_max=s0 + 2.0, grid_bin=[50, 50])
    with pytest.raises(GMVAEInputError, match=r"CV component 0 of the starting configuration is .* outside the grid"):
        meta.add_force(ala.create_system(), ala.positions)
    meta = _meta(gmvae_cv, sigma=[0.1, 0.1], grid_min=s0 - 0.2, grid_max=s0 + 2.0, grid_bin=[50, 50])
    with pytest.warns(BiasEdgeWarning, match="within 3.54 sigma of the grid min"):
        meta.deposit([s0], 100, 0.2)
    assert meta.edge_events[0]["component"] == 0 and not meta.edge_events[0]["outside"]
    with pytest.warns(BiasEdgeWarning, match="outside the grid"):
        meta.deposit([s0 - 1.0], 200, 0.4)


def test_cv_file_checks(ala, tmp_path, torsion_cv):
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(GMVAEInputError, match="no 'gmvae_cv.json' marker"):
        load_cv(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(GMVAEInputError, match="cannot load as a TorchScript module"):
        load_cv(junk)
    with pytest.raises(GMVAEInputError, match="model_openmm.pt"):
        load_cv(tmp_path)
    exp = tmp_path / "EXP"
    exp.mkdir()
    shutil.copy(torsion_cv.path, exp / "model_openmm.pt")
    (exp / "cv.json").write_text(json.dumps({"note": "exported"}))
    cv = load_cv(exp)
    assert cv.n_cvs == 2 and cv.meta["cv_json"] == {"note": "exported"} and cv.sha256 == torsion_cv.sha256
    # atom count of the system
    bigger = ala.create_system()
    bigger.addParticle(1.0)
    with pytest.raises(GMVAEInputError, match="'n_atoms' is 22, the system has 23 atoms"):
        _meta(cv).add_force(bigger, np.vstack([ala.positions, np.zeros((1, 3))]))
    # atoms of the features recorded with labels that this topology does not have
    spec = alanine_backbone_torsions(transform="raw")
    spec.atom_labels = {k: "GLY9-" + v.split("-")[1] for k, v in spec.atom_labels.items()}
    other = feature_cv(spec, path=tmp_path / "relabelled.pt")
    with pytest.raises(GMVAEInputError, match="expects 'GLY9-"):
        run_metadynamics(other, tmp_path / "r", system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                         n_steps=100, sigma=[0.3, 0.3], pace=50)


def test_existing_run_directory_is_never_overwritten_silently(ala, torsion_cv, tmp_path):
    kw = dict(topology=ala.topology, positions=ala.positions, sigma=[0.35, 0.35], pace=50, platform="Reference", traj_stride=0)
    run = tmp_path / "run"
    res = run_metadynamics(torsion_cv, run, system=ala.create_system(), n_steps=100, **kw)
    assert res.n_hills == 2 and res.resumed_from is None
    hills = (run / "HILLS").read_text()
    with pytest.raises(GMVAEInputError, match="other parameters .*pace: 50 -> 100"):
        run_metadynamics(torsion_cv, run, system=ala.create_system(), n_steps=200, **{**kw, "pace": 100})
    other = ala.create_system()
    other.setParticleMass(0, 2.0)
    with pytest.raises(GMVAEInputError, match="made with another system"):
        run_metadynamics(torsion_cv, run, system=other, n_steps=200, **kw)
    assert (run / "HILLS").read_text() == hills
    # same parameters, more steps: the run continues
    res = run_metadynamics(torsion_cv, run, system=ala.create_system(), n_steps=200, **kw)
    assert res.resumed_from == 100 and res.n_hills == 4
    assert (run / "HILLS").read_text().startswith(hills)
    # a foreign file in the directory
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(GMVAEInputError, match="not a gmvae-cv bias run"):
        run_metadynamics(torsion_cv, mine, system=ala.create_system(), n_steps=100, **kw)
    with pytest.raises(GMVAEInputError, match="did not write"):
        run_metadynamics(torsion_cv, mine, system=ala.create_system(), n_steps=100, overwrite=True, **kw)
    # a checkpoint copied from another run of another system
    res = run_metadynamics(torsion_cv, tmp_path / "b", system=other, n_steps=100, **kw)
    shutil.copy(tmp_path / "b" / "checkpoint.npz", run / "checkpoint.npz")
    with pytest.raises(GMVAEInputError, match="checkpoint was written for another system"):
        run_metadynamics(torsion_cv, run, system=ala.create_system(), n_steps=300, **kw)


def test_cli_bias_runs_and_continues(torsion_cv, tmp_path, capsys):
    from gmvae_cv.cli import main

    out = tmp_path / "RUN"
    argv = ["bias", str(torsion_cv.path), "--system", "alanine-dipeptide", "--steps", "200", "--pace", "50",
            "--sigma", "0.35", "0.35", "--out", str(out), "--platform", "Reference", "--traj-stride", "100"]
    assert main(argv) == 0
    assert "4 hills" in capsys.readouterr().out
    fields = (out / "COLVAR").read_text().splitlines()[0].split()[2:]
    assert fields == ["time", "cv.0", "cv.1", "metad.bias", "metad.rct", "metad.rbias", "phi", "psi"]
    colvar = np.loadtxt(out / "COLVAR", comments="#")
    assert np.allclose(colvar[:, 1:3], colvar[:, 6:8])  # the torsion CV is phi, psi
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["params"]["metadynamics"]["pace"] == 50
    assert info["platform"]["name"] == "Reference" and info["versions"]["openmm"].startswith("8.5")
    argv[argv.index("--steps") + 1] = "300"
    assert main(argv) == 0
    assert "continued from step 200" in capsys.readouterr().out
    other = ["bias", str(torsion_cv.path), "--system", "alanine-dipeptide", "--ns", "0.0006", "--pace", "100",
             "--sigma", "0.35", "0.35", "--out", str(out), "--platform", "Reference", "--traj-stride", "100"]
    assert main(other) == 2
    assert "other parameters" in capsys.readouterr().err
    assert main(["bias", str(torsion_cv.path), "--steps", "10", "--sigma", "0.3", "0.3", "--out", str(tmp_path / "x")]) == 2
    assert "no system" in capsys.readouterr().err


def test_cli_unstable_run_exits_3_and_heating_limit_values(torsion_cv, tmp_path, capsys):
    from gmvae_cv.cli import main

    base = ["bias", str(torsion_cv.path), "--system", "alanine-dipeptide", "--steps", "4000", "--pace", "20",
            "--sigma", "0.02", "0.02", "--height", "2000", "--grid-bin", "600", "600", "--platform", "Reference",
            "--seed", "1", "--traj-stride", "0"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 3
    err = capsys.readouterr().err
    assert "the simulation became unstable" in err and "kinetic temperature" in err
    assert main(base + ["--out", str(tmp_path / "b"), "--heating-limit", "off"]) == 3
    assert "non-finite" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "c"), "--heating-limit", "hot"]) == 2
    assert "'--heating-limit' is 'hot', expected 'auto', 'off' or a number > 1" in capsys.readouterr().err


def test_periodic_system_box_choice_and_route(ala, gmvae_cv, tmp_path):
    """In a periodic box, a CV inside one molecule needs no minimum image, so route 'auto' takes the
    native kernel; a CV given the box falls back to autograd with a warning. Both give the same forces."""
    from gmvae_cv.metad.engine import BiasRouteWarning

    box = np.eye(3) * 3.0
    top_box = app.Modeller(ala.topology, ala.positions * unit.nanometer).topology
    top_box.setPeriodicBoxVectors(box * unit.nanometer)
    ff = app.ForceField("amber14-all.xml")
    s0 = gmvae_cv(ala.positions)
    forces = {}
    for name, kw in (("one_molecule", {"topology": top_box}), ("with_box", {"use_box": True})):
        system = ff.createSystem(top_box, nonbondedMethod=app.CutoffPeriodic, nonbondedCutoff=1.0 * unit.nanometer)
        meta = _meta(gmvae_cv, sigma=[0.2, 0.2], grid_min=s0 - 2, grid_max=s0 + 2, grid_bin=[40, 40],
                     table_path=tmp_path / f"{name}.f64")
        meta.grid.add_hill(s0 + 0.1, [0.3, 0.3], 2.0)
        meta._write_table()
        if name == "with_box":
            with pytest.warns(BiasRouteWarning, match="route='autograd'"):
                meta.add_force(system, ala.positions, **kw)
        else:
            meta.add_force(system, ala.positions, **kw)
        info = meta.force_info
        assert info["route"] == ("native" if name == "one_molecule" else "autograd")
        assert info["use_box"] == (name == "with_box")
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ala.positions + 1.4)  # shifted across the box edge: OpenMM does not wrap
        meta.sync([ctx])
        group = meta._force_groups[id(system)]
        forces[name] = ctx.getState(getForces=True, groups={group}).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
    assert np.abs(forces["one_molecule"]).max() > 1.0
    assert np.max(np.abs(forces["one_molecule"] - forces["with_box"])) < 1e-9


def test_docstring_examples_run():
    import doctest

    import gmvae_cv.metad.engine
    import gmvae_cv.metad.grid
    import gmvae_cv.deploy.loaders

    for module in (gmvae_cv.metad.engine, gmvae_cv.metad.grid, gmvae_cv.deploy.loaders):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 1 and result.failed == 0, module.__name__


def test_cli_bias_on_a_users_system_files(ala, torsion_cv, tmp_path, capsys):
    """--pdb with --forcefield, and --system-xml with --pdb, give the same run as the built-in system."""
    from gmvae_cv.cli import main

    pdb = str(ala.pdb_path)
    xml = tmp_path / "system.xml"
    xml.write_text(openmm.XmlSerializer.serialize(ala.create_system()))
    common = [str(torsion_cv.path), "--steps", "100", "--pace", "50", "--sigma", "0.35", "0.35", "--platform", "Reference",
              "--traj-stride", "0"]
    assert main(["bias", *common, "--system", "alanine-dipeptide", "--out", str(tmp_path / "builtin")]) == 0
    assert main(["bias", *common, "--pdb", pdb, "--forcefield", "amber14-all.xml", "--out", str(tmp_path / "ff")]) == 0
    assert main(["bias", *common, "--pdb", pdb, "--system-xml", str(xml), "--out", str(tmp_path / "xml")]) == 0
    hills = [np.loadtxt(tmp_path / d / "HILLS", comments="#") for d in ("builtin", "ff", "xml")]
    assert np.array_equal(hills[0], hills[1]) and np.array_equal(hills[0], hills[2])
    info = json.loads((tmp_path / "ff" / "run.json").read_text())
    assert info["system"]["forcefield"] == ["amber14-all.xml"] and info["system"]["nonbonded"] == "NoCutoff"
    assert main(["bias", *common, "--pdb", pdb, "--out", str(tmp_path / "none")]) == 2
    assert "either a System XML" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ walls
def test_walls_energy_and_force_against_the_closed_form_and_finite_differences():
    """PLUMED's UPPER/LOWER_WALLS (EXP=2): zero inside [min + margin, max - margin], kappa (s - bound)^2
    beyond; defaults margin 4 sigma, kappa 2 kT / sigma^2; periodic components get none. The
    TorchScript module the force adds gives the same energy, and autograd the same gradient."""
    from gmvae_cv.metad.grid_module import WallBias
    from gmvae_cv.metad.parameters import BiasedVariable, gas_constant
    from gmvae_cv.metad.walls import resolve_walls

    kt = gas_constant() * 300.0
    variables = [BiasedVariable(0, -1.0, 2.0, 0.1, 60, False), BiasedVariable(2, -math.pi, math.pi, 0.3, 60, True),
                 BiasedVariable(1, 0.0, 1.0, 0.025, 60, False)]
    walls = resolve_walls(variables, kt)
    assert walls.axes == (0, 2) and walls.components == (0, 1)
    assert walls.lower == pytest.approx((-0.6, 0.1)) and walls.upper == pytest.approx((1.6, 0.9))
    assert walls.kappa == pytest.approx((2 * kt / 0.1**2, 2 * kt / 0.025**2))
    assert float(walls.energy([1.6 + 0.1, 0.0, 0.1 - 0.025])) == pytest.approx(2 * kt + 2 * kt)  # 2 kT a sigma out
    assert float(walls.energy([2.0, 0.0, 0.5])) == pytest.approx(32 * kt)  # 32 kT at the grid edge
    rng = np.random.default_rng(0)
    inside = np.column_stack([rng.uniform(-0.6, 1.6, 50), rng.uniform(-5, 5, 50), rng.uniform(0.1, 0.9, 50)])
    assert np.all(walls.energy(inside) == 0.0) and np.all(walls.gradient(inside) == 0.0)
    pts = np.column_stack([rng.uniform(-1.5, 2.5, 200), rng.uniform(-5, 5, 200), rng.uniform(-0.3, 1.3, 200)])
    k0, k1 = walls.kappa
    closed = (k0 * (np.maximum(0, pts[:, 0] - 1.6) ** 2 + np.maximum(0, -0.6 - pts[:, 0]) ** 2)
              + k1 * (np.maximum(0, pts[:, 2] - 0.9) ** 2 + np.maximum(0, 0.1 - pts[:, 2]) ** 2))
    np.testing.assert_allclose(walls.energy(pts), closed, rtol=1e-14, atol=1e-10)
    h = 1e-6
    fd = np.stack([(walls.energy(pts + h * e) - walls.energy(pts - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(walls.gradient(pts), fd, rtol=1e-6, atol=1e-3)
    module = torch.jit.script(WallBias.from_walls(walls))
    for p in pts[:20]:
        x = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        e = module(x)
        (g,) = torch.autograd.grad(e, x)
        assert float(e.detach()) == pytest.approx(float(walls.energy(p)), rel=1e-14, abs=1e-12)
        np.testing.assert_allclose(g.numpy(), walls.gradient(p), rtol=1e-13, atol=1e-10)
    assert resolve_walls(variables, kt, walls=False) is None
    assert resolve_walls([variables[1]], kt) is None
    custom = resolve_walls(variables, kt, margin=[0.5, 0.0, 0.1], kappa=[7.0, 1.0, 3.0])
    assert custom.lower == pytest.approx((-0.5, 0.1)) and custom.kappa == (7.0, 3.0)
    with pytest.raises(GMVAEInputError, match="'wall_margin' of component 1 is 0.5: the walls' bounds"):
        resolve_walls(variables, kt, margin=[0.1, 0.0, 0.5])
    with pytest.raises(GMVAEInputError, match=r"'wall_kappa' is \[1.0, 1.0, -2.0\], expected finite values > 0"):
        resolve_walls(variables, kt, kappa=[1.0, 1.0, -2.0])
    with pytest.raises(GMVAEInputError, match="'wall_margin' has 2 value"):
        resolve_walls(variables, kt, margin=[0.1, 0.1])


@pytest.mark.parametrize("route", ["compiled", "autograd", "native"])
def test_fused_force_with_walls_is_the_force_without_plus_the_wall_force(ala, gmvae_cv, tmp_path, route):
    """On the Reference platform, a configuration beyond the upper walls of both components (inside
    the grid): energy and forces of the fused force with walls = without walls + kappa (s - u)^2 and
    -2 kappa (s - u) ds/dx (autograd through the CV module), for each route (the native kernel has
    the walls too)."""
    s0 = gmvae_cv(ala.positions)
    sigma = np.array([0.1, 0.1])
    grid = dict(grid_min=s0 - 1.0, grid_max=s0 + 0.3, grid_bin=[60, 60])  # upper bounds at s0 - 0.1
    out = {}
    for walls in (True, False):
        meta = _meta(gmvae_cv, sigma=sigma, route=route, walls=walls, table_path=tmp_path / f"{walls}.f64", **grid)
        meta.grid.add_hill(s0 - 0.05, [0.3, 0.3], 2.0)
        meta._write_table()
        system = ala.create_system(constraints=None)
        meta.add_force(system, ala.positions)
        assert meta.force_info["route"] == route and meta.force_info["walls"] == walls
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ala.positions)
        meta.sync([ctx])
        state = ctx.getState(getEnergy=True, getForces=True, groups={meta._force_groups[id(system)]})
        out[walls] = (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                      state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer), meta)
    meta = out[True][2]
    kappa = np.asarray(meta.walls.kappa)
    upper = np.asarray(meta.walls.upper)
    assert kappa == pytest.approx(2 * meta.stability.temperature * 0.0083144626 / sigma**2, rel=1e-6)
    assert np.allclose(upper, s0 - 0.1)
    x = torch.tensor(ala.positions, dtype=torch.float64, requires_grad=True)
    s = gmvae_cv.module(x, None).to(torch.float64)
    assert np.allclose(s.detach().numpy(), s0)
    excess = s.detach().numpy() - upper
    assert np.all(excess > 0.05)
    grads = [torch.autograd.grad(s[a], x, retain_graph=True)[0].numpy() for a in range(2)]
    wall_energy = float(np.sum(kappa * excess**2))
    wall_force = -sum(2 * kappa[a] * excess[a] * grads[a] for a in range(2))
    assert meta.wall_energy(s0) == pytest.approx(wall_energy, rel=1e-6)
    assert out[True][0] - out[False][0] == pytest.approx(wall_energy, rel=1e-5)
    assert np.abs(wall_force).max() > 20.0 and abs(out[False][0]) > 0.1
    scale = np.abs(out[True][1]).max()
    np.testing.assert_allclose(out[True][1], out[False][1] + wall_force, rtol=0, atol=1e-12 * scale)


def test_walled_run_writes_walls_bias_records_the_walls_and_continues_bit_identically(ala, gmvae_cv, tmp_path):
    """A run on a grid tight around the dipeptide's GMVAE CV: the walker reaches the walls, COLVAR's
    walls.bias is their energy at its CV columns, run.json records them, and a run continued from its
    checkpoint to more steps writes the same bytes as an uninterrupted one."""
    from gmvae_cv.analysis import read_plumed
    from gmvae_cv.metad.walls import Walls

    s0 = gmvae_cv(ala.positions)
    kw = dict(system=ala.create_system(), topology=ala.topology, positions=ala.positions, sigma=[0.05, 0.05], height=1.0,
              bias_factor=6, pace=50, grid_min=s0 - 0.25, grid_max=s0 + 0.25, grid_bin=[50, 50], colvar_stride=10,
              traj_stride=0, checkpoint_interval=500, platform="Reference", seed=2)
    with pytest.warns(BiasEdgeWarning):
        run_metadynamics(gmvae_cv, tmp_path / "whole", n_steps=1000, **kw)
        run_metadynamics(gmvae_cv, tmp_path / "split", n_steps=500, **kw)
        res = run_metadynamics(gmvae_cv, tmp_path / "split", n_steps=1000, **kw)
    assert res.resumed_from == 500
    for name in ("COLVAR", "HILLS"):
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    info = json.loads((tmp_path / "whole" / "run.json").read_text())
    rec = info["params"]["walls"]
    assert rec["field"] == "walls.bias" and rec["upper"] == pytest.approx(list(s0 + 0.05))
    assert info["params"]["metadynamics"]["walls"] is True
    assert info["params"]["metadynamics"]["wall_margin"] == pytest.approx([0.2, 0.2])
    colvar = read_plumed(tmp_path / "whole" / "COLVAR")
    walls = Walls(axes=(0, 1), components=(0, 1), lower=tuple(rec["lower"]), upper=tuple(rec["upper"]),
                  kappa=tuple(rec["kappa"]), margin=tuple(rec["margin"]))
    s = np.column_stack([colvar["cv.0"], colvar["cv.1"]])
    np.testing.assert_allclose(colvar["walls.bias"], walls.energy(s), rtol=1e-9, atol=1e-9)
    assert (colvar["walls.bias"] > 0).sum() >= 3  # the walker felt the walls
    # without walls: no column, and the record says so
    run_metadynamics(gmvae_cv, tmp_path / "off", n_steps=100, walls=False, **kw)
    off = json.loads((tmp_path / "off" / "run.json").read_text())["params"]
    assert off["walls"] is None and off["metadynamics"]["walls"] is False
    assert "walls.bias" not in read_plumed(tmp_path / "off" / "COLVAR").fields
