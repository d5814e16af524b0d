"""Tests of gmvae_cv.systems.alanine against OpenMM, mdtraj and the force field's own parameters."""

from __future__ import annotations

import json

import mdtraj as md
import numpy as np
import openmm
import pytest
from openmm import unit

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.cli import main
from gmvae_cv.features import phi_psi
from gmvae_cv.systems import (
    BASIN_RADIUS_DEG,
    C7AX_CENTER_DEG,
    C7EQ_CENTER_DEG,
    AlanineDipeptide,
    alanine_basin,
    alanine_dipeptide_pdb,
)
from gmvae_cv.systems._alanine_build import build_alanine_dipeptide, internal_coordinate_positions

KJ = unit.kilojoule_per_mole
KJ_NM = unit.kilojoule_per_mole / unit.nanometer


def _context(system, positions):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    return ctx


def _energy_forces(ctx):
    st = ctx.getState(getEnergy=True, getForces=True)
    return st.getPotentialEnergy().value_in_unit(KJ), st.getForces(asNumpy=True).value_in_unit(KJ_NM)


@pytest.fixture(scope="module")
def ala():
    return AlanineDipeptide()


@pytest.fixture(scope="module")
def run_1000(tmp_path_factory, ala):
    out = tmp_path_factory.mktemp("ala1000")
    return ala.simulate(1000, 10, out, seed=0)


# ------------------------------------------------------------------ the bundled structure
def test_bundled_topology(ala):
    top = ala.topology
    assert top.getNumAtoms() == 22 and top.getNumBonds() == 21
    assert [r.name for r in top.residues()] == ["ACE", "ALA", "NME"]
    elements = [a.element.symbol for a in top.atoms()]
    assert {e: elements.count(e) for e in set(elements)} == {"C": 6, "H": 12, "N": 2, "O": 2}
    mdtop = md.load_topology(str(alanine_dipeptide_pdb()))
    assert mdtop.n_atoms == 22 and mdtop.n_bonds == 21  # mdtraj reads the same bond graph
    assert md.load(str(alanine_dipeptide_pdb())).unitcell_vectors is None  # vacuum: no CRYST1


def test_bundled_bond_lengths_match_amber14_equilibrium(ala):
    system = ala.create_system(constraints=None)
    bonds = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    assert bonds.getNumBonds() == 21
    x = ala.positions
    for b in range(bonds.getNumBonds()):
        i, j, r0, _ = bonds.getBondParameters(b)
        r = np.linalg.norm(x[i] - x[j])
        assert 0.095 < r < 0.16
        assert abs(r - r0.value_in_unit(unit.nanometer)) < 0.005, (i, j, r, r0)


def test_bundled_structure_is_an_amber14_minimum(ala):
    system = ala.create_system(constraints=None)
    ctx = _context(system, ala.positions)
    energy, forces = _energy_forces(ctx)
    assert np.isfinite(energy) and abs(energy - (-91.27)) < 0.05  # the value in the PDB REMARK
    max_force = np.linalg.norm(forces, axis=1).max()
    # the PDB stores 1e-4 nm: rounding alone leaves forces of tens of kJ/mol/nm on stiff bonds
    assert max_force < 150.0
    openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 0)
    e_min, _ = _energy_forces(ctx)
    assert energy - e_min < 0.05  # nothing left to minimise beyond the rounding
    # the unminimised internal-coordinate build, for contrast, is far from a minimum
    e_raw, f_raw = _energy_forces(_context(system, internal_coordinate_positions()))
    assert e_raw - energy > 10 and np.linalg.norm(f_raw, axis=1).max() > 5 * max_force


