"""Tests of gmvae_cv.export, gmvae_cv.deploy.torchscript and gmvae_cv.deploy.plumed.

Every test loads the exported files the way their consumer does and compares numbers with an
independent answer: the Python model (``GMVAECV``, evaluated in float64 with autograd), central
finite differences, NumPy features, OpenMM's own energies and forces, and the real PLUMED kernel
bundled with hillclimber (``plumed driver``).

What the PLUMED kernel here can and cannot run: hillclimber's kernel is built without libtorch,
so it has no ``PYTORCH_MODEL``. The kernel tests below run the generated inputs unchanged except
for the two ``PYTORCH_MODEL`` lines, which are replaced by ``READ`` actions with the same labels
(``cv``, ``clusters``) and component names (``node-0`` ...), fed with the values that
``model_plumed.ptc``/``model_clusters.ptc`` give under PLUMED's calling pattern in Python on the
features that PLUMED computed. So the feature lines, ``METAD``/``OPES_METAD``/walkers/
``REWEIGHT_BIAS``/``HISTOGRAM``/``CONVERT_TO_FES``/``PRINT`` lines are parsed and run by the real
kernel; the C++ ``PYTORCH_MODEL`` action itself runs only in tests/deploy/test_plumed_libtorch.py (with a
PLUMED built by scripts/build_plumed_libtorch.sh).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mdtraj as md
import numpy as np
import openmm
import pytest
import torch

from gmvae_cv import GMVAEInputError, alanine_backbone_torsions, alanine_heavy_atom_distances, fit
from gmvae_cv.cli import main as cli_main
from gmvae_cv.deploy import (
    check_export,
    export,
    load_openmm_cv,
    load_plumed_model,
    openmm_component_force,
    read_cv_json,
    verify_export,
)
from gmvae_cv.deploy.plumed import (
    MetadSettings,
    OpesSettings,
    cv_statistics,
    resolve_bias_settings,
    write_plumed_inputs,
)
from gmvae_cv.systems import AlanineDipeptide
from gmvae_cv.deploy.torchscript import read_marker
from plumed_tool import needs_plumed, python_cv, read_colvar, run_driver

ROOT = Path(__file__).resolve().parents[2]
REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
REF_INPUTS = ROOT / "plumed_inputs"
KT300 = 0.008314462618 * 300.0


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ala(tmp_path_factory):
    """A short seeded alanine run (200 frames), a GMVAE trained for 2 epochs, and its export."""
    base = tmp_path_factory.mktemp("export")
    sim = AlanineDipeptide().simulate(20000, 100, base / "sim", seed=3, platform="Reference")
    traj = md.load(str(sim.trajectory), top=str(sim.topology))
    spec = alanine_heavy_atom_distances()
    x = spec.compute(traj)
    run = fit(
        x, n_clusters=3, latent_dim=2, epochs=2, feature_spec=spec, out=base / "run",
        progress=False, cluster_init="none", seed=1,
    )
    exp = export(base / "run", base / "exp", data=x, frames=traj, n_check_frames=16)
    return {"base": base, "sim": sim, "traj": traj, "spec": spec, "x": x, "run": run, "exp": exp}


def _copy_export(ala, tmp_path) -> Path:
    dst = tmp_path / "exp"
    shutil.copytree(ala["exp"], dst)
    return dst


def _plumed_pattern(path: Path, x32: np.ndarray):
    """What PYTORCH_MODEL does (PytorchModel.cpp), in Python: load, eval, freeze,
    optimize_for_inference; float32 (1, n) input with requires_grad; one autograd.grad per
    output with retain_graph."""
    m = torch.jit.load(str(path), map_location="cpu")
    m.eval()
    m = torch.jit.optimize_for_inference(torch.jit.freeze(m))
    n = x32.shape[1]
    probe = m(torch.zeros(1, n))
    vals, grads = [], []
    for row in x32:
        xin = torch.tensor(row, dtype=torch.float32).view(1, n).requires_grad_(True)
        out = m(xin)
        assert out.dtype == torch.float32 and out.shape == probe.shape
        g = [
            torch.autograd.grad([out[:, j : j + 1]], [xin], grad_outputs=[torch.ones(1, 1)], retain_graph=True)[0][0]
            for j in range(out.shape[1])
        ]
        vals.append(out.detach()[0].numpy())
        grads.append(torch.stack(g).numpy())
    return np.array(vals), np.array(grads), tuple(probe.shape)


# ------------------------------------------------------------------ PLUMED's pattern
@pytest.mark.parametrize("name,what", [("model_plumed.ptc", "cv"), ("model_clusters.ptc", "clusters")])
def test_ptc_under_plumed_pattern_matches_python_and_finite_differences(ala, name, what):
    run, exp = ala["run"], ala["exp"]
    x32 = ala["x"][::10].astype(np.float32)
    vals, grads, probe_shape = _plumed_pattern(exp / name, x32)
    n_out = 2 if what == "cv" else 3
    assert probe_shape == (1, n_out)
    ref, ref_jac = python_cv(run.model, x32.astype(np.float64), what)
    # the float32 export (standardisation folded into the first layer) against the float64
    # Python model; the tolerances are check_export's (see its docstring)
    assert np.max(np.abs(vals - ref)) < 2e-5 * max(1.0, np.abs(ref).max())
    assert np.max(np.abs(grads - ref_jac)) < 5e-5 * max(1.0, np.abs(ref_jac).max())
    # central finite differences of an unfrozen float64 copy of the same file
    m64 = torch.jit.load(str(exp / name)).double().eval()
    steps = 1e-6 * np.asarray(read_cv_json(exp)["normalisation"]["range"])
    for f in range(0, len(x32), 5):
        x0 = torch.tensor(x32[f], dtype=torch.float64)
        fd = np.zeros((n_out, x32.shape[1]))
        with torch.no_grad():
            for i in range(x32.shape[1]):
                e = torch.zeros_like(x0)
                e[i] = steps[i]
                fd[:, i] = ((m64((x0 + e)[None]) - m64((x0 - e)[None]))[0] / (2 * steps[i])).numpy()
        assert np.max(np.abs(grads[f] - fd)) < 5e-5 * max(1.0, np.abs(fd).max())
    if what == "clusters":
        assert np.max(np.abs(vals.sum(axis=1) - 1.0)) < 1e-6
        assert np.all(vals >= 0)


def test_ptc_batch_and_marker(ala):
    exp = ala["exp"]
    m, marker = load_plumed_model(exp / "model_plumed.ptc")
    assert marker["kind"] == "plumed" and marker["n_features"] == 25 and marker["latent_dim"] == 2 and marker["n_clusters"] == 3
    assert marker["feature_names"] == ala["spec"].names
    x = torch.tensor(ala["x"][:7], dtype=torch.float32)
    with torch.no_grad():
        assert m(x).shape == (7, 2)
        ref = ala["run"].model.forward_cv(x)
    torch.testing.assert_close(m(x).detach(), ref, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ OpenMM
def test_openmm_model_contract(ala):
    exp, traj, spec = ala["exp"], ala["traj"], ala["spec"]
    cv = load_openmm_cv(exp / "model_openmm.pt")
    marker = cv.gmvae_marker
    assert marker["n_atoms"] == 22 and marker["atom_indices"] == spec.atoms_used.tolist()
    ref, _ = python_cv(ala["run"].model, spec.compute(traj[:5]))
    for f in range(5):
        p64 = torch.tensor(traj.xyz[f], dtype=torch.float64, requires_grad=True)
        out64 = cv(p64)
        assert out64.shape == (2,) and out64.dtype == torch.float64
        out32 = cv(p64.detach().float())
        assert out32.dtype == torch.float32
        np.testing.assert_allclose(out64.detach().numpy(), ref[f], atol=2e-5)
        np.testing.assert_allclose(out32.detach().numpy(), ref[f], atol=1e-4)
        g = torch.autograd.grad(out64[1], p64)[0]
        assert torch.isfinite(g).all() and g.abs().max() > 0
        # a box that is much larger than the molecule: the minimum image changes nothing
        box = torch.eye(3, dtype=torch.float64) * 5.0
        torch.testing.assert_close(cv(p64.detach(), box), out64.detach(), rtol=0, atol=1e-6)


def test_openmm_torchforce_in_customcvforce(ala):
    """Energy = CV component, forces = -gradient: against the Python model and finite differences."""
    exp, traj, spec = ala["exp"], ala["traj"], ala["spec"]
    feat = spec.torch_module()
    import copy

    m64 = copy.deepcopy(ala["run"].model).double()
    used = spec.atoms_used
    n_coords = n_kinks = 0
    for j in range(2):
        system = openmm.System()
        for _ in range(22):
            system.addParticle(12.0)
        ccv = openmm.CustomCVForce("2*s")  # the bias code will use expressions of the CV
        ccv.addCollectiveVariable("s", openmm_component_force(exp / "model_openmm.pt", j))
        system.addForce(ccv)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

        def energy(pos):
            ctx.setPositions(pos)
            return ctx.getState(getEnergy=True).getPotentialEnergy()._value

        for f in (0, 99, 199):
            pos = traj.xyz[f].astype(np.float64)
            ctx.setPositions(pos)
            state = ctx.getState(getEnergy=True, getForces=True)
            e = state.getPotentialEnergy()._value
            forces = state.getForces(asNumpy=True)._value
            p = torch.tensor(pos, requires_grad=True)
            s = m64.forward_cv(feat(p)[None])[0, j]
            grad = torch.autograd.grad(s, p)[0].numpy()
            s = float(s.detach())
            assert abs(e - 2 * s) < 4e-5 * max(1.0, abs(s))
            np.testing.assert_allclose(forces, -2 * grad, atol=1e-4 * max(1.0, np.abs(grad).max()))
            unused = np.setdiff1d(np.arange(22), used)
            assert np.all(forces[unused] == 0)
            # central differences of the Context's energy, h = 1e-4 nm (the CV is float32 inside).
            # The CV is piecewise smooth (ReLU): coordinates with a kink within h are recognised on
            # the float64 Python model (its differences at h and 1e-7 nm disagree) and skipped.
            def py_energy(q):
                with torch.no_grad():
                    return 2 * float(m64.forward_cv(feat(torch.tensor(q))[None])[0, j])

            h, tol = 1e-4, 2e-3 * max(1.0, np.abs(forces).max())
            for a in used:
                for c in range(3):
                    n_coords += 1
                    py = []
                    for step in (h, 1e-7):
                        pp, pm = pos.copy(), pos.copy()
                        pp[a, c] += step
                        pm[a, c] -= step
                        py.append(-(py_energy(pp) - py_energy(pm)) / (2 * step))
                    if abs(py[0] - py[1]) > tol / 4:
                        n_kinks += 1
                        continue
                    pp, pm = pos.copy(), pos.copy()
                    pp[a, c] += h
                    pm[a, c] -= h
                    fd = -(energy(pp) - energy(pm)) / (2 * h)
                    assert abs(fd - forces[a, c]) < tol, (j, f, a, c, fd, forces[a, c])
        del ctx
    assert n_kinks <= 0.1 * n_coords, f"{n_kinks} of {n_coords} coordinates next to a ReLU kink"
    with pytest.raises(GMVAEInputError, match="0 <= i < D = 2"):
        openmm_component_force(exp / "model_openmm.pt", 2)


# ------------------------------------------------------------------ check and CLI
def test_check_export_passes_and_cli(ala, tmp_path, capsys):
    exp = _copy_export(ala, tmp_path)
    report = check_export(exp)
    assert report.passed, report.to_text()
    items = {(r.item, r.quantity) for r in report.rows}
    assert ("OpenMM TorchForce", "forces vs finite differences of the energy") in items
    assert ("model_plumed.ptc", "autograd gradient vs finite differences (float64)") in items
    saved = json.loads((exp / "check.json").read_text())
    assert saved["passed"] and len(saved["rows"]) == len(report.rows)
    assert cli_main(["check", str(exp), "--fd-frames", "1"]) == 0
    out = capsys.readouterr().out
    assert "max abs error" in out and "PASSED" in out


def test_cli_export_with_trajectory(ala, tmp_path, capsys):
    sim = ala["sim"]
    out = tmp_path / "exp_cli"
    rc = cli_main([
        "export", str(ala["base"] / "run"), "--out", str(out), "--traj", str(sim.trajectory), "--top", str(sim.topology),
        "--height", "2.0", "--pace", "1000", "--bias-factor", "8", "--temperature", "310", "--check-frames", "4",
    ])
    assert rc == 0, capsys.readouterr().err
    info = read_cv_json(out)
    assert info["plumed"]["metad"]["height"] == 2.0 and info["plumed"]["metad"]["temperature"] == 310.0
    text = (out / "plumed.dat").read_text()
    assert "  PACE=1000\n" in text and "  BIASFACTOR=8\n" in text and "  TEMP=310\n" in text
    assert np.load(out / "frames.npy").shape == (4, 22, 3)
    # same model, same statistics source: same CV files as the library export
    assert info["files"]["model_plumed.ptc"] == read_cv_json(ala["exp"])["files"]["model_plumed.ptc"]
    assert cli_main(["export", str(ala["base"] / "run"), "--out", str(out)]) == 2
    assert "holds an export" in capsys.readouterr().err


# ------------------------------------------------------------------ bad input
def test_altered_file_is_detected(ala, tmp_path, capsys):
    exp = _copy_export(ala, tmp_path)
    text = (exp / "plumed.dat").read_text().replace("HEIGHT=1.2", "HEIGHT=12")
    (exp / "plumed.dat").write_text(text)
    with pytest.raises(GMVAEInputError, match=r"plumed\.dat: sha256 is .* the file was altered after export"):
        verify_export(exp)
    report = check_export(exp)
    assert not report.passed
    failed = [(r.item, r.quantity) for r in report.rows if not r.passed]
    assert ("plumed.dat", "sha256 equals cv.json") in failed
    assert cli_main(["check", str(exp), "--fd-frames", "1"]) == 1
    assert "FAILED" in capsys.readouterr().out
    # a model file with one byte changed inside its weights is refused by the loaders
    blob = bytearray((exp / "model_openmm.pt").read_bytes())
    blob[-200] ^= 0x01
    (exp / "model_openmm.pt").write_bytes(bytes(blob))
    with pytest.raises(GMVAEInputError, match="model_openmm.pt"):
        load_openmm_cv(exp / "model_openmm.pt")


def test_missing_file_is_named(ala, tmp_path, capsys):
    exp = _copy_export(ala, tmp_path)
    (exp / "model_clusters.ptc").unlink()
    with pytest.raises(GMVAEInputError, match=r"model_clusters\.ptc: file not found \(listed in cv\.json\)"):
        check_export(exp)
    assert cli_main(["check", str(exp)]) == 2
    assert "model_clusters.ptc: file not found" in capsys.readouterr().err


def test_foreign_model_files_are_rejected(ala, tmp_path):
    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=-1, keepdim=True)

    foreign = tmp_path / "foreign.ptc"
    torch.jit.save(torch.jit.script(Plain()), str(foreign))
    for loader in (load_openmm_cv, load_plumed_model, read_marker):
        with pytest.raises(GMVAEInputError, match="not made by gmvae-cv"):
            loader(foreign)
    not_ts = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, not_ts)
    with pytest.raises(GMVAEInputError, match="cannot be read as a TorchScript file"):
        load_openmm_cv(not_ts)
    # a gmvae-cv file of the wrong kind
    with pytest.raises(GMVAEInputError, match="marker 'kind' is 'plumed', expected 'openmm'"):
        load_openmm_cv(ala["exp"] / "model_plumed.ptc")


def _edited_run(ala, tmp_path, edit) -> Path:
    dst = tmp_path / "run"
    dst.mkdir()
    for name in ("gmvae_run.json", "model.pt"):
        shutil.copy(ala["base"] / "run" / name, dst / name)
    info = json.loads((dst / "gmvae_run.json").read_text())
    edit(info)
    (dst / "gmvae_run.json").write_text(json.dumps(info))
    return dst


def test_run_without_feature_spec_is_rejected(ala, tmp_path):
    run = _edited_run(ala, tmp_path, lambda info: info.update(feature_spec=None))
    with pytest.raises(GMVAEInputError, match=r"gmvae_run\.json: no 'feature_spec'.*fit\(\.\.\., feature_spec=spec\)"):
        export(run, tmp_path / "exp", data=ala["x"])
    assert not (tmp_path / "exp").exists()


def test_feature_count_mismatch_is_rejected(ala, tmp_path):
    def drop_one(info):
        info["feature_spec"]["features"] = info["feature_spec"]["features"][:-1]
        info["feature_names"] = None

    run = _edited_run(ala, tmp_path, drop_one)
    with pytest.raises(GMVAEInputError, match="'feature_spec' has 24 features, the model expects 25"):
        export(run, tmp_path / "exp", data=ala["x"])
    with pytest.raises(GMVAEInputError, match="'data\\[0\\]' has 24 features, the model expects 25"):
        export(ala["base"] / "run", tmp_path / "exp2", data=ala["x"][:, :24])
    exp = _copy_export(ala, tmp_path)
    info = json.loads((exp / "cv.json").read_text())
    info["n_features"] = 24
    (exp / "cv.json").write_text(json.dumps(info))
    with pytest.raises(GMVAEInputError, match="'feature_spec' has 25 features, 'n_features' is 24"):
        check_export(exp)


def test_export_refuses_to_clobber(ala, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(GMVAEInputError, match="is not a gmvae-cv export"):
        export(ala["run"], tmp_path / "busy", data=ala["x"], overwrite=True)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(GMVAEInputError, match="no CV statistics to choose sigma"):
        export(ala["run"], tmp_path / "nodata")
    exp = export(ala["run"], tmp_path / "explicit", metad=MetadSettings(sigma=[0.1, 0.1], grid_min=[-5, -5], grid_max=[5, 5]))
    info = read_cv_json(exp)
    assert info["cv_statistics"] is None and info["check_frames"] is None
    with pytest.raises(GMVAEInputError, match="no frames stored in the export"):
        check_export(exp)


# ------------------------------------------------------------------ bias settings
def test_bias_settings_rules():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal([0, 0], [0.1, 0.2], size=(500, 2)), rng.normal([3, -1], [0.1, 0.2], size=(500, 2))])
    p = np.zeros((1000, 2))
    p[:500, 0] = p[500:, 1] = 1
    stats = cv_statistics(z, p)
    assert np.allclose(stats["within_cluster_std"], [0.1, 0.2], rtol=0.1)
    res = resolve_bias_settings(MetadSettings(), OpesSettings(), stats, 2)["metad"]
    assert res["sigma"] == [round(0.5 * s, 3 - int(np.floor(np.log10(0.5 * s))) - 1) for s in stats["within_cluster_std"]]
    for c in range(2):
        lo, hi = stats["min"][c], stats["max"][c]
        assert res["grid_min"][c] <= lo - (hi - lo) and res["grid_max"][c] >= hi + (hi - lo)
        assert res["grid_min"][c] > lo - 1.02 * (hi - lo) and res["grid_max"][c] < hi + 1.02 * (hi - lo)
        assert (res["grid_max"][c] - res["grid_min"][c]) / res["grid_bin"][c] <= res["sigma"][c] / 5
    with pytest.raises(GMVAEInputError, match="'bias_factor' is 1.0, expected a number > 1"):
        resolve_bias_settings(MetadSettings(bias_factor=1.0), OpesSettings(), stats, 2)
    with pytest.raises(GMVAEInputError, match="'sigma' has 3 values, the CV has 2 components"):
        resolve_bias_settings(MetadSettings(sigma=[0.1, 0.1, 0.1]), OpesSettings(), stats, 2)


# ------------------------------------------------------------------ the real PLUMED kernel (stand-in for PYTORCH_MODEL)


def _write_read_file(path: Path, label: str, values: np.ndarray, stride: int) -> None:
    cols = [f"{label}.node-{i}" for i in range(values.shape[1])]
    with open(path, "w") as fh:
        fh.write("#! FIELDS time " + " ".join(cols) + "\n")
        for f, row in enumerate(values):
            fh.write(f"{float(f * stride)} " + " ".join(f"{v:.10f}" for v in row) + "\n")


def _standin(text: str, d: int, k: int) -> str:
    """Replace the two PYTORCH_MODEL lines by READ actions with the same labels and components."""
    out = []
    for line in text.splitlines():
        if line.startswith("cv: PYTORCH_MODEL"):
            line = f"cv: READ FILE=cv_values.dat VALUES={','.join(f'cv.node-{i}' for i in range(d))} IGNORE_FORCES"
        elif line.startswith("clusters: PYTORCH_MODEL"):
            line = f"clusters: READ FILE=clusters_values.dat VALUES={','.join(f'clusters.node-{i}' for i in range(k))} IGNORE_FORCES"
        out.append(line)
    assert sum("READ FILE=" in line for line in out) == 2
    return "\n".join(out) + "\n"


def _prepare_standin(workdir: Path, exp: Path, traj_file: Path, spec, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature values from PLUMED itself (the export's feature lines), then the .ptc files under
    PLUMED's pattern on those features, written as the READ stand-in files."""
    lines, args = spec.plumed_input()
    (workdir / "features.dat").write_text("\n".join(lines) + f"\nPRINT ARG={','.join(args)} FILE=FEATURES FMT=%.10f\n")
    shutil.copy(traj_file, workdir / "traj.dcd")
    run_driver(workdir, "features.dat", "traj.dcd", stride)
    col = read_colvar(workdir / "FEATURES")
    feats = np.stack([col[a] for a in args], axis=1)
    cv, _, _ = _plumed_pattern(exp / "model_plumed.ptc", feats.astype(np.float32))
    cl, _, _ = _plumed_pattern(exp / "model_clusters.ptc", feats.astype(np.float32))
    _write_read_file(workdir / "cv_values.dat", "cv", cv, stride)
    _write_read_file(workdir / "clusters_values.dat", "clusters", cl, stride)
    return feats, cv


