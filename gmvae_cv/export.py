"""Export a trained GMVAE CV for PLUMED and OpenMM, and check the export the way its consumers load it.

:func:`export` writes one directory (``EXP``):

=====================  ==========================================================================
file                   content
=====================  ==========================================================================
``model_plumed.ptc``   TorchScript for PLUMED's ``PYTORCH_MODEL``: features, float32 ``(1, n_features)``
                       in spec order and units -> the CV, float32 ``(1, D)``. Standardisation folded in.
``model_clusters.ptc`` The same contract -> q(y|x), float32 ``(1, K)``, rows summing to one.
``model_openmm.pt``    TorchScript for OpenMM-Torch: ``forward(positions, box=None)``, positions
                       ``(n_atoms, 3)`` in nm of any float dtype -> the CV ``(D,)`` in that dtype;
                       features computed inside from the spec. See :func:`load_openmm_cv`,
                       :func:`openmm_component_force`.
``plumed.dat``         Feature lines + ``PYTORCH_MODEL`` (``cv``, ``clusters``) + well-tempered
                       ``METAD`` on ``cv.node-0 ...`` + ``PRINT``; ``plumed_opes.dat``: ``OPES_METAD``.
``cv.json``            Spec, normalisation, D, K, units, CV statistics and bias choices, training
                       summary, package versions, sha256 of every other file.
``run/``               A copy of the run (``gmvae_run.json``, ``model.pt``): the Python model that
                       :func:`check_export` compares the files with.
``frames.npy``         Up to ``n_check_frames`` positions (nm, float32, ``(F, n_atoms, 3)``) of real
                       frames for :func:`check_export` (when ``frames`` are given), with
                       ``frames_box.npy`` (``(F, 3, 3)``, rows, nm) if they have a box.
``README.md``          The contract of these files, with this export's numbers.
=====================  ==========================================================================

Every TorchScript file carries the marker :data:`gmvae_cv.torchscript.MARKER_NAME` in its
``_extra_files``; loaders here reject files without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ._validation import (
    GMVAEInputError,
    as_list_of_arrays,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_array,
    check_int,
    load_array_file,
)
from .plumed_inputs import (
    MetadSettings,
    OpesSettings,
    cv_statistics,
    render_plumed_dat,
    render_plumed_opes,
    resolve_bias_settings,
)
from .torchscript import (
    ClusterProbabilities,
    CVComponent,
    EncoderMean,
    PositionsCV,
    load_scripted,
    save_scripted,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "export",
    "read_cv_json",
    "verify_export",
    "render_export_readme",
    "load_plumed_model",
    "load_openmm_cv",
    "openmm_component_force",
    "check_export",
    "CheckRow",
    "CheckReport",
]

EXPORT_FORMAT = "gmvae-cv/export"
"""Value of ``format`` in ``cv.json``."""
EXPORT_VERSION = 1
"""Version of the export layout and contracts."""

CV_JSON = "cv.json"
PLUMED_MODEL = "model_plumed.ptc"
CLUSTERS_MODEL = "model_clusters.ptc"
OPENMM_MODEL = "model_openmm.pt"
PLUMED_DAT = "plumed.dat"
PLUMED_OPES_DAT = "plumed_opes.dat"
FRAMES = "frames.npy"
FRAMES_BOX = "frames_box.npy"
README = "README.md"
RUN_DIR = "run"

_CONTRACTS = {
    PLUMED_MODEL: {
        "kind": "plumed",
        "consumer": "PLUMED PYTORCH_MODEL (torch.jit.load, freeze, optimize_for_inference)",
        "input": "features, float32, shape (1, n_features) (any batch size B works), spec order and units",
        "output": "the CV (GMVAE encoder mean), float32, shape (1, D); PLUMED components node-0 ... node-{D-1}",
    },
    CLUSTERS_MODEL: {
        "kind": "clusters",
        "consumer": "PLUMED PYTORCH_MODEL",
        "input": "features, float32, shape (1, n_features), spec order and units",
        "output": "cluster probabilities q(y|x), float32, shape (1, K), rows summing to 1; components node-0 ... node-{K-1}",
    },
    OPENMM_MODEL: {
        "kind": "openmm",
        "consumer": "OpenMM-Torch TorchForce (via gmvae_cv.export.openmm_component_force) or any TorchScript user",
        "input": "forward(positions, box=None): positions (n_atoms, 3) in nm, any float dtype; box (3, 3) rows in nm or None",
        "output": "the CV, shape (D,), dtype of the positions, differentiable w.r.t. positions; network in float32",
    },
}


# ------------------------------------------------------------------------------------ helpers
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import platform

    from . import __version__

    out = {"gmvae_cv": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import openmm

        out["openmm"] = openmm.__version__
    except ImportError:  # pragma: no cover - openmm is a dependency
        pass
    return out


def _as_run(run_or_path: Any):
    from .train import GMVAERun, load_run

    if isinstance(run_or_path, GMVAERun):
        return run_or_path
    if isinstance(run_or_path, (str, os.PathLike)):
        return load_run(run_or_path)
    raise GMVAEInputError(f"'run' is {type(run_or_path).__name__}, expected a GMVAERun or a run directory")


def _run_source(run: Any) -> str:
    from .train import RUN_JSON

    return str(run.path / RUN_JSON) if run.path is not None else "run"


def _checked_spec(run: Any):
    """The run's FeatureSpec, checked against the model's feature count."""
    src = _run_source(run)
    if run.info.get("feature_spec") is None:
        raise GMVAEInputError(
            f"{src}: no 'feature_spec': the run was trained without a FeatureSpec, so PLUMED and OpenMM inputs "
            "cannot be written; train with fit(..., feature_spec=spec) (CLI: --spec)"
        )
    spec = run.feature_spec
    n_model = int(run.model.in_features)
    if spec.n_features != n_model:
        raise GMVAEInputError(
            f"{src}: 'feature_spec' has {spec.n_features} features, the model expects {n_model} "
            "(the spec does not belong to this model)"
        )
    if int(run.n_features) != n_model:
        raise GMVAEInputError(f"{src}: 'n_features' is {run.n_features}, the model expects {n_model}")
    names = run.info.get("feature_names")
    if names is not None and list(names) != spec.names:
        raise GMVAEInputError(f"{src}: 'feature_names' differ from the names in 'feature_spec'")
    return spec


def _frames_arrays(frames: Any, spec: Any) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(positions (F, n_atoms, 3) float64 nm, box (F, 3, 3) or None) from a trajectory or array."""
    box = None
    if hasattr(frames, "xyz") and hasattr(frames, "topology"):
        spec.check_topology(frames.topology, source="frames")
        xyz = frames.xyz
        if getattr(frames, "unitcell_vectors", None) is not None:
            box = check_array(frames.unitcell_vectors, "frames.unitcell_vectors", ndim=3)
    elif isinstance(frames, dict):
        xyz = frames["positions"]
        box = frames.get("box")
    else:
        xyz = frames
    xyz = check_array(xyz, "frames")
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[1:] != (spec.n_atoms, 3):
        raise GMVAEInputError(
            f"'frames' has shape {xyz.shape}, expected (n_frames, {spec.n_atoms}, 3) positions in nm for the feature spec"
        )
    if box is not None:
        box = check_array(box, "box")
        if box.ndim == 2:
            box = np.broadcast_to(box, (xyz.shape[0], 3, 3)).copy()
        if box.shape != (xyz.shape[0], 3, 3):
            raise GMVAEInputError(f"'box' has shape {box.shape}, expected ({xyz.shape[0]}, 3, 3) box vectors in nm")
    return xyz, box


