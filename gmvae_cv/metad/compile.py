"""Compilation of the bias energy into one straight-line graph of energy and forces.

:func:`compile_energy_and_forces` traces :math:`V(s(x))` together with its gradient
(``torch.fx`` ``make_fx``), folds constants, removes identities and batch-of-one reshapes, and
scripts the result, so that a TorchForce gets energy and forces from one call without autograd
(the ``"compiled"`` route of :mod:`gmvae_cv.metad.force`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.fx.experimental.proxy_tensor import make_fx

__all__ = ["compile_energy_and_forces"]


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
