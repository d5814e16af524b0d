"""Topologies: reading them (mdtraj, OpenMM, files), atom labels, the bond graph, and the guard
against trajectories in the wrong length unit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from openmm import app
import mdtraj as md

from .._core.checks import check_array
from .._core.errors import GMVAEInputError
from .numpy_core import _pre

__all__ = ["check_length_units"]


# ------------------------------------------------------------------------------------ topology helpers
def _as_mdtraj_topology(topology: Any):
    if isinstance(topology, md.Topology):
        return topology
    if isinstance(topology, md.Trajectory):
        return topology.topology
    if isinstance(topology, (str, os.PathLike)):
        path = Path(topology)
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (expected a topology file, e.g. a PDB)")
        try:
            return md.load_topology(str(path))
        except Exception as exc:  # mdtraj raises many types for unreadable files
            raise GMVAEInputError(f"{path}: cannot read a topology ({exc})") from None
    if isinstance(topology, app.Topology):
        return md.Topology.from_openmm(topology)
    raise GMVAEInputError(
        f"'topology' is {type(topology).__name__}, expected an mdtraj.Topology, an openmm.app.Topology or a file path"
    )


def _atom_label(atom: Any) -> str:
    return f"{atom.residue.name}{atom.residue.resSeq}-{atom.name}"


def _bond_graph(top: Any) -> list[set[int]]:
    nbrs: list[set[int]] = [set() for _ in range(top.n_atoms)]
    for a, b in top.bonds:
        nbrs[a.index].add(b.index)
        nbrs[b.index].add(a.index)
    return nbrs


def _bond_separation(nbrs: list[set[int]], start: int, max_depth: int) -> dict[int, int]:
    """Atoms within ``max_depth`` bonds of ``start`` and their bond counts (BFS)."""
    dist = {start: 0}
    frontier = [start]
    for depth in range(1, max_depth + 1):
        nxt = []
        for a in frontier:
            for b in nbrs[a]:
                if b not in dist:
                    dist[b] = depth
                    nxt.append(b)
        frontier = nxt
    return dist


# ------------------------------------------------------------------------------------ unit guard
def check_length_units(
    positions: Any,
    topology: Any,
    *,
    source: str | os.PathLike | None = None,
    max_frames: int = 10,
    typical: tuple[float, float] = (0.05, 0.6),
) -> Optional[float]:
    """Guard against coordinates in Angstrom (or other units) read as nm.

    Takes the median length of the topology's bonds (or, for a topology without bonds, the median
    nearest-neighbour distance) over up to ``max_frames`` evenly spaced frames. Covalent bonds are
    0.1-0.16 nm; a median above ``typical[1]`` (default 0.6 nm, i.e. about 4x the longest common
    bond) means the numbers are about 10x too large, as when Angstrom are fed as nm.

    Parameters
    ----------
    positions : mdtraj.Trajectory or array_like
        Positions, shape ``(n_atoms, 3)`` or ``(n_frames, n_atoms, 3)``, supposedly in nm.
    topology : mdtraj.Topology, openmm.app.Topology or path
        Supplies the bonds.
    source : str, optional
        Named in the error message (the trajectory file).
    max_frames : int
        At most this many frames are checked.
    typical : (float, float)
        Accepted range of the median bond length in nm.

    Returns
    -------
    float or None
        The median bond (or nearest-neighbour) length in nm; None with fewer than two atoms.

    Raises
    ------
    GMVAEInputError
        If the median is outside ``typical``.

    Examples
    --------
    >>> from gmvae_cv.systems import AlanineDipeptide
    >>> ala = AlanineDipeptide()
    >>> round(check_length_units(ala.positions, ala.topology), 3)
    0.109
    """
    top = _as_mdtraj_topology(topology)
    xyz = positions.xyz if hasattr(positions, "xyz") else positions
    xyz = check_array(xyz, "positions", source=source)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[1:] != (top.n_atoms, 3):
        raise GMVAEInputError(
            f"{_pre(source)}'positions' has shape {xyz.shape}, expected (n_frames, {top.n_atoms}, 3) for this topology"
        )
    if top.n_atoms < 2:
        return None
    frames = np.unique(np.linspace(0, xyz.shape[0] - 1, min(max_frames, xyz.shape[0])).astype(int))
    x = xyz[frames]
    pairs = np.array([(a.index, b.index) for a, b in top.bonds], dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        what = f"bond length (over {len(pairs)} bonds)"
        lengths = np.linalg.norm(x[:, pairs[:, 1]] - x[:, pairs[:, 0]], axis=-1)
    else:
        what = "nearest-neighbour distance (the topology has no bonds)"
        diff = x[:, :, None, :] - x[:, None, :, :]
        dd = np.sqrt((diff * diff).sum(-1))
        dd[:, np.arange(top.n_atoms), np.arange(top.n_atoms)] = np.inf
        lengths = dd.min(axis=2)
    med = float(np.median(lengths))
    lo, hi = typical
    where = f"{source}: " if source is not None else ""
    if med > hi:
        raise GMVAEInputError(
            f"{where}median {what} is {med:.3g}, expected about 0.1-0.16 nm (at most {hi} nm): the "
            f"coordinates look {med / 0.13:.0f}x too large, as Angstrom read as nm; convert them to nm (divide by 10)"
        )
    if med < lo:
        raise GMVAEInputError(
            f"{where}median {what} is {med:.3g}, expected about 0.1-0.16 nm (at least {lo} nm): the "
            "coordinates look too small; are they in nm?"
        )
    return med


