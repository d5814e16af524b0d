"""How many states: the number of mixture components k chosen on held-out frames.

The training loss weights the entropy of q(y|x) by ``entropy_weight`` (0.05 by default), so it is
not a bound on the likelihood and its values cannot be compared across k: the term the weight
scales, :math:`\\sum_i q_i \\log q_i`, together with the :math:`\\log k` of the uniform prior p(y),
is the KL divergence of q(y|x) from p(y), which grows like :math:`\\log k` for sharp assignments.
:func:`validation_elbo` therefore scores each trained model with the true negative ELBO
(``entropy_weight = 1``: the full KL of q(y|x) from the uniform prior) on frames it was not
trained on; an extra component has to buy its :math:`\\log(k+1) - \\log k` nats per frame with a
better reconstruction and latent fit.

:func:`select_n_clusters` trains a GMVAE for each k in ``k_values`` and each seed on the frames
that are not held out (every ``holdout_every``-th frame of each trajectory is held out:
interleaved, because a split in time can leave a state out of one side, as it does on the
four-well trajectories), and picks the **smallest k whose mean held-out negative ELBO is within
the noise of the best k** (the larger of ``tolerance`` and twice the standard error of the
difference over seeds). It also reports, for every fit, how many components hold at least
``min_population`` of the held-out frames (components that empty out).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ._validation import GMVAEInputError, as_list_of_arrays, check_int, check_positive

__all__ = ["validation_elbo", "select_n_clusters", "choose_k"]


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
    from .loss import GMVAELoss

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
    """The selection rule of :func:`select_n_clusters` on a table of held-out scores.

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


def select_n_clusters(
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
    """Choose the number of GMVAE components from the held-out true ELBO across k.

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
    from .train import fit

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
            raise GMVAEInputError(f"'{key}' is set by select_n_clusters, do not pass it")
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
