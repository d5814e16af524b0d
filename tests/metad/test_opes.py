"""Tests of OPES through the fused force (gmvae_cv.metad.opes, run_opes, ``gmvae-cv bias --method opes``).

Each test measures against an independent answer: ``openmm-opes``' own OPES on native phi/psi
(its ``CustomCVForce`` route, driven by its own ``step``), an uninterrupted run for the kill -9
restart, a NumPy histogram for the reweighted free energy, and the PLUMED input of the export.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmtorch")
openmm_opes = pytest.importorskip("openmm_opes")
from openmm import app, unit  # noqa: E402

from gmvae_cv._core.errors import GMVAEInputError  # noqa: E402
from gmvae_cv.analysis.plumed_files import read_plumed  # noqa: E402
from gmvae_cv.features import alanine_backbone_torsions  # noqa: E402
from gmvae_cv.metad.opes import OPESBias  # noqa: E402
from gmvae_cv.metad.run import run_metadynamics, run_opes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PHI_ATOMS = (4, 6, 8, 14)
PSI_ATOMS = (6, 8, 14, 16)
KB = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def _torsion(atoms):
    f = openmm.CustomTorsionForce("theta")
    f.addTorsion(*atoms)
    return f


def _simulation(ala, system, temp, seed):
    integ = openmm.LangevinMiddleIntegrator(temp, 1.0, 0.002)
    integ.setRandomNumberSeed(seed)
    sim = app.Simulation(ala.topology, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(ala.positions)
    sim.context.setVelocitiesToTemperature(temp, seed)
    return sim


def _bias_energy(sim, group, pos):
    sim.context.setPositions(pos)
    st = sim.context.getState(getForces=True, getEnergy=True, groups={group})
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


# ------------------------------------------------------------------------------------------ correctness
@pytest.mark.parametrize("explore", [False, True])
def test_opes_bias_equals_openmm_opes_on_native_torsions(ala, torsion_cv, explore):
    """phi/psi through the fused TorchForce vs openmm-opes' OPES on CustomTorsionForce phi, psi.

    openmm-opes' own simulation drives both: at every deposition our engine gets the same
    positions; after the same trajectory the bias on the grid, the bias energy and forces in a
    context, rct and the kernel count agree (1e-6 relative asked, about 1e-15 seen). Then both
    engines run their own dynamics from the same state and build the same bias.
    """
    temp, barrier, pace, bins, sigma = 300.0, 30.0, 50, 60, 0.3
    sys_a = ala.create_system()
    variables = [app.BiasVariable(_torsion(a), -math.pi, math.pi, sigma, True, bins + 1) for a in (PHI_ATOMS, PSI_ATOMS)]
    native = openmm_opes.OPES(sys_a, variables, temp, barrier, pace, None, exploreMode=explore)
    sim_a = _simulation(ala, sys_a, temp, 11)
    group_a = sys_a.getForce(sys_a.getNumForces() - 1).getForceGroup()

    ours = OPESBias(torsion_cv, temperature=temp, barrier=barrier, pace=pace, sigma=[sigma, sigma],
                    grid_bin=[bins, bins], explore=explore)
    sys_b = ala.create_system()
    ours.add_force(sys_b, ala.positions)
    sim_b = _simulation(ala, sys_b, temp, 11)
    group_b = ours._force_groups[id(sys_b)]
    assert ours.bias_factor == pytest.approx(barrier / (KB * temp), rel=1e-12)

    worst, max_de, max_df, max_f = 0.0, 0.0, 0.0, 0.0
    for _ in range(25):
        native.step(sim_a, pace)
        state = sim_a.context.getState(getPositions=True)
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        ours.deposit([torsion_cv(pos)], sim_a.currentStep, state.getTime().value_in_unit(unit.picosecond))
        ours.sync([sim_b.context])
        theirs = native.getBias().value_in_unit(unit.kilojoule_per_mole).T  # openmm-opes: last CV slowest
        worst = max(worst, float(np.max(np.abs(ours.bias_on_grid() - theirs)) / np.max(np.abs(theirs))))
        for shift in (0.0, 0.01):
            x = pos + shift * np.sin(np.arange(66.0)).reshape(22, 3)
            ea, fa = _bias_energy(sim_a, group_a, x)
            eb, fb = _bias_energy(sim_b, group_b, x)
            max_de = max(max_de, abs(ea - eb) / abs(ea - barrier))
            max_df = max(max_df, float(np.abs(fa - fb).max()))
            max_f = max(max_f, float(np.abs(fa).max()))
        sim_a.context.setPositions(pos)  # the probes must not change the trajectory
        assert ours.n_kernels() == native.getNumKernels()
        assert ours.rct() == pytest.approx(native.getCt("running").value_in_unit(unit.kilojoule_per_mole), rel=1e-6)
    assert ours.n_kernels() > 3 and max_f > 1.0  # compression ran, and the bias pushes
    assert worst < 1e-6
    assert max_de < 1e-6
    assert max_df < 1e-4

    # both engines drive their own identical simulations
    sys_c = ala.create_system()
    native_c = openmm_opes.OPES(sys_c, [app.BiasVariable(_torsion(a), -math.pi, math.pi, sigma, True, bins + 1)
                                        for a in (PHI_ATOMS, PSI_ATOMS)], temp, barrier, pace, None, exploreMode=explore)
    sim_c = _simulation(ala, sys_c, temp, 5)
    native_c.step(sim_c, 8 * pace)  # before the next context: Reference keeps one RNG per process
    ours_d = OPESBias(torsion_cv, temperature=temp, barrier=barrier, pace=pace, sigma=[sigma, sigma],
                      grid_bin=[bins, bins], explore=explore)
    sys_d = ala.create_system()
    ours_d.add_force(sys_d, ala.positions)
    sim_d = _simulation(ala, sys_d, temp, 5)
    ours_d.step(sim_d, 8 * pace)
    assert ours_d.n_deposited == 8
    theirs = native_c.getBias().value_in_unit(unit.kilojoule_per_mole).T
    assert np.max(np.abs(ours_d.bias_on_grid() - theirs)) / np.max(np.abs(theirs)) < 1e-6


# ------------------------------------------------------------------------------------------ runs
_COMMON = dict(sigma=[0.3, 0.3], barrier=30.0, pace=50, grid_bin=[60, 60], colvar_stride=10, traj_stride=50,
               checkpoint_interval=200, platform="Reference", seed=4)

_RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from gmvae_cv.deploy.loaders import load_cv
    from gmvae_cv.metad.run import run_opes
    from gmvae_cv.features import alanine_backbone_torsions
    from gmvae_cv.systems import AlanineDipeptide
    ala = AlanineDipeptide()
    run_opes(load_cv({cv!r}), sys.argv[1], system=ala.create_system(), topology=ala.topology, positions=ala.positions,
             n_steps={n_steps}, extra_colvar=alanine_backbone_torsions(transform="raw"), **{common!r})
    """
)


