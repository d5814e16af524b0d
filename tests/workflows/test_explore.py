"""explore: the dF estimator against closed forms, bad input, and (slow) the loop on alanine dipeptide.

The slow tests run real OpenMM metadynamics: one kills ``explore`` with SIGKILL inside a biased run and
checks that the next call continues that round (earlier stages untouched, the biased run resumed from
its checkpoint); the other starts from 300 K frames without phi > 0 and asserts that C7ax is reached.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.analysis.states import count_transitions, delta_f, delta_f_phi, delta_f_running
from gmvae_cv.workflows.explore import EXPLORE_FORMAT, ExploreSettings, explore

ROOT = Path(__file__).resolve().parents[2]
KT = 0.008314462618 * 300.0


# ------------------------------------------------------------------ the estimator
def test_delta_f_weighted_equals_closed_form_and_error_matches_binomial():
    rng = np.random.default_rng(1)
    n = 200_000
    # frames drawn uniformly on [-pi, pi), weighted with exp(-beta U), U = 3 kJ/mol where phi > 0:
    # F(phi > 0) - F(phi < 0) = 3 kJ/mol exactly (equal areas)
    phi = rng.uniform(-np.pi, np.pi, n)
    logw = np.where(phi > 0, -3.0 / KT, 0.0)
    d = delta_f_phi(phi, logw, KT)
    assert abs(d.value - 3.0) < 4 * d.error
    # independent frames: the jackknife error is the delta-method error of the weighted estimate
    # sqrt(Var) of -kT ln(W_b / W_a), W = sum of weights of uniform frames, to within the noise
    # of a 10-block jackknife (about 25 %)
    var = KT**2 / (n * 0.5 * 0.5)  # kT^2 Var(ln(N_b / N_a)), N_b binomial(n, 1/2)
    assert 0.6 < d.error / math.sqrt(var) < 1.5, (d.error, math.sqrt(var))
    # degrees are refused, angles beyond pi are wrapped (phi + 2 pi is the same torsion)
    with pytest.raises(GMVAEInputError, match="radians"):
        delta_f_phi(np.degrees(phi[:10]) * 10, logw[:10], KT)
    assert math.isclose(delta_f_phi(np.where(phi < 0, phi + 2 * np.pi, phi), logw, KT).value, d.value, rel_tol=1e-12)


def test_delta_f_hand_counted_and_running_prefixes():
    a = np.array([True, True, False, False, True, False])
    b = np.array([False, False, True, True, False, False])
    logw = np.log([1.0, 2.0, 1.0, 3.0, 1.0, 5.0])
    d = delta_f(a, b, logw, 1.0, n_blocks=3)
    assert math.isclose(d.value, -math.log(4.0 / 4.0), abs_tol=1e-12)
    run = delta_f_running(a, b, logw, 1.0, [3, 4])
    assert math.isclose(run[0].value, -math.log(1.0 / 3.0))
    assert math.isclose(run[1].value, -math.log(4.0 / 3.0))
    assert math.isnan(delta_f(a, np.zeros(6, bool), logw, 1.0).value)  # an empty set gives no value, not a number
    assert delta_f(a, np.zeros(6, bool), logw, 1.0).to_list() == [None, None]
    with pytest.raises(GMVAEInputError, match="in_b"):
        delta_f(a, b.astype(int), logw, 1.0)


def test_count_transitions_skips_frames_outside_both_core_sets():
    assert count_transitions([0, -1, 0, -1, 1, 1, -1, 0, 0, 1]) == 3
    assert count_transitions([0, 0, -1, -1]) == 0
    assert count_transitions([1, -1, 1]) == 0


# ------------------------------------------------------------------ bad input
def _fake_traj(tmp_path: Path, sibling: dict | None = None, name: str = "run.json") -> Path:
    d = tmp_path / "frames"
    d.mkdir(parents=True, exist_ok=True)
    (d / "traj.dcd").write_bytes(b"\0" * 64)  # never read: the check comes first
    if sibling is not None:
        (d / name).write_text(json.dumps(sibling))
    return d / "traj.dcd"


def test_round_budget_below_one_unknown_method_and_bad_barrier_are_refused(tmp_path):
    with pytest.raises(GMVAEInputError, match="'rounds'"):
        ExploreSettings(rounds=0).validate()
    t = _fake_traj(tmp_path)
    with pytest.raises(GMVAEInputError, match="'rounds'"):
        explore(tmp_path / "x", traj=t, top=t, rounds=0)
    with pytest.raises(GMVAEInputError, match="'method'"):
        explore(tmp_path / "x", traj=t, top=t, method="opes-metad")
    with pytest.raises(GMVAEInputError, match="'barrier'"):
        ExploreSettings(method="opes", barrier=0.0).validate()
    assert ExploreSettings(method="opes-explore").validate().barrier == 40.0
    assert not (tmp_path / "x").exists()


def test_frames_of_a_biased_run_without_weights_are_refused(tmp_path):
    t = _fake_traj(tmp_path, {"format": "gmvae-cv/metadynamics-run"})
    with pytest.raises(GMVAEInputError, match="biased run.*input_logw"):
        explore(tmp_path / "x", traj=t, top=t)
    t2 = _fake_traj(tmp_path / "hot", {"temperature_K": 700.0, "frame_interval_ps": 1.0}, "simulation.json")
    with pytest.raises(GMVAEInputError, match="700.*300"):
        explore(tmp_path / "y", traj=t2, top=t2)


def test_a_dir_of_another_command_or_system_is_refused(tmp_path):
    t = _fake_traj(tmp_path)
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "settings.json").write_text("{}")
    (demo / "summary.json").write_text("{}")
    with pytest.raises(GMVAEInputError, match="not an explore run"):
        explore(demo, traj=t, top=t)
    other = tmp_path / "other"
    other.mkdir()
    (other / "explore.json").write_text(json.dumps({"format": EXPLORE_FORMAT, "system": {
        "name": "user", "system_sha256": "0" * 64, "n_atoms": 22}}))
    with pytest.raises(GMVAEInputError, match="another system"):
        explore(other, traj=t, top=t)
    bias = tmp_path / "bias"
    bias.mkdir()
    (bias / "explore.json").write_text(json.dumps({"format": "gmvae-cv/metadynamics-run"}))
    with pytest.raises(GMVAEInputError, match="another command"):
        explore(bias, traj=t, top=t)


def test_an_exp_whose_features_do_not_fit_the_system_is_refused(tmp_path):
    from gmvae_cv.features import alanine_heavy_atom_distances

    spec = alanine_heavy_atom_distances().to_dict()
    spec["n_atoms"] = 30  # an export made for a 30-atom system
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "cv.json").write_text(json.dumps({"feature_spec": spec}))
    t = _fake_traj(tmp_path)
    with pytest.raises(GMVAEInputError, match="22 atoms.*n_atoms = 30"):
        explore(tmp_path / "x", traj=t, top=t, spec=exp)
    with pytest.raises(GMVAEInputError, match="cv.json"):
        explore(tmp_path / "x", traj=t, top=t, spec=tmp_path)  # a directory that is no export
    with pytest.raises(GMVAEInputError, match="features, the spec has 25"):
        explore(tmp_path / "z", data=np.zeros((50, 7)))


def test_cli_names_a_parameter_of_another_method(capsys):
    from gmvae_cv.cli.main import main

    rc = main(["explore", "--out", "unused", "--system", "alanine-dipeptide", "--traj", "t.dcd", "--top", "t.pdb",
               "--method", "opes", "--bias-factor", "8"])
    assert rc == 2
    assert "--bias-factor" in capsys.readouterr().err
    rc = main(["explore", "--out", "unused", "--system", "alanine-dipeptide", "--traj", "t.dcd", "--top", "t.pdb",
               "--barrier", "30"])
    assert rc == 2
    assert "--barrier belong(s) to --method opes" in capsys.readouterr().err


# ------------------------------------------------------------------ the loop (real MD)
_RUNNER = """
import sys
sys.path.insert(0, {root!r})
from gmvae_cv.workflows.explore import explore
explore({out!r}, traj={traj!r}, top={top!r}, rounds=2, ns_per_round=0.06, epochs=3, seed=5, cv_policy="retrain")
"""


@pytest.fixture(scope="module")
def cold_frames(tmp_path_factory):
    """0.2 ns of unbiased 300 K alanine dipeptide from C7eq (no frame with phi > 0)."""
    from gmvae_cv.systems import AlanineDipeptide

    d = tmp_path_factory.mktemp("cold")
    res = AlanineDipeptide().simulate(100_000, 500, d, temperature=300.0, seed=2, platform="Reference")
    return res.trajectory, res.topology


@pytest.mark.slow
def test_a_killed_explore_continues_the_round_it_was_in(tmp_path, cold_frames):
    traj, top = cold_frames
    out = tmp_path / "ex"
    code = _RUNNER.format(root=str(ROOT), out=str(out), traj=str(traj), top=str(top))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "round_01" / "bias" / "checkpoint.npz"
    deadline = time.time() + 1500
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert ckpt.exists(), "round 1's biased run never wrote a checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "round_01" / "bias_stage" / "done.json").exists(), "killed too late: round 1 had finished"
    before = {p: p.read_bytes() for p in out.glob("round_0*/*stage/done.json")}
    before_r0 = (out / "round_00" / "analysis" / "done.json").read_bytes()
    summary = explore(out, traj=traj, top=top, rounds=2, ns_per_round=0.06, epochs=3, seed=5, cv_policy="retrain")
    # the stages finished before the kill were not redone
    for p, data in before.items():
        assert p.read_bytes() == data, p
    assert (out / "round_00" / "analysis" / "done.json").read_bytes() == before_r0
    bias = json.loads((out / "round_01" / "bias_stage" / "done.json").read_text())
    assert bias["resumed_from"] is not None and bias["resumed_from"] > 0
    colvar = np.loadtxt(out / "round_01" / "bias" / "COLVAR", comments="#")
    assert np.all(np.diff(colvar[:, 0]) > 0), "the continued COLVAR repeats or skips rows"
    assert colvar[-1, 0] == pytest.approx(60.0)
    assert summary["n_rounds"] == 2 and summary["biased_ns_total"] == pytest.approx(0.12)
    rw = np.load(summary["reweighted"])
    assert set(rw.files) == {"phi", "psi", "logw"} and len(rw["phi"]) == len(rw["logw"]) > 0
    # a third call with a larger budget continues with round 2
    assert json.loads((out / "summary.json").read_text())["stop_reason"].startswith("round budget")


@pytest.mark.slow
def test_a_kept_cv_continues_its_biased_run(tmp_path, cold_frames, monkeypatch):
    """A kept CV: round 1 exports nothing, continues round 0's run (its first rows are round 0's,
    bit for bit), analyses all of it, and trains the next round on its own frames only. (30 ps
    from C7eq do not cross: round 0's analysis is made to say it crossed before round 1 plans.)"""
    import gmvae_cv.workflows.explore.loop as loop
    from gmvae_cv.workflows.explore.state import round_plan

    def plan_as_if_crossed(out_dir, r, cfg):
        if r == 1 and not (out_dir / "round_01" / "plan.json").exists():
            a = out_dir / "round_00" / "analysis" / "analysis.json"
            a.write_text(json.dumps({**json.loads(a.read_text()), "transitions_per_ns": 100.0}))
        return round_plan(out_dir, r, cfg)

    monkeypatch.setattr(loop, "round_plan", plan_as_if_crossed)
    traj, top = cold_frames
    out = tmp_path / "ex"
    summary = explore(out, traj=traj, top=top, rounds=2, ns_per_round=0.03, epochs=3, seed=5, keep_method=None)
    plan = json.loads((out / "round_01" / "plan.json").read_text())
    assert plan["cv_round"] == 0 and plan["continues"] == 0 and plan["segment"] == 1
    assert json.loads((out / "round_01" / "exp_stage" / "done.json").read_text())["kept_cv_of_round"] == 0
    assert not (out / "round_01" / "exp").exists()
    c0 = (out / "round_00" / "bias" / "COLVAR").read_text().splitlines()
    c1 = (out / "round_01" / "bias" / "COLVAR").read_text().splitlines()
    rows0 = [q for q in c0 if not q.startswith("#")]
    rows1 = [q for q in c1 if not q.startswith("#")]
    assert len(rows1) == 2 * len(rows0) and rows1[: len(rows0)] == rows0
    assert float(rows1[-1].split()[0]) == pytest.approx(60.0)
    assert len(np.load(out / "round_01" / "analysis" / "features.npy")) == 30  # its own 30 ps at 1 ps per frame
    fr = np.load(out / "round_01" / "analysis" / "frames.npz")
    assert fr["traj_segment"].sum() == 30 and len(fr["traj_segment"]) == 60
    r1 = summary["rounds"][1]
    assert r1["cv_round"] == 0 and r1["continues"] == 0 and r1["run_ns"] == pytest.approx(0.06)
    assert summary["biased_ns_total"] == pytest.approx(0.06)
    assert len(np.load(summary["reweighted"])["phi"]) == int(fr["keep"].sum()) > len(rows0)


@pytest.mark.slow
def test_explore_with_opes_explore_reaches_c7ax_and_keeps_crossing(tmp_path):
    """The default demo's settings (OPES-explore, 1 ns rounds, the keep rule) from the demo's own
    4 ns 300 K start (seed 0, no frame with phi > 0): C7ax is reached, a CV is kept, and the kept
    run crosses at least 10 times per ns (benchmarks/explore_keep.json, seed 0: rounds 5-9)."""
    import mdtraj as md
    from gmvae_cv.systems import AlanineDipeptide

    res = AlanineDipeptide().simulate(2_000_000, 500, tmp_path / "md300", temperature=300.0, seed=0)
    phi0 = md.compute_phi(md.load(str(res.trajectory), top=str(res.topology)))[1][:, 0]
    assert not np.any(phi0 > 0), "the 300 K start already visits phi > 0"
    summary = explore(tmp_path / "ex", traj=res.trajectory, top=res.topology, rounds=8, ns_per_round=1.0, epochs=100,
                      seed=0, method="opes-explore")
    assert summary["first_transition_ns"] is not None
    kept = [q for q in summary["rounds"] if q["cv_round"] != q["round"]]
    assert kept, [q["transitions_per_ns"] for q in summary["rounds"]]
    assert kept[-1]["transitions_per_ns"] >= 10


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured (benchmarks/explore.json): with method='metad' and short rounds the loop "
                   "stalls at phi < -0.2 rad (3 seeds x 5 rounds x 0.4 ns: no C7ax); remove this mark when it passes")
