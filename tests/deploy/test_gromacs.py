"""The exported GMVAE CV in a real PLUMED-patched GROMACS (``gmx mdrun -plumed``), opt-in.

Needs ``GMX`` pointing at a GROMACS patched with PLUMED and ``PLUMED_KERNEL`` at a PLUMED kernel
with libtorch, e.g.

    bash scripts/build_plumed_libtorch.sh
    bash scripts/build_gromacs_plumed.sh
    source external/gromacs-plumed/env.sh

and skipped, with the reason, otherwise. What is run: ``gmvae-cv plumed-input`` for the inputs of
``examples/gromacs_plumed/{vacuum,water}``, ``gmx grompp`` on their ``md.mdp`` (shortened, seeds
fixed, xtc precision raised), ``gmx mdrun -plumed`` with the exported METAD and OPES inputs; the CV
PLUMED printed is compared with the trained Python model on the frames GROMACS wrote, the bias is
checked to act (energy conservation of GROMACS' energy + the PLUMED bias in NVE with the hills of
the METAD run), and ``gmvae-cv fes`` reweights the run.

The tests at the top (run-folder checks) need no GROMACS and run in the default suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.deploy import read_cv_json
from gmvae_cv.features import FeatureSpec
from gmvae_cv.deploy.gromacs_run import ALLOCATOR_ERRORS, check_gromacs_run, is_mpi_build, kernel_has_libtorch, run_mdrun
from plumed_tool import python_cv, read_colvar

ROOT = Path(__file__).resolve().parents[2]
REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
INPUTS = ROOT / "examples" / "gromacs_plumed"
KT_300 = 0.008314462618 * 300.0


def _plain_kernel() -> str | None:
    """The PLUMED kernel of the test environment (the hillclimber wheel's, without libtorch)."""
    try:
        import plumed
    except ImportError:
        return None
    k = Path(plumed.__file__).parent / "_lib" / "lib" / "libplumedKernel.so"
    return str(k) if k.is_file() else None


def _gromacs() -> tuple[str | None, str]:
    gmx = os.environ.get("GMX")
    if not gmx:
        return None, "GMX is not set (build with scripts/build_gromacs_plumed.sh, then source external/gromacs-plumed/env.sh)"
    try:
        res = subprocess.run([gmx, "-quiet", "mdrun", "-h"], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        return None, f"GMX={gmx} does not run ({exc})"
    if "-plumed" not in res.stdout + res.stderr:
        return None, f"GMX={gmx} is not patched with PLUMED (no mdrun -plumed)"
    kernel = os.environ.get("PLUMED_KERNEL")
    if not kernel or not Path(kernel).is_file():
        return None, "PLUMED_KERNEL is not set to a file (source external/gromacs-plumed/env.sh)"
    ok, detail = kernel_has_libtorch(kernel)
    if not ok:
        return None, f"PLUMED_KERNEL={kernel}: {detail}"
    return gmx, ""


GMX, WHY = _gromacs()
needs_gromacs = pytest.mark.skipif(GMX is None, reason=WHY)


# ------------------------------------------------------------------ without GROMACS
def _run_folder(tmp_path: Path, system: str = "vacuum") -> Path:
    from gmvae_cv.deploy.plumed_topology import write_plumed_for_topology

    run = tmp_path / system
    write_plumed_for_topology(REF_EXPORT, INPUTS / system / "conf.gro", run)
    for f in ("md.mdp", "topol.top", "conf.gro"):
        shutil.copy(INPUTS / system / f, run / f)
    return run


def test_preflight_missing_ptc(tmp_path):
    run = _run_folder(tmp_path)
    (run / "model_clusters.ptc").unlink()
    with pytest.raises(GMVAEInputError, match=r"model_clusters.ptc: file not found; plumed.dat line \d+ loads it"):
        check_gromacs_run(run, "plumed.dat", gmx="gmx", kernel="unused")
    (run / "model_plumed.ptc").unlink()
    with pytest.raises(GMVAEInputError, match=r"model_plumed.ptc: file not found.*\| .*model_clusters.ptc: file not found"):
        check_gromacs_run(run, "plumed.dat", gmx="gmx", kernel="unused")


@pytest.mark.skipif(_plain_kernel() is None, reason="no PLUMED kernel without libtorch here (the plumed Python package)")
def test_preflight_kernel_without_libtorch(tmp_path, monkeypatch):
    run = _run_folder(tmp_path)
    monkeypatch.setenv("PLUMED_KERNEL", _plain_kernel())
    with pytest.raises(GMVAEInputError, match=r"PLUMED_KERNEL=.*libplumedKernel.so: it is not linked to libtorch.*PYTORCH_MODEL"):
        check_gromacs_run(run, "plumed.dat", gmx="gmx")
    monkeypatch.delenv("PLUMED_KERNEL")
    with pytest.raises(GMVAEInputError, match=r"PLUMED_KERNEL is not set, and plumed.dat uses PYTORCH_MODEL"):
        check_gromacs_run(run, "plumed.dat", gmx="gmx")
    monkeypatch.setenv("PLUMED_KERNEL", str(tmp_path / "nope.so"))
    with pytest.raises(GMVAEInputError, match=r"PLUMED_KERNEL=.*nope.so: file not found"):
        check_gromacs_run(run, "plumed.dat", gmx="gmx")


def _unpatched_gmx() -> str | None:
    """A GROMACS without PLUMED, e.g. Debian's (apt-get install gromacs)."""
    for c in ("/usr/bin/gmx", "/usr/bin/gmx_d"):
        if Path(c).is_file():
            res = subprocess.run([c, "-quiet", "mdrun", "-h"], capture_output=True, text=True, timeout=120)
            if res.returncode == 0 and "-plumed" not in res.stdout + res.stderr:
                return c
    return None


def _any_gmx() -> str | None:
    """Any GROMACS (patched or not): for the checks of the inputs themselves."""
    for c in (os.environ.get("GMX"), shutil.which("gmx"), "/usr/bin/gmx"):
        if c and Path(c).is_file():
            return c
    return None


@pytest.mark.skipif(_any_gmx() is None, reason="no GROMACS at all (GMX unset, no gmx on PATH)")
@pytest.mark.parametrize("system", ["vacuum", "water"])
def test_gromacs_inputs_reproduce_the_openmm_system(tmp_path, system):
    """examples/gromacs_plumed/<system>: grompp takes md.mdp as is (no -maxwarn), and the
    GROMACS potential energy and forces on conf.gro equal OpenMM's for the project's system
    (amber14 from the OpenMM force field files; flexible water, no constraints, for the forces)."""
    import openmm
    from openmm import app, unit

    gmx = _any_gmx()
    run = tmp_path / system
    run.mkdir()
    for f in ("md.mdp", "conf.gro", "topol.top"):
        shutil.copy(INPUTS / system / f, run / f)
    subprocess.run([gmx, "-quiet", "grompp", "-f", "md.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "run.tpr"],
                   cwd=run, check=True, capture_output=True, text=True, timeout=300)
    _mdp(run / "md.mdp", run / "f.mdp", integrator="md", nsteps=0, nstfout=1, gen_vel="no", constraints="none",
         tcoupl="no", define="-DFLEXIBLE")
    text = "\n".join(l for l in (run / "f.mdp").read_text().splitlines() if not re.match(r"^(tc-grps|tau-t|ref-t)\s*=", l))
    (run / "f.mdp").write_text(text + "\n")
    # flexible TIP3P with 2 fs: grompp warns about the O-H period; irrelevant for a 0-step force evaluation
    subprocess.run([gmx, "-quiet", "grompp", "-f", "f.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "f.tpr", "-maxwarn", "1"],
                   cwd=run, check=True, capture_output=True, text=True, timeout=300)
    subprocess.run([gmx, "-quiet", "mdrun", "-s", "f.tpr", "-deffnm", "f", *_one_rank(gmx), "-ntomp", "1"], cwd=run, check=True,
                   capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    subprocess.run([gmx, "-quiet", "traj", "-f", "f.trr", "-s", "f.tpr", "-of", "f.xvg", "-xvg", "none"], cwd=run, check=True,
                   input="0\n", capture_output=True, text=True, timeout=300)
    subprocess.run([gmx, "-quiet", "energy", "-f", "f.edr", "-o", "e.xvg", "-xvg", "none"], cwd=run, check=True,
                   input="Potential\n\n", capture_output=True, text=True, timeout=300)
    e_gmx = float(np.loadtxt(run / "e.xvg", ndmin=2)[0, 1])
    f_gmx = np.loadtxt(run / "f.xvg")[1:].reshape(-1, 3)
    traj = md.load(str(run / "conf.gro"))
    if system == "vacuum":
        from gmvae_cv.systems import AlanineDipeptide

        omm = AlanineDipeptide().create_system(constraints=None)
    else:
        top = traj.topology.to_openmm()
        top.setPeriodicBoxVectors(traj.unitcell_vectors[0])
        ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
        omm = ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=None,
                              rigidWater=False, ewaldErrorTolerance=1e-5)
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(traj.xyz[0].astype(np.float64))
    state = ctx.getState(getForces=True, getEnergy=True)
    e_omm = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    f_omm = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    rel = np.linalg.norm(f_gmx - f_omm) / np.linalg.norm(f_omm)
    if system == "vacuum":  # cut-offs beyond the molecule: the same function, GROMACS in single precision
        assert abs(e_gmx - e_omm) < 1e-3 and rel < 1e-4, (e_gmx, e_omm, rel)
    else:  # PME at ewald-rtol 1e-5 in both, GROMACS in single precision
        assert abs(e_gmx - e_omm) < 1e-4 * abs(e_omm) and rel < 2e-3, (e_gmx, e_omm, rel)
        assert np.linalg.norm(f_gmx[:22] - f_omm[:22]) / np.linalg.norm(f_omm[:22]) < 5e-4


@pytest.mark.skipif(_unpatched_gmx() is None, reason="no GROMACS without PLUMED installed (Debian: apt-get install gromacs)")
def test_preflight_gromacs_without_plumed(tmp_path):
    run = _run_folder(tmp_path)
    with pytest.raises(GMVAEInputError, match=r"GMX=/usr/bin/gmx.*: 'gmx mdrun' has no -plumed option, this GROMACS is not patched"):
        check_gromacs_run(run, "plumed.dat", gmx=_unpatched_gmx(), kernel=_plain_kernel() or "none.so")


# ------------------------------------------------------------------ with GROMACS
def _one_rank(gmx: str) -> list[str]:
    """``-ntmpi 1`` for a thread-MPI build (PLUMED needs one rank); an MPI build runs one rank as it is and refuses ``-ntmpi``."""
    return [] if is_mpi_build(gmx) else ["-ntmpi", "1"]


def _mdp(src: Path, dst: Path, **overrides) -> None:
    """``src`` with some parameters replaced (and the rest unchanged)."""
    lines = src.read_text().splitlines()
    keys = {k.replace("_", "-"): v for k, v in overrides.items()}
    out = []
    for line in lines:
        key = line.split("=")[0].strip() if "=" in line and not line.lstrip().startswith(";") else None
        if key in keys:
            out.append(f"{key:<24s} = {keys.pop(key)}")
        else:
            out.append(line)
    out += [f"{k:<24s} = {v}" for k, v in keys.items()]
    dst.write_text("\n".join(out) + "\n")


def _gmx(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([GMX, "-quiet", *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _grompp(run: Path, mdp: str = "md.mdp", conf: str = "conf.gro", tpr: str = "run.tpr") -> None:
    _gmx(["grompp", "-f", mdp, "-c", conf, "-p", "topol.top", "-o", tpr], run)


def _python_model():
    from gmvae_cv.learn.train import load_run

    return load_run(REF_EXPORT / "run").model


def _spec_on(conf: Path) -> FeatureSpec:
    from gmvae_cv.features.atom_mapping import map_spec_atoms, remap_spec

    spec = FeatureSpec.from_dict(read_cv_json(REF_EXPORT)["feature_spec"])
    return remap_spec(spec, map_spec_atoms(spec, conf))


def _frames_at_colvar_times(run: Path, xtc: str, col: dict) -> tuple[md.Trajectory, np.ndarray]:
    traj = md.load(str(run / xtc), top=str(run / "conf.gro"))
    t_xtc = np.round(traj.time, 4)
    t_col = np.round(col["time"], 4)
    idx = {t: i for i, t in enumerate(t_xtc)}
    rows = np.array([k for k, t in enumerate(t_col) if t in idx])
    assert len(rows) >= 5, (t_xtc[:5], t_col[:5])
    return traj[[idx[t] for t in t_col[rows]]], rows


@pytest.fixture(scope="module")
def vacuum_metad(tmp_path_factory):
    """10 ps of METAD on the GMVAE CV in vacuum (the exported plumed.dat for vacuum/conf.gro).

    The xtc is written with compressed-x-precision 1e7 (1e-7 nm): with GROMACS' default (1e-3 nm)
    the CV of the xtc frames differs from the CV of the positions PLUMED saw by ~1e-2; at 1e6 by
    2.5e-5, at 1e7 by 2.7e-6 (measured against the trr of the same run, water system)."""
    run = _run_folder(tmp_path_factory.mktemp("gmx"), "vacuum")
    _mdp(INPUTS / "vacuum" / "md.mdp", run / "md.mdp", nsteps=5000, ld_seed=11, gen_seed=11,
         compressed_x_precision=10000000)
    _grompp(run)
    res = run_mdrun(run, "run.tpr", "plumed.dat", ntomp=1, deffnm="md", extra=["-c", "confout.gro"])
    return run, res


@needs_gromacs
def test_cv_in_gromacs_equals_the_python_model(vacuum_metad):
    """The CV and cluster probabilities PLUMED printed in COLVAR during mdrun equal the trained
    Python model (float64) on the xtc frames GROMACS wrote at the same times, to 1e-5."""
    run, res = vacuum_metad
    col = read_colvar(run / "COLVAR")
    assert len(col["time"]) == 11  # steps 0, 500, ..., 5000
    traj, rows = _frames_at_colvar_times(run, "md.xtc", col)
    x = _spec_on(run / "conf.gro").compute(traj)
    ref, _ = python_cv(_python_model(), x)
    got = np.stack([col["cv.node-0"][rows], col["cv.node-1"][rows]], axis=1)
    assert np.max(np.abs(got - ref)) < 1e-5, np.abs(got - ref).max()
    cl_ref, _ = python_cv(_python_model(), x, "clusters")
    cl = np.stack([col[f"clusters.node-{i}"][rows] for i in range(cl_ref.shape[1])], axis=1)
    assert np.max(np.abs(cl - cl_ref)) < 1e-5
    log = (run / "md.log").read_text()
    assert "PLUMED" in log and "LibTorch" in log  # PYTORCH_MODEL loaded in the kernel of PLUMED_KERNEL


@needs_gromacs
def test_mdrun_exits_cleanly(vacuum_metad):
    """Exit status 0, no allocator error at exit (PLUMED #1164: munmap_chunk(): invalid pointer)."""
    run, res = vacuum_metad
    out = res.stdout + res.stderr
    assert res.returncode == 0 and not [e for e in ALLOCATOR_ERRORS if e in out]
    assert "Finished mdrun" in (run / "md.log").read_text()


@needs_gromacs
def test_metad_deposits_hills_and_bias_matches_them(vacuum_metad):
    from gmvae_cv.analysis.hills import Hills

    run, _ = vacuum_metad
    hills = Hills.from_file(run / "HILLS")
    assert 10 <= len(hills.heights) <= 11 and np.all(hills.heights > 0)
    assert hills.heights[0] == pytest.approx(1.2, rel=1e-6)
    col = read_colvar(run / "COLVAR")
    s = np.c_[col["cv.node-0"], col["cv.node-1"]]
    exact = hills.bias_at_times(s, col["time"])
    # PLUMED interpolates its bias on the METAD grid; the hills summed exactly agree to grid precision
    assert np.max(np.abs(exact - col["metad.bias"])) < 5e-3 * hills.heights.max()  # 1.3e-4 in plumed driver on the export's frames
    # the bias acted: the walker met earlier hills (10 ps, a hill per ps: in the first real run here 6 of 11
    # COLVAR rows felt some, at most 1.31 kJ/mol); a PLUMED that deposits but never applies reads 0 everywhere
    assert col["metad.bias"].max() > 0.1 * hills.heights[0]


@needs_gromacs
def test_bias_forces_act_energy_conservation(vacuum_metad):
    """NVE from the end of the METAD run with the bias of its hills frozen (HEIGHT=0, RESTART):
    GROMACS' total energy alone is not conserved, GROMACS' total energy plus the PLUMED bias is.
    This holds only if GROMACS applies PLUMED's forces, -d V(cv(features(x)))/dx, through
    PYTORCH_MODEL's derivatives."""
    run, _ = vacuum_metad
    nve = run / "nve"
    nve.mkdir()
    for f in ("model_plumed.ptc", "model_clusters.ptc", "topol.top", "HILLS"):
        shutil.copy(run / f, nve / f)
    shutil.copy(run / "confout.gro", nve / "conf.gro")
    text = (run / "plumed.dat").read_text()
    text = re.sub(r"HEIGHT=\S+", "HEIGHT=0", text)
    text = re.sub(r"\bPACE=\S+", "PACE=100000000", text)
    text = text.replace("  CALC_RCT\n", "  RESTART=YES\n")
    text = re.sub(r"PRINT ARG=\S+ STRIDE=\d+ FILE=COLVAR", "PRINT ARG=cv.*,metad.bias STRIDE=10 FILE=COLVAR FMT=%.8f", text)
    (nve / "plumed.dat").write_text(text)
    _mdp(INPUTS / "vacuum" / "md.mdp", nve / "md.mdp", integrator="md", dt=0.0005, nsteps=4000, tcoupl="no",
         gen_vel="no", continuation="yes", nstenergy=10, nstcalcenergy=10, nstxout_compressed=0, constraints="h-bonds",
         lincs_order=8, lincs_iter=2)
    _gmx(["grompp", "-f", "md.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "nve.tpr"], nve)
    run_mdrun(nve, "nve.tpr", "plumed.dat", ntomp=1, deffnm="nve")
    _gmx(["energy", "-f", "nve.edr", "-o", "energy.xvg"], nve, stdin="Total-Energy\n\n")
    e = np.array([[float(v) for v in l.split()[:2]] for l in (nve / "energy.xvg").read_text().splitlines() if l and l[0] not in "#@"])
    col = read_colvar(nve / "COLVAR")
    t_e = {round(t, 4): v for t, v in e}
    # from 0.1 ps on: leap-frog's first energies (continuing from the sd run's velocities) are transient
    both = np.array([(t_e[round(t, 4)], b) for t, b in zip(col["time"], col["metad.bias"]) if round(t, 4) in t_e and t > 0.1])
    assert len(both) > 300
    etot, bias = both[:, 0], both[:, 1]
    assert np.std(bias) > 0.3  # the frozen bias varies along the trajectory (kJ/mol)
    assert np.std(etot + bias) < 0.2 * np.std(bias), (np.std(etot), np.std(bias), np.std(etot + bias))
    assert np.std(etot) > 0.5 * np.std(bias)


@needs_gromacs
def test_two_walkers_in_separate_mdruns_share_one_bias(tmp_path):
    """Multiple-walkers METAD with the thread-MPI build: two ``gmx mdrun`` processes in one folder, with
    ``walker_0.dat`` / ``walker_1.dat`` of ``gmvae-cv plumed-input --walkers 2``, share the bias through
    ``HILLS.0`` / ``HILLS.1`` (PLUMED's WALKERS_DIR; ``-multidir`` would need an MPI build of GROMACS and
    PLUMED). At every COLVAR row of walker 0, the bias PLUMED applied equals its own hills so far plus the
    first n of walker 1's hills (n grows with time: the processes run side by side, so n depends on the
    wall clock, not on the simulation time), and walker 1's hills contribute at some row."""
    from gmvae_cv.analysis.hills import Hills
    from gmvae_cv.deploy.plumed_topology import write_plumed_for_topology

    run = tmp_path / "walkers"
    write_plumed_for_topology(REF_EXPORT, INPUTS / "vacuum" / "conf.gro", run, n_walkers=2)
    for f in ("topol.top", "conf.gro"):
        shutil.copy(INPUTS / "vacuum" / f, run / f)
    for w in (0, 1):  # one start structure, two velocity seeds: the walkers meet each other's hills
        _mdp(INPUTS / "vacuum" / "md.mdp", run / f"md{w}.mdp", nsteps=5000, ld_seed=21 + w, gen_seed=21 + w)
        _gmx(["grompp", "-f", f"md{w}.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", f"walker{w}.tpr",
              "-po", f"mdout{w}.mdp"], run)
    procs = [subprocess.Popen([GMX, "-quiet", "mdrun", "-s", f"walker{w}.tpr", "-deffnm", f"walker{w}", *_one_rank(GMX),
                               "-ntomp", "1", "-plumed", f"walker_{w}.dat"], cwd=run, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for w in (0, 1)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    h0, h1 = Hills.from_file(run / "HILLS.0"), Hills.from_file(run / "HILLS.1")
    assert h0.n_hills >= 9 and h1.n_hills >= 9
    col = read_colvar(run / "COLVAR.0")
    s = np.c_[col["cv.node-0"], col["cv.node-1"]]
    rest = col["metad.bias"] - h0.bias_at_times(s, col["time"])
    other = np.stack([h1.bias(s, n_hills=n) if n else np.zeros(len(s)) for n in range(h1.n_hills + 1)])  # (n, rows)
    best = np.argmin(np.abs(other - rest[None, :]), axis=0)
    tol = 5e-3 * h0.heights.max()  # PLUMED's grid interpolation, as in the single-walker test
    assert np.max(np.abs(other[best, np.arange(len(s))] - rest)) < tol, (rest, best)
    assert np.all(np.diff(best) >= 0) or np.allclose(other[best, np.arange(len(s))], other[np.maximum.accumulate(best), np.arange(len(s))], atol=tol)
    assert np.max(other[best, np.arange(len(s))]) > 0.1 * h1.heights[0], "walker 1's hills never reached walker 0"


GMX_MPI = os.environ.get("GMX_MPI")
needs_mpi_gromacs = pytest.mark.skipif(
    GMX is None or not GMX_MPI or shutil.which("mpirun") is None,
    reason="needs GMX_MPI (scripts/build_gromacs_plumed.sh --mpi with a PLUMED built with --mpi) and mpirun")


@needs_mpi_gromacs
def test_multidir_walkers_over_mpi_share_one_bias(tmp_path):
    """``mpirun -np 2 gmx_mpi mdrun -multidir w0 w1 -plumed walkers_mpi.dat`` (the input of
    ``gmvae-cv plumed-input --walkers 2``, WALKERS_MPI): every hill goes to both walkers when it is
    deposited. PLUMED writes all of them into ``w0/HILLS`` (walker 0 writes for all) and each
    walker's COLVAR with its replica suffix (``w<i>/COLVAR.<i>``). Checked: at every deposition
    time there are two hills, centred on the two walkers' CVs of their COLVARs at that time, and the
    bias each walker felt equals the sum of both walkers' hills deposited before."""
    from gmvae_cv.analysis.hills import Hills
    from gmvae_cv.deploy.plumed_topology import write_plumed_for_topology

    base = tmp_path / "inputs"
    write_plumed_for_topology(REF_EXPORT, INPUTS / "vacuum" / "conf.gro", base, n_walkers=2)
    for w in (0, 1):
        d = tmp_path / f"w{w}"
        d.mkdir()
        for f in ("walkers_mpi.dat", "model_plumed.ptc", "model_clusters.ptc"):
            shutil.copy(base / f, d / f)
        for f in ("topol.top", "conf.gro"):
            shutil.copy(INPUTS / "vacuum" / f, d / f)
        _mdp(INPUTS / "vacuum" / "md.mdp", d / "md.mdp", nsteps=5000, ld_seed=31 + w, gen_seed=31 + w)
        _grompp(d)
        check_gromacs_run(d, "walkers_mpi.dat", gmx=GMX_MPI)
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", GMX_MPI, "-quiet", "mdrun", "-multidir", "w0", "w1",
           "-s", "run.tpr", "-deffnm", "md", "-ntomp", "1", "-plumed", "walkers_mpi.dat"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert not [e for e in ALLOCATOR_ERRORS if e in out], out[-4000:]
    assert not (tmp_path / "w1" / "HILLS").exists()
    hills = Hills.from_file(tmp_path / "w0" / "HILLS")
    cols = [read_colvar(tmp_path / f"w{w}" / f"COLVAR.{w}") for w in (0, 1)]
    times = np.unique(hills.time)
    assert len(times) >= 9 and hills.n_hills == 2 * len(times), (hills.n_hills, len(times))
    for t in times:
        centres = hills.centers[hills.time == t]
        for w in (0, 1):
            k = int(np.argmin(np.abs(cols[w]["time"] - t)))
            assert abs(cols[w]["time"][k] - t) < 1e-6, (w, t)
            s_w = np.array([cols[w]["cv.node-0"][k], cols[w]["cv.node-1"][k]])
            assert np.min(np.max(np.abs(centres - s_w), axis=1)) < 1e-3, (w, t, centres, s_w)
    tol = 5e-3 * hills.heights.max()  # PLUMED's grid interpolation, as in the single-walker test
    for w in (0, 1):
        s = np.c_[cols[w]["cv.node-0"], cols[w]["cv.node-1"]]
        assert np.max(np.abs(cols[w]["metad.bias"] - hills.bias_at_times(s, cols[w]["time"]))) < tol, w
    assert np.ptp(cols[0]["cv.node-0"]) > 0 and not np.allclose(cols[0]["cv.node-0"], cols[1]["cv.node-0"])
    # the reweighting command of examples/gromacs_plumed/README.md, section 9
    from gmvae_cv.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["fes", "w0/COLVAR.0", "w1/COLVAR.1", "--hills", "w0/HILLS", "--cv", "cv.node-0,cv.node-1", "--weights", "ct",
                   "--temperature", "300", "--out", "fes_walkers.dat"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    f = np.loadtxt(tmp_path / "fes_walkers.dat", comments="#")
    assert len(f) > 0 and np.isfinite(f[:, 2]).any()


@needs_gromacs
def test_opes_runs_in_gromacs(tmp_path):
    run = _run_folder(tmp_path, "vacuum")
    _mdp(INPUTS / "vacuum" / "md.mdp", run / "md.mdp", nsteps=3000, ld_seed=5, gen_seed=5)
    _grompp(run)
    run_mdrun(run, "run.tpr", "plumed_opes.dat", ntomp=1, deffnm="opes")
    col = read_colvar(run / "COLVAR")
    assert len(col["time"]) == 7 and np.all(np.isfinite(col["opes.bias"]))
    assert col["opes.nker"][-1] >= 1 and (run / "KERNELS").is_file() and (run / "STATE").is_file()


@needs_gromacs
def test_fes_reweights_the_gromacs_run(vacuum_metad, tmp_path):
    """gmvae-cv fes on the COLVAR and HILLS mdrun wrote, both ways: c(t) from the hills and
    PLUMED's on-the-fly metad.rbias; the c(t) weights equal rbias / kT."""
    from gmvae_cv.cli import main
    from gmvae_cv.analysis.hills import GridSpec, Hills
    from gmvae_cv.analysis.reweight import ct_log_weights

    run, _ = vacuum_metad
    for f in ("COLVAR", "HILLS"):
        shutil.copy(run / f, tmp_path / f)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["fes", "COLVAR", "--cv", "cv.node-0,cv.node-1", "--weights", "ct", "--hills", "HILLS",
                     "--temperature", "300", "--out", "fes_ct.dat"]) == 0
        assert main(["fes", "COLVAR", "--cv", "cv.node-0,cv.node-1", "--weights", "bias", "--bias-column", "metad.rbias",
                     "--temperature", "300", "--out", "fes_rbias.dat"]) == 0
    finally:
        os.chdir(cwd)
    for name in ("fes_ct.dat", "fes_rbias.dat"):
        table = np.loadtxt(tmp_path / name, comments="#", ndmin=2)
        assert np.isfinite(table[:, 2]).sum() >= 5
    col = read_colvar(run / "COLVAR")
    info = read_cv_json(REF_EXPORT)["plumed"]["metad"]
    grid = GridSpec(tuple(info["grid_min"]), tuple(info["grid_max"]), tuple(info["grid_bin"]), (False, False))
    lw = ct_log_weights(Hills.from_file(run / "HILLS"), np.c_[col["cv.node-0"], col["cv.node-1"]], col["time"], KT_300, ct_grid=grid)
    assert np.max(np.abs(lw - col["metad.rbias"] / KT_300)) < 2e-3  # 5e-5 in plumed driver on the export's frames


@needs_gromacs
def test_water_cv_in_gromacs_equals_the_python_model(tmp_path):
    """TIP3P + PME: the inputs of water/, plumed.dat from gmvae-cv plumed-input on its conf.gro."""
    run = _run_folder(tmp_path, "water")
    _mdp(INPUTS / "water" / "md.mdp", run / "md.mdp", nsteps=2000, ld_seed=3, gen_seed=3, compressed_x_precision=10000000)
    _grompp(run)
    run_mdrun(run, "run.tpr", "plumed.dat", ntomp=1, deffnm="md")
    col = read_colvar(run / "COLVAR")
    traj, rows = _frames_at_colvar_times(run, "md.xtc", col)
    ref, _ = python_cv(_python_model(), _spec_on(run / "conf.gro").compute(traj))
    got = np.stack([col["cv.node-0"][rows], col["cv.node-1"][rows]], axis=1)
    assert np.max(np.abs(got - ref)) < 1e-5, np.abs(got - ref).max()


@needs_gromacs
def test_mdrun_with_a_kernel_without_libtorch_fails_and_preflight_says_why(tmp_path, monkeypatch):
    """What the preflight prevents: mdrun with the plain kernel stops at PYTORCH_MODEL."""
    if _plain_kernel() is None:
        pytest.skip("no PLUMED kernel without libtorch here")
    run = _run_folder(tmp_path, "vacuum")
    _mdp(INPUTS / "vacuum" / "md.mdp", run / "md.mdp", nsteps=100)
    _grompp(run)
    env = dict(os.environ, PLUMED_KERNEL=_plain_kernel(), OMP_NUM_THREADS="1")
    res = subprocess.run([GMX, "-quiet", "mdrun", "-s", "run.tpr", *_one_rank(GMX), "-ntomp", "1", "-plumed", "plumed.dat"],
                         cwd=run, capture_output=True, text=True, timeout=600, env=env)
    log = (run / "md.log").read_text() if (run / "md.log").is_file() else ""
    assert res.returncode != 0 and "PYTORCH_MODEL" in res.stdout + res.stderr + log
    monkeypatch.setenv("PLUMED_KERNEL", _plain_kernel())
    with pytest.raises(GMVAEInputError, match="PLUMED_KERNEL="):
        run_mdrun(run, "run.tpr", "plumed.dat")


@needs_gromacs
@pytest.mark.slow
def test_readme_whole_run(tmp_path):
    """The commands of README section 0 as a user runs them (bash, from the repository root), with
    the run folder in tmp_path, gmvae-cv from this checkout and mdrun cut to 2000 steps. The two
    builds must be in external/ already (their --check): then the README's build lines only print
    what they export."""
    from md_commands import fenced_blocks, section

    for script in ("build_plumed_libtorch.sh", "build_gromacs_plumed.sh"):
        res = subprocess.run(["bash", str(ROOT / "scripts" / script), "--check"], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            pytest.skip(f"scripts/{script} --check: not built in external/ with the README's settings ({res.stdout.strip()[-200:]})")
    text = (INPUTS / "README.md").read_text()
    (body,) = [b for _, _, b in fenced_blocks(section(text, "0. The whole run"), "bash")]
    script = body.replace("run_gromacs", str(tmp_path / "run_gromacs"))
    gmvae_cv = f"{sys.executable} -c 'import sys; from gmvae_cv.cli import main; sys.exit(main(sys.argv[1:]))' "
    script = re.sub(r"^gmvae-cv ", gmvae_cv, script, flags=re.M)
    script = re.sub(r"^python -m ", f"{sys.executable} -m ", script, flags=re.M)
    script = re.sub(r"^(gmx mdrun .*)$", r"\1 -nsteps 2000", script, flags=re.M)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert not [e for e in ALLOCATOR_ERRORS if e in out]
    run = tmp_path / "run_gromacs"
    col = read_colvar(run / "COLVAR")
    assert len(col["time"]) == 5 and np.all(np.isfinite(col["cv.node-0"]))
    assert 4 <= np.loadtxt(run / "HILLS", comments="#", ndmin=2).shape[0] <= 5
    assert np.isfinite(np.loadtxt(run / "fes_ct.dat", comments="#", ndmin=2)[:, 2]).any()
    assert (run / "fes_ct.png").is_file() and (run / "fes_ct.json").is_file()


@pytest.mark.skipif(_any_gmx() is None, reason="no GROMACS at all (GMX unset, no gmx on PATH)")
def test_plumed_input_for_a_pdb2gmx_topology(tmp_path):
    """The topology a GROMACS user builds himself: gmx pdb2gmx with amber99sb-ildn on the bundled
    structure (NME's carbon renamed CH3, as the port wants; hydrogens rebuilt with GROMACS' names
    and order). Its atom order differs from the export's, so the export's plumed.dat would compute
    other distances; plumed-input's inputs compute the exported features."""
    from gmvae_cv.cli import main
    from gmvae_cv.features.atom_mapping import map_spec_atoms, remap_spec
    from gmvae_cv.systems import alanine_dipeptide_pdb

    pdb = []
    for line in alanine_dipeptide_pdb().read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")) and line[17:20] == "NME" and line[12:16].strip() == "C":
            line = line[:12] + " CH3" + line[16:]
        pdb.append(line)
    (tmp_path / "in.pdb").write_text("\n".join(pdb) + "\n")
    subprocess.run([_any_gmx(), "-quiet", "pdb2gmx", "-f", "in.pdb", "-o", "conf.gro", "-p", "topol.top", "-ff", "amber99sb-ildn",
                    "-water", "none", "-ignh"], cwd=tmp_path, check=True, capture_output=True, text=True, timeout=300)
    spec = FeatureSpec.from_dict(read_cv_json(REF_EXPORT)["feature_spec"])
    mapping = map_spec_atoms(spec, tmp_path / "conf.gro")
    assert not mapping.is_identity and mapping.old_to_new[1] == 0  # ACE CH3: 2nd atom in the export, 1st in pdb2gmx's
    ref = spec.compute(md.load(str(alanine_dipeptide_pdb())))
    gro = md.load(str(tmp_path / "conf.gro"))
    gro.unitcell_vectors = None  # pdb2gmx's box is the molecule's extent: no periodic images here
    assert np.max(np.abs(remap_spec(spec, mapping).compute(gro) - ref)) < 2e-3  # .gro keeps 1e-3 nm
    # the export's own numbering on this file: ACE's CH3 is read from a methyl hydrogen, HH31
    wrong = spec.compute(gro)
    assert np.max(np.abs(wrong - ref)) > 0.02
    cv_wrong, _ = python_cv(_python_model(), wrong)
    cv_right, _ = python_cv(_python_model(), remap_spec(spec, mapping).compute(gro))
    cv_ref, _ = python_cv(_python_model(), ref)
    assert np.max(np.abs(cv_right - cv_ref)) < 0.05 < np.max(np.abs(cv_wrong - cv_ref)), (cv_ref, cv_right, cv_wrong)
    assert main(["plumed-input", str(REF_EXPORT), "--top", str(tmp_path / "conf.gro"), "--out", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "plumed.dat").read_text()
    i, j = spec.features[0].atoms
    assert f"f0: DISTANCE ATOMS={mapping.old_to_new[i] + 1},{mapping.old_to_new[j] + 1}" in text
    assert "#   1 ACE1-CH3 -> 1 ACE1-CH3" in text
