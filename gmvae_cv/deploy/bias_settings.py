"""Bias settings of the PLUMED inputs: METAD and OPES_METAD parameters chosen from the CV.

:class:`MetadSettings` and :class:`OpesSettings` hold what a user may set; :func:`cv_statistics`
summarises the CV on the training frames and :func:`resolve_bias_settings` turns both into the
concrete keywords written into ``cv.json`` and rendered by :mod:`.plumed_render`.

Values not given are chosen from the CV on the training data (:func:`cv_statistics`):

* ``SIGMA`` (per component): ``sigma_fraction`` (default 0.5) times the pooled within-cluster
  standard deviation of the component, frames assigned to their most probable cluster. This is
  the width of a basin in CV space, which is what a Gaussian hill should resolve; the total
  standard deviation would also count the distance between basins.
* ``GRID_MIN``/``GRID_MAX``: the training range widened by ``grid_margin`` (default 1.0) times its
  width on each side. The bias pushes the CV beyond the training range and PLUMED stops with an
  error when a CV leaves the grid, so the margin is generous; ``GRID_BIN`` gives a bin width of
  at most SIGMA/5 (PLUMED's own default spacing).
* ``HEIGHT`` 1.2 kJ/mol (about kT/2 at 300 K), ``PACE`` 500 steps, ``BIASFACTOR`` 10,
  ``TEMP`` 300 K; ``OPES_METAD`` with ``BARRIER`` 40 kJ/mol (the C7eq -> C7ax barrier of alanine
  dipeptide in vacuum is about 35-40 kJ/mol).

All numbers are in PLUMED's units: nm, rad, kJ/mol, K, MD steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .._core.checks import check_array, check_int, check_positive
from .._core.errors import GMVAEInputError

__all__ = ["MetadSettings", "OpesSettings", "cv_statistics", "resolve_bias_settings"]

_KB = 0.008314462618  # kJ/mol/K


@dataclass
class MetadSettings:
    """Well-tempered metadynamics (PLUMED ``METAD``) on all CV components.

    Parameters
    ----------
    sigma : sequence of float, optional
        Gaussian widths per component in CV units; default ``sigma_fraction`` times the pooled
        within-cluster standard deviation on the training data.
    height : float
        Initial hill height, kJ/mol.
    pace : int
        MD steps between hills.
    bias_factor : float
        Well-tempered bias factor gamma (> 1).
    temperature : float
        K.
    grid_min, grid_max : sequence of float, optional
        Grid range per component; default the training range widened by ``grid_margin`` times its
        width on each side.
    sigma_fraction : float
        See ``sigma``.
    grid_margin : float
        See ``grid_min``.
    bins_per_sigma : float
        Grid bins per SIGMA (GRID_BIN is chosen so that a bin is at most SIGMA/bins_per_sigma).
    print_stride : int
        MD steps between lines of the COLVAR file.
    """

    sigma: Optional[Sequence[float]] = None
    height: float = 1.2
    pace: int = 500
    bias_factor: float = 10.0
    temperature: float = 300.0
    grid_min: Optional[Sequence[float]] = None
    grid_max: Optional[Sequence[float]] = None
    sigma_fraction: float = 0.5
    grid_margin: float = 1.0
    bins_per_sigma: float = 5.0
    print_stride: int = 500

    def validate(self) -> "MetadSettings":
        """Check every field; raise :class:`GMVAEInputError` naming it."""
        check_positive(self.height, "height")
        check_int(self.pace, "pace", minimum=1)
        if check_positive(self.bias_factor, "bias_factor") <= 1.0:
            raise GMVAEInputError(f"'bias_factor' is {self.bias_factor}, expected a number > 1 (well-tempered)")
        check_positive(self.temperature, "temperature")
        check_positive(self.sigma_fraction, "sigma_fraction")
        check_positive(self.grid_margin, "grid_margin", strict=False)
        check_positive(self.bins_per_sigma, "bins_per_sigma")
        check_int(self.print_stride, "print_stride", minimum=1)
        return self


@dataclass
class OpesSettings:
    """OPES metadynamics (PLUMED ``OPES_METAD``) on all CV components.

    Parameters
    ----------
    barrier : float
        Free-energy barrier to overcome, kJ/mol (sets OPES's bias factor, epsilon, cut-off).
    pace : int
        MD steps between kernel depositions.
    temperature : float
        K.
    sigma : sequence of float, optional
        Initial kernel widths in CV units; default as :class:`MetadSettings`.
    print_stride : int
        MD steps between lines of the COLVAR file.
    """

    barrier: float = 40.0
    pace: int = 500
    temperature: float = 300.0
    sigma: Optional[Sequence[float]] = None
    print_stride: int = 500

    def validate(self) -> "OpesSettings":
        """Check every field; raise :class:`GMVAEInputError` naming it."""
        check_positive(self.barrier, "barrier")
        check_int(self.pace, "pace", minimum=1)
        check_positive(self.temperature, "temperature")
        check_int(self.print_stride, "print_stride", minimum=1)
        return self


def cv_statistics(z: Any, cluster_probs: Any, *, source: Optional[str] = None) -> dict:
    """Summary of CV values on (training) frames, used to choose SIGMA and the grid.

    Parameters
    ----------
    z : (n_frames, D) array_like
        CV values.
    cluster_probs : (n_frames, K) array_like
        q(y|x) of the same frames.
    source : str, optional
        Where the frames came from (stored in the summary).

    Returns
    -------
    dict
        ``n_frames``, per component ``min``, ``max``, ``mean``, ``std`` and
        ``within_cluster_std`` (pooled over clusters, frames assigned to their most probable
        cluster; the total std where no cluster has two frames), and ``cluster_populations``
        (fraction of frames per cluster, length K).

    Examples
    --------
    >>> z = np.array([[0.0], [0.2], [4.0], [4.2]])
    >>> p = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> s = cv_statistics(z, p)
    >>> [round(v, 12) for v in s["within_cluster_std"]], s["cluster_populations"]
    ([0.1], [0.5, 0.5])
    """
    z = check_array(z, "z", ndim=2, min_rows=2)
    p = check_array(cluster_probs, "cluster_probs", ndim=2)
    if p.shape[0] != z.shape[0]:
        raise GMVAEInputError(f"'cluster_probs' has {p.shape[0]} rows, 'z' has {z.shape[0]}; expected equal")
    labels = p.argmax(axis=1)
    k = p.shape[1]
    ss = np.zeros(z.shape[1])
    dof = 0
    for c in range(k):
        zc = z[labels == c]
        if len(zc) >= 2:
            ss += ((zc - zc.mean(axis=0)) ** 2).sum(axis=0)
            dof += len(zc)
    within = np.sqrt(ss / dof) if dof else z.std(axis=0)
    within = np.where(within > 0, within, z.std(axis=0))
    out = {
        "n_frames": int(z.shape[0]),
        "min": z.min(axis=0).tolist(),
        "max": z.max(axis=0).tolist(),
        "mean": z.mean(axis=0).tolist(),
        "std": z.std(axis=0).tolist(),
        "within_cluster_std": within.tolist(),
        "cluster_populations": (np.bincount(labels, minlength=k) / len(labels)).tolist(),
    }
    if source is not None:
        out["source"] = str(source)
    return out


def _round_sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _outward(lo: float, hi: float) -> tuple[float, float]:
    """Round ``lo`` down and ``hi`` up to a step of about 1/100 of the width."""
    width = hi - lo
    step = 10.0 ** (math.floor(math.log10(width)) - 2) if width > 0 else 1e-3
    decimals = max(0, -int(math.floor(math.log10(step))))
    return round(math.floor(lo / step) * step, decimals), round(math.ceil(hi / step) * step, decimals)


def _per_component(values: Optional[Sequence[float]], d: int, name: str) -> Optional[list[float]]:
    if values is None:
        return None
    vals = check_array(values, name, ndim=1)
    if vals.shape[0] != d:
        raise GMVAEInputError(f"'{name}' has {vals.shape[0]} values, the CV has {d} components")
    return [float(v) for v in vals]


def resolve_bias_settings(
    metad: MetadSettings, opes: OpesSettings, stats: Optional[Mapping[str, Any]], d: int
) -> dict:
    """Concrete METAD and OPES_METAD parameters from settings and CV statistics.

    Parameters
    ----------
    metad, opes : MetadSettings, OpesSettings
        Settings; unset ``sigma``/``grid_min``/``grid_max`` are taken from ``stats``.
    stats : dict or None
        :func:`cv_statistics` of the training frames; may be None only when every such value is
        set explicitly.
    d : int
        Number of CV components.

    Returns
    -------
    dict
        ``{"metad": {...}, "opes": {...}}`` with every keyword's value and a ``"choices"`` list
        of how each derived value was obtained (rendered as comments).
    """
    metad = dataclasses.replace(metad).validate()
    opes = dataclasses.replace(opes).validate()
    sigma = _per_component(metad.sigma, d, "sigma")
    gmin = _per_component(metad.grid_min, d, "grid_min")
    gmax = _per_component(metad.grid_max, d, "grid_max")
    osigma = _per_component(opes.sigma, d, "opes sigma")
    needs = [n for n, v in (("sigma", sigma), ("grid_min", gmin), ("grid_max", gmax)) if v is None]
    if needs and stats is None:
        raise GMVAEInputError(
            f"no CV statistics to choose {', '.join(needs)} from: give training frames (export(..., data=) or "
            "--data/--traj) or set them explicitly"
        )
    choices = []
    if sigma is None:
        sigma = [_round_sig(metad.sigma_fraction * s) for s in stats["within_cluster_std"]]
        choices.append(
            f"SIGMA = {metad.sigma_fraction:g} x the within-cluster standard deviation of each component "
            f"on {stats['n_frames']} training frames (the width of a basin in CV space)"
        )
    else:
        choices.append("SIGMA set by the user")
    if any(s <= 0 for s in sigma):
        raise GMVAEInputError(f"'sigma' is {sigma}, expected positive widths")
    if gmin is None or gmax is None:
        lo = np.array(stats["min"], dtype=float)
        hi = np.array(stats["max"], dtype=float)
        width = np.maximum(hi - lo, np.array(sigma))
        auto = [_outward(a - metad.grid_margin * w, b + metad.grid_margin * w) for a, b, w in zip(lo, hi, width)]
        gmin = gmin if gmin is not None else [a for a, _ in auto]
        gmax = gmax if gmax is not None else [b for _, b in auto]
        choices.append(
            f"GRID_MIN/GRID_MAX = the training range widened by {metad.grid_margin:g} x its width on each side; "
            "PLUMED stops with an error if the CV leaves the grid: widen them if that happens"
        )
    else:
        choices.append("GRID_MIN/GRID_MAX set by the user; PLUMED stops with an error if the CV leaves the grid")
    if any(b <= a for a, b in zip(gmin, gmax)):
        raise GMVAEInputError(f"'grid_min' {gmin} and 'grid_max' {gmax}: expected grid_min < grid_max per component")
    bins = [int(math.ceil((b - a) / (s / metad.bins_per_sigma))) for a, b, s in zip(gmin, gmax, sigma)]
    choices.append(f"GRID_BIN: bins of at most SIGMA/{metad.bins_per_sigma:g}")
    kt = _KB * metad.temperature
    choices.append(
        f"HEIGHT {metad.height:g} kJ/mol ({metad.height / kt:.2f} kT at {metad.temperature:g} K), PACE {metad.pace} steps, "
        f"BIASFACTOR {metad.bias_factor:g}"
    )
    if osigma is None:
        osigma = list(sigma)
    return {
        "metad": {
            "sigma": sigma,
            "height": float(metad.height),
            "pace": int(metad.pace),
            "bias_factor": float(metad.bias_factor),
            "temperature": float(metad.temperature),
            "grid_min": [float(v) for v in gmin],
            "grid_max": [float(v) for v in gmax],
            "grid_bin": bins,
            "print_stride": int(metad.print_stride),
            "choices": choices,
        },
        "opes": {
            "barrier": float(opes.barrier),
            "pace": int(opes.pace),
            "temperature": float(opes.temperature),
            "sigma": [float(v) for v in osigma],
            "print_stride": int(opes.print_stride),
            "choices": [
                "SIGMA: the METAD SIGMA (OPES_METAD shrinks its kernels as sampling proceeds)"
                if opes.sigma is None
                else "SIGMA set by the user",
                f"BARRIER {opes.barrier:g} kJ/mol: about the highest barrier to cross; it sets OPES's bias factor",
            ],
        },
    }
