"""Check an export the way its consumers load it: PLUMED's pattern (freeze, optimize_for_inference)
on the stored frames against the Python model, finite differences, and OpenMM-Torch on positions."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import openmm

from .._core.errors import GMVAEInputError
from .._core.checks import check_int, load_array_file
from .._core.files import atomic_write_json
from .plumed import (
    render_plumed_opes,
)
from .torchscript import (
    load_scripted,
)

from .contract import (
    CLUSTERS_MODEL,
    CV_JSON,
    OPENMM_MODEL,
    PLUMED_DAT,
    PLUMED_MODEL,
    PLUMED_OPES_DAT,
    RUN_DIR,
    _sha256,
    load_openmm_cv,
    load_plumed_model,
    openmm_component_force,
    read_cv_json,
)
from .writer import _frames_arrays
from ..features import FeatureSpec
from .plumed import render_plumed_dat as _render_dat
from ..learn import load_run

__all__ = ["check_export", "CheckRow", "CheckReport"]

@dataclass
class CheckRow:
    """One comparison of :func:`check_export`.

    Attributes
    ----------
    item : str
        File or consumer checked.
    quantity : str
        What was compared with what.
    max_abs_error : float
        Largest absolute deviation (0/1 for yes/no checks).
    tolerance : float
        Largest accepted deviation.
    passed : bool
    note : str
        Extra information (numbers of frames, skipped coordinates, error messages).
    """

    item: str
    quantity: str
    max_abs_error: float
    tolerance: float
    passed: bool
    note: str = ""


@dataclass
class CheckReport:
    """Result of :func:`check_export`: a table of :class:`CheckRow`."""

    exp_dir: str
    rows: list = field(default_factory=list)
    n_frames: int = 0

    @property
    def passed(self) -> bool:
        """True if every row passed."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    def add(self, item: str, quantity: str, error: float, tolerance: float, note: str = "") -> CheckRow:
        err = float(error)
        row = CheckRow(item, quantity, err, float(tolerance), bool(np.isfinite(err) and err <= tolerance), note)
        self.rows.append(row)
        return row

    def to_dict(self) -> dict:
        return {
            "exp_dir": self.exp_dir,
            "passed": self.passed,
            "n_frames": self.n_frames,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    def to_text(self) -> str:
        """The table as fixed-width text, one row per comparison, and a verdict line."""
        head = ("item", "quantity", "max abs error", "tolerance", "ok")
        body = [
            (r.item, r.quantity + (f" [{r.note}]" if r.note else ""), f"{r.max_abs_error:.3g}", f"{r.tolerance:.3g}", "yes" if r.passed else "NO")
            for r in self.rows
        ]
        widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(5)]
        fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*b) for b in body]
        failed = sum(not r.passed for r in self.rows)
        lines.append(
            f"{'PASSED' if self.passed else 'FAILED'}: {len(self.rows) - failed}/{len(self.rows)} checks passed "
            f"on {self.n_frames} frames ({self.exp_dir})"
        )
        return "\n".join(lines)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON."""
        atomic_write_json(path, self.to_dict())


def _load_frames_files(exp_dir: Path, entry: Any) -> dict:
    """``{'positions': (F, n_atoms, 3), 'box': (F, 3, 3) or None}`` from the export's frame files."""
    if not isinstance(entry, dict) or not entry.get("positions"):
        raise GMVAEInputError(f"{exp_dir / CV_JSON}: 'check_frames' is {entry!r}, expected {{'positions': file, 'box': file or null}}")
    out = {"positions": load_array_file(exp_dir / entry["positions"], "positions", ndim=3)}
    if entry.get("box"):
        out["box"] = load_array_file(exp_dir / entry["box"], "box", ndim=3)
    return out