def _hills(path: Path) -> np.ndarray:
    return np.loadtxt(path, comments="#", ndmin=2)


def _gaussian_bias(hills: np.ndarray, s: np.ndarray, d: int) -> np.ndarray:
    """The METAD bias at points s (n, d), in Python: the sum of the Gaussians of a HILLS table.

    Well-tempered HILLS files store height * gamma / (gamma - 1) (PLUMED's MetaD.cpp); the
    deposited Gaussian has height * (gamma - 1) / gamma. PLUMED truncates each Gaussian where
    dp2 = |ds/sigma|^2 / 2 reaches 6.25 and stretches it to reach zero there (tools/Tools.h:
    h * (A exp(-dp2) + B), A = 1 / (1 - exp(-6.25)), B = -exp(-6.25) A)."""
    centers, sigmas = hills[:, 1 : 1 + d], hills[:, 1 + d : 1 + 2 * d]
    gamma = hills[:, 2 + 2 * d]
    heights = hills[:, 1 + 2 * d] * (gamma - 1.0) / gamma
    dp2 = 0.5 * (((s[:, None, :] - centers[None]) / sigmas[None]) ** 2).sum(-1)
    a = 1.0 / (1.0 - np.exp(-6.25))
    g = np.where(dp2 < 6.25, a * np.exp(-dp2) - a * np.exp(-6.25), 0.0)
    return (heights[None] * g).sum(-1)


