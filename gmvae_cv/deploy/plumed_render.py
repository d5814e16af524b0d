"""Rendering PLUMED input text for an exported GMVAE CV: METAD, OPES_METAD, walkers, reweighting.

Every input starts the same way (:func:`_input_start`): a header of comments, the feature lines of
the :class:`~gmvae_cv.features.FeatureSpec` and the two ``PYTORCH_MODEL`` actions (``cv`` and
``clusters``). The variants then differ in the bias block: well-tempered ``METAD``
(:func:`render_plumed_dat`, and with ``WALKERS_*`` keywords :func:`render_walkers`, over MPI
:func:`render_walkers_mpi`), ``OPES_METAD``
(:func:`render_plumed_opes`), or the frozen final METAD bias with histograms for ``plumed driver``
(:func:`render_reweight`). The bias keywords come from ``cv.json`` (``plumed.metad``,
``plumed.opes``; see :mod:`.bias_settings`).

All numbers are written in PLUMED's units: nm, rad, kJ/mol, K, MD steps. The exported reference
inputs are compared byte for byte with this text by the tests.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .._core.checks import check_int
from .._core.errors import GMVAEInputError

__all__ = ["render_plumed_dat", "render_plumed_opes", "render_walkers", "render_reweight"]


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


def _input_start(cv_info: Mapping[str, Any], spec: Any, what: str, how_to_run: Sequence[str]) -> list[str]:
    """The lines every input starts with: the header comments, the features, the two PYTORCH_MODEL actions.

    Parameters
    ----------
    cv_info : mapping
        The content of ``cv.json`` (``latent_dim``, ``n_clusters``, ``n_features``).
    spec : FeatureSpec
        The features.
    what : str
        First header line: the file and what it does.
    how_to_run : sequence of str
        Header lines on how to run it.
    """
    d, k = int(cv_info["latent_dim"]), int(cv_info["n_clusters"])
    lines = _header(cv_info, what, how_to_run)
    model, _ = _model_lines(spec, d, k)
    return lines + model


def _text(lines: Sequence[str]) -> str:
    """The file's text: the lines joined, with a final newline."""
    return "\n".join(lines) + "\n"


def _fes_lines(label: str, args: str, grid_min: str, grid_max: str, grid_bin: str, bandwidth: str, temp: str, file: str) -> list[str]:
    """A weighted ``HISTOGRAM`` (log-weights ``rw``) converted to a free energy and dumped to ``file``."""
    return [
        f"hh_{label}: HISTOGRAM ARG={args} GRID_MIN={grid_min} GRID_MAX={grid_max} "
        f"GRID_BIN={grid_bin} BANDWIDTH={bandwidth} LOGWEIGHTS=rw",
        f"fes_{label}: CONVERT_TO_FES ARG=hh_{label} TEMP={temp}",
        f"DUMPGRID ARG=fes_{label} FILE={file}",
    ]


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
    m = cv_info["plumed"]["metad"]
    what = "plumed.dat: well-tempered metadynamics on a GMVAE CV."
    how = ["GROMACS: gmx mdrun -plumed plumed.dat; any engine with PLUMED: use this file unchanged."]
    return _text(_input_start(cv_info, spec, what, how) + _metad_block(m, int(cv_info["latent_dim"])) + [
        "#",
        "# COLVAR: the CV, the cluster probabilities, the bias and the c(t)-corrected bias for reweighting.",
        f"PRINT ARG=cv.*,clusters.*,metad.bias,metad.rbias STRIDE={m['print_stride']} FILE=COLVAR",
    ])


def render_plumed_opes(cv_info: Mapping[str, Any], spec: Any) -> str:
    """``plumed_opes.dat``: features, the two PYTORCH_MODEL actions, OPES_METAD, PRINT."""
    d = int(cv_info["latent_dim"])
    o = cv_info["plumed"]["opes"]
    what = "plumed_opes.dat: OPES metadynamics on a GMVAE CV."
    how = ["GROMACS: gmx mdrun -plumed plumed_opes.dat; reweight frames with exp(opes.bias/kT)."]
    lines = _input_start(cv_info, spec, what, how)
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
    return _text(lines)


