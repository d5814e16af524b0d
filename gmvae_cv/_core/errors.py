"""The project's exceptions.

:class:`GMVAEInputError`
    Bad input. Every message names where the value came from (a file, or an argument name),
    which field is wrong and what was expected, e.g.
    ``data.npy: 'data' has 3 dimensions, expected a 2D array (n_frames, n_features)``.
:class:`SimulationUnstableError`
    A biased simulation became unstable.
"""

from __future__ import annotations

__all__ = ["GMVAEInputError", "SimulationUnstableError"]


class GMVAEInputError(ValueError):
    """Bad input: the message names the source, the field and what was expected."""


class SimulationUnstableError(RuntimeError):
    """A biased simulation became unstable: non-finite positions, CV or energy, or runaway heating.

    Raised by :meth:`gmvae_cv.metad.WellTemperedMetadynamics.step` with what was seen (step, CV,
    kinetic temperature, the largest bias force); the run's last checkpoint is left as it was.
    """