@needs_plumed
def test_plumed_dat_runs_in_real_kernel(ala, tmp_path):
    """plumed.dat's feature lines in the real kernel equal NumPy; the .ptc files on PLUMED's
    features equal the Python CV on NumPy features; METAD and PRINT lines run unchanged (with
    READ standing in for PYTORCH_MODEL) and the bias PLUMED prints equals the sum of its HILLS."""
    exp, spec, traj = ala["exp"], ala["spec"], ala["traj"]
    stride = 100  # steps per frame: 200 frames = 20000 steps = 40 hills at PACE=500
    feats, cv = _prepare_standin(tmp_path, exp, ala["sim"].trajectory, spec, stride)
    np.testing.assert_allclose(feats, spec.compute(traj), atol=1e-6)
    ref, _ = python_cv(ala["run"].model, spec.compute(traj))
    np.testing.assert_allclose(cv, ref, atol=1e-5)
    (tmp_path / "plumed.dat").write_text(_standin((exp / "plumed.dat").read_text(), 2, 3))
    run_driver(tmp_path, "plumed.dat", "traj.dcd", stride)
    col = read_colvar(tmp_path / "COLVAR")
    assert list(col) == ["time", "cv.node-0", "cv.node-1", *[f"clusters.node-{i}" for i in range(3)], "metad.bias", "metad.rbias"]
    assert len(col["time"]) == 40  # PRINT STRIDE=500 over 20000 steps
    hills = _hills(tmp_path / "HILLS")
    assert hills.shape[0] == 39  # METAD deposits at steps 500, 1000, ..., 19500 (not at step 0)
    info = read_cv_json(exp)["plumed"]["metad"]
    np.testing.assert_allclose(hills[:, 3:5], np.tile(info["sigma"], (39, 1)))
    # well-tempered: the first hill has the full height (stored as height * gamma / (gamma - 1))
    assert abs(hills[0, 5] * (hills[0, 6] - 1) / hills[0, 6] - info["height"]) < 1e-6
    # hill centres are the CV values PLUMED saw at the deposition steps
    s = np.stack([col["cv.node-0"], col["cv.node-1"]], axis=1)
    np.testing.assert_allclose(hills[:, 1:3], s[1:], atol=1e-6)
    # metad.bias printed at step 500 r is the grid bias of the r - 1 hills deposited before
    want = np.array([_gaussian_bias(hills[: r - 1], s[r : r + 1], 2)[0] if r > 1 else 0.0 for r in range(40)])
    np.testing.assert_allclose(col["metad.bias"], want, rtol=2e-3, atol=2e-3)
    assert want[-1] > 1.0


