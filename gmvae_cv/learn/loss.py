"""The GMVAE evidence lower bound (negative, per frame, weighted mean over frames).

The loss of Bozkurt Varolgunes, Bereau and Rudzinski (Mach. Learn.: Sci. Technol. 1, 015012,
2020), written for all ``k`` mixture components at once. For one frame with input ``x`` and
reconstruction target ``t`` (``t = x``, or ``x(t+lag)`` for the time-lagged variant),

.. math::

    L(x) = \\sum_{i=1}^{k} q(y{=}i|x)\\,\\big[-\\log p(t|z_i) + \\log q(z_i|x, i)
           - \\log p(z_i|i) - \\log(1/k)\\big]
           + w_\\mathrm{ent} \\sum_{i=1}^{k} q(y{=}i|x) \\log q(y{=}i|x),

with one reparameterised sample :math:`z_i \\sim q(z|x, i)` per component. With
:math:`w_\\mathrm{ent} = 1` this is exactly the negative ELBO; the reference code weights the
negative entropy of :math:`q(y|x)` by ``r_nent`` (0.05 in its examples), which lets the encoder
assign frames to clusters more sharply.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["log_normal", "gmvae_loss", "GMVAELoss"]

_LOG_2PI = math.log(2.0 * math.pi)


def log_normal(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Log density of a diagonal Gaussian, summed over the last axis.

    Parameters
    ----------
    x, mean, var : torch.Tensor
        Broadcastable tensors, last axis the event dimension; ``var`` > 0.

    Returns
    -------
    torch.Tensor
        ``log N(x; mean, diag(var))`` with the last axis reduced.
    """
    return -0.5 * torch.sum(_LOG_2PI + torch.log(var) + (x - mean) ** 2 / var, dim=-1)


def gmvae_loss(
    target: torch.Tensor,
    qy_logits: torch.Tensor,
    z: torch.Tensor,
    z_mean: torch.Tensor,
    z_var: torch.Tensor,
    prior_mean: torch.Tensor,
    prior_var: torch.Tensor,
    x_mean: torch.Tensor,
    x_var: torch.Tensor,
    entropy_weight: float,
    weights: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Negative ELBO of the GMVAE, all components in one batched expression.

    Parameters
    ----------
    target : torch.Tensor
        Shape ``(n_batch, n_target)``. What the decoder reconstructs (normalised).
    qy_logits : torch.Tensor
        Shape ``(n_batch, k)``. Logits of q(y|x).
    z, z_mean, z_var : torch.Tensor
        Shape ``(n_batch, k, d)``. Sample, mean and variance of q(z|x, y=i) for every i.
    prior_mean, prior_var : torch.Tensor
        Shape ``(k, d)``. Mean and variance of p(z|y=i).
    x_mean, x_var : torch.Tensor
        Shape ``(n_batch, k, n_target)``. Mean and variance of p(x|z_i).
    entropy_weight : float
        Weight of the negative entropy of q(y|x).
    weights : torch.Tensor, optional
        Shape ``(n_batch,)`` or ``(n_batch, 1)``, non-negative frame weights. The loss is the
        weighted mean ``sum(w L) / sum(w)``.

    Returns
    -------
    dict of str to torch.Tensor
        ``loss`` (scalar, to minimise), and the weighted means of its parts:
        ``reconstruction`` (-log p(x|z)), ``kl_z`` (log q(z|x,y) - log p(z|y), one-sample),
        ``kl_y`` (KL of q(y|x) from the uniform prior), ``entropy`` (of q(y|x)).
        ``per_frame`` holds the unweighted loss of each frame, shape ``(n_batch,)``.
    """
    k = qy_logits.shape[-1]
    log_qy = torch.log_softmax(qy_logits, dim=-1)
    qy = log_qy.exp()
    rec = -log_normal(target.unsqueeze(1), x_mean, x_var)  # (B, k)
    kl_z = log_normal(z, z_mean, z_var) - log_normal(z, prior_mean.unsqueeze(0), prior_var.unsqueeze(0))
    per_component = rec + kl_z + math.log(k)  # -log(1/k) = log k
    neg_entropy = torch.sum(qy * log_qy, dim=-1)
    per_frame = torch.sum(qy * per_component, dim=-1) + entropy_weight * neg_entropy
    parts = {
        "reconstruction": torch.sum(qy * rec, dim=-1),
        "kl_z": torch.sum(qy * kl_z, dim=-1),
        "kl_y": neg_entropy + math.log(k),
        "entropy": -neg_entropy,
    }
    if weights is None:
        mean = torch.mean
    else:
        w = weights.reshape(-1)
        if w.shape != per_frame.shape:
            raise ValueError(f"'weights' has shape {tuple(weights.shape)}, expected ({per_frame.shape[0]},) or ({per_frame.shape[0]}, 1)")
        total = w.sum()

        def mean(v: torch.Tensor) -> torch.Tensor:
            return torch.sum(w * v) / total

    out = {"loss": mean(per_frame)}
    out.update({name: mean(v.detach()) for name, v in parts.items()})
    out["per_frame"] = per_frame.detach()
    return out


class GMVAELoss(torch.nn.Module):
    """Module shell over :func:`gmvae_loss` holding the entropy weight.

    Parameters
    ----------
    entropy_weight : float
        Weight of the negative entropy of q(y|x) (reference default 0.05).
    """

    def __init__(self, entropy_weight: float = 0.05) -> None:
        super().__init__()
        self.entropy_weight = float(entropy_weight)

    def forward(self, target: torch.Tensor, out: dict[str, torch.Tensor], weights: Optional[torch.Tensor] = None):
        """Evaluate the loss on the dictionary returned by ``GMVAECV.encode_decode``."""
        return gmvae_loss(
            target,
            out["qy_logits"],
            out["z"],
            out["z_mean"],
            out["z_var"],
            out["prior_mean"],
            out["prior_var"],
            out["x_mean"],
            out["x_var"],
            self.entropy_weight,
            weights,
        )

    def extra_repr(self) -> str:
        return f"entropy_weight={self.entropy_weight}"
