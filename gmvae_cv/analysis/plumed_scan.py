"""The header scan of a PLUMED table: where each ``#! FIELDS`` segment and its data lie.

:func:`scan_table` makes one quick pass over the bytes of a file (blocks of 16 MB) and returns one
:class:`TableSegment` per ``#! FIELDS`` header, with its ``#! SET`` values and the byte ranges
(:class:`DataPiece`) of its data lines between comment lines; :func:`resolve_first_times` reads the
first time of each segment, which resolves restarts. The data themselves are parsed later, in
chunks, by :class:`~gmvae_cv.analysis.plumed_files.PlumedFile`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .._core.errors import GMVAEInputError

__all__ = ["DataPiece", "TableSegment", "scan_table", "resolve_first_times"]

_SCAN_BLOCK = 1 << 24  # bytes per read during the header scan


@dataclass
class DataPiece:
    """A byte range of data lines without comment lines inside."""

    start: int
    end: int
    first_line: int  # 1-based line number of the first line


@dataclass
class TableSegment:
    """The part of a table under one ``#! FIELDS`` header: its fields, ``#! SET`` values and data."""

    header_line: int
    fields: tuple[str, ...]
    sets: dict[str, str] = field(default_factory=dict)
    pieces: list[DataPiece] = field(default_factory=list)
    n_lines: int = 0  # data lines (upper bound: blank lines included)
    first_time: Optional[float] = None


def scan_table(path: Path, size: int) -> tuple[list[TableSegment], bool]:
    """One pass over the bytes: find header and comment lines, split the data into pieces.

    Parameters
    ----------
    path : pathlib.Path
        The table (named in error messages).
    size : int
        Its size in bytes.

    Returns
    -------
    segments : list of TableSegment
        One per ``#! FIELDS`` header, in file order (empty if the file has none).
    ends_with_newline : bool
        Whether the last line of the file is complete.

    Raises
    ------
    GMVAEInputError
        For data before the first header, or a header that names no fields.
    """
    segs: list[TableSegment] = []
    ends_with_newline = True
    current: Optional[TableSegment] = None
    piece: Optional[tuple[int, int]] = None  # (byte, line) where the current data piece starts
    line_no = 1  # number of the first line of the current block
    offset = 0  # byte offset of the current block

    def close_piece(end_byte: int, end_line: int) -> None:
        nonlocal piece
        if piece is not None and current is not None and end_byte > piece[0]:
            current.pieces.append(DataPiece(piece[0], end_byte, piece[1]))
            current.n_lines += end_line - piece[1]
        piece = None

    def data_before_header(text: bytes, line: int) -> None:
        if current is None and text.strip():
            lead = len(text) - len(text.lstrip(b" \t\r\n"))
            bad_line = line + text.count(b"\n", 0, lead)
            raise GMVAEInputError(
                f"{path}:{bad_line}: data before any '#! FIELDS' header; a PLUMED "
                "table starts with a line like '#! FIELDS time cv1 ...'"
            )

    carry = b""
    with open(path, "rb") as fh:
        while True:
            raw = fh.read(_SCAN_BLOCK)
            block = carry + raw
            if not block:
                break
            if raw:
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    carry = block
                    continue
                carry, block = block[cut:], block[:cut]
            else:
                carry = b""
                ends_with_newline = False
            pos, line = 0, line_no
            while pos < len(block):
                if block[pos : pos + 1] == b"#":
                    h = pos
                else:
                    f = block.find(b"\n#", pos)
                    if f < 0:
                        break
                    h = f + 1
                data_before_header(block[pos:h], line)
                line += block.count(b"\n", pos, h)
                eol = block.find(b"\n", h)
                eol = len(block) if eol < 0 else eol
                close_piece(offset + h, line)
                text = block[h:eol].decode("utf-8", errors="replace").strip()
                if text.startswith("#!"):
                    words = text[2:].split()
                    if words and words[0] == "FIELDS":
                        if len(words) < 2:
                            raise GMVAEInputError(f"{path}:{line}: '#! FIELDS' header names no fields")
                        current = TableSegment(header_line=line, fields=tuple(words[1:]))
                        segs.append(current)
                    elif words and words[0] == "SET" and current is not None and len(words) >= 3:
                        current.sets[words[1]] = " ".join(words[2:])
                piece = (offset + eol + 1, line + 1)
                pos = eol + 1
                line += 1
            data_before_header(block[pos:], line)
            line_no += block.count(b"\n") + (0 if raw else 1)
            offset += len(block)
            if not raw:
                break
    close_piece(size, line_no)
    return segs, ends_with_newline


def resolve_first_times(path: Path, segments: list[TableSegment], time_field: Optional[str]) -> None:
    """Set ``first_time`` of each segment: the time of its first complete data line.

    Reads at most 64 kB per piece; segments without ``time_field`` (or with ``None``) keep ``None``.
    """
    tf = time_field
    if tf is None:
        return
    with open(path, "rb") as fh:
        for s in segments:
            if tf not in s.fields:
                continue
            col = s.fields.index(tf)
            for p in s.pieces:
                fh.seek(p.start)
                data = fh.read(min(p.end - p.start, 1 << 16))
                for ln in data.split(b"\n"):
                    toks = ln.split()
                    if len(toks) == len(s.fields):
                        try:
                            s.first_time = float(toks[col])
                        except ValueError:
                            continue
                        break
                if s.first_time is not None:
                    break
