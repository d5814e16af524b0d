"""Datasets for GMVAE training: frames, optional per-frame weights, optional time-lagged pairs."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from mlcolvar.data import DictDataset

from .._core.errors import GMVAEInputError
from ..features import FeatureSpec, load_trajectory_features, resolve_spec
from .._core.checks import as_list_of_arrays, check_array, check_int, check_n_features, load_array_file

__all__ = ["make_dataset", "load_trajectories", "feature_inputs"]


def load_trajectories(
    paths: Sequence[str | os.PathLike], name: str = "data", *, n_features: Optional[int] = None,
    expected_by: str = "the feature spec",
) -> list[np.ndarray]:
    """Load feature matrices, one file per trajectory.

    Parameters
    ----------
    paths : sequence of path
        ``.npy`` or text files, each a 2D array ``(n_frames, n_features)``.
    name : str
        Field name used in errors (``data`` or ``weights``).
    n_features : int, optional
        Required number of columns.
    expected_by : str
        Who requires ``n_features``, named in the error (``"the model in RUN"``).

    Returns
    -------
    list of (n_frames, n_features) float64 ndarray
    """
    out = []
    for p in paths:
        arr = load_array_file(p, name, ndim=2, min_rows=1)
        if n_features is not None:
            check_n_features(arr, n_features, name, source=p, expected_by=expected_by)
        out.append(arr)
    if out and len({a.shape[1] for a in out}) > 1:
        shapes = ", ".join(f"{p}: {a.shape[1]}" for p, a in zip(paths, out))
        raise GMVAEInputError(f"trajectories have different feature counts ({shapes}); all files must have the same columns")
    return out


def feature_inputs(
    *, data: Optional[Sequence[str | os.PathLike]] = None, traj: Optional[Sequence[str | os.PathLike]] = None,
    top: Any = None, spec: Any = None, stride: int = 1, n_features: Optional[int] = None,
    expected_by: str = "the feature spec",
) -> tuple[list[np.ndarray], list[str], Optional[FeatureSpec]]:
    """Feature matrices from ``data`` files, or computed from ``traj`` files with ``top`` and ``spec``.

    Parameters
    ----------
    data : sequence of path, optional
        Feature matrices (``.npy`` or text), one per trajectory (:func:`load_trajectories`).
    traj : sequence of path, optional
        Trajectories (any format mdtraj reads); exactly one of ``data`` and ``traj``.
    top : path or topology, optional
        The trajectories' topology (needed with ``traj``).
    spec : FeatureSpec, ready name or spec JSON path, optional
        The features (:func:`~gmvae_cv.features.resolve_spec`; needed with ``traj``). With ``data``
        it sets ``n_features`` unless that is given.
    stride : int
        With ``traj``: every ``stride``-th frame.
    n_features : int, optional
        Required column count of every ``data`` file (a trained model's), checked with a message
        that names the file and ``expected_by``.

    Returns
    -------
    arrays : list of (n_frames, n_features) float64 ndarray
    sources : list of str
        The files, in order.
    spec : FeatureSpec or None
    """
    if bool(data) == bool(traj):
        raise GMVAEInputError("give either 'data' (feature matrices, --data) or 'traj' with 'top' and 'spec' "
                              "(trajectories, --traj/--top/--spec)")
    if data:
        fspec = resolve_spec(spec) if spec is not None else None
        if n_features is None and fspec is not None:
            n_features = fspec.n_features
        arrays = load_trajectories(data, "data", n_features=n_features, expected_by=expected_by)
        return arrays, [str(p) for p in data], fspec
    if top is None or spec is None:
        raise GMVAEInputError("'traj' needs 'top' (the topology file, --top) and 'spec' (a feature spec JSON or a "
                              "ready spec name, --spec)")
    fspec = resolve_spec(spec, top)
    return load_trajectory_features(traj, top, fspec, stride=stride), [str(p) for p in traj], fspec


def make_dataset(
    data: np.ndarray | Sequence[np.ndarray],
    *,
    weights: np.ndarray | Sequence[np.ndarray] | None = None,
    lag: int = 0,
    sources: Optional[Sequence[str]] = None,
) -> DictDataset:
    """Build the training dataset.

    Parameters
    ----------
    data : (n_frames, n_features) array or list of them
        Features; a list holds several trajectories (a lag never crosses two of them).
    weights : (n_frames,) array or list of them, optional
        Non-negative per-frame weights (e.g. ``exp(beta V)`` from a biased run), one array per
        trajectory. With a lag, a pair ``(x(t), x(t+lag))`` takes the weight of ``x(t)``.
    lag : int
        Time lag in frames; ``0`` gives a plain autoencoder dataset (``target`` absent).
    sources : sequence of str, optional
        Names of the trajectories (file names) used in error messages.

    Returns
    -------
    mlcolvar.data.DictDataset
        Keys ``data`` (float32, ``(n, n_features)``), ``target`` (with a lag) and ``weights``
        (if given, float32 ``(n,)``, normalised to mean 1).
    """
    trajs = as_list_of_arrays(data, "data")
    names = list(sources) if sources is not None else [f"data[{i}]" for i in range(len(trajs))]
    if len(names) != len(trajs):
        raise GMVAEInputError(f"'sources' has {len(names)} names for {len(trajs)} trajectories")
    trajs = [check_array(t, "data", source=n, ndim=2, min_rows=1) for t, n in zip(trajs, names)]
    n_feat = {t.shape[1] for t in trajs}
    if len(n_feat) > 1:
        raise GMVAEInputError(f"'data' trajectories have different feature counts {sorted(n_feat)}; expected one")
    lag = check_int(lag, "lag", minimum=0)
    ws: list[Optional[np.ndarray]] = [None] * len(trajs)
    if weights is not None:
        wl = as_list_of_arrays(weights, "weights")
        if len(wl) != len(trajs):
            raise GMVAEInputError(f"'weights' has {len(wl)} arrays for {len(trajs)} trajectories; expected one per trajectory")
        ws = []
        for w, t, n in zip(wl, trajs, names):
            w = check_array(np.asarray(w).reshape(-1) if np.ndim(w) == 2 and np.shape(w)[1] == 1 else w, "weights", source=n, ndim=1, nonnegative=True)
            if len(w) != len(t):
                raise GMVAEInputError(f"{n}: 'weights' has {len(w)} entries, expected {len(t)} (one per frame)")
            ws.append(w)
    xs, ts, wout = [], [], []
    for t, w, n in zip(trajs, ws, names):
        if lag:
            if lag >= len(t):
                raise GMVAEInputError(f"{n}: 'lag' is {lag} frames, expected fewer than the trajectory's {len(t)} frames")
            xs.append(t[:-lag])
            ts.append(t[lag:])
            if w is not None:
                wout.append(w[:-lag])
        else:
            xs.append(t)
            if w is not None:
                wout.append(w)
    d = {"data": torch.as_tensor(np.concatenate(xs), dtype=torch.float32)}
    if lag:
        d["target"] = torch.as_tensor(np.concatenate(ts), dtype=torch.float32)
    if weights is not None:
        w = np.concatenate(wout)
        if not w.sum() > 0:
            raise GMVAEInputError("'weights' sum to zero; expected some positive weights")
        d["weights"] = torch.as_tensor(w / w.mean(), dtype=torch.float32)
    return DictDataset(d)
