"""``GMVAECV``: the Gaussian-mixture VAE as a collective variable, in the mlcolvar style."""

from __future__ import annotations

from typing import Optional, Sequence

import lightning
import torch
from mlcolvar.core import FeedForward, Normalization
from mlcolvar.cvs import BaseCV

from .._core.errors import GMVAEInputError
from .._core.checks import check_int
from .loss import GMVAELoss

__all__ = ["GMVAECV"]

_VAR_FLOOR = 1e-5  # variances are softplus(.) + 1e-5, as in the reference code


class _Gaussian(torch.nn.Module):
    """Two linear heads: mean and variance (softplus + 1e-5) of a diagonal Gaussian."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.mean = torch.nn.Linear(n_in, n_out)
        self.var = torch.nn.Linear(n_in, n_out)
        self.floor: float = _VAR_FLOOR

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(h), torch.nn.functional.softplus(self.var(h)) + self.floor


class _QY(torch.nn.Module):
    """q(y|x): an MLP giving the ``k`` logits."""

    def __init__(self, n_in: int, hidden: Sequence[int], k: int) -> None:
        super().__init__()
        self.nn = FeedForward([n_in, *hidden, k], activation="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nn(x)


class _QZ(torch.nn.Module):
    """q(z|x, y) for all ``k`` values of y in one pass.

    As in the reference code, y (one-hot) goes through a linear layer ``k -> k`` and is
    concatenated with x before the hidden layers. The first hidden layer acting on the
    concatenation is split into its x part (computed once per frame) and its y part (one row
    per component), so the ``k`` components cost one broadcast addition, not ``k`` passes.
    """

    def __init__(self, n_in: int, hidden: Sequence[int], k: int, d: int) -> None:
        super().__init__()
        if len(hidden) < 1:
            raise GMVAEInputError("'qz_layers' is empty, expected at least one hidden layer")
        self.k = k
        self.y_embed = torch.nn.Linear(k, k)
        self.in_x = torch.nn.Linear(n_in, hidden[0])
        self.in_y = torch.nn.Linear(k, hidden[0], bias=False)
        self.hidden = FeedForward(list(hidden), activation="relu", last_layer_activation=True) if len(hidden) > 1 else None
        self.head = _Gaussian(hidden[-1], d)
        self.register_buffer("eye", torch.eye(k), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hy = self.in_y(self.y_embed(self.eye))  # (k, h)
        h = torch.relu(self.in_x(x).unsqueeze(-2) + hy)  # (..., k, h)
        # the rest acts on one 2D matrix (..., k) -> rows: faster on CPU than 3D products
        lead = list(h.shape[:-1])
        h = h.reshape(-1, h.shape[-1])
        if self.hidden is not None:
            h = self.hidden(h)
        mean, var = self.head(h)
        return mean.reshape(lead + [mean.shape[-1]]), var.reshape(lead + [var.shape[-1]])


class _PZ(torch.nn.Module):
    """p(z|y): an MLP of the one-hot y giving a mean and variance per component, shape (k, d)."""

    def __init__(self, hidden: Sequence[int], k: int, d: int) -> None:
        super().__init__()
        self.nn = FeedForward([k, *hidden], activation="relu", last_layer_activation=True)
        self.head = _Gaussian(hidden[-1], d)
        self.register_buffer("eye", torch.eye(k), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.nn(self.eye))


class _PX(torch.nn.Module):
    """p(x|z): an MLP giving the mean and variance of the (normalised) reconstruction target."""

    def __init__(self, d: int, hidden: Sequence[int], n_out: int) -> None:
        super().__init__()
        self.nn = FeedForward([d, *hidden], activation="relu", last_layer_activation=True)
        self.head = _Gaussian(hidden[-1], n_out)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = list(z.shape[:-1])
        mean, var = self.head(self.nn(z.reshape(-1, z.shape[-1])))
        return mean.reshape(lead + [mean.shape[-1]]), var.reshape(lead + [var.shape[-1]])


class GMVAECV(BaseCV, lightning.LightningModule):
    """Gaussian-mixture variational autoencoder collective variable.

    A mixture prior :math:`p(z|y) = \\mathcal{N}(\\mu_y, \\sigma^2_y)` over ``n_clusters``
    components (uniform :math:`p(y)`), an encoder :math:`q(y|x)` (the clustering), an encoder
    :math:`q(z|x, y)` (the embedding) and a decoder :math:`p(x|z)` (Gaussian with learned
    variance), trained on the negative ELBO with an entropy weight (:mod:`gmvae_cv.learn.loss`).

    **The CV** (:meth:`forward_cv`, what is exported) is the encoder mean

    .. math:: s(x) = \\sum_{i=1}^{k} q(y{=}i|x)\\, \\mu_z(x, i),

    the mean of the mixture :math:`q(z|x) = \\sum_i q(y{=}i|x)\\, q(z|x, i)`. It is smooth in
    ``x`` (a softmax-weighted sum of MLP outputs), so it can be biased. :meth:`cluster_probabilities`
    returns :math:`q(y|x)`.

    **Data**: a ``DictDataset`` with key ``'data'`` (features, ``(n, n_features)``), optionally
    ``'target'`` (the time-lagged variant reconstructs ``x(t+lag)`` from ``x(t)``) and
    ``'weights'`` (per-frame weights, e.g. from a biased run; the loss is the weighted mean).

    Parameters
    ----------
    n_features : int
        Number of input features.
    latent_dim : int
        Latent dimension ``d`` (the number of CV components). ``n_cvs`` (mlcolvar's name) is
        accepted as an alias.
    n_clusters : int
        Number of mixture components ``k`` (>= 2).
    qy_layers, qz_layers, pz_layers, px_layers : sequence of int
        Hidden widths of q(y|x), q(z|x,y), p(z|y), p(x|z). Defaults are the reference code's
        (``[32]``, ``[16]``, ``[16]``, ``[128]``).
    entropy_weight : float
        Weight of the negative entropy of q(y|x) (reference: 0.05).
    options : dict, optional
        mlcolvar-style block options; ``{"norm_in": None}`` switches standardisation off,
        ``{"optimizer": {"lr": ...}}`` sets the optimiser.

    Notes
    -----
    Departures from the reference code (TensorFlow 1): the q(y|x) logits are linear (the
    reference passes them through a ReLU, which stops gradients of negative logits); the
    reconstruction is scored on standardised features; all components are evaluated in one
    batched pass.

    Examples
    --------
    >>> import torch
    >>> from gmvae_cv import GMVAECV
    >>> model = GMVAECV(n_features=3, latent_dim=2, n_clusters=4)
    >>> model(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    >>> model.cluster_probabilities(torch.zeros(5, 3)).shape
    torch.Size([5, 4])
    """

    BLOCKS = ["norm_in", "qy", "qz", "pz", "px"]

    def __init__(
        self,
        n_features: int,
        latent_dim: Optional[int] = None,
        n_clusters: Optional[int] = None,
        qy_layers: Sequence[int] = (32,),
        qz_layers: Sequence[int] = (16,),
        pz_layers: Sequence[int] = (16,),
        px_layers: Sequence[int] = (128,),
        entropy_weight: float = 0.05,
        options: Optional[dict] = None,
        **kwargs,
    ) -> None:
        if "n_cvs" in kwargs:  # mlcolvar's name for the same number
            if latent_dim is not None:
                raise GMVAEInputError("'latent_dim' and 'n_cvs' both given: they name the same number, give one")
            latent_dim = kwargs.pop("n_cvs")
        if latent_dim is None or n_clusters is None:
            raise GMVAEInputError("GMVAECV needs 'latent_dim' and 'n_clusters'")
        n_features = check_int(n_features, "n_features", minimum=1)
        n_cvs = check_int(latent_dim, "latent_dim", minimum=1)
        n_clusters = check_int(n_clusters, "n_clusters", minimum=2)
        for name, layers in (("qy_layers", qy_layers), ("qz_layers", qz_layers), ("pz_layers", pz_layers), ("px_layers", px_layers)):
            if len(layers) < 1 or any(check_int(w, name, minimum=1) < 1 for w in layers):
                raise GMVAEInputError(f"'{name}' is {list(layers)}, expected a non-empty list of positive widths")
        super().__init__(in_features=n_features, out_features=n_cvs, **kwargs)
        self.n_clusters = n_clusters
        self.latent_dim = n_cvs
        self.loss_fn = GMVAELoss(entropy_weight)
        options = self.parse_options(options)
        if options["norm_in"] is not False and options["norm_in"] is not None:
            self.norm_in = Normalization(n_features, **options["norm_in"])
        self.qy = _QY(n_features, list(qy_layers), n_clusters)
        self.qz = _QZ(n_features, list(qz_layers), n_clusters, n_cvs)
        self.pz = _PZ(list(pz_layers), n_clusters, n_cvs)
        self.px = _PX(n_cvs, list(px_layers), n_features)

    # ------------------------------------------------------------------ evaluation
    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_in(x) if self.norm_in is not None else x

    def forward_cv(self, x: torch.Tensor) -> torch.Tensor:
        """The CV: encoder mean ``sum_i q(y=i|x) mu_z(x, i)``.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(n_batch, n_features)``; raw (un-normalised) features.

        Returns
        -------
        torch.Tensor
            Shape ``(n_batch, n_cvs)``.
        """
        h = self._normalize(x)
        qy = torch.softmax(self.qy(h), dim=-1)
        z_mean, _ = self.qz(h)
        return torch.sum(qy.unsqueeze(-1) * z_mean, dim=-2)

    def cluster_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x), shape ``(n_batch, n_clusters)``, rows summing to one."""
        return torch.softmax(self.qy(self._normalize(x)), dim=-1)

    def component_means(self, x: torch.Tensor) -> torch.Tensor:
        """mu_z(x, i) for every component, shape ``(n_batch, n_clusters, n_cvs)``."""
        return self.qz(self._normalize(x))[0]

    def prior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of p(z|y), each of shape ``(n_clusters, n_cvs)``."""
        return self.pz()

    def encode_decode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One stochastic pass: q(y|x), q(z|x,y), a sample z_i per component, p(z|y), p(x|z_i).

        Returns a dictionary with ``qy_logits`` ``(B, k)``, ``z``, ``z_mean``, ``z_var``
        ``(B, k, d)``, ``prior_mean``, ``prior_var`` ``(k, d)``, ``x_mean``, ``x_var``
        ``(B, k, n_features)`` (in normalised units).
        """
        h = self._normalize(x)
        qy_logits = self.qy(h)
        z_mean, z_var = self.qz(h)
        z = z_mean + torch.sqrt(z_var) * torch.randn_like(z_mean)
        prior_mean, prior_var = self.pz()
        x_mean, x_var = self.px(z)
        return {
            "qy_logits": qy_logits,
            "z": z,
            "z_mean": z_mean,
            "z_var": z_var,
            "prior_mean": prior_mean,
            "prior_var": prior_var,
            "x_mean": x_mean,
            "x_var": x_var,
        }

    # ------------------------------------------------------------------ training
    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Evaluate the loss and its parts on a batch (keys ``data``, ``target``, ``weights``)."""
        x = batch["data"]
        target = batch["target"] if "target" in batch else x
        if target.shape[-1] != x.shape[-1]:
            raise GMVAEInputError(f"'target' has {target.shape[-1]} features, 'data' has {x.shape[-1]}; they must match")
        out = self.encode_decode(x)
        return self.loss_fn(self._normalize(target), out, batch.get("weights"))

    def training_step(self, train_batch, batch_idx):
        """Single training step performed by the Lightning Trainer."""
        terms = self.loss_terms(train_batch)
        name = "train" if self.training else "valid"
        n = train_batch["data"].shape[0]
        for key in ("loss", "reconstruction", "kl_z", "kl_y", "entropy"):
            self.log(f"{name}_{key}", terms[key], on_epoch=True, on_step=False, prog_bar=key == "loss", batch_size=n)
        return terms["loss"]