@pytest.fixture(scope="module")
def reference_run(ala, torsion_cv, tmp_path_factory):
    out = tmp_path_factory.mktemp("opes") / "reference"
    res = run_opes(torsion_cv, out, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                   n_steps=1600, extra_colvar=alanine_backbone_torsions(transform="raw"), **_COMMON)
    return out, res


def test_run_writes_plumed_colvar_and_kernels(reference_run, torsion_cv):
    out, res = reference_run
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and res.n_hills == 1600 // 50
    assert info["params"]["opes"]["barrier"] == 30.0 and info["params"]["opes"]["method"] == "opes"
    colvar = read_plumed(out / "COLVAR")
    assert {"opes.bias", "opes.rct", "phi", "psi"} <= set(colvar.fields)
    # the torsion CV is phi, psi itself; V = (1 - 1/gamma) kT log(P/Z + eps) >= kT' log(eps) = -barrier, the
    # flat bias every row up to the first deposition (step 50: the row there is written before it) feels
    assert np.max(np.abs(np.angle(np.exp(1j * (colvar["cv.0"] - colvar["phi"]))))) < 1e-9
    assert np.array_equal(colvar["opes.bias"][:5], np.full(5, -30.0)) and colvar["opes.bias"][5] > -29.0
    assert colvar["opes.bias"].min() >= -30.0 - 1e-9
    kernels = np.loadtxt(out / "KERNELS", comments="#", ndmin=2)
    assert kernels.shape == (32, 7)
    head = (out / "KERNELS").read_text().splitlines()[:12]
    assert head[0] == "#! FIELDS time cv.0 cv.1 sigma_cv.0 sigma_cv.1 height logweight"
    assert "#! SET action OPES_METAD_kernels" in head and f"#! SET cv_sha256 {torsion_cv.sha256}" in head
    # logweight = beta V at deposition; the first kernel meets the flat floor -barrier
    assert kernels[0, -1] == pytest.approx(-30.0 / (KB * 300.0), rel=1e-12)
    assert np.all(np.diff(kernels[:, 0]) > 0)


