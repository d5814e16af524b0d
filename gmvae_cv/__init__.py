"""gmvae-cv: Gaussian-mixture VAE collective variables for enhanced sampling.

Public API
----------
Model and training
    :class:`GMVAECV`, :func:`gmvae_loss`, :class:`GMVAELoss`, :class:`TrainConfig`, :func:`fit`,
    :func:`load_run`, :class:`GMVAERun`, :func:`make_dataset`
Features
    :class:`FeatureSpec`, :func:`load_trajectory_features`, :func:`features_from_selection`,
    :func:`alanine_heavy_atom_distances`, :func:`alanine_backbone_torsions`, :func:`phi_psi`
Export and check
    :func:`export`, :func:`check_export`, :class:`CheckReport`, :func:`load_openmm_cv`,
    :func:`openmm_component_force`, :class:`MetadSettings`, :class:`OpesSettings`,
    :func:`write_plumed_inputs`
Systems with known answers
    :class:`FourWell`, :class:`MullerBrown`, :class:`AlanineDipeptide`, :func:`alanine_basin`,
    :func:`toy_metadynamics` (well-tempered
    metadynamics writing PLUMED files), :func:`relaxation_times` (Smoluchowski generator)
Checking biased runs
    :func:`read_plumed`, :class:`PlumedFile` (COLVAR/HILLS), :class:`Hills`,
    :class:`ReweightedFES`, :class:`FESEstimator`, :class:`FreeEnergySurface`,
    :func:`ct_log_weights`, :func:`final_bias_log_weights`, :func:`bias_log_weights`
Markov state models
    :class:`MarkovAnalysis`, :class:`MarkovAnalysisResult`, :func:`gmvae_states`,
    :class:`TRAMAnalysis`, :class:`BiasedDataError`
Biasing in OpenMM
    :func:`load_cv`, :class:`CVModel` (a positions -> CV TorchScript file),
    :class:`WellTemperedMetadynamics` (the engine, used like ``openmm.app.Metadynamics``),
    :func:`run_metadynamics` (a restartable run directory: COLVAR, HILLS, checkpoint, run.json),
    :func:`load_md_system` (a user's System XML or PDB + force fields)
Analysis helpers
    :func:`cluster_confusion`
Errors
    :class:`GMVAEInputError`
"""

__version__ = "0.1.0"

import logging as _logging

from ._validation import GMVAEInputError
from .data import make_dataset
from .export import CheckReport, check_export, export, load_openmm_cv, openmm_component_force
from .features import (
    FeatureSpec,
    alanine_backbone_torsions,
    alanine_heavy_atom_distances,
    features_from_selection,
    load_trajectory_features,
    phi_psi,
)
from .fes import FESEstimator, FreeEnergySurface
from .hills import Hills
from .loss import GMVAELoss, gmvae_loss
from .metrics import cluster_confusion
from .model import GMVAECV
from .msm import BiasedDataError, MarkovAnalysis, MarkovAnalysisResult, TRAMAnalysis, gmvae_states
from .plumed_files import PlumedFile, read_plumed
from .reweight import ReweightedFES, bias_log_weights, ct_log_weights, final_bias_log_weights
from .plumed_inputs import MetadSettings, OpesSettings, write_plumed_inputs
from .systems import AlanineDipeptide, FourWell, MullerBrown, alanine_basin
from .systems.smoluchowski import relaxation_times
from .systems.toy_metad import toy_metadynamics
from .bias import SimulationUnstableError, WellTemperedMetadynamics
from .bias_run import BiasRunResult, run_metadynamics
from .cvfile import CVModel, load_cv
from .systems.openmm_files import load_md_system
from .train import GMVAERun, TrainConfig, fit, load_run

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "GMVAECV",
    "GMVAELoss",
    "gmvae_loss",
    "TrainConfig",
    "fit",
    "load_run",
    "GMVAERun",
    "make_dataset",
    "FeatureSpec",
    "load_trajectory_features",
    "features_from_selection",
    "alanine_heavy_atom_distances",
    "alanine_backbone_torsions",
    "phi_psi",
    "FourWell",
    "MullerBrown",
    "AlanineDipeptide",
    "alanine_basin",
    "cluster_confusion",
    "toy_metadynamics",
    "relaxation_times",
    "read_plumed",
    "PlumedFile",
    "Hills",
    "ReweightedFES",
    "FESEstimator",
    "FreeEnergySurface",
    "ct_log_weights",
    "final_bias_log_weights",
    "bias_log_weights",
    "MarkovAnalysis",
    "MarkovAnalysisResult",
    "gmvae_states",
    "TRAMAnalysis",
    "BiasedDataError",
    "export",
    "check_export",
    "CheckReport",
    "load_openmm_cv",
    "openmm_component_force",
    "MetadSettings",
    "OpesSettings",
    "write_plumed_inputs",
    "GMVAEInputError",
    "load_cv",
    "CVModel",
    "WellTemperedMetadynamics",
    "SimulationUnstableError",
    "run_metadynamics",
    "BiasRunResult",
    "load_md_system",
]
