"""What a trained GMVAE's latent dimensions and clusters depend on: ``gmvae-cv explain``.

Three views of one run on a set of frames ``X`` (``n_frames x n_features``, the run's features):

**Sensitivity of each CV component to each feature.** mlcolvar's partial-derivative analysis
(:func:`mlcolvar.explain.sensitivity_analysis`) applied to one CV component at a time:

.. math:: s_{ij} = \\frac{\\langle |\\partial z_j / \\partial x_i| \\rangle\\, \\sigma_i}
                      {\\sum_l \\langle |\\partial z_j / \\partial x_l| \\rangle\\, \\sigma_l},

the mean absolute derivative over the frames, times the feature's standard deviation (so that
features in different units compare), normalised to sum to 1 per component. mlcolvar's function
differentiates the sum of all outputs, so each component is passed to it as its own
one-output model. Features are ranked by :math:`s_{ij}` per component.

**Per cluster.** Frames are assigned to the cluster of largest q(y|x). For each populated
cluster ``c`` and feature ``i``: the mean and standard deviation over the cluster's frames, and
the standardised difference from all other frames (Cohen's d with the pooled standard deviation)

.. math:: d_{ci} = \\frac{\\bar x_{c,i} - \\bar x_{\\neg c,i}}{\\sqrt{(\\sigma^2_{c,i} + \\sigma^2_{\\neg c,i})/2}},

``0`` where a feature is constant. The features with the largest :math:`|d|` separate the
cluster from the others most.

**Per residue** (specs whose every feature has atom labels, such as ``backbone_torsions``): the
sensitivities summed over each residue's features (so they still sum to 1 per component), and
the root mean square of :math:`d` over each residue's features (sign dropped: a residue's phi and
psi may move in opposite directions).

Without a feature spec the columns are named by their number (``x0``, ``x1``, ...; from 0) or by
the ``feature_names`` the run stored, and the report says which.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from mlcolvar.data import DictDataset
from mlcolvar.explain import sensitivity_analysis

from .._core.checks import check_array, load_array_file
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json, atomic_write_text
from ..features import feature_residues
from .._core.figures import _pyplot, save_figure
from ..learn import GMVAERun, load_run

__all__ = ["explain", "sensitivity", "cluster_statistics", "load_explain_data"]


class _Component(torch.nn.Module):
    """One component of a run's CV as a one-output model (mlcolvar differentiates the output sum)."""

    def __init__(self, model: torch.nn.Module, j: int) -> None:
        super().__init__()
        self.model = model
        self.j = j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_cv(x)[:, self.j : self.j + 1]


def sensitivity(run: Any, data: np.ndarray, *, batch: int = 20000) -> np.ndarray:
    """Normalised sensitivity of each CV component to each feature (mlcolvar's MAV metric).

    Parameters
    ----------
    run : GMVAERun
    data : ndarray, shape ``(n_frames, n_features)``
        Raw features, as the run was trained on.
    batch : int
        At most this many frames are used (evenly strided), to bound memory.

    Returns
    -------
    ndarray, shape ``(latent_dim, n_features)``
        Rows sum to 1; column order as ``data``.
    """
    x = np.asarray(data, dtype=np.float32)
    if len(x) > batch:
        x = x[:: int(np.ceil(len(x) / batch))]
    std = x.std(axis=0).astype(np.float64)
    cols = np.array([str(i) for i in range(x.shape[1])])
    out = np.zeros((run.config.latent_dim, x.shape[1]))
    model = run.model.eval()
    for j in range(run.config.latent_dim):
        ds = DictDataset({"data": torch.as_tensor(x)})
        res = sensitivity_analysis(_Component(model, j), ds, std=std, feature_names=cols, metric="MAV", plot_mode=None)
        order = res["feature_names"].astype(int)  # mlcolvar returns them sorted by sensitivity
        out[j, order] = res["sensitivity"]["Dataset"]
    return out


