"""Lightning callbacks of :func:`~gmvae_cv.learn.fit`: the loss history, and the best weights in memory.

Imported when training starts (Lightning is slow to import).
"""

from __future__ import annotations

import math
from typing import Optional

from lightning.pytorch.callbacks import Callback

__all__ = ["History", "BestState"]


class History(Callback):
    """Every logged metric at the end of each training epoch (``history["epoch"]`` and one list per metric).

    Its state rides in the Lightning checkpoint, so a resumed run keeps the epochs before the resume.
    """

    def __init__(self) -> None:
        self.history: dict[str, list] = {"epoch": []}

    @property
    def state_key(self) -> str:
        # the key of this state in checkpoints written when the class lived inside fit(): kept so
        # that such an interrupted run resumes with its history
        return "fit.<locals>._History"

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.history["epoch"].append(int(trainer.current_epoch))
        for key, val in trainer.callback_metrics.items():
            self.history.setdefault(key, []).append(float(val))

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"]


class BestState(Callback):
    """The weights of the epoch with the lowest monitored loss, in memory (runs without ``out``)."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best = math.inf
        self.state: Optional[dict] = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        val = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or val is None or not float(val) < self.best:
            return
        self.best = float(val)
        self.state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
