"""The project's self-describing JSON files: one reader and one writer for all of them.

Every JSON file gmvae-cv writes (``gmvae_run.json``, ``cv.json``, a feature spec, ``run.json`` of a
biased run, a checkpoint's info, a walker descriptor, an MSM or FES summary) starts with

``"format": "gmvae-cv/<name>"``, ``"format_version": <int>``

and :func:`read_json_file` is the one place that checks them, so every message names the file,
the field and what was expected. Files written before the names were unified (``"version"``
instead of ``"format_version"``, ``"gmvae-cv-run"`` instead of ``"gmvae-cv/training-run"``) still
load: :data:`FORMAT_ALIASES` maps the old format names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import GMVAEInputError
from .files import atomic_write_text

__all__ = ["FORMAT_KEY", "VERSION_KEY", "FORMAT_ALIASES", "stamped", "write_json_file", "read_json_file", "check_stamp", "load_json"]

FORMAT_KEY = "format"
VERSION_KEY = "format_version"
FORMAT_ALIASES = {
    "gmvae-cv-run": "gmvae-cv/training-run",
    "gmvae-cv-msm": "gmvae-cv/msm",
    "gmvae-cv-tram": "gmvae-cv/tram",
    "gmvae-cv-fes": "gmvae-cv/fes",
}
"""Format names of files written before the names were unified (old -> current)."""


def stamped(fmt: str, version: int, body: Mapping[str, Any]) -> dict:
    """``{"format": fmt, "format_version": version, **body}`` (the stamp first, as files show it)."""
    if not fmt.startswith("gmvae-cv/"):
        raise ValueError(f"format names are 'gmvae-cv/<name>', got {fmt!r}")
    rest = {k: v for k, v in body.items() if k not in (FORMAT_KEY, VERSION_KEY, "version")}
    return {FORMAT_KEY: fmt, VERSION_KEY: int(version), **rest}


def write_json_file(path: str | os.PathLike, fmt: str, version: int, body: Mapping[str, Any]) -> dict:
    """Write ``body`` stamped with ``fmt`` and ``version`` to ``path``, atomically, indented.

    Returns
    -------
    dict
        What was written.
    """
    obj = stamped(fmt, version, body)
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
    return obj


def check_stamp(obj: Any, fmt: str, versions: Iterable[int], *, source: str | os.PathLike | None) -> dict:
    """Check an already parsed object's stamp; returns it with the current key names.

    Raises
    ------
    GMVAEInputError
        Not a JSON object, another format, or a version this gmvae-cv does not read.
    """
    where = f"{source}: " if source is not None else ""
    if not isinstance(obj, dict):
        raise GMVAEInputError(f"{where}expected a JSON object with a 'format' field, got {type(obj).__name__}")
    got = obj.get(FORMAT_KEY)
    if FORMAT_ALIASES.get(got, got) != fmt:
        raise GMVAEInputError(f"{where}'format' is {got!r}, expected {fmt!r}")
    version = obj.get(VERSION_KEY, obj.get("version"))
    versions = tuple(versions)
    if version not in versions:
        raise GMVAEInputError(f"{where}'{VERSION_KEY}' is {version!r}, this gmvae-cv reads {', '.join(map(str, versions))}")
    out = dict(obj)
    out.pop("version", None)
    out[FORMAT_KEY], out[VERSION_KEY] = fmt, version
    return out


def read_json_file(path: str | os.PathLike, fmt: str, versions: Iterable[int] = (1,)) -> dict:
    """Read one of the project's JSON files and check its stamp.

    Parameters
    ----------
    path : path
    fmt : str
        Expected format name (``"gmvae-cv/<name>"``); old names in :data:`FORMAT_ALIASES` pass.
    versions : iterable of int
        Format versions this reader understands.

    Returns
    -------
    dict
        The file's object, with ``"format"`` and ``"format_version"`` under their current names.

    Raises
    ------
    GMVAEInputError
        Missing file, not valid JSON, another format or an unknown version; the message names the
        file.
    """
    path = Path(path)
    return check_stamp(load_json(path, f"a gmvae-cv file of format {fmt!r}"), fmt, versions, source=path)


def load_json(path: str | os.PathLike, expected: str) -> Any:
    """The JSON value in ``path``; a missing file or invalid JSON raises :class:`GMVAEInputError`
    naming the file and ``expected`` (what the file should be, e.g. ``"a feature spec JSON file"``)."""
    path = Path(path)
    if not path.is_file():
        raise GMVAEInputError(f"{path}: file not found (expected {expected})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GMVAEInputError(f"{path}: not valid JSON ({exc}); expected {expected}") from None
