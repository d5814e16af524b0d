"""PLUMED input files for an exported GMVAE CV: METAD, OPES_METAD, multiple walkers, reweighting.

The CV enters PLUMED through ``PYTORCH_MODEL`` (PLUMED's ``pytorch`` module, which needs a PLUMED
built with libtorch): the feature lines of the :class:`~gmvae_cv.features.FeatureSpec` compute the
inputs, ``cv: PYTORCH_MODEL FILE=model_plumed.ptc ARG=f0,...`` gives the components
``cv.node-0 ... cv.node-{D-1}`` and ``clusters: PYTORCH_MODEL FILE=model_clusters.ptc`` the cluster
probabilities ``clusters.node-0 ... clusters.node-{K-1}``.

Bias settings are chosen from the CV on the training data (:func:`cv_statistics`) unless given:

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

All numbers are written in PLUMED's units: nm, rad, kJ/mol, K, MD steps.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from ..features import FeatureSpec
from .contract import read_cv_json
from .._core.files import atomic_write_text
from .._core.checks import check_array, check_int, check_positive

__all__ = [
    "MetadSettings",
    "OpesSettings",
    "cv_statistics",
    "resolve_bias_settings",
    "render_plumed_dat",
    "render_plumed_opes",
    "render_walkers",
    "render_reweight",
    "write_plumed_inputs",
]

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


# ------------------------------------------------------------------------------------ statistics
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
    >>> s["within_cluster_std"], s["cluster_populations"]
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


# ------------------------------------------------------------------------------------ rendering
def _num(x: float) -> str:
    """A float in the shortest form that reads back to the same value."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _join(values: Sequence[float]) -> str:
    return ",".join(_num(v) for v in values)


def _cv_args(d: int, label: str = "cv") -> str:
    return ",".join(f"{label}.node-{i}" for i in range(d))


def _components(n: int, label: str) -> str:
    """``label.node-0, label.node-1`` (or ``label.node-0 ... label.node-{n-1}`` for n > 3)."""
    if n <= 3:
        return ", ".join(f"{label}.node-{i}" for i in range(n))
    return f"{label}.node-0 ... {label}.node-{n - 1}"


def _header(cv_info: Mapping[str, Any], what: str, how_to_run: Sequence[str]) -> list[str]:
    d, k = cv_info["latent_dim"], cv_info["n_clusters"]
    return [
        f"# {what}",
        f"# GMVAE collective variable exported by gmvae-cv {cv_info.get('gmvae_cv_version', '')}: "
        f"{cv_info['n_features']} features -> D={d} CV components, K={k} clusters (see cv.json).",
        "# Needs a PLUMED with the pytorch module (built with libtorch) for PYTORCH_MODEL, and",
        "# model_plumed.ptc, model_clusters.ptc in the folder PLUMED runs in (FILE= paths are relative to it).",
        *[f"# {line}" for line in how_to_run],
        "# Units: nm, rad, kJ/mol, K; times in MD steps.",
        "#",
    ]


def _model_lines(spec: Any, d: int, k: int, label_prefix: str = "f") -> tuple[list[str], list[str]]:
    feat = spec.plumed_input(label_prefix=label_prefix)
    args = ",".join(feat.args)
    lines = [
        *feat.lines,
        "#",
        f"# The CV: the GMVAE encoder mean of the features above (in this order), components {_components(d, 'cv')}.",
        f"cv: PYTORCH_MODEL FILE=model_plumed.ptc ARG={args}",
        f"# Cluster probabilities q(y|x): {_components(k, 'clusters')}, summing to 1 (usable as CVs too).",
        f"clusters: PYTORCH_MODEL FILE=model_clusters.ptc ARG={args}",
    ]
    return lines, feat.args