def _identity(spec: Any, d: int, k: int) -> dict:
    """What both the TorchScript marker and cv.json say about the CV: version, sizes, features."""
    from . import __version__

    return {"gmvae_cv_version": __version__, "n_features": spec.n_features, "D": d, "K": k,
            "feature_names": spec.names, "feature_units": spec.units}


def _marker(kind: str, spec: Any, d: int, k: int, extra: Optional[dict] = None) -> dict:
    contract = {key: v for key, v in _CONTRACTS[{"plumed": PLUMED_MODEL, "clusters": CLUSTERS_MODEL, "openmm": OPENMM_MODEL}[kind]].items()}
    m = {"kind": kind, **_identity(spec, d, k), "contract": contract}
    if extra:
        m.update(extra)
    return m


def _run_files(run: Any) -> dict[str, bytes]:
    """The run's ``gmvae_run.json`` and ``model.pt`` as bytes (from its folder, or serialised)."""
    from .train import RUN_JSON

    if run.path is not None and (run.path / RUN_JSON).is_file() and (run.path / "model.pt").is_file():
        return {RUN_JSON: (run.path / RUN_JSON).read_bytes(), "model.pt": (run.path / "model.pt").read_bytes()}
    buf = io.BytesIO()
    torch.save(run.model.state_dict(), buf)
    return {RUN_JSON: (json.dumps(run.info, indent=2) + "\n").encode(), "model.pt": buf.getvalue()}


