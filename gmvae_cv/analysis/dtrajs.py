"""Discrete trajectories for Markov models: checked state arrays, GMVAE states, lag times.

- :func:`check_dtrajs` validates discrete trajectories (integer arrays, one per trajectory).
- :func:`gmvae_states` discretises frames by the GMVAE clusters (argmax :math:`q(y|x)`) or by
  k-means on the latent :math:`z`.
- :func:`check_lags` checks lag times (frames) against the trajectories.
- :func:`milestone` turns a state trajectory into a core-set (milestoning) trajectory: each frame
  carries the last core set visited, so that recrossings of a boundary between fine states are
  not counted as transitions (Buchete and Hummer, J. Phys. Chem. B 112, 6057, 2008).

Used by :mod:`.msm` (:class:`~gmvae_cv.analysis.msm.MarkovAnalysis`) and :mod:`.tram`.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np
from deeptime.clustering import KMeans

from .._core.checks import as_list_of_arrays, check_int
from .._core.errors import GMVAEInputError

__all__ = ["check_dtrajs", "gmvae_states", "check_lags", "milestone"]


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
        k = check_int(n_clusters, "n_clusters", minimum=2)
        seed = check_int(seed, "seed", minimum=1)  # deeptime reads 0 as 'no fixed seed'
        zs = [run.transform(x, source=nm)["z"] for x, nm in zip(trajs, names)]
        model = KMeans(k, init_strategy="kmeans++", fixed_seed=seed).fit(np.concatenate(zs)).fetch_model()
        return [model.transform(z).astype(np.int32) for z in zs]
    raise GMVAEInputError(f"'method' is {method!r}, expected 'clusters' or 'kmeans'")


def check_lags(lagtimes: Sequence[int], dtrajs: list[np.ndarray]) -> list[int]:
    """Check lag times against the trajectories and return them sorted, without repeats.

    Parameters
    ----------
    lagtimes : sequence of int
        Lag times, frames (>= 1).
    dtrajs : list of (n_frames,) int ndarray
        The trajectories (from :func:`check_dtrajs`).

    Returns
    -------
    list of int
        Sorted unique lag times, frames.

    Raises
    ------
    GMVAEInputError
        When a lag is not shorter than the longest trajectory. Trajectories not longer than the
        largest lag give a warning (attributed to the caller of the estimator's ``fit``).
    """
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



def milestone(dtraj: np.ndarray, core_of_state: Sequence[int] | np.ndarray) -> tuple[np.ndarray, int]:
    """The core-set (milestoning) trajectory of ``dtraj``: each frame labelled with the last core visited.

    Parameters
    ----------
    dtraj : (n_frames,) int array
        Fine states, ``0 .. n_states - 1``.
    core_of_state : (n_states,) int array
        The core set each fine state belongs to (``0 .. n_cores - 1``), or -1 for a state in no
        core (a transition region).

    Returns
    -------
    traj : (n_frames - first,) int32 ndarray
        Core index of each frame from the first frame in a core on.
    first : int
        Index of that first frame (the frames before it are in no core yet and are dropped).

    Raises
    ------
    GMVAEInputError
        If ``dtraj`` holds a state ``core_of_state`` does not cover, or no frame lies in a core.

    Examples
    --------
    >>> traj, first = milestone(np.array([2, 0, 2, 1, 2, 2, 0]), [0, 1, -1])
    >>> traj.tolist(), first
    ([0, 0, 1, 1, 1, 0], 1)
    """
    d = check_dtrajs(dtraj, "dtraj")[0]
    core = np.asarray(core_of_state, dtype=np.int64)
    if core.ndim != 1 or int(d.max()) >= core.size:
        raise GMVAEInputError(f"'core_of_state' has {core.size} entries; the trajectory has state {int(d.max())}, "
                              "expected one entry per state (-1 for a state in no core)")
    lab = core[d]
    inside = np.flatnonzero(lab >= 0)
    if inside.size == 0:
        raise GMVAEInputError("no frame lies in a core set: 'core_of_state' is -1 for every visited state")
    # forward fill: the index of the last frame at or before each frame that lies in a core
    last = np.maximum.accumulate(np.where(lab >= 0, np.arange(lab.size), -1))
    first = int(inside[0])
    return lab[last[first:]].astype(np.int32), first
