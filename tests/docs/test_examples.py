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
