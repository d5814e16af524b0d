"""The joints between modules, crossed by the real files: export -> bias -> reweight."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from gmvae_cv import GMVAEInputError, load_cv, read_plumed
from gmvae_cv.cli import main

REF = Path(__file__).resolve().parents[2] / "export" / "alanine_dipeptide"


def test_bias_on_the_reference_export_then_reweight(tmp_path):
    """`gmvae-cv bias EXP` takes sigma and grid from EXP/cv.json, writes a COLVAR that carries its
    temperature, and `gmvae-cv fes` reweights it (c(t)) without being told the temperature."""
    run = tmp_path / "bias"
    assert main(["bias", str(REF), "--system", "alanine-dipeptide", "--steps", "4000", "--out", str(run)]) == 0
    colvar = read_plumed(run / "COLVAR")
    assert float(colvar.sets["temperature"]) == 300.0
    hills = read_plumed(run / "HILLS")
    assert len(hills) == 8
    import json

    sigma = json.loads((REF / "cv.json").read_text())["plumed"]["metad"]["sigma"]
    np.testing.assert_allclose(hills["sigma_cv.0"], sigma[0])
    np.testing.assert_allclose(hills["sigma_cv.1"], sigma[1])
    # the CV the run wrote is the exported model's CV of the run's frames
    import mdtraj as md
    import torch

    top = Path(__file__).resolve().parents[2] / "gmvae_cv" / "data" / "alanine-dipeptide.pdb"
    traj = md.load(str(run / "traj.dcd"), top=str(top))  # one frame per hill (every 1 ps), none at t = 0
    cv = load_cv(REF)
    with torch.no_grad():
        s = np.array([cv.module(torch.as_tensor(x, dtype=torch.float64)).numpy() for x in traj.xyz])
    frame_times = np.arange(1, traj.n_frames + 1) * 1.0
    rows = np.searchsorted(colvar["time"], frame_times - 1e-9)
    np.testing.assert_allclose(colvar["time"][rows], frame_times)
    np.testing.assert_allclose(np.column_stack([colvar["cv.0"], colvar["cv.1"]])[rows], s, atol=2e-5)
    out = tmp_path / "fes.dat"
    assert main(["fes", str(run / "COLVAR"), "--cv", "phi,psi", "--weights", "ct", "--hills", str(run / "HILLS"), "--out", str(out)]) == 0
    fes = np.loadtxt(out)
    assert fes.shape[1] == 4 and np.nanmin(fes[:, 2]) == 0.0


def test_bias_refuses_an_altered_export(tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(REF, exp)
    with open(exp / "model_openmm.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(GMVAEInputError, match="sha256"):
        load_cv(exp)
