"""Stage 5, analysis: checking biased and unbiased runs.

PLUMED files (:func:`read_plumed`, :class:`PlumedFile`), hills (:class:`Hills`), reweighting
(:func:`ct_log_weights`, :func:`final_bias_log_weights`, :func:`bias_log_weights`) and free
energies (:class:`FESEstimator` -> :class:`FreeEnergySurface`, :class:`ReweightedFES`), Markov
models (:class:`MarkovAnalysis`, :class:`TRAMAnalysis`), rates from infrequent metadynamics
(:func:`escape_statistics`, :mod:`.kinetics`), cluster metrics and plots.
Imports :mod:`gmvae_cv.metad` (the hill kernels) and the stages before it.
"""

from .fes import KB_KJ_MOL_K, FESEstimator, FreeEnergySurface
from .hills import GridSpec, Hills
from .kinetics import EscapeStatistics, escape_statistics, free_energy_from_rates, ks_exponential, mean_time_interval, rates_agree
from .metrics import cluster_confusion
from .msm import BiasedDataError, MarkovAnalysis, MarkovAnalysisResult, TRAMAnalysis, TRAMResult, gmvae_states
from .plumed_files import PlumedFile, PlumedFileWarning, read_plumed, write_plumed
from .reweight import ReweightedFES, bias_log_weights, ct_log_weights, final_bias_log_weights

__all__ = [
    "KB_KJ_MOL_K", "FESEstimator", "FreeEnergySurface", "GridSpec", "Hills", "cluster_confusion",
    "BiasedDataError", "MarkovAnalysis", "MarkovAnalysisResult", "TRAMAnalysis", "TRAMResult", "gmvae_states",
    "PlumedFile", "PlumedFileWarning", "read_plumed", "write_plumed", "ReweightedFES", "bias_log_weights",
    "ct_log_weights", "final_bias_log_weights", "EscapeStatistics", "escape_statistics", "free_energy_from_rates",
    "ks_exponential", "mean_time_interval", "rates_agree",
]