def cluster_statistics(data: np.ndarray, clusters: np.ndarray, k: int) -> dict[str, Any]:
    """Mean, spread and standardised difference of each feature per cluster.

    Parameters
    ----------
    data : ndarray, shape ``(n_frames, n_features)``
    clusters : ndarray of int, shape ``(n_frames,)``
        Cluster of each frame, in ``0 .. k-1``.
    k : int
        Number of clusters of the model.

    Returns
    -------
    dict
        ``population`` (k,) fractions of frames; ``populated`` list of clusters with at least
        two frames; ``mean``, ``std``, ``d`` arrays ``(k, n_features)``, NaN for clusters with
        fewer than two frames (or, for ``d``, no frames outside).
    """
    x = np.asarray(data, dtype=np.float64)
    n, m = x.shape
    mean = np.full((k, m), np.nan)
    std = np.full((k, m), np.nan)
    d = np.full((k, m), np.nan)
    pop = np.bincount(clusters, minlength=k)[:k] / max(n, 1)
    populated = []
    for c in range(k):
        inside = clusters == c
        if inside.sum() < 2:
            continue
        populated.append(c)
        mean[c], std[c] = x[inside].mean(axis=0), x[inside].std(axis=0)
        if (~inside).sum() < 2:
            continue
        mo, so = x[~inside].mean(axis=0), x[~inside].std(axis=0)
        pooled = np.sqrt(0.5 * (std[c] ** 2 + so**2))
        diff = mean[c] - mo
        d[c] = np.where(pooled > 1e-12 * (1 + np.abs(mo)), diff / np.where(pooled > 0, pooled, 1.0), 0.0)
    return {"population": pop, "populated": populated, "mean": mean, "std": std, "d": d}


def load_explain_data(run: Any, data: Any = None) -> tuple[np.ndarray, str]:
    """The frames to explain the run on, checked against its feature count.

    Parameters
    ----------
    run : GMVAERun
    data : array, path, or sequence of paths, optional
        Feature matrices (concatenated). Default: the ``.npy``/text files the run was trained on,
        as recorded in ``gmvae_run.json`` (``data[].source``), if they still exist.

    Returns
    -------
    data : ndarray, shape ``(n_frames, n_features)``
    source : str
        Where the frames came from (for the report).
    """
    if data is None:
        sources = [d.get("source") for d in run.info.get("data", [])]
        paths = [Path(s) for s in sources if s]
        if not paths or not all(p.is_file() for p in paths):
            where = run.path / "gmvae_run.json" if run.path is not None else "the run"
            raise GMVAEInputError(
                f"{where}: the training data {sources} are not files that exist here; give the frames with --data X.npy"
            )
        data = paths
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    if isinstance(data, np.ndarray):
        arrays, names = [check_array(data, "data", ndim=2, min_rows=2)], ["the array given"]
    else:
        arrays, names = [], []
        for p in data:
            arrays.append(load_array_file(p, "data", ndim=2, min_rows=1))
            names.append(str(p))
    for a, name in zip(arrays, names):
        if a.shape[1] != run.n_features:
            raise GMVAEInputError(
                f"{name}: has {a.shape[1]} features (columns), the run{' ' + str(run.path) if run.path else ''} "
                f"was trained on {run.n_features}"
            )
    x = np.concatenate(arrays)
    if len(x) < 2:
        raise GMVAEInputError(f"{', '.join(names)}: {len(x)} frame, expected at least 2")
    return x, ", ".join(names)


def _feature_names(run: Any) -> tuple[list[str], str, Optional[list[Optional[str]]]]:
    spec = run.feature_spec
    if spec is not None:
        res = feature_residues(spec)
        return spec.names, "feature spec", res if all(r is not None for r in res) and len(set(res)) > 1 else None
    if run.info.get("feature_names"):
        return list(run.info["feature_names"]), "feature names stored by the run (no feature spec)", None
    return [f"x{i}" for i in range(run.n_features)], "column numbers from 0 (the run has no feature spec)", None


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _fold(values: np.ndarray, residues: list[str], how: str) -> tuple[list[str], np.ndarray]:
    """Fold the last axis of ``values`` by residue (order of first appearance): 'sum' or 'rms'."""
    order = list(dict.fromkeys(residues))
    idx = {r: [i for i, x in enumerate(residues) if x == r] for r in order}
    out = np.stack([
        values[..., idx[r]].sum(axis=-1) if how == "sum" else np.sqrt(np.mean(values[..., idx[r]] ** 2, axis=-1))
        for r in order
    ], axis=-1)
    return order, out


def _plot_sensitivity(sens: np.ndarray, names: list[str], path: Path, title: str, max_features: int = 30) -> None:
    plt = _pyplot()
    n_cv, m = sens.shape
    shown = min(m, max_features)
    fig, axes = plt.subplots(1, n_cv, figsize=(4.2 * n_cv, 0.28 * shown + 1.5), squeeze=False)
    for j, ax in enumerate(axes[0]):
        order = np.argsort(-sens[j])[:shown][::-1]
        ax.barh(range(shown), sens[j, order], color="C0")
        ax.set_yticks(range(shown), [names[i] for i in order], fontsize=7 if shown > 20 else 9)
        ax.set_xlabel("sensitivity (normalised)")
        ax.set_title(f"z{j}" + (f" (top {shown} of {m})" if shown < m else ""))
    fig.suptitle(title)
    save_figure(fig, path)


