"""End-to-end tests with a real PLUMED that has PYTORCH_MODEL (opt-in).

These run the exported ``plumed.dat`` / ``plumed_opes.dat`` and the ready ``plumed_inputs/`` with
the C++ ``PYTORCH_MODEL`` action, i.e. with libtorch loading ``model_plumed.ptc`` and
``model_clusters.ptc`` exactly as in an MD run, and compare values and derivatives with the
Python model. They need ``PLUMED_KERNEL`` pointing at a kernel built with libtorch, e.g. from

    bash scripts/build_plumed_libtorch.sh
    export PLUMED_KERNEL=$PWD/external/plumed-libtorch/lib/libplumedKernel.so

and are skipped, with the reason, otherwise. ``plumed driver`` is the executable installed next
to that kernel (``<prefix>/bin/plumed``, linked to it); the force test drives the kernel itself
through the ``plumed`` Python bindings (``plumed.Plumed(kernel=...)``).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
import torch

from gmvae_cv import alanine_backbone_torsions, alanine_heavy_atom_distances, fit
from gmvae_cv.deploy import export, read_cv_json
from gmvae_cv.features import FeatureSpec
from gmvae_cv.systems import AlanineDipeptide
from plumed_tool import python_cv, read_colvar, run_driver

ROOT = Path(__file__).resolve().parents[2]
REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
REF_INPUTS = ROOT / "plumed_inputs"


def _libtorch_plumed() -> tuple[str | None, str | None, str]:
    """(kernel, executable, reason): the PLUMED_KERNEL if it has libtorch, else None and why."""
    kernel = os.environ.get("PLUMED_KERNEL")
    if not kernel:
        return None, None, "PLUMED_KERNEL is not set (build one with scripts/build_plumed_libtorch.sh)"
    if not Path(kernel).is_file():
        return None, None, f"PLUMED_KERNEL={kernel} is not a file"
    exe = Path(kernel).resolve().parents[1] / "bin" / "plumed"
    if not exe.is_file():
        return None, None, f"no plumed executable next to PLUMED_KERNEL (looked for {exe})"
    try:
        res = subprocess.run([str(exe), "config", "has", "libtorch"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, None, f"{exe} does not run ({exc})"
    if res.returncode != 0:
        return None, None, f"the PLUMED at {kernel} is built without libtorch (no PYTORCH_MODEL); see scripts/build_plumed_libtorch.sh"
    return kernel, str(exe), ""


KERNEL, PLUMED, WHY = _libtorch_plumed()
pytestmark = [pytest.mark.libtorch_plumed, pytest.mark.skipif(KERNEL is None, reason=WHY)]


@pytest.fixture(scope="module")
def ala(tmp_path_factory):
    base = tmp_path_factory.mktemp("libtorch")
    sim = AlanineDipeptide().simulate(20000, 100, base / "sim", seed=4, platform="Reference")
    traj = md.load(str(sim.trajectory), top=str(sim.topology))
    spec = alanine_heavy_atom_distances()
    x = spec.compute(traj)
    run = fit(x, n_clusters=3, latent_dim=2, epochs=3, feature_spec=spec, out=base / "run", progress=False, seed=2)
    exp = export(base / "run", base / "exp", data=x, frames=traj, n_check_frames=8)
    return {"sim": sim, "traj": traj, "spec": spec, "x": x, "run": run, "exp": exp}


def _driver(workdir: Path, plumed_file: str, traj: str, stride: int = 1) -> None:
    res = run_driver(workdir, plumed_file, traj, stride, exe=PLUMED, timeout=600)
    assert "LibTorch version" in res.stdout


def _setup(workdir: Path, exp: Path, traj_file: Path, name: str, extra: str = "") -> None:
    for f in ("model_plumed.ptc", "model_clusters.ptc"):
        shutil.copy(exp / f, workdir / f)
    shutil.copy(traj_file, workdir / "traj.dcd")
    (workdir / name).write_text((exp / name).read_text() + extra)


def test_plumed_dat_end_to_end(ala, tmp_path):
    """plumed.dat unchanged (two lines appended to print every frame and dump derivatives) in
    plumed driver with the real PYTORCH_MODEL: CV and cluster values against the Python model
    on NumPy features, derivatives w.r.t. the features (DUMPDERIVATIVES) against Python
    autograd, and METAD depositing hills on the CV."""
    exp, spec, run = ala["exp"], ala["spec"], ala["run"]
    extra = (
        "PRINT ARG=cv.*,clusters.* FILE=CV_ALL FMT=%.9f\n"
        "DUMPDERIVATIVES ARG=cv.node-0,cv.node-1 FILE=DERIV FMT=%.10f\n"
    )
    _setup(tmp_path, exp, ala["sim"].trajectory, "plumed.dat", extra)
    _driver(tmp_path, "plumed.dat", "traj.dcd", stride=100)
    col = read_colvar(tmp_path / "CV_ALL")
    x64 = spec.compute(ala["traj"])
    ref, jac = python_cv(run.model, x64)
    got = np.stack([col["cv.node-0"], col["cv.node-1"]], axis=1)
    assert got.shape == ref.shape == (200, 2)
    # PLUMED computes the features in double, PYTORCH_MODEL casts them to float32
    assert np.max(np.abs(got - ref)) < 2e-5 * max(1.0, np.abs(ref).max())
    cl_ref, _ = python_cv(run.model, x64, "clusters")
    cl = np.stack([col[f"clusters.node-{i}"] for i in range(3)], axis=1)
    assert np.max(np.abs(cl - cl_ref)) < 2e-5 and np.max(np.abs(cl.sum(1) - 1)) < 1e-5
    der = np.loadtxt(tmp_path / "DERIV", comments="#", ndmin=2)
    # rows: (time, parameter index, d cv.node-0 / d f_i, d cv.node-1 / d f_i), 25 rows per frame
    der = der.reshape(200, 25, -1)
    assert np.all(der[:, :, 1] == np.arange(25))
    got_jac = np.transpose(der[:, :, 2:4], (0, 2, 1))
    assert np.max(np.abs(got_jac - jac)) < 1e-4 * max(1.0, np.abs(jac).max())
    hills = np.loadtxt(tmp_path / "HILLS", comments="#", ndmin=2)
    assert hills.shape[0] == 39 and np.all(np.isfinite(hills))
    c = read_colvar(tmp_path / "COLVAR")
    assert list(c)[1:] == ["cv.node-0", "cv.node-1", "clusters.node-0", "clusters.node-1", "clusters.node-2", "metad.bias", "metad.rbias"]
    assert c["metad.bias"][-1] > 0


def test_plumed_opes_dat_end_to_end(ala, tmp_path):
    _setup(tmp_path, ala["exp"], ala["sim"].trajectory, "plumed_opes.dat")
    _driver(tmp_path, "plumed_opes.dat", "traj.dcd", stride=100)
    c = read_colvar(tmp_path / "COLVAR")
    ref, _ = python_cv(ala["run"].model, ala["spec"].compute(ala["traj"][::5]))
    np.testing.assert_allclose(np.stack([c["cv.node-0"], c["cv.node-1"]], axis=1), ref, atol=1e-5)
    assert c["opes.nker"][-1] >= 1 and np.all(np.isfinite(c["opes.bias"]))


def test_forces_through_the_kernel(ala, tmp_path):
    """The kernel through the Python bindings: BIASVALUE on cv.node-j gives atomic forces
    -d cv_j / d positions (PLUMED's feature derivatives times PYTORCH_MODEL's autograd); they
    equal the Python model's autograd through the torch features."""
    plumed = pytest.importorskip("plumed", reason="the plumed Python bindings (pip install hillclimber) are not installed")

    exp, spec, run, traj = ala["exp"], ala["spec"], ala["run"], ala["traj"]
    for f in ("model_plumed.ptc", "model_clusters.ptc"):
        shutil.copy(exp / f, tmp_path / f)
    lines, args = spec.plumed_input()
    feat = spec.torch_module()
    m64 = copy.deepcopy(run.model).double()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for j in range(2):
            p = plumed.Plumed(kernel=KERNEL)
            p.cmd("setMDEngine", "python")
            p.cmd("setNatoms", spec.n_atoms)
            p.cmd("setTimestep", 1.0)
            p.cmd("setKbT", 2.494339)
            p.cmd("setLogFile", "plumed.log")
            p.cmd("init")
            feature_lines = [l.split("#")[0].strip() for l in lines if l.split("#")[0].strip()]  # readInputLine takes no comments
            for line in [*feature_lines, f"cv: PYTORCH_MODEL FILE=model_plumed.ptc ARG={','.join(args)}", f"BIASVALUE ARG=cv.node-{j}"]:
                p.cmd("readInputLine", line)
            for step, frame in enumerate((0, 50, 150)):
                pos = np.ascontiguousarray(traj.xyz[frame], dtype=np.float64)
                forces = np.zeros((spec.n_atoms, 3))
                virial = np.zeros((3, 3))
                bias = np.zeros(1)
                p.cmd("setStep", step)
                p.cmd("setMasses", np.ones(spec.n_atoms))
                p.cmd("setCharges", np.zeros(spec.n_atoms))
                p.cmd("setPositions", pos)
                p.cmd("setForces", forces)
                p.cmd("setVirial", virial)
                p.cmd("calc")
                p.cmd("getBias", bias)
                x = torch.tensor(pos, requires_grad=True)
                s = m64.forward_cv(feat(x)[None])[0, j]
                grad = torch.autograd.grad(s, x)[0].numpy()
                assert abs(bias[0] - float(s.detach())) < 2e-5 * max(1.0, abs(float(s.detach())))
                assert np.abs(grad).max() > 1.0 and np.max(np.abs(forces + grad)) < 1e-4 * max(1.0, np.abs(grad).max()), (j, frame)
            p.finalize()
    finally:
        os.chdir(cwd)


