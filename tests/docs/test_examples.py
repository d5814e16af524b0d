"""Example scripts run in their --quick form and reproduce their headline result."""

import importlib.util
import math
import logging
from pathlib import Path

import pytest

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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


def test_muller_brown_example(tmp_path):
    summary = _load("muller_brown").main(["--out", str(tmp_path), "--quick"])
    for f in ("clusters.png", "latent.png", "confusion.png", "its.png", "ck.png"):
        assert (tmp_path / f).stat().st_size > 5000, f
    assert (tmp_path / "summary.json").is_file()
    # each basin's core set is owned by its own cluster
    assert summary["distinct_top_clusters"] == 3, summary["confusion_matrix"]
    assert min(summary["core_owner_purity"].values()) >= 0.9, summary["core_owner_purity"]
    # the cluster MSM resolves the B <-> C exchange and passes its CK test
    msm = summary["msm"]
    assert {"B", "C"} <= set(msm["active_basins"])
    assert msm["slowest_its_at_model_lag"] > msm["lagtime_frames"] * msm["dt"]
    assert msm["ck_max_abs_deviation"] < 0.15


def test_time_lagged_example(tmp_path):
    summary = _load("time_lagged").main(["--out", str(tmp_path), "--quick"])
    for f in ("z_vs_coordinates.png", "timeseries.png"):
        assert (tmp_path / f).stat().st_size > 5000, f
    assert (tmp_path / "summary.json").is_file()
    plain, lagged = summary["models"]["plain"], summary["models"]["lagged"]
    # without a lag z follows the fast flip, with a lag the slow coordinate
    assert plain["corr_z_fast"] > plain["corr_z_slow"] + 0.3, plain
    assert lagged["corr_z_slow"] > 0.9 and lagged["corr_z_slow"] > plain["corr_z_slow"] + 0.5, lagged
    assert lagged["corr_z_fast"] < 0.3, lagged
    # not a collapsed model: z spreads
    assert lagged["z_std"] > 0.3, lagged


def test_alanine_dipeptide_example(tmp_path):
    summary = _load("alanine_dipeptide").main(["--out", str(tmp_path), "--quick"])
    for f in ("fes.png", "clusters.png", "its.png", "ck.png"):
        assert (tmp_path / f).stat().st_size > 5000, f
    assert (tmp_path / "summary.json").is_file()
    assert summary["n_features"] == 25
    # the Ramachandran free energy has its minimum in C7eq, and so do the frames of the latent minimum
    assert summary["ramachandran_fes_minimum_basin"] == "C7eq", summary["ramachandran_fes_minimum_deg"]
    assert summary["latent_minimum_frames_in_c7eq"] >= 0.8
    # the cluster MSM has a finite slowest timescale that the model lag resolves
    its = summary["msm"]["slowest_its_at_model_lag_ps"]
    assert its is not None and math.isfinite(its) and its > summary["msm"]["lagtime_ps"]


@pytest.mark.slow
def test_water_msm_example_quick_runs_every_stage_and_resumes(tmp_path, capsys):
    """The explicit-water example at tiny sizes (about a minute): an equilibrated box near water's
    density, the biased frames' states, the seeded runs on Dask, the MSM's verdicts; a second call
    does no MD."""
    import json

    mod = _load("alanine_water_msm")
    args = ["--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert mod.main(args) == 0
    r = json.loads((tmp_path / "out" / "result.json").read_text())
    assert r["system"]["atoms"] == 697 and 0.9 < r["system"]["density_g_per_ml"] < 1.1
    assert r["state_frames_biased"]["beta"] > 0 and r["starts"]["beta"] == 2
    assert abs(r["seeded_ns"] - 0.02 * sum(r["starts"].values())) < 1e-9
    v = r["msm"]["slowest_its_ps"]
    assert 0 < v[1] <= v[2] and v[0] > 0
    # runs of 20 ps hold lags up to 2 ps only: too few to call any timescale resolved
    assert r["msm"]["its_resolved"] is False and "lag(s) from the model lag up" in r["msm"]["its_reason"]
    assert (tmp_path / "out" / "seeded_phipsi.npz").is_file()
    for f in ("its.png", "ck.png", "states.png", "msm.json"):
        assert (tmp_path / "out" / f).is_file(), f
    capsys.readouterr()
    assert mod.main(args) == 0
    assert "seeded run(s) of" not in capsys.readouterr().out  # nothing left to run
