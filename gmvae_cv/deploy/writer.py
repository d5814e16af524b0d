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

Every TorchScript file carries the marker :data:`gmvae_cv.deploy.torchscript.MARKER_NAME` in its
``_extra_files``; loaders here reject files without it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .._core.errors import GMVAEInputError
from .._core.versions import versions
from .._core.checks import as_list_of_arrays, check_array, check_int
from .._core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from .plumed import (
    MetadSettings,
    OpesSettings,
    cv_statistics,
    render_plumed_dat,
    render_plumed_opes,
    resolve_bias_settings,
)
from .torchscript import (
    ClusterProbabilities,
    EncoderMean,
    PositionsCV,
    save_scripted,
)

from .._core.files import _umask
from .contract import (
    CLUSTERS_MODEL,
    CV_JSON,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    FRAMES,
    FRAMES_BOX,
    OPENMM_MODEL,
    PLUMED_DAT,
    PLUMED_MODEL,
    PLUMED_OPES_DAT,
    README,
    RUN_DIR,
    _CONTRACTS,
    _sha256,
)
from ..learn import RUN_JSON, GMVAERun, load_run
from .. import __version__

__all__ = ["export", "render_export_readme"]

def _as_run(run_or_path: Any):
    if isinstance(run_or_path, GMVAERun):
        return run_or_path
    if isinstance(run_or_path, (str, os.PathLike)):
        return load_run(run_or_path)
    raise GMVAEInputError(f"'run' is {type(run_or_path).__name__}, expected a GMVAERun or a run directory")


def _run_source(run: Any) -> str:
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
    return {"gmvae_cv_version": __version__, "n_features": spec.n_features, "latent_dim": d, "n_clusters": k,
            "feature_names": spec.names, "feature_units": spec.units}


def _marker(kind: str, spec: Any, d: int, k: int, extra: Optional[dict] = None) -> dict:
    contract = {key: v for key, v in _CONTRACTS[{"plumed": PLUMED_MODEL, "clusters": CLUSTERS_MODEL, "openmm": OPENMM_MODEL}[kind]].items()}
    m = {"kind": kind, **_identity(spec, d, k), "contract": contract}
    if extra:
        m.update(extra)
    return m


def _run_files(run: Any) -> dict[str, bytes]:
    """The run's ``gmvae_run.json`` and ``model.pt`` as bytes (from its folder, or serialised)."""
    if run.path is not None and (run.path / RUN_JSON).is_file() and (run.path / "model.pt").is_file():
        return {RUN_JSON: (run.path / RUN_JSON).read_bytes(), "model.pt": (run.path / "model.pt").read_bytes()}
    buf = io.BytesIO()
    torch.save(run.model.state_dict(), buf)
    return {RUN_JSON: (json.dumps(run.info, indent=2) + "\n").encode(), "model.pt": buf.getvalue()}


# ------------------------------------------------------------------------------------ export steps
def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, a non-empty folder that is no export, or an export without ``overwrite``."""
    if out.exists():
        if not out.is_dir():
            raise GMVAEInputError(f"{out}: exists and is not a directory; choose another 'out'")
        if any(out.iterdir()):
            if not (out / CV_JSON).is_file():
                raise GMVAEInputError(f"{out}: exists, is not empty and is not a gmvae-cv export; choose another 'out'")
            if not overwrite:
                raise GMVAEInputError(f"{out}: holds an export; pass overwrite=True (--overwrite) to replace it")


def _training_features(data: Any, xyz: Optional[np.ndarray], box: Optional[np.ndarray], spec: Any) -> tuple[Optional[np.ndarray], Optional[str]]:
    """The (n_frames, n_features) features the CV statistics are taken on, and where they came from.

    ``data`` when given (checked against the spec's feature count), else the features of the
    positions ``xyz`` (nm), else ``(None, None)``.
    """
    if data is not None:
        mats = [check_array(m, f"data[{i}]", ndim=2) for i, m in enumerate(as_list_of_arrays(data, "data"))]
        for i, m in enumerate(mats):
            if m.shape[1] != spec.n_features:
                raise GMVAEInputError(f"'data[{i}]' has {m.shape[1]} features, the model expects {spec.n_features}")
        return np.concatenate(mats), "data"
    if xyz is not None:
        return spec.compute(xyz, box), "frames"
    return None, None


def _write_models(tmp: Path, model: Any, spec: Any, d: int, k: int, xyz: Optional[np.ndarray]) -> dict[str, Path]:
    """The three TorchScript files (PLUMED CV, PLUMED clusters, OpenMM positions -> CV), checked frozen."""
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
    return {PLUMED_MODEL: tmp / PLUMED_MODEL, CLUSTERS_MODEL: tmp / CLUSTERS_MODEL, OPENMM_MODEL: tmp / OPENMM_MODEL}


def _write_run_copy(tmp: Path, run: Any) -> dict[str, Path]:
    """The run's ``run.json`` and ``model.pt`` under ``run/``."""
    files = {}
    for name, blob in _run_files(run).items():
        atomic_write_bytes(tmp / RUN_DIR / name, blob)
        files[f"{RUN_DIR}/{name}"] = tmp / RUN_DIR / name
    return files


def _write_check_frames(tmp: Path, xyz: np.ndarray, box: Optional[np.ndarray], n_check_frames: int) -> dict[str, Path]:
    """Up to ``n_check_frames`` evenly spaced frames (float32 nm) and their boxes as ``.npy``."""
    files = {}
    idx = np.unique(np.linspace(0, xyz.shape[0] - 1, min(n_check_frames, xyz.shape[0])).round().astype(int))
    arrays = {FRAMES: xyz[idx].astype(np.float32)}
    if box is not None:
        arrays[FRAMES_BOX] = box[idx].astype(np.float32)
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)  # .npy bytes are reproducible (.npz hold timestamps)
        atomic_write_bytes(tmp / name, buf.getvalue())
        files[name] = tmp / name
    return files