def _metad_block(m: Mapping[str, Any], d: int, *, label: str = "metad", extra: Sequence[str] = (), reweight: bool = False) -> list[str]:
    lines = ["#"]
    if reweight:
        lines += [
            "# The bias of the finished run: the same METAD reads its HILLS (RESTART=YES) and adds none",
            "# (HEIGHT=0, PACE larger than the trajectory), so metad.bias is the final bias V(s).",
        ]
    else:
        lines += ["# Well-tempered metadynamics on the CV. Choices:"] + [f"#   {c}" for c in m["choices"]]
    lines += [
        f"{label}: METAD ...",
        f"  ARG={_cv_args(d)}",
        f"  SIGMA={_join(m['sigma'])}",
        f"  HEIGHT={'0' if reweight else _num(m['height'])}",
        f"  PACE={'100000000' if reweight else m['pace']}",
        f"  BIASFACTOR={_num(m['bias_factor'])}",
        f"  TEMP={_num(m['temperature'])}",
        f"  GRID_MIN={_join(m['grid_min'])}",
        f"  GRID_MAX={_join(m['grid_max'])}",
        f"  GRID_BIN={','.join(str(b) for b in m['grid_bin'])}",
        *[f"  {e}" for e in extra],
        "  FILE=HILLS",
    ]
    if reweight:
        lines.append("  RESTART=YES")
    else:
        lines.append("  CALC_RCT")
    lines.append("...")
    return lines


def render_plumed_dat(cv_info: Mapping[str, Any], spec: Any) -> str:
    """``plumed.dat``: features, the two PYTORCH_MODEL actions, well-tempered METAD, PRINT.

    Parameters
    ----------
    cv_info : mapping
        The content of ``cv.json`` (uses ``n_features``, ``D``, ``K``, ``plumed.metad``).
    spec : FeatureSpec
        The features.

    Returns
    -------
    str
        The input file's text.
    """
    d, k = int(cv_info["latent_dim"]), int(cv_info["n_clusters"])
    m = cv_info["plumed"]["metad"]
    lines = _header(
        cv_info,
        "plumed.dat: well-tempered metadynamics on a GMVAE CV.",
        ["GROMACS: gmx mdrun -plumed plumed.dat; any engine with PLUMED: use this file unchanged."],
    )
    model, _ = _model_lines(spec, d, k)
    lines += model
    lines += _metad_block(m, d)
    lines += [
        "#",
        "# COLVAR: the CV, the cluster probabilities, the bias and the c(t)-corrected bias for reweighting.",
        f"PRINT ARG=cv.*,clusters.*,metad.bias,metad.rbias STRIDE={m['print_stride']} FILE=COLVAR",
    ]
    return "\n".join(lines) + "\n"


def render_plumed_opes(cv_info: Mapping[str, Any], spec: Any) -> str:
    """``plumed_opes.dat``: features, the two PYTORCH_MODEL actions, OPES_METAD, PRINT."""
    d, k = int(cv_info["latent_dim"]), int(cv_info["n_clusters"])
    o = cv_info["plumed"]["opes"]
    lines = _header(
        cv_info,
        "plumed_opes.dat: OPES metadynamics on a GMVAE CV.",
        ["GROMACS: gmx mdrun -plumed plumed_opes.dat; reweight frames with exp(opes.bias/kT)."],
    )
    model, _ = _model_lines(spec, d, k)
    lines += model
    lines += ["#", "# OPES_METAD on the CV. Choices:"] + [f"#   {c}" for c in o["choices"]]
    lines += [
        "opes: OPES_METAD ...",
        f"  ARG={_cv_args(d)}",
        f"  SIGMA={_join(o['sigma'])}",
        f"  BARRIER={_num(o['barrier'])}",
        f"  PACE={o['pace']}",
        f"  TEMP={_num(o['temperature'])}",
        "  FILE=KERNELS",
        "  STATE_WFILE=STATE",
        "...",
        "#",
        f"PRINT ARG=cv.*,clusters.*,opes.* STRIDE={o['print_stride']} FILE=COLVAR",
    ]
    return "\n".join(lines) + "\n"


