"""The real PLUMED command line for tests (found once, next to this Python or on PATH), and the
helpers tests share around it: ``plumed driver``, COLVAR reading, the Python model's reference."""

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


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


def run_driver(workdir: Path, plumed_file: str, traj: str, stride: int = 1, *, exe: str | None = None,
               timeout: int = 300) -> subprocess.CompletedProcess:
    """``plumed driver`` on a DCD in ``workdir`` (1 ps per frame); asserts it succeeded."""
    res = subprocess.run(
        [exe or PLUMED, "driver", "--plumed", plumed_file, "--mf_dcd", traj, "--trajectory-stride", str(stride),
         "--timestep", "1"],
        cwd=workdir, capture_output=True, text=True, timeout=timeout,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def read_colvar(path: Path) -> dict:
    """A PLUMED-written table as {field: column}, fields from its first ``#! FIELDS`` line."""
    fields = Path(path).read_text().splitlines()[0].split()[2:]
    data = np.loadtxt(path, comments="#", ndmin=2)
    return {name: data[:, i] for i, name in enumerate(fields)}


def python_cv(model, x64: np.ndarray, what: str = "cv"):
    """The trained GMVAECV in float64: values and autograd Jacobian (F, n_out, n_in)."""
    m = copy.deepcopy(model).double().eval()
    fn = m.forward_cv if what == "cv" else m.cluster_probabilities
    x = torch.tensor(x64, requires_grad=True)
    out = fn(x)
    jac = np.stack([torch.autograd.grad(out[:, j].sum(), x, retain_graph=True)[0].numpy() for j in range(out.shape[1])], axis=1)
    return out.detach().numpy(), jac
