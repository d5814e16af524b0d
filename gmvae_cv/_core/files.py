"""Writing files so that nothing a user wrote is lost: every write goes through a temporary file
in the same directory and ``os.replace``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "run_in_folder"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON to ``path``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def run_in_folder(final: str | os.PathLike, work: Callable[[Path], dict]) -> dict:
    """Do ``work`` into a folder that appears whole at ``final`` or not at all; return its result.

    If ``final/result.json`` exists, its content is returned and nothing runs. Otherwise
    ``work(tmp)`` writes its files into ``<final>.tmp-<uuid>`` (a sibling, hidden) and returns a
    JSON-ready dict, written as ``tmp/result.json``; then ``tmp`` is renamed to ``final`` (atomic on
    one file system). If ``final`` appeared meanwhile (another attempt of the same work finished
    first, e.g. a task Dask ran twice), this attempt's copy is removed and the existing result is
    returned, so the work is counted once. On any error the temporary folder is removed.
    """
    final = Path(final)
    done = final / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        res = work(tmp)
        atomic_write_json(tmp / "result.json", res)
        try:
            os.rename(tmp, final)
        except OSError:
            if done.is_file():  # another attempt finished first: keep that one
                shutil.rmtree(tmp, ignore_errors=True)
                return json.loads(done.read_text())
            raise
        return res
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
