"""Stage 3, deploy: a trained run as files that PLUMED and OpenMM load.

The export contract (:mod:`.contract`: ``cv.json``, sha256 of every file, the loaders
:func:`load_plumed_model`, :func:`load_openmm_cv`, :func:`openmm_component_force`), the TorchScript
modules and their marker (:mod:`.torchscript`), the positions -> CV files the OpenMM engine loads
(:class:`CVModel`, :func:`load_cv`), PLUMED input rendering (:mod:`.plumed`), the writer
(:func:`export`) and the check that loads every file as its consumer does (:func:`check_export`).
Imports :mod:`gmvae_cv.features` and :mod:`gmvae_cv.learn`.
Names are imported when first used (PEP 562), so that loading a CV (:func:`load_cv`) does not load Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .._core.lazy import lazy_names as _lazy_names

_NAMES = {
    "EXPORT_FORMAT": "contract",
    "EXPORT_VERSION": "contract",
    "export": "writer",
    "read_cv_json": "contract",
    "verify_export": "contract",
    "render_export_readme": "writer",
    "load_plumed_model": "contract",
    "load_openmm_cv": "contract",
    "openmm_component_force": "contract",
    "check_export": "check",
    "CheckRow": "check",
    "CheckReport": "check",
    "CVModel": "loaders",
    "load_cv": "loaders",
    "save_cv_module": "loaders",
    "feature_cv": "loaders",
    "random_gmvae_cv": "loaders",
    "MetadSettings": "plumed",
    "OpesSettings": "plumed",
    "write_plumed_inputs": "plumed",
    "read_marker": "torchscript",
}

__all__ = list(_NAMES)

__getattr__, __dir__ = _lazy_names(__name__, _NAMES, globals())

if _TYPE_CHECKING:  # pragma: no cover
    from .contract import EXPORT_FORMAT, EXPORT_VERSION, load_openmm_cv, load_plumed_model, openmm_component_force, read_cv_json, verify_export  # noqa: F401
    from .writer import export, render_export_readme  # noqa: F401
    from .check import CheckReport, CheckRow, check_export  # noqa: F401
    from .loaders import CVModel, feature_cv, load_cv, random_gmvae_cv, save_cv_module  # noqa: F401
    from .plumed import MetadSettings, OpesSettings, write_plumed_inputs  # noqa: F401
    from .torchscript import read_marker  # noqa: F401
