r"""Markov state models on GMVAE states, with deeptime.

- :func:`check_dtrajs` validates discrete trajectories (integer arrays, one per trajectory) and
  :func:`gmvae_states` discretises frames by the GMVAE clusters or k-means on :math:`z`
  (both in :mod:`.dtrajs`, re-exported here).
- :class:`MarkovAnalysis` estimates, for a list of lag times, maximum-likelihood and Bayesian MSMs
  (implied timescales with confidence bands) and, at the chosen lag, PCCA+ metastable sets, the
  Chapman-Kolmogorov test (:mod:`.metastable`), the stationary distribution and mean first-passage
  times between states. Its model, :class:`MarkovAnalysisResult` (:mod:`.msm_result`), saves to
  JSON (arrays with units) and plots in the form PyEMMA users know.
- A plain MSM counts transitions of the unbiased dynamics; frames of a biased run do not follow
  it, so :meth:`MarkovAnalysis.fit` refuses data that carry a bias (:class:`BiasedDataError`).
  When each ensemble has a *static* bias (umbrella windows, replicas at other temperatures, a
  frozen final metadynamics bias) the multi-ensemble estimator TRAM applies:
  :class:`TRAMAnalysis` (:mod:`.tram`, re-exported here).

Times: lag times are in frames; results are also given in physical time with ``dt`` (the time
between frames) and ``time_unit``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
from deeptime.markov import TransitionCountEstimator
from deeptime.markov.msm import BayesianMSM, MaximumLikelihoodMSM
from deeptime.util import confidence_interval

from .._core.checks import as_list_of_arrays, check_int, check_positive
from .._core.errors import GMVAEInputError
from .dtrajs import check_dtrajs, check_lags, gmvae_states
from .metastable import ck_test, pcca_sets
from .msm_result import MarkovAnalysisResult
from .tram import TRAMAnalysis, TRAMResult

__all__ = [
    "BiasedDataError",
    "check_dtrajs",
    "gmvae_states",
    "MarkovAnalysis",
    "MarkovAnalysisResult",
    "TRAMAnalysis",
    "TRAMResult",
    "COUNT_MODES",
]

COUNT_MODES = ("sliding-effective", "effective", "sliding", "sample")


class BiasedDataError(GMVAEInputError):
    """A plain MSM was asked for on frames of a biased run."""


def _bias_is_present(bias: Any) -> bool:
    """Whether any frame of ``bias`` ((n_frames,) arrays, energy) is non-zero."""
    if bias is None:
        return False
    arrs = as_list_of_arrays(bias, "bias")
    return any(np.any(np.asarray(b, dtype=float) != 0.0) for b in arrs)


_BIAS_EXPLANATION = (
    "a Markov state model counts transitions of the unbiased dynamics, and frames of a biased run do not "
    "follow it (the bias changes the rates; with metadynamics it also changes in time). Use unbiased "
    "trajectories (for example many short runs started from the states the biased run found), or, when the "
    "bias of each ensemble is static (umbrella windows, a frozen final metadynamics bias, several temperatures), "
    "the multi-ensemble estimator TRAM: gmvae_cv.analysis.msm.TRAMAnalysis with the bias of every frame evaluated in every "
    "ensemble"
)


class MarkovAnalysis:
    """Estimator: implied timescales over lag times, and a validated MSM at one lag.

    Parameters
    ----------
    lagtimes : sequence of int
        Lag times (frames) for the implied timescales; the model lag is added if missing.
    lagtime : int
        Lag (frames) of the model analysed (PCCA+, CK test, stationary distribution, MFPT).
    dt : float
        Time between frames, in ``time_unit``.
    time_unit : str
        Unit of ``dt`` (``"ps"`` for MD; the toy systems use reduced time).
    n_timescales : int, optional
        Implied timescales per lag (default: n_states - 1, at most 10).
    n_metastable : int, optional
        PCCA+ sets; also the resolution of the CK test (default: no PCCA, no CK test).
    ck_multiples : int
        The CK test compares lags ``k * lagtime`` for ``k = 1 .. ck_multiples``.
    reversible : bool
        Reversible (detailed balance) estimation.
    n_samples : int
        Bayesian posterior samples for the error bands (0: no errors).
    count_mode : str
        One of :data:`COUNT_MODES`. ``"sliding-effective"`` (sliding-window counts divided by the
        lag) is what the Bayesian errors need at the cost of counting; ``"effective"`` (statistical
        inefficiencies, as PyEMMA's default) is more exact and much slower on long trajectories.
    confidence : float
        Width of the error bands (0.95: 2.5 to 97.5 percentiles).
    progress : callable, optional
        tqdm-like class, advanced per lag.

    Examples
    --------
    >>> import numpy as np
    >>> from deeptime.markov.msm import MarkovStateModel
    >>> from gmvae_cv.analysis.msm import MarkovAnalysis
    >>> P = np.array([[0.99, 0.01], [0.02, 0.98]])
    >>> d = MarkovStateModel(P).simulate(200_000, seed=1)
    >>> res = MarkovAnalysis([1, 2, 5], lagtime=2, dt=0.1, n_samples=0).fit(d).fetch_model()
    >>> bool(abs(res.slowest_timescale() - (-0.1 / np.log(0.97))) < 0.3)
    True
    """

    def __init__(
        self,
        lagtimes: Sequence[int],
        *,
        lagtime: int,
        dt: float = 1.0,
        time_unit: str = "ps",
        n_timescales: Optional[int] = None,
        n_metastable: Optional[int] = None,
        ck_multiples: int = 5,
        reversible: bool = True,
        n_samples: int = 100,
        count_mode: str = "sliding-effective",
        confidence: float = 0.95,
        progress: Optional[Callable] = None,
    ) -> None:
        self.lagtimes = list(lagtimes)
        if not self.lagtimes:
            raise GMVAEInputError("'lagtimes' is empty, expected lag times in frames")
        self.lagtime = check_int(lagtime, "lagtime", minimum=1)
        self.dt = check_positive(dt, "dt")
        self.time_unit = str(time_unit)
        self.n_timescales = None if n_timescales is None else check_int(n_timescales, "n_timescales", minimum=1)
        self.n_metastable = None if n_metastable is None else check_int(n_metastable, "n_metastable", minimum=2)
        self.ck_multiples = check_int(ck_multiples, "ck_multiples", minimum=1)
        self.reversible = bool(reversible)
        self.n_samples = check_int(n_samples, "n_samples", minimum=0)
        if count_mode not in COUNT_MODES:
            raise GMVAEInputError(f"'count_mode' is {count_mode!r}, expected one of {', '.join(COUNT_MODES)}")
        self.count_mode = count_mode
        if not 0.0 < confidence < 1.0:
            raise GMVAEInputError(f"'confidence' is {confidence}, expected 0 < confidence < 1")
        self.confidence = float(confidence)
        self.progress = progress
        self._model: Optional[MarkovAnalysisResult] = None

    def _models(self, dtrajs: list[np.ndarray], lag: int):
        counts = TransitionCountEstimator(lag, self.count_mode).fit_fetch(dtrajs).submodel_largest()
        ml = MaximumLikelihoodMSM(reversible=self.reversible, lagtime=lag).fit_fetch(counts)
        post = None
        if self.n_samples > 0:
            post = BayesianMSM(n_samples=self.n_samples, reversible=self.reversible, lagtime=lag).fit_fetch(
                counts, ignore_counting_mode=self.count_mode == "sliding"
            )
        return ml, post

    def _lag_models(self, dtrajs: list[np.ndarray], lags: Sequence[int]) -> tuple[dict, dict]:
        """ML models and Bayesian posteriors (``None`` without samples) at each lag, keyed by lag."""
        bar = self.progress(total=len(lags), desc="MSMs") if self.progress is not None else None
        mls, posts = {}, {}
        for lag in lags:
            mls[lag], posts[lag] = self._models(dtrajs, lag)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return mls, posts

    def _ck_lags(self, dtrajs: list[np.ndarray]) -> list[int]:
        """CK lags (frames): multiples of the model lag that fit in the data; none without PCCA+."""
        if not self.n_metastable:
            return []
        longest = max(len(d) for d in dtrajs)
        return [k * self.lagtime for k in range(1, self.ck_multiples + 1) if k * self.lagtime < longest]

    def _implied_timescales(self, mls: dict, posts: dict, lags: list[int], n_states: int) -> tuple[np.ndarray, ...]:
        """Implied timescales at each lag, in ``time_unit``.

        Returns
        -------
        its, its_mean, its_lower, its_upper : (n_lags, n_its) ndarray
            ML timescales, Bayesian sample mean and confidence band (``nan`` where undefined).
        """
        k_its = self.n_timescales or max(1, min(10, n_states - 1))
        n_l = len(lags)
        its = np.full((n_l, k_its), np.nan)
        its_mean = np.full((n_l, k_its), np.nan)
        its_lo = np.full((n_l, k_its), np.nan)
        its_hi = np.full((n_l, k_its), np.nan)
        for i, lag in enumerate(lags):
            m = mls[lag]
            kk = min(k_its, m.n_states - 1)
            if kk < 1:
                continue
            its[i, :kk] = m.timescales(kk) * self.dt
            if posts[lag] is not None:
                samples = np.array([s.timescales(kk) for s in posts[lag].samples]) * self.dt
                its_mean[i, :kk] = samples.mean(axis=0)
                lo, hi = confidence_interval(samples, conf=self.confidence)
                its_lo[i, :kk], its_hi[i, :kk] = lo, hi
        return its, its_mean, its_lo, its_hi

    def _stationary(self, ml: Any, post: Optional[Any], active: np.ndarray, n_states: int) -> tuple[np.ndarray, ...]:
        """Stationary distribution over the input states and its band (``nan`` outside the active set)."""
        pi = np.full(n_states, np.nan)
        pi[active] = ml.stationary_distribution
        pi_lo = np.full(n_states, np.nan)
        pi_hi = np.full(n_states, np.nan)
        if post is not None:
            # samples share the prior's active set
            sp = np.array([s.stationary_distribution for s in post.samples])
            lo, hi = confidence_interval(sp, conf=self.confidence)
            pi_lo[active], pi_hi[active] = lo, hi
        return pi, pi_lo, pi_hi

    def _mfpt(self, ml: Any, active: np.ndarray, n_states: int) -> np.ndarray:
        """(n_states, n_states) mean first-passage times i -> j in ``time_unit`` (``nan`` outside the active set)."""
        mfpt = np.full((n_states, n_states), np.nan)
        for a_i, a in enumerate(active):
            mfpt[a, a] = 0.0
            for b_i, b in enumerate(active):
                if a_i != b_i:
                    mfpt[a, b] = ml.mfpt(a_i, b_i) * self.dt
        return mfpt

    def _info(self, dtrajs: list[np.ndarray], n_states: int) -> dict:
        """The ``info`` of the result: data size and estimator settings."""
        return {
            "n_trajectories": len(dtrajs),
            "n_frames": int(sum(len(d) for d in dtrajs)),
            "count_mode": self.count_mode,
            "reversible": self.reversible,
            "n_samples": self.n_samples,
            "states_visited": int(sum(np.bincount(np.concatenate(dtrajs), minlength=n_states) > 0)),
        }

    def fit(self, dtrajs: Any, *, bias: Any = None) -> "MarkovAnalysis":
        """Estimate the models.

        Parameters
        ----------
        dtrajs : (n_frames,) int array or list of them
            State of each frame (e.g. from :func:`gmvae_states`), one array per trajectory.
        bias : (n_frames,) array or list of them, optional
            The bias energy of each frame if the frames come from a biased run. Any non-zero bias
            is refused (:class:`BiasedDataError`), with the valid alternatives in the message.

        Returns
        -------
        self
        """
        if _bias_is_present(bias):
            raise BiasedDataError(f"refusing a plain MSM on biased frames: {_BIAS_EXPLANATION}")
        dtrajs = check_dtrajs(dtrajs)
        lags = check_lags(sorted(set(self.lagtimes) | {self.lagtime}), dtrajs)
        n_states = int(max(int(d.max()) for d in dtrajs)) + 1
        ck_lags = self._ck_lags(dtrajs)
        mls, posts = self._lag_models(dtrajs, sorted(set(lags) | set(ck_lags)))
        its, its_mean, its_lo, its_hi = self._implied_timescales(mls, posts, lags, n_states)
        # the model at the chosen lag
        ml = mls[self.lagtime]
        post = posts[self.lagtime]
        active = np.asarray(ml.count_model.state_symbols, dtype=np.int64)
        pi, pi_lo, pi_hi = self._stationary(ml, post, active, n_states)
        res = MarkovAnalysisResult(
            dt=self.dt,
            time_unit=self.time_unit,
            lagtimes=np.asarray(lags),
            timescales=its,
            timescales_mean=its_mean,
            timescales_lower=its_lo,
            timescales_upper=its_hi,
            confidence=self.confidence,
            lagtime=self.lagtime,
            n_states=n_states,
            active_set=active,
            transition_matrix=np.asarray(ml.transition_matrix),
            stationary_distribution=pi,
            stationary_lower=pi_lo,
            stationary_upper=pi_hi,
            mfpt=self._mfpt(ml, active, n_states),
            info=self._info(dtrajs, n_states),
        )
        if self.n_metastable:
            pcca_sets(res, ml, self.n_metastable, active, reversible=self.reversible)
            models = [(posts if post is not None else mls)[l] for l in ck_lags]
            ck_test(res, ml, post, models, n_samples=self.n_samples, confidence=self.confidence)
        self._model = res
        return self

    def fetch_model(self) -> MarkovAnalysisResult:
        """The :class:`MarkovAnalysisResult` of the last :meth:`fit`."""
        if self._model is None:
            raise GMVAEInputError("MarkovAnalysis: call fit first")
        return self._model