def test_bundled_phi_psi_and_chirality(ala):
    traj = ala.to_mdtraj()
    phi = np.degrees(md.compute_phi(traj)[1][0, 0])
    psi = np.degrees(md.compute_psi(traj)[1][0, 0])
    assert abs(phi - (-75.0)) < 0.5 and abs(psi - 54.0) < 0.5  # as stated in the module docstring
    np.testing.assert_allclose(phi_psi(traj, unit="deg")[0], [phi, psi], atol=1e-4)
    assert alanine_basin(*np.radians([[phi], [psi]])).tolist() == [0]
    # L-alanine: chiral volume (N-CA).((C-CA)x(CB-CA)) > 0 (CORN rule)
    x = ala.positions
    n, ca, c, cb = x[6], x[8], x[14], x[10]
    assert np.dot(n - ca, np.cross(c - ca, cb - ca)) > 0.002  # nm^3, about +2.5 A^3


def test_builder_reproduces_bundled_file_and_c7ax_minimum(ala):
    top, pos, energy = build_alanine_dipeptide()
    assert np.abs(pos - ala.positions).max() < 5e-4  # PDB rounding is 5e-5 nm; minimiser path is deterministic
    assert abs(energy - (-91.274)) < 0.01
    # the C7ax minimum quoted in the docstring, and its core set
    _, pos_ax, e_ax = build_alanine_dipeptide(75.0, -60.0)
    t = md.Trajectory(pos_ax[None].astype(np.float32), ala.mdtraj_topology)
    phi, psi = phi_psi(t, unit="deg")[0]
    assert abs(phi - 61.2) < 1.0 and abs(psi - (-41.2)) < 1.0
    assert abs(e_ax - (-85.04)) < 0.05 and e_ax > energy  # C7eq is the global minimum for L-Ala
    assert alanine_basin(np.radians([phi]), np.radians([psi])).tolist() == [1]


def test_create_system(ala):
    system = ala.create_system()
    assert system.getNumParticles() == 22
    assert system.getNumConstraints() == 12  # every X-H bond
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    assert not system.usesPeriodicBoundaryConditions()


# ------------------------------------------------------------------ basins
def test_alanine_basin_core_sets():
    r = BASIN_RADIUS_DEG
    pts = np.array(
        [
            C7EQ_CENTER_DEG,
            C7AX_CENTER_DEG,
            (C7EQ_CENTER_DEG[0] + r - 1, C7EQ_CENTER_DEG[1]),  # just inside
            (C7EQ_CENTER_DEG[0] + r + 1, C7EQ_CENTER_DEG[1]),  # just outside
            (C7AX_CENTER_DEG[0], C7AX_CENTER_DEG[1] - r + 1),
            (-150.0, 160.0),  # C5/PII: neither core
            (180.0, 180.0),
        ]
    )
    labels = alanine_basin(np.radians(pts[:, 0]), np.radians(pts[:, 1]))
    assert labels.tolist() == [0, 1, 0, -1, 1, -1, -1]
    # distances are periodic: psi = 55 - 360 degrees is the C7eq centre
    assert alanine_basin(np.radians([-75.0]), np.radians([55.0 - 360.0])).tolist() == [0]
    with pytest.raises(GMVAEInputError, match="expected radians"):
        alanine_basin(np.array([-75.0]), np.array([55.0]))


# ------------------------------------------------------------------ dynamics
def test_simulate_1000_steps_outputs_and_temperature(run_1000, ala):
    run = run_1000
    for p in (run.trajectory, run.topology, run.metadata, run.state_log):
        assert p.is_file()
    assert not list(run.trajectory.parent.glob(".*tmp"))  # no temporary files left
    meta = json.loads(run.metadata.read_text())
    assert meta["platform"]["name"] == run.platform in ("Reference", "CPU")
    assert set(meta["platform"]["probe_steps_per_s"]) <= {"Reference", "CPU"}
    assert meta["platform"]["probe_steps_per_s"][run.platform] == max(meta["platform"]["probe_steps_per_s"].values())
    assert meta["temperature_K"] == 300.0 and meta["timestep_ps"] == 0.002 and meta["friction_per_ps"] == 1.0
    assert meta["n_frames"] == 100 and meta["performance"]["steps_per_s"] > 0
    assert meta["versions"]["openmm"] == openmm.__version__
    log = np.loadtxt(run.state_log, delimiter=",", skiprows=1)
    assert log.shape == (100, 5) and log[-1, 0] == 1000
    # loose bound: 2 ps of 22 atoms (51 degrees of freedom) after 10 ps of equilibration
    assert 225.0 < log[:, 4].mean() < 375.0
    assert abs(run.temperature_mean - log[:, 4].mean()) < 1e-3  # state.csv has 4 decimals
    traj = md.load(str(run.trajectory), top=str(run.topology))
    assert traj.n_frames == 100 and np.isfinite(traj.xyz).all()
    # HBonds constraints hold in every frame, at the force field's lengths
    system = ala.create_system()
    for c in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(c)
        r = np.linalg.norm(traj.xyz[:, i] - traj.xyz[:, j], axis=1)
        assert np.abs(r - d.value_in_unit(unit.nanometer)).max() < 1e-4
    # the logged potential energy is the energy of the saved frame
    ctx = _context(system, traj.xyz[0].astype(np.float64))
    for f in (0, 50, 99):
        ctx.setPositions(traj.xyz[f].astype(np.float64))
        assert abs(_energy_forces(ctx)[0] - log[f, 2]) < 0.05


