r"""Hill kernels and the regular grid they are tabulated on: one definition for the engine and the analysis.

A hill of height :math:`W` centred at :math:`c` with widths :math:`\sigma` adds :math:`W K(d^2)`,
:math:`d^2 = \tfrac12 \sum_a ((s_a - c_a)/\sigma_a)^2` (minimum image on periodic axes, PLUMED's
convention :func:`wrap_difference`), with

- ``"stretched-gaussian"`` (PLUMED >= 2.8 METAD and ``sum_hills``):
  :math:`K = A e^{-d^2} + B` for :math:`d^2 < 6.25`, else 0, :math:`A = 1/(1 - e^{-6.25})`,
  :math:`B = -A e^{-6.25}` (continuous at the cut-off);
- ``"truncated-gaussian"`` (PLUMED's other ``kerneltype``): :math:`K = e^{-d^2}` for
  :math:`d^2 < 6.25`, else 0;
- ``"gaussian"`` (``openmm.app.Metadynamics``): :math:`K = e^{-d^2}`, not truncated.

:class:`GridSpec` is the geometry both grids use: ``bins`` bins from ``lower`` to ``upper`` per
axis, nodes ``lower + i (upper - lower) / bins`` (PLUMED's ``GRID_MIN/GRID_MAX/GRID_BIN``).
:class:`gmvae_cv.metad.grid.BiasGrid` (what the OpenMM force interpolates, OpenMM's splines) keeps
the duplicate end node of a periodic axis, as OpenMM's tables do; the HILLS analysis
(:class:`gmvae_cv.analysis.hills.HillSumGrid`, analytic derivatives of the hills) keeps PLUMED's
``bins`` nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError

__all__ = ["HillKernel", "GridSpec", "KERNELS", "PLUMED_KERNELS", "DP2CUTOFF", "wrap_difference"]

DP2CUTOFF = 6.25
"""PLUMED's cut-off of :math:`d^2` (hills vanish beyond about 3.54 sigma)."""
KERNELS = ("stretched-gaussian", "gaussian")
"""Hill shapes the OpenMM engine deposits: PLUMED's stretched Gaussian, or ``app.Metadynamics``' Gaussian."""
PLUMED_KERNELS = ("stretched-gaussian", "truncated-gaussian")
"""The ``#! SET kerneltype`` values of PLUMED ``HILLS`` files."""
_ALL = ("stretched-gaussian", "truncated-gaussian", "gaussian")
_GAUSSIAN_TAIL_DP2 = 45.0  # plain Gaussians are tabulated where each axis' 0.5 (dx/sigma)^2 is below this


def wrap_difference(d: np.ndarray, period: float) -> np.ndarray:
    """Minimum image of a difference, in [-L/2, L/2) (PLUMED's convention)."""
    return d - period * np.floor(d / period + 0.5)


@dataclass(frozen=True)
class HillKernel:
    r"""One hill shape: :math:`K(d^2) = a\,e^{-d^2} + b` inside :math:`d^2 <` ``cutoff``, 0 beyond.

    Attributes
    ----------
    name : str
        One of ``"stretched-gaussian"``, ``"truncated-gaussian"``, ``"gaussian"``.
    a, b : float
        Scale and shift.
    cutoff : float
        :math:`d^2` beyond which the kernel is 0 (``inf`` for ``"gaussian"``).
    window : float
        :math:`d^2` per axis beyond which a deposition leaves the grid unchanged (the cut-off; for
        the plain Gaussian 45, where the factor :math:`e^{-45}` is below float64 rounding of the hill).

    Examples
    --------
    >>> k = HillKernel.named("stretched-gaussian")
    >>> float(k.evaluate(np.array([0.0, 7.0]))[0]), float(k.evaluate(np.array([0.0, 7.0]))[1])
    (1.0, 0.0)
    """

    name: str
    a: float
    b: float
    cutoff: float
    window: float

    @classmethod
    def named(cls, name: str, allowed: Sequence[str] = _ALL, *, what: str = "kernel") -> "HillKernel":
        """The kernel called ``name``; a :class:`GMVAEInputError` naming ``what`` unless it is in ``allowed``."""
        if name not in allowed:
            raise GMVAEInputError(f"'{what}' is {name!r}, expected one of {', '.join(allowed)}")
        if name == "stretched-gaussian":
            expcut = math.exp(-DP2CUTOFF)
            a = 1.0 / (1.0 - expcut)
            return cls(name, a, -expcut * a, DP2CUTOFF, DP2CUTOFF)
        if name == "truncated-gaussian":
            return cls(name, 1.0, 0.0, DP2CUTOFF, DP2CUTOFF)
        return cls(name, 1.0, 0.0, math.inf, _GAUSSIAN_TAIL_DP2)

    @property
    def truncated(self) -> bool:
        """Whether the kernel is 0 beyond :attr:`cutoff`."""
        return math.isfinite(self.cutoff)

    @property
    def reach(self) -> float:
        """Distance from the centre, in sigmas along one axis, beyond which the kernel is 0 (``inf`` if never)."""
        return math.sqrt(2.0 * self.cutoff)

    def evaluate(self, dp2: np.ndarray) -> np.ndarray:
        r""":math:`K(d^2)` elementwise (unit height)."""
        if not self.truncated:
            return np.exp(-dp2)
        return np.where(dp2 < self.cutoff, self.a * np.exp(-np.minimum(dp2, self.cutoff)) + self.b, 0.0)

    def scaled_exponential(self, dp2: np.ndarray, height: np.ndarray | float) -> np.ndarray:
        r""":math:`W a e^{-d^2}` inside the cut-off, 0 beyond: the part of :math:`W K` whose derivatives
        are not zero (what analytic derivatives of a hill multiply)."""
        if not self.truncated:
            return height * self.a * np.exp(-dp2)
        return np.where(dp2 < self.cutoff, height * self.a * np.exp(-np.minimum(dp2, self.cutoff)), 0.0)


@dataclass(frozen=True)
class GridSpec:
    """A regular grid in PLUMED's convention.

    Non-periodic dimensions have ``bins + 1`` nodes from ``lower`` to ``upper`` inclusive; periodic
    ones ``bins`` nodes from ``lower`` (``upper`` is the same point as ``lower``). Passing PLUMED's
    ``GRID_MIN``, ``GRID_MAX``, ``GRID_BIN`` gives PLUMED's nodes.

    Attributes
    ----------
    lower, upper : tuple of float
        Range per dimension (CV units); the period of a periodic one.
    bins : tuple of int
    periodic : tuple of bool
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
        """Nodes per dimension in PLUMED's convention (``bins`` periodic, ``bins + 1`` otherwise)."""
        return tuple(int(b) if p else int(b) + 1 for b, p in zip(self.bins, self.periodic))

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((u - lo) / b for lo, u, b in zip(self.lower, self.upper, self.bins))

    def nodes(self, j: int) -> np.ndarray:
        """Node coordinates along dimension ``j`` (PLUMED's nodes)."""
        return self.lower[j] + self.spacing[j] * np.arange(self.shape[j])

    def period(self, j: int) -> Optional[float]:
        """The period of dimension ``j`` (``upper - lower``), or None if it is not periodic."""
        return float(self.upper[j] - self.lower[j]) if self.periodic[j] else None