def test_explore_reaches_c7ax_from_300k_frames(tmp_path, cold_frames):
    import mdtraj as md

    traj, top = cold_frames
    phi0 = md.compute_phi(md.load(str(traj), top=str(top)))[1][:, 0]
    assert not np.any(phi0 > 0), "the 300 K start already visits phi > 0"
    summary = explore(tmp_path / "ex", traj=traj, top=top, rounds=4, ns_per_round=0.3, epochs=60, seed=0)
    assert summary["first_transition_ns"] is not None, [q["fraction_phi_positive"] for q in summary["rounds"]]
    assert summary["rounds"][-1]["transitions"] > 0


def test_stop_rule_needs_agreeing_estimates_with_small_errors():
    """Three rounds without a new cluster stop the loop only when their dF estimates agree within
    ``stable_sigmas`` combined errors AND each error is at most ``max_df_error``: large errors (a
    retrained CV that lost the transitions) agree with anything and must not stop it."""
    from gmvae_cv.workflows.explore import ExploreSettings
    from gmvae_cv.workflows.explore.round_analysis import stop_rule

    cfg = ExploreSettings(rounds=8, ns_per_round=1.0).validate()
    none = {"new": []}

    def rounds(*df):
        return [{"delta_f_phi_pos_minus_neg_kjmol": list(v), "clusters": none} for v in df]

    assert stop_rule(rounds((9.0, 0.8), (9.5, 0.9), (9.2, 0.7)), none, cfg) is not None
    assert stop_rule(rounds((10.1, 0.9), (9.1, 0.9), (18.5, 13.7)), none, cfg) is None  # seed 2, 1 ns rounds
    assert stop_rule(rounds((9.0, 0.5), (12.0, 0.5), (9.2, 0.5)), none, cfg) is None  # disagree
    assert stop_rule(rounds((9.0, 0.8), (9.5, 0.9), (9.2, 0.7)), {"new": [3]}, cfg) is None  # a new cluster
    loose = ExploreSettings(rounds=8, ns_per_round=1.0, max_df_error=20.0).validate()
    assert stop_rule(rounds((10.1, 0.9), (9.1, 0.9), (18.5, 13.7)), none, loose) is not None