def render_walkers(cv_info: Mapping[str, Any], spec: Any, n_walkers: int, walker_id: int, *, rstride: Optional[int] = None) -> str:
    """Input of walker ``walker_id`` of ``n_walkers`` sharing one METAD bias through files.

    Each walker writes ``HILLS.<id>`` into ``WALKERS_DIR`` (``.``, the folder all walkers run
    in) and reads the others' every ``WALKERS_RSTRIDE`` steps (default: the hill pace).
    """
    n_walkers = check_int(n_walkers, "n_walkers", minimum=2)
    walker_id = check_int(walker_id, "walker_id", minimum=0)
    if walker_id >= n_walkers:
        raise GMVAEInputError(f"'walker_id' is {walker_id}, expected 0 <= walker_id < n_walkers = {n_walkers}")
    d, k = int(cv_info["latent_dim"]), int(cv_info["n_clusters"])
    m = cv_info["plumed"]["metad"]
    rstride = m["pace"] if rstride is None else check_int(rstride, "rstride", minimum=1)
    lines = _header(
        cv_info,
        f"walker_{walker_id}.dat: multiple-walkers metadynamics, walker {walker_id} of {n_walkers}.",
        [
            f"Start {n_walkers} simulations in one folder, walker i with walker_i.dat (e.g. gmx mdrun -plumed walker_{walker_id}.dat);",
            "they share the bias through HILLS.0, HILLS.1, ... in WALKERS_DIR. Start them from different structures.",
        ],
    )
    model, _ = _model_lines(spec, d, k)
    lines += model
    lines += _metad_block(
        m, d, extra=[f"WALKERS_N={n_walkers}", f"WALKERS_ID={walker_id}", "WALKERS_DIR=.", f"WALKERS_RSTRIDE={rstride}"]
    )
    lines += ["#", f"PRINT ARG=cv.*,clusters.*,metad.bias,metad.rbias STRIDE={m['print_stride']} FILE=COLVAR.{walker_id}"]
    return "\n".join(lines) + "\n"


def render_reweight(
    cv_info: Mapping[str, Any],
    spec: Any,
    *,
    torsions: Optional[Mapping[str, Sequence[int]]] = None,
    cv_bins: int = 100,
    torsion_bins: int = 60,
) -> str:
    """``reweight.dat``: free energies from a finished METAD run with ``plumed driver``.

    Recomputes the CV on the biased trajectory, evaluates the final bias from ``HILLS``, weights
    each frame by ``exp(V/kT)`` (``REWEIGHT_BIAS``) and writes weighted histograms converted to free
    energies (``HISTOGRAM`` + ``CONVERT_TO_FES`` + ``DUMPGRID``) on the CV and on extra torsions.

    Parameters
    ----------
    cv_info : mapping
        Content of ``cv.json``.
    spec : FeatureSpec
        The features.
    torsions : mapping name -> 4 atom indices (0-based), optional
        Extra torsions for a second free-energy surface (e.g. phi, psi of alanine dipeptide).
    cv_bins, torsion_bins : int
        Histogram bins per dimension.
    """
    d, k = int(cv_info["latent_dim"]), int(cv_info["n_clusters"])
    m = cv_info["plumed"]["metad"]
    temp = _num(m["temperature"])
    lines = _header(
        cv_info,
        "reweight.dat: free energies of a finished metadynamics run (final-bias reweighting).",
        [
            "Run in the folder of the run (HILLS there): plumed driver --plumed reweight.dat --mf_xtc traj.xtc",
            "(or --mf_dcd traj.dcd; the trajectory in nm as PLUMED reads it). Writes fes_cv.dat"
            + (", fes_torsions.dat" if torsions else "")
            + ", COLVAR_REWEIGHT.",
            "Frames are weighted by exp(V_final(s)/kT); drop the first part of the run (transient) if needed.",
            "Grid syntax of PLUMED >= 2.10 (CONVERT_TO_FES ARG=, DUMPGRID ARG=; PLUMED 2.9 reads GRID= there).",
        ],
    )
    model, _ = _model_lines(spec, d, k)
    lines += model
    lines += _metad_block(m, d, reweight=True)
    lines += [
        "#",
        f"rw: REWEIGHT_BIAS TEMP={temp} ARG=metad.bias",
        "#",
        "# Free energy on the CV (bandwidth = SIGMA).",
        f"hh_cv: HISTOGRAM ARG={_cv_args(d)} GRID_MIN={_join(m['grid_min'])} GRID_MAX={_join(m['grid_max'])} "
        f"GRID_BIN={','.join([str(cv_bins)] * d)} BANDWIDTH={_join(m['sigma'])} LOGWEIGHTS=rw",
        f"fes_cv: CONVERT_TO_FES ARG=hh_cv TEMP={temp}",
        "DUMPGRID ARG=fes_cv FILE=fes_cv.dat",
    ]
    printed = ["cv.*", "clusters.*", "metad.bias", "rw"]
    if torsions:
        names = list(torsions)
        lines += ["#", "# Free energy on torsions (rad)."]
        for name, atoms in torsions.items():
            atoms = [check_int(a, f"torsions[{name!r}]", minimum=0) for a in atoms]
            if len(atoms) != 4:
                raise GMVAEInputError(f"'torsions[{name!r}]' has {len(atoms)} atoms, expected 4")
            lines.append(f"{name}: TORSION ATOMS={','.join(str(a + 1) for a in atoms)}")
        nt = len(names)
        lines += [
            f"hh_tor: HISTOGRAM ARG={','.join(names)} GRID_MIN={','.join(['-pi'] * nt)} GRID_MAX={','.join(['pi'] * nt)} "
            f"GRID_BIN={','.join([str(torsion_bins)] * nt)} BANDWIDTH={','.join(['0.1'] * nt)} LOGWEIGHTS=rw",
            f"fes_tor: CONVERT_TO_FES ARG=hh_tor TEMP={temp}",
            "DUMPGRID ARG=fes_tor FILE=fes_torsions.dat",
        ]
        printed += names
    lines += ["#", f"PRINT ARG={','.join(printed)} FILE=COLVAR_REWEIGHT"]
    return "\n".join(lines) + "\n"