@pytest.mark.slow  # two fresh processes: 86 s on the shared 2-core machine
def test_kill_9_and_restart_equals_an_uninterrupted_run(reference_run, torsion_cv, tmp_path):
    """SIGKILL an OPES run mid-way and start it again: COLVAR, KERNELS, trajectory and bias grid equal
    those of the uninterrupted run byte for byte (the estimator is rebuilt from its state at
    every checkpoint, as a restart rebuilds it)."""
    ref, _ = reference_run
    n_steps = 1600
    script = tmp_path / "runner.py"
    script.write_text(_RUNNER.format(root=str(ROOT), cv=str(torsion_cv.path), n_steps=n_steps, common=_COMMON))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (run / "checkpoint.npz").exists() and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    time.sleep(np.random.default_rng(7).uniform(0.0, 0.3))
    killed_at = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = json.loads(bytes(np.load(run / "checkpoint.npz")["info"]).decode())["step"]
    assert killed_at is not None and killed_at < n_steps, "the run finished before it could be killed"
    done = subprocess.run([sys.executable, str(script), str(run)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed_from_step"] == killed_at
    for name in ("KERNELS", "COLVAR", "bias_grid.dat"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
    assert (run / "traj.dcd").stat().st_size == (ref / "traj.dcd").stat().st_size


def test_fes_weights_opes_reweights_the_run(reference_run, tmp_path, capsys):
    """``gmvae-cv fes --weights opes`` equals a histogram of phi weighted by exp(opes.bias / kT)."""
    from gmvae_cv.cli import main

    out, _ = reference_run
    table = tmp_path / "fes_phi.dat"
    assert main(["fes", str(out / "COLVAR"), "--cv", "phi", "--weights", "opes", "--bins", "12", "--blocks", "2",
                 "--out", str(table)]) == 0
    fes = json.loads(table.with_suffix(".json").read_text())
    colvar = read_plumed(out / "COLVAR")
    kt = KB * 300.0
    w = np.exp((colvar["opes.bias"] - colvar["opes.bias"].max()) / kt)
    hist, _ = np.histogram(colvar["phi"], bins=12, range=(-math.pi, math.pi), weights=w)
    with np.errstate(divide="ignore"):
        f_ref = -kt * np.log(hist / hist.sum())
    f = np.array([np.nan if v is None else v for v in np.ravel(fes["free_energy"]["values"])], dtype=float)
    seen = np.isfinite(f_ref) & np.isfinite(f)
    assert seen.sum() >= 4
    d = (f - f_ref)[seen]
    assert np.max(np.abs(d - d.mean())) < 1e-6


def test_cli_bias_method_opes_uses_the_exported_plumed_opes_parameters(ala, tmp_path, capsys):
    """``gmvae-cv bias EXP --method opes`` takes SIGMA, BARRIER and PACE from the export: the ones in
    the PLUMED OPES_METAD input the export wrote (plumed_opes.dat)."""
    from gmvae_cv.cli import main

    exp = ROOT / "export" / "alanine_dipeptide"
    dat = (exp / "plumed_opes.dat").read_text()
    keys = {k: v for k, v in re.findall(r"^\s+(SIGMA|BARRIER|PACE|TEMP)=(\S+)", dat, flags=re.M)}
    run = tmp_path / "run"
    assert main(["bias", str(exp), "--method", "opes", "--system", "alanine-dipeptide", "--out", str(run),
                 "--steps", keys["PACE"], "--platform", "Reference", "--traj-stride", "0"]) == 0
    assert "1 kernels" in capsys.readouterr().out
    opes = json.loads((run / "run.json").read_text())["params"]["opes"]
    assert opes["sigma"] == pytest.approx([float(x) for x in keys["SIGMA"].split(",")], rel=1e-12)
    assert opes["barrier"] == float(keys["BARRIER"]) and opes["pace"] == int(keys["PACE"])
    assert opes["temperature"] == float(keys["TEMP"])
    assert len(np.loadtxt(run / "KERNELS", comments="#", ndmin=2)) == 1


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(barrier=0.0), "'barrier' is 0.0, expected a number > 0"),
        (dict(barrier=-5.0), "'barrier' is -5.0"),
        (dict(barrier=1.0), "expected more than kT"),
        (dict(pace=0), "'pace' is 0, expected an integer >= 1"),
        (dict(sigma=[0.3]), "'sigma' has 1 value(s), expected 2"),
        (dict(compression_threshold=-1.0), "'compression_threshold'"),
    ],
)
def test_bad_opes_parameters_are_refused(torsion_cv, kw, message):
    args = dict(temperature=300.0, barrier=30.0, pace=50, sigma=[0.3, 0.3])
    args.update(kw)
    with pytest.raises(GMVAEInputError) as err:
        OPESBias(torsion_cv, **args)
    assert message in str(err.value)


