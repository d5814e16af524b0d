"""The bias table shared between Python and the bias forces.

Python owns a float64 file mapped in memory (:class:`TableFile`) and rewrites, when a hill is
added, only the rows the hill changed; every force maps the same file through
:class:`SharedTable` (``torch.from_file(shared=True)``), so a new hill reaches all walkers' contexts
without a context reinitialisation. A force computing in float32 re-converts the table when the
global parameter :data:`~gmvae_cv.metad.force.VERSION_PARAMETER` changes.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._core.errors import GMVAEInputError

__all__ = ["TableFile", "write_table", "SharedTable"]


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


class SharedTable(torch.nn.Module):
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
