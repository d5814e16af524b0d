"""Walkers in separate processes sharing one bias through a directory (PLUMED's ``WALKERS_DIR``).

Every walker ``w`` (one process, or one :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`) owns
two files in the shared directory ``SHARED``:

``walker.<w>.json``
    Its descriptor: every metadynamics parameter (temperature, height, sigma, bias factor, pace,
    components, grid, periodicity, kernel) and the CV's sha256. A walker whose descriptor differs
    from another's is refused (when it starts, and whenever a reader meets a new walker).
``HILLS.<w>``
    Its hills, PLUMED format (what :class:`~gmvae_cv.metad.reporters.HillsWriter` writes, so that
    ``plumed sum_hills --hills SHARED/HILLS.0,SHARED/HILLS.1,...`` gives the shared bias). Only
    this walker appends to it, and only *published* hills: with :func:`~gmvae_cv.metad.run.run_metadynamics`
    a hill is published after a checkpoint that holds it, so a walker killed and continued from
    its checkpoint never withdraws a hill that another walker has already added.

Every ``stride`` own hills a walker exchanges: it publishes its new hills (one appended block,
flushed and fsync'ed) and reads the complete lines that the other walkers appended since its last
read (a line still being written, without its newline, is left for the next read). It records,
per other walker, the byte offset and the number of hills read; these travel in its checkpoint, so
after a restart it reads on from there: no hill is added twice or lost. A lock
(``walker.<w>.lock``, ``flock``) keeps two live processes from using the same walker id.

Compared with ``openmm.app.Metadynamics(biasDir=..., saveFrequency=...)``, which writes each
process's whole bias grid to a new ``.npy`` file and sums the others' latest grids, the exchange
here is the hills themselves, so the shared bias stays a sum of hills that PLUMED can replay.
"""

from __future__ import annotations

import json
import math
import os
import re
import weakref
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .hill import Hill
from .reporters import HillsWriter
from .._core.files import atomic_write_json

__all__ = ["SharedWalkers", "WALKER_FORMAT"]

WALKER_FORMAT = "gmvae-cv/metadynamics-walker"
_DESCRIPTOR = re.compile(r"^walker\.(\d+)\.json$")


