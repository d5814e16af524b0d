"""The bias force: one TorchForce that evaluates the CV and the tabulated bias in a single pass.

Routes (``route=``):

``"compiled"`` (default)
    The energy :math:`V(s(x))` (CV module, then :class:`~gmvae_cv.metad.grid.GridBias` on the
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

The bias table is not baked into the force: every force maps one file in shared memory
(:class:`TableFile`, ``torch.from_file(shared=True)``) in which Python rewrites, when a hill is
added, the rows the hill changed (:meth:`TableFile.write_region`), so a new hill costs a copy of a few
thousand rows into the page cache, not a context reinitialisation; a force
computing in float32 re-converts the table when the global parameter :data:`VERSION_PARAMETER`
changes.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from .._core.errors import GMVAEInputError
from .grid import BiasGrid, GridBias

__all__ = ["VERSION_PARAMETER", "ROUTES", "BiasForceBuilder", "TableFile", "write_table", "compile_energy_and_forces"]

VERSION_PARAMETER = "gmvae_cv_bias_version"
"""Context parameter whose change makes the bias force re-read its node table."""
ROUTES = ("compiled", "autograd")


class TableFile:
    """The bias table shared between Python and the forces: a float64 file mapped in memory.

    Python writes the table in place (:meth:`write`); every force maps the same file
    (``torch.from_file(..., shared=True)``), so a new hill reaches all walkers' contexts without
    copying or re-reading a file. The file holds no state of its own: a run rewrites it from the
    checkpoint when it starts.

    Parameters
    ----------
    path : path
    shape : (int, int)
        ``(n_rows, n_cols)`` of the table (fixed for a grid geometry).
    """

    def __init__(self, path: str | os.PathLike, shape: Sequence[int]) -> None:
        self.path = Path(path).resolve()
        self.shape = (int(shape[0]), int(shape[1]))
        nbytes = self.shape[0] * self.shape[1] * 8
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size != nbytes:
            self.path.unlink()  # a new inode: a force still mapping the old file keeps valid memory
        with open(self.path, "ab") as fh:  # create, or keep the inode the forces have mapped
            if fh.tell() != nbytes:
                fh.truncate(nbytes)
        self._map = np.memmap(self.path, dtype=np.float64, mode="r+", shape=self.shape)

    def write(self, table: np.ndarray) -> None:
        """Copy ``table`` (shape :attr:`shape`) into the shared file."""
        if table.shape != self.shape:
            raise GMVAEInputError(f"{self.path}: table has shape {table.shape}, expected {self.shape}")
        self._map[...] = table

    def write_region(self, table: np.ndarray, grid_shape: Sequence[int], region: Sequence[Sequence[slice]]) -> None:
        """Copy only the rows of ``table`` (shape :attr:`shape`) of the nodes in ``region`` into the
        shared file: per grid axis a list of node slices, rows of their product (what
        :meth:`~gmvae_cv.metad.grid.BiasGrid.add_hill` returns)."""
        if table.shape != self.shape:
            raise GMVAEInputError(f"{self.path}: table has shape {table.shape}, expected {self.shape}")
        shape = tuple(int(n) for n in grid_shape) + (self.shape[1],)
        if int(np.prod(shape)) != table.size:
            raise GMVAEInputError(f"{self.path}: grid shape {tuple(grid_shape)} does not match the table's {self.shape[0]} rows")
        src = table.reshape(shape)
        dst = self._map.reshape(shape)
        for combo in itertools.product(*region):
            dst[combo] = src[combo]


def write_table(path: str | os.PathLike, table: np.ndarray) -> None:
    """Write ``table`` into the shared table file ``path`` (created with the table's shape if needed)."""
    TableFile(path, table.shape).write(np.asarray(table, dtype=np.float64))


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
    _drop_identities(g, consts)
    _drop_batch_of_one(g, consts, new_constant)
    _drop_identities(g, consts)
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


def _drop_identities(g, consts: dict) -> None:
    """Remove operations that return their input unchanged (traced batch dimensions, identity
    permutations, single-tensor concatenations, scatter into zeros with an identity index, the
    ones/zeros of the gradient seed); shapes come from the tracer's metadata."""
    aten = torch.ops.aten
    views = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.squeeze.dim, aten.squeeze.default,
             aten.squeeze.dims, aten.unsqueeze.default, aten.expand.default}
    zeros = {aten.new_zeros.default, aten.zeros.default, aten.zeros_like.default}

    def val(node):
        if node in consts:
            return consts[node]
        return node.meta.get("val") if hasattr(node, "meta") else None

    def same(a, b) -> bool:
        va, vb = val(a), val(b)
        return isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) and va.shape == vb.shape and va.dtype == vb.dtype

    def is_arange(node, n) -> bool:
        c = consts.get(node)
        return c is not None and c.dim() == 1 and c.numel() == n and bool(torch.equal(c, torch.arange(n, dtype=c.dtype)))

    changed = True
    while changed:
        changed = False
        for node in list(g.nodes):
            if node.op != "call_function" or not node.users:
                continue
            t, a = node.target, node.args
            repl = None
            if t in views:
                anc = a[0]
                while True:
                    if same(anc, node):
                        repl = anc
                        break
                    if getattr(anc, "op", None) == "call_function" and anc.target in views:
                        anc = anc.args[0]
                        continue
                    break
            elif t == aten.index_select.default:
                x, dim, idx = a
                vx = val(x)
                if isinstance(vx, torch.Tensor) and is_arange(idx, vx.shape[dim]):
                    repl = x
            elif t == aten.index_add.default and len(a) == 4 and not node.kwargs:
                base, dim, idx, src = a
                if getattr(base, "op", None) == "call_function" and base.target in zeros and same(base, src) and \
                        is_arange(idx, val(src).shape[dim]):
                    repl = src
            elif t == aten.slice.Tensor:
                x = a[0]
                dim, start = (a[1] if len(a) > 1 else 0), (a[2] if len(a) > 2 else None)
                end, step = (a[3] if len(a) > 3 else None), (a[4] if len(a) > 4 else 1)
                vx = val(x)
                if isinstance(vx, torch.Tensor) and start in (None, 0) and step == 1 and (end is None or end >= vx.shape[dim]):
                    repl = x
            elif t == aten.cat.default and len(a[0]) == 1:
                repl = a[0][0]
            elif t == aten.mul.Tensor:
                for one, other in ((a[0], a[1]), (a[1], a[0])):
                    if getattr(one, "op", None) == "call_function" and one.target == aten.ones_like.default and same(other, node):
                        repl = other
                        break
            elif t == aten.add.Tensor and len(a) == 2 and not node.kwargs:
                for zero, other in ((a[0], a[1]), (a[1], a[0])):
                    if getattr(zero, "op", None) == "call_function" and zero.target in zeros and same(other, node):
                        repl = other
                        break
            if repl is not None and repl is not node:
                node.replace_all_uses_with(repl)
                changed = True
        g.eliminate_dead_code()


