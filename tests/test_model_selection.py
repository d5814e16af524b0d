"""How many states: the held-out true ELBO against the loss's own parts, the selection rule, and
the toys' answers (Mueller-Brown: 3 basins, four-well: 4 wells)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gmvae_cv import FourWell, GMVAEInputError, MullerBrown, fit
from gmvae_cv.model_selection import choose_k, select_n_clusters, validation_elbo

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
        select_n_clusters(x, (3,))
    with pytest.raises(GMVAEInputError, match="'seeds' is \\[0\\], expected at least 2"):
        select_n_clusters(x, (2, 3), seeds=(0,))
    with pytest.raises(GMVAEInputError, match="'k' is set by select_n_clusters"):
        select_n_clusters(x, (2, 3), k=4)
    run = fit(x + np.random.default_rng(0).normal(size=x.shape), k=2, latent_dim=1, epochs=1, progress=False)
    with pytest.raises(GMVAEInputError, match=r"'data' has shape \(50, 3\), expected \(n_frames, 2\)"):
        validation_elbo(run, np.zeros((50, 3)))
