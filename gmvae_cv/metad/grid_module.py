"""TorchScript evaluation of the metadynamics bias grid (:class:`~gmvae_cv.metad.grid.BiasGrid`)
and of its walls (:class:`~gmvae_cv.metad.walls.Walls`).

:class:`GridBias` is what the bias force evaluates after the CV: the cell of the CV point, the
cell's Hermite data gathered from the force table in one ``take``, and the bicubic (tricubic)
Hermite patch; :class:`WallBias` adds the walls' energy. Neither has data-dependent control flow,
so that their gradient can be traced with the CV's (:mod:`gmvae_cv.metad.compile`).
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import torch

from .splines import HERMITE_BASIS

__all__ = ["GridBias", "WallBias", "gather_offsets"]


def gather_offsets(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat-index strides of the nodes (times the channel count) and the ``(4,) * D`` offsets that
    gather a cell's Hermite data from the flattened force table, axis ``a`` indexed by
    ``corner_a * 2 + derivative_a``."""
    d = len(shape)
    n_channels = 2**d
    node_strides = np.array([int(np.prod(shape[a + 1 :])) for a in range(d)], dtype=np.int64)
    offsets = np.zeros((4,) * d, dtype=np.int64)
    for idx in itertools.product(range(4), repeat=d):
        corner = [i // 2 for i in idx]
        deriv = [i % 2 for i in idx]
        offsets[idx] = int(np.dot(corner, node_strides)) * n_channels + sum(deriv[a] << a for a in range(d))
    return (node_strides * n_channels).astype(np.float64), offsets


class GridBias(torch.nn.Module):
    """TorchScript evaluation of a :class:`BiasGrid` at one CV point from its force table.

    ``forward(s, table)``: ``s`` of shape ``(D,)`` (CV units), ``table`` from
    :meth:`BiasGrid.force_table`; returns the bias energy (kJ/mol, a 0-dimensional tensor in the
    dtype of ``table``). It locates the cell, gathers the cell's ``4**D`` Hermite values with one
    ``take`` and contracts them with the Hermite basis of each axis: a few operations, none with
    data-dependent Python control flow, so that the gradient can be traced together with the CV's.
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float], bins: Sequence[int], periodic: Sequence[bool]) -> None:
        super().__init__()
        d = len(bins)
        lower_t = torch.tensor(np.asarray(lower, dtype=np.float64))
        upper_t = torch.tensor(np.asarray(upper, dtype=np.float64))
        n = torch.tensor([float(b) for b in bins], dtype=torch.float64)
        spacing = (upper_t - lower_t) / n
        strides, offsets = gather_offsets([int(b) + 1 for b in bins])
        self.n_dims: int = d
        self.all_periodic: bool = all(bool(p) for p in periodic)
        self.none_periodic: bool = not any(bool(p) for p in periodic)
        self.register_buffer("inv_spacing", 1.0 / spacing)
        self.register_buffer("offset", -lower_t / spacing)  # grid units: x = s / h - lower / h
        self.register_buffer("n_bins", n)
        self.register_buffer("max_cell", n - 1.0)
        self.register_buffer("zero", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("is_periodic", torch.tensor([bool(p) for p in periodic]))
        self.register_buffer("powers", torch.arange(4, dtype=torch.float64))
        self.register_buffer("hermite", torch.tensor(HERMITE_BASIS))
        self.register_buffer("strides", torch.tensor(strides))
        self.register_buffer("offsets", torch.tensor(offsets))

    def forward(self, s: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        dt = table.dtype
        x = torch.addcmul(self.offset.to(dt), s.to(dt), self.inv_spacing.to(dt))
        if self.all_periodic:
            x = torch.remainder(x, self.n_bins.to(dt))
        elif not self.none_periodic:
            x = torch.where(self.is_periodic, torch.remainder(x, self.n_bins.to(dt)), x)
        cell = torch.clamp(torch.floor(x), self.zero.to(dt), self.max_cell.to(dt)).detach()  # piecewise constant
        base = torch.matmul(cell, self.strides.to(dt)).to(torch.long)
        block = torch.take(table, self.offsets + base)  # (4,) * D: corner * 2 + derivative per axis
        basis = torch.matmul((x - cell).unsqueeze(-1).pow(self.powers.to(dt)), self.hermite.to(dt))  # (D, 4)
        if self.n_dims == 1:
            energy = torch.dot(block, basis[0])
        elif self.n_dims == 2:
            energy = torch.dot(torch.mv(block, basis[1]), basis[0])
        else:
            energy = torch.dot(torch.mv(torch.matmul(block, basis[2]), basis[1]), basis[0])
        if not self.all_periodic:
            inside = (x == torch.clamp(x, self.zero.to(dt), self.n_bins.to(dt))).all()
            energy = torch.where(inside, energy, torch.zeros_like(energy))
        return energy


class WallBias(torch.nn.Module):
    """TorchScript evaluation of :class:`~gmvae_cv.metad.walls.Walls`.

    ``forward(s)`` with ``s`` the biased CV values, shape ``(d,)``, returns the walls' energy
    (kJ/mol, a 0-dimensional tensor in the dtype of ``s``): ``relu``, no data-dependent control
    flow, so that its gradient traces with the CV's.
    """

    @classmethod
    def from_walls(cls, walls: Any) -> "WallBias":
        """The module of a :class:`~gmvae_cv.metad.walls.Walls`."""
        return cls(walls.axes, walls.lower, walls.upper, walls.kappa)

    def __init__(self, axes: Sequence[int], lower: Sequence[float], upper: Sequence[float], kappa: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("axes", torch.tensor([int(a) for a in axes], dtype=torch.long))
        self.register_buffer("lower", torch.tensor([float(v) for v in lower], dtype=torch.float64))
        self.register_buffer("upper", torch.tensor([float(v) for v in upper], dtype=torch.float64))
        self.register_buffer("kappa", torch.tensor([float(v) for v in kappa], dtype=torch.float64))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        dt = s.dtype
        x = s.index_select(0, self.axes)
        over = torch.relu(x - self.upper.to(dt))
        under = torch.relu(self.lower.to(dt) - x)
        return torch.sum(self.kappa.to(dt) * (over * over + under * under))
