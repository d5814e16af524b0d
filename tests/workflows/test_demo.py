"""`gmvae-cv demo --quick`, run as README.md's first command says (read from README.md, with
``--quick`` appended): every stage runs, the summary holds computed, plausible numbers, the CV
drives C7eq <-> C7ax transitions without heating the system, a rerun reuses the stages."""

import json
import logging
import math
from pathlib import Path

import gmvae_cv
from md_commands import entry_point, readme_two_commands

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
ROOT = Path(__file__).resolve().parents[2]


def test_readme_first_command_quick_demo_runs_every_stage_and_resumes(tmp_path, monkeypatch, capsys):
    pip, demo, _ = readme_two_commands()
    assert pip[:2] == ["pip", "install"] and pip[-1] == "." and (ROOT / "pyproject.toml").is_file()
    # the pip part installs this checkout; here it is already importable from it
    assert Path(gmvae_cv.__file__).resolve().is_relative_to(ROOT), "gmvae_cv does not import from this checkout"
    assert demo[0] == "gmvae-cv"
    main = entry_point()
    monkeypatch.chdir(tmp_path)
    assert main(demo[1:] + ["--quick"]) == 0
    assert "export check (PLUMED and OpenMM patterns): passed" in capsys.readouterr().out
    out = tmp_path / demo[demo.index("--out") + 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["check_passed"] is True
    assert summary["latent_dim"] == 2 and summary["n_clusters"] == 4
    for key in ("unbiased_ns", "biased_ns", "ns_per_day_unbiased", "ns_per_day_biased", "slowest_its_ps"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0, key
    assert abs(summary["unbiased_ns"] - 0.4) < 1e-9 and abs(summary["biased_ns"] - 1.0) < 1e-6
    assert summary["training_temperature_K"] == 700.0 and abs(summary["training_ns"] - 2.0) < 1e-9
    # the CV drives the dipeptide over the phi barrier, and the bias does not heat it
    assert summary["transitions_biased"] >= 1
    assert abs(summary["biased_mean_kinetic_temperature_K"] - 300.0) < 15.0
    # the reweighted FES has its minimum in a low-energy basin of the dipeptide (C7eq here)
    assert summary["fes_minimum_basin"] in ("C7eq", "C7ax")
    for f in ("report.md", "analysis/fes_phi_psi.png", "analysis/latent_space.png", "analysis/its.png", "analysis/ck.png",
              "exp/model_plumed.ptc", "md_train/traj.dcd", "bias/COLVAR", "bias/HILLS", "run/model.pt"):
        assert (out / f).is_file(), f
    capsys.readouterr()
    assert main(demo[1:] + ["--quick"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 5
