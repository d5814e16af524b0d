"""gmvae-cv explain: sensitivities (mlcolvar) against finite differences, the toys' known answers,
cluster statistics against NumPy, per-residue folding on a peptide spec, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from gmvae_cv import FourWell, GMVAEInputError, MullerBrown, fit
from gmvae_cv.analysis.explain import cluster_statistics, explain, sensitivity

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def mb_noise(tmp_path_factory):
    """Mueller-Brown (x, y) plus a third column of pure Gaussian noise (same spread as x)."""
    mb = MullerBrown(kT=8.0)
    traj = mb.simulate(10_000, n_walkers=6, stride=20, seed=3)
    rng = np.random.default_rng(0)
    trajs = [np.column_stack([t, rng.normal(0.0, 0.5, len(t))]) for t in traj]
    out = tmp_path_factory.mktemp("mbn") / "run"
    run = fit(trajs, k=3, latent_dim=1, epochs=40, batch_size=500, lr=3e-3, seed=0, progress=False, out=out)
    return run, np.concatenate(trajs)


def test_noise_feature_ranks_last_on_mueller_brown(mb_noise, tmp_path):
    run, x = mb_noise
    rep = explain(run, x, out=tmp_path)
    sens = np.array(rep["sensitivity"])
    assert sens.shape == (1, 3) and sens.sum() == pytest.approx(1.0)
    assert rep["ranking"]["z0"][-1] == "x2", sens  # the noise column
    assert sens[0, 2] < 0.5 * sens[0, :2].min(), sens
    assert rep["feature_names_from"] == "column numbers from 0 (the run has no feature spec)"
    # the noise separates no cluster: its standardised difference is the smallest in every cluster
    for c, st in rep["clusters"]["per_cluster"].items():
        d = np.abs(st["d"])
        assert d[2] < d[:2].max() and d[2] < 0.5, (c, d)
    for f in ("explain.json", "sensitivity.csv", "clusters.csv", "sensitivity.png", "cluster_separation.png"):
        assert (tmp_path / f).is_file(), f
    assert not (tmp_path / "residues.png").exists()  # no residues without a spec
    assert json.loads((tmp_path / "explain.json").read_text())["ranking"] == rep["ranking"]
    lines = (tmp_path / "sensitivity.csv").read_text().splitlines()
    assert lines[0] == "column,feature,sensitivity_z0,rank_z0" and lines[3].startswith("2,x2,") and lines[3].endswith(",3")


def test_sensitivity_matches_finite_differences(mb_noise):
    """mlcolvar's MAV sensitivity of z0 against central differences of the model, times the spread."""
    import torch

    run, x = mb_noise
    xs = x[::7]
    ref = np.zeros(3)
    h = 1e-3
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        zp, zm = run.transform(xs + e)["z"][:, 0], run.transform(xs - e)["z"][:, 0]
        ref[i] = np.mean(np.abs(zp - zm) / (2 * h)) * xs[:, i].std()
    ref /= ref.sum()
    torch.manual_seed(0)
    np.testing.assert_allclose(sensitivity(run, xs)[0], ref, rtol=2e-2, atol=2e-3)


def test_cluster_statistics_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    cl = rng.integers(0, 2, 300)
    x[cl == 1, 0] += 3.0
    st = cluster_statistics(x, cl, 3)
    assert st["populated"] == [0, 1] and np.isnan(st["mean"][2]).all()
    a, b = x[cl == 1], x[cl == 0]
    d_ref = (a.mean(0) - b.mean(0)) / np.sqrt(0.5 * (a.var(0) + b.var(0)))
    np.testing.assert_allclose(st["d"][1], d_ref, rtol=1e-12)
    np.testing.assert_allclose(st["d"][0], -d_ref, rtol=1e-12)  # the pooled spread is symmetric in c and the rest
    np.testing.assert_allclose(st["std"][1], a.std(0), rtol=1e-12)
    assert st["d"][1, 0] > 2.5 and abs(st["d"][1, 1]) < 0.4
    np.testing.assert_allclose(st["population"].sum(), 1.0)


