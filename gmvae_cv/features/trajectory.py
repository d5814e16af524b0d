"""Trajectory I/O: features of trajectory files, read in chunks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import mdtraj as md

from .._core.checks import check_int
from .._core.errors import GMVAEInputError
from .spec import FeatureSpec
from .topology import _as_mdtraj_topology, check_length_units

__all__ = ["load_trajectory_features", "load_frames"]


# ------------------------------------------------------------------------------------ loader
def load_trajectory_features(
    traj_files: str | os.PathLike | Sequence[str | os.PathLike],
    top: Any,
    spec: FeatureSpec,
    *,
    stride: int = 1,
    check_units: bool = True,
    dtype: Any = np.float64,
    chunk: int = 10000,
    progress: Optional[Any] = None,
) -> list[np.ndarray]:
    """Read trajectories (any format mdtraj reads) and compute a spec's features.

    Parameters
    ----------
    traj_files : path or sequence of paths
        Trajectory files (``.dcd``, ``.xtc``, ``.trr``, ``.nc``, ``.h5``, ``.pdb``, ...).
    top : mdtraj.Topology, openmm.app.Topology or path
        Topology of the trajectories (a PDB, or anything mdtraj reads as a topology).
    spec : FeatureSpec
        The features; checked against the topology (:meth:`FeatureSpec.check_topology`).
    stride : int
        Read every ``stride``-th frame.
    check_units : bool
        Run :func:`check_length_units` on the first chunk of each trajectory (catches Angstrom
        read as nm).
    dtype : numpy dtype
        Output dtype.
    chunk : int
        Frames read at a time (memory holds one chunk of positions, plus the features).
    progress : callable, optional
        tqdm-like; called as ``progress(total=n_files)`` and updated per file.

    Returns
    -------
    list of ndarray, each ``(n_frames_i, n_features)``
        One matrix per file, in order.

    Raises
    ------
    GMVAEInputError
        Missing or unreadable file, wrong atom count, NaN positions, suspicious units; the
        message names the file.
    """
    if isinstance(traj_files, (str, os.PathLike)):
        traj_files = [traj_files]
    files = [Path(f) for f in traj_files]
    if not files:
        raise GMVAEInputError("'traj_files' is empty, expected at least one trajectory file")
    stride = check_int(stride, "stride", minimum=1)
    chunk = check_int(chunk, "chunk", minimum=1)
    top_source = top if isinstance(top, (str, os.PathLike)) else None
    topology = _as_mdtraj_topology(top)
    spec.check_topology(topology, source=top_source)
    out = []
    bar = progress(total=len(files)) if progress is not None else None
    try:
        for f in files:
            if not f.is_file():
                raise GMVAEInputError(f"{f}: file not found (expected a trajectory)")
            parts = []
            n_read = 0
            try:
                chunks = md.iterload(str(f), chunk=chunk, top=topology, stride=stride)
                for traj in chunks:
                    bad = ~np.isfinite(traj.xyz)
                    if bad.any():
                        frame, atom, _ = (int(v) for v in np.argwhere(bad)[0])
                        raise GMVAEInputError(
                            f"{f}: positions contain NaN/inf (first at frame {n_read + frame} of those read, "
                            f"atom {atom}), expected finite nm"
                        )
                    if check_units and n_read == 0:
                        check_length_units(traj, topology, source=f)
                    parts.append(spec.compute(traj, dtype=dtype, source=str(f)))
                    n_read += traj.n_frames
            except GMVAEInputError:
                raise
            except Exception as exc:  # mdtraj raises many types for bad files
                raise GMVAEInputError(f"{f}: cannot read as a trajectory with this topology ({exc})") from None
            if n_read == 0:
                raise GMVAEInputError(f"{f}: no frames, expected at least one")
            out.append(np.concatenate(parts, axis=0))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
    return out


def load_frames(traj_files: Sequence[str | os.PathLike], top: Any, *, stride: int = 1) -> Any:
    """The frames of trajectory files, joined into one :class:`mdtraj.Trajectory`, with their length
    units checked (:func:`check_length_units`).

    Parameters
    ----------
    traj_files : sequence of paths
        Trajectories in any format mdtraj reads.
    top : path or topology
        Their topology.
    stride : int
        Read every ``stride``-th frame.
    """
    if top is None:
        raise GMVAEInputError("'top' is missing, expected the topology of the trajectories")
    for f in traj_files:
        if not Path(f).is_file():
            raise GMVAEInputError(f"{f}: file not found (expected a trajectory)")
    try:
        t = md.join([md.load(str(f), top=top, stride=stride) for f in traj_files])
    except Exception as exc:  # mdtraj raises many types for bad files
        raise GMVAEInputError(f"{traj_files[0]}: cannot read as a trajectory with topology {top} ({exc})") from None
    check_length_units(t, t.topology, source=traj_files[0])
    return t
