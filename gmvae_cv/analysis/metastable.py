"""PCCA+ metastable sets and the Chapman-Kolmogorov test of an MSM (deeptime).

Steps of :meth:`gmvae_cv.analysis.msm.MarkovAnalysis.fit` when ``n_metastable`` is given:
:func:`pcca_sets` fills the metastable sets (memberships, assignment, distribution, MFPTs between
sets) of a :class:`~gmvae_cv.analysis.msm_result.MarkovAnalysisResult`, :func:`ck_test` its CK
test (with Bayesian error bands when posterior samples exist).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from deeptime.util import confidence_interval

from .._core.errors import GMVAEInputError
from .msm_result import MarkovAnalysisResult

__all__ = ["pcca_sets", "ck_test"]


def pcca_sets(res: MarkovAnalysisResult, ml: Any, n: int, active: np.ndarray, *, reversible: bool) -> None:
    """PCCA+ on the ML model at the model lag; fills the ``metastable_*`` fields of ``res``.

    Parameters
    ----------
    res : MarkovAnalysisResult
        Filled in place (``n_metastable``, ``memberships``, ``metastable_assignment``,
        ``metastable_distribution``, ``metastable_mfpt`` in ``res.time_unit``).
    ml : deeptime MarkovStateModel
        The maximum-likelihood model at ``res.lagtime``.
    n : int
        Number of metastable sets.
    active : (n_active,) int ndarray
        The input states of the model's active set.
    reversible : bool
        Whether the model was estimated reversibly (PCCA+ needs it).

    Raises
    ------
    GMVAEInputError
        For more sets than active states, or a non-reversible model.
    """
    if ml.n_states < n:
        raise GMVAEInputError(f"'n_metastable' is {n}, but the active set at lag {res.lagtime} has {ml.n_states} states")
    if not reversible:
        raise GMVAEInputError("PCCA+ needs a reversible MSM (reversible=True)")
    pcca = ml.pcca(n)
    mem = np.full((res.n_states, n), np.nan)
    mem[active] = pcca.memberships
    assign = np.full(res.n_states, -1, dtype=np.int64)
    assign[active] = pcca.assignments
    res.n_metastable = n
    res.memberships = mem
    res.metastable_assignment = assign
    res.metastable_distribution = np.asarray(pcca.coarse_grained_stationary_probability)
    mm = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                A = np.flatnonzero(pcca.assignments == i)
                B = np.flatnonzero(pcca.assignments == j)
                mm[i, j] = ml.mfpt(A, B) * res.dt if len(A) and len(B) else np.nan
    res.metastable_mfpt = mm


def ck_test(
    res: MarkovAnalysisResult,
    ml: Any,
    post: Optional[Any],
    models: Sequence[Any],
    *,
    n_samples: int,
    confidence: float,
) -> None:
    """The Chapman-Kolmogorov test at ``res.n_metastable`` sets; fills the ``ck_*`` fields of ``res``.

    Parameters
    ----------
    res : MarkovAnalysisResult
        With the PCCA+ sets filled (:func:`pcca_sets`); filled in place.
    ml : deeptime MarkovStateModel
        The ML model at the model lag (the test model when there is no posterior).
    post : deeptime BayesianPosterior, optional
        The posterior at the model lag; with it the test has error bands.
    models : sequence
        The models estimated at the CK lags (posteriors when ``post`` is given, else ML models).
    n_samples : int
        Posterior samples per model.
    confidence : float
        Width of the error bands.
    """
    test_model = post if post is not None else ml
    ck = test_model.ck_test(list(models), res.n_metastable, include_lag0=True, err_est=post is not None)
    res.ck_lagtimes = np.asarray(ck.lagtimes)
    res.ck_predictions = np.real(np.asarray(ck.predictions))
    res.ck_estimates = np.real(np.asarray(ck.estimates))
    if post is None:
        return
    lo = np.zeros_like(res.ck_predictions)
    hi = np.zeros_like(res.ck_predictions)
    for i, samples in enumerate(ck.predictions_samples):
        lo[i], hi[i] = confidence_interval(np.real(np.asarray(samples)), conf=confidence)
    res.ck_predictions_lower, res.ck_predictions_upper = lo, hi
    lo = np.zeros_like(res.ck_estimates)
    hi = np.zeros_like(res.ck_estimates)
    for i, samples in enumerate(ck.estimates_samples):
        s = np.real(np.asarray(samples))
        if len(s) == n_samples + 1:
            # deeptime 0.5's ck_test appends the lag-0 identity after the samples of each
            # model (a for/else); it is not a posterior sample
            s = s[:-1]
        if len(s) > 1:
            lo[i], hi[i] = confidence_interval(s, conf=confidence)
        else:
            lo[i] = hi[i] = res.ck_estimates[i]
    res.ck_estimates_lower, res.ck_estimates_upper = lo, hi