def render_walkers(cv_info: Mapping[str, Any], spec: Any, n_walkers: int, walker_id: int, *, rstride: Optional[int] = None) -> str:
    """Input of walker ``walker_id`` of ``n_walkers`` sharing one METAD bias through files.

    Each walker writes ``HILLS.<id>`` into ``WALKERS_DIR`` (``.``, the folder all walkers run
    in) and reads the others' every ``WALKERS_RSTRIDE`` steps (default: the hill pace).
    """
    n_walkers = check_int(n_walkers, "n_walkers", minimum=2)
    walker_id = check_int(walker_id, "walker_id", minimum=0)
    if walker_id >= n_walkers:
        raise GMVAEInputError(f"'walker_id' is {walker_id}, expected 0 <= walker_id < n_walkers = {n_walkers}")
    d = int(cv_info["latent_dim"])
    m = cv_info["plumed"]["metad"]
    rstride = m["pace"] if rstride is None else check_int(rstride, "rstride", minimum=1)
    lines = _input_start(
        cv_info,
        spec,
        f"walker_{walker_id}.dat: multiple-walkers metadynamics, walker {walker_id} of {n_walkers}.",
        [
            f"Start {n_walkers} simulations in one folder, walker i with walker_i.dat (e.g. gmx mdrun -plumed walker_{walker_id}.dat);",
            "they share the bias through HILLS.0, HILLS.1, ... in WALKERS_DIR. Start them from different structures.",
        ],
    )
    lines += _metad_block(
        m, d, extra=[f"WALKERS_N={n_walkers}", f"WALKERS_ID={walker_id}", "WALKERS_DIR=.", f"WALKERS_RSTRIDE={rstride}"]
    )
    lines += ["#", f"PRINT ARG=cv.*,clusters.*,metad.bias,metad.rbias STRIDE={m['print_stride']} FILE=COLVAR.{walker_id}"]
    return _text(lines)


def render_walkers_mpi(cv_info: Mapping[str, Any], spec: Any, n_walkers: int) -> str:
    """One input for all ``n_walkers`` walkers of an MPI run sharing one METAD bias (``WALKERS_MPI``).

    For GROMACS built with MPI: ``mpirun -np N gmx_mpi mdrun -multidir w0 w1 ... -plumed
    walkers_mpi.dat``, each folder ``wi`` with its own ``.tpr``, the ``.ptc`` files and this file.
    PLUMED exchanges every new hill between the walkers through MPI at the step it is deposited,
    so the walkers share the bias synchronously; walker 0 writes all walkers' hills to
    ``w0/HILLS``, and each walker its COLVAR with its replica number appended (``w<i>/COLVAR.<i>``,
    measured with GROMACS 2022.5 and PLUMED 2.11). The PLUMED kernel must be built with MPI.
    """
    n_walkers = check_int(n_walkers, "n_walkers", minimum=2)
    d = int(cv_info["latent_dim"])
    m = cv_info["plumed"]["metad"]
    lines = _input_start(
        cv_info,
        spec,
        f"walkers_mpi.dat: multiple-walkers metadynamics over MPI, the same input for each of {n_walkers} walkers.",
        [
            f"GROMACS with MPI: mpirun -np {n_walkers} gmx_mpi mdrun -multidir "
            + " ".join(f"w{i}" for i in range(n_walkers)) + " -plumed walkers_mpi.dat",
            "(each folder w<i> with its .tpr, this file and the .ptc files). PLUMED must be built with MPI;",
            "every hill is sent to all walkers when it is deposited (WALKERS_MPI); w0/HILLS holds all of them,",
            "w<i>/COLVAR.<i> each walker's CV (PLUMED appends the replica number). Start them from different structures or seeds.",
        ],
    )
    lines += _metad_block(m, d, extra=["WALKERS_MPI"])
    lines += ["#", f"PRINT ARG=cv.*,clusters.*,metad.bias,metad.rbias STRIDE={m['print_stride']} FILE=COLVAR"]
    return _text(lines)


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
    d = int(cv_info["latent_dim"])
    m = cv_info["plumed"]["metad"]
    temp = _num(m["temperature"])
    lines = _input_start(
        cv_info,
        spec,
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
    lines += _metad_block(m, d, reweight=True)
    lines += [
        "#",
        f"rw: REWEIGHT_BIAS TEMP={temp} ARG=metad.bias",
        "#",
        "# Free energy on the CV (bandwidth = SIGMA).",
        *_fes_lines("cv", _cv_args(d), _join(m["grid_min"]), _join(m["grid_max"]), ",".join([str(cv_bins)] * d),
                    _join(m["sigma"]), temp, "fes_cv.dat"),
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
        lines += _fes_lines("tor", ",".join(names), ",".join(["-pi"] * nt), ",".join(["pi"] * nt),
                            ",".join([str(torsion_bins)] * nt), ",".join(["0.1"] * nt), temp, "fes_torsions.dat")
        printed += names
    lines += ["#", f"PRINT ARG={','.join(printed)} FILE=COLVAR_REWEIGHT"]
    return _text(lines)