# ------------------------------------------------------------------------------------ export
def export(
    run_or_path: Any,
    out: str | os.PathLike,
    *,
    data: Any = None,
    frames: Any = None,
    metad: Optional[MetadSettings] = None,
    opes: Optional[OpesSettings] = None,
    n_check_frames: int = 32,
    overwrite: bool = False,
) -> Path:
    """Write the export directory of a trained GMVAE CV (see the module docstring for the files).

    Parameters
    ----------
    run_or_path : GMVAERun or path
        A run from :func:`gmvae_cv.fit` or its directory. It must carry a feature spec.
    out : path
        The export directory. Written in a temporary sibling folder and renamed when complete.
    data : (n_frames, n_features) array or list of them, optional
        Features of the training frames (raw, spec order and units). The CV on them sets the
        default SIGMA and grid (:mod:`gmvae_cv.plumed_inputs`) and is summarised in ``cv.json``.
    frames : mdtraj.Trajectory or (n_frames, n_atoms, 3) array, optional
        Positions in nm of real frames. Up to ``n_check_frames`` of them, evenly spaced, are stored
        in ``frames.npy`` for :func:`check_export`; when ``data`` is not given, their features
        are used as ``data``.
    metad, opes : MetadSettings, OpesSettings, optional
        Bias settings for ``plumed.dat`` and ``plumed_opes.dat``.
    n_check_frames : int
        Frames stored for the check.
    overwrite : bool
        Replace an existing export in ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    GMVAEInputError
        Run without feature spec, spec and model disagreeing on the feature count, data of the
        wrong width, ``out`` not empty (without ``overwrite``) or not an export.
    """

    run = _as_run(run_or_path)
    spec = _checked_spec(run)
    n_check_frames = check_int(n_check_frames, "n_check_frames", minimum=1)
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise GMVAEInputError(f"{out}: exists and is not a directory; choose another 'out'")
        if any(out.iterdir()):
            if not (out / CV_JSON).is_file():
                raise GMVAEInputError(f"{out}: exists, is not empty and is not a gmvae-cv export; choose another 'out'")
            if not overwrite:
                raise GMVAEInputError(f"{out}: holds an export; pass overwrite=True (--overwrite) to replace it")

    model = run.model.eval()
    d, k = int(run.config.latent_dim), int(run.config.k)

    xyz = box = None
    if frames is not None:
        xyz, box = _frames_arrays(frames, spec)
    if data is not None:
        mats = [check_array(m, f"data[{i}]", ndim=2) for i, m in enumerate(as_list_of_arrays(data, "data"))]
        for i, m in enumerate(mats):
            if m.shape[1] != spec.n_features:
                raise GMVAEInputError(f"'data[{i}]' has {m.shape[1]} features, the model expects {spec.n_features}")
        x = np.concatenate(mats)
        stats_source = "data"
    elif xyz is not None:
        x = spec.compute(xyz, box)
        stats_source = "frames"
    else:
        x = None
        stats_source = None
    stats = None
    if x is not None:
        tr = run.transform(x)
        stats = cv_statistics(tr["z"], tr["cluster_probs"], source=stats_source)
    bias = resolve_bias_settings(metad or MetadSettings(), opes or OpesSettings(), stats, d)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        files: dict[str, Path] = {}
        enc = EncoderMean(model)
        save_scripted(enc, tmp / PLUMED_MODEL, _marker("plumed", spec, d, k))
        save_scripted(ClusterProbabilities(model), tmp / CLUSTERS_MODEL, _marker("clusters", spec, d, k))
        openmm_extra = {
            "n_atoms": spec.n_atoms,
            "atom_indices": [int(a) for a in spec.atoms_used],
            "periodic": bool(spec.periodic),
            "feature_spec": spec.to_dict(),
        }
        save_scripted(PositionsCV(spec.torch_module(), EncoderMean(model)), tmp / OPENMM_MODEL, _marker("openmm", spec, d, k, openmm_extra))
        _check_frozen_openmm(tmp / OPENMM_MODEL, xyz[0] if xyz is not None else None, spec.n_atoms)
        files.update({PLUMED_MODEL: tmp / PLUMED_MODEL, CLUSTERS_MODEL: tmp / CLUSTERS_MODEL, OPENMM_MODEL: tmp / OPENMM_MODEL})
        for name, blob in _run_files(run).items():
            atomic_write_bytes(tmp / RUN_DIR / name, blob)
            files[f"{RUN_DIR}/{name}"] = tmp / RUN_DIR / name
        if xyz is not None:
            idx = np.unique(np.linspace(0, xyz.shape[0] - 1, min(n_check_frames, xyz.shape[0])).round().astype(int))
            arrays = {FRAMES: xyz[idx].astype(np.float32)}
            if box is not None:
                arrays[FRAMES_BOX] = box[idx].astype(np.float32)
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)  # .npy bytes are reproducible (.npz hold timestamps)
                atomic_write_bytes(tmp / name, buf.getvalue())
                files[name] = tmp / name

        norm = getattr(model, "norm_in", None)
        info: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_VERSION,
            **_identity(spec, d, k),
            "units": {
                "features": "per feature_units: nm (distances), rad (angles, raw torsions), 1 (sin/cos, contacts)",
                "positions": "nm",
                "cv": "latent units of the GMVAE (dimensionless)",
                "energy": "kJ/mol",
                "temperature": "K",
                "time": "MD steps (PACE, STRIDE)",
            },
            "models": {name: dict(c) for name, c in _CONTRACTS.items()},
            "normalisation": {
                "folded": norm is not None,
                "formula": "h = (x - mean) / range, folded into the first linear layers of q(y|x) and q(z|x,y)",
                "mean": norm.mean.double().tolist() if norm is not None else None,
                "range": norm.range.double().tolist() if norm is not None else None,
            },
            "cv_definition": "s(x) = sum_i q(y=i|x) mu_z(x, i), the mean of q(z|x) (GMVAECV.forward_cv)",
            "feature_spec": spec.to_dict(),
            "n_atoms": spec.n_atoms,
            "atom_indices": [int(a) for a in spec.atoms_used],
            "cv_statistics": stats,
            "plumed": bias,
            "training": {
                "config": run.info.get("config"),
                "summary": run.info.get("training"),
                "data": run.info.get("data"),
                "n_samples": run.info.get("n_samples"),
                "weighted": run.info.get("weighted"),
                "versions": run.info.get("versions"),
            },
            "check_frames": (
                {"positions": FRAMES, "box": FRAMES_BOX if box is not None else None} if xyz is not None else None
            ),
            "versions": _versions(),
        }
        atomic_write_text(tmp / README, render_export_readme(info))
        files[README] = tmp / README
        atomic_write_text(tmp / PLUMED_DAT, render_plumed_dat(info, spec))
        atomic_write_text(tmp / PLUMED_OPES_DAT, render_plumed_opes(info, spec))
        files[PLUMED_DAT] = tmp / PLUMED_DAT
        files[PLUMED_OPES_DAT] = tmp / PLUMED_OPES_DAT
        info["files"] = {name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for name, p in sorted(files.items())}
        atomic_write_json(tmp / CV_JSON, info)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def render_export_readme(info: dict) -> str:
    """``README.md`` of an export: the contract of its files, with its numbers (from ``cv.json``)."""
    n, d, k = info["n_features"], info["D"], info["K"]
    names = info["feature_names"]
    units = info["feature_units"]
    shown = ", ".join(f"`{a}` ({u})" for a, u in zip(names[:6], units[:6])) + (", ..." if n > 6 else "")
    stats = info.get("cv_statistics")
    lines = [
        "# GMVAE CV export",
        "",
        f"Written by gmvae-cv {info['gmvae_cv_version']} (`gmvae-cv export`). Check it with `gmvae-cv check <this folder>`",
        "(loads each file the way PLUMED and OpenMM do and compares with the Python model in `run/`).",
        "",
        "## The CV",
        "",
        f"{info['cv_definition']}: D = {d} components from n = {n} input features;",
        f"q(y|x) over K = {k} clusters. Inputs, in this order: {shown}",
        "(all names in `cv.json`, `feature_names`; the atoms in `feature_spec`, 0-based there, 1-based in `plumed.dat`).",
        "Standardisation (`normalisation` in `cv.json`) is folded into the first layers: feed raw features.",
        "",
        "## Files",
        "",
        "| file | consumer | input | output |",
        "| --- | --- | --- | --- |",
        f"| `model_plumed.ptc` | PLUMED `PYTORCH_MODEL` | features, float32, shape (1, {n}) | the CV, float32, shape (1, {d}): `cv.node-0` ... |",
        f"| `model_clusters.ptc` | PLUMED `PYTORCH_MODEL` | features, float32, shape (1, {n}) | q(y\\|x), float32, shape (1, {k}), rows sum to 1 |",
        f"| `model_openmm.pt` | OpenMM-Torch `TorchForce` | `forward(positions, box=None)`: positions ({info['n_atoms']}, 3) in nm, any float dtype; box (3, 3) rows in nm or None | the CV, shape ({d},), dtype of the positions |",
        "| `plumed.dat` | `gmx mdrun -plumed plumed.dat` (any PLUMED engine) | | features + `PYTORCH_MODEL` + well-tempered `METAD` + `PRINT` |",
        "| `plumed_opes.dat` | PLUMED | | the same with `OPES_METAD` |",
        "| `cv.json` | people, `gmvae-cv check` | | spec, normalisation, D, K, units, statistics, bias choices, training summary, versions, sha256 of every file |",
        "| `run/` | `gmvae_cv.load_run` | | the trained run the files were made from |",
        "| `frames.npy` | `gmvae-cv check` | | real frames (positions, nm) to check on |",
        "",
        "PLUMED loads the `.ptc` files with `torch.jit.load`, `torch.jit.freeze`, `torch.jit.optimize_for_inference`,",
        "evaluates them on a float32 (1, n) tensor and takes one autograd gradient per output. `PYTORCH_MODEL`",
        "needs a PLUMED built with libtorch (see the repository README, `scripts/build_plumed_libtorch.sh`);",
        "keep the `.ptc` files in the folder the MD engine runs in (FILE= paths are relative).",
        "",
        "In OpenMM, bias component i with `gmvae_cv.openmm_component_force('model_openmm.pt', i)`: a `TorchForce`",
        "whose energy in kJ/mol is CV component i, for a `CustomCVForce`. Every TorchScript file carries a",
        "`gmvae_cv.json` marker in its extra files (n_features, D, K, feature names; for OpenMM also n_atoms",
        "and the atom indices read).",
        "",
        "Units: features in nm (distances), rad (angles, raw torsions), 1 (sin/cos, contacts); positions nm;",
        "the CV in latent units; energies kJ/mol; temperature K; PACE and STRIDE in MD steps.",
        "",
    ]
    if stats:
        lines += [
            "## Bias settings",
            "",
            f"From the CV on {stats['n_frames']} training frames (`cv_statistics` in `cv.json`):",
            "",
            *[f"- {c}" for c in info["plumed"]["metad"]["choices"]],
            "",
        ]
    return "\n".join(lines)


