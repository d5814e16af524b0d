"""Stage 5, analysis: checking biased and unbiased runs.

PLUMED files (:func:`read_plumed`, :class:`PlumedFile`), hills (:class:`Hills`), reweighting
(:func:`ct_log_weights`, :func:`final_bias_log_weights`, :func:`bias_log_weights`) and free
energies (:class:`FESEstimator` -> :class:`FreeEnergySurface`, :class:`ReweightedFES`), Markov
models (:class:`MarkovAnalysis`, :class:`TRAMAnalysis`), rates from infrequent metadynamics
(:func:`escape_statistics`, :mod:`.kinetics`), cluster metrics and plots.
Imports :mod:`gmvae_cv.metad` (the hill kernels) and the stages before it.
Names are imported when first used (PEP 562), so that reading PLUMED files or hills loads neither deeptime nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .._core.lazy import lazy_names as _lazy_names

_NAMES = {
    "KB_KJ_MOL_K": "fes",
    "FESEstimator": "fes",
    "FreeEnergySurface": "fes",
    "HillSumGrid": "hill_grid",
    "GridSpec": "hills",
    "Hills": "hills",
    "cluster_confusion": "metrics",
    "BiasedDataError": "msm",
    "MarkovAnalysis": "msm",
    "MarkovAnalysisResult": "msm",
    "TRAMAnalysis": "msm",
    "TRAMResult": "msm",
    "gmvae_states": "msm",
    "milestone": "dtrajs",
    "ck_passed": "msm_checks",
    "msm_summary": "msm_checks",
    "timescale_resolved": "msm_checks",
    "PlumedFile": "plumed_files",
    "PlumedFileWarning": "plumed_files",
    "read_plumed": "plumed_files",
    "write_plumed": "plumed_files",
    "ReweightedFES": "reweight",
    "bias_log_weights": "reweight",
    "ct_log_weights": "reweight",
    "final_bias_log_weights": "reweight",
    "EscapeStatistics": "kinetics",
    "escape_statistics": "kinetics",
    "free_energy_from_rates": "kinetics",
    "ks_exponential": "kinetics",
    "mean_time_interval": "kinetics",
    "rates_agree": "kinetics",
    "count_transitions": "states",
    "delta_f": "states",
    "delta_f_phi": "states",
    "delta_f_running": "states",
}

__all__ = list(_NAMES)

__getattr__, __dir__ = _lazy_names(__name__, _NAMES, globals())

if _TYPE_CHECKING:  # pragma: no cover
    from .fes import FESEstimator, FreeEnergySurface, KB_KJ_MOL_K  # noqa: F401
    from .hill_grid import HillSumGrid  # noqa: F401
    from .hills import GridSpec, Hills  # noqa: F401
    from .metrics import cluster_confusion  # noqa: F401
    from .msm import BiasedDataError, MarkovAnalysis, MarkovAnalysisResult, TRAMAnalysis, TRAMResult, gmvae_states  # noqa: F401
    from .dtrajs import milestone  # noqa: F401
    from .msm_checks import ck_passed, msm_summary, timescale_resolved  # noqa: F401
    from .plumed_files import PlumedFile, PlumedFileWarning, read_plumed, write_plumed  # noqa: F401
    from .reweight import ReweightedFES, bias_log_weights, ct_log_weights, final_bias_log_weights  # noqa: F401
    from .kinetics import EscapeStatistics, escape_statistics, free_energy_from_rates, ks_exponential, mean_time_interval, rates_agree  # noqa: F401
    from .states import count_transitions, delta_f, delta_f_phi, delta_f_running  # noqa: F401
