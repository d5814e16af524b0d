"""Training: the seed's four-well result, weights and time lag changing what is learned, runs on disk."""

import json
import logging

import numpy as np
import pytest

from gmvae_cv import FourWell, GMVAEInputError, cluster_confusion, fit, load_run

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def four_well_data():
    fw = FourWell()
    traj = fw.simulate(400_000, n_walkers=4, stride=200, seed=1)
    return fw, [t for t in traj]


@pytest.fixture(scope="module")
def four_well_run(four_well_data, tmp_path_factory):
    _, trajs = four_well_data
    out = tmp_path_factory.mktemp("fw") / "run"
    return fit(trajs, n_clusters=4, latent_dim=1, epochs=120, batch_size=500, lr=3e-3, seed=0, progress=False, out=out)


def test_four_well_clusters_match_wells(four_well_data, four_well_run):
    """The seed's first result: GMVAE (1D -> 1D, n_clusters=4) assigns frames to the right well."""
    fw, trajs = four_well_data
    x = np.concatenate(trajs)
    out = four_well_run.transform(x)
    cc = cluster_confusion(fw.basin(x), out["clusters"], 4, 4)
    assert cc["accuracy"] >= 0.95, cc["matrix"]
    # the embedding orders the wells: z is monotonic in the well index, up to a global sign
    zmeans = np.array([out["z"][fw.basin(x) == w, 0].mean() for w in range(4)])
    assert np.all(np.diff(zmeans) > 0) or np.all(np.diff(zmeans) < 0)


def test_gmm_start_reaches_lower_loss_than_random_start(four_well_data, four_well_run):
    """Without the GMM start the reference-style random start ends in a worse ELBO optimum."""
    _, trajs = four_well_data
    rnd = fit(trajs, n_clusters=4, latent_dim=1, epochs=120, batch_size=500, lr=3e-3, seed=0, progress=False, cluster_init="none")
    gmm_loss, rnd_loss = four_well_run.info["training"]["best_loss"], rnd.info["training"]["best_loss"]
    assert gmm_loss < rnd_loss - 0.05, (gmm_loss, rnd_loss)