def _check_frozen_openmm(path: Path, positions: Optional[np.ndarray], n_atoms: int) -> None:
    """Run ``model_openmm.pt`` as OpenMM-Torch does (``torch.jit.freeze``, forward, backward).

    A frozen graph is optimised by torch's profiling executor on its first call; some graph
    shapes have made it fail there (see :class:`~gmvae_cv.torchscript.EncoderMean`), and OpenMM
    would only report that when a Context first evaluates the force.
    """
    if positions is None:  # no frames given: spread the atoms over a 2 nm cube (seeded)
        positions = np.random.default_rng(0).uniform(0.0, 2.0, size=(n_atoms, 3))
    module = torch.jit.freeze(torch.jit.load(str(path), map_location="cpu").eval())
    try:
        for _ in range(3):  # the profiling executor optimises after the first calls
            pos = torch.tensor(np.asarray(positions, dtype=np.float64), requires_grad=True)
            out = module(pos)
            (grad,) = torch.autograd.grad(out.sum(), [pos])
            if not bool(torch.isfinite(out).all()) or not bool(torch.isfinite(grad).all()):
                raise RuntimeError("non-finite CV or gradient")
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(
            f"{path.name}: the frozen OpenMM model fails under torch {torch.__version__} ({last}); "
            "OpenMM-Torch freezes models the same way, so this export would not run. Please report it."
        ) from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------ reading an export
