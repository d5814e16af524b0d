r"""The bias of metadynamics hills on a grid, as it grew: fast :math:`V(s_t, t)` and :math:`c(t)`.

:class:`HillSumGrid` accumulates each hill's value and exact derivatives at the nodes of a
:class:`~gmvae_cv.metad.kernels.GridSpec` (PLUMED's grid convention), so that a tensor cubic
Hermite interpolation reproduces the exact sum over hills to :math:`O(h^4)`;
:func:`bias_along_trajectory` walks a trajectory in time order with it, and :func:`ct_series`
gives :math:`c(t)` after each deposition. The hills and their exact sums are
:class:`gmvae_cv.analysis.hills.Hills`; the kernels are :mod:`gmvae_cv.metad.kernels`'.
"""

from __future__ import annotations

import math
from itertools import product
from typing import TYPE_CHECKING, Optional

import numpy as np

from .._core.checks import check_array, check_positive
from .._core.errors import GMVAEInputError
from ..metad import DP2CUTOFF, PLUMED_KERNELS, GridSpec, HillKernel, wrap_difference as _wrap

if TYPE_CHECKING:  # pragma: no cover
    from .hills import Hills

__all__ = ["HillSumGrid", "BiasGrid", "bias_along_trajectory", "ct_series"]

_RCUT = math.sqrt(2.0 * DP2CUTOFF)  # cut-off radius in units of sigma, per dimension


def _kernel(kernel: str) -> HillKernel:
    return HillKernel.named(kernel, PLUMED_KERNELS)


class HillSumGrid:
    r"""The bias of a set of hills tabulated on a grid, filled hill by hill (analytic derivatives).

    Not :class:`gmvae_cv.metad.grid.BiasGrid`: that one interpolates as OpenMM's tables do (spline
    derivatives of the node values, what the force must reproduce); this one accumulates each
    hill's exact derivatives at the nodes (what PLUMED's ``sum_hills`` and a HILLS reweighting
    need). Both use the same kernels and geometry (:mod:`gmvae_cv.metad.kernels`).

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
        self.kernel = _kernel(kernel)
        self._a, self._b = self.kernel.a, self.kernel.b
        self._nodes = [grid.nodes(j) for j in range(d)]
        self.track_ct = track_ct
        if track_ct:
            if biasfactor is None:
                src = hills.source if hills is not None else "HillSumGrid"
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
            raise GMVAEInputError("HillSumGrid made without hills: use add_hills")
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
        e = np.where(inside, self.kernel.scaled_exponential(dp2, height), 0.0)
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
        e = np.where(inside, self.kernel.scaled_exponential(dp2, hb), 0.0)
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
            raise GMVAEInputError("HillSumGrid was made without track_ct=True")
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
            raise GMVAEInputError("HillSumGrid was made with derivatives=False; it cannot interpolate")
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
    bg = HillSumGrid(hills, g, derivatives=False, kT=kT, track_ct=True)
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
        state["grid"] = HillSumGrid(hills, grid or hills.default_grid(), derivatives=True)
        state["last_time"] = -np.inf
    if ct and "ct_series" not in state:
        state["ct_series"] = ct_series(hills, kT, grid=ct_grid or state["grid"].grid)
    if len(times) and times[0] < state["last_time"]:
        raise GMVAEInputError(f"'times' go back from {state['last_time']:g} to {times[0]:g} between chunks")
    bg: HillSumGrid = state["grid"]
    counts = hills.counts_before(times)
    bias = np.zeros(len(s))
    cts = None
    if len(s) == 0:
        return bias, (np.zeros(0) if ct else None)
    if counts[0] < bg.n_added:
        raise GMVAEInputError("frames come before hills already added; pass frames in time order")
    # Frames in blocks of `block_hills` depositions: the grid holds the hills before the block,
    # the few hills deposited inside the block are summed exactly, frame by frame.
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
            bias[a:b] += hills._sum_kernels(s[a:b], hills.centers[k0:k1], hills.sigmas[k0:k1], hills.heights[k0:k1], mask)
    if ct:
        ks, cs = state["ct_series"]
        cts = cs[np.searchsorted(ks, counts, side="right") - 1]
    state["last_time"] = float(times[-1])
    return bias, cts


BiasGrid = HillSumGrid
"""The former name of :class:`HillSumGrid` (kept so that existing imports work)."""
