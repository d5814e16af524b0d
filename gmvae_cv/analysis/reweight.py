r"""Frame weights of biased runs and the reweighted free-energy surfaces they give.

Weights (natural logs, so that large biases never overflow):

``"none"``
    Unbiased frames, equal weights.
``"final"``
    Static reweighting with the final bias, :math:`\log w = \beta V(s, t_\mathrm{end})`. Valid on
    the last part of a converged run only: a start time ``tmin`` is required.
``"ct"``
    Tiwary-Parrinello for well-tempered metadynamics, :math:`\log w = \beta\,[V(s,t) - c(t)]`, with
    :math:`V(s,t)` the bias each frame felt (hills deposited before it) and :math:`c(t)` from the
    hills (see :mod:`gmvae_cv.analysis.hills`).
``"opes"``
    OPES, :math:`\log w = \beta V` with :math:`V` the ``opes.bias`` column (or ``bias_column``).
``"bias"``
    :math:`\log w = \beta V` for any bias column given by name, e.g. PLUMED's ``metad.rbias``
    (:math:`V - c(t)` computed on the fly) or a static umbrella's ``restraint.bias``.

Walls. A run whose COLVAR has a ``walls.bias`` field (the walls that keep a CV inside its bias
grid, :mod:`gmvae_cv.metad.walls`) was biased by them too: every method but ``"none"`` adds
:math:`\beta W` of each frame to its log-weight (``include_walls=False`` leaves it out). It is zero
for frames inside the walls' bounds.

The temperature is never assumed: give ``temperature`` (K, energies in kJ/mol) or ``kT``, or
record it in the run's files (``#! SET temperature 300`` or ``#! SET kT 2.494`` in the COLVAR or
HILLS header).
"""

from __future__ import annotations

import math
import os
from typing import Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.checks import check_array, check_int
from .fes import KB_KJ_MOL_K, FESEstimator, FreeEnergySurface, log_weights_from_weights, resolve_kT
from .hills import BiasGrid, GridSpec, Hills, bias_along_trajectory, ct_series
from .plumed_files import PlumedFile, parse_plumed_number
from ..metad import WALLS_FIELD

__all__ = [
    "WEIGHT_METHODS",
    "final_bias_log_weights",
    "ct_log_weights",
    "bias_log_weights",
    "log_weights_from_weights",
    "ReweightedFES",
    "temperature_from_files",
]

WEIGHT_METHODS = ("none", "final", "ct", "opes", "bias")


def bias_log_weights(bias: np.ndarray, kT: float, *, name: str = "bias", source: Optional[str] = None) -> np.ndarray:
    r""":math:`\log w = V/k_BT` for a bias column (OPES, ``metad.rbias``, a static restraint).

    Parameters
    ----------
    bias : (n_frames,) ndarray
        Bias energies, in the units of ``kT``.
    kT : float
        Thermal energy.

    Returns
    -------
    (n_frames,) ndarray
    """
    v = check_array(bias, name, source=source, ndim=1)
    return v / kT


def final_bias_log_weights(hills: Hills, s: np.ndarray, kT: float, *, grid: Optional[GridSpec] = None, exact: bool = False) -> np.ndarray:
    r""":math:`\beta V_\mathrm{final}(s)` for static reweighting with the bias at the end of the run.

    Parameters
    ----------
    hills : Hills
    s : (n_frames, n_cvs) ndarray
        Values of the biased CVs.
    kT : float
        Thermal energy, in the units of the hill heights.
    grid : GridSpec, optional
        Interpolation grid (default :meth:`Hills.default_grid`).
    exact : bool
        Sum the hills at every frame instead (frames x hills operations).

    Returns
    -------
    (n_frames,) ndarray
    """
    if exact:
        return hills.bias(s) / kT
    bg = BiasGrid(hills, grid or hills.default_grid())
    bg.add_until(hills.n_hills)
    return bg.evaluate(hills._check_points(s)) / kT


