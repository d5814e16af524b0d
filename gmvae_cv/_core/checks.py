"""Input checks shared by every stage: one validator per kind of value, each naming what it checks.

Every error raised here says *where* the bad value came from (a file, or an argument name),
*which field* is wrong and *what was expected*.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import GMVAEInputError

__all__ = ["check_array", "check_n_features", "check_int", "check_positive", "as_value", "load_array_file", "as_list_of_arrays"]


def _where(source: str | os.PathLike | None, name: str) -> str:
    return f"{source}: '{name}'" if source is not None else f"'{name}'"


def check_array(
    value: Any,
    name: str,
    *,
    source: str | os.PathLike | None = None,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
    dtype: Any = np.float64,
    nonnegative: bool = False,
    min_rows: int = 0,
) -> np.ndarray:
    """Convert ``value`` to an ndarray and check it.

    Parameters
    ----------
    value : array_like
        What to check.
    name : str
        The field name used in error messages.
    source : str or path, optional
        Where the value came from (a file name), used in error messages.
    ndim : int, optional
        Required number of dimensions.
    shape : sequence of int or None, optional
        Required shape; ``None`` entries are free.
    finite : bool
        Reject NaN and inf.
    dtype : numpy dtype
        Output dtype; the input must be numeric (bool and object arrays are rejected).
    nonnegative : bool
        Reject negative entries.
    min_rows : int
        Minimum length of the first axis.

    Returns
    -------
    ndarray
        The checked array, of ``dtype``.

    Raises
    ------
    GMVAEInputError
        With a message that names ``source``, ``name`` and what was expected.
    """
    where = _where(source, name)
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
        raise GMVAEInputError(f"{where} has dtype {arr.dtype}, expected numbers")
    if ndim is not None and arr.ndim != ndim:
        what = {1: "a 1D array (n_frames,)", 2: "a 2D array (n_frames, n_features)"}.get(
            ndim, f"a {ndim}D array"
        )
        raise GMVAEInputError(f"{where} has {arr.ndim} dimension(s) (shape {arr.shape}), expected {what}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise GMVAEInputError(f"{where} has shape {arr.shape}, expected {want}")
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise GMVAEInputError(f"{where} has {arr.shape[0]} rows, expected at least {min_rows}")
    arr = arr.astype(dtype, copy=False)
    if finite and np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise GMVAEInputError(
                f"{where} contains {int(bad.sum())} NaN/inf value(s), first at index {tuple(int(i) for i in first)}"
            )
    if nonnegative and (arr < 0).any():
        first = int(np.argwhere(arr < 0)[0][0])
        raise GMVAEInputError(f"{where} has negative entries (first at row {first}), expected values >= 0")
    return arr


def check_n_features(
    arr: np.ndarray, n_features: int, name: str = "data", *, source: str | os.PathLike | None = None,
    expected_by: str = "the model",
) -> np.ndarray:
    """Check that a (n_frames, n_features) array has ``n_features`` columns.

    Parameters
    ----------
    arr : (n_frames, k) ndarray
        The checked array (from :func:`check_array` with ``ndim=2``).
    n_features : int
        The number of columns expected.
    name : str
        The field name used in error messages.
    source : str or path, optional
        The file the array came from, named in the message.
    expected_by : str
        Who expects ``n_features`` (``"the model"``, ``"the feature spec"``), named in the message.

    Returns
    -------
    ndarray
        ``arr``.

    Raises
    ------
    GMVAEInputError
        E.g. ``four.npy: 'data' has 4 features, the model expects 3``.
    """
    if arr.shape[1] != n_features:
        raise GMVAEInputError(f"{_where(source, name)} has {arr.shape[1]} features, {expected_by} expects {n_features}")
    return arr


def check_int(value: Any, name: str, *, minimum: int | None = None, source: str | None = None) -> int:
    """Check that ``value`` is an integer, optionally ``>= minimum``."""
    where = _where(source, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GMVAEInputError(f"{where} is {value!r}, expected an integer")
    if minimum is not None and value < minimum:
        raise GMVAEInputError(f"{where} is {value}, expected an integer >= {minimum}")
    return int(value)


def check_positive(value: Any, name: str, *, strict: bool = True, source: str | None = None) -> float:
    """Check that ``value`` is a finite real number, ``> 0`` (or ``>= 0`` if not ``strict``)."""
    where = _where(source, name)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GMVAEInputError(f"{where} is {value!r}, expected a number") from None
    if not np.isfinite(v) or (v <= 0 if strict else v < 0):
        raise GMVAEInputError(f"{where} is {value!r}, expected a number {'>' if strict else '>='} 0")
    return v


def as_value(value: Any, unit: Any, name: str, *, positive: bool = True) -> float:
    """A bare number in ``unit``, or an OpenMM ``Quantity`` converted to it (checked finite, > 0)."""
    if hasattr(value, "value_in_unit"):
        try:
            value = value.value_in_unit(unit)
        except TypeError:
            raise GMVAEInputError(f"'{name}' is {value}, expected a quantity compatible with {unit}") from None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GMVAEInputError(f"'{name}' is {value!r}, expected a number in {unit}") from None
    if not np.isfinite(v) or (positive and v <= 0):
        raise GMVAEInputError(f"'{name}' is {value!r}, expected a number > 0 in {unit}")
    return v


def load_array_file(path: str | os.PathLike, name: str = "data", *, ndim: int = 2, **kw: Any) -> np.ndarray:
    """Load a ``.npy`` (or whitespace-separated text) file and check it with :func:`check_array`.

    ``.npy`` files are read with ``allow_pickle=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise GMVAEInputError(f"{path}: file not found (expected a {ndim}D {name} array, .npy or text)")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            raise GMVAEInputError(f"{path}: .npz archives hold several arrays; save '{name}' as .npy")
        else:
            arr = np.loadtxt(path, comments=("#", "@"), ndmin=ndim)
    except GMVAEInputError:
        raise
    except Exception as exc:  # numpy raises several types for unreadable files
        raise GMVAEInputError(f"{path}: cannot read '{name}' as a numeric array ({exc})") from None
    return check_array(arr, name, source=path, ndim=ndim, **kw)


def as_list_of_arrays(values: Any, name: str) -> list:
    """Accept one array or a sequence of arrays (several trajectories) and return a list."""
    if isinstance(values, np.ndarray) or (hasattr(values, "shape") and hasattr(values, "dtype")):
        return [values]
    if isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
        out = list(values)
        if not out:
            raise GMVAEInputError(f"'{name}' is an empty list, expected at least one array")
        return out
    raise GMVAEInputError(f"'{name}' is {type(values).__name__}, expected an array or a list of arrays")