def test_round_plan_keeps_a_cv_once_it_crosses(tmp_path):
    from gmvae_cv.workflows.explore.state import round_plan

    def analysed(out, r, rate):
        (out / f"round_{r:02d}" / "analysis").mkdir(parents=True, exist_ok=True)
        (out / f"round_{r:02d}" / "analysis" / "analysis.json").write_text(json.dumps({"transitions_per_ns": rate}))

    def key(p):
        return p["cv_round"], p["method"], p["continues"], p["segment"]

    keep = ExploreSettings(method="opes-explore").validate()  # keep_method 'opes', 10 crossings per ns
    out = tmp_path / "a"
    (out / "round_00").mkdir(parents=True)
    assert key(round_plan(out, 0, keep)) == (0, "opes-explore", None, 0)
    analysed(out, 0, 8.0)  # round 0 crossed too little: round 1 biases its own GMVAE
    assert key(round_plan(out, 1, keep)) == (1, "opes-explore", None, 0)
    analysed(out, 1, 30.0)  # round 1 crossed: its CV is kept, with a fresh OPES_METAD run
    p2 = round_plan(out, 2, keep)
    assert key(p2) == (1, "opes", None, 0) and p2["seed"] == keep.seed + 2000
    analysed(out, 2, 0.0)  # its first round fills the bias: continued whatever it crossed
    p3 = round_plan(out, 3, keep)
    assert key(p3) == (1, "opes", 2, 1) and p3["seed"] == p2["seed"]
    analysed(out, 3, 12.0)  # ... and in the rounds after while it crosses
    assert key(round_plan(out, 4, keep)) == (1, "opes", 3, 2)
    analysed(out, 4, 5.0)  # the kept CV's run stopped crossing: a new GMVAE, the exploring method
    assert key(round_plan(out, 5, keep)) == (5, "opes-explore", None, 0)
    # a restarted round does what it began, whatever the analysis says now
    analysed(out, 2, 50.0)
    assert round_plan(out, 3, keep) == p3
    analysed(out, 5, 40.0)
    a = out / "round_05" / "analysis" / "analysis.json"
    a.write_text(json.dumps({"transitions_per_ns": 40.0, "unstable": "walker 0, step 273500: kinetic temperature 939 K"}))
    (out / "round_06").mkdir()
    assert round_plan(out, 6, keep)["cv_round"] == 6  # a run that heated up: its CV is not kept
    (out / "round_06" / "plan.json").unlink()
    analysed(out, 5, None)  # no named states (transitions None): never kept
    assert round_plan(out, 6, keep)["cv_round"] == 6
    # keep_method None: the kept run is continued as it is
    same = ExploreSettings(method="opes-explore", keep_method=None).validate()
    out = tmp_path / "b"
    (out / "round_00").mkdir(parents=True)
    round_plan(out, 0, same)
    analysed(out, 0, 15.0)
    assert key(round_plan(out, 1, same)) == (0, "opes-explore", 0, 1)
    # 'retrain': every round its own
    out = tmp_path / "c"
    (out / "round_00").mkdir(parents=True)
    round_plan(out, 0, ExploreSettings(cv_policy="retrain").validate())
    analysed(out, 0, 50.0)
    assert round_plan(out, 1, ExploreSettings(cv_policy="retrain").validate())["cv_round"] == 1
    with pytest.raises(GMVAEInputError, match="cv_policy"):
        ExploreSettings(cv_policy="sometimes").validate()
    with pytest.raises(GMVAEInputError, match="keep_method"):
        ExploreSettings(keep_method="umbrella").validate()