def _plot_heatmap(d: np.ndarray, rows: list[int], names: list[str], path: Path, title: str, label: str,
                  diverging: bool = True) -> None:
    plt = _pyplot()
    mat = d[rows]
    fig, ax = plt.subplots(figsize=(min(0.22 * len(names) + 3, 22), 0.45 * len(rows) + 2.2))
    vmax = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    im = ax.imshow(mat, aspect="auto", cmap="RdBu_r" if diverging else "viridis",
                   vmin=-vmax if diverging else 0.0, vmax=vmax or 1.0)
    ax.set_yticks(range(len(rows)), [f"cluster {c}" for c in rows])
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7 if len(names) > 20 else 9)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.03, label=label)
    save_figure(fig, path)


def _ranked(values: np.ndarray, names: list[str], n: int) -> list[dict]:
    """The ``n`` features of largest ``|values|``: name, column and value, largest first."""
    order = np.argsort(-np.abs(values))[:n]
    return [{"feature": names[i], "column": int(i), "value": float(values[i])} for i in order]


def _cluster_report(stats: dict[str, Any], k: int, names: list[str], top: int) -> dict[str, Any]:
    """The ``clusters`` entry of ``explain.json``, from :func:`cluster_statistics`."""
    return {
        "k": k,
        "population": stats["population"].tolist(),
        "empty": [c for c in range(k) if c not in stats["populated"]],
        "per_cluster": {
            str(c): {
                "population": float(stats["population"][c]),
                "mean": stats["mean"][c].tolist(),
                "std": stats["std"][c].tolist(),
                "d": np.nan_to_num(stats["d"][c]).tolist(),
                "top_features": _ranked(np.nan_to_num(stats["d"][c]), names, top),
            }
            for c in stats["populated"]
        },
    }


