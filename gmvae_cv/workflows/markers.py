"""Stage folders with a done-marker: how the workflows continue where a killed run stopped.

A stage writes ``done.json`` (a dict of what it measured) into its folder when it has finished; a
stage folder without it is an unfinished attempt, emptied and redone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .._core.files import atomic_write_json

__all__ = ["done", "read_done", "mark_done", "fresh"]


def done(stage: Path) -> bool:
    """Whether the stage in folder ``stage`` has finished (its ``done.json`` exists)."""
    return (stage / "done.json").is_file()


def read_done(stage: Path) -> dict:
    """The content of ``stage/done.json``."""
    return json.loads((stage / "done.json").read_text())


def mark_done(stage: Path, info: dict) -> None:
    """Write ``stage/done.json`` (atomically): the stage has finished."""
    atomic_write_json(stage / "done.json", info)


def fresh(stage: Path) -> Path:
    """An empty stage folder (an unfinished earlier attempt is removed: its stage had not finished)."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage
