"""The training run's own figure: the loss curves in ``loss.png``."""

from __future__ import annotations

import os

from .._core.figures import _pyplot, save_figure

__all__ = ["plot_loss_curve"]


def plot_loss_curve(history: dict[str, list], path: str | os.PathLike) -> None:
    """Training and validation loss (and the loss parts) against epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ep = history.get("epoch", [])
    for key, style in (("train_loss", "-"), ("valid_loss", "--")):
        if history.get(key):
            axes[0].plot(ep[: len(history[key])], history[key], style, label=key.replace("_", " "))
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("negative ELBO per frame")
    axes[0].legend()
    for key in ("reconstruction", "kl_z", "kl_y", "entropy"):
        name = f"valid_{key}" if history.get(f"valid_{key}") else f"train_{key}"
        if history.get(name):
            axes[1].plot(ep[: len(history[name])], history[name], label=name)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("loss part")
    axes[1].legend(fontsize=8)
    fig.suptitle("GMVAE training")
    save_figure(fig, path)
