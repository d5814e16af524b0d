"""Example scripts run in their --quick form and reproduce their headline result."""

import importlib.util
import logging
from pathlib import Path

import pytest

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_four_well_example(tmp_path):
    summary = _load("four_well").main(["--out", str(tmp_path), "--quick"])
    for f in ("potential.png", "confusion.png", "z_vs_x.png"):
        assert (tmp_path / f).stat().st_size > 5000, f
    assert (tmp_path / "summary.json").is_file()
    assert summary["accuracy"] >= 0.95
