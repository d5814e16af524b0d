r"""Verdicts on a Markov model (:class:`~gmvae_cv.analysis.msm.MarkovAnalysisResult`) that can fail.

:func:`timescale_resolved`
    An implied timescale is resolved when, from the model lag on, it lies above the lag time
    (its lower error bound above the lag: a process faster than the lag cannot be seen, and its
    estimate then only tracks the lag) and it is flat within its Bayesian errors over at least
    ``min_lags`` lags (their confidence intervals share a common value, the Markovian plateau).
:func:`ck_passed`
    The Chapman-Kolmogorov test passes when, at every multiple of the lag, the prediction of the
    model :math:`P(\tau)^k` and the estimate at lag :math:`k\tau` agree for every pair of PCCA+
    sets within their combined errors (the two confidence intervals overlap), or within
    ``atol`` where there are no errors.

Both return plain dicts for a run summary (``slowest_its_ps`` as [value, low, high],
``msm_lag_ps``, ``ck_passed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core.checks import check_int
from .._core.errors import GMVAEInputError

__all__ = ["timescale_resolved", "ck_passed", "msm_summary"]


def timescale_resolved(result: Any, *, process: int = 0, min_lags: int = 3) -> dict:
    """Is implied timescale ``process`` (0 = slowest) resolved above the lag, and flat over lags?

    Parameters
    ----------
    result : MarkovAnalysisResult
        With Bayesian errors (``n_samples > 0``); without them the ML value stands for its bounds.
    process : int
        Index of the timescale, slowest first.
    min_lags : int
        Lags, from the model lag up, over which the timescale must be above the lag and flat.

    Returns
    -------
    dict
        ``resolved`` (bool), ``value`` [ML, low, high] at the model lag (time units), ``lag``
        (time units), ``lags_checked`` (time units), ``above_lag`` per lag, ``flat`` (bool),
        ``reason`` (why not, or "").
    """
    min_lags = check_int(min_lags, "min_lags", minimum=2)
    lags = np.asarray(result.lagtimes)
    ts = np.asarray(result.timescales)
    if not 0 <= process < ts.shape[1]:
        raise GMVAEInputError(f"'process' is {process}, expected 0..{ts.shape[1] - 1} (timescales per lag)")
    lo = np.asarray(result.timescales_lower)[:, process]
    hi = np.asarray(result.timescales_upper)[:, process]
    ml = ts[:, process]
    lo = np.where(np.isfinite(lo), lo, ml)
    hi = np.where(np.isfinite(hi), hi, ml)
    sel = lags >= result.lagtime
    lag_t = lags[sel] * result.dt
    above = np.isfinite(lo[sel]) & (lo[sel] > lag_t)
    i0 = int(np.flatnonzero(lags == result.lagtime)[0])
    out = {
        "value": [float(ml[i0]), float(lo[i0]), float(hi[i0])],
        "lag": float(result.lagtime * result.dt),
        "lags_checked": lag_t.tolist(),
        "above_lag": above.tolist(),
        "time_unit": result.time_unit,
    }
    reason = ""
    if sel.sum() < min_lags:
        reason = f"only {int(sel.sum())} lag(s) from the model lag up, expected at least {min_lags}"
    elif not above[:min_lags].all():
        k = int(np.flatnonzero(~above[:min_lags])[0])
        reason = (f"the timescale at lag {lag_t[k]:g} {result.time_unit} is {ml[sel][k]:.3g} (lower bound {lo[sel][k]:.3g}), "
                  f"not above the lag: the process is not resolved")
    flat = bool(np.nanmax(lo[sel][:min_lags]) <= np.nanmin(hi[sel][:min_lags])) if sel.sum() >= min_lags else False
    if not reason and not flat:
        reason = (f"the timescale changes with the lag beyond its errors over lags {lag_t[:min_lags].tolist()} "
                  f"{result.time_unit}: the model is not Markovian there")
    out["flat"] = flat
    out["resolved"] = reason == ""
    out["reason"] = reason
    return out


def ck_passed(result: Any, *, atol: float = 0.05) -> dict:
    """Does the Chapman-Kolmogorov test of ``result`` pass (see the module docstring)?

    Parameters
    ----------
    result : MarkovAnalysisResult
        Fitted with ``n_metastable`` (PCCA+ sets) and ``ck_multiples >= 2``.
    atol : float
        Allowed absolute difference of probabilities where no error bands exist.

    Returns
    -------
    dict
        ``passed`` (bool), ``max_deviation`` (largest |prediction - estimate|), ``failures``: list of
        ``[lag (frames), set i, set j, prediction, estimate]``.
    """
    if result.ck_predictions is None:
        raise GMVAEInputError("the MSM has no CK test: fit MarkovAnalysis with n_metastable and ck_multiples >= 2")
    pred = np.asarray(result.ck_predictions)
    est = np.asarray(result.ck_estimates)
    lags = np.asarray(result.ck_lagtimes)
    have_err = result.ck_predictions_lower is not None and result.ck_estimates_lower is not None
    failures = []
    for k in range(len(lags)):
        if lags[k] <= result.lagtime:  # lag 0 and the model lag agree by construction
            continue
        for i in range(pred.shape[1]):
            for j in range(pred.shape[2]):
                p, e = float(pred[k, i, j]), float(est[k, i, j])
                if have_err:
                    plo, phi = result.ck_predictions_lower[k, i, j], result.ck_predictions_upper[k, i, j]
                    elo, ehi = result.ck_estimates_lower[k, i, j], result.ck_estimates_upper[k, i, j]
                    ok = plo <= ehi and elo <= phi
                else:
                    ok = abs(p - e) <= atol
                if not ok:
                    failures.append([int(lags[k]), i, j, p, e])
    checked = lags > result.lagtime
    if not checked.any():
        raise GMVAEInputError("the CK test has no lag beyond the model lag: use ck_multiples >= 2 (and trajectories long enough)")
    dev = float(np.max(np.abs(pred[checked] - est[checked])))
    return {"passed": not failures, "max_deviation": dev, "failures": failures}


def msm_summary(result: Any, *, min_lags: int = 3) -> dict:
    """The summary keys of a validated MSM: ``slowest_its_<unit>`` [value, low, high] at the model lag,
    ``msm_lag_<unit>``, ``its_resolved`` (:func:`timescale_resolved`, with its ``its_reason``) and
    ``ck_passed`` (:func:`ck_passed`; ``None`` without a CK test)."""
    v = timescale_resolved(result, min_lags=min_lags)
    u = result.time_unit
    out = {f"slowest_its_{u}": v["value"], f"msm_lag_{u}": v["lag"], "its_resolved": v["resolved"], "its_reason": v["reason"]}
    out["ck_passed"] = ck_passed(result)["passed"] if result.ck_predictions is not None else None
    return out
