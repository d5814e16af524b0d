r"""Rates from infrequent metadynamics: the statistics, as pure functions.

Infrequent metadynamics (Tiwary and Parrinello, PRL 111, 230602, 2013) deposits bias slowly enough
that the transition state stays unbiased; then the biased dynamics leaves a basin by the unbiased
pathways, only faster, and the physical time of a biased run of length :math:`t` is

.. math::
    t^* = \int_0^t e^{\beta V(s(t'), t')}\, dt' = \alpha\, t, \qquad
    \alpha = \langle e^{\beta V}\rangle_t ,

the acceleration factor :math:`\alpha` averaged along the run up to its first transition, with
:math:`V` the bias each frame feels. A rare event out of a basin is a Poisson process, so the
rescaled first-passage times :math:`t^*_i` of independent runs follow an exponential distribution
with mean :math:`\tau`. That they do is the test that the assumptions held (Salvalaglio, Tiwary
and Parrinello, JCTC 10, 1420, 2014): a bias that reached the transition state, or a CV that misses
the slow motion, gives times that are not exponential (or a :math:`\tau` that changes with the
deposition pace).

Functions
---------
:func:`acceleration_factor`, :func:`rescaled_time`
    :math:`\alpha` and :math:`t^*` of one run from its bias time series.
:func:`mean_time_interval`
    The maximum-likelihood :math:`\tau` with its exact confidence interval (chi-squared).
:func:`ks_exponential`
    The 2014 paper's procedure: :math:`\tau` fitted to the empirical CDF, Kolmogorov-Smirnov
    p-value against :math:`1 - e^{-t/\tau}`.
:func:`rates_agree`
    Likelihood-ratio test that several sets of times (e.g. at different paces) share one rate.
:func:`escape_statistics`
    All of it for one set of times, as a JSON-ready :class:`EscapeStatistics`.
:func:`free_energy_from_rates`
    :math:`F_B - F_A = k_BT \ln(\tau_{A\to B}/\tau_{B\to A})` with its interval.

Units: times in whatever unit the inputs carry (ps for MD runs), energies in the unit of ``kT``
(kJ/mol for MD runs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy.stats import chi2
from scipy.optimize import minimize_scalar
from scipy.stats import kstest
from scipy.stats import f as f_dist

from .._core.checks import check_array, check_positive
from .._core.errors import GMVAEInputError

__all__ = [
    "acceleration_factor",
    "rescaled_time",
    "mean_time_interval",
    "ks_exponential",
    "rates_agree",
    "EscapeStatistics",
    "escape_statistics",
    "free_energy_from_rates",
]


def _bias_kt(bias: Any, kT: float, name: str = "bias") -> np.ndarray:
    v = check_array(bias, name, ndim=1)
    if v.size == 0:
        raise GMVAEInputError(f"'{name}' is empty, expected the bias of at least one frame")
    if not np.all(np.isfinite(v)):
        raise GMVAEInputError(f"'{name}' has non-finite values, expected finite energies")
    return v / check_positive(kT, "kT")


def acceleration_factor(bias: Any, kT: float) -> float:
    r"""The acceleration factor :math:`\alpha = \langle e^{V/k_BT}\rangle` over equally spaced frames.

    Parameters
    ----------
    bias : (n_frames,) array_like
        Bias :math:`V` each frame felt, energy units of ``kT`` (kJ/mol for MD).
    kT : float
        Thermal energy, same units.

    Returns
    -------
    float
        :math:`\alpha \ge 1` for a non-negative bias (1 for no bias).

    Examples
    --------
    >>> acceleration_factor([0.0, 0.0], 2.5)
    1.0
    >>> round(acceleration_factor([0.0, 2.5 * np.log(3.0)], 2.5), 6)
    2.0
    """
    b = _bias_kt(bias, kT)
    m = float(b.max())
    return float(math.exp(m) * np.mean(np.exp(b - m)))


def rescaled_time(bias: Any, dt: float, kT: float) -> float:
    r"""The physical (unbiased) time of a biased run, :math:`t^* = \sum_i \Delta t\, e^{V_i/k_BT}`.

    Parameters
    ----------
    bias : (n_frames,) array_like
        Bias each interval of length ``dt`` felt (the frame at its start), energy units.
    dt : float
        Time between frames (ps for MD).
    kT : float
        Thermal energy, units of ``bias``.

    Returns
    -------
    float
        :math:`t^* = n\,\Delta t\,\alpha`, in the unit of ``dt``.

    Examples
    --------
    >>> rescaled_time([0.0, 0.0, 0.0], 0.5, 1.0)
    1.5
    """
    dt = check_positive(dt, "dt")
    b = _bias_kt(bias, kT)
    return float(dt * b.size * acceleration_factor(b, 1.0))


def _times(times: Any, name: str = "times", minimum: int = 1) -> np.ndarray:
    t = check_array(times, name, ndim=1)
    if t.size < minimum:
        raise GMVAEInputError(f"'{name}' has {t.size} value(s), expected at least {minimum} escape times")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise GMVAEInputError(f"'{name}' has non-finite or non-positive values, expected escape times > 0")
    return t


def mean_time_interval(times: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    r"""Maximum-likelihood mean escape time with its exact confidence interval.

    For :math:`n` exponential times with mean :math:`\tau`, :math:`2n\hat\tau/\tau` follows a
    chi-squared distribution with :math:`2n` degrees of freedom, so the interval is
    :math:`[2n\hat\tau/\chi^2_{2n}(1 - a/2),\ 2n\hat\tau/\chi^2_{2n}(a/2)]` with
    :math:`a = 1 - \text{confidence}`. The relative half-width is about :math:`1.96/\sqrt{n}`,
    wider above than below: a 95 % interval within +-30 % of :math:`\tau` takes 64 runs
    (``benchmarks/rates.py``, ``runs_for_error``).

    Parameters
    ----------
    times : (n,) array_like
        Escape times > 0 (any time unit).
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    (tau, low, high) : tuple of float
        In the unit of ``times``.

    Examples
    --------
    >>> tau, lo, hi = mean_time_interval([1.0, 2.0, 3.0])
    >>> tau, round(lo, 3), round(hi, 3)
    (2.0, 0.83, 9.698)
    """
    t = _times(times)
    if not 0.0 < confidence < 1.0:
        raise GMVAEInputError(f"'confidence' is {confidence}, expected a number in (0, 1)")
    n = t.size
    tau = float(t.mean())
    a = 1.0 - confidence
    low = 2.0 * n * tau / float(chi2.ppf(1.0 - a / 2.0, 2 * n))
    high = 2.0 * n * tau / float(chi2.ppf(a / 2.0, 2 * n))
    return tau, low, high


def ks_exponential(times: Any, *, tau: float | None = None) -> tuple[float, float, float]:
    r"""Kolmogorov-Smirnov test of escape times against a Poisson process (Salvalaglio et al. 2014).

    As in the 2014 paper, :math:`\tau` is fitted (least squares) to the empirical CDF of the
    times, :math:`F_n(t)`, with the model :math:`P(t) = 1 - e^{-t/\tau}`; the KS statistic
    :math:`D = \sup_t |F_n(t) - P(t)|` is then referred to the Kolmogorov distribution (the paper
    draws :math:`10^7` times from :math:`P` for a two-sample test, whose limit this is). With
    :math:`\tau` fitted to the same data the p-value is conservative (a true exponential passes
    more often than 95 % at p > 0.05); the paper's threshold is p = 0.05.

    Parameters
    ----------
    times : (n,) array_like
        Escape times > 0, at least 3.
    tau : float, optional
        Test against this mean instead of the fitted one.

    Returns
    -------
    (p_value, statistic, tau_fit) : tuple of float
        ``tau_fit`` in the unit of ``times`` (``tau`` if given).
    """
    t = np.sort(_times(times, minimum=3))
    n = t.size
    if tau is None:
        ecdf = (np.arange(1, n + 1) - 0.5) / n  # midpoints of the ECDF steps
        scale = float(np.median(t))

        def sse(log_tau: float) -> float:
            return float(np.sum((ecdf - (1.0 - np.exp(-t / math.exp(log_tau)))) ** 2))

        res = minimize_scalar(sse, bounds=(math.log(scale) - 10.0, math.log(scale) + 10.0), method="bounded",
                              options={"xatol": 1e-10})
        tau = float(math.exp(res.x))
    else:
        tau = check_positive(tau, "tau")
    ks = kstest(t, "expon", args=(0.0, tau))
    return float(ks.pvalue), float(ks.statistic), float(tau)


def rates_agree(groups: Sequence[Any]) -> float:
    r"""p-value of the hypothesis that groups of exponential times share one mean.

    The likelihood-ratio statistic of exponential samples, :math:`\Lambda = 2\sum_g n_g
    \ln(\bar t/\bar t_g)` with :math:`\bar t` the pooled mean, is referred to a chi-squared
    distribution with (groups - 1) degrees of freedom. Infrequent metadynamics at different
    deposition paces must give one rate; a small p-value says the rate moves with the pace.

    Parameters
    ----------
    groups : sequence of (n_g,) array_like
        Escape times per group (e.g. per pace), at least two groups.

    Returns
    -------
    float
        p-value.

    Examples
    --------
    >>> rates_agree([[1.0, 2.0, 3.0], [1.5, 2.5, 2.0]]) > 0.5
    True
    """
    gs = [_times(g, f"groups[{i}]") for i, g in enumerate(groups)]
    if len(gs) < 2:
        raise GMVAEInputError(f"'groups' has {len(gs)} group(s), expected at least 2")
    n = np.array([g.size for g in gs], dtype=float)
    s = np.array([g.sum() for g in gs])
    pooled = s.sum() / n.sum()
    lam = 2.0 * float(np.sum(n * np.log(pooled / (s / n))))
    return float(chi2.sf(max(lam, 0.0), len(gs) - 1))


@dataclass
class EscapeStatistics:
    """Statistics of one set of rescaled escape times (:func:`escape_statistics`).

    Attributes
    ----------
    n_runs : int
    tau, tau_low, tau_high : float
        Maximum-likelihood mean time and its confidence interval (unit of the times).
    confidence : float
    ks_pvalue, ks_statistic, tau_ks : float
        :func:`ks_exponential` (``tau_ks``: the mean fitted to the empirical CDF).
    median_over_mean : float
        ln 2 = 0.693 for a Poisson process.
    poisson : bool
        ``ks_pvalue >= 0.05``.
    time_unit : str
    """

    n_runs: int
    tau: float
    tau_low: float
    tau_high: float
    confidence: float
    ks_pvalue: float
    ks_statistic: float
    tau_ks: float
    median_over_mean: float
    poisson: bool
    time_unit: str

    def to_dict(self) -> dict:
        return asdict(self)


def escape_statistics(times: Any, *, confidence: float = 0.95, time_unit: str = "ps") -> EscapeStatistics:
    """Mean time with its interval, KS test and median/mean ratio of rescaled escape times.

    Parameters
    ----------
    times : (n,) array_like
        Rescaled escape times > 0, at least 3.
    confidence : float
        Coverage of the interval on the mean.
    time_unit : str
        Unit of ``times`` (recorded).

    Returns
    -------
    EscapeStatistics
    """
    t = _times(times, minimum=3)
    tau, lo, hi = mean_time_interval(t, confidence)
    p, d, tau_ks = ks_exponential(t)
    return EscapeStatistics(
        n_runs=int(t.size), tau=tau, tau_low=lo, tau_high=hi, confidence=float(confidence), ks_pvalue=p,
        ks_statistic=d, tau_ks=tau_ks, median_over_mean=float(np.median(t) / tau), poisson=bool(p >= 0.05),
        time_unit=str(time_unit),
    )


def free_energy_from_rates(forward: Any, backward: Any, kT: float, *, confidence: float = 0.95) -> tuple[float, float, float]:
    r""":math:`F_B - F_A = k_BT \ln(\tau_{A\to B} / \tau_{B\to A})` from escape times both ways.

    Detailed balance gives :math:`p_B/p_A = k_{AB}/k_{BA} = \tau_{BA}/\tau_{AB}` for the states'
    populations. The interval combines the two exact chi-squared intervals of the means as
    independent: :math:`\tau_{AB}/\tau_{BA}` scaled by the ratio of two chi-squared variables
    follows an F distribution with :math:`(2n_{BA}, 2n_{AB})` degrees of freedom.

    Parameters
    ----------
    forward : (n_AB,) array_like
        Rescaled escape times A -> B.
    backward : (n_BA,) array_like
        Rescaled escape times B -> A (same unit).
    kT : float
        Thermal energy (kJ/mol for MD).
    confidence : float

    Returns
    -------
    (dF, low, high) : tuple of float
        :math:`F_B - F_A` in the unit of ``kT``.
    """
    a = _times(forward, "forward")
    b = _times(backward, "backward")
    kT = check_positive(kT, "kT")
    ratio = a.mean() / b.mean()
    alpha = 1.0 - confidence
    # (tau_ab_hat / tau_ab) / (tau_ba_hat / tau_ba) ~ F(2 n_ab, 2 n_ba)
    q_lo = float(f_dist.ppf(alpha / 2.0, 2 * a.size, 2 * b.size))
    q_hi = float(f_dist.ppf(1.0 - alpha / 2.0, 2 * a.size, 2 * b.size))
    return float(kT * math.log(ratio)), float(kT * math.log(ratio / q_hi)), float(kT * math.log(ratio / q_lo))
