"""Stage 3, deploy: a trained run as files that PLUMED and OpenMM load.

The export contract (:mod:`.contract`: ``cv.json``, sha256 of every file, the loaders
:func:`load_plumed_model`, :func:`load_openmm_cv`, :func:`openmm_component_force`), the TorchScript
modules and their marker (:mod:`.torchscript`), the positions -> CV files the OpenMM engine loads
(:class:`CVModel`, :func:`load_cv`), PLUMED input rendering (:mod:`.plumed`), the writer
(:func:`export`) and the check that loads every file as its consumer does (:func:`check_export`).
Imports :mod:`gmvae_cv.features` and :mod:`gmvae_cv.learn`.
"""

from .check import CheckReport, CheckRow, check_export
from .contract import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    load_openmm_cv,
    load_plumed_model,
    openmm_component_force,
    read_cv_json,
    verify_export,
)
from .loaders import CVModel, feature_cv, load_cv, random_gmvae_cv, save_cv_module
from .plumed import MetadSettings, OpesSettings, write_plumed_inputs
from .torchscript import read_marker
from .writer import export, render_export_readme

__all__ = [
    "EXPORT_FORMAT", "EXPORT_VERSION", "export", "read_cv_json", "verify_export", "render_export_readme",
    "load_plumed_model", "load_openmm_cv", "openmm_component_force", "check_export", "CheckRow",
    "CheckReport", "CVModel", "load_cv", "save_cv_module", "feature_cv", "random_gmvae_cv",
    "MetadSettings", "OpesSettings", "write_plumed_inputs", "read_marker",
]