def _residue_report(sens: np.ndarray, stats: dict[str, Any], residues: list[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Sensitivities summed and ``d`` RMS-folded per residue.

    Returns
    -------
    report : dict
        The ``residues`` entry of ``explain.json``.
    res_sens : (latent_dim, n_residues) ndarray
    res_d : (n_clusters, n_residues) ndarray
    """
    res_names, res_sens = _fold(sens, residues, "sum")
    _, res_d = _fold(np.nan_to_num(stats["d"]), residues, "rms")
    report = {
        "names": res_names,
        "sensitivity": res_sens.tolist(),
        "ranking": {f"z{j}": [res_names[i] for i in np.argsort(-res_sens[j])] for j in range(sens.shape[0])},
        "rms_d": {str(c): res_d[c].tolist() for c in stats["populated"]},
    }
    return report, res_sens, res_d


def _write_tables(out: Path, sens: np.ndarray, stats: dict[str, Any], names: list[str], residues: Optional[list[str]]) -> None:
    """``sensitivity.csv`` (per feature: sensitivity and rank per component) and ``clusters.csv``."""
    head = ["column", "feature"] + (["residue"] if residues else []) + [f"sensitivity_z{j}" for j in range(len(sens))] \
        + [f"rank_z{j}" for j in range(len(sens))]
    ranks = [np.argsort(np.argsort(-sens[j])) + 1 for j in range(len(sens))]
    rows = [head] + [
        [i, names[i]] + ([residues[i]] if residues else []) + [f"{sens[j, i]:.6g}" for j in range(len(sens))]
        + [int(ranks[j][i]) for j in range(len(sens))]
        for i in range(len(names))
    ]
    atomic_write_text(out / "sensitivity.csv", _csv(rows))
    rows = [["cluster", "population", "column", "feature", "mean", "std", "d"]] + [
        [c, f"{stats['population'][c]:.6g}", i, names[i], f"{stats['mean'][c, i]:.6g}", f"{stats['std'][c, i]:.6g}",
         f"{np.nan_to_num(stats['d'][c, i]):.6g}"]
        for c in stats["populated"] for i in range(len(names))
    ]
    atomic_write_text(out / "clusters.csv", _csv(rows))


def _plot_residues(rn: list[str], res_sens: np.ndarray, res_d: np.ndarray, rows_c: list[int], path: Path) -> None:
    """Per-residue sensitivity bars (one per component) over an RMS-``d`` heatmap per cluster."""
    plt = _pyplot()
    n_cv = len(res_sens)
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.4 * len(rn) + 2), 7), constrained_layout=True)
    w = 0.8 / n_cv
    for j in range(n_cv):
        axes[0].bar(np.arange(len(rn)) + (j - (n_cv - 1) / 2) * w, res_sens[j], w, label=f"z{j}")
    axes[0].set_xticks(range(len(rn)), rn, rotation=90)
    axes[0].set_ylabel("sensitivity (sum over the residue's features)")
    axes[0].legend()
    im = axes[1].imshow(res_d[rows_c], aspect="auto", cmap="viridis", vmin=0)
    axes[1].set_yticks(range(len(rows_c)), [f"cluster {c}" for c in rows_c])
    axes[1].set_xticks(range(len(rn)), rn, rotation=90)
    axes[1].set_title("RMS standardised difference per residue, cluster vs the rest")
    fig.colorbar(im, ax=axes[1], fraction=0.03, label="RMS d")
    save_figure(fig, path)


def _write_outputs(
    out: Path,
    report: dict[str, Any],
    sens: np.ndarray,
    stats: dict[str, Any],
    names: list[str],
    names_from: str,
    residues: Optional[list[str]],
    folded: Optional[tuple[np.ndarray, np.ndarray]],
) -> None:
    """Write ``explain.json``, the CSV tables and the figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "explain.json", report)
    _write_tables(out, sens, stats, names, residues)
    note = "" if names_from == "feature spec" else f" [{names_from}]"
    _plot_sensitivity(sens, names, out / "sensitivity.png", f"sensitivity of each CV component{note}")
    _plot_heatmap(np.nan_to_num(stats["d"]), stats["populated"], names, out / "cluster_separation.png",
                  f"standardised difference, cluster vs the rest{note}", "d")
    if folded is not None:
        res_sens, res_d = folded
        _plot_residues(report["residues"]["names"], res_sens, res_d, stats["populated"], out / "residues.png")


def explain(
    run: Any,
    data: Any = None,
    *,
    out: str | os.PathLike | None = None,
    top: int = 5,
) -> dict[str, Any]:
    """Sensitivities, per-cluster feature statistics and (for peptide specs) per-residue summaries.

    Parameters
    ----------
    run : GMVAERun or path
        A trained run (or its directory).
    data : array, path or sequence of paths, optional
        Frames ``(n_frames, n_features)`` in the run's features; default the files the run was
        trained on (see :func:`load_explain_data`).
    out : path, optional
        Folder for ``explain.json``, ``sensitivity.csv``, ``clusters.csv``, ``sensitivity.png``,
        ``cluster_separation.png`` and, when folded per residue, ``residues.png``.
    top : int
        Number of top-ranked features listed per component and per cluster in the JSON.

    Returns
    -------
    dict
        The content of ``explain.json``: ``feature_names`` and ``feature_names_from``;
        ``sensitivity`` (``latent_dim x n_features`` nested lists, rows sum to 1), ``ranking``
        per component (feature names, most sensitive first); ``clusters``: population, mean,
        std and standardised difference ``d`` per populated cluster and its ``top`` features by
        ``|d|``; ``residues`` (or None): sensitivity per residue and RMS ``d`` per cluster and
        residue.
    """
    if not isinstance(run, GMVAERun):
        run = load_run(run)
    x, source = load_explain_data(run, data)
    names, names_from, residues = _feature_names(run)
    sens = sensitivity(run, x)
    clusters = run.transform(x)["clusters"]
    k = run.config.n_clusters
    stats = cluster_statistics(x, clusters, k)

    report: dict[str, Any] = {
        "run": str(run.path) if run.path is not None else None,
        "data": source,
        "n_frames": int(len(x)),
        "feature_names": names,
        "feature_names_from": names_from,
        "method": {
            "sensitivity": "mlcolvar.explain.sensitivity_analysis, metric MAV, per CV component: "
            "mean |dz_j/dx_i| times std(x_i) over the frames, normalised to sum 1 per component",
            "clusters": "argmax q(y|x); d = (mean in cluster - mean elsewhere) / sqrt((var_in + var_elsewhere)/2)",
            "residues": "sensitivity summed over a residue's features; RMS of d over them",
        },
        "sensitivity": sens.tolist(),
        "ranking": {f"z{j}": [names[i] for i in np.argsort(-sens[j])] for j in range(sens.shape[0])},
        "clusters": _cluster_report(stats, k, names, top),
        "residues": None,
    }
    folded = None
    if residues is not None:
        report["residues"], res_sens, res_d = _residue_report(sens, stats, residues)
        folded = (res_sens, res_d)
    if out is not None:
        _write_outputs(Path(out), report, sens, stats, names, names_from, residues, folded)
    return report
