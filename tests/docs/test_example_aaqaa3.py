"""examples/aaqaa3.py in its --quick form: MD from the helix and the extended start, 60 features,
k chosen, GMVAE, DSSP comparison and explain all run and agree with each other."""

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aaqaa3.py"


@pytest.mark.slow
def test_aaqaa3_example_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("aaqaa3_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "figs"
    s = mod.main(["--quick", "--out", str(out), "--work", str(tmp_path / "work")])
    for f in ("latent_fes_helicity.png", "helix_profile.png", "confusion_dssp.png", "select_k.png",
              "summary.json", "explain/explain.json", "explain/residues.png"):
        assert (out / f).is_file(), f
    assert s["n_features"] == 60 and s["n_frames"] == 200
    # 2 ps from the built helix stays helical, 2 ps from the extended chain stays coil
    assert s["dssp"]["mean_helicity_per_start"]["helix"] > 0.6
    assert s["dssp"]["mean_helicity_per_start"]["extended"] == 0.0
    assert s["k"] in (2, 3)
    pops = [c["population"] for c in s["clusters"].values()]
    assert sum(pops) == pytest.approx(1.0)
    m = np.array(s["confusion_dssp"]["matrix"])
    assert m.sum() == 200 and m.shape == (3, s["k"])
    # the clusters separate the helical frames from the coil frames
    hel = [c["mean_helicity"] for c in s["clusters"].values() if c["population"] > 0]
    assert max(hel) > 0.6 and min(hel) < 0.1
    for c, v in s["clusters"].items():
        if v["population"] > 0:
            assert (out / v["representative"]["file"]).is_file()
    assert json.loads((out / "summary.json").read_text())["k"] == s["k"]
