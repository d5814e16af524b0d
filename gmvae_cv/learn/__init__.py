"""Stage 2, learn: the GMVAE and its training.

Datasets with weights and a time lag (:func:`make_dataset`), the loss (:func:`gmvae_loss`,
:class:`GMVAELoss`), the model (:class:`GMVAECV`, an mlcolvar ``BaseCV`` + Lightning module whose
``forward_cv`` is the exported encoder mean), training (:class:`TrainConfig`, :func:`fit`) and the
run directory (:class:`GMVAERun`, :func:`load_run`; :mod:`.rundir`). Imports :mod:`gmvae_cv.features`.
"""

from .data import feature_inputs, load_trajectories, make_dataset
from .loss import GMVAELoss, gmvae_loss, log_normal
from .model import GMVAECV
from .config import TrainConfig
from .rundir import RUN_JSON, TRAINING_RUN_FORMAT, GMVAERun, load_run
from .train import fit

__all__ = [
    "make_dataset", "load_trajectories", "feature_inputs", "log_normal", "gmvae_loss", "GMVAELoss", "GMVAECV",
    "TrainConfig", "GMVAERun", "fit", "load_run", "TRAINING_RUN_FORMAT", "RUN_JSON",
]