def _plumed_pattern_eval(frozen: torch.jit.ScriptModule, x32: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Values (F, n_out) and gradients (F, n_out, n_in) the way PYTORCH_MODEL computes them."""
    problems = []
    n_in = x32.shape[1]
    probe = frozen(torch.zeros(1, n_in))  # PLUMED's output-size probe
    if probe.dtype != torch.float32:
        problems.append(f"output dtype {probe.dtype}, expected float32")
    if probe.dim() != 2 or probe.shape[0] != 1:
        problems.append(f"output shape {tuple(probe.shape)}, expected (1, n_out)")
    n_out = probe.numel()
    vals = np.zeros((len(x32), n_out))
    grads = np.zeros((len(x32), n_out, n_in))
    for f in range(len(x32)):
        xin = torch.tensor(x32[f], dtype=torch.float32).view(1, n_in)
        xin.requires_grad_(True)
        out = frozen(xin)
        for j in range(n_out):
            g = torch.autograd.grad([out[:, j : j + 1]], [xin], grad_outputs=[torch.ones(1, 1)], retain_graph=True)[0]
            grads[f, j] = g.detach().numpy().reshape(-1)
        vals[f] = out.detach().contiguous().view(-1).numpy()
    return vals, grads, problems


def _python_reference(model: Any, x64: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and autograd gradients of the Python model (float64 copy) on features."""
    m = copy.deepcopy(model).double().eval()
    fn = m.forward_cv if what == "cv" else m.cluster_probabilities
    x = torch.tensor(x64, dtype=torch.float64, requires_grad=True)
    out = fn(x)
    grads = np.zeros((x64.shape[0], out.shape[1], x64.shape[1]))
    for j in range(out.shape[1]):
        g = torch.autograd.grad(out[:, j].sum(), x, retain_graph=True)[0]
        grads[:, j] = g.detach().numpy()
    return out.detach().numpy(), grads


def _finite_differences(module: torch.jit.ScriptModule, x64: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central differences (F, n_out, n_in) of a module evaluated in float64."""
    n_in = x64.shape[1]
    out = []
    with torch.no_grad():
        for f in range(len(x64)):
            x = torch.tensor(x64[f], dtype=torch.float64)
            cols = []
            for i in range(n_in):
                e = torch.zeros(n_in, dtype=torch.float64)
                e[i] = steps[i]
                plus = module((x + e).view(1, -1))[0]
                minus = module((x - e).view(1, -1))[0]
                cols.append(((plus - minus) / (2 * steps[i])).numpy())
            out.append(np.stack(cols, axis=1))
    return np.stack(out)


def _scale(a: np.ndarray) -> float:
    return max(1.0, float(np.max(np.abs(a)))) if a.size else 1.0


def check_export(
    exp_dir: str | os.PathLike,
    frames: Any = None,
    *,
    n_fd_frames: int = 4,
    out: str | os.PathLike | None = None,
) -> CheckReport:
    """Load each file of an export the way its consumer does and compare with the Python model.

    * sha256 of every file against ``cv.json``;
    Tolerances are those of a float32 network with the standardisation folded into its first
    layer (:func:`gmvae_cv.deploy.torchscript._fold`) against the float64 Python model: values within
    2e-5 and gradients within 5e-5 of the largest magnitude (at least 1; the reference export
    shows up to 5e-6 and 1.1e-5); OpenMM finite differences within 2e-3 (the CV is float32
    inside, so steps below 1e-4 nm drown in round-off).

    * ``model_plumed.ptc``/``model_clusters.ptc``, PLUMED's pattern (``torch.jit.load``, ``freeze``,
      ``optimize_for_inference``, float32 ``(1, n)`` input, autograd per output with
      ``retain_graph``): values and gradients against the Python model (``run/``, evaluated in
      float64 with autograd) and gradients against central finite differences of the exported
      module in float64; cluster rows sum to one;
    * ``model_openmm.pt``: the CV of float64 and float32 positions against the Python model on
      NumPy features; then per component a TorchForce (:func:`openmm_component_force`) in a
      ``CustomCVForce`` in a Reference-platform Context: energies against the Python CV, forces
      against the Python model's autograd gradient (through the torch features) and against
      central finite differences of the Context's energy; forces on atoms the features do not
      read are zero;
    * ``plumed.dat``/``plumed_opes.dat`` equal their rendering from ``cv.json``.

    Parameters
    ----------
    exp_dir : path
        The export directory.
    frames : mdtraj.Trajectory or (n_frames, n_atoms, 3) array, optional
        Positions in nm; default the export's ``frames.npy`` (and ``frames_box.npy``).
    n_fd_frames : int
        Frames used for the finite-difference comparisons.
    out : path, optional
        Where to save the report as JSON; default ``EXP/check.json``.

    Returns
    -------
    CheckReport

    Raises
    ------
    GMVAEInputError
        Not an export, a missing file, no frames, a file not made by gmvae-cv.
    """
    exp_dir = Path(exp_dir)
    info = read_cv_json(exp_dir)
    report = CheckReport(str(exp_dir))
    n_fd_frames = check_int(n_fd_frames, "n_fd_frames", minimum=1)

    # 1. integrity
    altered = set()
    for name, entry in info["files"].items():
        path = exp_dir / name
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (listed in {CV_JSON}); the export is incomplete, export again")
        ok = _sha256(path) == entry["sha256"]
        if not ok:
            altered.add(name)
        report.add(name, "sha256 equals cv.json", 0.0 if ok else 1.0, 0.0, "" if ok else "altered after export")

    spec = FeatureSpec.from_dict(info["feature_spec"], source=exp_dir / CV_JSON)
    run = load_run(exp_dir / RUN_DIR)
    if run.n_features != info["n_features"]:
        raise GMVAEInputError(f"{exp_dir / RUN_DIR}: the run has {run.n_features} features, {CV_JSON} says {info['n_features']}")

    if frames is None:
        if not info.get("check_frames"):
            raise GMVAEInputError(
                f"{exp_dir}: no frames stored in the export (it was made without frames); pass frames "
                "(CLI: --traj TRAJ --top TOP)"
            )
        frames = _load_frames_files(exp_dir, info["check_frames"])
    xyz, box = _frames_arrays(frames, spec)
    report.n_frames = int(xyz.shape[0])
    x64 = spec.compute(xyz, box)
    x32 = x64.astype(np.float32)
    fd_idx = np.unique(np.linspace(0, len(x64) - 1, min(n_fd_frames, len(x64))).round().astype(int))

    # 2. PLUMED's pattern
    norm_range = np.asarray(info["normalisation"]["range"] or np.ones(spec.n_features), dtype=float)
    for name, kind, what, n_out in ((PLUMED_MODEL, "plumed", "cv", info["latent_dim"]), (CLUSTERS_MODEL, "clusters", "clusters", info["n_clusters"])):
        frozen, marker = load_plumed_model(exp_dir / name, kind=kind, verify=False)
        bad = [key for key in ("n_features", "latent_dim", "n_clusters") if marker.get(key) != info[key]]
        report.add(name, "marker (n_features, latent_dim, n_clusters) equals cv.json", float(bool(bad)), 0.0, ", ".join(f"{b} differs" for b in bad))
        vals, grads, problems = _plumed_pattern_eval(frozen, x32)
        report.add(name, f"output float32 (1, {n_out}) after freeze + optimize_for_inference", float(bool(problems) or vals.shape[1] != n_out), 0.0, "; ".join(problems))
        ref_v, ref_g = _python_reference(run.model, x32.astype(np.float64), what)
        report.add(name, "value vs Python model", np.max(np.abs(vals - ref_v)), 2e-5 * _scale(ref_v), f"{len(x32)} frames")
        report.add(name, "autograd gradient vs Python autograd", np.max(np.abs(grads - ref_g)), 5e-5 * _scale(ref_g))
        unfrozen64 = load_scripted(exp_dir / name, kind=kind)[0].double()
        fd = _finite_differences(unfrozen64, x32[fd_idx].astype(np.float64), 1e-6 * norm_range)
        report.add(
            name, "autograd gradient vs finite differences (float64)", np.max(np.abs(grads[fd_idx] - fd)), 5e-5 * _scale(fd), f"{len(fd_idx)} frames"
        )
        if kind == "clusters":
            report.add(name, "rows sum to 1", np.max(np.abs(vals.sum(axis=1) - 1.0)), 1e-5)

    # 3. OpenMM
    try:
        _check_openmm(report, exp_dir, info, spec, run, xyz, box, x64, fd_idx)
    except GMVAEInputError:
        raise
    except Exception as exc:  # OpenMM and TorchScript raise several types
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        report.add("OpenMM TorchForce", "runs in a Reference-platform Context", float("inf"), 0.0, last[:200])

    # 4. PLUMED input text
    for name, render in ((PLUMED_DAT, _render_dat), (PLUMED_OPES_DAT, render_plumed_opes)):
        same = (exp_dir / name).read_text() == render(info, spec)
        report.add(name, "text equals its rendering from cv.json", 0.0 if same else 1.0, 0.0)
        args = _pytorch_args(exp_dir / name)
        report.add(name, "PYTORCH_MODEL ARG count equals n_features", float(any(len(a) != spec.n_features for a in args) or not args), 0.0)

    report.save(out if out is not None else exp_dir / "check.json")
    return report


def _pytorch_args(path: Path) -> list[list[str]]:
    out = []
    for line in path.read_text().splitlines():
        if "PYTORCH_MODEL" in line and not line.lstrip().startswith("#"):
            for word in line.split():
                if word.startswith("ARG="):
                    out.append(word[4:].split(","))
    return out


def _openmm_marker_row(report: CheckReport, name: str, marker: dict, info: dict) -> None:
    """The OpenMM model's marker (sizes, atoms) against ``cv.json``."""
    bad = [key for key in ("n_features", "latent_dim", "n_clusters", "n_atoms") if marker.get(key) != info[key]]
    if marker.get("atom_indices") != info.get("atom_indices"):
        bad.append("atom_indices")
    report.add(name, "marker (n_features, latent_dim, n_clusters, n_atoms, atoms) equals cv.json", float(bool(bad)), 0.0, ", ".join(f"{b} differs" for b in bad))


def _openmm_cv_rows(report: CheckReport, name: str, cv: Any, ref: np.ndarray, xyz: np.ndarray, box: Any) -> None:
    """The positions -> CV module on float64 and float32 positions (nm) against the Python CV ``ref`` (n_frames, D)."""
    d = ref.shape[1]
    got64 = np.zeros_like(ref)
    got32 = np.zeros_like(ref)
    dtype_ok = True
    for f in range(len(xyz)):
        bx64 = torch.tensor(box[f], dtype=torch.float64) if box is not None else None
        p64 = torch.tensor(xyz[f], dtype=torch.float64)
        o64 = cv(p64, bx64)
        o32 = cv(p64.float(), bx64.float() if bx64 is not None else None)
        dtype_ok &= o64.dtype == torch.float64 and o32.dtype == torch.float32 and tuple(o64.shape) == (d,)
        got64[f] = o64.detach().numpy()
        got32[f] = o32.detach().numpy()
    report.add(name, f"output shape ({d},) in the positions' dtype", 0.0 if dtype_ok else 1.0, 0.0)
    report.add(name, "CV (float64 positions) vs Python model", np.max(np.abs(got64 - ref)), 2e-5 * _scale(ref), f"{len(xyz)} frames")
    report.add(name, "CV (float32 positions) vs Python model", np.max(np.abs(got32 - ref)), 1e-4 * _scale(ref))


def _reference_forces(m64: Any, feat: Any, xyz: np.ndarray, box: Any, d: int, n_atoms: int) -> np.ndarray:
    """(n_frames, D, n_atoms, 3) forces -dCV_j/dx of the float64 Python model (autograd), per nm."""
    ref_forces = np.zeros((len(xyz), d, n_atoms, 3))
    for f in range(len(xyz)):
        p = torch.tensor(xyz[f], dtype=torch.float64, requires_grad=True)
        bx = torch.tensor(box[f], dtype=torch.float64) if box is not None else None
        s = m64.forward_cv(feat(p, bx).unsqueeze(0))[0]
        for j in range(d):
            ref_forces[f, j] = -torch.autograd.grad(s[j], p, retain_graph=True)[0].numpy()
    return ref_forces


def _component_context(path: Path, j: int, n_atoms: int, periodic: bool) -> Any:
    """An OpenMM Reference-platform Context whose energy (kJ/mol) is CV component ``j``."""
    system = openmm.System()
    for _ in range(n_atoms):
        system.addParticle(1.0)
    ccv = openmm.CustomCVForce("s")
    ccv.addCollectiveVariable("s", openmm_component_force(path, j, periodic=periodic, verify=False))
    system.addForce(ccv)
    return openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))


