r"""Exact relaxation times of overdamped dynamics: a fine-grid Smoluchowski (Fokker-Planck) generator.

For :math:`dx = -\nabla U/\zeta\,dt + \sqrt{2k_BT/\zeta}\,dW` the density obeys
:math:`\partial_t p = D\nabla\cdot(\nabla p + \beta p\nabla U)` with :math:`D = k_BT/\zeta`. On a
regular grid of spacing :math:`h`, the finite-volume generator with rates

.. math::
    k_{i\to j} = \frac{D}{h^2}\, e^{-\beta (U_j - U_i)/2}

between neighbouring cells obeys detailed balance with :math:`\pi_i \propto e^{-\beta U_i}` and
converges to the continuous operator as :math:`h \to 0` (Bicout and Szabo, J. Chem. Phys. 109,
2325, 1998). Symmetrised with :math:`\pi^{1/2}`, its off-diagonal entries are all :math:`D/h^2`,
so the eigenvalues :math:`0 > -\lambda_1 > -\lambda_2 \ldots` come from a symmetric (tridiagonal
in 1D, sparse in 2D) eigenproblem; the relaxation times are :math:`t_k = 1/\lambda_k`, in the
time units of the integrator (``dt``).

This is the independent answer the MSM implied timescales of :mod:`gmvae_cv.analysis.msm` are tested
against.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.linalg import eigh_tridiagonal
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from .._core.errors import GMVAEInputError
from .._core.checks import check_int, check_positive
from .toy import ToySystem

__all__ = ["relaxation_times"]


def relaxation_times(
    system: ToySystem,
    bounds: Sequence[tuple[float, float]],
    n_grid: int | Sequence[int],
    *,
    k: int = 3,
    friction: float = 1.0,
) -> np.ndarray:
    """The ``k`` slowest relaxation times of the overdamped dynamics of ``system``.

    Parameters
    ----------
    system : ToySystem
        Supplies ``potential`` and ``kT``.
    bounds : sequence of (min, max)
        Box per coordinate (reflecting walls); wide enough that the density vanishes there.
    n_grid : int or sequence of int
        Cells per coordinate.
    k : int
        Number of relaxation times.
    friction : float
        :math:`\\zeta` of the integrator (1 in :func:`~gmvae_cv.systems.overdamped_langevin`).

    Returns
    -------
    (k,) ndarray
        Relaxation times, slowest first, in the system's time units.
    """
    d = system.dim
    if len(bounds) != d:
        raise GMVAEInputError(f"'bounds' has {len(bounds)} entries for a {d}D system")
    ns = [n_grid] * d if isinstance(n_grid, (int, np.integer)) else list(n_grid)
    ns = [check_int(n, "n_grid", minimum=10) for n in ns]
    k = check_int(k, "k", minimum=1)
    beta = 1.0 / system.kT
    diff = system.kT / check_positive(friction, "friction")
    axes = []
    for (lo, hi), n in zip(bounds, ns):
        h = (hi - lo) / n
        axes.append(lo + h * (np.arange(n) + 0.5))
    hs = [(hi - lo) / n for (lo, hi), n in zip(bounds, ns)]
    if d == 1:
        u = beta * np.ravel(system.potential(axes[0][:, None]))
        c = diff / hs[0] ** 2
        up = c * np.exp(-(u[1:] - u[:-1]) / 2)
        down = c * np.exp(-(u[:-1] - u[1:]) / 2)
        diag = np.zeros(ns[0])
        diag[:-1] -= up
        diag[1:] -= down
        off = np.full(ns[0] - 1, c)
        ev = eigh_tridiagonal(diag, off, eigvals_only=True, select="i", select_range=(ns[0] - k - 1, ns[0] - 1))
        lam = -np.sort(ev)[::-1][1:]
        return 1.0 / lam
    if d == 2:
        X, Y = np.meshgrid(axes[0], axes[1], indexing="ij")
        u = beta * system.potential(np.c_[X.ravel(), Y.ravel()]).reshape(ns)
        n_tot = ns[0] * ns[1]
        index = np.arange(n_tot).reshape(ns)
        rows, cols, vals = [], [], []
        diag = np.zeros(n_tot)
        for axis, h in enumerate(hs):
            c = diff / h**2
            a = index.take(np.arange(ns[axis] - 1), axis=axis).ravel()
            b = index.take(np.arange(1, ns[axis]), axis=axis).ravel()
            ua, ub = u.ravel()[a], u.ravel()[b]
            np.add.at(diag, a, -c * np.exp(-(ub - ua) / 2))
            np.add.at(diag, b, -c * np.exp(-(ua - ub) / 2))
            rows += [a, b]
            cols += [b, a]
            vals += [np.full(len(a), c), np.full(len(a), c)]
        S = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_tot, n_tot)).tocsr()
        S = S + sp.diags(diag)
        ev = eigsh(S, k=k + 1, sigma=1e-12, which="LM", return_eigenvectors=False)
        lam = -np.sort(ev)[::-1][1:]
        return 1.0 / lam
    raise GMVAEInputError(f"relaxation_times handles 1D and 2D systems, not {d}D")