@needs_plumed
def test_plumed_opes_dat_runs_in_real_kernel(ala, tmp_path):
    """plumed_opes.dat's OPES_METAD and PRINT lines run unchanged in the real kernel (READ stands
    in for PYTORCH_MODEL); kernels are deposited with the exported SIGMA."""
    exp = ala["exp"]
    _prepare_standin(tmp_path, exp, ala["sim"].trajectory, ala["spec"], 100)
    (tmp_path / "plumed_opes.dat").write_text(_standin((exp / "plumed_opes.dat").read_text(), 2, 3))
    run_driver(tmp_path, "plumed_opes.dat", "traj.dcd", 100)
    col = read_colvar(tmp_path / "COLVAR")
    assert {"cv.node-0", "cv.node-1", "opes.bias", "opes.rct", "opes.zed", "opes.neff", "opes.nker"} <= set(col)
    assert np.all(np.isfinite(col["opes.bias"])) and col["opes.nker"][-1] >= 1
    assert (tmp_path / "KERNELS").is_file() and (tmp_path / "STATE").is_file()


# ------------------------------------------------------------------ the reference export and plumed_inputs/
def _reference_inputs():
    """Stored training features and check frames of the reference export."""
    data = np.load(REF_EXPORT / "data" / "features.npy")
    frames = np.load(REF_EXPORT / "frames.npy")
    return data, frames


