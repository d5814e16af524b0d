"""The export contract: which files an export holds (``cv.json``, the TorchScript models, the PLUMED
inputs), their formats, and how each consumer loads them (sha256 checked against ``cv.json``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from .._core.errors import GMVAEInputError
from .._core.checks import check_int
from .._core.jsonfile import read_json_file
from .torchscript import (
    current_names,
    CVComponent,
    load_scripted,
)


__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "read_cv_json", "verify_export", "load_plumed_model", "load_openmm_cv", "openmm_component_force"]

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
        "consumer": "OpenMM-Torch TorchForce (via gmvae_cv.openmm_component_force) or any TorchScript user",
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
    info = current_names(read_json_file(f, EXPORT_FORMAT, (EXPORT_VERSION,)))
    for key in ("n_features", "latent_dim", "n_clusters", "feature_spec", "files", "plumed"):
        if key not in info:
            raise GMVAEInputError(f"{f}: missing field '{key}'")
    for key in ("n_features", "latent_dim", "n_clusters"):
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
    for key in ("n_atoms", "atom_indices", "latent_dim"):
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
    from openmmtorch import TorchForce  # the plugin (CPU or CUDA build): loaded only to make a force

    cv = load_openmm_cv(path, verify=verify)
    d = int(cv.gmvae_marker["latent_dim"])
    i = check_int(i, "i", minimum=0)
    if i >= d:
        raise GMVAEInputError(f"'i' is {i}, expected a component 0 <= i < D = {d}")
    force = TorchForce(torch.jit.script(CVComponent(cv, i)))
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    return force


# ------------------------------------------------------------------------------------ the check