def _drop_batch_of_one(g, consts: dict, new_constant) -> None:
    """Matrix products of a single traced row, ``(1, n) @ (n, m)`` reshaped to ``(m,)``, become
    vector products (``mv``, 1-D ``linear``): fewer operations for the batch dimension of one."""
    aten = torch.ops.aten
    to_row = {aten.view.default, aten.reshape.default, aten.unsqueeze.default, aten._unsafe_view.default}
    to_vec = {aten.view.default, aten.reshape.default, aten.squeeze.dim, aten.squeeze.default, aten._unsafe_view.default,
              aten.squeeze_.dim}

    def shape(node):
        v = consts.get(node) if node in consts else node.meta.get("val")
        return tuple(v.shape) if isinstance(v, torch.Tensor) else None

    for node in list(g.nodes):
        if node.op != "call_function" or node.target not in (aten.mm.default, aten.linear.default):
            continue
        row = node.args[0]
        if getattr(row, "op", None) != "call_function" or row.target not in to_row:
            continue
        x = row.args[0]
        sx, sr, sn = shape(x), shape(row), shape(node)
        if sx is None or sr is None or sn is None or len(sx) != 1 or sr != (1, sx[0]) or len(sn) != 2 or sn[0] != 1:
            continue
        users = list(node.users)
        if not users or any(u.op != "call_function" or u.target not in to_vec or shape(u) != (sn[1],) for u in users):
            continue
        with g.inserting_before(node):
            if node.target == aten.linear.default:
                new = g.call_function(aten.linear.default, (x, *node.args[1:]), dict(node.kwargs))
            else:
                w = node.args[1]
                if w in consts:
                    wt = g.get_attr(new_constant(consts[w].t()))
                    consts[wt] = consts[w].t().contiguous()
                else:
                    wt = g.call_function(aten.t.default, (w,))
                new = g.call_function(aten.mv.default, (wt, x))
        new.meta["val"] = torch.empty(sn[1], dtype=node.meta["val"].dtype) if "val" in node.meta else None
        for u in users:
            u.replace_all_uses_with(new)
            g.erase_node(u)
        g.erase_node(node)
    g.eliminate_dead_code()


