"""Free-energy differences between two sets of states from (re)weighted frames, with errors.

:func:`delta_f` is the estimator behind ``F(B) - F(A) = -kT ln(P(B) / P(A))`` where ``P`` sums the
normalised weights of the frames in each set; its error is a jackknife over contiguous blocks of
frames (time order), so that correlated frames fall in one block. :func:`delta_f_phi` is the split
F(phi > 0) - F(phi < 0) that papers quote for alanine dipeptide, :func:`delta_f_running` the estimate
on growing prefixes of a run (dF versus simulated time), and :func:`count_transitions` the number of
changes between core sets (frames in neither skipped, so barrier recrossings do not count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._core.checks import check_array, check_int, check_positive
from .._core.errors import GMVAEInputError

__all__ = ["DeltaF", "delta_f", "delta_f_phi", "delta_f_running", "count_transitions"]


@dataclass(frozen=True)
class DeltaF:
    """A free-energy difference with its error.

    Attributes
    ----------
    value : float
        F(B) - F(A), kJ/mol (``nan`` when a set holds no weight).
    error : float
        Jackknife standard error over ``n_blocks`` blocks, kJ/mol (``nan`` when it cannot be
        computed: fewer than 2 blocks, or a block whose removal leaves a set empty).
    n_blocks : int
    n_frames : int
    """

    value: float
    error: float
    n_blocks: int
    n_frames: int

    def to_list(self) -> list:
        """``[value, error]`` with ``None`` for a value that could not be computed (JSON has no NaN)."""
        return [v if math.isfinite(v) else None for v in (self.value, self.error)]


def _mask(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype != bool:
        raise GMVAEInputError(f"'{name}' has shape {arr.shape} and dtype {arr.dtype}, expected a 1D bool array (n_frames,)")
    return arr


def _df(w_a: float, w_b: float, kT: float) -> float:
    return -kT * math.log(w_b / w_a) if (w_a > 0 and w_b > 0) else float("nan")


def delta_f(in_a: Any, in_b: Any, logw: Any, kT: float, *, n_blocks: int = 10) -> DeltaF:
    """F(B) - F(A) from weighted frames, with a block-jackknife error.

    Parameters
    ----------
    in_a, in_b : (n_frames,) array_like of bool
        Membership of each frame in set A and set B (frames in time order; a frame may be in
        neither).
    logw : (n_frames,) array_like
        Log-weights of the frames (any additive constant), e.g. :math:`\\beta (V - c(t))` from
        :func:`gmvae_cv.ct_log_weights`; zeros for unbiased frames.
    kT : float
        Thermal energy, kJ/mol.
    n_blocks : int
        Contiguous blocks of the jackknife (capped at the frame count).

    Returns
    -------
    DeltaF

    Examples
    --------
    >>> a = np.array([True, True, False, False]); b = ~a
    >>> round(delta_f(a, b, np.log([1.0, 1.0, 1.0, 3.0]), 1.0, n_blocks=2).value, 6)  # -ln(4 / 2)
    -0.693147
    """
    in_a, in_b = _mask(in_a, "in_a"), _mask(in_b, "in_b")
    logw = check_array(logw, "logw", ndim=1)
    if not (len(in_a) == len(in_b) == len(logw)):
        raise GMVAEInputError(f"'in_a', 'in_b', 'logw' have {len(in_a)}, {len(in_b)}, {len(logw)} frames, expected equal")
    check_positive(kT, "kT")
    n_blocks = check_int(n_blocks, "n_blocks", minimum=1)
    n = len(logw)
    if n == 0:
        return DeltaF(float("nan"), float("nan"), 0, 0)
    w = np.exp(logw - logw.max())
    n_blocks = min(n_blocks, n)
    edges = (np.arange(n_blocks + 1) * n) // n_blocks
    wa = np.add.reduceat(w * in_a, edges[:-1])
    wb = np.add.reduceat(w * in_b, edges[:-1])
    value = _df(wa.sum(), wb.sum(), kT)
    error = float("nan")
    if n_blocks >= 2 and math.isfinite(value):
        loo = np.array([_df(wa.sum() - wa[i], wb.sum() - wb[i], kT) for i in range(n_blocks)])
        if np.all(np.isfinite(loo)):
            error = float(math.sqrt((n_blocks - 1) / n_blocks * np.sum((loo - loo.mean()) ** 2)))
    return DeltaF(float(value), error, int(n_blocks), int(n))


def delta_f_phi(phi: Any, logw: Any, kT: float, *, n_blocks: int = 10) -> DeltaF:
    """F(phi > 0) - F(phi < 0) of alanine dipeptide from weighted frames.

    Parameters
    ----------
    phi : (n_frames,) array_like
        Backbone torsion phi, **radians**, frames in time order.
    logw : (n_frames,) array_like
        Log-weights (any additive constant).
    kT : float
        kJ/mol.
    n_blocks : int
        See :func:`delta_f`.

    Returns
    -------
    DeltaF
    """
    phi = check_array(phi, "phi", ndim=1)
    if phi.size and np.max(np.abs(phi)) > 2 * np.pi + 1e-6:
        raise GMVAEInputError("'phi' has values beyond 2 pi, expected radians (convert degrees with np.radians)")
    phi = np.angle(np.exp(1j * phi))  # to (-pi, pi]
    return delta_f(phi < 0, phi > 0, logw, kT, n_blocks=n_blocks)


def delta_f_running(in_a: Any, in_b: Any, logw: Any, kT: float, ends: Sequence[int], *, n_blocks: int = 10) -> list[DeltaF]:
    """:func:`delta_f` on the prefixes ``[:end]`` of the frames (dF against simulated time).

    Parameters
    ----------
    in_a, in_b, logw, kT, n_blocks
        As :func:`delta_f`.
    ends : sequence of int
        Prefix lengths (frames), each in ``1 .. n_frames``.

    Returns
    -------
    list of DeltaF
        One per prefix.
    """
    logw = check_array(logw, "logw", ndim=1)
    in_a, in_b = _mask(in_a, "in_a"), _mask(in_b, "in_b")
    out = []
    for e in ends:
        e = check_int(e, "ends", minimum=1)
        if e > len(logw):
            raise GMVAEInputError(f"'ends' holds {e}, beyond the {len(logw)} frames")
        out.append(delta_f(in_a[:e], in_b[:e], logw[:e], kT, n_blocks=n_blocks))
    return out


def count_transitions(labels: Any, a: int = 0, b: int = 1) -> int:
    """Number of changes between core sets ``a`` and ``b`` along a trajectory.

    Parameters
    ----------
    labels : (n_frames,) array_like of int
        Core-set label per frame in time order (e.g. :func:`gmvae_cv.alanine_basin`: 0 C7eq,
        1 C7ax, -1 neither). Frames in neither set are skipped, so leaving a core set and coming
        back counts nothing.
    a, b : int
        The two labels.

    Returns
    -------
    int

    Examples
    --------
    >>> count_transitions([0, -1, 0, -1, 1, 1, -1, 0])
    2
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise GMVAEInputError(f"'labels' has shape {labels.shape}, expected (n_frames,)")
    core = labels[(labels == a) | (labels == b)]
    return int(np.count_nonzero(np.diff(core) != 0))
