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

Deposition is local. A hill changes the node values only within its cut-off (``6.25`` in
:math:`d^2` for the stretched kernel; for the plain Gaussian, where each axis' factor is below
:math:`e^{-45} \approx 3\times 10^{-20}`, less than the float64 rounding of the hill itself). The
spline slopes respond to that change through a tridiagonal system whose response decays by
:math:`2 - \sqrt 3 \approx 0.268` per node, so :meth:`BiasGrid.add_hill` updates a cached
:meth:`BiasGrid.force_table` only on the hill's window widened by :data:`SPLINE_MARGIN` nodes per
side (:math:`0.268^{32} \approx 5\times 10^{-19}`): the table equals a from-scratch one to float64
rounding (``tests/metad/test_bias.py`` checks 1e-12 relative after hundreds of hills), at a cost set by
the hill's width, not the grid's size.

Interpolation between nodes is OpenMM's: the value, first derivatives and mixed derivatives at
each node come from natural (or periodic) cubic splines along the grid lines, and each cell is the
bicubic (tricubic) Hermite patch through them; this is exactly what ``Continuous1DFunction``,
``Continuous2DFunction`` and ``Continuous3DFunction`` compute, so a ``table(...)`` in a
``CustomCVForce`` and :class:`GridBias` give the same energy and forces to round-off. Outside a
non-periodic range the bias and its force are zero (OpenMM's convention); periodic components are
wrapped first.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import openmm

from .._core.errors import GMVAEInputError
from .._core.checks import check_array, check_int
from .kernels import DP2CUTOFF, KERNELS, GridSpec, HillKernel, wrap_difference as _wrap_difference
from .grid_module import GridBias, gather_offsets
from .splines import HERMITE_BASIS, hermite_table, natural_slopes as _natural_slopes, scatter_add as _scatter_add, spline_slopes as _spline_slopes

if TYPE_CHECKING:  # pragma: no cover
    from .walls import Walls

__all__ = ["BiasGrid", "GridBias", "KERNELS", "DP2CUTOFF", "SPLINE_MARGIN", "hermite_table"]

SPLINE_MARGIN = 32
"""Nodes beyond a hill's window (per side and axis) over which :meth:`BiasGrid.add_hill` updates the
spline derivatives: their response to the hill has decayed below :math:`0.268^{32} \approx 5\times 10^{-19}`."""


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
    walls : Walls or None
        Restraints that the bias force adds to the grid's energy (:mod:`gmvae_cv.metad.walls`; the
        engines set them); not part of :attr:`values`, :meth:`evaluate` or the force table.

    Examples
    --------
    >>> g = BiasGrid([-np.pi, -np.pi], [np.pi, np.pi], [60, 60], [True, True])
    >>> region = g.add_hill([0.0, 0.0], [0.3, 0.3], 1.5)  # the nodes whose table rows changed
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
        self.bins = tuple(check_int(b, f"grid_bin[{a}]", minimum=2) for a, b in enumerate(bins))
        for a in range(d):
            if not upper[a] > lower[a]:
                raise GMVAEInputError(f"'grid_max[{a}]' is {upper[a]:g}, expected a value above grid_min[{a}] = {lower[a]:g}")
        self.lower = lower
        self.upper = upper
        self.periodic = tuple(bool(p) for p in periodic)
        self.spacing = (upper - lower) / np.asarray(self.bins, dtype=np.float64)
        self.shape = tuple(b + 1 for b in self.bins)
        self._values = np.zeros(self.shape, dtype=np.float64)
        self._revision = 0
        self._cache: dict = {}
        self._geometry: dict = {}  # derived from the geometry only (never cleared)
        self.walls: Optional["Walls"] = None

    @property
    def values(self) -> np.ndarray:
        """Node values, kJ/mol (assign a new array, or call :meth:`touch` after editing in place)."""
        return self._values

    @values.setter
    def values(self, new: np.ndarray) -> None:
        arr = np.array(new, dtype=np.float64)
        if arr.shape != self.shape:
            raise GMVAEInputError(f"'values' has shape {arr.shape}, expected {self.shape}")
        self._values = arr
        self.touch()

    @property
    def revision(self) -> int:
        """A counter that increases whenever the values change (:meth:`add_hill`, :meth:`touch`)."""
        return self._revision

    def touch(self) -> None:
        """Mark the values as changed (the interpolation tables are recomputed when next needed)."""
        self._revision += 1
        self._cache.clear()

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
        """A grid with the same geometry and walls, and a copy of the values."""
        g = BiasGrid(self.lower, self.upper, self.bins, self.periodic)
        g.values = self.values.copy()
        g.walls = self.walls
        return g

    def same_geometry(self, other: "BiasGrid") -> bool:
        """Whether ``other`` has the same range, bins and periodicity."""
        return (
            self.bins == other.bins
            and self.periodic == other.periodic
            and np.array_equal(self.lower, other.lower)
            and np.array_equal(self.upper, other.upper)
        )

    @property
    def spec(self) -> GridSpec:
        """The geometry as a :class:`~gmvae_cv.metad.kernels.GridSpec` (what the HILLS analysis takes)."""
        return GridSpec(tuple(float(x) for x in self.lower), tuple(float(x) for x in self.upper), self.bins, self.periodic)

    @classmethod
    def from_spec(cls, spec: GridSpec) -> "BiasGrid":
        """An empty grid with the geometry of ``spec`` (a periodic axis gets its duplicate end node)."""
        return cls(spec.lower, spec.upper, spec.bins, spec.periodic)

    # ------------------------------------------------------------------ hills
    def kernel(self, center: Sequence[float], sigma: Sequence[float], kernel: str = "stretched-gaussian") -> np.ndarray:
        """A unit-height hill evaluated at every node, shape :attr:`shape`.

        Parameters
        ----------
        center, sigma : sequence of float, length ``D``
            Hill centre and widths in CV units (``sigma > 0``).
        kernel : {'stretched-gaussian', 'gaussian'}
        """
        shape_k = HillKernel.named(kernel, KERNELS)
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
        return shape_k.evaluate(sum(terms[1:], terms[0]))

    def add_hill(self, center: Sequence[float], sigma: Sequence[float], height: float,
                 kernel: str = "stretched-gaussian") -> tuple[list, ...]:
        """Add ``height * kernel(s - center)`` to the node values (``height`` in kJ/mol).

        Only the nodes within the hill's reach change (for the stretched kernel the values are
        bit for bit those of adding :meth:`kernel` on the whole grid; the plain Gaussian is left out
        where one axis' factor is below :math:`e^{-45} \approx 3 \times 10^{-20}`). A cached
        :meth:`force_table` is updated on that window widened by :data:`SPLINE_MARGIN` nodes per
        side, where the spline derivatives respond (see the module docstring), instead of being
        recomputed.

        Returns
        -------
        tuple of list of slice
            Per axis, the node ranges whose :meth:`force_table` rows may have changed (their
            product; :meth:`gmvae_cv.metad.table_file.TableFile.write_region` copies those rows); empty
            lists if the hill lies entirely outside a non-periodic range.
        """
        shape_k = HillKernel.named(kernel, KERNELS)
        c = np.asarray(center, dtype=np.float64)
        s = np.asarray(sigma, dtype=np.float64)
        axes = [self._hill_axis(a, float(c[a]), float(s[a]), shape_k.window) for a in range(self.n_dims)]
        if any(ax is None for ax in axes):
            return tuple([] for _ in range(self.n_dims))
        terms = []
        for a, ax in enumerate(axes):
            shape = [1] * self.n_dims
            shape[a] = -1
            terms.append((0.5 * (ax["dx"] / s[a]) ** 2).reshape(shape))
        k = shape_k.evaluate(sum(terms[1:], terms[0]))  # the same operations as kernel(), on the window
        delta = float(height) * k
        self._cache.pop("nodes", None)
        table = self._cache.get("force")
        win_pieces = [ax["win_pieces"] for ax in axes]
        _scatter_add(self._values, delta, win_pieces)
        self._revision += 1
        region = tuple([slice(t, t + n) for t, _, n in ax["pieces"]] for ax in axes)
        if table is None:
            return region
        if all(ax["whole"] for ax in axes):  # the hill reaches the whole grid: recompute when next needed
            self._cache.pop("force", None)
            return region
        # derivative channels of the change: channel c = the spline slopes along axis a of channel
        # c - 2**a (hermite_table's order), solved on the box along a; that input is non-zero only on
        # the window along a (zeros elsewhere in the box), and extends over the box along the axes
        # already differentiated
        table_nd = table.reshape(self.shape + (2**self.n_dims,))
        scale = self._channel_scale()
        data = {0: delta}
        _scatter_add(table_nd[..., 0], delta, win_pieces)
        for channel in range(1, 2**self.n_dims):
            a = max(b for b in range(self.n_dims) if (channel >> b) & 1)
            ax = axes[a]
            src = data[channel & ~(1 << a)]
            if ax["box_periodic"]:  # the whole periodic axis: the window is the box
                data[channel] = _spline_slopes(src, a, float(self.spacing[a]), True)
            else:
                shape = list(src.shape)
                shape[a] = ax["box_len"]
                box = np.zeros(shape)
                box[(slice(None),) * a + (slice(ax["win_off"], ax["win_off"] + ax["win_len"]),)] = src
                data[channel] = _natural_slopes(box, a, float(self.spacing[a]))
            pieces = [axes[b]["pieces"] if (channel >> b) & 1 else win_pieces[b] for b in range(self.n_dims)]
            _scatter_add(table_nd[..., channel], scale[channel] * data[channel], pieces)
        return region

    def _hill_axis(self, a: int, c: float, s: float, cut: float) -> Optional[dict]:
        """Window of a hill along axis ``a`` and the box its table update is solved on.

        ``dx``: offsets of the window nodes from the centre (as :meth:`kernel` computes them);
        the box holds the window at ``win_off`` and :data:`SPLINE_MARGIN` more nodes per side
        (clipped at a non-periodic end, where the natural end condition is then exact; the whole
        axis, with the periodic solver, when the box would wrap onto itself). ``pieces`` map box
        positions to nodes as ``(first node, first box position, length)`` runs (a periodic axis
        wraps, and its last node repeats the first); ``win_pieces`` map the window likewise.
        """
        n = self.bins[a]
        h = self.spacing[a]
        x = (c - self.lower[a]) / h
        reach = math.sqrt(2.0 * cut) * s / h
        if not (math.isfinite(x) and math.isfinite(reach)):
            raise GMVAEInputError(f"hill centre {c!r} / sigma {s!r} on axis {a} are not finite")
        lo, hi = math.floor(x - reach) - 1, math.ceil(x + reach) + 1
        m = SPLINE_MARGIN
        if self.periodic[a]:
            period = self.upper[a] - self.lower[a]
            if hi - lo + 1 + 2 * m > n:  # the box would meet itself: the whole axis, periodic solver
                dx = _wrap_difference(self.axis(a)[:-1] - c, period)
                whole = [(0, 0, n + 1)]
                return {"dx": np.append(dx, dx[0]), "box_len": n + 1, "win_off": 0, "win_len": n + 1, "box_periodic": True,
                        "pieces": whole, "win_pieces": whole, "whole": True}
            length = hi - lo + 1 + 2 * m
            first = (lo - m) % n
            pieces = [(first, 0, min(length, n - first))]
            if length > n - first:  # wraps past the end: continues at node 0
                pieces.append((0, n - first, length - (n - first)))
            for t, q, k in list(pieces):
                if t == 0:
                    pieces.append((n, q, 1))  # the last node repeats the first
            nodes = (np.arange(lo, hi + 1)) % n
            win = []
            for t, q, k in pieces:  # the pieces restricted to the window, window-relative
                q0, q1 = max(q, m), min(q + k, length - m)
                if q1 > q0:
                    win.append((t + q0 - q, q0 - m, q1 - q0))
            return {"dx": _wrap_difference(self.axis(a)[nodes] - c, period), "box_len": length, "win_off": m,
                    "win_len": hi - lo + 1, "box_periodic": False, "pieces": pieces, "win_pieces": win, "whole": False}
        w0, w1 = max(lo, 0), min(hi, n)
        if w0 > w1:
            return None
        p0, p1 = max(w0 - m, 0), min(w1 + m, n)
        return {"dx": self.axis(a)[w0 : w1 + 1] - c, "box_len": p1 - p0 + 1, "win_off": w0 - p0, "win_len": w1 - w0 + 1,
                "box_periodic": False, "pieces": [(p0, 0, p1 - p0 + 1)], "win_pieces": [(w0, 0, w1 - w0 + 1)],
                "whole": p0 == 0 and p1 == n}

    # ------------------------------------------------------------------ interpolation
    def node_table(self) -> np.ndarray:
        """Values and derivatives at the nodes for the Hermite patches, shape ``(n_nodes, 2**D)``.

        Column ``c`` holds :math:`\\partial^{|S|} V / \\prod_{a \\in S} \\partial s_a` for the
        set ``S`` of axes whose bit is set in ``c``; rows are nodes in C order (axis 0 slowest).
        """
        if "nodes" not in self._cache:
            self._cache["nodes"] = hermite_table(self._values, self.spacing, self.periodic)
        return self._cache["nodes"]

    def force_table(self) -> np.ndarray:
        """The table :class:`GridBias` reads: :meth:`node_table` with each derivative channel scaled
        by the grid spacings it involves (``f``, ``h_0 f_0``, ``h_1 f_1``, ``h_0 h_1 f_01``, ...),
        shape ``(n_nodes, 2**D)``; cached, updated locally by :meth:`add_hill`, recomputed after
        :meth:`touch` or a new :attr:`values` (the cached array is returned: do not modify it)."""
        if "force" not in self._cache:
            self._cache["force"] = hermite_table(self._values, self.spacing, self.periodic) * self._channel_scale()
        return self._cache["force"]

    def _channel_scale(self) -> np.ndarray:
        return np.array([np.prod([self.spacing[a] for a in range(self.n_dims) if (c >> a) & 1]) for c in range(2**self.n_dims)])

    @property
    def force_table_shape(self) -> tuple[int, int]:
        """Shape of :meth:`force_table` (fixed by the geometry)."""
        return int(np.prod(self.shape)), 2**self.n_dims

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
        d = self.n_dims
        x = (pts - self.lower) / self.spacing
        inside = np.ones(len(pts), dtype=bool)
        for a in range(d):
            if self.periodic[a]:
                x[:, a] = np.mod(x[:, a], self.bins[a])
            else:
                inside &= (x[:, a] >= 0) & (x[:, a] <= self.bins[a])
        cell = np.clip(np.floor(x), 0, np.asarray(self.bins) - 1)
        u = x - cell
        k = np.arange(4)
        powers = u[:, :, None] ** k  # (n, D, 4)
        dpowers = k * np.where(k > 0, u[:, :, None], 1.0) ** np.maximum(k - 1, 0)
        basis = powers @ HERMITE_BASIS  # (n, D, 4), index corner * 2 + derivative
        dbasis = dpowers @ HERMITE_BASIS / self.spacing[None, :, None]
        if "offsets" not in self._geometry:
            self._geometry["offsets"] = gather_offsets(self.shape)
        strides, offsets = self._geometry["offsets"]
        table = self.force_table().reshape(-1)
        block = table[(cell @ strides).astype(np.int64)[:, None] + offsets.reshape(1, -1)].reshape((len(pts),) + (4,) * d)
        letters = "abc"[:d]
        spec = "n" + letters + "," + ",".join(f"n{letter}" for letter in letters) + "->n"
        value = np.einsum(spec, block, *[basis[:, a] for a in range(d)])
        grad = np.stack([np.einsum(spec, block, *[(dbasis if a == b else basis)[:, a] for a in range(d)]) for b in range(d)], axis=1)
        return np.where(inside, value, 0.0), np.where(inside[:, None], grad, 0.0)

    def torch_module(self) -> "GridBias":
        """A scriptable :class:`GridBias` with this grid's geometry (the table is an input)."""
        return GridBias(self.lower, self.upper, self.bins, self.periodic)

    def openmm_function(self):
        """This grid as an OpenMM ``Continuous{1,2,3}DFunction`` (for ``table(...)`` expressions).

        OpenMM's functions are periodic in all arguments or in none, so mixed periodicity is refused.
        """
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
