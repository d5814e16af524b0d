"""The bias force: one TorchForce that evaluates the CV and the tabulated bias in a single pass.

Routes (``route=``):

``"compiled"`` (default)
    The energy :math:`V(s(x))` (CV module, then :class:`~gmvae_cv.bias_grid.GridBias` on the
    node table) is traced *together with its gradient* into one straight-line graph of ATen
    operations (``torch.fx`` ``make_fx``), constants are folded, and the graph is scripted. The
    TorchForce gets energy and forces from one call (``setOutputsForces(True)``) and runs no
    autograd; on the 22-atom dipeptide this halves the cost of the CV compared with letting the
    TorchForce back-propagate (``benchmarks/bias_speed.py``). Python control flow that depends on
    values inside the CV module is fixed at tracing time (e.g. the minimum-image branch for a
    rectangular box), so the compiled graph is checked against autograd on probe configurations
    when it is built and refused if they differ.
``"autograd"``
    The same energy as a TorchScript module; the TorchForce back-propagates (any CV module works).

The node table is not baked into the force: the module reads it from a file
(``torch.from_file``) whenever the global parameter :data:`VERSION_PARAMETER` changes, so a new
hill costs one file write and one ``Context.setParameter`` per context, not a reinitialisation.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ._validation import GMVAEInputError, atomic_write_bytes
from .bias_grid import BiasGrid, GridBias

__all__ = ["VERSION_PARAMETER", "ROUTES", "BiasForceBuilder", "write_table", "compile_energy_and_forces"]

VERSION_PARAMETER = "gmvae_cv_bias_version"
"""Context parameter whose change makes the bias force re-read its node table."""
ROUTES = ("compiled", "autograd")


def write_table(path: str | os.PathLike, table: np.ndarray) -> None:
    """Write a node table (float64, C order) atomically, as raw bytes for ``torch.from_file``."""
    atomic_write_bytes(path, np.ascontiguousarray(table, dtype=np.float64).tobytes())


class _Energy(torch.nn.Module):
    """V(s(x)) for the biased components of the CV."""

    def __init__(self, cv: torch.nn.Module, components: List[int], grid: GridBias, dtype: torch.dtype) -> None:
        super().__init__()
        self.cv = cv
        self.register_buffer("components", torch.tensor(components, dtype=torch.long))
        self.grid = grid
        self.dtype = dtype

    def forward(self, positions: torch.Tensor, table: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        s = self.cv(positions.to(self.dtype), box).index_select(0, self.components)
        return self.grid(s, table)


# ---------------------------------------------------------------------------------------- compilation
def compile_energy_and_forces(energy: torch.nn.Module, example: Sequence[torch.Tensor]) -> torch.jit.ScriptModule:
    """Trace ``energy(*example)`` and its gradient w.r.t. the first input into one scripted graph.

    Parameters
    ----------
    energy : torch.nn.Module
        ``energy(positions, *rest) -> scalar``.
    example : sequence of Tensor
        Example inputs (positions first); values decide data-dependent branches.

    Returns
    -------
    torch.jit.ScriptModule
        ``forward(positions, *rest) -> (energy, forces)`` with forces ``= -dE/dpositions``, no
        autograd at run time.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    def energy_and_forces(positions, *rest):
        with torch.enable_grad():
            p = positions.detach().requires_grad_(True)
            e = energy(p, *rest)
            (g,) = torch.autograd.grad(e, p)
        return e.detach(), -g.detach()

    gm = make_fx(energy_and_forces)(*example)
    _simplify(gm)
    return torch.jit.script(gm)


