"""Writing PLUMED tables: a ``#! FIELDS`` header, ``#! SET`` lines and rows of numbers.

The reader is :mod:`.plumed_files`, which re-exports :func:`write_plumed`.
"""

from __future__ import annotations

import io
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_text

__all__ = ["write_plumed"]


def write_plumed(
    path: str | os.PathLike,
    fields: Sequence[str],
    data: np.ndarray,
    *,
    sets: Optional[Mapping[str, object]] = None,
    fmt: str = "%.10g",
    append: bool = False,
) -> None:
    """Write a PLUMED table (``#! FIELDS`` header, ``#! SET`` lines, rows).

    Parameters
    ----------
    path : path
        Output file; written atomically unless ``append``.
    fields : sequence of str
        Column names.
    data : (n_rows, len(fields)) array_like
        Values.
    sets : mapping, optional
        ``#! SET key value`` lines (e.g. ``{"min_phi": "-pi", "max_phi": "pi", "temperature": 300}``).
    fmt : str
        printf-style format of one number.
    append : bool
        Append a new header and the rows to an existing file, as a restarted PLUMED run does.
    """
    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != len(fields):
        raise GMVAEInputError(f"'data' has shape {arr.shape}, expected (n_rows, {len(fields)}) for fields {list(fields)}")
    head = ["#! FIELDS " + " ".join(fields)]
    for k, v in (sets or {}).items():
        head.append(f"#! SET {k} {v}")
    buf = io.StringIO()
    buf.write("\n".join(head) + "\n")
    if arr.size:
        np.savetxt(buf, arr, fmt=fmt)
    text = buf.getvalue()
    if append:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    else:
        atomic_write_text(path, text)
