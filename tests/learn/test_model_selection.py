"""How many states: the held-out true ELBO against the loss's own parts, the selection rule, and
the toys' answers (Mueller-Brown: 3 basins, four-well: 4 wells)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gmvae_cv import FourWell, GMVAEInputError, MullerBrown, fit
from gmvae_cv.learn.selection import choose_k, count_metastable_states, elbo_across_k, select_n_clusters, validation_elbo

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def test_validation_elbo_is_the_loss_with_entropy_weight_one():
    """-ELBO = reconstruction + kl_z + KL(q(y|x) || uniform); the training loss (weight w) differs
    from it by exactly (1 - w) * entropy, for the same z samples."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, (300, 2)), rng.normal(3, 0.5, (300, 2))])
    run = fit(x, k=3, latent_dim=1, epochs=5, seed=0, progress=False)
    e = validation_elbo(run, x, n_samples=1, seed=4)
    assert e["neg_elbo"] == pytest.approx(e["reconstruction"] + e["kl_z"] + e["kl_y"], abs=1e-4)
    assert e["kl_y"] == pytest.approx(np.log(3) - e["entropy"], abs=1e-5)
    torch.manual_seed(4)
    with torch.no_grad():
        train_loss = float(run.model.loss_terms({"data": torch.as_tensor(x, dtype=torch.float32)})["loss"])
    w = run.config.entropy_weight
    assert train_loss == pytest.approx(e["neg_elbo"] + (1 - w) * e["entropy"], abs=1e-4)
    # more samples: an average, close to the single-sample value, and the global RNG is left alone
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    e20 = validation_elbo(run, x, n_samples=20, seed=4)
    assert torch.rand(1) == before
    assert abs(e20["neg_elbo"] - e["neg_elbo"]) < 0.2


def test_choose_k_takes_the_smallest_k_within_noise():
    table = {2: {"mean": 1.00, "std": 0.01}, 3: {"mean": 0.50, "std": 0.01}, 4: {"mean": 0.49, "std": 0.02},
             5: {"mean": 0.47, "std": 0.01}}
    k, best, thr = choose_k(table, 3, 0.02)
    assert best == 5 and k == 4  # 3 is 0.03 above the best: more than max(0.02, 2 SE = 0.016); 4 is 0.02 above, 2 SE = 0.026
    assert thr[3] == pytest.approx(0.02)
    k, _, _ = choose_k(table, 3, 0.05)
    assert k == 3
    noisy = {2: {"mean": 1.0, "std": 0.3}, 3: {"mean": 0.8, "std": 0.3}}
    assert choose_k(noisy, 2, 0.0)[0] == 2  # 0.2 below, but 2 SE = 0.6: not resolved


def test_bad_input():
    x = np.zeros((50, 2))
    with pytest.raises(GMVAEInputError, match="'k_values' is \\[3\\], expected at least two"):
        elbo_across_k(x, (3,))
    with pytest.raises(GMVAEInputError, match="'seeds' is \\[0\\], expected at least 2"):
        elbo_across_k(x, (2, 3), seeds=(0,))
    with pytest.raises(GMVAEInputError, match="'k' is set by elbo_across_k"):
        elbo_across_k(x, (2, 3), k=4)
    with pytest.raises(GMVAEInputError, match="'k' is set by select_n_clusters"):
        select_n_clusters(x, k=4)
    with pytest.raises(GMVAEInputError, match="'min_eigenvalue' is 1.5"):
        select_n_clusters(x, min_eigenvalue=1.5)
    with pytest.raises(GMVAEInputError, match="no trajectory is longer than the lag"):
        count_metastable_states([np.zeros(3, dtype=int)], 2, 5)
    run = fit(x + np.random.default_rng(0).normal(size=x.shape), k=2, latent_dim=1, epochs=1, progress=False)
    with pytest.raises(GMVAEInputError, match=r"'data' has shape \(50, 3\), expected \(n_frames, 2\)"):
        validation_elbo(run, np.zeros((50, 3)))


def _markov_chain(T, n, start, rng):
    out = np.empty(n, dtype=np.int64)
    out[0] = start
    cum = np.cumsum(T, axis=1)
    u = rng.random(n)
    for i in range(1, n):
        out[i] = np.searchsorted(cum[out[i - 1]], u[i])
    return np.minimum(out, len(T) - 1)


def test_count_metastable_states_on_a_known_chain():
    """Clusters 0 | 1, 2 (one state split in two, swapping every step) | 3, with rare 0 <-> {1,2}
    <-> 3 hops: 3 states; a separate trajectory in cluster 4 (never left): one more; a cluster
    seen in 5 frames at the start of one trajectory only: transient, not counted."""
    eps = 0.002
    T = np.array([
        [1 - eps, eps / 2, eps / 2, 0.0],
        [eps / 2, 0.5 - eps / 2, 0.5 - eps / 2, eps / 2],
        [eps / 2, 0.5 - eps / 2, 0.5 - eps / 2, eps / 2],
        [0.0, eps / 2, eps / 2, 1 - eps],
    ])
    T /= T.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    d = [_markov_chain(T, 20000, s, rng) for s in (0, 1, 3)]
    res = count_metastable_states(d, 4, 5)
    assert res["n_states"] == 3, res
    (only,) = res["sets"]
    # the exact chain's eigenvalues at lag 5: 1, two slow ones near (1 - eps)^5, one ~ 0 (the split)
    exact = np.sort(np.real(np.linalg.eigvals(np.linalg.matrix_power(T, 5))))[::-1]
    np.testing.assert_allclose(only["eigenvalues"], exact, atol=0.02)
    d.append(np.full(3000, 4))
    d.append(np.concatenate([np.full(5, 5), _markov_chain(T, 3000, 0, rng)]))
    res = count_metastable_states(d, 6, 5)
    assert res["n_states"] == 4, res
    transient = [s for s in res["sets"] if s["clusters"] == [5]]
    assert transient and transient[0]["counted"] == 0
    assert count_metastable_states(d, 6, 5, min_eigenvalue=0.999)["n_states"] == 2  # only the stationary ones


@pytest.mark.slow
def test_mueller_brown_holds_three_states():
    """k_max = 6 on Mueller-Brown (kT = 8): A (never left), C and B; the extra components split B."""
    mb = MullerBrown(kT=8.0)
    traj = mb.simulate(20_000, n_walkers=6, stride=20, seed=3)
    res = select_n_clusters([t for t in traj], k_max=6, lag=5, seeds=(0, 1, 2), latent_dim=1, epochs=40,
                            batch_size=500, lr=3e-3)
    assert res["k"] == 3, res["n_states_per_seed"]


@pytest.mark.slow
def test_four_well_holds_four_states():
    fw = FourWell()
    traj = fw.simulate(200_000, n_walkers=4, stride=200, seed=1)
    res = select_n_clusters([t for t in traj], k_max=6, lag=5, seeds=(0, 1, 2), latent_dim=1, epochs=60,
                            batch_size=500, lr=3e-3)
    assert res["k"] == 4, res["n_states_per_seed"]