# ---------------------------------------------------------------------------------------- force modules
class _SharedTable(torch.nn.Module):
    """Maps the table file once; a float32 force copies it again when the version changes."""

    def __init__(self, path: str, n_rows: int, n_cols: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.path = path
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.dtype = dtype
        self.copies = dtype != torch.float64
        self.mapped_once = False
        self.loaded = -1.0
        self.mapped = torch.zeros((n_rows, n_cols), dtype=torch.float64)
        self.table = torch.zeros((n_rows, n_cols), dtype=dtype)

    def forward(self, version: torch.Tensor) -> torch.Tensor:
        if not self.mapped_once:
            path = self.path
            self.mapped = torch.from_file(path, shared=True, size=self.n_rows * self.n_cols, dtype=torch.float64).view(self.n_rows, self.n_cols)
            self.mapped_once = True
            self.path = path  # a mutated attribute: keeps torch.jit.freeze from folding the mapping
        if not self.copies:
            return self.mapped
        v = float(version.item())
        if v != self.loaded:
            self.table = self.mapped.to(self.dtype)
            self.loaded = v
        return self.table


class _CompiledForceNoBox(torch.nn.Module):
    def __init__(self, ef: torch.nn.Module, table: _SharedTable, dtype: torch.dtype) -> None:
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
    def __init__(self, ef: torch.nn.Module, table: _SharedTable, dtype: torch.dtype) -> None:
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
    def __init__(self, energy: torch.nn.Module, table: _SharedTable, dtype: torch.dtype) -> None:
        super().__init__()
        self.energy = energy
        self.source = table
        self.dtype = dtype

    def forward(self, positions: torch.Tensor, version: torch.Tensor) -> torch.Tensor:
        return self.energy(positions, self.source(version), None).to(torch.float64)


class _AutogradForceBox(torch.nn.Module):
    def __init__(self, energy: torch.nn.Module, table: _SharedTable, dtype: torch.dtype) -> None:
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
        self.n_rows, self.n_cols = grid.force_table_shape
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
            wrapper = cls(ef, _SharedTable(self.table_path, self.n_rows, self.n_cols, self.dtype), self.dtype)
        else:
            cls = _AutogradForceBox if self.use_box else _AutogradForceNoBox
            wrapper = cls(self.energy, _SharedTable(self.table_path, self.n_rows, self.n_cols, self.dtype), self.dtype)
        self._module = torch.jit.script(wrapper)
        return self._module

    def force(self, positions: np.ndarray, box: Optional[np.ndarray] = None, *, n_probes: int = 4, seed: int = 0):
        """A new ``openmmtorch.TorchForce`` with the global parameter :data:`VERSION_PARAMETER`."""
        from openmmtorch import TorchForce

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
