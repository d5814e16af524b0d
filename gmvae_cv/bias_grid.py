r"""The metadynamics bias on a grid: hill kernels, OpenMM's spline interpolation, PLUMED's layout.

Grid. Component ``a`` has ``bins[a]`` bins between ``lower[a]`` and ``upper[a]`` and
``bins[a] + 1`` nodes ``lower + i (upper - lower) / bins``, both ends included. This is PLUMED's
``GRID_MIN/GRID_MAX/GRID_BIN`` (a periodic axis there stores the first ``bins`` nodes; the last node
here duplicates the first) and OpenMM's ``BiasVariable(..., gridWidth=bins + 1)``.

Kernels. A hill of height :math:`W` centred at :math:`c` adds :math:`W K(s - c)` with
:math:`d^2 = \tfrac12 \sum_a ((s_a - c_a)/\sigma_a)^2` (minimum image on periodic axes):

- ``"stretched-gaussian"`` (default; PLUMED >= 2.8 METAD and ``sum_hills``):
  :math:`K = A e^{-d^2} + B` for :math:`d^2 < 6.25`, else 0, with :math:`A = 1/(1 - e^{-6.25})`,
  :math:`B = -A e^{-6.25}`, so that K is continuous at the cut-off;
- ``"gaussian"`` (``openmm.app.Metadynamics``): :math:`K = e^{-d^2}`, not truncated.

Interpolation between nodes is OpenMM's: the value, first derivatives and mixed derivatives at
each node come from natural (or periodic) cubic splines along the grid lines, and each cell is the
bicubic (tricubic) Hermite patch through them; this is exactly what ``Continuous1DFunction``,
``Continuous2DFunction`` and ``Continuous3DFunction`` compute, so a ``table(...)`` in a
``CustomCVForce`` and :class:`GridBias` give the same energy and forces to round-off. Outside a
non-periodic range the bias and its force are zero (OpenMM's convention); periodic components are
wrapped first.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ._validation import GMVAEInputError, check_array, check_int

__all__ = ["BiasGrid", "GridBias", "KERNELS", "DP2CUTOFF", "hermite_table"]

KERNELS = ("stretched-gaussian", "gaussian")
"""Hill shapes: PLUMED's truncated-and-stretched Gaussian, or OpenMM's plain Gaussian."""
DP2CUTOFF = 6.25
"""PLUMED's cut-off of :math:`d^2` (hills vanish beyond about 3.54 sigma)."""
_STRETCH_A = 1.0 / (1.0 - math.exp(-DP2CUTOFF))
_STRETCH_B = -math.exp(-DP2CUTOFF) * _STRETCH_A
# Hermite basis in powers of u: columns h00, h10, h01, h11 (value at 0, slope at 0, value at 1,
# slope at 1), ordered as corner * 2 + derivative.
_HERMITE = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [-3, -2, 3, -1], [2, 1, -2, 1]], dtype=np.float64)


def _wrap_difference(d: np.ndarray, period: float) -> np.ndarray:
    """Minimum image of a difference, in [-L/2, L/2) (PLUMED's convention)."""
    return d - period * np.floor(d / period + 0.5)


