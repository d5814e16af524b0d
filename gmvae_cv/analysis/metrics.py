"""Comparing a clustering with known states: confusion matrix and best one-to-one matching."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._core.errors import GMVAEInputError

__all__ = ["cluster_confusion"]


def cluster_confusion(true_states: np.ndarray, clusters: np.ndarray, n_states: int | None = None, n_clusters: int | None = None) -> dict:
    """Confusion matrix of clusters against true states, with the best matching.

    Parameters
    ----------
    true_states : (n,) int ndarray
        Known state of each frame (0..n_states-1).
    clusters : (n,) int ndarray
        Cluster of each frame (0..n_clusters-1).

    Returns
    -------
    dict
        ``matrix`` (n_states, n_clusters) counts; ``matching`` (state -> cluster) from the
        Hungarian algorithm maximising matched counts; ``accuracy``: the fraction of frames whose
        cluster is the one matched to their state; ``purity``: per state, the fraction of its
        frames in its most common cluster; ``owner_purity``: per state, the fraction of the frames
        of its most common cluster that belong to it.
    """
    s = np.asarray(true_states)
    c = np.asarray(clusters)
    if s.shape != c.shape or s.ndim != 1:
        raise GMVAEInputError(f"'true_states' {s.shape} and 'clusters' {c.shape} must be 1D of the same length")
    if not (np.issubdtype(s.dtype, np.integer) and np.issubdtype(c.dtype, np.integer)):
        raise GMVAEInputError("'true_states' and 'clusters' must be integer arrays")
    ns = n_states or int(s.max()) + 1
    nc = n_clusters or int(c.max()) + 1
    m = np.zeros((ns, nc), dtype=np.int64)
    np.add.at(m, (s, c), 1)
    rows, cols = linear_sum_assignment(-m)
    matching = {int(r): int(cc) for r, cc in zip(rows, cols)}
    accuracy = float(m[rows, cols].sum() / max(len(s), 1))
    top = m.argmax(axis=1)
    purity = m.max(axis=1) / np.maximum(m.sum(axis=1), 1)
    owner = np.array([m[i, top[i]] / max(m[:, top[i]].sum(), 1) for i in range(ns)])
    return {"matrix": m, "matching": matching, "accuracy": accuracy, "purity": purity, "owner_purity": owner, "top_cluster": top}
