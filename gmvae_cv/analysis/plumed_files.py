"""PLUMED-format tables: reading and writing ``COLVAR`` and ``HILLS`` files.

A PLUMED table is a text file of whitespace-separated numbers under a header::

    #! FIELDS time phi psi metad.bias
    #! SET min_phi -pi
    #! SET max_phi pi
     0.000000  -1.4  2.9  0.0
     ...

Lines that start with ``#`` and are not ``#! FIELDS`` / ``#! SET`` lines are comments. A restarted
run appends a new ``#! FIELDS`` header (its fields may differ from the first); its time may go back
to the checkpoint, in which case the frames of the earlier part at or after that time are
superseded by the new ones (the reader drops them, with a warning). A time that goes back without
a header in between is an error.

A line cut short by an interrupted write (wrong number of fields, or a number that does not parse)
is dropped with a warning when it is the last line of the file or the last line before a restart
header; anywhere else it is an error that names the line.

The reader makes one quick pass over the bytes to find headers and count lines (:mod:`.plumed_scan`),
then parses data in chunks of bounded size (:meth:`PlumedFile.iter_chunks`), so files larger than
memory can be streamed with flat memory. :func:`write_plumed` (:mod:`.plumed_write`) is re-exported
here.

Metadata convention of gmvae-cv runs: ``#! SET temperature <K>`` or ``#! SET kT <energy>`` in the
header of a COLVAR or HILLS file records the temperature of the run (PLUMED itself writes neither).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.numbers import parse_plumed_number
from .plumed_scan import TableSegment, resolve_first_times, scan_table
from .plumed_write import write_plumed

__all__ = [
    "PlumedFile",
    "PlumedTable",
    "PlumedFileWarning",
    "read_plumed",
    "write_plumed",
    "parse_plumed_number",
]

_DEFAULT_CHUNK_BYTES = 1 << 25  # bytes of text parsed at once (about 32 MB)


class PlumedFileWarning(UserWarning):
    """A PLUMED file was read with a repair: a dropped truncated line, superseded frames."""


class PlumedFile:
    """A PLUMED table on disk, scanned for headers; data are parsed on demand, in chunks.

    Parameters
    ----------
    path : path
        A ``COLVAR`` or ``HILLS`` file (or any table with ``#! FIELDS`` headers).
    time_field : str
        The time column (``time`` in every PLUMED output); used to check that time does not run
        backwards and to resolve restarts. ``None`` skips both.

    Attributes
    ----------
    path : pathlib.Path
    fields : list of str
        Fields present in every header of the file (in the order of the first header).
    sets : dict of str to str
        ``#! SET`` values of all headers (later headers override earlier ones).
    n_rows_estimate : int
        Number of data lines (before dropping superseded or truncated lines).

    Raises
    ------
    GMVAEInputError
        If the file is missing, or has data before any ``#! FIELDS`` header.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from gmvae_cv.analysis.plumed_files import PlumedFile, write_plumed
    >>> p = os.path.join(tempfile.mkdtemp(), "COLVAR")
    >>> write_plumed(p, ["time", "x"], np.array([[0.0, 1.0], [1.0, 2.0]]))
    >>> PlumedFile(p).read(["x"])[:, 0]
    array([1., 2.])
    """

    def __init__(self, path: str | os.PathLike, *, time_field: Optional[str] = "time") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise GMVAEInputError(f"{self.path}: file not found (expected a PLUMED table such as COLVAR or HILLS)")
        self.time_field = time_field
        self._size = self.path.stat().st_size
        self._segments, self._ends_with_newline = scan_table(self.path, self._size)
        if not self._segments:
            raise GMVAEInputError(f"{self.path}: no '#! FIELDS' header; a PLUMED table starts with a line like '#! FIELDS time cv1 ...'")
        resolve_first_times(self.path, self._segments, self.time_field)

    # ------------------------------------------------------------------ properties
    @property
    def fields(self) -> list[str]:
        common = set(self._segments[0].fields)
        for s in self._segments[1:]:
            common &= set(s.fields)
        return [f for f in self._segments[0].fields if f in common]

    @property
    def sets(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self._segments:
            out.update(s.sets)
        return out

    @property
    def n_segments(self) -> int:
        """Number of ``#! FIELDS`` headers (1 + the number of restarts)."""
        return len(self._segments)

    @property
    def n_rows_estimate(self) -> int:
        return int(sum(max(s.n_lines, 0) for s in self._segments))

    def set_number(self, key: str) -> Optional[float]:
        """A ``#! SET`` value as a number (``None`` if absent)."""
        v = self.sets.get(key)
        return None if v is None else parse_plumed_number(v, where=f"{self.path}: SET {key}")

    def periodic_range(self, name: str) -> Optional[tuple[float, float]]:
        """``(min, max)`` from ``#! SET min_<name>`` / ``max_<name>`` if the field is periodic, else ``None``."""
        lo, hi = self.sets.get(f"min_{name}"), self.sets.get(f"max_{name}")
        if lo is None or hi is None:
            return None
        a = parse_plumed_number(lo, where=f"{self.path}: SET min_{name}")
        b = parse_plumed_number(hi, where=f"{self.path}: SET max_{name}")
        if not b > a:
            raise GMVAEInputError(f"{self.path}: SET min_{name} {lo} / max_{name} {hi}: expected min < max")
        return (a, b)

    def check_fields(self, columns: Sequence[str]) -> None:
        """Raise :class:`GMVAEInputError` naming the header if a column is missing in any header."""
        for s in self._segments:
            missing = [c for c in columns if c not in s.fields]
            if missing:
                raise GMVAEInputError(
                    f"{self.path}:{s.header_line}: no field {', '.join(repr(m) for m in missing)} in "
                    f"'#! FIELDS {' '.join(s.fields)}'"
                )

    # ------------------------------------------------------------------ parsing
    def _cutoffs(self) -> list[float]:
        """For each segment, the time from which its frames are superseded by a later restart."""
        out = []
        later = math.inf
        for s in reversed(self._segments):
            out.append(later)
            if s.first_time is not None:
                later = min(later, s.first_time)
        return out[::-1]

    def _parse_piece_bytes(self, data: bytes, seg: TableSegment, first_line: int, usecols: list[int], is_tail: bool) -> np.ndarray:
        """Parse data lines; repair or reject malformed lines."""
        n_fields = len(seg.fields)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loadtxt warns on empty input
                arr = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2, comments=None)
            if arr.size == 0:
                return np.zeros((0, len(usecols)))
            if arr.shape[1] == n_fields:
                return arr[:, usecols]
        except ValueError:
            pass
        # slow path: line by line, to name the bad line
        rows = []
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        last_nonblank = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        for i, ln in enumerate(lines):
            toks = ln.split()
            if not toks:
                continue
            ok = len(toks) == n_fields
            if ok:
                try:
                    vals = [float(t) for t in toks]
                except ValueError:
                    ok = False
            if ok:
                rows.append(vals)
                continue
            line_no = first_line + i
            text = ln.decode("utf-8", errors="replace")
            if is_tail and i == last_nonblank:
                warnings.warn(
                    f"{self.path}:{line_no}: truncated line dropped ({len(toks)} of {n_fields} fields: {text[:80]!r}); "
                    "the rest of the file is kept",
                    PlumedFileWarning,
                    stacklevel=4,
                )
                continue
            raise GMVAEInputError(
                f"{self.path}:{line_no}: expected {n_fields} numbers ('#! FIELDS {' '.join(seg.fields)}' at line "
                f"{seg.header_line}), found {len(toks)} field(s): {text[:80]!r}"
            )
        if not rows:
            return np.zeros((0, len(usecols)))
        return np.asarray(rows, dtype=np.float64)[:, usecols]

    @staticmethod
    def _line_of_row(data: bytes, row: int) -> int:
        """Offset (in lines) of the ``row``-th non-blank line of ``data``."""
        seen = -1
        for i, ln in enumerate(data.split(b"\n")):
            if ln.strip():
                seen += 1
                if seen == row:
                    return i
        return 0

    def iter_chunks(
        self, columns: Optional[Sequence[str]] = None, *, chunk_bytes: int = _DEFAULT_CHUNK_BYTES
    ) -> Iterator[np.ndarray]:
        """Yield the data in chunks of about ``chunk_bytes`` bytes of text.

        Parameters
        ----------
        columns : sequence of str, optional
            Fields to return, in this order (default: :attr:`fields`).
        chunk_bytes : int
            Bytes of text parsed at once; memory use is a few times this, whatever the file size.

        Yields
        ------
        (n_rows, len(columns)) float64 ndarray
            Rows in file order, superseded restart frames and truncated lines removed.

        Raises
        ------
        GMVAEInputError
            For a missing column, a malformed line inside the file, or a time that goes back
            without a restart header.
        """
        columns = list(self.fields if columns is None else columns)
        self.check_fields(columns)
        tf = self.time_field
        cutoffs = self._cutoffs()
        n_superseded = 0
        with open(self.path, "rb") as fh:
            for k, seg in enumerate(self._segments):
                has_time = tf is not None and tf in seg.fields
                usecols = [seg.fields.index(c) for c in columns]
                if has_time:
                    usecols = usecols + [seg.fields.index(tf)]
                seg_last = -math.inf
                for j, piece in enumerate(seg.pieces):
                    pos = piece.start
                    line = piece.first_line
                    while pos < piece.end:
                        fh.seek(pos)
                        want = min(chunk_bytes, piece.end - pos)
                        data = fh.read(want)
                        if pos + len(data) < piece.end:
                            cut = data.rfind(b"\n") + 1
                            if cut == 0:  # one very long line: read to its end
                                rest = b""
                                while True:
                                    more = fh.read(1 << 16)
                                    if not more:
                                        break
                                    nl = more.find(b"\n")
                                    if nl >= 0:
                                        rest += more[: nl + 1]
                                        break
                                    rest += more
                                data = data + rest
                            else:
                                data = data[:cut]
                        is_end = pos + len(data) >= piece.end
                        is_tail = is_end and j == len(seg.pieces) - 1  # before a restart header or at EOF
                        arr = self._parse_piece_bytes(data, seg, line, usecols, is_tail)
                        chunk_line = line
                        line += data.count(b"\n")
                        pos += len(data)
                        if arr.shape[0] == 0:
                            continue
                        if has_time:
                            t = arr[:, -1]
                            arr = arr[:, :-1]
                            prev = np.concatenate(([seg_last], t[:-1]))
                            back = np.flatnonzero(t < prev)
                            if back.size:
                                i = int(back[0])
                                where = self._line_of_row(data, i) + chunk_line
                                raise GMVAEInputError(
                                    f"{self.path}:{where}: time goes back from {prev[i]:g} to {t[i]:g} without a restart "
                                    "header ('#! FIELDS' line) in between; concatenated or corrupted file?"
                                )
                            seg_last = float(t[-1])
                            if t[-1] >= cutoffs[k]:
                                keep = t < cutoffs[k]
                                n_superseded += int((~keep).sum())
                                arr = arr[keep]
                        if arr.shape[0]:
                            yield arr
        if n_superseded:
            warnings.warn(
                f"{self.path}: {n_superseded} frame(s) before a restart were superseded by the restarted run "
                "(time went back at a '#! FIELDS' header) and were dropped",
                PlumedFileWarning,
                stacklevel=2,
            )

    def read(self, columns: Optional[Sequence[str]] = None, *, chunk_bytes: int = _DEFAULT_CHUNK_BYTES) -> np.ndarray:
        """All data of ``columns`` as one ``(n_rows, len(columns))`` float64 array."""
        columns = list(self.fields if columns is None else columns)
        parts = list(self.iter_chunks(columns, chunk_bytes=chunk_bytes))
        return np.concatenate(parts) if parts else np.zeros((0, len(columns)))


