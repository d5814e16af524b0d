"""Outputs of a biased run: PLUMED-format ``COLVAR`` and ``HILLS`` files, a DCD trajectory.

Every writer appends, reports the byte size it has flushed (and fsync'ed) so far, and can reopen a
file truncated to such a size: a checkpoint records the sizes, and a restart cuts every output back
to them, so a run killed at any moment and restarted holds each frame, row and hill exactly once.

Formats (PLUMED's, readable by ``plumed sum_hills`` and :mod:`gmvae_cv` readers):

- ``HILLS``: ``#! FIELDS time <cv>... sigma_<cv>... height biasf``, ``#! SET multivariate false``,
  ``#! SET kerneltype <kernel>``, ``#! SET min_<cv>/max_<cv>`` for periodic CVs; ``height`` is
  :math:`W\\gamma/(\\gamma - 1)` as PLUMED writes it for well-tempered runs (so that ``sum_hills``
  returns :math:`-F` directly); time in ps.
- ``COLVAR``: ``#! FIELDS time <cv>... metad.bias metad.rct metad.rbias [walls.bias] [extra...]``
  (OPES: ``opes.bias opes.rct opes.nker [walls.bias]``; ``walls.bias`` with walls,
  :mod:`gmvae_cv.metad.walls`); energies in kJ/mol, time in ps.
- ``KERNELS`` (OPES): :mod:`gmvae_cv.metad.kernels_file`.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Callable, Optional, Sequence
from openmm import unit
from openmm import app


from .._core.errors import GMVAEInputError

__all__ = ["PlumedTableWriter", "HillsWriter", "ColvarReporter", "DCDWriter", "truncate_file", "pi_text"]


def pi_text(x: float) -> str:
    """``'pi'``/``'-pi'`` for +-pi (as PLUMED writes periodic domains), else the exact float."""
    if math.isclose(x, math.pi, rel_tol=0, abs_tol=1e-12):
        return "pi"
    if math.isclose(x, -math.pi, rel_tol=0, abs_tol=1e-12):
        return "-pi"
    return repr(float(x))


def truncate_file(path: Path, size: int, *, what: str) -> None:
    """Cut ``path`` back to ``size`` bytes (a checkpointed size); error if it is shorter."""
    have = path.stat().st_size if path.exists() else -1
    if have < size:
        raise GMVAEInputError(
            f"{path}: has {max(have, 0)} bytes, the checkpoint recorded {size}; the {what} was changed or lost since "
            "the checkpoint, cannot continue the run (start a new one in another directory)"
        )
    with open(path, "r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


class PlumedTableWriter:
    """Append rows to a PLUMED-format table (``#! FIELDS`` / ``#! SET`` header).

    Parameters
    ----------
    path : path
    fields : sequence of str
    sets : dict, optional
        ``#! SET key value`` lines.
    fmt : str
        printf format of each value.
    resume_size : int, optional
        Reopen an existing file cut back to this many bytes (a checkpointed size) instead of
        creating it.
    """

    def __init__(self, path: str | os.PathLike, fields: Sequence[str], sets: Optional[dict] = None, *, fmt: str = "%.12g",
                 resume_size: Optional[int] = None) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.fmt = fmt
        if resume_size is not None:
            truncate_file(self.path, resume_size, what="output file")
            self._fh = open(self.path, "a", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
            lines = ["#! FIELDS " + " ".join(self.fields)]
            lines += [f"#! SET {k} {v}" for k, v in (sets or {}).items()]
            self._fh.write("\n".join(lines) + "\n")

    def write(self, values: Sequence[float]) -> None:
        """Append one row (``len(fields)`` values)."""
        if len(values) != len(self.fields):
            raise GMVAEInputError(f"{self.path}: row has {len(values)} values, expected {len(self.fields)} ({' '.join(self.fields)})")
        self._fh.write(" ".join(self.fmt % float(v) for v in values) + "\n")

    def commit(self) -> int:
        """Flush and fsync; return the file size in bytes."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return self.path.stat().st_size

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()


class HillsWriter:
    """Writes deposited hills of one walker as a PLUMED ``HILLS`` file.

    Parameters
    ----------
    path : path
    names : sequence of str
        Names of the biased CV components (``cv.0`` ...).
    bias_factor : float
    kernel : str
    periodic : sequence of (min, max) or None
    resume_size : int, optional
    """

    def __init__(self, path: str | os.PathLike, names: Sequence[str], bias_factor: float, kernel: str,
                 periodic: Sequence[Optional[tuple]], *, resume_size: Optional[int] = None) -> None:
        self.names = list(names)
        self.bias_factor = float(bias_factor)
        fields = ["time", *self.names, *[f"sigma_{n}" for n in self.names], "height", "biasf"]
        sets = {"multivariate": "false", "kerneltype": kernel}
        for n, p in zip(self.names, periodic):
            if p is not None:
                sets[f"min_{n}"] = pi_text(p[0])
                sets[f"max_{n}"] = pi_text(p[1])
        self.table = PlumedTableWriter(path, fields, sets, fmt="%.17g", resume_size=resume_size)

    def __call__(self, hill: Any) -> None:
        g = self.bias_factor
        self.table.write([hill.time, *hill.center, *hill.sigma, hill.height * g / (g - 1.0), g])

    def commit(self) -> int:
        return self.table.commit()

    def close(self) -> None:
        self.table.close()


class ColvarReporter:
    """An OpenMM reporter writing a PLUMED ``COLVAR`` row every ``interval`` steps.

    Row: time (ps), every CV component (``cv.0``, ``cv.1``, ...), the engine's bias columns
    (:attr:`colvar_fields` of the engine: ``metad.bias`` (the bias the walker feels, kJ/mol),
    ``metad.rct`` (:math:`c(t)`, kJ/mol), ``metad.rbias`` (bias - rct) for metadynamics;
    ``opes.bias``, ``opes.rct``, ``opes.nker`` for OPES; then ``walls.bias``, the walls' energy,
    when the bias has walls), then ``extra`` columns.

    Parameters
    ----------
    path : path
    meta : WellTemperedMetadynamics or OPESBias
        The engine: ``colvar_fields``, ``colvar_columns(s)``, ``cv``, ``binding``, ``grid``.
    interval : int
        Steps between rows.
    extra : callable, optional
        ``extra(positions_nm) -> sequence of float``, with names ``extra_names``.
    extra_names : sequence of str
    extra_periodic : sequence of (min, max) or None
    resume_size : int, optional
    """

    def __init__(self, path: str | os.PathLike, meta: Any, interval: int, *, extra: Optional[Callable] = None,
                 extra_names: Sequence[str] = (), extra_periodic: Sequence[Optional[tuple]] = (),
                 resume_size: Optional[int] = None) -> None:
        self.meta = meta
        self.interval = int(interval)
        self.extra = extra
        names = [f"cv.{i}" for i in range(meta.cv.n_cvs)]
        fields = ["time", *names, *meta.colvar_fields, *extra_names]
        # the temperature travels with the file, so reweighting never has to guess it
        sets = {"temperature": f"{float(meta.stability.temperature):.12g}"}
        for n, p in list(zip(names, meta.cv.periodic)) + list(zip(extra_names, extra_periodic)):
            if p is not None:
                sets[f"min_{n}"] = pi_text(p[0])
                sets[f"max_{n}"] = pi_text(p[1])
        self.table = PlumedTableWriter(path, fields, sets, fmt="%.12g", resume_size=resume_size)
        self.outside = 0  # rows whose biased CV lies outside a non-periodic grid

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}  # unwrapped, as the force sees them

    def report(self, simulation, state) -> None:
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        s = self.meta.binding.cv_of_state(state, pos)
        columns = self.meta.colvar_columns(s)
        grid = self.meta.grid
        for a, c in enumerate(self.meta.binding.components):
            if not grid.periodic[a] and not (grid.lower[a] <= s[c] <= grid.upper[a]):
                self.outside += 1
                break
        extra = list(self.extra(pos)) if self.extra is not None else []
        t = state.getTime().value_in_unit(unit.picosecond)
        self.table.write([t, *s, *columns, *extra])

    def commit(self) -> int:
        return self.table.commit()

    def close(self) -> None:
        self.table.close()