needs_reference = pytest.mark.skipif(not (REF_EXPORT / "cv.json").is_file(), reason="export/alanine_dipeptide not generated")


def _assert_same_json(got, ref, where: str) -> None:
    """Equal JSON values, floats to 1e-6 relative: float32 statistics of the same model differ in
    the last bit between CPUs (measured: 2.4e-7 on a minimum of 2.55, Intel Xeon against AMD EPYC)."""
    if isinstance(ref, dict):
        assert isinstance(got, dict) and set(got) == set(ref), f"{where} would change: keys {sorted(set(got or {}) ^ set(ref))}"
        for k in ref:
            _assert_same_json(got[k], ref[k], f"{where}/{k}")
    elif isinstance(ref, list):
        assert isinstance(got, list) and len(got) == len(ref), f"{where} would change (length)"
        for i, (g, r) in enumerate(zip(got, ref)):
            _assert_same_json(g, r, f"{where}[{i}]")
    elif isinstance(ref, float) and not isinstance(ref, bool):
        assert isinstance(got, (int, float)) and got == pytest.approx(ref, rel=1e-6, abs=1e-9), f"{where} would change: {got} != {ref}"
    else:
        assert got == ref, f"{where} would change: {got!r} != {ref!r}"


@needs_reference
def test_reference_export_in_sync(tmp_path):
    """Re-exporting the stored run with the stored data gives the committed files: PLUMED inputs
    and cv.json equal (up to 'versions' and the model files' hashes), and model files with equal
    outputs on the stored frames. Model bytes are not compared: TorchScript archives carry
    class-name mangling counters that depend on what the process scripted before (the suite's
    order changes them), not on the model."""
    data, frames = _reference_inputs()
    ref = read_cv_json(REF_EXPORT)
    new = export(REF_EXPORT / "run", tmp_path / "exp", data=data, frames=frames, n_check_frames=len(frames))
    for name in ("plumed.dat", "plumed_opes.dat"):
        assert (new / name).read_text() == (REF_EXPORT / name).read_text(), f"{name} would change: regenerate the reference export"
    got = read_cv_json(new)
    model_files = {"model_plumed.ptc", "model_clusters.ptc", "model_openmm.pt"}
    for key in set(ref) | set(got):
        if key == "versions":
            continue
        if key == "files":
            for name in ref["files"]:
                if name not in model_files:
                    assert got["files"][name] == ref["files"][name], name
            continue
        _assert_same_json(got.get(key), ref.get(key), f"cv.json '{key}'")
    x = torch.tensor(data[::50], dtype=torch.float32)
    for name in ("model_plumed.ptc", "model_clusters.ptc"):
        a = torch.jit.load(str(new / name))(x)
        b = torch.jit.load(str(REF_EXPORT / name))(x)
        assert torch.max(torch.abs(a - b)) < 1e-6
    pos = torch.tensor(frames[0], dtype=torch.float64)
    assert torch.max(torch.abs(load_openmm_cv(new / "model_openmm.pt")(pos) - load_openmm_cv(REF_EXPORT / "model_openmm.pt")(pos))) < 1e-6
    for name in ("frames.npy", "README.md"):
        assert (new / name).read_bytes() == (REF_EXPORT / name).read_bytes(), f"{name} would change"