def test_simulate_is_reproducible_with_a_seed_on_reference(tmp_path, ala):
    kw = dict(platform="Reference", equilibration_steps=0)
    a = ala.simulate(200, 50, tmp_path / "a", seed=5, **kw)
    b = ala.simulate(200, 50, tmp_path / "b", seed=5, **kw)
    c = ala.simulate(200, 50, tmp_path / "c", seed=6, **kw)
    xa, xb, xc = (md.load(str(r.trajectory), top=str(r.topology)).xyz for r in (a, b, c))
    assert np.array_equal(xa, xb) and not np.allclose(xa, xc)
    meta = json.loads(a.metadata.read_text())
    assert meta["platform"] == {"name": "Reference", "chosen_by": "user", "probe_steps_per_s": {}}
    assert meta["openmm_seed"] == 6


def test_simulate_bad_inputs(tmp_path, ala):
    with pytest.raises(GMVAEInputError, match="'n_steps' is 105, expected a multiple of report_interval = 10"):
        ala.simulate(105, 10, tmp_path)
    with pytest.raises(GMVAEInputError, match="'temperature' is -1"):
        ala.simulate(100, 10, tmp_path, temperature=-1)
    with pytest.raises(GMVAEInputError, match="'platform' is 'Fast'"):
        ala.simulate(100, 10, tmp_path, platform="Fast")
    run = ala.simulate(100, 10, tmp_path / "q", temperature=310 * unit.kelvin, timestep=1 * unit.femtosecond,
                       platform="Reference", equilibration_steps=0)
    meta = json.loads(run.metadata.read_text())
    assert meta["temperature_K"] == pytest.approx(310) and meta["timestep_ps"] == pytest.approx(0.001)
    pdb = tmp_path / "small.pdb"
    t = md.load(str(alanine_dipeptide_pdb())).atom_slice(range(21))
    t.save_pdb(str(pdb))
    with pytest.raises(GMVAEInputError, match="small.pdb: has 21 atoms, expected 22"):
        AlanineDipeptide(pdb)


def test_cli_simulate_alanine(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "alanine-dipeptide", "--steps", "200", "--stride", "20", "--out", str(out),
               "--equilibration", "0", "--seed", "2"])
    assert rc == 0
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["n_frames"] == 10 and meta["seed"] == 2 and meta["equilibration_steps"] == 0
    assert md.load(str(out / "traj.dcd"), top=str(out / "topology.pdb")).n_frames == 10
    assert main(["simulate", "alanine-dipeptide", "--steps", "200", "--out", str(out), "--walkers", "2"]) == 2
    assert "'--walkers' is 2" in capsys.readouterr().err
    # the toy systems still work
    rc = main(["simulate", "four-well", "--steps", "100", "--stride", "10", "--out", str(tmp_path / "fw.npy")])
    assert rc == 0 and np.load(tmp_path / "fw.npy").shape[0] == 11


def test_docstring_examples_run():
    import doctest

    import gmvae_cv.systems.alanine as module

    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0