def ct_log_weights(
    hills: Hills,
    s: np.ndarray,
    times: np.ndarray,
    kT: float,
    *,
    grid: Optional[GridSpec] = None,
    ct_grid: Optional[GridSpec] = None,
    state: Optional[dict] = None,
) -> np.ndarray:
    r""":math:`\beta\,[V(s_t, t) - c(t)]`: Tiwary-Parrinello weights of well-tempered metadynamics frames.

    Parameters
    ----------
    hills : Hills
        Well-tempered hills (with a bias factor).
    s : (n_frames, n_cvs) ndarray
        Values of the biased CVs, frames in time order.
    times : (n_frames,) ndarray
        Frame times (same units as the hill times).
    kT : float
        Thermal energy, in the units of the hill heights.
    grid, ct_grid : GridSpec, optional
        See :func:`gmvae_cv.analysis.hills.bias_along_trajectory`.
    state : dict, optional
        Pass the same dict with consecutive chunks of one trajectory.

    Returns
    -------
    (n_frames,) ndarray

    References
    ----------
    P. Tiwary and M. Parrinello, J. Phys. Chem. B 119, 736 (2015).
    """
    if hills.biasfactor is None:
        raise GMVAEInputError(f"{hills.source}: c(t) reweighting needs well-tempered hills (a 'biasf' column > 1)")
    v, c = bias_along_trajectory(hills, s, times, kT=kT, ct=True, grid=grid, ct_grid=ct_grid, state=state)
    return (v - c) / kT


def temperature_from_files(*files: PlumedFile | Hills) -> tuple[Optional[float], Optional[float], Optional[str]]:
    """The temperature recorded in run files (``#! SET temperature`` / ``#! SET kT``).

    Returns
    -------
    temperature, kT, source
        ``(None, None, None)`` if no file records it.

    Raises
    ------
    GMVAEInputError
        If files disagree.
    """
    found: list[tuple[str, float]] = []  # (source, kT)
    temps: dict[str, float] = {}
    for f in files:
        sets = f.sets
        src = str(f.path) if isinstance(f, PlumedFile) else f.source
        if "temperature" in sets:
            t = parse_plumed_number(sets["temperature"], where=f"{src}: SET temperature")
            temps[src] = t
            found.append((src, KB_KJ_MOL_K * t))
        elif "kT" in sets:
            found.append((src, parse_plumed_number(sets["kT"], where=f"{src}: SET kT")))
    if not found:
        return None, None, None
    src0, kt0 = found[0]
    for src, kt in found[1:]:
        if not math.isclose(kt, kt0, rel_tol=1e-6):
            raise GMVAEInputError(f"{src} records kT {kt:.6g}, {src0} records {kt0:.6g}; give the temperature explicitly")
    t = temps.get(src0)
    return t, (None if t is not None else kt0), src0


def _merged_by_time(files: list[PlumedFile], columns: list[str], chunk_bytes: int):
    """Chunks of several time-ordered files, merged in time order; the last column is the file index.

    Memory stays at about one chunk per file. ``columns[0]`` must be the time.
    """
    iters = [f.iter_chunks(columns, chunk_bytes=chunk_bytes) for f in files]
    bufs: list[Optional[np.ndarray]] = [None] * len(files)
    done = [False] * len(files)
    while True:
        for i, it in enumerate(iters):
            while not done[i] and (bufs[i] is None or len(bufs[i]) == 0):
                try:
                    c = next(it)
                except StopIteration:
                    done[i] = True
                    break
                bufs[i] = np.column_stack([c, np.full(len(c), i, dtype=float)])
        live = [i for i in range(len(files)) if bufs[i] is not None and len(bufs[i])]
        if not live:
            return
        # frames up to the earliest last-buffered time are complete in every file
        t_cut = min(float(bufs[i][-1, 0]) for i in live if not done[i]) if any(not done[i] for i in live) else np.inf
        parts = []
        for i in live:
            b = bufs[i]
            k = int(np.searchsorted(b[:, 0], t_cut, side="right"))
            parts.append(b[:k])
            bufs[i] = b[k:]
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if len(parts) > 1:
            out = out[np.argsort(out[:, 0], kind="stable")]
        if len(out):
            yield out


