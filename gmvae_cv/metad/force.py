"""The bias force: one TorchForce that evaluates the CV and the tabulated bias in a single pass.

Routes (``route=``):

``"compiled"`` (default)
    The energy :math:`V(s(x))` (CV module, then :class:`~gmvae_cv.metad.grid.GridBias` on the
    node table, plus :class:`~gmvae_cv.metad.grid_module.WallBias` when the grid has walls) is traced
    *together with its gradient* into one straight-line graph of ATen operations (``torch.fx`` ``make_fx``), constants are folded, and the graph is scripted. The
    TorchForce gets energy and forces from one call (``setOutputsForces(True)``) and runs no
    autograd; on the 22-atom dipeptide this halves the cost of the CV compared with letting the
    TorchForce back-propagate (``benchmarks/bias_speed.py``). Python control flow that depends on
    values inside the CV module is fixed at tracing time (e.g. the minimum-image branch for a
    rectangular box), so the compiled graph is checked against autograd on probe configurations
    when it is built and refused if they differ.
``"autograd"``
    The same energy as a TorchScript module; the TorchForce back-propagates (any CV module works).

The bias table is not baked into the force: every force maps one file in shared memory
(:class:`TableFile`, ``torch.from_file(shared=True)``) in which Python rewrites, when a hill is
added, the rows the hill changed (:meth:`TableFile.write_region`), so a new hill costs a copy of a few
thousand rows into the page cache, not a context reinitialisation; a force
computing in float32 re-converts the table when the global parameter :data:`VERSION_PARAMETER`
changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from .._core.errors import GMVAEInputError
from .compile import compile_energy_and_forces
from .grid import BiasGrid, GridBias
from .grid_module import WallBias
from .table_file import SharedTable, TableFile, write_table

__all__ = ["VERSION_PARAMETER", "ROUTES", "BiasForceBuilder", "TableFile", "write_table", "compile_energy_and_forces"]

VERSION_PARAMETER = "gmvae_cv_bias_version"
"""Context parameter whose change makes the bias force re-read its node table."""
ROUTES = ("compiled", "autograd")


class _Energy(torch.nn.Module):
    """V(s(x)) + W(s(x)) for the biased components of the CV: the tabulated bias and, when
    ``walls`` is given, the walls (:mod:`gmvae_cv.metad.walls`)."""

    def __init__(self, cv: torch.nn.Module, components: List[int], grid: GridBias, dtype: torch.dtype,
                 walls: Optional[WallBias] = None) -> None:
        super().__init__()
        self.cv = cv
        self.register_buffer("components", torch.tensor(components, dtype=torch.long))
        self.grid = grid
        self.dtype = dtype
        self.use_walls = walls is not None
        self.walls = walls if walls is not None else WallBias([], [], [], [])

    def forward(self, positions: torch.Tensor, table: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        s = self.cv(positions.to(self.dtype), box).index_select(0, self.components)
        energy = self.grid(s, table)
        if self.use_walls:
            energy = energy + self.walls(s.to(energy.dtype))
        return energy


# ---------------------------------------------------------------------------------------- force modules
class _CompiledForceNoBox(torch.nn.Module):
    def __init__(self, ef: torch.nn.Module, table: SharedTable, dtype: torch.dtype) -> None:
        super().__init__()
        self.ef = ef
        self.source = table
        self.dtype = dtype

    def forward(self, positions: torch.Tensor, version: torch.Tensor):
        table = self.source(version)
        with torch.no_grad():
            e, f = self.ef(positions.detach().to(self.dtype), table)
        return e, f


class _CompiledForceBox(torch.nn.Module):
    def __init__(self, ef: torch.nn.Module, table: SharedTable, dtype: torch.dtype) -> None:
        super().__init__()
        self.ef = ef
        self.source = table
        self.dtype = dtype

    def forward(self, positions: torch.Tensor, box: torch.Tensor, version: torch.Tensor):
        table = self.source(version)
        with torch.no_grad():
            e, f = self.ef(positions.detach().to(self.dtype), table, box.to(self.dtype))
        return e, f


class _AutogradForceNoBox(torch.nn.Module):
    def __init__(self, energy: torch.nn.Module, table: SharedTable, dtype: torch.dtype) -> None:
        super().__init__()
        self.energy = energy
        self.source = table
        self.dtype = dtype

    def forward(self, positions: torch.Tensor, version: torch.Tensor) -> torch.Tensor:
        return self.energy(positions, self.source(version), None).to(torch.float64)


class _AutogradForceBox(torch.nn.Module):
    def __init__(self, energy: torch.nn.Module, table: SharedTable, dtype: torch.dtype) -> None:
        super().__init__()
        self.energy = energy
        self.source = table
        self.dtype = dtype

    def forward(self, positions: torch.Tensor, box: torch.Tensor, version: torch.Tensor) -> torch.Tensor:
        return self.energy(positions, self.source(version), box.to(self.dtype)).to(torch.float64)


class BiasForceBuilder:
    """Builds the bias TorchForce for a CV module, a grid geometry and a table file.

    Parameters
    ----------
    cv_module : torch.jit.ScriptModule
        ``forward(positions (n, 3) nm, box=None) -> (D,)``.
    components : sequence of int
        Which CV components are biased (1 to 3), in the grid's axis order.
    grid : BiasGrid
        Geometry of the bias (values are not used) and its walls (:attr:`BiasGrid.walls
        <gmvae_cv.metad.grid.BiasGrid.walls>`), which the force adds to the tabulated bias.
    table_path : path
        File the force reads its node table from (:func:`write_table`).
    route : {'compiled', 'autograd'}
    dtype : {'float64', 'float32'}
        Arithmetic inside the force.
    use_box : bool
        Pass the periodic box to the CV (the force then uses periodic boundary conditions).

    Attributes
    ----------
    info : dict
        What was built (route, dtype, graph size, the probe check), for ``run.json``.
    """

    def __init__(
        self,
        cv_module: Any,
        components: Sequence[int],
        grid: BiasGrid,
        table_path: str | os.PathLike,
        *,
        route: str = "compiled",
        dtype: str = "float64",
        use_box: bool = False,
    ) -> None:
        if route not in ROUTES:
            raise GMVAEInputError(f"'route' is {route!r}, expected one of {', '.join(ROUTES)}")
        if dtype not in ("float64", "float32"):
            raise GMVAEInputError(f"'dtype' is {dtype!r}, expected 'float64' or 'float32'")
        self.route = route
        self.dtype = getattr(torch, dtype)
        self.use_box = bool(use_box)
        self.grid = grid
        self.table_path = str(Path(table_path).resolve())
        self.n_rows, self.n_cols = grid.force_table_shape
        gb = grid.torch_module().to(self.dtype)
        walls = WallBias.from_walls(grid.walls).to(self.dtype) if grid.walls is not None else None
        self.energy = _Energy(cv_module, [int(c) for c in components], gb, self.dtype, walls)
        self.info: dict = {"route": route, "dtype": dtype, "use_box": self.use_box, "walls": grid.walls is not None}
        self._module: Optional[torch.jit.ScriptModule] = None

    def module(self, positions: np.ndarray, box: Optional[np.ndarray] = None, *, n_probes: int = 4, seed: int = 0) -> torch.jit.ScriptModule:
        """The scripted force module; for ``"compiled"``, traced at ``positions`` and checked.

        Parameters
        ----------
        positions : ndarray, shape ``(n_atoms, 3)``
            A configuration of the system, nm (decides data-dependent branches; probes are
            perturbations of it).
        box : ndarray, shape ``(3, 3)``, optional
            Box vectors (rows), nm; required if ``use_box``.
        n_probes : int
            Configurations on which the compiled graph is compared with autograd.
        seed : int
            Seeds the probe perturbations and the probe table.
        """
        if self._module is not None:
            return self._module
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64)).to(self.dtype)
        bx = None
        if self.use_box:
            if box is None:
                raise GMVAEInputError("'box' is missing, expected the periodic box vectors (3, 3) in nm for a periodic bias force")
            bx = torch.as_tensor(np.asarray(box, dtype=np.float64)).to(self.dtype)
        if self.route == "compiled":
            probe_table = self._probe_table(pos, bx, seed)
            example = (pos, probe_table) if bx is None else (pos, probe_table, bx)
            ef = compile_energy_and_forces(self.energy, example)
            self._check(ef, pos, bx, probe_table, n_probes, seed)
            self.info["graph_nodes"] = sum(1 for _ in ef.graph.nodes())
            self.info["box_rectangular_at_trace"] = None if bx is None else bool(np.count_nonzero(np.asarray(box) - np.diag(np.diag(np.asarray(box)))) == 0)
            cls = _CompiledForceBox if self.use_box else _CompiledForceNoBox
            wrapper = cls(ef, SharedTable(self.table_path, self.n_rows, self.n_cols, self.dtype), self.dtype)
        else:
            cls = _AutogradForceBox if self.use_box else _AutogradForceNoBox
            wrapper = cls(self.energy, SharedTable(self.table_path, self.n_rows, self.n_cols, self.dtype), self.dtype)
        self._module = torch.jit.script(wrapper)
        return self._module

    def force(self, positions: np.ndarray, box: Optional[np.ndarray] = None, *, n_probes: int = 4, seed: int = 0):
        """A new ``openmmtorch.TorchForce`` with the global parameter :data:`VERSION_PARAMETER`."""
        from openmmtorch import TorchForce  # the plugin (CPU or CUDA build): loaded only to make a force

        module = self.module(positions, box, n_probes=n_probes, seed=seed)
        # a module called from Python has mapped the table: serialize it unmapped (the force maps its own)
        module.source.mapped_once = False
        module.source.loaded = -1.0
        module.source.mapped = torch.zeros((1, 1), dtype=torch.float64)
        f = TorchForce(module)
        f.addGlobalParameter(VERSION_PARAMETER, 0.0)
        f.setOutputsForces(self.route == "compiled")
        f.setUsesPeriodicBoundaryConditions(self.use_box)
        f.setName("gmvae-cv metadynamics bias")
        return f

    # ---------------------------------------------------------------- checks
    def _probe_table(self, pos, bx, seed: int) -> torch.Tensor:
        """A node table with hills near the CV of the probe configurations (non-zero forces)."""
        g = self.grid.copy()
        with torch.no_grad():
            s = self.energy.cv(pos, bx).index_select(0, self.energy.components).double().numpy()
        rng = np.random.default_rng(seed)
        width = np.maximum((g.upper - g.lower) / 8.0, 4 * g.spacing)
        for _ in range(4):
            g.add_hill(s + rng.normal(0, 0.5, size=s.shape) * width, width, 1.0, "gaussian")
        return torch.as_tensor(g.force_table()).to(self.dtype)

    def _check(self, ef, pos, bx, table, n_probes: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        worst = 0.0
        for k in range(n_probes + 1):
            p = pos if k == 0 else pos + 0.005 * torch.randn(pos.shape, generator=gen, dtype=torch.float64).to(pos.dtype)
            q = p.detach().clone().requires_grad_(True)
            e_ref = self.energy(q, table, bx)
            (g_ref,) = torch.autograd.grad(e_ref, q)
            with torch.no_grad():
                e, f = ef(p, table) if bx is None else ef(p, table, bx)
            scale = max(1.0, float(g_ref.abs().max()))
            err = max(abs(float(e) - float(e_ref.detach())), float((f + g_ref).abs().max())) / scale
            worst = max(worst, err)
        # a CV that computes in float32 inside (as exported GMVAE models do) reorders float32
        # sums between the two graphs: its round-off, not control flow, sets the tolerance
        cv_tensors = list(self.energy.cv.parameters()) + list(self.energy.cv.buffers())
        low = self.dtype != torch.float64 or any(t.dtype == torch.float32 for t in cv_tensors)
        tol = 1e-4 if low else 1e-9
        self.info["compiled_vs_autograd_max_rel_error"] = worst
        if not worst <= tol:
            raise GMVAEInputError(
                f"the compiled bias force differs from autograd by {worst:.3g} (relative) on probe configurations; "
                "the CV module has value-dependent control flow that tracing cannot capture: use route='autograd'"
            )
