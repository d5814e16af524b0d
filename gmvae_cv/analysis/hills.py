r"""Metadynamics hills: the bias they sum to, as it grew, and the Tiwary-Parrinello :math:`c(t)`.

Conventions follow PLUMED (>= 2.8), checked against its kernel in ``tests/analysis/test_reweight.py``:

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
from typing import Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.checks import check_array
from ..metad import DP2CUTOFF, PLUMED_KERNELS, GridSpec, HillKernel, wrap_difference as _wrap
from .plumed_files import PlumedFile, PlumedFileWarning, write_plumed

__all__ = ["Hills", "GridSpec", "HillSumGrid", "bias_along_trajectory", "ct_series", "DP2CUTOFF"]

_RCUT = math.sqrt(2.0 * DP2CUTOFF)  # cut-off radius in units of sigma, per dimension


def _kernel(kernel: str) -> HillKernel:
    """The shared kernel definition (:mod:`gmvae_cv.metad.kernels`); HILLS files know PLUMED's two."""
    return HillKernel.named(kernel, PLUMED_KERNELS)


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
        _kernel(self.kernel)

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
        if kernel not in PLUMED_KERNELS:
            raise GMVAEInputError(f"{src}: '#! SET kerneltype {kernel}' is not supported (expected one of {', '.join(PLUMED_KERNELS)})")
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
        step = max(1, chunk // m)
        c, sg, h = self.centers[:m], self.sigmas[:m], self.heights[:m]
        for i in range(0, len(s), step):
            out[i : i + step] = self._sum_kernels(s[i : i + step], c, sg, h)
        return out

    def _sum_kernels(self, s, c, sg, h, mask=None) -> np.ndarray:
        """Exact sum of the hills ``(c, sg, h)`` (optionally masked per point and hill) at points ``s``."""
        dp2 = np.zeros((len(s), len(c)))
        for j, per in enumerate(self.periodic):
            dx = s[:, j, None] - c[None, :, j]
            if per is not None:
                dx = _wrap(dx, per[1] - per[0])
            dp2 += 0.5 * (dx / sg[None, :, j]) ** 2
        k = _kernel(self.kernel).evaluate(dp2)
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
        m = self.n_hills
        if m == 0:
            return out
        step = max(1, chunk // m)
        idx = np.arange(m)
        for i in range(0, len(s), step):
            sl = slice(i, i + step)
            mask = idx[None, :] < n_before[sl, None]
            out[sl] = self._sum_kernels(s[sl], self.centers, self.sigmas, self.heights, mask)
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


# the grid of hills and the trajectory pass live in .hill_grid; their names are kept here
from .hill_grid import BiasGrid, HillSumGrid, bias_along_trajectory, ct_series  # noqa: E402,F401
