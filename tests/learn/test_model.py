"""GMVAECV and its loss: the batched pass against a per-component implementation of the formula."""

import math

import numpy as np
import pytest
import torch

from gmvae_cv import GMVAECV, GMVAEInputError, gmvae_loss
from gmvae_cv.learn.loss import log_normal


def _model(n=5, d=2, n_clusters=4, seed=0, **kw):
    torch.manual_seed(seed)
    m = GMVAECV(n, d, n_clusters, qz_layers=kw.pop("qz_layers", [16, 8]), **kw)
    m.norm_in.set_custom(torch.linspace(-0.5, 0.5, n), torch.linspace(0.5, 2.0, n))
    return m


def _per_component_reference(model, x, target, eps, entropy_weight, weights=None):
    """The loss written out literally: a Python loop over the k one-hot y, concatenated inputs."""
    k = model.n_clusters
    xn = model.norm_in(x)
    tn = model.norm_in(target)
    logits = model.qy(xn)
    qy = torch.softmax(logits, -1)
    qz = model.qz
    # the first q(z|x,y) layer acting on [x, h0(y)] as one Linear on the concatenation
    w_cat = torch.cat([qz.in_x.weight, qz.in_y.weight], dim=1)
    losses = []
    for i in range(k):
        y = torch.zeros(x.shape[0], k, dtype=x.dtype)
        y[:, i] = 1.0
        h0 = qz.y_embed(y)
        h = torch.relu(torch.cat([xn, h0], dim=1) @ w_cat.T + qz.in_x.bias)
        if qz.hidden is not None:
            h = qz.hidden(h)
        zm, zv = qz.head(h)
        z = zm + torch.sqrt(zv) * eps[:, i]
        pm, pv = model.pz.head(model.pz.nn(y))
        xm, xv = model.px(z)
        li = -log_normal(tn, xm, xv) + log_normal(z, zm, zv) - log_normal(z, pm, pv) - math.log(1.0 / k)
        losses.append(qy[:, i] * li)
    nent = torch.sum(qy * torch.log(qy), -1)
    per_frame = sum(losses) + entropy_weight * nent
    if weights is None:
        return per_frame.mean()
    return (weights * per_frame).sum() / weights.sum()


@pytest.mark.parametrize("lagged,weighted", [(False, False), (True, False), (False, True)])
def test_batched_loss_equals_per_component_formula(lagged, weighted):
    model = _model().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    target = torch.randn(64, 5, generator=g, dtype=torch.float64) if lagged else x
    w = torch.rand(64, generator=g, dtype=torch.float64) if weighted else None
    torch.manual_seed(7)
    out = model.encode_decode(x)
    eps = (out["z"] - out["z_mean"]) / torch.sqrt(out["z_var"])
    batched = model.loss_fn(model.norm_in(target), out, w)["loss"]
    ref = _per_component_reference(model, x, target, eps, model.loss_fn.entropy_weight, w)
    assert abs(batched.item() - ref.item()) < 1e-6 * max(1.0, abs(ref.item()))


def test_forward_cv_is_qy_weighted_component_mean():
    model = _model()
    x = torch.randn(10, 5)
    with torch.no_grad():
        qy = model.cluster_probabilities(x)
        mu = model.component_means(x)
        expected = (qy.unsqueeze(-1) * mu).sum(1)
        assert torch.allclose(model(x), expected, atol=1e-6)
        assert torch.allclose(qy.sum(1), torch.ones(10), atol=1e-6)
    assert model(x).shape == (10, 2)


def test_cv_is_smooth_gradient_matches_finite_difference():
    model = _model().double()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    # frames are independent, so d(sum_b s_c(x_b))/dx_{b,a} = ds_c(x_b)/dx_{b,a}: shape (2, 3, 5)
    jac = torch.autograd.functional.jacobian(lambda v: model(v).sum(0), x)
    h = 1e-6
    for a in range(5):
        dx = torch.zeros_like(x)
        dx[:, a] = h
        fd = (model(x + dx) - model(x - dx)) / (2 * h)  # (3, 2)
        assert torch.allclose(fd.T, jac[:, :, a], atol=1e-6)


def test_integer_weights_equal_duplicated_frames():
    model = _model()
    x = torch.randn(6, 5)
    w = torch.tensor([1.0, 3.0, 1.0, 2.0, 1.0, 1.0])
    xd = torch.repeat_interleave(x, w.long(), dim=0)
    torch.manual_seed(0)
    out = model.encode_decode(x)
    weighted = model.loss_fn(model.norm_in(x), out, w)["loss"]
    # same per-frame noise for the duplicates
    out_d = {k: (torch.repeat_interleave(v, w.long(), dim=0) if v.shape[0] == 6 and k not in ("prior_mean", "prior_var") else v) for k, v in out.items()}
    dup = model.loss_fn(model.norm_in(xd), out_d)["loss"]
    assert abs(weighted.item() - dup.item()) < 1e-5


def test_loss_parts_add_up_with_unit_entropy_weight():
    model = _model(entropy_weight=1.0)
    x = torch.randn(20, 5)
    terms = model.loss_terms({"data": x})
    assert abs(terms["loss"].item() - (terms["reconstruction"] + terms["kl_z"] + terms["kl_y"]).item()) < 1e-4
    assert 0.0 <= terms["kl_y"].item() <= math.log(4) + 1e-6


def test_weights_shape_is_checked():
    model = _model()
    x = torch.randn(8, 5)
    with pytest.raises(ValueError, match="weights"):
        model.loss_terms({"data": x, "weights": torch.ones(7)})


@pytest.mark.parametrize("kw,field", [({"n_clusters": 1}, "'n_clusters'"), ({"latent_dim": 0}, "'latent_dim'"), ({"qz_layers": []}, "qz_layers")])
def test_bad_hyperparameters(kw, field):
    args = {"n_features": 3, "latent_dim": 2, "n_clusters": 3}
    args.update(kw)
    with pytest.raises(GMVAEInputError, match=field):
        GMVAECV(**args)


def test_gmvae_loss_rejects_bad_weights_shape():
    b, k, d, n = 4, 3, 2, 5
    z = torch.zeros(b, k, d)
    with pytest.raises(ValueError):
        gmvae_loss(torch.zeros(b, n), torch.zeros(b, k), z, z, torch.ones(b, k, d), torch.zeros(k, d), torch.ones(k, d),
                   torch.zeros(b, k, n), torch.ones(b, k, n), 0.05, torch.ones(b + 1))


def test_old_parameter_names_are_aliases():
    """mlcolvar's n_cvs and the paper's k name the same numbers as latent_dim and n_clusters."""
    from gmvae_cv.learn.train import TrainConfig, fit

    assert GMVAECV(n_features=3, n_cvs=2, n_clusters=3).latent_dim == 2
    with pytest.raises(GMVAEInputError, match="both given"):
        GMVAECV(n_features=3, n_cvs=2, latent_dim=2, n_clusters=3)
    run = fit(np.random.default_rng(0).normal(size=(60, 2)), k=3, latent_dim=1, epochs=1, progress=False)
    assert run.config.n_clusters == 3 and isinstance(run.config, TrainConfig)
    with pytest.raises(GMVAEInputError, match="both given"):
        fit(np.zeros((60, 2)), k=3, n_clusters=3, epochs=1, progress=False)
