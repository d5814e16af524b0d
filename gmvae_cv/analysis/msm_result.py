"""The model of :class:`~gmvae_cv.analysis.msm.MarkovAnalysis`: arrays with units, JSON, plots.

:class:`MarkovAnalysisResult` holds the implied timescales over lag times (maximum likelihood and
Bayesian bands) and, at the model lag, the transition matrix, stationary distribution, MFPTs and,
when PCCA+ was asked for, the metastable sets and the Chapman-Kolmogorov test. Times are in
``time_unit``, lag times in frames.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .._core.files import atomic_write_text
from .results_json import nan_to_none
from .plots import plot_implied_timescales
from .plots import plot_ck_test

__all__ = ["MarkovAnalysisResult"]


@dataclass
class MarkovAnalysisResult:
    """Implied timescales, CK test, PCCA+, stationary distribution and MFPTs of one dataset.

    All times are given in ``time_unit`` (lag times also in frames). Arrays are over the states
    ``0 .. n_states-1`` of the input; states outside the active set (largest connected set at the
    chosen lag) have ``nan`` entries.
    """

    dt: float
    time_unit: str
    lagtimes: np.ndarray  # (n_lags,) frames
    timescales: np.ndarray  # (n_lags, n_its) ML, time units (nan where undefined)
    timescales_mean: np.ndarray  # Bayesian sample mean
    timescales_lower: np.ndarray
    timescales_upper: np.ndarray
    confidence: float
    lagtime: int  # frames, the model lag
    n_states: int
    active_set: np.ndarray
    transition_matrix: np.ndarray  # (n_active, n_active)
    stationary_distribution: np.ndarray  # (n_states,) nan outside the active set
    stationary_lower: np.ndarray
    stationary_upper: np.ndarray
    mfpt: np.ndarray  # (n_states, n_states) i -> j, time units
    n_metastable: Optional[int] = None
    memberships: Optional[np.ndarray] = None  # (n_states, n_sets)
    metastable_assignment: Optional[np.ndarray] = None  # (n_states,) -1 outside active set
    metastable_distribution: Optional[np.ndarray] = None  # (n_sets,)
    metastable_mfpt: Optional[np.ndarray] = None  # (n_sets, n_sets)
    ck_lagtimes: Optional[np.ndarray] = None  # (n_ck,) frames, includes 0
    ck_predictions: Optional[np.ndarray] = None  # (n_ck, n_sets, n_sets)
    ck_predictions_lower: Optional[np.ndarray] = None
    ck_predictions_upper: Optional[np.ndarray] = None
    ck_estimates: Optional[np.ndarray] = None
    ck_estimates_lower: Optional[np.ndarray] = None
    ck_estimates_upper: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)

    @property
    def lagtimes_time(self) -> np.ndarray:
        """Lag times in ``time_unit``."""
        return self.lagtimes * self.dt

    def slowest_timescale(self, lag: Optional[int] = None) -> float:
        """The slowest ML implied timescale (time units) at ``lag`` frames (default: the model lag)."""
        lag = self.lagtime if lag is None else int(lag)
        i = int(np.flatnonzero(self.lagtimes == lag)[0])
        return float(self.timescales[i, 0])

    def to_dict(self) -> dict:
        def a(x):
            if x is None:
                return None
            x = np.asarray(x, dtype=float)
            return np.where(np.isfinite(x), x, np.nan).tolist()

        tu = self.time_unit
        d = {
            "format": "gmvae-cv/msm",
            "format_version": 1,
            "dt": {"unit": tu, "value": self.dt},
            "lagtimes": {"unit": "frames", "values": self.lagtimes.astype(int).tolist()},
            "implied_timescales": {
                "unit": tu,
                "maximum_likelihood": a(self.timescales),
                "bayesian_mean": a(self.timescales_mean),
                "lower": a(self.timescales_lower),
                "upper": a(self.timescales_upper),
                "confidence": self.confidence,
            },
            "model_lagtime": {"frames": int(self.lagtime), "time": self.lagtime * self.dt, "unit": tu},
            "n_states": self.n_states,
            "active_set": self.active_set.astype(int).tolist(),
            "transition_matrix": a(self.transition_matrix),
            "stationary_distribution": {"values": a(self.stationary_distribution), "lower": a(self.stationary_lower), "upper": a(self.stationary_upper)},
            "mfpt": {"unit": tu, "from_row_to_column": a(self.mfpt)},
            "pcca": None,
            "ck_test": None,
            "info": self.info,
        }
        if self.memberships is not None:
            d["pcca"] = {
                "n_metastable": self.n_metastable,
                "memberships": a(self.memberships),
                "assignment": self.metastable_assignment.astype(int).tolist(),
                "distribution": a(self.metastable_distribution),
                "mfpt": {"unit": tu, "from_row_to_column": a(self.metastable_mfpt)},
            }
        if self.ck_lagtimes is not None:
            d["ck_test"] = {
                "lagtimes": {"unit": "frames", "values": self.ck_lagtimes.astype(int).tolist()},
                "predictions": a(self.ck_predictions),
                "predictions_lower": a(self.ck_predictions_lower),
                "predictions_upper": a(self.ck_predictions_upper),
                "estimates": a(self.ck_estimates),
                "estimates_lower": a(self.ck_estimates_lower),
                "estimates_upper": a(self.ck_estimates_upper),
                "confidence": self.confidence,
            }
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write the results as JSON (atomically; ``nan`` as ``null``)."""
        atomic_write_text(path, json.dumps(nan_to_none(self.to_dict()), indent=1) + "\n")

    def plot_implied_timescales(self, path: str | os.PathLike, **kw: Any) -> None:
        """ITS against lag time, log scale, with confidence bands and the lag = timescale line."""
        plot_implied_timescales(self, path, **kw)

    def plot_ck_test(self, path: str | os.PathLike, **kw: Any) -> None:
        """The Chapman-Kolmogorov test as a matrix of panels (set i -> set j)."""
        plot_ck_test(self, path, **kw)

