"""Placing atoms from internal coordinates (bond, angle, torsion), as the structure builders do."""

from __future__ import annotations

import numpy as np

__all__ = ["place"]


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, ang: float, dih: float) -> np.ndarray:
    """Position of ``d`` with ``|c-d| = bond``, angle ``b-c-d = ang`` and torsion ``a-b-c-d = dih`` (deg).

    Parameters
    ----------
    a, b, c : ndarray, shape ``(3,)``
        The three atoms before ``d`` (nm).
    bond : float
        nm.
    ang, dih : float
        Degrees (IUPAC torsion sign).

    Returns
    -------
    ndarray, shape ``(3,)``
    """
    ang, dih = np.radians(ang), np.radians(dih)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    return c - bond * np.cos(ang) * bc + bond * np.sin(ang) * (np.cos(dih) * m + np.sin(dih) * n)