def _readme(cv_info: Mapping[str, Any], files: Sequence[str], n_walkers: int, torsions: Optional[Mapping[str, Any]]) -> str:
    d = int(cv_info["latent_dim"])
    lines = [
        "# Ready PLUMED inputs for the exported GMVAE CV",
        "",
        "Generated by `gmvae_cv.deploy.plumed.write_plumed_inputs` from the export's `cv.json`;",
        "a test regenerates them and fails if the text would change. Copy `model_plumed.ptc` and",
        "`model_clusters.ptc` from the export next to the input you use (FILE= paths are relative",
        "to the folder PLUMED runs in). PYTORCH_MODEL needs a PLUMED built with libtorch",
        "(`scripts/build_plumed_libtorch.sh`).",
        "",
        "| file | what |",
        "| --- | --- |",
        "| `metad.dat` | well-tempered METAD on " + ", ".join(f"`cv.node-{i}`" for i in range(d)) + " (same as the export's `plumed.dat`) |",
        "| `opes_metad.dat` | OPES_METAD on the same CV |",
        f"| `walker_0.dat` ... `walker_{n_walkers - 1}.dat` | {n_walkers} walkers sharing one METAD bias (`WALKERS_N/ID/DIR`), all run in one folder |",
        "| `reweight.dat` | `plumed driver` on a finished METAD run: final-bias weights (`REWEIGHT_BIAS`), "
        "free energies (`HISTOGRAM` + `CONVERT_TO_FES`) on the CV"
        + (" and on " + ", ".join(torsions) if torsions else "")
        + " |",
        "",
        "Example (GROMACS): `gmx mdrun -deffnm md -plumed metad.dat`, then",
        "`plumed driver --plumed reweight.dat --mf_xtc md.xtc` in the same folder.",
        "",
    ]
    return "\n".join(lines)


def write_plumed_inputs(
    exp_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    n_walkers: int = 4,
    torsions: Optional[Mapping[str, Sequence[int]]] = None,
) -> list[Path]:
    """Write ready PLUMED inputs for an export: METAD, OPES_METAD, walkers, reweighting, README.

    Parameters
    ----------
    exp_dir : path
        An export directory (its ``cv.json`` is read).
    out_dir : path
        Output folder (created).
    n_walkers : int
        Number of multiple-walkers inputs.
    torsions : mapping name -> 4 atom indices (0-based), optional
        Extra torsions for the reweighting histogram (e.g. ``{"phi": (4, 6, 8, 14), ...}``).

    Returns
    -------
    list of Path
        The files written.
    """

    exp_dir = Path(exp_dir)
    info = read_cv_json(exp_dir)
    spec = FeatureSpec.from_dict(info["feature_spec"], source=exp_dir / "cv.json")
    n_walkers = check_int(n_walkers, "n_walkers", minimum=2)
    out = Path(out_dir)
    texts = {
        "metad.dat": render_plumed_dat(info, spec),
        "opes_metad.dat": render_plumed_opes(info, spec),
        **{f"walker_{i}.dat": render_walkers(info, spec, n_walkers, i) for i in range(n_walkers)},
        "reweight.dat": render_reweight(info, spec, torsions=torsions),
    }
    texts["README.md"] = _readme(info, list(texts), n_walkers, torsions)
    written = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    return written