@needs_reference
def test_reference_export_check_passes(tmp_path):
    rep = check_export(REF_EXPORT, n_fd_frames=2, out=tmp_path / "check.json")
    assert rep.passed, rep.to_text()


def _alanine_torsions() -> dict:
    return {f.name: f.atoms for f in alanine_backbone_torsions(transform="raw")}


@needs_reference
def test_plumed_inputs_in_sync(tmp_path):
    written = write_plumed_inputs(REF_EXPORT, tmp_path / "inputs", torsions=_alanine_torsions())
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in REF_INPUTS.iterdir()), "plumed_inputs/ has other files than the generator writes"
    for name in names:
        assert (tmp_path / "inputs" / name).read_text() == (REF_INPUTS / name).read_text(), f"plumed_inputs/{name} would change"
    assert (REF_INPUTS / "metad.dat").read_text() == (REF_EXPORT / "plumed.dat").read_text()
    assert (REF_INPUTS / "opes_metad.dat").read_text() == (REF_EXPORT / "plumed_opes.dat").read_text()


@needs_plumed
@needs_reference
def test_plumed_inputs_run_in_real_kernel(tmp_path):
    """The ready inputs in the real kernel (READ stands in for PYTORCH_MODEL): two walkers share
    hills through WALKERS_DIR; reweight.dat evaluates the final bias from HILLS (checked against
    the Gaussian sum in Python), REWEIGHT_BIAS gives bias/kT, and HISTOGRAM + CONVERT_TO_FES write
    free energies on the CV and on phi/psi."""
    from gmvae_cv.features import FeatureSpec

    info = read_cv_json(REF_EXPORT)
    spec = FeatureSpec.from_dict(info["feature_spec"])
    d, k = info["latent_dim"], info["n_clusters"]
    frames = np.load(REF_EXPORT / "frames.npy")
    top = AlanineDipeptide().mdtraj_topology
    traj = md.Trajectory(frames, top)
    traj.save_dcd(str(tmp_path / "ref.dcd"))
    stride = 500  # one hill per frame
    _prepare_standin(tmp_path, REF_EXPORT, tmp_path / "ref.dcd", spec, stride)
    # walkers: 0 runs first, then 1 reads HILLS.0 at start
    for i in (0, 1):
        text = (REF_INPUTS / f"walker_{i}.dat").read_text()
        assert f"WALKERS_ID={i}" in text and "WALKERS_N=4" in text and "WALKERS_DIR=." in text
        (tmp_path / f"walker_{i}.dat").write_text(_standin(text, d, k))
        run_driver(tmp_path, f"walker_{i}.dat", "traj.dcd", stride)
    n = len(frames)
    assert _hills(tmp_path / "HILLS.0").shape[0] == n - 1  # one hill per frame after step 0
    col1 = read_colvar(tmp_path / "COLVAR.1")
    s1 = np.stack([col1[f"cv.node-{i}"] for i in range(d)], axis=1)
    # walker 1 reads HILLS.0 after its first step (WALKERS_RSTRIDE) and has deposited nothing yet
    # at step 500: its bias there is the sum of walker 0's hills
    assert col1["metad.bias"][0] == 0.0
    want = _gaussian_bias(_hills(tmp_path / "HILLS.0"), s1[1:2], d)[0]
    assert want > 0.1 and abs(col1["metad.bias"][1] - want) < 2e-3 * max(1.0, want)
    # plain METAD on the same frames, then reweighting with its HILLS
    (tmp_path / "metad.dat").write_text(_standin((REF_INPUTS / "metad.dat").read_text(), d, k))
    run_driver(tmp_path, "metad.dat", "traj.dcd", stride)
    (tmp_path / "reweight.dat").write_text(_standin((REF_INPUTS / "reweight.dat").read_text(), d, k))
    hills_before = (tmp_path / "HILLS").read_text()
    run_driver(tmp_path, "reweight.dat", "traj.dcd", stride)
    body = lambda t: [l for l in t.splitlines() if not l.startswith("#")]  # noqa: E731
    assert body((tmp_path / "HILLS").read_text()) == body(hills_before), "reweight.dat must not add hills"
    rw = read_colvar(tmp_path / "COLVAR_REWEIGHT")
    s = np.stack([rw[f"cv.node-{i}"] for i in range(d)], axis=1)
    final = _gaussian_bias(_hills(tmp_path / "HILLS"), s, d)
    np.testing.assert_allclose(rw["metad.bias"], final, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(rw["rw"], rw["metad.bias"] / KT300, rtol=1e-4, atol=1e-6)
    phi_psi = md.compute_dihedrals(traj, np.array(list(_alanine_torsions().values())))
    np.testing.assert_allclose(np.stack([rw["phi"], rw["psi"]], axis=1), phi_psi, atol=1e-4)
    for name in ("fes_cv.dat", "fes_torsions.dat"):
        fes = np.loadtxt(tmp_path / name, comments="#", ndmin=2)
        assert fes.shape[1] >= 3 and np.isfinite(fes[:, 2]).any()
    # OPES input parses and runs
    (tmp_path / "opes_metad.dat").write_text(_standin((REF_INPUTS / "opes_metad.dat").read_text(), d, k))
    run_driver(tmp_path, "opes_metad.dat", "traj.dcd", stride)


@needs_reference
def test_files_from_before_the_names_were_unified_still_load(tmp_path):
    """cv.json with 'D'/'K' and a spec with 'version' (as written before n_clusters/latent_dim and
    format_version), and a training run with 'k' and format 'gmvae-cv-run', load as today's."""
    from gmvae_cv import FeatureSpec, load_run

    exp = tmp_path / "exp"
    shutil.copytree(REF_EXPORT, exp)
    info = json.loads((exp / "cv.json").read_text())
    old = {("D" if k == "latent_dim" else "K" if k == "n_clusters" else k): v for k, v in info.items()}
    old["feature_spec"] = {("version" if k == "format_version" else k): v for k, v in info["feature_spec"].items()}
    (exp / "cv.json").write_text(json.dumps(old))
    got = read_cv_json(exp)
    assert (got["latent_dim"], got["n_clusters"]) == (info["latent_dim"], info["n_clusters"])
    assert FeatureSpec.from_dict(got["feature_spec"]) == FeatureSpec.from_dict(info["feature_spec"])
    run_json = json.loads((REF_EXPORT / "run" / "gmvae_run.json").read_text())
    assert run_json["format"] == "gmvae-cv-run" and "k" in run_json["config"]  # the stored run is old-style
    assert load_run(REF_EXPORT / "run").config.n_clusters == run_json["config"]["k"]