class DCDWriter:
    """An OpenMM reporter writing positions to a DCD file, resumable at a checkpointed size.

    Parameters
    ----------
    path : path
    topology : openmm.app.Topology
    timestep_ps : float
    interval : int
        Steps between frames.
    resume : tuple (size, n_frames), optional
        Cut an existing file back to ``size`` bytes holding ``n_frames`` frames, then append.
    """

    def __init__(self, path: str | os.PathLike, topology: Any, timestep_ps: float, interval: int, *,
                 resume: Optional[tuple[int, int]] = None) -> None:
        self.path = Path(path)
        self.interval = int(interval)
        self.n_frames = 0
        if resume is not None:
            size, n_frames = resume
            truncate_file(self.path, size, what="trajectory")
            if n_frames:
                with open(self.path, "r+b") as fh:  # frame count and last step in the header
                    fh.seek(8)
                    fh.write(struct.pack("<i", n_frames))
                    fh.seek(20)
                    fh.write(struct.pack("<i", n_frames * self.interval))
            self._fh = open(self.path, "r+b" if n_frames else "wb")
            self.n_frames = n_frames
            append = n_frames > 0
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "wb")
            append = False
        self._dcd = app.DCDFile(self._fh, topology, timestep_ps * unit.picosecond, self.interval, self.interval, append=append)

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def report(self, simulation, state) -> None:
        self._dcd.writeModel(state.getPositions(), periodicBoxVectors=state.getPeriodicBoxVectors())
        self.n_frames += 1

    def commit(self) -> tuple[int, int]:
        """Flush and fsync; return ``(size in bytes, frames)``."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return self.path.stat().st_size, self.n_frames

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()
