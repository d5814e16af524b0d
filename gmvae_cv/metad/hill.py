"""One deposited metadynamics hill (the record the engine, the walkers and the HILLS writer share)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Hill"]


@dataclass
class Hill:
    """One deposited hill.

    Attributes
    ----------
    step : int
        Step at which it was deposited (it acts from the next step on).
    walker : int
    time : float
        ps.
    center, sigma : ndarray, shape ``(D,)``
        CV units.
    height : float
        Deposited height :math:`W`, kJ/mol (``HILLS`` files hold :math:`W\\gamma/(\\gamma-1)`).
    """

    step: int
    walker: int
    time: float
    center: np.ndarray
    sigma: np.ndarray
    height: float