class SharedWalkers:
    """One walker's side of a shared bias directory.

    Parameters
    ----------
    directory : path
        The shared directory (created if needed).
    walker_id : int
        This walker's id (>= 0), unique among the walkers of the directory.
    params : dict
        The metadynamics parameters every walker must share (``MetadynamicsParameters.to_dict()``).
    cv_sha256 : str
    names : sequence of str
        HILLS field names of the biased components (``cv.0`` ...).
    periodic : sequence of (min, max) or None
        Per biased component, for the HILLS header.
    info : dict, optional
        Free-form details written into the descriptor (not compared), e.g. the run directory.
    """

    def __init__(self, directory: str | os.PathLike, walker_id: int, params: dict, cv_sha256: str, names: Sequence[str],
                 periodic: Sequence[Optional[tuple]], *, info: Optional[dict] = None) -> None:
        self.dir = Path(directory).resolve()
        self.walker_id = int(walker_id)
        self.shared = {"cv_sha256": cv_sha256, "metadynamics": json.loads(json.dumps(params))}
        self.names = list(names)
        self.periodic = list(periodic)
        self.bias_factor = float(params["bias_factor"])
        self.fields = ["time", *self.names, *[f"sigma_{n}" for n in self.names], "height", "biasf"]
        self.read: dict[int, list[int]] = {}  # other walker -> [byte offset, hills read]
        self.published: Optional[int] = None  # own hills in HILLS.<w>; None until checked against this walker's hills
        self._checked: set[int] = set()
        self.dir.mkdir(parents=True, exist_ok=True)
        for other in self.walker_ids():
            if other != self.walker_id:
                self._check_descriptor(other)
        own = self.dir / f"walker.{self.walker_id}.json"
        if own.exists():
            self._check_descriptor(self.walker_id)
        self._lock_fd = _lock(self.dir / f"walker.{self.walker_id}.lock", self.walker_id)
        self._finalizer = weakref.finalize(self, _unlock, self._lock_fd)
        if not own.exists():
            atomic_write_json(own, {"format": WALKER_FORMAT, "version": 1, "walker": self.walker_id, **self.shared,
                                    "hills_file": self.hills_path.name, "fields": self.fields, "info": info or {}})
        if not self._has_header():
            self._write_header()

    @property
    def hills_path(self) -> Path:
        """This walker's published HILLS file."""
        return self.dir / f"HILLS.{self.walker_id}"

    def close(self) -> None:
        """Release the walker id (also done when the object is collected or the process ends)."""
        self._finalizer()

    # ------------------------------------------------------------------ descriptors
    def walker_ids(self) -> list[int]:
        """Ids of the walkers with a descriptor in the directory, sorted."""
        return sorted(int(m.group(1)) for m in (_DESCRIPTOR.match(p.name) for p in self.dir.iterdir()) if m)

    def _check_descriptor(self, walker: int) -> None:
        if walker in self._checked:
            return
        path = self.dir / f"walker.{walker}.json"
        try:
            desc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GMVAEInputError(f"{path}: cannot read the walker descriptor ({exc})") from None
        if desc.get("format") != WALKER_FORMAT:
            raise GMVAEInputError(f"{path}: 'format' is {desc.get('format')!r}, expected {WALKER_FORMAT!r}")
        diff = []
        if desc.get("cv_sha256") != self.shared["cv_sha256"]:
            diff.append("another CV file (cv_sha256 differs)")
        theirs, ours = desc.get("metadynamics", {}), self.shared["metadynamics"]
        for key in sorted(set(theirs) | set(ours)):
            if key != "units" and theirs.get(key) != ours.get(key):
                diff.append(f"{key}: {theirs.get(key)!r} there, {ours.get(key)!r} here")
        if diff:
            who = "this walker id" if walker == self.walker_id else f"walker {walker}"
            raise GMVAEInputError(
                f"{self.dir}: {who} shares the bias with other parameters ({'; '.join(diff[:4])}); walkers sharing "
                "a directory must have the same CV, sigma, grid, bias factor, height, pace, temperature and kernel: "
                "use the same parameters or another walkers directory"
            )
        self._checked.add(walker)

    # ------------------------------------------------------------------ own file
    def _has_header(self) -> bool:
        path = self.hills_path
        if not path.exists():
            return False
        with open(path, "rb") as fh:
            first = fh.readline()
        return first.endswith(b"\n") and first.decode("utf-8", "replace").split()[2:] == self.fields

    def _write_header(self) -> None:

        path = self.hills_path
        if path.exists() and path.stat().st_size and _complete_rows(path.read_bytes()):
            raise GMVAEInputError(f"{path}: holds hills under a header that is not {' '.join(self.fields)}; not a walker file of this bias")
        w = HillsWriter(path, self.names, self.bias_factor, self.shared["metadynamics"]["kernel"], self.periodic)
        w.commit()
        w.close()

    def _reconcile(self, own: Sequence[Any]) -> None:
        """Check the published file against this walker's hills: cut a line left half-written by a
        killed process, and refuse hills that are not this walker's first ones."""
        path = self.hills_path
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
            data = data[:end]
        rows = _complete_rows(data)
        d = len(self.names)
        mismatch = len(rows) > len(own)
        for k, r in enumerate(rows[: len(own)]):
            h = own[k]
            if len(r) != 2 * d + 3 or r[0] != h.time or list(r[1 : 1 + d]) != list(h.center) or \
                    list(r[1 + d : 1 + 2 * d]) != list(h.sigma):
                mismatch = True
                break
        if mismatch:
            raise GMVAEInputError(
                f"{path}: holds {len(rows)} hills that are not the first hills of this walker ({len(own)} deposited): "
                f"another run used walker id {self.walker_id} in this directory, or the state this walker continues from "
                "is older than hills the other walkers may already have added; use another walker id or walkers directory"
            )
        self.published = len(rows)

    def publish(self, own: Sequence[Any]) -> int:
        """Append this walker's hills ``own[published:]`` (all its hills, in order) to its file;
        return how many were appended."""
        if self.published is None:
            self._reconcile(own)
        new = own[self.published :]
        if new:
            g = self.bias_factor
            text = "".join(" ".join("%.17g" % float(v) for v in [h.time, *h.center, *h.sigma, h.height * g / (g - 1.0), g]) + "\n"
                           for h in new)
            with open(self.hills_path, "ab") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        self.published = len(own)
        return len(new)

    # ------------------------------------------------------------------ other walkers
    def read_new(self) -> list:
        """The hills the other walkers published since the last read, walker by walker.

        Returns
        -------
        list of Hill
            ``step`` is -1 (not known here), ``walker`` the other walker's id, ``height`` the
            deposited height (the file's height times :math:`(\\gamma - 1)/\\gamma`).
        """

        d = len(self.names)
        g = self.bias_factor
        hills = []
        for walker in self.walker_ids():
            if walker == self.walker_id:
                continue
            path = self.dir / f"HILLS.{walker}"
            if not path.exists():
                continue
            self._check_descriptor(walker)
            offset, count = self.read.get(walker, [0, 0])
            size = path.stat().st_size
            if size < offset:
                raise GMVAEInputError(
                    f"{path}: has {size} bytes, {offset} of them ({count} hills) were already read: the file was "
                    "replaced or cut; the walkers directory no longer holds the bias this walker shares"
                )
            if size == offset:
                continue
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(size - offset)
            end = data.rfind(b"\n") + 1  # complete lines only: the rest is still being written
            if end == 0:
                continue
            for line in data[:end].decode("utf-8").splitlines():
                if line.startswith("#"):
                    if line.startswith("#! FIELDS") and line.split()[2:] != self.fields:
                        raise GMVAEInputError(f"{path}: fields {' '.join(line.split()[2:])}, expected {' '.join(self.fields)}")
                    continue
                if not line.strip():
                    continue
                try:
                    v = [float(x) for x in line.split()]
                except ValueError:
                    v = []
                if len(v) != 2 * d + 3 or not all(math.isfinite(x) for x in v) or v[-1] != g:
                    raise GMVAEInputError(f"{path}: line {line[:80]!r} is not a hill of this bias ({' '.join(self.fields)})")
                hills.append(Hill(step=-1, walker=walker, time=v[0], center=np.array(v[1 : 1 + d]),
                                  sigma=np.array(v[1 + d : 1 + 2 * d]), height=v[1 + 2 * d] * (g - 1.0) / g))
                count += 1
            self.read[walker] = [offset + end, count]
        return hills

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """What a checkpoint records: per other walker the byte offset and the hills read."""
        return {"walker_id": self.walker_id, "read": {str(k): list(v) for k, v in sorted(self.read.items())}}

    def load_state(self, state: dict, *, source: str = "state") -> None:
        """Restore :meth:`state`; the published file is checked again at the next :meth:`publish`."""
        if int(state.get("walker_id", -1)) != self.walker_id:
            raise GMVAEInputError(f"{source}: walker id {state.get('walker_id')!r}, this walker is {self.walker_id}")
        self.read = {int(k): [int(v[0]), int(v[1])] for k, v in state.get("read", {}).items()}
        self.published = None


def _complete_rows(data: bytes) -> list:
    rows = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        try:
            rows.append([float(x) for x in line.split()])
        except ValueError:
            rows.append([])
    return rows


def _lock(path: Path, walker: int) -> Optional[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GMVAEInputError(
            f"{path.parent}: walker id {walker} is in use by another process (or another object of this one); "
            "every walker needs its own id"
        ) from None
    except (ImportError, OSError):  # no flock on this file system: run without the guard
        pass
    return fd


def _unlock(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)  # releases the flock
        except OSError:
            pass
