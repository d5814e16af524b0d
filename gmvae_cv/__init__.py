"""gmvae-cv: Gaussian-mixture VAE collective variables for enhanced sampling.

Public API
----------
Model and training
    :class:`GMVAECV`, :func:`gmvae_loss`, :class:`GMVAELoss`, :class:`TrainConfig`, :func:`fit`,
    :func:`load_run`, :class:`GMVAERun`, :func:`make_dataset`
Systems with known answers
    :class:`FourWell`, :class:`MullerBrown`
Analysis helpers
    :func:`cluster_confusion`
Errors
    :class:`GMVAEInputError`
"""

__version__ = "0.1.0"

import logging as _logging

from ._validation import GMVAEInputError
from .data import make_dataset
from .loss import GMVAELoss, gmvae_loss
from .metrics import cluster_confusion
from .model import GMVAECV
from .systems import FourWell, MullerBrown
from .train import GMVAERun, TrainConfig, fit, load_run

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "GMVAECV",
    "GMVAELoss",
    "gmvae_loss",
    "TrainConfig",
    "fit",
    "load_run",
    "GMVAERun",
    "make_dataset",
    "FourWell",
    "MullerBrown",
    "cluster_confusion",
    "GMVAEInputError",
]
