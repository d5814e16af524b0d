r"""Metadynamics hills: the bias they sum to, as it grew, and the Tiwary-Parrinello :math:`c(t)`.

Conventions follow PLUMED (>= 2.8), checked against its kernel in ``tests/test_reweight.py``:

- A hill :math:`k` adds :math:`W_k\,K(s - s_k)` to the bias, with the *stretched Gaussian*
  :math:`K = A e^{-d^2} + B` for :math:`d^2 = \tfrac12\sum_i (\Delta s_i/\sigma_i)^2 < 6.25` and 0
  beyond, :math:`A = 1/(1-e^{-6.25})`, :math:`B = -A e^{-6.25}` (continuous at the cut-off).
  Periodic CVs use the minimum-image :math:`\Delta s`.
- In a well-tempered run PLUMED writes the ``height`` column of ``HILLS`` as
  :math:`W_k\,\gamma/(\gamma-1)` (so that ``sum_hills`` gives :math:`-F` directly); :class:`Hills`
  stores the deposited :math:`W_k` and converts on reading and writing.
- The bias a frame at time :math:`t` felt is the sum of the hills with :math:`t_k < t` (a hill
  deposited at the frame's own step is not yet part of it).
- :math:`c(t) = \beta^{-1}\log\big[\sum_g e^{\gamma\beta V_g/(\gamma-1)} \big/ \sum_g
  e^{\beta V_g/(\gamma-1)}\big]` over the nodes :math:`g` of a grid (PLUMED's ``CALC_RCT`` on its
  ``GRID_MIN/GRID_MAX/GRID_BIN`` nodes gives the same numbers).

Energies are in the units of the heights (kJ/mol for PLUMED runs), CVs in their own units.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from itertools import product
from typing import Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.checks import check_array, check_positive
from .plumed_files import PlumedFile, PlumedFileWarning, write_plumed

__all__ = ["Hills", "GridSpec", "BiasGrid", "bias_along_trajectory", "ct_series", "DP2CUTOFF"]

DP2CUTOFF = 6.25
_RCUT = math.sqrt(2.0 * DP2CUTOFF)  # cut-off radius in units of sigma, per dimension
_EXPCUT = math.exp(-DP2CUTOFF)
_KERNELS = ("stretched-gaussian", "truncated-gaussian")


def _kernel_constants(kernel: str) -> tuple[float, float]:
    if kernel == "stretched-gaussian":
        a = 1.0 / (1.0 - _EXPCUT)
        return a, -_EXPCUT * a
    if kernel == "truncated-gaussian":
        return 1.0, 0.0
    raise GMVAEInputError(f"'kernel' is {kernel!r}, expected one of {', '.join(_KERNELS)}")


def _wrap(dx: np.ndarray, period: float) -> np.ndarray:
    """Minimum image of a difference (PLUMED's convention: result in [-L/2, L/2))."""
    return dx - period * np.floor(dx / period + 0.5)


@dataclass
class Hills:
    r"""The Gaussian hills of a metadynamics run, in deposition order.

    Parameters
    ----------
    time : (n_hills,) ndarray
        Deposition times (ps for PLUMED runs).
    centers : (n_hills, n_cvs) ndarray
        Hill centres, in CV units.
    sigmas : (n_hills, n_cvs) ndarray
        Widths, in CV units, > 0.
    heights : (n_hills,) ndarray
        *Deposited* heights :math:`W_k` (energy units), what each hill adds to the bias.
    cv_names : sequence of str
        Names of the biased CVs (the COLVAR fields they match).
    biasfactor : float or None
        :math:`\gamma` of a well-tempered run (> 1); ``None`` for plain metadynamics.
    periodic : sequence of (min, max) or None
        Per CV, the period's bounds, or ``None`` if not periodic.
    kernel : str
        ``"stretched-gaussian"`` (PLUMED >= 2.8, and how it reads older files) or
        ``"truncated-gaussian"``.
    source : str
        Where the hills came from, for messages.
    """

    time: np.ndarray
    centers: np.ndarray
    sigmas: np.ndarray
    heights: np.ndarray
    cv_names: tuple[str, ...]
    biasfactor: Optional[float] = None
    periodic: tuple[Optional[tuple[float, float]], ...] = ()
    kernel: str = "stretched-gaussian"
    source: str = "hills"
    sets: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = self.source
        self.centers = check_array(self.centers, "centers", source=src, ndim=2)
        d = self.centers.shape[1]
        m = self.centers.shape[0]
        self.time = check_array(self.time, "time", source=src, shape=(m,))
        self.sigmas = check_array(self.sigmas, "sigmas", source=src, shape=(m, d))
        self.heights = check_array(self.heights, "heights", source=src, shape=(m,))
        self.cv_names = tuple(self.cv_names)
        if len(self.cv_names) != d:
            raise GMVAEInputError(f"{src}: {len(self.cv_names)} CV names for {d} CV columns")
        if (self.sigmas <= 0).any():
            i = int(np.argwhere(self.sigmas <= 0)[0][0])
            raise GMVAEInputError(f"{src}: 'sigma' of hill {i} is {self.sigmas[i].tolist()}, expected > 0")
        if m > 1 and (np.diff(self.time) < 0).any():
            raise GMVAEInputError(f"{src}: hill times are not in increasing order")
        if self.biasfactor is not None:
            g = float(self.biasfactor)
            if not g > 1.0:
                raise GMVAEInputError(f"{src}: 'biasf' is {g}, expected > 1 for well-tempered metadynamics")
            self.biasfactor = g
        per = tuple(self.periodic) if self.periodic else (None,) * d
        if len(per) != d:
            raise GMVAEInputError(f"{src}: 'periodic' has {len(per)} entries for {d} CVs")
        self.periodic = tuple(None if p is None else (float(p[0]), float(p[1])) for p in per)
        _kernel_constants(self.kernel)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_file(
        cls, paths: str | os.PathLike | Sequence[str | os.PathLike], *, progress: Optional[Callable] = None
    ) -> "Hills":
        """Read one PLUMED ``HILLS`` file, or several (multiple walkers: merged by time).

        Parameters
        ----------
        paths : path or sequence of paths
            ``HILLS`` files with ``#! FIELDS time cv... sigma_cv... height [biasf]``. Periodic CVs
            carry ``#! SET min_cv`` / ``max_cv``.
        progress : callable, optional
            Unused; accepted for symmetry with the other readers.

        Returns
        -------
        Hills

        Raises
        ------
        GMVAEInputError
            For a missing ``sigma_``/``height`` field, multivariate (``ADAPTIVE``) hills, walkers
            with different CVs or bias factors, or an unknown kernel type.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        parts = [cls._read_one(p) for p in paths]
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        for p in parts[1:]:
            if p.cv_names != first.cv_names or p.biasfactor != first.biasfactor or p.periodic != first.periodic:
                raise GMVAEInputError(
                    f"{p.source}: CVs {p.cv_names}, biasf {p.biasfactor} differ from {first.source} "
                    f"({first.cv_names}, biasf {first.biasfactor}); walkers must share one bias"
                )
        t = np.concatenate([p.time for p in parts])
        order = np.argsort(t, kind="stable")
        return cls(
            time=t[order],
            centers=np.concatenate([p.centers for p in parts])[order],
            sigmas=np.concatenate([p.sigmas for p in parts])[order],
            heights=np.concatenate([p.heights for p in parts])[order],
            cv_names=first.cv_names,
            biasfactor=first.biasfactor,
            periodic=first.periodic,
            kernel=first.kernel,
            source=" + ".join(p.source for p in parts),
            sets=first.sets,
        )

    @classmethod
    def _read_one(cls, path: str | os.PathLike) -> "Hills":
        pf = PlumedFile(path, time_field=None)  # restarts in HILLS are resolved below
        fields = pf.fields
        src = str(pf.path)
        sets = pf.sets
        if sets.get("multivariate", "false").strip().lower() == "true":
            raise GMVAEInputError(
                f"{src}: multivariate hills ('#! SET multivariate true', ADAPTIVE=GEOM/DIFF) are not supported; "
                "use fixed SIGMA"
            )
        if "time" not in fields or "height" not in fields:
            raise GMVAEInputError(f"{src}: expected fields 'time' ... 'height' in '#! FIELDS {' '.join(fields)}'")
        cvs = [f[len("sigma_"):] for f in fields if f.startswith("sigma_")]
        if not cvs:
            raise GMVAEInputError(f"{src}: no 'sigma_<cv>' field in '#! FIELDS {' '.join(fields)}'")
        missing = [c for c in cvs if c not in fields]
        if missing:
            raise GMVAEInputError(f"{src}: fields {missing} (centres of sigma_{missing[0]}) are missing")
        kernel = sets.get("kerneltype", "stretched-gaussian").strip()
        if kernel not in _KERNELS:
            raise GMVAEInputError(f"{src}: '#! SET kerneltype {kernel}' is not supported (expected one of {', '.join(_KERNELS)})")
        has_biasf = "biasf" in fields
        cols = ["time", *cvs, *[f"sigma_{c}" for c in cvs], "height"] + (["biasf"] if has_biasf else [])
        data = pf.read(cols)
        d = len(cvs)
        t = data[:, 0]
        biasf = None
        heights = data[:, 1 + 2 * d]
        if has_biasf:
            bf = data[:, -1]
            if bf.size and not np.allclose(bf, bf[0]):
                raise GMVAEInputError(f"{src}: 'biasf' changes along the file ({bf.min():g} .. {bf.max():g}); one bias factor expected")
            if bf.size and bf[0] > 1.0:
                biasf = float(bf[0])
                heights = heights * (biasf - 1.0) / biasf
        t = cls._resolve_restarts(t, src)
        periodic = tuple(pf.periodic_range(c) for c in cvs)
        return cls(
            time=t,
            centers=data[:, 1 : 1 + d],
            sigmas=data[:, 1 + d : 1 + 2 * d],
            heights=heights,
            cv_names=tuple(cvs),
            biasfactor=biasf,
            periodic=periodic,
            kernel=kernel,
            source=src,
            sets=sets,
        )

    @staticmethod
    def _resolve_restarts(t: np.ndarray, src: str) -> np.ndarray:
        """Hills are kept in file order; a restart that goes back in time keeps earlier hills.

        PLUMED reads every hill of the file on restart, including those deposited after the
        checkpoint, so such hills are in the bias from the restart on: their effective time is
        set to just before the first new hill.
        """
        t = t.copy()
        back = np.flatnonzero(np.diff(t) < 0)
        for i in back[::-1]:
            t_new = t[i + 1]
            late = t[: i + 1] >= t_new
            if late.any():
                warnings.warn(
                    f"{src}: time goes back from {t[i]:g} to {t_new:g} (a restart from a checkpoint); the {int(late.sum())} "
                    f"hill(s) deposited after {t_new:g} before the restart stay in the bias (PLUMED reads them) and count "
                    f"from time {t_new:g} on",
                    PlumedFileWarning,
                    stacklevel=3,
                )
                t[: i + 1][late] = np.nextafter(t_new, -np.inf)
        return np.maximum.accumulate(t) if t.size else t

    def to_file(self, path: str | os.PathLike, *, sets: Optional[dict] = None, fmt: str = "%.10g") -> None:
        """Write the hills as a PLUMED ``HILLS`` file (well-tempered heights rescaled by γ/(γ-1))."""
        fields = ["time", *self.cv_names, *[f"sigma_{c}" for c in self.cv_names], "height"]
        h = self.heights.copy()
        cols = [self.time[:, None], self.centers, self.sigmas]
        if self.biasfactor is not None:
            g = self.biasfactor
            h = h * g / (g - 1.0)
            fields.append("biasf")
            cols += [h[:, None], np.full((len(h), 1), g)]
        else:
            cols += [h[:, None]]
        head: dict = {}
        for name, p in zip(self.cv_names, self.periodic):
            if p is not None:
                head[f"min_{name}"] = repr(p[0])
                head[f"max_{name}"] = repr(p[1])
        head["multivariate"] = "false"
        head["kerneltype"] = self.kernel
        head.update(sets or {})
        write_plumed(path, fields, np.hstack(cols) if len(h) else np.zeros((0, len(fields))), sets=head, fmt=fmt)

    # ------------------------------------------------------------------ basics
    @property
    def n_hills(self) -> int:
        return int(self.heights.shape[0])

    @property
    def n_cvs(self) -> int:
        return int(self.centers.shape[1])

    def file_heights(self) -> np.ndarray:
        """Heights as PLUMED writes them in ``HILLS``: :math:`W\\gamma/(\\gamma-1)` if well-tempered."""
        if self.biasfactor is None:
            return self.heights.copy()
        return self.heights * self.biasfactor / (self.biasfactor - 1.0)

    def counts_before(self, times: np.ndarray) -> np.ndarray:
        """Number of hills in the bias felt at each time (hills with :math:`t_k < t`).

        Times compare with a tolerance of 1e-6 of the typical deposition interval, since files
        print times with finite precision.
        """
        t = np.asarray(times, dtype=float)
        if self.n_hills == 0:
            return np.zeros(t.shape, dtype=np.int64)
        if self.n_hills > 1:
            dt = np.diff(self.time)
            dt = dt[dt > 0]
            tol = 1e-6 * (float(np.median(dt)) if dt.size else 1.0)
        else:
            tol = 1e-9 * max(1.0, abs(float(self.time[0])))
        return np.searchsorted(self.time + tol, t, side="left").astype(np.int64)

    def _check_points(self, s: np.ndarray, name: str = "s") -> np.ndarray:
        s = np.asarray(s, dtype=float)
        if s.ndim == 1 and self.n_cvs == 1:
            s = s[:, None]
        return check_array(s, name, shape=(None, self.n_cvs))

    def bias(self, s: np.ndarray, *, n_hills: Optional[int] = None, chunk: int = 1 << 22) -> np.ndarray:
        r"""The bias :math:`V(s)` summed exactly over the first ``n_hills`` hills (default all).

        Parameters
        ----------
        s : (n, n_cvs) ndarray
            Points in CV space.
        n_hills : int, optional
            Use the hills ``[0, n_hills)``.
        chunk : int
            Points times hills evaluated at once (memory bound).

        Returns
        -------
        (n,) ndarray
            Bias, in energy units.
        """
        s = self._check_points(s)
        m = self.n_hills if n_hills is None else int(n_hills)
        out = np.zeros(len(s))
        if m == 0 or len(s) == 0:
            return out
        a, b = _kernel_constants(self.kernel)
        step = max(1, chunk // m)
        c, sg, h = self.centers[:m], self.sigmas[:m], self.heights[:m]
        for i in range(0, len(s), step):
            out[i : i + step] = self._sum_kernels(s[i : i + step], c, sg, h, a, b)
        return out

    def _sum_kernels(self, s, c, sg, h, a, b, mask=None) -> np.ndarray:
        dp2 = np.zeros((len(s), len(c)))
        for j, per in enumerate(self.periodic):
            dx = s[:, j, None] - c[None, :, j]
            if per is not None:
                dx = _wrap(dx, per[1] - per[0])
            dp2 += 0.5 * (dx / sg[None, :, j]) ** 2
        k = np.where(dp2 < DP2CUTOFF, a * np.exp(-np.minimum(dp2, DP2CUTOFF)) + b, 0.0)
        if mask is not None:
            k *= mask
        return k @ h

    def bias_at_times(self, s: np.ndarray, times: np.ndarray, *, chunk: int = 1 << 22) -> np.ndarray:
        """The bias each frame felt, :math:`V(s_t, t)`, by exact summation (reference path).

        Cost grows as frames x hills; :func:`bias_along_trajectory` is the fast path.
        """
        s = self._check_points(s)
        n_before = self.counts_before(times)
        out = np.zeros(len(s))
        a, b = _kernel_constants(self.kernel)
        m = self.n_hills
        if m == 0:
            return out
        step = max(1, chunk // m)
        idx = np.arange(m)
        for i in range(0, len(s), step):
            sl = slice(i, i + step)
            mask = idx[None, :] < n_before[sl, None]
            out[sl] = self._sum_kernels(s[sl], self.centers, self.sigmas, self.heights, a, b, mask)
        return out

    def free_energy(self, s: np.ndarray) -> np.ndarray:
        r"""``sum_hills``' estimate :math:`-\gamma/(\gamma-1)\,V(s)` (or :math:`-V` if not well-tempered)."""
        v = self.bias(s)
        if self.biasfactor is None:
            return -v
        return -v * self.biasfactor / (self.biasfactor - 1.0)

    def default_grid(self, *, spacing_fraction: float = 0.2, bins: Optional[Sequence[int]] = None) -> "GridSpec":
        """A grid that holds every hill's support (outside it the bias is exactly 0).

        Periodic CVs span their period. The spacing is ``spacing_fraction`` times the smallest sigma
        (PLUMED's default is 1/5), unless ``bins`` is given.
        """
        if self.n_hills == 0:
            raise GMVAEInputError(f"{self.source}: no hills")
        lo, hi, nb = [], [], []
        for j, per in enumerate(self.periodic):
            sig = float(self.sigmas[:, j].min())
            if per is not None:
                a, b = per
            else:
                a = float((self.centers[:, j] - _RCUT * self.sigmas[:, j]).min())
                b = float((self.centers[:, j] + _RCUT * self.sigmas[:, j]).max())
            n = int(bins[j]) if bins is not None else max(2, int(math.ceil((b - a) / (spacing_fraction * sig))))
            lo.append(a)
            hi.append(b)
            nb.append(n)
        return GridSpec(tuple(lo), tuple(hi), tuple(nb), tuple(p is not None for p in self.periodic))


@dataclass(frozen=True)
class GridSpec:
    """A regular grid in PLUMED's convention.

    Non-periodic dimensions have ``bins + 1`` nodes from ``lower`` to ``upper`` inclusive; periodic
    ones ``bins`` nodes from ``lower`` (``upper`` is the same point as ``lower``). Passing PLUMED's
    ``GRID_MIN``, ``GRID_MAX``, ``GRID_BIN`` gives PLUMED's nodes.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    bins: tuple[int, ...]
    periodic: tuple[bool, ...]

    def __post_init__(self) -> None:
        d = len(self.lower)
        if not (len(self.upper) == len(self.bins) == len(self.periodic) == d):
            raise GMVAEInputError("GridSpec: lower, upper, bins and periodic must have one entry per CV")
        for j in range(d):
            if not self.upper[j] > self.lower[j]:
                raise GMVAEInputError(f"GridSpec: upper ({self.upper[j]}) must exceed lower ({self.lower[j]}) for CV {j}")
            if int(self.bins[j]) < 1:
                raise GMVAEInputError(f"GridSpec: bins ({self.bins[j]}) must be >= 1 for CV {j}")

    @property
    def ndim(self) -> int:
        return len(self.lower)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(b) if p else int(b) + 1 for b, p in zip(self.bins, self.periodic))

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((u - l) / b for l, u, b in zip(self.lower, self.upper, self.bins))

    def nodes(self, j: int) -> np.ndarray:
        """Node coordinates along dimension ``j``."""
        return self.lower[j] + self.spacing[j] * np.arange(self.shape[j])


class BiasGrid:
    r"""The bias of a set of hills tabulated on a grid, filled hill by hill.

    Values and all mixed derivatives (:math:`V`, :math:`\partial_x V`, :math:`\partial_y V`,
    :math:`\partial_{xy} V`, ...) are accumulated analytically at the nodes, so a tensor cubic
    Hermite interpolation reproduces the exact sum to :math:`O(h^4)` (about 1e-5 of a hill height
    at the default spacing of sigma/5). Points outside a non-periodic grid get 0 (use a grid that
    holds the hills' support, as :meth:`Hills.default_grid` does).

    When ``track_ct`` is set, the sums of :math:`e^{\gamma\beta V/(\gamma-1)}` and
    :math:`e^{\beta V/(\gamma-1)}` over the nodes are updated with each hill, giving :math:`c(t)`
    at no extra pass.

    Parameters
    ----------
    hills : Hills or None
        The hills that :meth:`add_until` adds in order; ``None`` for a grid filled with
        :meth:`add_hills` (then give ``kernel`` and ``biasfactor``).
    grid : GridSpec
    derivatives : bool
        Keep the derivative tables (needed for :meth:`evaluate`); ``False`` keeps values only
        (enough for :meth:`ct`).
    kT : float, optional
        Thermal energy (energy units), needed with ``track_ct``.
    track_ct : bool
        Keep the sums behind :math:`c(t)` (well-tempered hills only).
    kernel : str
        Kernel of hills added with :meth:`add_hills` (default PLUMED's stretched Gaussian).
    biasfactor : float, optional
        Bias factor for ``track_ct`` when ``hills`` is ``None``.
    """

    def __init__(
        self,
        hills: Optional[Hills],
        grid: GridSpec,
        *,
        derivatives: bool = True,
        kT: Optional[float] = None,
        track_ct: bool = False,
        kernel: str = "stretched-gaussian",
        biasfactor: Optional[float] = None,
    ) -> None:
        if hills is not None:
            if grid.ndim != hills.n_cvs:
                raise GMVAEInputError(f"grid has {grid.ndim} dimension(s), the hills {hills.n_cvs}")
            for j, (p, per) in enumerate(zip(grid.periodic, hills.periodic)):
                if p != (per is not None):
                    raise GMVAEInputError(f"grid dimension {j} periodic={p}, CV {hills.cv_names[j]!r} periodic={per is not None}")
                if per is not None and not (np.isclose(grid.lower[j], per[0]) and np.isclose(grid.upper[j], per[1])):
                    raise GMVAEInputError(f"grid dimension {j} spans {grid.lower[j]}..{grid.upper[j]}, the period of {hills.cv_names[j]!r} is {per}")
            kernel, biasfactor = hills.kernel, hills.biasfactor
        self.hills = hills
        self.grid = grid
        self.n_added = 0
        d = grid.ndim
        self._subsets = list(range(1 << d)) if derivatives else [0]
        # one contiguous block: tables[S] is the derivative over the dimensions in bit set S
        self._stack = np.zeros((len(self._subsets), *grid.shape))
        self.tables = {S: self._stack[i] for i, S in enumerate(self._subsets)}
        self._a, self._b = _kernel_constants(kernel)
        self._nodes = [grid.nodes(j) for j in range(d)]
        self.track_ct = track_ct
        if track_ct:
            if biasfactor is None:
                src = hills.source if hills is not None else "BiasGrid"
                raise GMVAEInputError(f"{src}: c(t) needs a well-tempered run (a 'biasf' column in HILLS)")
            self.beta = 1.0 / check_positive(kT, "kT")
            g = float(biasfactor)
            self._c1, self._c2 = g / (g - 1.0), 1.0 / (g - 1.0)
            n_nodes = float(np.prod(grid.shape))
            # sums of exp(c * beta * V_g - m); with V = 0 both equal the number of nodes
            self._m1 = self._m2 = 0.0
            self._s1 = self._s2 = n_nodes

    # ---------------------------------------------------------------- filling
    def add_until(self, n_hills: int, *, batch: int = 4096) -> None:
        """Add hills of :attr:`hills` until the first ``n_hills`` are in the table (in batches)."""
        hl = self.hills
        if hl is None:
            raise GMVAEInputError("BiasGrid made without hills: use add_hills")
        while self.n_added < n_hills:
            a = self.n_added
            b = min(n_hills, a + batch)
            self._add_batch(hl.centers[a:b], hl.sigmas[a:b], hl.heights[a:b])
            self.n_added = b

    def add_hills(self, centers: np.ndarray, sigmas: np.ndarray, heights: np.ndarray) -> None:
        """Add hills: ``centers`` and ``sigmas`` of shape ``(n, n_cvs)``, deposited ``heights`` ``(n,)``."""
        c = np.atleast_2d(np.asarray(centers, dtype=float))
        s = np.broadcast_to(np.asarray(sigmas, dtype=float), c.shape)
        h = np.atleast_1d(np.asarray(heights, dtype=float))
        self._add_batch(c, s, h)
        self.n_added += len(h)

    def _add_one(self, center: np.ndarray, sigma: np.ndarray, height: float) -> None:
        """One hill onto its patch of nodes (an outer-product block; fast path of :meth:`_add_batch`)."""
        g = self.grid
        d = g.ndim
        idx, us, ders = [], [], []
        for j in range(d):
            h = g.spacing[j]
            n = g.shape[j]
            lo = math.ceil((center[j] - _RCUT * sigma[j] - g.lower[j]) / h)
            hi = math.floor((center[j] + _RCUT * sigma[j] - g.lower[j]) / h)
            if g.periodic[j]:
                hi = min(hi, lo + n - 1)
            else:
                lo, hi = max(lo, 0), min(hi, n - 1)
            if hi < lo:
                return
            k = np.arange(lo, hi + 1)
            dx = g.lower[j] + k * h - center[j]
            if g.periodic[j]:
                dx = _wrap(dx, g.upper[j] - g.lower[j])
                k = np.mod(k, n)
            u = dx / sigma[j]
            shape = [1] * d
            shape[j] = len(k)
            idx.append(k)
            us.append((0.5 * u * u).reshape(shape))
            ders.append((-u / sigma[j]).reshape(shape))
        dp2 = us[0] if d == 1 else sum(us[1:], us[0])
        inside = dp2 < DP2CUTOFF
        e = np.where(inside, height * self._a * np.exp(-np.minimum(dp2, DP2CUTOFF)), 0.0)
        sel = np.ix_(*idx)
        tab = self.tables[0]
        if self.track_ct:
            old = tab[sel]
        new = tab[sel] + np.where(inside, e + height * self._b, 0.0)
        tab[sel] = new
        for S in self._subsets[1:]:
            term = e
            for j in range(d):
                if S >> j & 1:
                    term = term * ders[j]
            self.tables[S][sel] += term
        if self.track_ct:
            self._update_sums(old, new)

    def _add_batch(self, centers: np.ndarray, sigmas: np.ndarray, heights: np.ndarray) -> None:
        """Scatter-add the kernels (and their derivatives) of a batch of hills onto the nodes."""
        g = self.grid
        d = g.ndim
        nb = len(heights)
        if nb == 0:
            return
        if nb == 1:
            self._add_one(centers[0], sigmas[0], float(heights[0]))
            return
        # bound memory: hills x support points per call
        lengths = []
        for j in range(d):
            L = int(np.ceil(2 * _RCUT * float(sigmas[:, j].max()) / g.spacing[j])) + 2
            lengths.append(min(L, g.shape[j]) if g.periodic[j] else L)
        per_hill = int(np.prod(lengths))
        step = max(1, (1 << 21) // per_hill)
        if nb > step:
            for a in range(0, nb, step):
                self._add_batch(centers[a : a + step], sigmas[a : a + step], heights[a : a + step])
            return
        full = (nb, *lengths)
        flat = np.zeros(full, dtype=np.int64)
        ok = np.ones(full, dtype=bool)
        dp2 = np.zeros(full)
        ders = []
        stride = 1
        strides = [0] * d
        for j in range(d - 1, -1, -1):
            strides[j] = stride
            stride *= g.shape[j]
        for j in range(d):
            h = g.spacing[j]
            n = g.shape[j]
            c = centers[:, j]
            sg = sigmas[:, j]
            lo = np.ceil((c - _RCUT * sg - g.lower[j]) / h).astype(np.int64)
            hi = np.floor((c + _RCUT * sg - g.lower[j]) / h).astype(np.int64)
            k = lo[:, None] + np.arange(lengths[j])[None, :]
            dx = g.lower[j] + k * h - c[:, None]
            if g.periodic[j]:
                dx = _wrap(dx, g.upper[j] - g.lower[j])
                valid = k <= np.minimum(hi, lo + n - 1)[:, None]
                idx = np.mod(k, n)
            else:
                valid = (k >= 0) & (k < n) & (k <= hi[:, None])
                idx = np.clip(k, 0, n - 1)
            u = dx / sg[:, None]
            shape = [nb] + [1] * d
            shape[j + 1] = lengths[j]
            dp2 = dp2 + (0.5 * u * u).reshape(shape)
            ok &= valid.reshape(shape)
            flat += (idx * strides[j]).reshape(shape)
            ders.append((-u / sg[:, None]).reshape(shape))
        inside = ok & (dp2 < DP2CUTOFF)
        hb = heights.reshape([nb] + [1] * d)
        e = np.where(inside, hb * self._a * np.exp(-np.minimum(dp2, DP2CUTOFF)), 0.0)
        sel = flat[inside]
        if self.track_ct:
            touched = np.unique(sel)
            old = self.tables[0].reshape(-1)[touched].copy()
        np.add.at(self.tables[0].reshape(-1), sel, (e + hb * self._b)[inside])
        for S in self._subsets[1:]:
            term = e
            for j in range(d):
                if S >> j & 1:
                    term = term * ders[j]
            np.add.at(self.tables[S].reshape(-1), sel, term[inside])
        if self.track_ct:
            self._update_sums(old, self.tables[0].reshape(-1)[touched])

    def _update_sums(self, old: np.ndarray, new: np.ndarray) -> None:
        if new.size == 0:
            return
        b = self.beta
        for which in (1, 2):
            c = self._c1 if which == 1 else self._c2
            m = self._m1 if which == 1 else self._m2
            s = self._s1 if which == 1 else self._s2
            xn = c * b * new
            top = float(xn.max())
            if top > m + 50.0:  # rescale to keep the sum in range
                s *= math.exp(m - top)
                m = top
            s += float(np.exp(xn - m).sum() - np.exp(c * b * old - m).sum())
            if which == 1:
                self._m1, self._s1 = m, s
            else:
                self._m2, self._s2 = m, s

    def ct(self) -> float:
        r""":math:`c(t)` (energy units) for the hills added so far."""
        if not self.track_ct:
            raise GMVAEInputError("BiasGrid was made without track_ct=True")
        return ((math.log(self._s1) + self._m1) - (math.log(self._s2) + self._m2)) / self.beta

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, s: np.ndarray, *, gradient: bool = False, chunk: int = 1 << 17):
        """Hermite-interpolated bias (and its gradient) at points ``s`` of shape ``(n, n_cvs)``.

        Returns
        -------
        value : (n,) ndarray
        gradient : (n, n_cvs) ndarray
            Only with ``gradient=True``.
        """
        if len(self._subsets) == 1:
            raise GMVAEInputError("BiasGrid was made with derivatives=False; it cannot interpolate")
        s = np.asarray(s, dtype=float)
        if s.ndim == 1:
            s = s[:, None]
        if len(s) > chunk:
            parts = [self.evaluate(s[i : i + chunk], gradient=gradient, chunk=chunk) for i in range(0, len(s), chunk)]
            if gradient:
                return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            return np.concatenate(parts)
        g = self.grid
        d = g.ndim
        n = len(s)
        outside = np.zeros(n, dtype=bool)
        ks = []
        strides = [int(np.prod(g.shape[j + 1 :])) for j in range(d)]
        bases, dbases = [], []
        for j in range(d):
            h = g.spacing[j]
            x = (s[:, j] - g.lower[j]) / h
            nj = g.shape[j]
            if g.periodic[j]:
                x = np.mod(x, nj)
                k = np.minimum(x.astype(np.int64), nj - 1)
                kn = (k + 1) % nj
            else:
                outside |= (x < 0) | (x > nj - 1)
                k = np.clip(np.floor(x).astype(np.int64), 0, nj - 2)
                kn = k + 1
            t = x - k
            t2 = t * t
            t3 = t2 * t
            b = np.empty((n, 2, 2))  # [corner 0/1, value/slope]
            b[:, 0, 0] = 2 * t3 - 3 * t2 + 1
            b[:, 0, 1] = (t3 - 2 * t2 + t) * h
            b[:, 1, 0] = -2 * t3 + 3 * t2
            b[:, 1, 1] = (t3 - t2) * h
            bases.append(b)
            if gradient:
                db = np.empty((n, 2, 2))
                db[:, 0, 0] = (6 * t2 - 6 * t) / h
                db[:, 0, 1] = 3 * t2 - 4 * t + 1
                db[:, 1, 0] = (-6 * t2 + 6 * t) / h
                db[:, 1, 1] = 3 * t2 - 2 * t
                dbases.append(db)
            ks.append((k, kn))
        # node values at the 2^d corners (corner bits: dimension 0 most significant)
        corners = np.empty((n, 1 << d), dtype=np.int64)
        for c, bits in enumerate(product((0, 1), repeat=d)):
            corners[:, c] = sum((ks[j][1] if bits[j] else ks[j][0]) * strides[j] for j in range(d))
        vals = self._stack.reshape(len(self._subsets), -1)[:, corners]  # (2^d subsets, n, 2^d corners)
        vals = vals.reshape((2,) * d + (n,) + (2,) * d)  # axes: s_{d-1} .. s_0, n, c_0 .. c_{d-1}
        lower = "abcdefgh"[:d]
        upper = "ABCDEFGH"[:d]
        spec_vals = "".join(upper[j] for j in reversed(range(d))) + "n" + lower
        spec_b = ["n" + lower[j] + upper[j] for j in range(d)]
        val = np.einsum(",".join([spec_vals, *spec_b]) + "->n", vals, *bases)
        if outside.any():
            val[outside] = 0.0
        if not gradient:
            return val
        grad = np.empty((n, d))
        for i in range(d):
            ops = [dbases[j] if j == i else bases[j] for j in range(d)]
            grad[:, i] = np.einsum(",".join([spec_vals, *spec_b]) + "->n", vals, *ops)
        if outside.any():
            grad[outside] = 0.0
        return val, grad

def ct_series(hills: Hills, kT: float, *, grid: Optional[GridSpec] = None) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`c(t)` after each deposition time: the value every frame between two depositions uses.

    Parameters
    ----------
    hills : Hills
        Well-tempered hills.
    kT : float
        Thermal energy, units of the heights.
    grid : GridSpec, optional
        Nodes of the sums (default :meth:`Hills.default_grid`; PLUMED's ``GRID_MIN/MAX/BIN``
        reproduce its ``rct``).

    Returns
    -------
    n_hills : (n_times + 1,) int ndarray
        Number of hills in the bias: 0, then the count after each distinct deposition time.
    ct : (n_times + 1,) ndarray
        :math:`c` with that many hills (0 with none), energy units.
    """
    g = grid or hills.default_grid()
    bg = BiasGrid(hills, g, derivatives=False, kT=kT, track_ct=True)
    t = hills.time
    ends = np.flatnonzero(np.diff(t) > 0) + 1 if len(t) else np.zeros(0, dtype=np.int64)
    ks = np.concatenate(([0], ends, [len(t)] if len(t) else [])).astype(np.int64)
    ks = np.unique(ks)
    out = np.zeros(len(ks))
    for i, k in enumerate(ks):
        bg.add_until(int(k))
        out[i] = bg.ct()
    return ks, out


def bias_along_trajectory(
    hills: Hills,
    s: np.ndarray,
    times: np.ndarray,
    *,
    kT: Optional[float] = None,
    ct: bool = False,
    grid: Optional[GridSpec] = None,
    ct_grid: Optional[GridSpec] = None,
    state: Optional[dict] = None,
    block_hills: int = 64,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    r"""The bias :math:`V(s_t, t)` each frame felt, and :math:`c(t)`, in one time-ordered pass.

    Parameters
    ----------
    hills : Hills
    s : (n_frames, n_cvs) ndarray
        CV values of the frames (the biased CVs, in the order of ``hills.cv_names``).
    times : (n_frames,) ndarray
        Frame times, non-decreasing (same units as the hill times).
    kT : float, optional
        Thermal energy (energy units); required with ``ct``.
    ct : bool
        Also return :math:`c(t)` of each frame (well-tempered hills only).
    grid : GridSpec, optional
        Interpolation grid; default :meth:`Hills.default_grid` (spacing sigma/5).
    ct_grid : GridSpec, optional
        Grid whose nodes define :math:`c(t)`; default ``grid``. See :func:`ct_series`.
    state : dict, optional
        Carries the grid between calls for a trajectory read in chunks: pass the same dict
        with consecutive chunks (times must keep increasing). A ``"ct_series"`` entry (the
        output of :func:`ct_series`) is reused, so walkers sharing hills compute it once.
    block_hills : int
        Frames are taken in blocks spanning this many depositions: the grid holds the hills
        deposited before the block, the ones inside it are summed exactly per frame.

    Returns
    -------
    bias : (n_frames,) ndarray
        :math:`V(s_t, t)`, energy units.
    ct : (n_frames,) ndarray or None
        :math:`c(t)` of the hills in the bias at each frame, energy units.
    """
    s = hills._check_points(s)
    times = check_array(times, "times", shape=(len(s),))
    if len(times) > 1 and (np.diff(times) < 0).any():
        raise GMVAEInputError("'times' must be non-decreasing (frames of one trajectory, in time order)")
    state = {} if state is None else state
    if "grid" not in state:
        state["grid"] = BiasGrid(hills, grid or hills.default_grid(), derivatives=True)
        state["last_time"] = -np.inf
    if ct and "ct_series" not in state:
        state["ct_series"] = ct_series(hills, kT, grid=ct_grid or state["grid"].grid)
    if len(times) and times[0] < state["last_time"]:
        raise GMVAEInputError(f"'times' go back from {state['last_time']:g} to {times[0]:g} between chunks")
    bg: BiasGrid = state["grid"]
    counts = hills.counts_before(times)
    bias = np.zeros(len(s))
    cts = None
    if len(s) == 0:
        return bias, (np.zeros(0) if ct else None)
    if counts[0] < bg.n_added:
        raise GMVAEInputError("frames come before hills already added; pass frames in time order")
    # Frames in blocks of `block_hills` depositions: the grid holds the hills before the block,
    # the few hills deposited inside the block are summed exactly, frame by frame.
    a_const, b_const = _kernel_constants(hills.kernel)
    base = bg.n_added
    block = (counts - base) // block_hills
    bounds = np.flatnonzero(np.diff(block)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(s)]))
    for a, b in zip(starts, ends):
        if int(counts[b - 1]) == int(counts[a]):
            k0 = int(counts[a])
        else:
            k0 = base + int(block[a]) * block_hills
        k0 = max(k0, bg.n_added)
        bg.add_until(k0)
        bias[a:b] = bg.evaluate(s[a:b])
        k1 = int(counts[b - 1])
        if k1 > k0:
            idx = np.arange(k0, k1)
            mask = idx[None, :] < counts[a:b, None]
            bias[a:b] += hills._sum_kernels(s[a:b], hills.centers[k0:k1], hills.sigmas[k0:k1], hills.heights[k0:k1], a_const, b_const, mask)
    if ct:
        ks, cs = state["ct_series"]
        cts = cs[np.searchsorted(ks, counts, side="right") - 1]
    state["last_time"] = float(times[-1])
    return bias, cts