def _context_energy(ctx: Any, pos: np.ndarray) -> float:
    """Potential energy (kJ/mol) of ``ctx`` at positions ``pos`` (nm)."""
    ctx.setPositions(pos)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


def _fd_check_frame(
    ctx: Any, m64: Any, feat: Any, j: int, base: np.ndarray, bx: Any, forces: np.ndarray, ref_forces: np.ndarray, used: np.ndarray, h: float, fd_tol: float
) -> tuple[float, int, int]:
    """Central differences of the OpenMM energy against its forces on one frame, component ``j``.

    ``forces`` and ``ref_forces`` are (n_atoms, 3) OpenMM and Python autograd forces (kJ/mol/nm)
    at ``base`` (nm). Returns the largest deviation, the number of coordinates skipped next to a
    ReLU kink and the number of coordinates looked at.
    """

    def py_energy(pos: np.ndarray) -> float:
        with torch.no_grad():
            return float(m64.forward_cv(feat(torch.tensor(pos), bx).unsqueeze(0))[0, j])

    fd_err, n_skipped, n_fd = 0.0, 0, 0
    for a in used:
        for c in range(3):
            n_fd += 1
            e = np.zeros(3)
            e[c] = 1.0
            disp = np.zeros_like(base)
            # The CV is piecewise smooth (ReLU): where a kink lies within h, a central
            # difference is not the derivative. Such coordinates are found on the float64
            # Python model (differences at h and 1e-7 nm, and its autograd force, disagree)
            # and skipped, and counted.
            py = []
            for step in (h, 1e-7):
                disp[a] = e * step
                py.append(-(py_energy(base + disp) - py_energy(base - disp)) / (2 * step))
            if abs(py[0] - py[1]) > fd_tol / 4 or abs(py[1] - ref_forces[a, c]) > fd_tol / 4:
                n_skipped += 1
                continue
            disp[a] = e * h
            fd = -(_context_energy(ctx, base + disp) - _context_energy(ctx, base - disp)) / (2 * h)
            fd_err = max(fd_err, abs(fd - forces[a, c]))
    return fd_err, n_skipped, n_fd