def test_four_well_single_feature_gets_all_weight(tmp_path):
    fw = FourWell()
    traj = fw.simulate(100_000, n_walkers=4, stride=200, seed=1)
    trajs = [t for t in traj]
    run = fit(trajs, k=4, latent_dim=1, epochs=60, batch_size=500, lr=3e-3, seed=0, progress=False)
    x = np.concatenate(trajs)
    rep = explain(run, x)
    assert rep["sensitivity"] == [[pytest.approx(1.0)]]
    # the cluster means sit at the four minima, the outer clusters far out in d
    per = rep["clusters"]["per_cluster"]
    means = sorted(v["mean"][0] for v in per.values())
    assert len(means) == 4
    np.testing.assert_allclose(means, fw.minima[:, 0], atol=0.15)
    d_by_mean = [v["d"][0] for v in sorted(per.values(), key=lambda v: v["mean"][0])]
    assert d_by_mean[0] < -1.5 and d_by_mean[-1] > 1.5


def test_peptide_spec_is_folded_per_residue(tmp_path):
    """60 backbone-torsion features of AAQAA3 where only GLN9's phi and psi switch between two
    states (helix / beta; the rest independent noise): the sensitivity and the cluster separation
    fold onto GLN9."""
    import mdtraj as md
    from openmm import app

    from gmvae_cv.features.peptide import backbone_torsions
    from gmvae_cv.systems._peptide_build import build_capped_peptide
    from gmvae_cv.systems.aaqaa3 import AAQAA3, AAQAA3_SEQUENCE

    top, _ = build_capped_peptide(AAQAA3_SEQUENCE, [-57.0] * 15, [-47.0] * 15, app.ForceField(*AAQAA3.forcefield_files))
    spec = backbone_torsions(md.Topology.from_openmm(top))
    rng = np.random.default_rng(2)
    n = 2000
    phi = np.radians(-60 + 8 * rng.normal(size=(n, 15)))
    psi = np.radians(-45 + 8 * rng.normal(size=(n, 15)))
    state = rng.integers(0, 2, n)
    psi[:, 7] = np.where(state == 1, np.radians(140.0), np.radians(-45.0)) + np.radians(8) * rng.normal(size=n)
    phi[:, 7] = np.where(state == 1, np.radians(-140.0), np.radians(-60.0)) + np.radians(8) * rng.normal(size=n)
    x = np.empty((n, 60))
    x[:, 0::4], x[:, 1::4], x[:, 2::4], x[:, 3::4] = np.sin(phi), np.cos(phi), np.sin(psi), np.cos(psi)
    data = tmp_path / "x.npy"
    np.save(data, x)
    run = fit([x], k=2, latent_dim=1, epochs=20, batch_size=500, lr=3e-3, seed=0, progress=False,
              feature_spec=spec, sources=[str(data)], out=tmp_path / "run")
    rep = explain(tmp_path / "run", out=tmp_path / "ex")  # data: the run's own training file
    assert rep["data"] == str(data) and rep["feature_names_from"] == "feature spec"
    assert set(rep["ranking"]["z0"][:4]) == {"sin_phi_GLN9", "cos_phi_GLN9", "sin_psi_GLN9", "cos_psi_GLN9"}
    res = rep["residues"]
    assert len(res["names"]) == 15 and res["names"][7] == "GLN9"
    assert res["ranking"]["z0"][0] == "GLN9"
    assert sum(res["sensitivity"][0]) == pytest.approx(1.0)
    for c, rms in res["rms_d"].items():
        assert int(np.argmax(rms)) == 7, (c, rms)
    assert (tmp_path / "ex" / "residues.png").is_file()
    assert (tmp_path / "ex" / "sensitivity.csv").read_text().splitlines()[0].startswith("column,feature,residue,")
    assert run.n_features == 60


def test_bad_input_names_the_file(mb_noise, tmp_path):
    run, x = mb_noise
    bad = tmp_path / "four_columns.npy"
    np.save(bad, np.column_stack([x, x[:, :1]]))
    with pytest.raises(GMVAEInputError, match=r"four_columns\.npy: has 4 features \(columns\), the run .* was trained on 3"):
        explain(run.path, bad)
    with pytest.raises(GMVAEInputError, match="the training data .* are not files that exist here; give the frames with --data"):
        explain(run)  # trained from in-memory arrays


def test_cli_explain(mb_noise, tmp_path):
    from gmvae_cv.cli import main

    run, x = mb_noise
    data = tmp_path / "x.npy"
    np.save(data, x[:2000])
    assert main(["explain", str(run.path), "--data", str(data), "--out", str(tmp_path / "ex")]) == 0
    rep = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert rep["n_frames"] == 2000 and rep["ranking"]["z0"][-1] == "x2"
    bad = tmp_path / "two.npy"
    np.save(bad, x[:, :2])
    assert main(["explain", str(run.path), "--data", str(bad), "--out", str(tmp_path / "ex2")]) == 2
