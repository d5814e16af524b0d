r"""Markov state models on GMVAE states, with deeptime.

- :func:`check_dtrajs` validates discrete trajectories (integer arrays, one per trajectory).
- :func:`gmvae_states` discretises frames by the GMVAE clusters (argmax :math:`q(y|x)`) or by
  k-means on the latent :math:`z`.
- :class:`MarkovAnalysis` estimates, for a list of lag times, maximum-likelihood and Bayesian MSMs
  (implied timescales with confidence bands) and, at the chosen lag, PCCA+ metastable sets, the
  Chapman-Kolmogorov test, the stationary distribution and mean first-passage times between
  states. Its model, :class:`MarkovAnalysisResult`, saves to JSON (arrays with units) and plots in
  the form PyEMMA users know.
- A plain MSM counts transitions of the unbiased dynamics; frames of a biased run do not follow
  it, so :meth:`MarkovAnalysis.fit` refuses data that carry a bias (:class:`BiasedDataError`).
  When each ensemble has a *static* bias (umbrella windows, replicas at other temperatures, a
  frozen final metadynamics bias) the multi-ensemble estimator TRAM applies:
  :class:`TRAMAnalysis`.

Times: lag times are in frames; results are also given in physical time with ``dt`` (the time
between frames) and ``time_unit``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.checks import as_list_of_arrays, check_int, check_positive
from .._core.files import atomic_write_text

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


def check_dtrajs(dtrajs: Any, name: str = "dtrajs", *, sources: Optional[Sequence[str]] = None) -> list[np.ndarray]:
    """Check discrete trajectories and return them as a list of int32 arrays.

    Parameters
    ----------
    dtrajs : (n_frames,) int array or list of them
        State index of each frame, one array per trajectory.
    name : str
        Name used in error messages.
    sources : sequence of str, optional
        File names of the trajectories, for messages.

    Returns
    -------
    list of (n_frames,) int32 ndarray

    Raises
    ------
    GMVAEInputError
        For non-integer dtypes (floats are not silently cast), other than 1D arrays, negative
        states or empty trajectories.
    """
    trajs = as_list_of_arrays(dtrajs, name)
    names = list(sources) if sources is not None else [f"{name}[{i}]" for i in range(len(trajs))]
    out = []
    for t, src in zip(trajs, names):
        a = np.asarray(t)
        if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            raise GMVAEInputError(
                f"{src} has dtype {a.dtype}, expected integer state indices (an int array, e.g. GMVAE clusters); "
                "convert explicitly if the values are whole numbers"
            )
        if a.ndim != 1:
            raise GMVAEInputError(f"{src} has shape {a.shape}, expected a 1D array (n_frames,) of state indices")
        if a.size == 0:
            raise GMVAEInputError(f"{src} is empty")
        lo = int(a.min())
        if lo < 0:
            raise GMVAEInputError(f"{src} has negative state {lo} (first at frame {int(np.argmax(a < 0))}); states are 0, 1, 2, ...")
        if int(a.max()) > np.iinfo(np.int32).max:
            raise GMVAEInputError(f"{src} has state {int(a.max())}, too large")
        out.append(a.astype(np.int32, copy=False))
    return out


def gmvae_states(
    run: Any,
    data: np.ndarray | Sequence[np.ndarray],
    *,
    method: str = "clusters",
    n_clusters: Optional[int] = None,
    seed: int = 42,
    sources: Optional[Sequence[str]] = None,
) -> list[np.ndarray]:
    """Discretise frames with a trained GMVAE.

    Parameters
    ----------
    run : GMVAERun
        From :func:`gmvae_cv.fit` or :func:`gmvae_cv.load_run`.
    data : (n_frames, n_features) array or list of them
        Features of each trajectory, as the model was trained on.
    method : {"clusters", "kmeans"}
        ``clusters``: the GMVAE component of highest :math:`q(y|x)`; ``kmeans``: k-means on the
        latent :math:`z` (deeptime ``KMeans``, k-means++ seeded with ``seed``).
    n_clusters : int, optional
        Number of k-means centres (required for ``kmeans``).
    seed : int
        Seed (>= 1) of the k-means++ initialisation.
    sources : sequence of str, optional
        The file of each trajectory, named in error messages.

    Returns
    -------
    list of (n_frames,) int32 ndarray
    """
    trajs = as_list_of_arrays(data, "data")
    names = list(sources) if sources is not None else [None] * len(trajs)
    if len(names) != len(trajs):
        raise GMVAEInputError(f"'sources' has {len(names)} entries for {len(trajs)} trajectories")
    if method == "clusters":
        return [run.transform(x, source=nm)["clusters"].astype(np.int32) for x, nm in zip(trajs, names)]
    if method == "kmeans":
        from deeptime.clustering import KMeans

        k = check_int(n_clusters, "n_clusters", minimum=2)
        seed = check_int(seed, "seed", minimum=1)  # deeptime reads 0 as 'no fixed seed'
        zs = [run.transform(x, source=nm)["z"] for x, nm in zip(trajs, names)]
        model = KMeans(k, init_strategy="kmeans++", fixed_seed=seed).fit(np.concatenate(zs)).fetch_model()
        return [model.transform(z).astype(np.int32) for z in zs]
    raise GMVAEInputError(f"'method' is {method!r}, expected 'clusters' or 'kmeans'")


def _check_lags(lagtimes: Sequence[int], dtrajs: list[np.ndarray]) -> list[int]:
    lags = sorted({check_int(int(l) if isinstance(l, (np.integer,)) else l, "lagtimes", minimum=1) for l in lagtimes})
    longest = max(len(d) for d in dtrajs)
    too_long = [l for l in lags if l >= longest]
    if too_long:
        raise GMVAEInputError(
            f"lag time(s) {too_long} frames are not shorter than the longest trajectory ({longest} frames); "
            "no transition can be counted"
        )
    short = [i for i, d in enumerate(dtrajs) if len(d) <= lags[-1]]
    if short:
        warnings.warn(
            f"{len(short)} trajectory(ies) (first: index {short[0]}, {len(dtrajs[short[0]])} frames) are not longer than the "
            f"largest lag ({lags[-1]} frames) and give no counts at that lag",
            stacklevel=3,
        )
    return lags


def _bias_is_present(bias: Any) -> bool:
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
        from .fes import _nan_to_none

        atomic_write_text(path, json.dumps(_nan_to_none(self.to_dict()), indent=1) + "\n")

    def plot_implied_timescales(self, path: str | os.PathLike, **kw: Any) -> None:
        """ITS against lag time, log scale, with confidence bands and the lag = timescale line."""
        from .plots import plot_implied_timescales

        plot_implied_timescales(self, path, **kw)

    def plot_ck_test(self, path: str | os.PathLike, **kw: Any) -> None:
        """The Chapman-Kolmogorov test as a matrix of panels (set i -> set j)."""
        from .plots import plot_ck_test

        plot_ck_test(self, path, **kw)


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
        from deeptime.markov import TransitionCountEstimator
        from deeptime.markov.msm import BayesianMSM, MaximumLikelihoodMSM

        counts = TransitionCountEstimator(lag, self.count_mode).fit_fetch(dtrajs).submodel_largest()
        ml = MaximumLikelihoodMSM(reversible=self.reversible, lagtime=lag).fit_fetch(counts)
        post = None
        if self.n_samples > 0:
            post = BayesianMSM(n_samples=self.n_samples, reversible=self.reversible, lagtime=lag).fit_fetch(
                counts, ignore_counting_mode=self.count_mode == "sliding"
            )
        return ml, post

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
        from deeptime.util import confidence_interval

        if _bias_is_present(bias):
            raise BiasedDataError(f"refusing a plain MSM on biased frames: {_BIAS_EXPLANATION}")
        dtrajs = check_dtrajs(dtrajs)
        lags = _check_lags(sorted(set(self.lagtimes) | {self.lagtime}), dtrajs)
        n_states = int(max(int(d.max()) for d in dtrajs)) + 1
        # CK lags: multiples of the model lag that fit in the data
        longest = max(len(d) for d in dtrajs)
        ck_lags = [k * self.lagtime for k in range(1, self.ck_multiples + 1) if k * self.lagtime < longest] if self.n_metastable else []
        all_lags = sorted(set(lags) | set(ck_lags))
        bar = self.progress(total=len(all_lags), desc="MSMs") if self.progress is not None else None
        mls, posts = {}, {}
        for lag in all_lags:
            mls[lag], posts[lag] = self._models(dtrajs, lag)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
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
        # the model at the chosen lag
        ml = mls[self.lagtime]
        post = posts[self.lagtime]
        active = np.asarray(ml.count_model.state_symbols, dtype=np.int64)
        pi = np.full(n_states, np.nan)
        pi[active] = ml.stationary_distribution
        pi_lo = np.full(n_states, np.nan)
        pi_hi = np.full(n_states, np.nan)
        if post is not None:
            # samples share the prior's active set
            sp = np.array([s.stationary_distribution for s in post.samples])
            lo, hi = confidence_interval(sp, conf=self.confidence)
            pi_lo[active], pi_hi[active] = lo, hi
        mfpt = np.full((n_states, n_states), np.nan)
        for a_i, a in enumerate(active):
            mfpt[a, a] = 0.0
            for b_i, b in enumerate(active):
                if a_i != b_i:
                    mfpt[a, b] = ml.mfpt(a_i, b_i) * self.dt
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
            mfpt=mfpt,
            info={
                "n_trajectories": len(dtrajs),
                "n_frames": int(sum(len(d) for d in dtrajs)),
                "count_mode": self.count_mode,
                "reversible": self.reversible,
                "n_samples": self.n_samples,
                "states_visited": int(sum(np.bincount(np.concatenate(dtrajs), minlength=n_states) > 0)),
            },
        )
        if self.n_metastable:
            self._pcca_ck(res, ml, post, mls, posts, ck_lags, active, n_states)
        self._model = res
        return self

    def _pcca_ck(self, res, ml, post, mls, posts, ck_lags, active, n_states) -> None:
        from deeptime.util import confidence_interval

        n = self.n_metastable
        if ml.n_states < n:
            raise GMVAEInputError(f"'n_metastable' is {n}, but the active set at lag {self.lagtime} has {ml.n_states} states")
        if not self.reversible:
            raise GMVAEInputError("PCCA+ needs a reversible MSM (reversible=True)")
        pcca = ml.pcca(n)
        mem = np.full((n_states, n), np.nan)
        mem[active] = pcca.memberships
        assign = np.full(n_states, -1, dtype=np.int64)
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
                    mm[i, j] = ml.mfpt(A, B) * self.dt if len(A) and len(B) else np.nan
        res.metastable_mfpt = mm
        if post is not None:
            test_model = post
            models = [posts[l] for l in ck_lags]
        else:
            test_model = ml
            models = [mls[l] for l in ck_lags]
        ck = test_model.ck_test(models, n, include_lag0=True, err_est=post is not None)
        res.ck_lagtimes = np.asarray(ck.lagtimes)
        res.ck_predictions = np.real(np.asarray(ck.predictions))
        res.ck_estimates = np.real(np.asarray(ck.estimates))
        if post is not None:
            lo = np.zeros_like(res.ck_predictions)
            hi = np.zeros_like(res.ck_predictions)
            for i, samples in enumerate(ck.predictions_samples):
                lo[i], hi[i] = confidence_interval(np.real(np.asarray(samples)), conf=self.confidence)
            res.ck_predictions_lower, res.ck_predictions_upper = lo, hi
            lo = np.zeros_like(res.ck_estimates)
            hi = np.zeros_like(res.ck_estimates)
            for i, samples in enumerate(ck.estimates_samples):
                s = np.real(np.asarray(samples))
                if len(s) == self.n_samples + 1:
                    # deeptime 0.5's ck_test appends the lag-0 identity after the samples of each
                    # model (a for/else); it is not a posterior sample
                    s = s[:-1]
                if len(s) > 1:
                    lo[i], hi[i] = confidence_interval(s, conf=self.confidence)
                else:
                    lo[i] = hi[i] = res.ck_estimates[i]
            res.ck_estimates_lower, res.ck_estimates_upper = lo, hi

    def fetch_model(self) -> MarkovAnalysisResult:
        """The :class:`MarkovAnalysisResult` of the last :meth:`fit`."""
        if self._model is None:
            raise GMVAEInputError("MarkovAnalysis: call fit first")
        return self._model


# ============================================================================ TRAM
@dataclass
class TRAMResult:
    """Unbiased thermodynamics (and per-ensemble MSMs) from several statically biased ensembles.

    Attributes
    ----------
    n_states : int
    stationary_distribution : (n_states,) ndarray
        Unbiased probability of each Markov state (``nan`` for states TRAM could not connect).
    free_energies : (n_states,) ndarray
        :math:`-k_BT \\log \\pi_i`, minimum 0, energy units of ``kT``.
    ensemble_free_energies : (n_ensembles,) ndarray
        Free energy of each biased ensemble relative to the first, energy units.
    kT : float
    lagtime : int
        Frames.
    info : dict
    """

    n_states: int
    stationary_distribution: np.ndarray
    free_energies: np.ndarray
    ensemble_free_energies: np.ndarray
    kT: float
    lagtime: int
    info: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        from .fes import _nan_to_none

        d = {
            "format": "gmvae-cv/tram",
            "format_version": 1,
            "n_states": self.n_states,
            "stationary_distribution": np.asarray(self.stationary_distribution).tolist(),
            "free_energies": {"unit": self.info.get("energy_unit", "energy"), "values": np.asarray(self.free_energies).tolist()},
            "ensemble_free_energies": {"unit": self.info.get("energy_unit", "energy"), "values": np.asarray(self.ensemble_free_energies).tolist()},
            "kT": self.kT,
            "lagtime": {"unit": "frames", "value": self.lagtime},
            "info": self.info,
        }
        atomic_write_text(path, json.dumps(_nan_to_none(d), indent=1) + "\n")


class TRAMAnalysis:
    """Estimator: TRAM (deeptime) over ensembles that each carry a static bias.

    Valid for umbrella windows, a frozen (final) metadynamics bias, or several temperatures; not
    for frames of a run whose bias changed while it ran (metadynamics as it fills).

    Parameters
    ----------
    lagtime : int
        Lag (frames) of the per-ensemble transition counts.
    kT : float, optional
        Thermal energy in the units of the bias energies. Give exactly one of ``kT`` and
        ``temperature``.
    temperature : float, optional
        K, with bias energies in kJ/mol.
    maxiter, maxerr : int, float
        TRAM iterations and convergence threshold (change of the free energies, kT).
    connectivity : str
        How the largest connected set is found (deeptime's ``restrict_to_largest_connected_set``):
        ``"summed_count_matrix"`` (transitions pooled over the ensembles; the default, since in
        deeptime 0.5 ``"post_hoc_RE"`` cut well-overlapping umbrella windows apart in our tests).
    progress : callable, optional
        tqdm-like class passed to deeptime.
    """

    def __init__(
        self,
        lagtime: int,
        *,
        kT: Optional[float] = None,
        temperature: Optional[float] = None,
        maxiter: int = 10000,
        maxerr: float = 1e-8,
        connectivity: str = "summed_count_matrix",
        progress: Optional[Callable] = None,
    ) -> None:
        from .fes import resolve_kT

        if connectivity not in ("summed_count_matrix", "post_hoc_RE", "BAR_variance"):
            raise GMVAEInputError(f"'connectivity' is {connectivity!r}, expected summed_count_matrix, post_hoc_RE or BAR_variance")
        self.connectivity = connectivity
        self.lagtime = check_int(lagtime, "lagtime", minimum=1)
        self.kT, self.temperature = resolve_kT(temperature, kT)
        self.maxiter = check_int(maxiter, "maxiter", minimum=1)
        self.maxerr = check_positive(maxerr, "maxerr")
        self.progress = progress
        self._model: Optional[TRAMResult] = None

    def fit(self, dtrajs: Any, bias_energies: Any, *, ensembles: Optional[Sequence[int]] = None) -> "TRAMAnalysis":
        """Estimate.

        Parameters
        ----------
        dtrajs : list of (n_frames,) int arrays
            Markov state of each frame, one array per trajectory.
        bias_energies : list of (n_frames, n_ensembles) arrays
            Bias energy of each frame evaluated in *every* ensemble (0 for an unbiased one), in the
            units of ``kT`` (kJ/mol with ``temperature``).
        ensembles : sequence of int, optional
            The ensemble each trajectory was sampled in (default: trajectory i in ensemble i).

        Returns
        -------
        self
        """
        from deeptime.markov.msm import TRAM, TRAMDataset

        dtrajs = check_dtrajs(dtrajs)
        bias = [np.asarray(b, dtype=np.float64) for b in as_list_of_arrays(bias_energies, "bias_energies")]
        if len(bias) != len(dtrajs):
            raise GMVAEInputError(f"'bias_energies' has {len(bias)} arrays for {len(dtrajs)} trajectories")
        n_ens = bias[0].shape[1] if bias[0].ndim == 2 else -1
        for i, (b, d) in enumerate(zip(bias, dtrajs)):
            if b.ndim != 2 or b.shape[0] != len(d) or b.shape[1] != n_ens:
                raise GMVAEInputError(f"'bias_energies'[{i}] has shape {b.shape}, expected ({len(d)}, {n_ens}) (frames, ensembles)")
            if not np.isfinite(b).all():
                raise GMVAEInputError(f"'bias_energies'[{i}] has NaN/inf entries")
        ens = list(range(len(dtrajs))) if ensembles is None else [check_int(int(e), "ensembles", minimum=0) for e in ensembles]
        if len(ens) != len(dtrajs) or max(ens) >= n_ens:
            raise GMVAEInputError(f"'ensembles' must give, for each of the {len(dtrajs)} trajectories, an ensemble index < {n_ens}")
        _check_lags([self.lagtime], dtrajs)
        ttrajs = [np.full(len(d), e, dtype=np.int32) for d, e in zip(dtrajs, ens)]
        reduced = [b / self.kT for b in bias]
        n_states = int(max(int(d.max()) for d in dtrajs)) + 1
        ds = TRAMDataset(dtrajs=dtrajs, bias_matrices=reduced, ttrajs=ttrajs, lagtime=self.lagtime, n_therm_states=n_ens, n_markov_states=n_states)
        ds.restrict_to_largest_connected_set(connectivity=self.connectivity)
        est = TRAM(lagtime=self.lagtime, maxiter=self.maxiter, maxerr=self.maxerr, progress=self.progress)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*max_iter.*")
            model = est.fit_fetch(ds)
        f = np.asarray(model.markov_state_energies, dtype=float)
        pi = np.full(n_states, np.nan)
        ok = np.isfinite(f)
        p = np.exp(-(f[ok] - f[ok].min()))
        pi[: len(f)][ok] = p / p.sum()
        fe = np.full(n_states, np.nan)
        fe[: len(f)][ok] = self.kT * (f[ok] - f[ok].min())
        therm = np.asarray(model.therm_state_energies, dtype=float)
        self._model = TRAMResult(
            n_states=n_states,
            stationary_distribution=pi,
            free_energies=fe,
            ensemble_free_energies=self.kT * (therm - therm[0]),
            kT=self.kT,
            lagtime=self.lagtime,
            info={"n_ensembles": n_ens, "n_trajectories": len(dtrajs), "energy_unit": "kJ/mol" if self.temperature is not None else "units of kT"},
        )
        return self

    def fetch_model(self) -> TRAMResult:
        if self._model is None:
            raise GMVAEInputError("TRAMAnalysis: call fit first")
        return self._model
