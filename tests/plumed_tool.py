"""The real PLUMED command line for tests: found once, next to this Python or on PATH."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _plumed_executable():
    cand = Path(sys.executable).with_name("plumed")
    exe = str(cand) if cand.exists() else shutil.which("plumed")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "info", "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if res.returncode == 0 else None


PLUMED = _plumed_executable()
needs_plumed = pytest.mark.skipif(PLUMED is None, reason="no working 'plumed' command (PLUMED kernel) found")