needs_reference = pytest.mark.skipif(not (REF_EXPORT / "cv.json").is_file(), reason="export/alanine_dipeptide not generated")


@needs_reference
def test_reference_plumed_inputs_end_to_end(tmp_path):
    """plumed_inputs/ unchanged with the real PYTORCH_MODEL on the reference frames: METAD, two
    walkers, OPES_METAD, and reweight.dat writing FES files; the CV equals the Python model."""
    from gmvae_cv.learn.train import load_run

    info = read_cv_json(REF_EXPORT)
    spec = FeatureSpec.from_dict(info["feature_spec"])
    frames = np.load(REF_EXPORT / "frames.npy")
    traj = md.Trajectory(frames, AlanineDipeptide().mdtraj_topology)
    traj.save_dcd(str(tmp_path / "traj.dcd"))
    for f in ("model_plumed.ptc", "model_clusters.ptc"):
        shutil.copy(REF_EXPORT / f, tmp_path / f)
    for name in ("metad.dat", "walker_0.dat", "walker_1.dat", "opes_metad.dat", "reweight.dat"):
        shutil.copy(REF_INPUTS / name, tmp_path / name)
    _driver(tmp_path, "metad.dat", "traj.dcd", stride=500)
    c = read_colvar(tmp_path / "COLVAR")
    ref, _ = python_cv(load_run(REF_EXPORT / "run").model, spec.compute(frames))
    np.testing.assert_allclose(np.stack([c[f"cv.node-{i}"] for i in range(info["latent_dim"])], axis=1), ref, atol=2e-5)
    _driver(tmp_path, "reweight.dat", "traj.dcd", stride=500)
    rw = read_colvar(tmp_path / "COLVAR_REWEIGHT")
    torsions = {f.name: f.atoms for f in alanine_backbone_torsions(transform="raw")}
    phi_psi = md.compute_dihedrals(traj, np.array(list(torsions.values())))
    np.testing.assert_allclose(np.stack([rw["phi"], rw["psi"]], axis=1), phi_psi, atol=1e-4)
    for name in ("fes_cv.dat", "fes_torsions.dat"):
        assert np.isfinite(np.loadtxt(tmp_path / name, comments="#", ndmin=2)[:, 2]).any()
    for name in ("walker_0.dat", "walker_1.dat", "opes_metad.dat"):
        _driver(tmp_path, name, "traj.dcd", stride=500)
    assert (tmp_path / "HILLS.0").is_file() and (tmp_path / "HILLS.1").is_file()