def _cv_info(run: Any, model: Any, spec: Any, d: int, k: int, stats: Optional[dict], bias: dict, frames_box: Optional[bool]) -> dict[str, Any]:
    """The content of ``cv.json`` without ``files``.

    ``frames_box`` is ``None`` without check frames, else whether they have boxes.
    """
    norm = getattr(model, "norm_in", None)
    return {
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
            {"positions": FRAMES, "box": FRAMES_BOX if frames_box else None} if frames_box is not None else None
        ),
        "versions": versions("torch", "openmm"),
    }


def _write_texts(tmp: Path, info: dict, spec: Any) -> dict[str, Path]:
    """``README.md``, ``plumed.dat`` and ``plumed_opes.dat`` rendered from ``info``."""
    atomic_write_text(tmp / README, render_export_readme(info))
    atomic_write_text(tmp / PLUMED_DAT, render_plumed_dat(info, spec))
    atomic_write_text(tmp / PLUMED_OPES_DAT, render_plumed_opes(info, spec))
    return {README: tmp / README, PLUMED_DAT: tmp / PLUMED_DAT, PLUMED_OPES_DAT: tmp / PLUMED_OPES_DAT}


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``, replacing an old export there."""
    os.chmod(tmp, 0o777 & ~_umask())
    if out.exists():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


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
        default SIGMA and grid (:mod:`gmvae_cv.deploy.plumed`) and is summarised in ``cv.json``.
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
    _check_out(out, overwrite)
    model = run.model.eval()
    d, k = int(run.config.latent_dim), int(run.config.n_clusters)
    xyz = box = None
    if frames is not None:
        xyz, box = _frames_arrays(frames, spec)
    x, stats_source = _training_features(data, xyz, box, spec)
    stats = None
    if x is not None:
        tr = run.transform(x)
        stats = cv_statistics(tr["z"], tr["cluster_probs"], source=stats_source)
    bias = resolve_bias_settings(metad or MetadSettings(), opes or OpesSettings(), stats, d)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        files = _write_models(tmp, model, spec, d, k, xyz)
        files.update(_write_run_copy(tmp, run))
        if xyz is not None:
            files.update(_write_check_frames(tmp, xyz, box, n_check_frames))
        info = _cv_info(run, model, spec, d, k, stats, bias, None if xyz is None else box is not None)
        files.update(_write_texts(tmp, info, spec))
        info["files"] = {name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for name, p in sorted(files.items())}
        atomic_write_json(tmp / CV_JSON, info)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def render_export_readme(info: dict) -> str:
    """``README.md`` of an export: the contract of its files, with its numbers (from ``cv.json``)."""
    n, d, k = info["n_features"], info["latent_dim"], info["n_clusters"]
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
    shapes have made it fail there (see :class:`~gmvae_cv.deploy.torchscript.EncoderMean`), and OpenMM
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