def _simplify(gm) -> None:
    """Drop detach, fold constants, rewrite addmm, and make the graph scriptable (in place)."""
    g = gm.graph
    aten = torch.ops.aten
    for node in list(g.nodes):
        if node.op == "call_function" and node.target in (aten.detach.default, aten.alias.default):
            node.replace_all_uses_with(node.args[0])
            g.erase_node(node)
    counter = [0]

    def new_constant(value: torch.Tensor) -> str:
        name = f"folded_{counter[0]}"
        counter[0] += 1
        gm.register_buffer(name, value.detach().contiguous().clone())
        return name

    consts: dict = {}
    for node in g.nodes:
        if node.op == "get_attr":
            consts[node] = getattr(gm, node.target)
    for node in list(g.nodes):
        if node.op != "call_function":
            continue
        ins = node.all_input_nodes
        if not ins or not all(n in consts for n in ins):
            continue
        args = torch.fx.node.map_arg(node.args, lambda n: consts[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: consts[n])
        value = node.target(*args, **kwargs)
        if not isinstance(value, torch.Tensor):
            continue
        with g.inserting_before(node):
            new = g.get_attr(new_constant(value))
        node.replace_all_uses_with(new)
        g.erase_node(node)
        consts[new] = value
    # TorchScript's shape analysis of frozen modules mis-handles addmm with constant operands
    # (torch 2.12); linear (constant weight) or mm + add avoid it.
    for node in list(g.nodes):
        if node.op == "call_function" and node.target == aten.addmm.default and not node.kwargs and len(node.args) == 3:
            bias, x, w = node.args
            with g.inserting_before(node):
                if w in consts:
                    wt = g.get_attr(new_constant(consts[w].t()))
                    new = g.call_function(aten.linear.default, (x, wt, bias))
                else:
                    mm = g.call_function(aten.mm.default, (x, w))
                    new = g.call_function(aten.add.Tensor, (mm, bias))
            node.replace_all_uses_with(new)
            g.erase_node(node)
    g.eliminate_dead_code()
    for node in g.nodes:
        if node.op == "get_attr" and not node.target.startswith("folded_"):
            node.target = new_constant(getattr(gm, node.target))
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            node.target = node.target.overloadpacket
    g.eliminate_dead_code()
    g.lint()
    gm.recompile()
    for name in [n for n in list(gm._buffers) if not n.startswith("folded_")]:
        del gm._buffers[name]
    for name in [n for n in list(vars(gm)) if n.startswith(("_tensor_constant", "_param_constant"))]:
        delattr(gm, name)


# ---------------------------------------------------------------------------------------- force modules
class _CompiledForceNoBox(torch.nn.Module):
    def __init__(self, ef: torch.nn.Module, table_path: str, n_rows: int, n_cols: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.ef = ef
        self.table_path = table_path
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.dtype = dtype
        self.loaded = -1.0
        self.table = torch.zeros((n_rows, n_cols), dtype=dtype)

    def forward(self, positions: torch.Tensor, version: torch.Tensor):
        v = float(version.item())
        if v != self.loaded:
            path = self.table_path
            raw = torch.from_file(path, shared=False, size=self.n_rows * self.n_cols, dtype=torch.float64)
            self.table = raw.view(self.n_rows, self.n_cols).to(self.dtype)
            self.loaded = v
            self.table_path = path  # a mutated attribute: keeps torch.jit.freeze from folding the read
        with torch.no_grad():
            e, f = self.ef(positions.detach().to(self.dtype), self.table)
        return e, f


class _CompiledForceBox(torch.nn.Module):
    def __init__(self, ef: torch.nn.Module, table_path: str, n_rows: int, n_cols: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.ef = ef
        self.table_path = table_path
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.dtype = dtype
        self.loaded = -1.0
        self.table = torch.zeros((n_rows, n_cols), dtype=dtype)

    def forward(self, positions: torch.Tensor, box: torch.Tensor, version: torch.Tensor):
        v = float(version.item())
        if v != self.loaded:
            path = self.table_path
            raw = torch.from_file(path, shared=False, size=self.n_rows * self.n_cols, dtype=torch.float64)
            self.table = raw.view(self.n_rows, self.n_cols).to(self.dtype)
            self.loaded = v
            self.table_path = path  # a mutated attribute: keeps torch.jit.freeze from folding the read
        with torch.no_grad():
            e, f = self.ef(positions.detach().to(self.dtype), self.table, box.to(self.dtype))
        return e, f


class _AutogradForceNoBox(torch.nn.Module):
    def __init__(self, energy: torch.nn.Module, table_path: str, n_rows: int, n_cols: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.energy = energy
        self.table_path = table_path
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.dtype = dtype
        self.loaded = -1.0
        self.table = torch.zeros((n_rows, n_cols), dtype=dtype)

    def forward(self, positions: torch.Tensor, version: torch.Tensor) -> torch.Tensor:
        v = float(version.item())
        if v != self.loaded:
            path = self.table_path
            raw = torch.from_file(path, shared=False, size=self.n_rows * self.n_cols, dtype=torch.float64)
            self.table = raw.view(self.n_rows, self.n_cols).to(self.dtype)
            self.loaded = v
            self.table_path = path  # a mutated attribute: keeps torch.jit.freeze from folding the read
        return self.energy(positions, self.table, None).to(torch.float64)


class _AutogradForceBox(torch.nn.Module):
    def __init__(self, energy: torch.nn.Module, table_path: str, n_rows: int, n_cols: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.energy = energy
        self.table_path = table_path
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.dtype = dtype
        self.loaded = -1.0
        self.table = torch.zeros((n_rows, n_cols), dtype=dtype)

    def forward(self, positions: torch.Tensor, box: torch.Tensor, version: torch.Tensor) -> torch.Tensor:
        v = float(version.item())
        if v != self.loaded:
            path = self.table_path
            raw = torch.from_file(path, shared=False, size=self.n_rows * self.n_cols, dtype=torch.float64)
            self.table = raw.view(self.n_rows, self.n_cols).to(self.dtype)
            self.loaded = v
            self.table_path = path  # a mutated attribute: keeps torch.jit.freeze from folding the read
        return self.energy(positions, self.table, box.to(self.dtype)).to(torch.float64)


class BiasForceBuilder:
    """Builds the bias TorchForce for a CV module, a grid geometry and a table file.

    Parameters
    ----------
    cv_module : torch.jit.ScriptModule
        ``forward(positions (n, 3) nm, box=None) -> (D,)``.
    components : sequence of int
        Which CV components are biased (1 to 3), in the grid's axis order.
    grid : BiasGrid
        Geometry of the bias (values are not used).
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
        self.n_rows = int(np.prod(grid.shape))
        self.n_cols = 2**grid.n_dims
        gb = grid.torch_module().to(self.dtype)
        self.energy = _Energy(cv_module, [int(c) for c in components], gb, self.dtype)
        self.info: dict = {"route": route, "dtype": dtype, "use_box": self.use_box}
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
            wrapper = cls(ef, self.table_path, self.n_rows, self.n_cols, self.dtype)
        else:
            cls = _AutogradForceBox if self.use_box else _AutogradForceNoBox
            wrapper = cls(self.energy, self.table_path, self.n_rows, self.n_cols, self.dtype)
        self._module = torch.jit.script(wrapper)
        return self._module

    def force(self, positions: np.ndarray, box: Optional[np.ndarray] = None, *, n_probes: int = 4, seed: int = 0):
        """A new ``openmmtorch.TorchForce`` with the global parameter :data:`VERSION_PARAMETER`."""
        from openmmtorch import TorchForce

        f = TorchForce(self.module(positions, box, n_probes=n_probes, seed=seed))
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
        return torch.as_tensor(g.node_table()).to(self.dtype)

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
        tol = 1e-9 if self.dtype == torch.float64 else 1e-4
        self.info["compiled_vs_autograd_max_rel_error"] = worst
        if not worst <= tol:
            raise GMVAEInputError(
                f"the compiled bias force differs from autograd by {worst:.3g} (relative) on probe configurations; "
                "the CV module has value-dependent control flow that tracing cannot capture: use route='autograd'"
            )
