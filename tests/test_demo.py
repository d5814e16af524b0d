"""`gmvae-cv demo --quick`: every stage runs, the summary holds computed numbers, a rerun reuses stages."""

import json
import logging
import math

from gmvae_cv.cli import main

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def test_quick_demo_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["check_passed"] is True
    assert summary["latent_dim"] == 2 and summary["n_clusters"] == 4
    for key in ("unbiased_ns", "biased_ns", "ns_per_day_unbiased", "ns_per_day_biased", "slowest_its_ps"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0, key
    assert abs(summary["unbiased_ns"] - 0.4) < 1e-9 and abs(summary["biased_ns"] - 0.3) < 1e-6
    assert summary["training_temperature_K"] == 300.0 and abs(summary["training_ns"] - 0.4) < 1e-9
    # the reweighted FES has its minimum in a low-energy basin of the dipeptide (C7eq here)
    assert summary["fes_minimum_basin"] in ("C7eq", "C7ax")
    for f in ("report.md", "analysis/fes_phi_psi.png", "analysis/latent_space.png", "analysis/its.png", "analysis/ck.png",
              "exp/model_plumed.ptc", "md_train/traj.dcd", "bias/COLVAR", "bias/HILLS", "run/model.pt"):
        assert (out / f).is_file(), f
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 5
