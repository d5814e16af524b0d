r"""How many states: the number of metastable states the trajectories hold, and the ELBO across k.

**The procedure used** (:func:`select_n_clusters`): train a GMVAE with generously many components
``k_max``, discretise each trajectory by its clusters (argmax q(y|x)), count transitions at a lag
``tau`` (frames), and count the *metastable* states in that dynamics (:func:`count_metastable_states`):
in every strongly connected set of clusters, the eigenvalues of the transition matrix (a
reversible estimate from the symmetrised counts) that are at least ``min_eigenvalue`` (default
``exp(-1)``: implied timescale ``-tau / ln(lambda)`` longer than ``tau``). Components that split one
basin exchange frames within the lag (small eigenvalue) and merge; basins separated by a barrier
keep a slow eigenvalue; a set never left (a basin no trajectory escapes) counts as one state.
Sets holding less than ``min_population`` of the frames (transient starts) are not counted. The
count is taken for several training seeds and the median reported. It needs time-ordered
trajectories (not shuffled frames) with a lag long against the motion inside a basin and short
against the waiting times between basins, which is the MSM practice of reading the number of
states off the spectral gap.

Measured on the toys (2-core shared machine, tests/learn/test_model_selection.py settings): Mueller-Brown
at kT = 8 gives 3 (A never left, B <-> C slow, the split halves of B fast), the four-well 4.

**The criterion that did not work** (:func:`elbo_across_k`): the held-out true negative ELBO
(``entropy_weight = 1``; the training loss weights the entropy of q(y|x) by 0.05 and is not a
bound, so it is not compared across k) with the smallest k within the seed noise of the best.
With a uniform p(y) every component costs :math:`\log k` nats per frame for sharp assignments,
whatever its population, and on Mueller-Brown the 5 % basin C does not pay for it. Measured
(2-core shared machine; the data of the slow tests below, every 5th frame held out, seeds 0 and 1,
latent_dim 1): Mueller-Brown held-out -ELBO -0.017, -0.017 (k=2), 0.144, 0.017 (k=3), 0.128,
0.166 (k=4, the fits that give C its own cluster), 0.057, 0.061 (k=5), so k=2 wins; with the
mixing weights set to the clusters' populations instead of 1/k the order stays (-0.074, -0.073 /
0.091, -0.046 / -0.010, 0.034 / -0.071, -0.064). On the four-well the scan does find 4: 1.134,
1.121 (k=2), 0.937, 0.911 (k=3), 0.865, 0.854 (k=4), 1.064, 0.927 (k=5). The transition
spectra of the same fits at lag 5 frames (k=4 seed 0, k=5 seeds 0 and 1): Mueller-Brown, the set
{B, C, B's extra components}: eigenvalues 1, 0.81-0.84 (B <-> C), 0.05-0.08 (B's split), and the
set {A} (with A's split where there is one): 1 (0.09), i.e. 3 states; four-well, one set: 1, 0.98,
0.93, 0.90 and, at k=5 seed 1, an extra 0.04 (a split well), i.e. 4 states. The scan is kept for
comparison and for data without time order.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components

from .._core.checks import as_list_of_arrays, check_int, check_positive
from .._core.errors import GMVAEInputError
from .loss import GMVAELoss
from .train import fit

__all__ = ["validation_elbo", "elbo_across_k", "choose_k", "select_n_clusters", "count_metastable_states"]


def validation_elbo(run: Any, data: np.ndarray, *, n_samples: int = 20, seed: int = 0) -> dict[str, float]:
    """True negative ELBO (entropy weight 1) of a trained run on frames, in nats per frame.

    Parameters
    ----------
    run : GMVAERun
    data : ndarray, shape ``(n_frames, n_features)``
        Frames (raw features); for a time-lagged run (``lag > 0``) the target is the frame itself.
    n_samples : int
        Monte Carlo samples of z per frame (the reparameterised sample of the loss), averaged.
    seed : int
        Seed of those samples.

    Returns
    -------
    dict
        ``neg_elbo`` and its parts ``reconstruction``, ``kl_z``, ``kl_y`` (KL of q(y|x) from the
        uniform prior), ``entropy`` (of q(y|x)), each the mean over frames and samples.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    model = run.model.eval()
    x = torch.as_tensor(np.asarray(data), dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != run.n_features:
        raise GMVAEInputError(f"'data' has shape {tuple(x.shape)}, expected (n_frames, {run.n_features})")
    loss = GMVAELoss(1.0)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    acc = {"neg_elbo": 0.0, "reconstruction": 0.0, "kl_z": 0.0, "kl_y": 0.0, "entropy": 0.0}
    try:
        with torch.no_grad():
            target = model._normalize(x)
            for _ in range(n_samples):
                t = loss(target, model.encode_decode(x))
                acc["neg_elbo"] += float(t["loss"]) / n_samples
                for key in ("reconstruction", "kl_z", "kl_y", "entropy"):
                    acc[key] += float(t[key]) / n_samples
    finally:
        torch.random.set_rng_state(gen_state)
    return acc


def choose_k(table: dict[int, dict[str, Any]], n_seeds: int, tolerance: float) -> tuple[int, int, dict[int, float]]:
    """The selection rule of :func:`elbo_across_k` on a table of held-out scores.

    Parameters
    ----------
    table : dict
        k -> ``{"mean": float, "std": float}``: mean and standard deviation (ddof 1) over seeds of
        the held-out negative ELBO.
    n_seeds : int
        Seeds behind each mean.
    tolerance : float
        Smallest difference that counts (nats per frame).

    Returns
    -------
    k : int
        The smallest k with ``mean_k - mean_best <= max(tolerance, 2 * SE)``, SE the standard
        error of the difference, ``sqrt((std_k^2 + std_best^2) / n_seeds)``.
    best_k : int
        The k of the lowest mean.
    thresholds : dict
        k -> the threshold it was compared with.
    """
    best_k = min(table, key=lambda k: table[k]["mean"])
    chosen, thresholds = best_k, {}
    for k in sorted(table):
        se = math.sqrt((table[k]["std"] ** 2 + table[best_k]["std"] ** 2) / n_seeds)
        thresholds[k] = max(tolerance, 2.0 * se)
    for k in sorted(table):
        if table[k]["mean"] - table[best_k]["mean"] <= thresholds[k]:
            chosen = k
            break
    return int(chosen), int(best_k), thresholds


def elbo_across_k(
    data: np.ndarray | Sequence[np.ndarray],
    k_values: Sequence[int] = (2, 3, 4, 5, 6),
    *,
    seeds: Sequence[int] = (0, 1, 2),
    holdout_every: int = 5,
    tolerance: float = 0.02,
    min_population: float = 0.01,
    n_samples: int = 20,
    progress: bool = False,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Held-out true ELBO across k, and the smallest k within the seed noise of the best.

    Measured on the toys, this criterion does not recover Mueller-Brown's three basins (see the
    module docstring); :func:`select_n_clusters` is the procedure this package uses.

    Parameters
    ----------
    data : (n_frames, n_features) array or list of them
        Feature matrices, one per trajectory.
    k_values : sequence of int
        Candidate numbers of components (each >= 2), tried in increasing order.
    seeds : sequence of int
        Training seeds per k (at least 2, so that the seed-to-seed spread is known).
    holdout_every : int
        Every ``holdout_every``-th frame of each trajectory is held out for scoring.
    tolerance : float
        Smallest difference in held-out negative ELBO (nats per frame) that counts as better.
    min_population : float
        A component counts as used if it is the argmax of q(y|x) for at least this fraction of the
        held-out frames.
    n_samples : int
        Monte Carlo samples per frame of :func:`validation_elbo`.
    progress : bool
        Passed to :func:`~gmvae_cv.train.fit`.
    **fit_kwargs
        Other :func:`~gmvae_cv.train.fit` arguments (``latent_dim``, ``epochs``, ...) shared by all
        fits; ``k``, ``seed``, ``out`` are set here.

    Returns
    -------
    dict
        ``k``: the choice; ``best_k``: the k of the lowest mean; ``threshold``; ``rule`` (text);
        ``table``: per k, ``neg_elbo`` per seed, ``mean``, ``std``, ``used_components`` per seed,
        ``parts`` (mean reconstruction, kl_z, kl_y, entropy over seeds). The ELBO values are in
        nats per frame of standardised features.
    """
    trajs = as_list_of_arrays(data, "data")
    holdout_every = check_int(holdout_every, "holdout_every", minimum=2)
    tolerance = check_positive(tolerance, "tolerance", strict=False)
    ks = [check_int(k, "k_values", minimum=2) for k in k_values]
    if len(ks) < 2 or len(set(ks)) != len(ks):
        raise GMVAEInputError(f"'k_values' is {list(k_values)}, expected at least two distinct values >= 2")
    seeds = [check_int(s, "seeds", minimum=0) for s in seeds]
    if len(seeds) < 2:
        raise GMVAEInputError(f"'seeds' is {list(seeds)}, expected at least 2 seeds (the spread decides what is within noise)")
    for key in ("k", "seed", "out"):
        if key in fit_kwargs:
            raise GMVAEInputError(f"'{key}' is set by elbo_across_k, do not pass it")
    train, held = [], []
    for t in trajs:
        t = np.asarray(t, dtype=np.float64)
        if t.ndim == 1:
            t = t[:, None]
        mask = np.zeros(len(t), dtype=bool)
        mask[::holdout_every] = True
        train.append(t[~mask])
        held.append(t[mask])
    held_x = np.concatenate(held)
    table: dict[int, dict[str, Any]] = {}
    for k in sorted(ks):
        vals, used, parts = [], [], []
        for s in seeds:
            run = fit(train, k=k, seed=s, progress=progress, **fit_kwargs)
            e = validation_elbo(run, held_x, n_samples=n_samples, seed=s)
            vals.append(e["neg_elbo"])
            parts.append([e["reconstruction"], e["kl_z"], e["kl_y"], e["entropy"]])
            pop = np.bincount(run.transform(held_x)["clusters"], minlength=k) / len(held_x)
            used.append(int(np.sum(pop >= min_population)))
        vals_a = np.array(vals)
        table[k] = {
            "neg_elbo": vals,
            "mean": float(vals_a.mean()),
            "std": float(vals_a.std(ddof=1)),
            "used_components": used,
            "parts": dict(zip(("reconstruction", "kl_z", "kl_y", "entropy"), np.mean(parts, axis=0).tolist())),
        }
    chosen, best_k, thresholds = choose_k(table, len(seeds), tolerance)
    return {
        "k": int(chosen),
        "best_k": int(best_k),
        "threshold": thresholds,
        "rule": "smallest k whose mean held-out negative ELBO (entropy weight 1) is within "
        f"max({tolerance}, 2 standard errors over {len(seeds)} seeds) of the lowest mean",
        "holdout": f"every {holdout_every}th frame of each trajectory ({len(held_x)} frames)",
        "table": table,
    }


def count_metastable_states(
    dtrajs: Sequence[np.ndarray],
    n_clusters: int,
    lag: int,
    *,
    min_eigenvalue: float = math.exp(-1.0),
    min_population: float = 0.01,
) -> dict[str, Any]:
    """Number of metastable states in discrete trajectories, from the transition spectrum.

    Parameters
    ----------
    dtrajs : sequence of (n_frames,) int arrays
        Cluster of each frame, one array per trajectory (time order).
    n_clusters : int
        Number of clusters (labels ``0 .. n_clusters-1``).
    lag : int
        Lag time in frames.
    min_eigenvalue : float
        Eigenvalues of the transition matrix at ``lag`` that count as a slow process (default
        ``exp(-1)``: implied timescale above the lag).
    min_population : float
        Strongly connected sets with fewer frames than this fraction are transient, not counted.

    Returns
    -------
    dict
        ``n_states``; ``sets``: per strongly connected set its clusters, fraction of frames,
        eigenvalues (descending) and the number of them counted.
    """
    lag = check_int(lag, "lag", minimum=1)
    counts = np.zeros((n_clusters, n_clusters))
    n_total = 0
    for d in dtrajs:
        d = np.asarray(d, dtype=np.int64)
        n_total += len(d)
        if len(d) > lag:
            np.add.at(counts, (d[:-lag], d[lag:]), 1.0)
    if counts.sum() == 0:
        raise GMVAEInputError(f"no trajectory is longer than the lag ({lag} frames)")
    frames = np.bincount(np.concatenate([np.asarray(d, dtype=np.int64) for d in dtrajs]), minlength=n_clusters)
    used = np.flatnonzero(counts.sum(axis=0) + counts.sum(axis=1) > 0)
    sub = counts[np.ix_(used, used)]
    n_sets, labels = connected_components(sub > 0, directed=True, connection="strong")
    sets, n_states = [], 0
    for c in range(n_sets):
        members = used[labels == c]
        frac = float(frames[members].sum() / n_total)
        cs = counts[np.ix_(members, members)]
        cs = cs + cs.T
        if cs.sum() == 0:
            ev = np.array([])
        else:
            t = cs / cs.sum(axis=1, keepdims=True)
            ev = np.sort(np.real(np.linalg.eigvals(t)))[::-1]
        counted = int(np.sum(ev >= min_eigenvalue)) if frac >= min_population else 0
        n_states += counted
        sets.append({"clusters": members.tolist(), "fraction_of_frames": frac, "eigenvalues": ev.tolist(),
                     "counted": counted})
    return {"n_states": int(n_states), "sets": sets, "lag": lag, "min_eigenvalue": float(min_eigenvalue)}


def select_n_clusters(
    trajectories: np.ndarray | Sequence[np.ndarray],
    *,
    k_max: int = 6,
    lag: int = 5,
    seeds: Sequence[int] = (0, 1, 2),
    min_eigenvalue: float = math.exp(-1.0),
    min_population: float = 0.01,
    progress: bool = False,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """The number of metastable states: GMVAE with ``k_max`` components, then the transition spectrum.

    Parameters
    ----------
    trajectories : (n_frames, n_features) array or list of them
        Feature matrices in time order, one per trajectory.
    k_max : int
        Components of the generous model (more than the states expected).
    lag : int
        Lag time in frames of the transition counts.
    seeds : sequence of int
        Training seeds; the count of each is reported and the median (rounded down) chosen.
    min_eigenvalue, min_population : float
        See :func:`count_metastable_states`.
    progress : bool
        Passed to :func:`~gmvae_cv.train.fit`.
    **fit_kwargs
        Other :func:`~gmvae_cv.train.fit` arguments (``latent_dim``, ``epochs``, ...).

    Returns
    -------
    dict
        ``k``: the chosen number of states; ``saturated``: True when ``k`` reaches ``k_max`` (the
        trajectories resolve at least as many metastable sets as there are components, so the
        count is a lower bound: raise ``k_max``, or the data hold no exchange that merges them, as
        for short runs that drift one way); ``per_seed``: for each seed its ``n_states``, the
        cluster populations and the spectrum of each connected set; ``rule`` (text).
    """
    trajs = as_list_of_arrays(trajectories, "trajectories")
    k_max = check_int(k_max, "k_max", minimum=2)
    seeds = [check_int(s, "seeds", minimum=0) for s in seeds]
    if not seeds:
        raise GMVAEInputError("'seeds' is empty, expected at least one training seed")
    if not 0.0 < float(min_eigenvalue) < 1.0:
        raise GMVAEInputError(f"'min_eigenvalue' is {min_eigenvalue}, expected 0 < min_eigenvalue < 1")
    for key in ("k", "seed", "out"):
        if key in fit_kwargs:
            raise GMVAEInputError(f"'{key}' is set by select_n_clusters, do not pass it")
    per_seed = []
    for s in seeds:
        run = fit(trajs, k=k_max, seed=s, progress=progress, **fit_kwargs)
        dtrajs = [run.transform(t)["clusters"] for t in trajs]
        res = count_metastable_states(dtrajs, k_max, lag, min_eigenvalue=min_eigenvalue, min_population=min_population)
        pop = np.bincount(np.concatenate(dtrajs), minlength=k_max) / sum(len(d) for d in dtrajs)
        per_seed.append({"seed": s, "n_states": res["n_states"], "populations": pop.tolist(), "sets": res["sets"]})
    counts = sorted(p["n_states"] for p in per_seed)
    k = counts[(len(counts) - 1) // 2]
    return {
        "k": int(max(k, 2)),
        "saturated": bool(k >= k_max),
        "n_states_per_seed": [p["n_states"] for p in per_seed],
        "per_seed": per_seed,
        "k_max": k_max,
        "lag": lag,
        "rule": f"GMVAE with k_max = {k_max}; per strongly connected set of its clusters, the eigenvalues of the "
        f"transition matrix at lag {lag} frames that are >= {min_eigenvalue:.3g}; sets under {min_population:.0%} "
        "of the frames not counted; median over seeds (lower median), at least 2",
    }