def test_parameters_of_another_method_are_named(ala, torsion_cv, tmp_path, capsys):
    from gmvae_cv.cli import main

    common = dict(system=ala.create_system(), topology=ala.topology, positions=ala.positions, n_steps=100)
    with pytest.raises(GMVAEInputError, match="'bias_factor' is a parameter of method 'metad', not of 'opes'"):
        run_opes(torsion_cv, tmp_path / "a", sigma=[0.3, 0.3], bias_factor=6.0, **common)
    with pytest.raises(GMVAEInputError, match="'barrier' is a parameter of method 'opes'"):
        run_metadynamics(torsion_cv, tmp_path / "b", sigma=[0.3, 0.3], barrier=30.0, **common)
    with pytest.raises(GMVAEInputError, match="walkers_dir"):
        run_opes(torsion_cv, tmp_path / "c", sigma=[0.3, 0.3], walkers_dir=tmp_path / "w", walker_id=0, **common)
    rc = main(["bias", str(torsion_cv.path), "--method", "opes", "--bias-factor", "8", "--system", "alanine-dipeptide",
               "--out", str(tmp_path / "d"), "--steps", "100", "--sigma", "0.3", "0.3"])
    assert rc != 0 and "'--bias-factor' is a metadynamics parameter" in capsys.readouterr().err
    rc = main(["bias", str(torsion_cv.path), "--barrier", "30", "--system", "alanine-dipeptide",
               "--out", str(tmp_path / "e"), "--steps", "100", "--sigma", "0.3", "0.3"])
    assert rc != 0 and "'--barrier' is an OPES parameter" in capsys.readouterr().err


def test_kernels_file_of_another_cv_is_refused(reference_run, tmp_path, ala, torsion_cv):
    """A run directory whose KERNELS belongs to another CV (its cv_sha256 or fields differ) is not continued."""
    import shutil

    ref, _ = reference_run
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    text = (run / "KERNELS").read_text()
    (run / "KERNELS").write_text(text.replace(torsion_cv.sha256, "0" * 64))
    kw = dict(system=ala.create_system(), topology=ala.topology, positions=ala.positions, n_steps=1800,
              extra_colvar=alanine_backbone_torsions(transform="raw"), **_COMMON)
    with pytest.raises(GMVAEInputError, match=r"KERNELS: '#! SET cv_sha256' is '0+', expected .* another CV file"):
        run_opes(torsion_cv, run, **kw)
    (run / "KERNELS").write_text(text.replace("sigma_cv.1", "sigma_cv.9"))
    with pytest.raises(GMVAEInputError, match=r"KERNELS: '#! FIELDS' is .*a KERNELS file of another CV"):
        run_opes(torsion_cv, run, **kw)