def test_run_directory_round_trip(four_well_data, four_well_run):
    _, trajs = four_well_data
    path = four_well_run.path
    for f in ("gmvae_run.json", "model.pt", "loss.png", "history.json", "checkpoints/last.ckpt"):
        assert (path / f).is_file(), f
    again = load_run(path)
    x = np.concatenate(trajs)[:500]
    a, b = four_well_run.transform(x), again.transform(x)
    np.testing.assert_allclose(a["z"], b["z"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["cluster_probs"], b["cluster_probs"], rtol=0, atol=1e-6)
    info = json.loads((path / "gmvae_run.json").read_text())
    assert info["complete"] and info["config"]["n_clusters"] == 4
    # a finished run is not overwritten silently
    with pytest.raises(GMVAEInputError, match="finished run"):
        fit(trajs, n_clusters=4, latent_dim=1, epochs=1, progress=False, out=path)


def test_seeded_runs_are_reproducible():
    x = np.random.default_rng(3).normal(size=(400, 3))
    a = fit(x, n_clusters=3, latent_dim=2, epochs=4, seed=5, progress=False)
    b = fit(x, n_clusters=3, latent_dim=2, epochs=4, seed=5, progress=False)
    c = fit(x, n_clusters=3, latent_dim=2, epochs=4, seed=6, progress=False)
    za, zb, zc = (r.transform(x)["z"] for r in (a, b, c))
    np.testing.assert_array_equal(za, zb)
    assert np.abs(za - zc).max() > 1e-3


def test_returned_model_is_this_runs_best_epoch_with_or_without_out(tmp_path):
    """fit returns the weights of the best validation epoch: the same with ``out`` (best.ckpt) and
    without (kept in memory); a finished run replaced with ``overwrite=True`` never hands back
    the old run's checkpoint."""
    x = np.random.default_rng(7).normal(size=(400, 3))
    kw = dict(n_clusters=3, latent_dim=2, epochs=6, patience=50, progress=False)
    out = tmp_path / "run"
    old = fit(x, seed=1, out=out, **kw)
    new = fit(x, seed=2, out=out, overwrite=True, **kw)
    in_memory = fit(x, seed=2, **kw)
    z_old, z_new, z_mem = (r.transform(x)["z"] for r in (old, new, in_memory))
    assert np.abs(z_new - z_old).max() > 1e-3  # not the replaced run's model
    np.testing.assert_array_equal(z_new, z_mem)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    hist = new.info["history"]["valid_loss"]
    assert new.info["training"]["best_epoch"] == new.info["history"]["epoch"][int(np.argmin(hist))]


def test_interrupted_run_resumes_from_checkpoint(tmp_path):
    x = np.random.default_rng(4).normal(size=(300, 3))
    out = tmp_path / "run"
    fit(x, n_clusters=2, latent_dim=1, epochs=3, patience=50, seed=1, progress=False, out=out)
    # pretend the run was killed after epoch 3 of 6: mark it unfinished, ask for 6 epochs
    info = json.loads((out / "gmvae_run.json").read_text())
    info["complete"] = False
    info["config"]["epochs"] = 6
    (out / "gmvae_run.json").write_text(json.dumps(info))
    resumed = fit(x, n_clusters=2, latent_dim=1, epochs=6, patience=50, seed=1, progress=False, out=out)
    t = resumed.info["training"]
    assert t["resumed_from_checkpoint"]
    assert resumed.info["history"]["epoch"] == list(range(6))
    # another configuration in the same unfinished directory is refused
    info["complete"] = False
    (out / "gmvae_run.json").write_text(json.dumps(info))
    with pytest.raises(GMVAEInputError, match="another configuration"):
        fit(x, n_clusters=3, latent_dim=1, epochs=6, progress=False, out=out)


def test_weights_change_the_clustering_in_the_expected_direction():
    """Three groups at -4, 0, 4 with k=2. Unweighted, the small middle group joins a big one;
    with weights that make the +4 group negligible and the middle heavy, the two clusters
    become {-4} and {0}, as training on frames drawn with those weights would give."""
    rng = np.random.default_rng(0)
    n_big, n_mid = 1800, 400
    x = np.concatenate([rng.normal(-4, 0.4, n_big), rng.normal(0, 0.4, n_mid), rng.normal(4, 0.4, n_big)])[:, None]
    group = np.repeat([0, 1, 2], [n_big, n_mid, n_big])
    w = np.where(group == 2, 1e-3, np.where(group == 1, 4.5, 1.0))
    kw = dict(n_clusters=2, latent_dim=1, epochs=80, batch_size=500, lr=3e-3, seed=0, progress=False)
    unweighted = fit(x, **kw).transform(x)["clusters"]
    weighted = fit(x, weights=w, **kw).transform(x)["clusters"]

    def separated(cl, a, b):  # fraction of frames of groups a and b that sit in different majority clusters
        ca = np.bincount(cl[group == a], minlength=2).argmax()
        cb = np.bincount(cl[group == b], minlength=2).argmax()
        return ca != cb

    assert separated(unweighted, 0, 2)  # unweighted: the two big groups are the clusters
    assert separated(weighted, 0, 1)  # weighted: -4 and 0 are the clusters
    assert np.mean(weighted[group == 0] != np.bincount(weighted[group == 1], minlength=2).argmax()) > 0.95


DATA_SEED = 1


def test_time_lag_selects_the_slow_coordinate():
    """A slow two-state coordinate (small, rare jumps) and a fast iid two-state coordinate copied
    into three features. Without a lag the 1D embedding follows the fast variable (it explains
    more of x); with a lag only the slow one predicts x(t+lag), and the embedding follows it.
    k=4: with k=2 the lagged model collapses (z spread ~0.01, reconstruction = the marginal) and
    its correlations are noise; the spread is asserted so that a collapse fails the test."""
    rng = np.random.default_rng(DATA_SEED)
    n = 6000
    slow = np.cumsum(rng.random(n) < 0.004) % 2 * 2.0 - 1.0
    fast = rng.choice([-1.0, 1.0], n)
    x = np.column_stack([slow + 0.3 * rng.normal(size=n)] + [fast + 0.3 * rng.normal(size=n) for _ in range(3)])
    kw = dict(n_clusters=4, latent_dim=1, epochs=60, batch_size=500, lr=3e-3, seed=0, progress=False)

    def corr(run):
        z = run.transform(x)["z"][:, 0]
        assert np.std(z) > 0.3, f"collapsed embedding: z spread {np.std(z):.3g}"
        return abs(np.corrcoef(z, slow)[0, 1]), abs(np.corrcoef(z, fast)[0, 1])

    plain_slow, plain_fast = corr(fit(x, **kw))
    lag_slow, lag_fast = corr(fit(x, lag=5, **kw))
    assert plain_fast > plain_slow + 0.3, (plain_slow, plain_fast)
    assert lag_slow > 0.8 and lag_slow > lag_fast + 0.5, (lag_slow, lag_fast)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(data=np.zeros((10, 2, 2))), "3 dimension"),
        (dict(data=np.array([[1.0, np.nan]] * 10)), "NaN"),
        (dict(data=np.array([[1.0, np.inf]] * 10)), "NaN/inf"),
        (dict(data=np.ones((10, 2)), weights=np.ones(9)), "9 entries, expected 10"),
        (dict(data=np.ones((10, 2)), weights=-np.ones(10)), "negative"),
        (dict(data=np.ones((10, 2)), lag=10), "'lag' is 10 frames"),
        (dict(data=np.ones((10, 2)), n_clusters=1), "'n_clusters' is 1"),
        (dict(data=np.ones((10, 2)), latent_dim=0), "'latent_dim' is 0"),
        (dict(data=[np.ones((10, 2)), np.ones((10, 3))]), "different feature counts"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    data = kwargs.pop("data")
    kw = dict(n_clusters=2, latent_dim=1, epochs=1, progress=False)
    kw.update(kwargs)
    with pytest.raises(GMVAEInputError, match=match):
        fit(data, **kw)


def test_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(GMVAEInputError, match="not a gmvae-cv run directory"):
        load_run(tmp_path)
    with pytest.raises(GMVAEInputError, match="not a gmvae-cv run directory"):
        fit(np.ones((20, 2)), n_clusters=2, latent_dim=1, epochs=1, progress=False, out=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "gmvae_run.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GMVAEInputError, match="'format'"):
        load_run(tmp_path)


def test_muller_brown_basins_are_owned_by_clusters():
    """The reference code's Mueller-Brown example (n_clusters=5, latent_dim=1): each of the three basins
    is owned by its own cluster with purity >= 0.9, measured on core sets (frames below the
    basin's lowest saddle; the transition region is left out)."""
    from gmvae_cv import MullerBrown

    mb = MullerBrown(kT=8.0)
    traj = mb.simulate(40_000, n_walkers=6, stride=20, seed=3)
    x = traj.reshape(-1, 2)
    core = mb.core(x)
    run = fit([t for t in traj], n_clusters=5, latent_dim=1, epochs=60, batch_size=500, lr=3e-3, seed=0, progress=False)
    clusters = run.transform(x)["clusters"]
    sel = core >= 0
    cc = cluster_confusion(core[sel], clusters[sel], 3, 5)
    assert len(set(cc["top_cluster"].tolist())) == 3, cc["matrix"]
    assert np.all(cc["owner_purity"] >= 0.9), (cc["owner_purity"], cc["matrix"])
