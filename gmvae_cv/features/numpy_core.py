"""The NumPy rendering of a spec: positions and box from a trajectory, minimum-image vectors."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._core.checks import check_array
from .._core.errors import GMVAEInputError
from .types import _CONTACT_LIMIT_WINDOW

__all__ = []


# ------------------------------------------------------------------------------------ NumPy core
def _pre(source: Any) -> str:
    """``'<source>: '`` for error messages, or nothing."""
    return f"{source}: " if source is not None else ""


def _positions_and_box(traj: Any, box: Any, n_atoms: int, *, source: Any = None):
    """Return ``(xyz (F, N, 3) float64, box (F, 3, 3) float64 or None)``, checked."""
    name = "positions"
    if hasattr(traj, "xyz") and hasattr(traj, "topology"):
        xyz = traj.xyz
        if box is None and getattr(traj, "unitcell_vectors", None) is not None:
            box = traj.unitcell_vectors
        name = "traj.xyz"
    else:
        xyz = traj
    xyz = check_array(xyz, name, source=source)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise GMVAEInputError(
            f"{_pre(source)}'{name}' has shape {xyz.shape}, expected (n_atoms, 3) or (n_frames, n_atoms, 3) in nm"
        )
    if xyz.shape[1] != n_atoms:
        raise GMVAEInputError(
            f"{_pre(source)}'{name}' has {xyz.shape[1]} atoms, the feature spec expects n_atoms = {n_atoms}"
        )
    if box is not None:
        box = check_array(box, "box", source=source)
        if box.ndim == 2:
            box = np.broadcast_to(box, (xyz.shape[0], 3, 3))
        if box.shape != (xyz.shape[0], 3, 3):
            raise GMVAEInputError(
                f"{_pre(source)}'box' has shape {box.shape}, expected (3, 3) or ({xyz.shape[0]}, 3, 3) box vectors (rows, nm)"
            )
        det = np.linalg.det(box)
        if np.any(det <= 0):
            frame = int(np.argmax(det <= 0))
            raise GMVAEInputError(
                f"{_pre(source)}'box' of frame {frame} has volume {det[frame]:.4g} nm^3, expected box vectors (rows) spanning a positive volume"
            )
    return xyz, box


_SHIFTS = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=np.float64)


def _np_vec(xyz: np.ndarray, i: np.ndarray, j: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
    """Vectors ``x_j - x_i`` of shape ``(F, P, 3)``, minimum-imaged if ``box`` is given."""
    d = xyz[:, j] - xyz[:, i]
    if box is None:
        return d
    frac = d @ np.linalg.inv(box)
    d = d - np.round(frac) @ box
    offdiag = box - box * np.eye(3)
    if np.any(offdiag != 0):
        cand = d[:, :, None, :] + (_SHIFTS @ box)[:, None, :, :]  # (F, P, 27, 3)
        best = np.argmin((cand * cand).sum(-1), axis=2)
        d = np.take_along_axis(cand, best[:, :, None, None], axis=2)[:, :, 0]
    return d


def _np_rational(r: np.ndarray, r0: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``(1 - x^n) / (1 - x^m)`` with ``x = r / r0``, stable near ``x = 1`` and for large ``x``."""
    t = np.log(r / r0)
    a = np.abs(t)
    small = a < _CONTACT_LIMIT_WINDOW
    a_safe = np.where(small, 1.0, a)
    q = np.expm1(-n * a_safe) / np.expm1(-m * a_safe) * np.exp((n - m) * np.maximum(t, 0.0) * (~small))
    limit = n / m * (1.0 + 0.5 * (n - m) * t)
    return np.where(small, limit, q)