def test_walkers_in_one_process_each_deposit_their_kernels(ala, torsion_cv, tmp_path):
    """Two lock-step walkers: each writes its own KERNELS.<w>; the bias holds both walkers' kernels,
    equal to openmm-opes' estimator fed the same kernels (centres and the bias each walker felt)."""
    out = tmp_path / "w2"
    res = run_opes(torsion_cv, out, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                   n_steps=400, walkers=2, **dict(_COMMON, traj_stride=0))
    assert res.n_hills == 16
    rows = [np.loadtxt(out / f"KERNELS.{w}", comments="#", ndmin=2) for w in (0, 1)]
    assert all(r.shape == (8, 7) for r in rows)
    native = openmm_opes.OPES(openmm.System(), [app.BiasVariable(_torsion(PHI_ATOMS), -math.pi, math.pi, 0.3, True, 61),
                                                app.BiasVariable(_torsion(PSI_ATOMS), -math.pi, math.pi, 0.3, True, 61)],
                              300.0, 30.0, 50, None)
    kt = KB * 300.0
    for k in range(8):
        for r in rows:
            native.addKernel(r[k, 1:3], r[k, -1] * kt)
    ours = OPESBias(torsion_cv, temperature=300.0, barrier=30.0, pace=50, sigma=[0.3, 0.3], grid_bin=[60, 60])
    with np.load(out / "checkpoint.npz") as z:
        ours.load_state_dict({k: z[k] for k in z.files if k.startswith("opes.") or k in ("n_deposited", "version")})
    theirs = native.getBias().value_in_unit(unit.kilojoule_per_mole).T
    assert np.max(np.abs(ours.bias_on_grid() - theirs)) / np.max(np.abs(theirs)) < 1e-6


def test_docstring_examples_run():
    import doctest

    import gmvae_cv.metad.kernels
    import gmvae_cv.metad.opes
    import gmvae_cv.metad.settings

    for module in (gmvae_cv.metad.opes, gmvae_cv.metad.kernels, gmvae_cv.metad.settings):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 1 and result.failed == 0, module.__name__


def test_explore_run_records_its_method_and_unweighted_kernels(ala, torsion_cv, tmp_path):
    """OPES_METAD_EXPLORE: the KERNELS header names it, its kernels are unweighted (logweight 0,
    PLUMED's height prod(sigma0 / sigma)), and run.json records the method."""
    out = tmp_path / "explore"
    run_opes(torsion_cv, out, system=ala.create_system(), topology=ala.topology, positions=ala.positions, n_steps=200,
             explore=True, **dict(_COMMON, traj_stride=0))
    params = json.loads((out / "run.json").read_text())["params"]["opes"]
    assert params["method"] == "opes-explore"
    assert "#! SET action OPES_METAD_EXPLORE_kernels" in (out / "KERNELS").read_text()
    rows = np.loadtxt(out / "KERNELS", comments="#", ndmin=2)
    assert rows.shape == (4, 7) and np.all(rows[:, -1] == 0.0)
    # openmm-opes reads sigma as the unbiased width; the explore estimate (of the sampled density) starts
    # sqrt(gamma) wider and shrinks with the effective sample size
    sigma0 = 0.3 * math.sqrt(params["bias_factor"])
    assert np.all(np.diff(rows[:, 3]) < 0) and rows[0, 3] < sigma0
    np.testing.assert_allclose(rows[:, 5], np.prod(sigma0 / rows[:, 3:5], axis=1), rtol=1e-12)
