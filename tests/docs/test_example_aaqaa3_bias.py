"""examples/aaqaa3_bias.py: core-set transitions on hand-made sequences, and the --quick form (train,
export, check, bias, unbiased) with a check that the deposited bias acts on the dynamics."""

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aaqaa3_bias.py"


def _module():
    spec = importlib.util.spec_from_file_location("aaqaa3_bias_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_core_transitions_skip_the_partly_helical_frames():
    ct = _module().core_transitions
    # helix, frays (1), all-coil, back through 1 to helix, frays, coil: three passages
    assert ct(np.array([2, 2, 1, 0, 0, 1, 2, 1, 1, 0])) == {"transitions": 3, "helix_to_coil": 2, "coil_to_helix": 1}
    # fraying and refolding without reaching the coil core is no transition
    assert ct(np.array([2, 1, 1, 2, 1, 2, 2]))["transitions"] == 0
    assert ct(np.array([0, 1, 0, 1, 1, 0]))["transitions"] == 0
    assert ct(np.array([0, 2, 0, 2]))["transitions"] == 3
    assert ct(np.array([1, 1, 1]))["transitions"] == 0


def test_running_median_removes_a_one_frame_flicker_and_keeps_a_2ps_coil():
    mod = _module()
    n_h = np.array([10, 10, 10, 0, 10, 10, 10, 0, 0, 0, 0, 0, 10])
    np.testing.assert_array_equal(mod.running_median(n_h, 5), [10] * 7 + [0] * 5 + [10])
    np.testing.assert_array_equal(mod.running_median(n_h, 1), n_h)
    base = mod._base
    assert mod.core_transitions(base.dssp_state(n_h))["transitions"] == 4
    assert mod.core_transitions(base.dssp_state(mod.running_median(n_h, 5)))["transitions"] == 2
    with pytest.raises(ValueError, match="odd"):
        mod.running_median(n_h, 4)


@pytest.mark.slow
def test_aaqaa3_bias_quick_exports_checks_and_biases(tmp_path):
    from gmvae_cv import load_cv, read_plumed, run_metadynamics
    from gmvae_cv.systems import AAQAA3

    mod = _module()
    out, work = tmp_path / "figs", tmp_path / "work"
    s = mod.main(["--quick", "--out", str(out), "--work", str(work), "--seeds", "0", "--method", "metad"])
    for f in ("bias.json", "bias_helicity.png", "bias_cv.png"):
        assert (out / f).is_file(), f
    assert json.loads((out / "bias.json").read_text())["seeds"] == json.loads(json.dumps(s["seeds"]))
    assert s["export_check"]["passed"] and all(r["passed"] for r in s["export_check"]["rows"])
    (row,) = s["seeds"]
    b, u = row["biased"], row["unbiased"]
    n_steps = int(round(s["md"]["ns_per_run"] * 1000 / mod.TIMESTEP_PS))
    assert b["n_hills"] == n_steps // mod.PACE >= 4
    assert b["route"] == "native"  # GBn2, no box, float64: the native kernel
    assert b["final_bias_kJ_mol"] > 0.0
    assert b["ns"] == u["ns"] and sum(b["state_fractions"].values()) == pytest.approx(1.0)
    # 4 ps from the built helix stays helical, biased or not
    assert b["mean_helicity"] > 0.5 and u["mean_helicity"] > 0.5

    # the bias acts: the same run with the same seed and half the hill height is identical row for
    # row until the first hill (step PACE) takes effect, and differs after it
    cv = load_cv(work / "exp")
    pep = AAQAA3("helix", hydrogen_mass=1.5)
    z = {}
    for h in (1.2, 0.6):
        d = tmp_path / f"h{h}"
        run_metadynamics(cv, d, system=pep.create_system(), topology=pep.topology, positions=pep.positions,
                         n_steps=3 * mod.PACE, method="metad", sigma=s["method"]["sigma"],
                         height=h, bias_factor=10.0, pace=mod.PACE, temperature=340.0, timestep=mod.TIMESTEP_PS,
                         seed=0, platform="CPU", walls=True, traj_stride=0, colvar_stride=50)
        col = read_plumed(d / "COLVAR")
        z[h] = (np.asarray(col["time"]), np.column_stack([col[n] for n in cv.names]), np.asarray(col["metad.bias"]))
    t, z_a, bias_a = z[1.2]
    z_b, bias_b = z[0.6][1], z[0.6][2]
    before = t <= mod.PACE * mod.TIMESTEP_PS + 1e-9
    assert before.sum() >= 4 and (~before).sum() >= 8
    np.testing.assert_array_equal(z_a[before], z_b[before])
    assert np.all(bias_a[t < mod.PACE * mod.TIMESTEP_PS - 1e-9] == 0.0)
    late = t >= 2 * mod.PACE * mod.TIMESTEP_PS
    assert np.max(np.abs(z_a[late] - z_b[late])) > 1e-3
    assert bias_a[-1] > bias_b[-1] > 0.0