class ReweightedFES:
    """Estimator: the free-energy surface of COLVAR variables, reweighted from a biased run.

    Parameters
    ----------
    cv : sequence of str
        COLVAR fields of the surface (1 or 2, e.g. ``["phi", "psi"]``).
    method : str
        One of :data:`WEIGHT_METHODS` (see the module docstring).
    temperature : float, optional
        K (energies in kJ/mol).
    kT : float, optional
        Thermal energy in the units of the bias (for reduced-unit systems).
    bias_column : str, optional
        The bias field for ``"bias"`` (required) and ``"opes"`` (default ``opes.bias``).
    include_walls : bool
        Add the walls' energy (the ``walls.bias`` field, when the COLVAR files have it) to the bias
        of every frame (all methods but ``"none"``).
    bins : int or sequence of int
        Bins per variable.
    ranges : sequence of (min, max), optional
        Default: the period of periodic variables (``#! SET min_/max_``), else the data range.
    periodic : sequence of bool, optional
        Default: from the COLVAR header.
    n_blocks : int
        Blocks for the error estimate.
    tmin, tmax : float, optional
        Use frames with ``tmin <= time <= tmax`` (time units of the file). ``"final"`` requires
        ``tmin``.
    grid, ct_grid : GridSpec, optional
        Bias interpolation grid and :math:`c(t)` grid (see :mod:`gmvae_cv.analysis.hills`).
    chunk_bytes : int
        Text parsed at once; memory stays flat for any file size.
    progress : callable, optional
        tqdm-like class, advanced per chunk (by frames).

    Examples
    --------
    See ``gmvae-cv fes --help`` for the command-line form; in Python::

        fes = ReweightedFES(["phi", "psi"], method="ct", temperature=300).fit("COLVAR", hills="HILLS").fetch_model()
        fes.write_dat("fes.dat"); fes.plot("fes.png")
    """

    def __init__(
        self,
        cv: Sequence[str],
        *,
        method: str = "ct",
        temperature: Optional[float] = None,
        kT: Optional[float] = None,
        bias_column: Optional[str] = None,
        include_walls: bool = True,
        bins: int | Sequence[int] = 50,
        ranges: Optional[Sequence[Sequence[float]]] = None,
        periodic: Optional[Sequence[bool]] = None,
        n_blocks: int = 5,
        tmin: Optional[float] = None,
        tmax: Optional[float] = None,
        grid: Optional[GridSpec] = None,
        ct_grid: Optional[GridSpec] = None,
        chunk_bytes: int = 1 << 25,
        progress: Optional[Callable] = None,
    ) -> None:
        self.cv = [str(c) for c in ([cv] if isinstance(cv, str) else cv)]
        if not 1 <= len(self.cv) <= 3:
            raise GMVAEInputError(f"'cv' names {len(self.cv)} variables, expected 1 to 3")
        if method not in WEIGHT_METHODS:
            raise GMVAEInputError(f"'method' is {method!r}, expected one of {', '.join(WEIGHT_METHODS)}")
        self.method = method
        self.temperature = temperature
        self.kT = kT
        if method == "bias" and not bias_column:
            raise GMVAEInputError("method 'bias' needs 'bias_column' (the COLVAR field holding the bias, e.g. metad.rbias)")
        self.bias_column = bias_column or ("opes.bias" if method == "opes" else None)
        self.include_walls = bool(include_walls)
        self.bins = bins
        self.ranges = ranges
        self.periodic = periodic
        self.n_blocks = check_int(n_blocks, "n_blocks", minimum=1)
        if method == "final" and tmin is None:
            raise GMVAEInputError(
                "method 'final' reweights with the bias at the end of the run, valid only once it has converged: "
                "give 'tmin' (e.g. the second half of the run), or use method 'ct'"
            )
        self.tmin = tmin
        self.tmax = tmax
        self.grid = grid
        self.ct_grid = ct_grid
        self.chunk_bytes = chunk_bytes
        self.progress = progress
        self._model: Optional[FreeEnergySurface] = None

    # ---------------------------------------------------------------- helpers
    def _files(self, colvar) -> list[PlumedFile]:
        paths = [colvar] if isinstance(colvar, (str, os.PathLike)) else list(colvar)
        if not paths:
            raise GMVAEInputError("no COLVAR file given")
        return [PlumedFile(p) for p in paths]

    def _hills(self, hills) -> Optional[Hills]:
        if self.method in ("final", "ct"):
            if hills is None:
                raise GMVAEInputError(f"method {self.method!r} needs the run's HILLS file(s) ('hills')")
            return hills if isinstance(hills, Hills) else Hills.from_file(hills)
        return None

    def _columns(self, hills: Optional[Hills], walls: Optional[str]) -> list[str]:
        cols = list(self.cv)
        if hills is not None:
            cols += [c for c in hills.cv_names if c not in cols]
        for c in (self.bias_column, walls):
            if c and c not in cols:
                cols.append(c)
        return cols

    def _walls_column(self, files: list[PlumedFile]) -> Optional[str]:
        """``walls.bias`` if the frames' weights include the walls (see the module docstring), else None."""
        if not self.include_walls or self.method == "none" or self.bias_column == WALLS_FIELD:
            return None
        have = [WALLS_FIELD in f.fields for f in files]
        if any(have) and not all(have):
            lacking = [str(f.path) for f, h in zip(files, have) if not h]
            raise GMVAEInputError(f"{lacking[0]}: has no {WALLS_FIELD!r} field and other COLVAR files of the run have one; "
                                  "give the files of one run (or include_walls=False)")
        return WALLS_FIELD if all(have) else None

    def _ranges_periodic(self, files: list[PlumedFile], cols: list[str]) -> tuple[list, list]:
        d = len(self.cv)
        per_from_file = []
        for c in self.cv:
            rngs = {f.periodic_range(c) for f in files}
            if len(rngs) > 1:
                raise GMVAEInputError(f"COLVAR files disagree on the period of {c!r}: {sorted(map(str, rngs))}")
            per_from_file.append(rngs.pop())
        periodic = [p is not None for p in per_from_file] if self.periodic is None else [bool(p) for p in self.periodic]
        if len(periodic) != d:
            raise GMVAEInputError(f"'periodic' has {len(periodic)} entries for {d} variables")
        if self.ranges is not None:
            ranges = [tuple(float(v) for v in r) for r in self.ranges]
            if len(ranges) != d:
                raise GMVAEInputError(f"'ranges' has {len(ranges)} entries for {d} variables")
            return ranges, periodic
        ranges: list = [None] * d
        for j in range(d):
            if periodic[j]:
                if per_from_file[j] is None:
                    raise GMVAEInputError(f"{self.cv[j]!r} is periodic but the COLVAR has no '#! SET min_{self.cv[j]}'/'max_'; give 'ranges'")
                ranges[j] = per_from_file[j]
        need = [j for j in range(d) if ranges[j] is None]
        if need:  # a pass over the data for the ranges
            lo = np.full(len(need), np.inf)
            hi = np.full(len(need), -np.inf)
            for f in files:
                for chunk in f.iter_chunks(["time"] + [self.cv[j] for j in need], chunk_bytes=self.chunk_bytes):
                    chunk = chunk[self._time_mask(chunk[:, 0])][:, 1:]
                    if len(chunk):
                        lo = np.minimum(lo, np.nanmin(chunk, axis=0))
                        hi = np.maximum(hi, np.nanmax(chunk, axis=0))
            for k, j in enumerate(need):
                if not np.isfinite(lo[k]) or not hi[k] > lo[k]:
                    raise GMVAEInputError(f"{self.cv[j]!r}: cannot set a range from the data (min {lo[k]}, max {hi[k]}); give 'ranges'")
                ranges[j] = (float(lo[k]), float(hi[k]))
        return ranges, periodic

    def _time_mask(self, t: np.ndarray) -> np.ndarray:
        m = np.ones(len(t), dtype=bool)
        if self.tmin is not None:
            m &= t >= self.tmin
        if self.tmax is not None:
            m &= t <= self.tmax
        return m

    # ---------------------------------------------------------------- fit
    def fit(self, colvar: str | os.PathLike | Sequence[str | os.PathLike], *, hills=None) -> "ReweightedFES":
        """Read the COLVAR file(s) in chunks, weight each frame and histogram.

        Parameters
        ----------
        colvar : path or sequence of paths
            PLUMED COLVAR files with a ``time`` field, the ``cv`` fields, the biased CVs (for
            ``final``/``ct``) or the bias column. Several files: walkers sharing one bias; they
            are read together in time order (one pass over the hills, blocks in time).
        hills : path, sequence of paths or Hills, optional
            The run's HILLS (all walkers), for ``final`` and ``ct``.

        Returns
        -------
        self
        """
        files = self._files(colvar)
        hl = self._hills(hills)
        walls = self._walls_column(files)
        cols = self._columns(hl, walls)
        for f in files:
            f.check_fields(["time"] + cols)
        t_file, kt_file, t_src = temperature_from_files(*files, *([hl] if hl is not None else []))
        if self.temperature is None and self.kT is None:
            if t_file is None and kt_file is None:
                raise GMVAEInputError(
                    f"{files[0].path}: no temperature: give the temperature (K) or kT of the run "
                    "(or record '#! SET temperature <K>' in the COLVAR header); there is no default"
                )
            kT, temperature = resolve_kT(t_file, kt_file, source=t_src or "")
        else:
            kT, temperature = resolve_kT(self.temperature, self.kT)
        ranges, periodic = self._ranges_periodic(files, cols)
        est = FESEstimator(self.bins, ranges, kT=kT if temperature is None else None, temperature=temperature, periodic=periodic, n_blocks=self.n_blocks, variables=self.cv)
        n_total = sum(f.n_rows_estimate for f in files)
        est._reset()
        est._block_length = max(1, math.ceil(max(n_total, 1) / self.n_blocks))
        bar = self.progress(total=n_total, unit="frame") if self.progress is not None else None
        d = len(self.cv)
        hidx = [cols.index(c) for c in hl.cv_names] if hl is not None else []
        bidx = cols.index(self.bias_column) if self.bias_column else None
        widx = cols.index(walls) if walls else None
        final_grid = None
        if self.method == "final":
            final_grid = BiasGrid(hl, self.grid or hl.default_grid())
            final_grid.add_until(hl.n_hills)
        n_used = 0
        state: dict = {}
        if self.method == "ct":
            state["ct_series"] = ct_series(hl, kT, grid=self.ct_grid or self.grid or hl.default_grid())
        for chunk in _merged_by_time(files, ["time"] + cols, self.chunk_bytes):
            if bar is not None:
                bar.update(len(chunk))
            t = chunk[:, 0]
            data = chunk[:, 1:-1]
            bad = ~np.isfinite(data[:, :d])
            if bad.any():
                i, j = np.argwhere(bad)[0]
                f = files[int(chunk[i, -1])]
                raise GMVAEInputError(f"{f.path}: {self.cv[j]!r} is {data[i, j]} at time {t[i]:g}; expected finite values")
            if self.method == "ct":
                lw = ct_log_weights(hl, data[:, hidx], t, kT, grid=self.grid, ct_grid=self.ct_grid, state=state)
            elif self.method == "final":
                lw = final_grid.evaluate(data[:, hidx]) / kT
            elif self.method in ("opes", "bias"):
                lw = _finite_bias(data[:, bidx], self.bias_column, t, chunk, files) / kT
            else:
                lw = None
            if widx is not None:
                lw = lw + _finite_bias(data[:, widx], walls, t, chunk, files) / kT
            m = self._time_mask(t)
            if not m.all():
                data = data[m]
                lw = lw[m] if lw is not None else None
            n_used += len(data)
            est.partial_fit(data[:, :d], lw)
        if bar is not None:
            bar.close()
        if n_used == 0:
            raise GMVAEInputError(f"no frame with {self.tmin} <= time <= {self.tmax} in {', '.join(str(f.path) for f in files)}")
        est.info = {
            "method": self.method,
            "colvar": [str(f.path) for f in files],
            "hills": hl.source if hl is not None else None,
            "n_hills": hl.n_hills if hl is not None else None,
            "biasfactor": hl.biasfactor if hl is not None else None,
            "bias_column": self.bias_column,
            "walls_column": walls,
            "tmin": self.tmin,
            "tmax": self.tmax,
            "temperature_from": "arguments" if (self.temperature is not None or self.kT is not None) else t_src,
        }
        self._model = est.fetch_model()
        return self

    def fetch_model(self) -> FreeEnergySurface:
        """The reweighted :class:`~gmvae_cv.analysis.fes.FreeEnergySurface`."""
        if self._model is None:
            raise GMVAEInputError("ReweightedFES: call fit first")
        return self._model


def _finite_bias(b: np.ndarray, name: str, t: np.ndarray, chunk: np.ndarray, files: list[PlumedFile]) -> np.ndarray:
    """``b`` (a bias column of a merged chunk, kJ/mol) if all finite, else an error naming the file and time."""
    if not np.isfinite(b).all():
        i = int(np.flatnonzero(~np.isfinite(b))[0])
        f = files[int(chunk[i, -1])]
        raise GMVAEInputError(f"{f.path}: {name!r} is {b[i]} at time {t[i]:g}; expected finite bias values")
    return b
