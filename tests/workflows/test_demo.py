"""`gmvae-cv demo --quick`, run as README.md's first command says (read from README.md, with
``--quick`` appended): every stage of the default (explore) route runs, the summary holds computed,
plausible numbers, the bias acts without heating the system, a rerun reuses the stages; (slow) the
route with ``--train-temperature 700`` drives C7eq <-> C7ax transitions."""

import json
import logging
import math
from pathlib import Path

import pytest

import gmvae_cv
from md_commands import entry_point, readme_two_commands

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
ROOT = Path(__file__).resolve().parents[2]


def test_readme_first_command_quick_demo_runs_every_stage_and_resumes(tmp_path, monkeypatch, capsys):
    """The default route: a stuck 300 K run, explore (3 rounds of OPES-explore on the GMVAE CV),
    the reweighted free energies, the MSM, the rates, the report; a second call reuses everything."""
    pip, demo, _ = readme_two_commands()
    assert pip[:2] == ["pip", "install"] and pip[-1] == "." and (ROOT / "pyproject.toml").is_file()
    # the pip part installs this checkout; here it is already importable from it
    assert Path(gmvae_cv.__file__).resolve().is_relative_to(ROOT), "gmvae_cv does not import from this checkout"
    assert demo[0] == "gmvae-cv"
    main = entry_point()
    monkeypatch.chdir(tmp_path)
    assert main(demo[1:] + ["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "export check (PLUMED and OpenMM patterns): passed" in printed
    assert "explore from the 300 K run:" in printed
    out = tmp_path / demo[demo.index("--out") + 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["route"] == "explore" and summary["check_passed"] is True
    assert summary["latent_dim"] == 2 and summary["n_clusters"] == 4
    assert abs(summary["unbiased_ns"] - 0.4) < 1e-9 and summary["unbiased_frames_phi_positive"] == 0
    assert summary["n_rounds"] == 3 and 0 < summary["biased_ns"] <= 0.9 + 1e-6
    assert abs(summary["biased_ns"] - sum(q["biased_ns"] for q in summary["rounds"])) < 1e-6
    for key in ("ns_per_day_unbiased", "ns_per_day_biased", "fes_n_effective"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0, key
    # the round table: each round biases a CV of a round not after it; a round runs its 0.3 ns unless
    # the heating check stopped it, and a round after one that heated up trains its own GMVAE; the
    # rounds that ran did not heat the dipeptide
    for prev, q in zip([None, *summary["rounds"]], summary["rounds"]):
        assert q["cv_round"] <= q["round"]
        assert q["heated_up"] or abs(q["biased_ns"] - 0.3) < 1e-6
        if prev is not None and prev["heated_up"]:
            assert q["cv_round"] == q["round"]
        if not q["heated_up"]:
            assert abs(q["mean_kinetic_temperature_K"] - 300.0) < 35.0, q
    # the bias acted (OPES-explore fills towards its barrier)
    from gmvae_cv.analysis import read_plumed
    filled = max(max(read_plumed(out / "explore" / f"round_{q['round']:02d}" / "bias" / "COLVAR")["opes.bias"])
                 for q in summary["rounds"])
    assert filled > 10.0
    assert summary["fes_minimum_basin"] in ("C7eq", "C7ax")
    # the MSM on the 300 K run's latent space: its verdicts are computed at a 1 ps lag (0.4 ns is
    # too short to resolve the few-ps C7eq <-> C5 exchange within its errors)
    its = summary["slowest_its_ps"]
    assert len(its) == 3 and its[1] <= its[2] and summary["msm_lag_ps"] == 1.0 and summary["msm_states"] == 20
    assert isinstance(summary["its_resolved"], bool) and isinstance(summary["ck_passed"], bool)
    assert len(summary["msm_sets"]) == 2 and abs(sum(m["weight"] for m in summary["msm_sets"]) - 1.0) < 1e-6
    # the rates stage: 3 infrequent-metadynamics runs per direction on the CV the last round biased,
    # each either escaped or stopped at 0.5 ns; no statistics without 3 escapes, and then a warning says so
    assert summary["rates_cv_round"] == summary["rounds"][-1]["cv_round"]
    results = sorted((out / "rates" / "runs").glob("*/pace500/run*/result.json"))
    assert len(results) == 6
    runs = [json.loads(f.read_text()) for f in results]
    for r in runs:
        assert r["escaped"] or abs(r["biased_time_ps"] - 500.0) < 1.0, r
        assert r["rescaled_time_ps"] >= r["biased_time_ps"] - 1e-9  # the bias only speeds escapes up
    for direction in ("C7eq-C7ax", "C7ax-C7eq"):
        escaped = sum(r["escaped"] for r in runs if r["direction"] == direction)
        assert summary["rates_escaped"][direction] == escaped
        key = f"tau_{direction.split('-')[0].lower()}_to_{direction.split('-')[1].lower()}_ns"
        if escaped == 3:
            tau = summary[key]
            assert tau[1] <= tau[0] <= tau[2]
        else:
            assert summary[key] is None and any(direction in w and "did not reach" in w for w in summary["rates_warnings"])
    assert summary["rates_runs"] == sum(r["escaped"] for r in runs)
    assert "tau C7eq -> C7ax (infrequent metad):" in printed
    for f in ("report.md", "analysis/landscapes.png", "analysis/its.png", "analysis/ck.png", "analysis/fes_phi_psi.dat",
              "analysis/fes_latent.dat", "explore/delta_f.png", "explore/round_00/exp/model_plumed.ptc",
              "explore/reweighted.npz"):
        assert (out / f).is_file(), f
    assert main(demo[1:] + ["--quick"]) == 0
    again = capsys.readouterr().out
    assert again.count("reusing") == 1 and "[round 0] GMVAE" not in again and "all 6 run(s) done" in again
    assert json.loads((out / "summary.json").read_text())["rounds"] == summary["rounds"]


@pytest.mark.slow
def test_quick_demo_with_a_training_temperature_drives_transitions(tmp_path, capsys):
    """``--train-temperature 700``: the route that trains on a 700 K run and runs well-tempered
    metadynamics on its CV drives C7eq <-> C7ax transitions without heating the dipeptide."""
    main = entry_point()
    out = tmp_path / "hot"
    assert main(["demo", "--out", str(out), "--quick", "--train-temperature", "700"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["route"] == "train_temperature" and summary["check_passed"] is True
    for key in ("unbiased_ns", "biased_ns", "ns_per_day_unbiased", "ns_per_day_biased", "slowest_its_ps"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0, key
    assert abs(summary["unbiased_ns"] - 0.4) < 1e-9 and abs(summary["biased_ns"] - 1.0) < 1e-6
    assert summary["training_temperature_K"] == 700.0 and abs(summary["training_ns"] - 2.0) < 1e-9
    assert summary["transitions_biased"] >= 1
    assert abs(summary["biased_mean_kinetic_temperature_K"] - 300.0) < 15.0
    for f in ("report.md", "analysis/fes_phi_psi.png", "analysis/latent_space.png", "analysis/its.png", "analysis/ck.png",
              "exp/model_plumed.ptc", "md_train/traj.dcd", "bias/COLVAR", "bias/HILLS", "run/model.pt"):
        assert (out / f).is_file(), f