def _check_openmm(report: CheckReport, exp_dir: Path, info: dict, spec: Any, run: Any, xyz: np.ndarray, box: Any, x64: np.ndarray, fd_idx: np.ndarray) -> None:
    """OpenMM rows of :func:`check_export`: the positions -> CV file, and each component as a TorchForce.

    Each CV component is the energy of a ``CustomCVForce`` on the Reference platform; its energy
    and forces are compared with the float64 Python model (value, autograd) and the forces with
    central differences of the energy (h = 1e-4 nm) on the ``fd_idx`` frames.
    """
    name = OPENMM_MODEL
    path = exp_dir / name
    cv = load_openmm_cv(path, verify=False)
    _openmm_marker_row(report, name, cv.gmvae_marker, info)

    # Python reference: CV on NumPy features, gradient through the torch features (float64)
    m64 = copy.deepcopy(run.model).double().eval()
    feat = spec.torch_module()
    with torch.no_grad():
        ref = m64.forward_cv(torch.tensor(x64)).numpy()
    d = int(info["latent_dim"])
    _openmm_cv_rows(report, name, cv, ref, xyz, box)
    ref_forces = _reference_forces(m64, feat, xyz, box, d, spec.n_atoms)

    used = np.asarray(info["atom_indices"], dtype=int)
    unused = np.setdiff1d(np.arange(spec.n_atoms), used)
    periodic = box is not None and spec.periodic
    energies = np.zeros((len(xyz), d))
    forces = np.zeros((len(xyz), d, spec.n_atoms, 3))
    h = 1e-4  # nm: the CV is float32 inside, so smaller steps drown in round-off
    fd_tol = 2e-3 * _scale(ref_forces)
    fd_err, n_skipped, n_fd = 0.0, 0, 0
    for j in range(d):
        ctx = _component_context(path, j, spec.n_atoms, periodic)
        for f in range(len(xyz)):
            if box is not None:
                ctx.setPeriodicBoxVectors(*box[f])
            ctx.setPositions(xyz[f])
            state = ctx.getState(getEnergy=True, getForces=True)
            energies[f, j] = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
            forces[f, j] = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
            if f not in fd_idx:
                continue
            bx = torch.tensor(box[f], dtype=torch.float64) if box is not None else None
            err, skipped, looked = _fd_check_frame(
                ctx, m64, feat, j, xyz[f].astype(np.float64), bx, forces[f, j], ref_forces[f, j], used, h, fd_tol
            )
            fd_err, n_skipped, n_fd = max(fd_err, err), n_skipped + skipped, n_fd + looked
        del ctx
    report.add("OpenMM TorchForce", "energy (kJ/mol) vs Python CV", np.max(np.abs(energies - ref)), 2e-5 * _scale(ref), f"Reference platform, {d} CustomCVForce")
    report.add("OpenMM TorchForce", "forces vs Python -dCV/dx (autograd)", np.max(np.abs(forces - ref_forces)), 5e-5 * _scale(ref_forces))
    frac = n_skipped / max(1, n_fd)
    report.add(
        "OpenMM TorchForce",
        "forces vs finite differences of the energy",
        fd_err if frac <= 0.2 else float("inf"),
        fd_tol,
        f"h={h} nm, {len(fd_idx)} frames, {n_fd - n_skipped}/{n_fd} coordinates, {n_skipped} next to ReLU kinks skipped",
    )
    report.add("OpenMM TorchForce", "forces on atoms the features do not read", np.max(np.abs(forces[:, :, unused])) if len(unused) else 0.0, 0.0)