def read_cv_json(exp_dir: str | os.PathLike) -> dict:
    """Read and check ``EXP/cv.json`` (format marker and required fields).

    Raises
    ------
    GMVAEInputError
        Missing directory or file, invalid JSON, another format, missing fields.
    """
    exp_dir = Path(exp_dir)
    f = exp_dir / CV_JSON
    if not exp_dir.is_dir():
        raise GMVAEInputError(f"{exp_dir}: not a directory (expected an export made by 'gmvae-cv export')")
    if not f.is_file():
        raise GMVAEInputError(f"{f}: file not found ({exp_dir} is not a gmvae-cv export)")
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GMVAEInputError(f"{f}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != EXPORT_FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise GMVAEInputError(f"{f}: 'format' is {got!r}, expected {EXPORT_FORMAT!r}")
    if info.get("format_version") != EXPORT_VERSION:
        raise GMVAEInputError(f"{f}: 'format_version' is {info.get('format_version')!r}, this gmvae-cv reads {EXPORT_VERSION}")
    for key in ("n_features", "D", "K", "feature_spec", "files", "plumed"):
        if key not in info:
            raise GMVAEInputError(f"{f}: missing field '{key}'")
    for key in ("n_features", "D", "K"):
        v = info[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GMVAEInputError(f"{f}: '{key}' is {v!r}, expected a positive integer")
    if len(info["feature_spec"].get("features", [])) != info["n_features"]:
        raise GMVAEInputError(
            f"{f}: 'feature_spec' has {len(info['feature_spec'].get('features', []))} features, 'n_features' is {info['n_features']}"
        )
    return info


def verify_export(exp_dir: str | os.PathLike, *, files: Optional[Sequence[str]] = None) -> dict[str, tuple[str, str]]:
    """Check the sha256 of the export's files against ``cv.json``.

    Parameters
    ----------
    exp_dir : path
        The export directory.
    files : sequence of str, optional
        Only these (names as in ``cv.json['files']``); default all.

    Returns
    -------
    dict
        ``{name: (expected sha256, actual sha256)}`` for every file checked.

    Raises
    ------
    GMVAEInputError
        A listed file is missing or its sha256 differs (the message names the file).
    """
    exp_dir = Path(exp_dir)
    info = read_cv_json(exp_dir)
    listed = info["files"]
    names = list(listed) if files is None else list(files)
    out = {}
    for name in names:
        if name not in listed:
            raise GMVAEInputError(f"{exp_dir / CV_JSON}: 'files' does not list {name!r}")
        path = exp_dir / name
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (listed in {CV_JSON}); the export is incomplete, export again")
        got = _sha256(path)
        want = listed[name]["sha256"]
        if got != want:
            raise GMVAEInputError(
                f"{path}: sha256 is {got[:16]}..., {CV_JSON} records {want[:16]}...: the file was altered after export"
            )
        out[name] = (want, got)
    return out


def _verify_sibling(path: Path, verify: bool) -> None:
    """If ``path`` sits in an export directory that lists it, check its sha256."""
    if verify and (path.parent / CV_JSON).is_file():
        info = read_cv_json(path.parent)
        if path.name in info["files"]:
            verify_export(path.parent, files=[path.name])


def load_plumed_model(path: str | os.PathLike, *, kind: str = "plumed", verify: bool = True) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a ``.ptc`` file as PLUMED's ``PYTORCH_MODEL`` does: ``torch.jit.load`` on the CPU,
    ``eval``, ``torch.jit.freeze``, ``torch.jit.optimize_for_inference``.

    Parameters
    ----------
    path : path
        ``model_plumed.ptc`` or ``model_clusters.ptc``.
    kind : {'plumed', 'clusters'}
        Which model the marker must say it is.
    verify : bool
        If the file sits in an export directory, check its sha256 against ``cv.json``.

    Returns
    -------
    (torch.jit.ScriptModule, dict)
        The frozen, optimised module and the file's marker.
    """
    path = Path(path)
    module, marker = load_scripted(path, kind=kind)
    _verify_sibling(path, verify)
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(module.eval()))
    return frozen, marker


def load_openmm_cv(path: str | os.PathLike, *, verify: bool = True) -> torch.jit.ScriptModule:
    """Load ``model_openmm.pt`` and check that gmvae-cv made it.

    The module's contract: ``forward(positions, box=None)`` with positions ``(n_atoms, 3)`` in nm
    of any float dtype and box ``(3, 3)`` (rows, nm) or None returns the CV, shape ``(D,)``, in the
    positions' dtype, differentiable w.r.t. the positions. Its marker (``module_marker`` below)
    holds ``n_atoms``, ``atom_indices`` (0-based atoms the features read), ``D``, ``K``, the spec.

    Parameters
    ----------
    path : path
        The file.
    verify : bool
        If the file sits in an export directory, check its sha256 against ``cv.json``.

    Returns
    -------
    torch.jit.ScriptModule
        In eval mode, on the CPU; the marker is attached as the Python attribute ``gmvae_marker``.

    Raises
    ------
    GMVAEInputError
        Missing file, not TorchScript, no gmvae-cv marker or another kind, altered file.
    """
    path = Path(path)
    module, marker = load_scripted(path, kind="openmm")
    for key in ("n_atoms", "atom_indices", "D"):
        if key not in marker:
            raise GMVAEInputError(f"{path}: marker has no '{key}', expected an OpenMM model exported by gmvae-cv")
    _verify_sibling(path, verify)
    module.gmvae_marker = marker
    return module


def openmm_component_force(path: str | os.PathLike, i: int, *, periodic: bool = False, verify: bool = True):
    """Component ``i`` of ``model_openmm.pt`` as an OpenMM-Torch ``TorchForce`` whose energy is the CV.

    The force's energy (kJ/mol) equals CV component ``i`` and its forces are minus its gradient;
    use it inside a ``CustomCVForce`` (``addCollectiveVariable``) to bias the CV.

    Parameters
    ----------
    path : path
        ``model_openmm.pt``.
    i : int
        Component, ``0 <= i < D``.
    periodic : bool
        ``setUsesPeriodicBoundaryConditions``: OpenMM then passes the box to the model, which applies
        the minimum image if the spec is periodic.
    verify : bool
        Check the file's sha256 against a sibling ``cv.json``.

    Returns
    -------
    openmmtorch.TorchForce
    """
    from openmmtorch import TorchForce

    cv = load_openmm_cv(path, verify=verify)
    d = int(cv.gmvae_marker["D"])
    i = check_int(i, "i", minimum=0)
    if i >= d:
        raise GMVAEInputError(f"'i' is {i}, expected a component 0 <= i < D = {d}")
    force = TorchForce(torch.jit.script(CVComponent(cv, i)))
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    return force


# ------------------------------------------------------------------------------------ the check
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
    import copy

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
    layer (:func:`gmvae_cv.torchscript._fold`) against the float64 Python model: values within
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
    from .features import FeatureSpec
    from .plumed_inputs import render_plumed_dat as _render_dat
    from .train import load_run

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
    for name, kind, what, n_out in ((PLUMED_MODEL, "plumed", "cv", info["D"]), (CLUSTERS_MODEL, "clusters", "clusters", info["K"])):
        frozen, marker = load_plumed_model(exp_dir / name, kind=kind, verify=False)
        bad = [key for key in ("n_features", "D", "K") if marker.get(key) != info[key]]
        report.add(name, "marker (n_features, D, K) equals cv.json", float(bool(bad)), 0.0, ", ".join(f"{b} differs" for b in bad))
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


def _check_openmm(report: CheckReport, exp_dir: Path, info: dict, spec: Any, run: Any, xyz: np.ndarray, box: Any, x64: np.ndarray, fd_idx: np.ndarray) -> None:
    import openmm

    name = OPENMM_MODEL
    path = exp_dir / name
    cv = load_openmm_cv(path, verify=False)
    marker = cv.gmvae_marker
    bad = [key for key in ("n_features", "D", "K", "n_atoms") if marker.get(key) != info[key]]
    if marker.get("atom_indices") != info.get("atom_indices"):
        bad.append("atom_indices")
    report.add(name, "marker (n_features, D, K, n_atoms, atoms) equals cv.json", float(bool(bad)), 0.0, ", ".join(f"{b} differs" for b in bad))

    # Python reference: CV on NumPy features, gradient through the torch features (float64)
    import copy

    m64 = copy.deepcopy(run.model).double().eval()
    feat = spec.torch_module()
    with torch.no_grad():
        ref = m64.forward_cv(torch.tensor(x64)).numpy()
    d = int(info["D"])
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

    ref_forces = np.zeros((len(xyz), d, spec.n_atoms, 3))
    for f in range(len(xyz)):
        p = torch.tensor(xyz[f], dtype=torch.float64, requires_grad=True)
        bx = torch.tensor(box[f], dtype=torch.float64) if box is not None else None
        s = m64.forward_cv(feat(p, bx).unsqueeze(0))[0]
        for j in range(d):
            ref_forces[f, j] = -torch.autograd.grad(s[j], p, retain_graph=True)[0].numpy()

    used = np.asarray(info["atom_indices"], dtype=int)
    unused = np.setdiff1d(np.arange(spec.n_atoms), used)
    periodic = box is not None and spec.periodic
    energies = np.zeros((len(xyz), d))
    forces = np.zeros((len(xyz), d, spec.n_atoms, 3))
    h = 1e-4  # nm: the CV is float32 inside, so smaller steps drown in round-off
    fd_tol = 2e-3 * _scale(ref_forces)
    fd_err, n_skipped, n_fd = 0.0, 0, 0
    platform = openmm.Platform.getPlatformByName("Reference")
    for j in range(d):
        system = openmm.System()
        for _ in range(spec.n_atoms):
            system.addParticle(1.0)
        ccv = openmm.CustomCVForce("s")
        ccv.addCollectiveVariable("s", openmm_component_force(path, j, periodic=periodic, verify=False))
        system.addForce(ccv)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)

        def energy(pos: np.ndarray) -> float:
            ctx.setPositions(pos)
            return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)

        for f in range(len(xyz)):
            if box is not None:
                ctx.setPeriodicBoxVectors(*box[f])
            ctx.setPositions(xyz[f])
            state = ctx.getState(getEnergy=True, getForces=True)
            energies[f, j] = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
            forces[f, j] = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
            if f not in fd_idx:
                continue
            base = xyz[f].astype(np.float64)
            bx = torch.tensor(box[f], dtype=torch.float64) if box is not None else None

            def py_energy(pos: np.ndarray) -> float:
                with torch.no_grad():
                    return float(m64.forward_cv(feat(torch.tensor(pos), bx).unsqueeze(0))[0, j])

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
                    if abs(py[0] - py[1]) > fd_tol / 4 or abs(py[1] - ref_forces[f, j, a, c]) > fd_tol / 4:
                        n_skipped += 1
                        continue
                    disp[a] = e * h
                    fd = -(energy(base + disp) - energy(base - disp)) / (2 * h)
                    fd_err = max(fd_err, abs(fd - forces[f, j, a, c]))
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
