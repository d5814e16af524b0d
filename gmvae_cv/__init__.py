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
    metadynamics writing PLUMED files), :func:`relaxation_times` (Smoluchowski generator),
    :class:`DoubleWell`, :func:`exact_mfpt`, :func:`toy_infrequent_metadynamics` (rates with exact answers)
Checking biased runs
    :func:`read_plumed`, :class:`PlumedFile` (COLVAR/HILLS), :class:`Hills`,
    :class:`ReweightedFES`, :class:`FESEstimator`, :class:`FreeEnergySurface`,
    :func:`ct_log_weights`, :func:`final_bias_log_weights`, :func:`bias_log_weights`
Rates (infrequent metadynamics)
    :func:`escape_statistics`, :class:`EscapeStatistics`, :func:`free_energy_from_rates`,
    :func:`run_rates`, :func:`summarize_rates`, :class:`RateSettings` (independent runs on Dask)
Markov state models
    :class:`MarkovAnalysis`, :class:`MarkovAnalysisResult`, :func:`gmvae_states`,
    :class:`TRAMAnalysis`, :class:`BiasedDataError`
Biasing in OpenMM
    :func:`load_cv`, :class:`CVModel` (a positions -> CV TorchScript file),
    :class:`WellTemperedMetadynamics` (the engine, used like ``openmm.app.Metadynamics``),
    :func:`run_metadynamics` (a restartable run directory: COLVAR, HILLS, checkpoint, run.json),
    :func:`load_md_system` (a user's System XML or PDB + force fields)
Workflows
    :func:`explore` (train, bias, retrain from a stuck run), :class:`ExploreSettings`
Analysis helpers
    :func:`cluster_confusion`
Errors
    :class:`GMVAEInputError`, :class:`SimulationUnstableError`
"""

__version__ = "0.1.0"

from ._core.lazy import lazy_names as _lazy_names
import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING

# Public name -> the subpackage (pipeline stage) that holds it. Names are imported on first use,
# so that ``import gmvae_cv`` (and ``gmvae-cv --help``) does not pull in torch, Lightning, mlcolvar
# or OpenMM before they are needed.
_PUBLIC = {
    "GMVAECV": "learn",
    "GMVAELoss": "learn",
    "gmvae_loss": "learn",
    "TrainConfig": "learn",
    "fit": "learn",
    "load_run": "learn",
    "GMVAERun": "learn",
    "make_dataset": "learn",
    "feature_inputs": "learn",
    "FeatureSpec": "features",
    "load_trajectory_features": "features",
    "resolve_spec": "features",
    "features_from_selection": "features",
    "alanine_heavy_atom_distances": "features",
    "alanine_backbone_torsions": "features",
    "phi_psi": "features",
    "backbone_torsions": "features",
    "AAQAA3": "systems",
    "Polystyrene": "systems",
    "explain": "analysis.explain",
    "select_n_clusters": "learn.selection",
    "FourWell": "systems",
    "MullerBrown": "systems",
    "AlanineDipeptide": "systems",
    "alanine_basin": "systems",
    "cluster_confusion": "analysis",
    "toy_metadynamics": "systems.toy_metad",
    "relaxation_times": "systems.smoluchowski",
    "DoubleWell": "systems.toy_rates",
    "exact_mfpt": "systems.toy_rates",
    "toy_infrequent_metadynamics": "systems.toy_rates",
    "escape_statistics": "analysis",
    "EscapeStatistics": "analysis",
    "free_energy_from_rates": "analysis",
    "run_rates": "workflows.rates",
    "summarize_rates": "workflows.rates",
    "RateSettings": "workflows.rates",
    "read_plumed": "analysis",
    "PlumedFile": "analysis",
    "Hills": "analysis",
    "ReweightedFES": "analysis",
    "FESEstimator": "analysis",
    "FreeEnergySurface": "analysis",
    "ct_log_weights": "analysis",
    "final_bias_log_weights": "analysis",
    "bias_log_weights": "analysis",
    "MarkovAnalysis": "analysis",
    "MarkovAnalysisResult": "analysis",
    "gmvae_states": "analysis",
    "TRAMAnalysis": "analysis",
    "BiasedDataError": "analysis",
    "export": "deploy",
    "check_export": "deploy",
    "CheckReport": "deploy",
    "load_openmm_cv": "deploy",
    "openmm_component_force": "deploy",
    "MetadSettings": "deploy",
    "OpesSettings": "deploy",
    "write_plumed_inputs": "deploy",
    "GMVAEInputError": "_core.errors",
    "load_cv": "deploy",
    "CVModel": "deploy",
    "WellTemperedMetadynamics": "metad",
    "SimulationUnstableError": "_core.errors",
    "run_metadynamics": "metad",
    "run_opes": "metad",
    "OPESBias": "metad",
    "RunSettings": "metad",
    "BiasRunResult": "metad",
    "load_md_system": "metad",
    "explore": "workflows.explore",
    "ExploreSettings": "workflows.explore",
}

__all__ = list(_PUBLIC)


__getattr__, __dir__ = _lazy_names(__name__, _PUBLIC, globals())


if _TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ._core.errors import GMVAEInputError, SimulationUnstableError
    from .analysis import *  # noqa: F403
    from .deploy import *  # noqa: F403
    from .features import *  # noqa: F403
    from .learn import *  # noqa: F403
    from .metad import *  # noqa: F403
    from .systems import *  # noqa: F403
    from .systems.smoluchowski import relaxation_times
    from .systems.toy_metad import toy_metadynamics
    from .systems.toy_rates import DoubleWell, exact_mfpt, toy_infrequent_metadynamics
    from .workflows.rates import RateSettings, run_rates, summarize_rates

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