@dataclass
class PlumedTable:
    """A PLUMED table read into memory.

    Attributes
    ----------
    fields : list of str
        Column names.
    data : (n_rows, n_fields) float64 ndarray
        Values, in the file's units.
    sets : dict of str to str
        ``#! SET`` values.
    source : str
        File name, for messages.
    """

    fields: list[str]
    data: np.ndarray
    sets: dict[str, str] = field(default_factory=dict)
    source: str = "table"

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.fields:
            raise GMVAEInputError(f"{self.source}: no field {name!r} (fields: {' '.join(self.fields)})")
        return self.data[:, self.fields.index(name)]

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def periodic_range(self, name: str) -> Optional[tuple[float, float]]:
        """``(min, max)`` of a periodic field from the ``#! SET`` lines, else ``None``."""
        lo, hi = self.sets.get(f"min_{name}"), self.sets.get(f"max_{name}")
        if lo is None or hi is None:
            return None
        return (
            parse_plumed_number(lo, where=f"{self.source}: SET min_{name}"),
            parse_plumed_number(hi, where=f"{self.source}: SET max_{name}"),
        )


def read_plumed(
    path: str | os.PathLike, columns: Optional[Sequence[str]] = None, *, time_field: Optional[str] = "time"
) -> PlumedTable:
    """Read a PLUMED table (COLVAR, HILLS) into memory.

    Parameters
    ----------
    path : path
        The file.
    columns : sequence of str, optional
        Fields to read (default: all fields present in every header).
    time_field : str or None
        The time column, used to check time order and resolve restarts.

    Returns
    -------
    PlumedTable

    See Also
    --------
    PlumedFile : the streaming reader underneath.
    """
    pf = PlumedFile(path, time_field=time_field)
    cols = list(pf.fields if columns is None else columns)
    return PlumedTable(fields=cols, data=pf.read(cols), sets=pf.sets, source=str(pf.path))