class BiasGrid:
    """A bias tabulated on a regular grid over 1 to 3 CV components.

    Parameters
    ----------
    lower, upper : sequence of float, length ``D``
        Grid range per component, in the CV's units.
    bins : sequence of int, length ``D``
        Bins per component (>= 2); nodes are ``bins + 1`` per axis.
    periodic : sequence of bool, length ``D``
        Whether a component is periodic with period ``upper - lower``.

    Attributes
    ----------
    values : ndarray, shape ``(bins[0] + 1, ..., bins[D-1] + 1)``
        The bias at the nodes, kJ/mol; axis ``a`` is component ``a``.

    Examples
    --------
    >>> g = BiasGrid([-np.pi, -np.pi], [np.pi, np.pi], [60, 60], [True, True])
    >>> g.add_hill([0.0, 0.0], [0.3, 0.3], 1.5)
    >>> round(float(g.evaluate([[0.0, 0.0]])[0][0]), 6)
    1.5
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float], bins: Sequence[int], periodic: Sequence[bool]) -> None:
        lower = check_array(lower, "grid_min", ndim=1)
        upper = check_array(upper, "grid_max", shape=(lower.shape[0],))
        d = lower.shape[0]
        if not 1 <= d <= 3:
            raise GMVAEInputError(f"'grid_min' has {d} entries, expected 1 to 3 biased components")
        if len(bins) != d or len(periodic) != d:
            raise GMVAEInputError(f"'grid_bin' has {len(bins)} and 'periodic' {len(periodic)} entries, expected {d} (one per biased component)")
        self.bins = tuple(check_int(int(b) if isinstance(b, (np.integer,)) else b, f"grid_bin[{a}]", minimum=2) for a, b in enumerate(bins))
        for a in range(d):
            if not upper[a] > lower[a]:
                raise GMVAEInputError(f"'grid_max[{a}]' is {upper[a]:g}, expected a value above grid_min[{a}] = {lower[a]:g}")
        self.lower = lower
        self.upper = upper
        self.periodic = tuple(bool(p) for p in periodic)
        self.spacing = (upper - lower) / np.asarray(self.bins, dtype=np.float64)
        self.shape = tuple(b + 1 for b in self.bins)
        self.values = np.zeros(self.shape, dtype=np.float64)

    @property
    def n_dims(self) -> int:
        """Number of biased components ``D``."""
        return len(self.bins)

    def axis(self, a: int) -> np.ndarray:
        """Node coordinates of axis ``a``, shape ``(bins[a] + 1,)``."""
        return self.lower[a] + np.arange(self.shape[a], dtype=np.float64) * self.spacing[a]

    def nodes(self) -> np.ndarray:
        """All node coordinates, shape ``(*shape, D)``."""
        return np.stack(np.meshgrid(*[self.axis(a) for a in range(self.n_dims)], indexing="ij"), axis=-1)

    def copy(self) -> "BiasGrid":
        """A grid with the same geometry and a copy of the values."""
        g = BiasGrid(self.lower, self.upper, self.bins, self.periodic)
        g.values = self.values.copy()
        return g

    def same_geometry(self, other: "BiasGrid") -> bool:
        """Whether ``other`` has the same range, bins and periodicity."""
        return (
            self.bins == other.bins
            and self.periodic == other.periodic
            and np.array_equal(self.lower, other.lower)
            and np.array_equal(self.upper, other.upper)
        )

    # ------------------------------------------------------------------ hills
    def kernel(self, center: Sequence[float], sigma: Sequence[float], kernel: str = "stretched-gaussian") -> np.ndarray:
        """A unit-height hill evaluated at every node, shape :attr:`shape`.

        Parameters
        ----------
        center, sigma : sequence of float, length ``D``
            Hill centre and widths in CV units (``sigma > 0``).
        kernel : {'stretched-gaussian', 'gaussian'}
        """
        if kernel not in KERNELS:
            raise GMVAEInputError(f"'kernel' is {kernel!r}, expected one of {', '.join(KERNELS)}")
        c = np.asarray(center, dtype=np.float64)
        s = np.asarray(sigma, dtype=np.float64)
        terms = []
        for a in range(self.n_dims):
            period = self.upper[a] - self.lower[a]
            x = self.axis(a)
            if self.periodic[a]:
                dx = _wrap_difference(x[:-1] - c[a], period)
                dx = np.append(dx, dx[0])  # the last node is the first one
            else:
                dx = x - c[a]
            shape = [1] * self.n_dims
            shape[a] = -1
            terms.append((0.5 * (dx / s[a]) ** 2).reshape(shape))
        dp2 = sum(terms[1:], terms[0])
        if kernel == "gaussian":
            return np.exp(-dp2)
        return np.where(dp2 < DP2CUTOFF, _STRETCH_A * np.exp(-dp2) + _STRETCH_B, 0.0)

    def add_hill(self, center: Sequence[float], sigma: Sequence[float], height: float, kernel: str = "stretched-gaussian") -> None:
        """Add ``height * kernel(s - center)`` to the node values (``height`` in kJ/mol)."""
        self.values += float(height) * self.kernel(center, sigma, kernel)

    # ------------------------------------------------------------------ interpolation
    def node_table(self) -> np.ndarray:
        """Values and derivatives at the nodes for the Hermite patches, shape ``(n_nodes, 2**D)``.

        Column ``c`` holds :math:`\\partial^{|S|} V / \\prod_{a \\in S} \\partial s_a` for the
        set ``S`` of axes whose bit is set in ``c``; rows are nodes in C order (axis 0 slowest).
        """
        return hermite_table(self.values, self.spacing, self.periodic)

    def evaluate(self, points: Any) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated bias and its gradient at ``points`` (OpenMM's spline).

        Parameters
        ----------
        points : array_like, shape ``(n, D)``
            CV values.

        Returns
        -------
        value : ndarray, shape ``(n,)``
            kJ/mol; 0 outside a non-periodic range.
        gradient : ndarray, shape ``(n, D)``
            kJ/mol per CV unit.
        """
        pts = check_array(points, "points", ndim=2, shape=(None, self.n_dims))
        table = self.node_table()
        d = self.n_dims
        t = pts.copy()
        inside = np.ones(len(pts), dtype=bool)
        cell = np.zeros((len(pts), d), dtype=np.int64)
        u = np.zeros((len(pts), d))
        for a in range(d):
            period = self.upper[a] - self.lower[a]
            if self.periodic[a]:
                w = (t[:, a] - self.lower[a]) / period
                t[:, a] = self.lower[a] + period * (w - np.floor(w))
            else:
                inside &= (t[:, a] >= self.lower[a]) & (t[:, a] <= self.upper[a])
            x = (t[:, a] - self.lower[a]) / self.spacing[a]
            cell[:, a] = np.clip(np.floor(x), 0, self.bins[a] - 1).astype(np.int64)
            u[:, a] = x - cell[:, a]
        powers = np.stack([np.ones_like(u), u, u * u, u * u * u], axis=-1)  # (n, D, 4)
        dpowers = np.stack([np.zeros_like(u), np.ones_like(u), 2 * u, 3 * u * u], axis=-1)
        scale = np.ones((d, 4))
        scale[:, 1] = self.spacing
        scale[:, 3] = self.spacing
        basis = (powers @ _HERMITE) * scale  # (n, D, 4)
        dbasis = (dpowers @ _HERMITE) * scale / self.spacing[:, None]
        strides = np.array([int(np.prod(self.shape[a + 1 :])) for a in range(d)], dtype=np.int64)
        value = np.zeros(len(pts))
        grad = np.zeros((len(pts), d))
        for corner in itertools.product((0, 1), repeat=d):
            rows = ((cell + np.asarray(corner)) * strides).sum(axis=1)
            for channel in range(2**d):
                bits = [(channel >> a) & 1 for a in range(d)]
                idx = [2 * corner[a] + bits[a] for a in range(d)]
                f = table[rows, channel]
                terms = [basis[:, a, idx[a]] for a in range(d)]
                value += f * np.prod(terms, axis=0)
                for b in range(d):
                    dterms = [dbasis[:, a, idx[a]] if a == b else terms[a] for a in range(d)]
                    grad[:, b] += f * np.prod(dterms, axis=0)
        value = np.where(inside, value, 0.0)
        grad = np.where(inside[:, None], grad, 0.0)
        return value, grad

    def torch_module(self) -> "GridBias":
        """A scriptable :class:`GridBias` with this grid's geometry (the table is an input)."""
        return GridBias(self.lower, self.upper, self.bins, self.periodic)

    def openmm_function(self):
        """This grid as an OpenMM ``Continuous{1,2,3}DFunction`` (for ``table(...)`` expressions).

        OpenMM's functions are periodic in all arguments or in none, so mixed periodicity is refused.
        """
        import openmm

        if len(set(self.periodic)) > 1:
            raise GMVAEInputError("OpenMM tabulated functions need all components periodic or none")
        per = self.periodic[0]
        vals = self.values.flatten(order="F")  # OpenMM: first argument varies fastest
        lim = sum(([float(self.lower[a]), float(self.upper[a])] for a in range(self.n_dims)), [])
        if self.n_dims == 1:
            return openmm.Continuous1DFunction(vals, *lim, per)
        if self.n_dims == 2:
            return openmm.Continuous2DFunction(*self.shape, vals, *lim, per)
        return openmm.Continuous3DFunction(*self.shape, vals, *lim, per)

    # ------------------------------------------------------------------ PLUMED grid file
    def to_plumed_text(self, names: Sequence[str], field: str = "metad.bias", fmt: str = "%.10g", header: Optional[dict] = None) -> str:
        """The grid in PLUMED's grid-file layout (``#! FIELDS s... field der_s...``, ``#! SET``).

        Periodic axes list ``bins`` nodes (the duplicate end node is left out, as PLUMED does);
        the first component varies fastest, with a blank line after each of its rows.
        """
        d = self.n_dims
        _, grad = (None, None)
        keep = [self.bins[a] if self.periodic[a] else self.bins[a] + 1 for a in range(d)]
        axes = [self.axis(a)[: keep[a]] for a in range(d)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
        vals = self.values[tuple(slice(0, k) for k in keep)].reshape(-1)
        _, grad = self.evaluate(pts)
        # order with component 0 fastest
        order = np.lexsort([pts[:, a] for a in range(d)])
        lines = ["#! FIELDS " + " ".join([*names, field, *[f"der_{n}" for n in names]])]
        for k, v in (header or {}).items():
            lines.append(f"#! SET {k} {v}")
        for a, n in enumerate(names):
            lo, hi = (("-pi", "pi") if self.periodic[a] and math.isclose(self.lower[a], -math.pi) and math.isclose(self.upper[a], math.pi)
                      else (repr(float(self.lower[a])), repr(float(self.upper[a]))))
            lines.append(f"#! SET min_{n} {lo}")
            lines.append(f"#! SET max_{n} {hi}")
            lines.append(f"#! SET nbins_{n} {self.bins[a]}")
            lines.append(f"#! SET periodic_{n} {'true' if self.periodic[a] else 'false'}")
        prev = None
        for k in order:
            if d > 1 and prev is not None and pts[k, 1:].tolist() != pts[prev, 1:].tolist():
                lines.append("")
            row = [*pts[k], vals[k], *grad[k]]
            lines.append(" ".join(fmt % x for x in row))
            prev = k
        return "\n".join(lines) + "\n"


def hermite_table(values: np.ndarray, spacing: Sequence[float], periodic: Sequence[bool]) -> np.ndarray:
    """Node values and (mixed) spline derivatives, shape ``(values.size, 2**D)``; see :meth:`BiasGrid.node_table`."""
    from scipy.interpolate import CubicSpline

    d = values.ndim
    data = {0: np.asarray(values, dtype=np.float64)}
    for channel in range(1, 2**d):
        a = max(b for b in range(d) if (channel >> b) & 1)  # differentiate along the highest axis last
        base = data[channel & ~(1 << a)]
        n = base.shape[a]
        x = np.arange(n, dtype=np.float64) * float(spacing[a])
        if periodic[a]:
            base = base.copy()
            idx = [slice(None)] * d
            idx[a] = -1
            first = [slice(None)] * d
            first[a] = 0
            base[tuple(idx)] = base[tuple(first)]
            spline = CubicSpline(x, base, axis=a, bc_type="periodic")
        else:
            spline = CubicSpline(x, base, axis=a, bc_type="natural")
        der = spline(x, 1)
        for b in range(d):
            if periodic[b]:
                last = [slice(None)] * d
                last[b] = -1
                first = [slice(None)] * d
                first[b] = 0
                der[tuple(last)] = der[tuple(first)]
        data[channel] = der
    return np.stack([data[c].reshape(-1) for c in range(2**d)], axis=1)


class GridBias(torch.nn.Module):
    """TorchScript evaluation of a :class:`BiasGrid` at one CV point from its node table.

    ``forward(s, table)``: ``s`` of shape ``(D,)`` (CV units), ``table`` of shape
    ``(n_nodes, 2**D)`` from :meth:`BiasGrid.node_table`; returns the bias energy (kJ/mol, a
    0-dimensional tensor in the dtype of ``table``). Written without data-dependent Python
    control flow, so that its gradient can be traced together with the CV's.
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float], bins: Sequence[int], periodic: Sequence[bool]) -> None:
        super().__init__()
        d = len(bins)
        lower_t = torch.tensor(np.asarray(lower, dtype=np.float64))
        upper_t = torch.tensor(np.asarray(upper, dtype=np.float64))
        shape = [int(b) + 1 for b in bins]
        spacing = (upper_t - lower_t) / torch.tensor([float(b) for b in bins], dtype=torch.float64)
        self.register_buffer("lower", lower_t)
        self.register_buffer("upper", upper_t)
        self.register_buffer("period", upper_t - lower_t)
        self.register_buffer("spacing", spacing)
        self.register_buffer("max_cell", torch.tensor([float(b - 1) for b in bins], dtype=torch.float64))
        self.register_buffer("is_periodic", torch.tensor([bool(p) for p in periodic]))
        self.register_buffer("any_bounded", torch.tensor(not all(periodic)))
        strides = [int(np.prod(shape[a + 1 :])) for a in range(d)]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.long))
        corners = list(itertools.product((0, 1), repeat=d))
        self.register_buffer("corner_offsets", torch.tensor([sum(c[a] * strides[a] for a in range(d)) for c in corners], dtype=torch.long))
        idx = torch.zeros((d, len(corners), 2**d), dtype=torch.long)
        for k, c in enumerate(corners):
            for channel in range(2**d):
                for a in range(d):
                    idx[a, k, channel] = 4 * a + 2 * c[a] + ((channel >> a) & 1)
        self.register_buffer("basis_index", idx)
        scale = torch.ones((d, 4), dtype=torch.float64)
        scale[:, 1] = spacing
        scale[:, 3] = spacing
        self.register_buffer("hermite", torch.tensor(_HERMITE))
        self.register_buffer("scale", scale)
        self.n_dims: int = d

    def forward(self, s: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        t = s.to(table.dtype)
        w = (t - self.lower) / self.period
        t = torch.where(self.is_periodic, self.lower + self.period * (w - torch.floor(w)), t)
        ok = (self.is_periodic | ((t >= self.lower) & (t <= self.upper))).all()
        x = (t - self.lower) / self.spacing
        cell = torch.minimum(torch.clamp(torch.floor(x), min=0.0), self.max_cell)
        u = x - cell
        u2 = u * u
        powers = torch.stack([torch.ones_like(u), u, u2, u2 * u], dim=-1)  # (D, 4)
        basis = torch.matmul(powers, self.hermite) * self.scale  # (D, 4)
        weights = basis.reshape(-1)[self.basis_index].prod(0)  # (2^D, 2^D)
        base = (cell.to(torch.long) * self.strides).sum()
        corners = table.index_select(0, base + self.corner_offsets)  # (2^D, 2^D)
        energy = (corners * weights).sum()
        return torch.where(ok, energy, torch.zeros_like(energy))
