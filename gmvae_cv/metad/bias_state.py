"""The state of a hill-sum bias: the grid of node values, the list of hills, and their round trip
through checkpoints.

:class:`HillBias` adds hills to a :class:`~gmvae_cv.metad.grid.BiasGrid` with one kernel, keeps
every hill (:class:`~gmvae_cv.metad.hill.Hill`) for the HILLS files and :math:`c(t)` reweighting,
records hills deposited near the edge of a non-periodic grid, and converts itself to plain arrays
(:meth:`HillBias.arrays`, :meth:`HillBias.load_arrays`). How heights are chosen (the well-tempered
rule) is the engine's business.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from .._core.checks import check_array
from .._core.errors import GMVAEInputError
from .grid import BiasGrid
from .hill import Hill
from .kernels import DP2CUTOFF, KERNELS, HillKernel
from .parameters import BiasEdgeWarning

__all__ = ["HillBias"]


class HillBias:
    """Hills on a grid.

    Parameters
    ----------
    grid : BiasGrid
    kernel : {'stretched-gaussian', 'gaussian'}
    components : sequence of int
        The CV components of the grid's axes (for messages and edge records).

    Attributes
    ----------
    hills : list of Hill
        Every hill added, in order.
    edge_events : list of dict
        Hills deposited within the kernel's reach of (or beyond) a non-periodic grid edge.
    """

    def __init__(self, grid: BiasGrid, kernel: str, components: Sequence[int]) -> None:
        self.grid = grid
        self.kernel = HillKernel.named(kernel, KERNELS)
        self.components = tuple(int(c) for c in components)
        self.hills: list[Hill] = []
        self.edge_events: list[dict] = []
        self._edge_warned: set = set()

    @property
    def n_dims(self) -> int:
        return len(self.components)

    def add(self, hills: Sequence[Hill]) -> list:
        """Add ``hills`` to the grid and the list; return the node regions whose table rows changed."""
        regions = []
        for hill in hills:
            regions.append(self.grid.add_hill(hill.center, hill.sigma, hill.height, self.kernel.name))
            self.hills.append(hill)
        return regions

    def check_edges(self, c: np.ndarray, sig: np.ndarray, step: int, walker: int, *, stacklevel: int = 3) -> None:
        """Record (and warn once per edge) a hill at ``c`` (biased components) near a non-periodic edge."""
        reach = math.sqrt(2.0 * DP2CUTOFF)  # hills vanish beyond this many sigmas (stretched kernel)
        for a, comp in enumerate(self.components):
            if self.grid.periodic[a]:
                continue
            lo, hi = self.grid.lower[a], self.grid.upper[a]
            for side, dist in (("min", c[a] - lo), ("max", hi - c[a])):
                if dist < reach * sig[a]:
                    outside = dist < 0
                    self.edge_events.append({"step": int(step), "walker": int(walker), "component": int(comp),
                                             "side": side, "cv": float(c[a]), "outside": bool(outside)})
                    key = (comp, side, outside)
                    if key not in self._edge_warned:
                        self._edge_warned.add(key)
                        what = "outside" if outside else f"within {reach:.2f} sigma of"
                        warnings.warn(
                            f"step {step}: a hill on component {comp} at {c[a]:.4g} is {what} the grid {side} "
                            f"({lo if side == 'min' else hi:.4g}); the bias is cut there and zero beyond it: widen the grid",
                            BiasEdgeWarning, stacklevel=stacklevel,
                        )

    # ------------------------------------------------------------------ arrays
    def arrays(self) -> dict:
        """``grid_values`` (the grid's shape) and ``hills`` (one row per hill: step, walker, time,
        centre, sigma, height)."""
        d = self.n_dims
        rows = np.zeros((len(self.hills), 3 + 2 * d + 1))
        for k, h in enumerate(self.hills):
            rows[k, 0] = h.step
            rows[k, 1] = h.walker
            rows[k, 2] = h.time
            rows[k, 3 : 3 + d] = h.center
            rows[k, 3 + d : 3 + 2 * d] = h.sigma
            rows[k, -1] = h.height
        return {"grid_values": self.grid.values.copy(), "hills": rows}

    def load_arrays(self, state: dict, *, source: str = "state") -> None:
        """Restore :meth:`arrays` output (the grid geometry must match)."""
        values = check_array(state["grid_values"], "grid_values", source=source)
        if values.shape != self.grid.shape:
            raise GMVAEInputError(f"{source}: 'grid_values' has shape {values.shape}, expected {self.grid.shape} (another grid)")
        rows = check_array(state["hills"], "hills", source=source, ndim=2)
        d = self.n_dims
        if rows.shape[0] and rows.shape[1] != 3 + 2 * d + 1:
            raise GMVAEInputError(f"{source}: 'hills' has {rows.shape[1]} columns, expected {3 + 2 * d + 1} for {d} components")
        self.grid.values = values.copy()
        self.hills = [Hill(step=int(r[0]), walker=int(r[1]), time=float(r[2]), center=r[3 : 3 + d].copy(),
                           sigma=r[3 + d : 3 + 2 * d].copy(), height=float(r[-1])) for r in rows]