def test_transitions_of_a_run_split_into_rounds_are_counted_once():
    """A continued run's round counts the transitions after its start, with the core sets
    remembering the basin before it: the rounds' counts add up to the whole run's."""
    from gmvae_cv.workflows.explore.round_analysis import _alanine_transitions

    rng = np.random.default_rng(4)
    n = 4000
    in_ax = np.cumsum(rng.random(n) < 0.01) % 2 == 1
    phi = np.radians(np.where(in_ax, 70.0, -80.0)) + 0.05 * rng.standard_normal(n)  # C7ax / C7eq centres
    psi = np.radians(np.where(in_ax, -50.0, 60.0))
    phi[rng.random(n) < 0.1] = 0.1  # between the core sets
    t = np.arange(1, n + 1) * 0.5  # ps
    rows = [{"phi": phi, "psi": psi, "time": t}]
    whole = _alanine_transitions(rows, 2.0)
    parts = [_alanine_transitions(rows, 1.0, 0.0), _alanine_transitions(rows, 1.0, 1000.0)]
    first_half = _alanine_transitions([{k: v[:2000] for k, v in rows[0].items()}], 1.0)
    assert whole["transitions"] > 20
    assert parts[0]["transitions"] == whole["transitions"]
    assert first_half["transitions"] + parts[1]["transitions"] == whole["transitions"]
    assert parts[1]["first_transition_in_round_ns"] is not None and 0 < parts[1]["first_transition_in_round_ns"] <= 1.0
