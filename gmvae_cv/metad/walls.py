r"""Walls that keep the CV inside the bias grid: PLUMED's ``UPPER_WALLS``/``LOWER_WALLS`` (``EXP=2``)
on every non-periodic biased component.

Why. The fused force's bias is zero outside a non-periodic grid (OpenMM's convention for its
tabulated functions), so a walker that leaves the grid feels the bias fall from its value at the
edge to zero, and its force from the edge's slope to zero: a step that the integrator cannot follow.
An OPES-explore bias, whose unexplored floor lies below every explored value, even draws the walker
out. PLUMED users keep a CV inside its grid with walls; so does the fused force, by default.

For biased component :math:`a` with grid range :math:`[\min_a, \max_a]`, margin :math:`m_a` and
stiffness :math:`\kappa_a` (kJ/mol per CV unit squared):

.. math:: W(s) = \sum_a \kappa_a \left[\max(0, s_a - u_a)^2 + \max(0, l_a - s_a)^2\right],
          \qquad l_a = \min_a + m_a, \quad u_a = \max_a - m_a,

which is PLUMED's ``UPPER_WALLS ARG=cv.a AT=u_a KAPPA=kappa_a EXP=2`` plus ``LOWER_WALLS ... AT=l_a``
(``OFFSET=0``, ``EPS=1``): zero inside :math:`[l, u]`, continuous with its first derivative at the
bounds. The force adds :math:`W` to the tabulated bias inside the same TorchScript energy
(:class:`~gmvae_cv.metad.grid_module.WallBias`), so the ``'compiled'`` route traces its force with
the rest and the ``'autograd'`` route back-propagates it; the ``'native'`` kernel adds the same
terms (:func:`gmvae_cv.metad._native_kernel.walls`).

Defaults: ``margin = 4 sigma`` and ``kappa = 2 kT / sigma**2`` (:data:`WALL_MARGIN_SIGMAS`,
:data:`WALL_KT`), i.e. :math:`W = 2\,k_BT` one sigma beyond a bound and :math:`32\,k_BT` (80 kJ/mol
at 300 K) at the grid edge, above OPES's default 40 kJ/mol barrier (the largest push an OPES bias
gives) by 16 kT. Soft, because a GMVAE CV can jump by more than a sigma in one 2 fs step (a switch
of q(y|x)): the wall then changes its energy by :math:`\kappa\delta^2` within the step, with a force
:math:`2\kappa\delta\,|\nabla s|` on atoms where :math:`\nabla s` is large. Measured on issue 13's
alanine dipeptide OPES-explore run (seed 1, GMVAE CV, 0.4 ns on Reference, deterministic replays):
with ``10 kT / sigma**2`` and ``2 sigma`` the CV crossed a bound for single steps (by up to 1.2
sigma), the wall added up to 36 kJ/mol and 35 000 kJ/mol/nm in a step, the kinetic temperature
jumped by 900-1400 K after such steps and the run stopped at step 17 500; without walls it stopped
at step 159 000 with the CV outside the grid (456 of 1 590 COLVAR rows outside); with the defaults
it completed, mean kinetic temperature 320 K (381 K without walls), no row outside the grid and at
most 2 sigma beyond a bound. With the grid's default range (the CV range of the training data
padded by half of it, at least 4 sigma) the bounds lie outside the data range.

Reweighting. The walls are part of the biased Hamiltonian but not of the metadynamics or OPES bias:
hill heights and OPES kernel weights use the method's bias only (as PLUMED, where walls are separate
bias actions). The COLVAR carries their energy as :data:`WALLS_FIELD` (``walls.bias``, kJ/mol) and
:class:`~gmvae_cv.analysis.reweight.ReweightedFES` adds it to the bias of every frame: zero for the
frames inside the bounds, :math:`e^{\beta W}` more weight for the few beyond (a region the walls keep
under-sampled, whose free energy is therefore uncertain).

Units: CV values, bounds and margins in the CV's units, kappa kJ/mol/CV-unit^2, energies kJ/mol.
This module needs NumPy only (the analysis reads :data:`WALLS_FIELD` from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError

__all__ = ["Walls", "WALLS_FIELD", "WALL_KT", "WALL_MARGIN_SIGMAS", "resolve_walls"]

WALLS_FIELD = "walls.bias"
"""COLVAR field of the walls' energy, kJ/mol (PLUMED's ``<label>.bias`` of a walls action)."""
WALL_KT = 2.0
"""Default wall energy one sigma beyond its bound, in kT: ``kappa = WALL_KT kT / sigma**2``."""
WALL_MARGIN_SIGMAS = 4.0
"""Default distance of the walls' bounds inside the grid edges, in sigmas."""


@dataclass(frozen=True)
class Walls:
    """Quadratic walls on the non-periodic biased components (see the module docstring).

    Attributes
    ----------
    axes : tuple of int
        Grid axes (positions among the biased components) that carry walls.
    components : tuple of int
        The CV components of those axes.
    lower, upper : tuple of float
        Bounds per walled axis, CV units (the walls are zero between them).
    kappa : tuple of float
        Stiffness per walled axis, kJ/mol/CV-unit^2.
    margin : tuple of float
        Distance of the bounds inside the grid edges per walled axis, CV units.
    """

    axes: tuple
    components: tuple
    lower: tuple
    upper: tuple
    kappa: tuple
    margin: tuple

    def energy(self, s: Any) -> np.ndarray:
        """The walls' energy (kJ/mol) at biased CV values ``s`` of shape ``(n, d)`` (or ``(d,)``:
        a 0-d result); ``d`` the number of biased components."""
        over, under, kappa = self._excess(s)
        return np.sum(kappa * (over**2 + under**2), axis=-1)

    def gradient(self, s: Any) -> np.ndarray:
        """:math:`\\partial W / \\partial s` at biased CV values ``s`` (shape as ``s``), kJ/mol/CV unit."""
        s = np.asarray(s, dtype=np.float64)
        over, under, kappa = self._excess(s)
        g = np.zeros_like(s)
        g[..., list(self.axes)] = 2.0 * kappa * (over - under)
        return g

    def _excess(self, s: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(s, dtype=np.float64)[..., list(self.axes)]
        return (np.maximum(0.0, x - np.asarray(self.upper)), np.maximum(0.0, np.asarray(self.lower) - x),
                np.asarray(self.kappa, dtype=np.float64))

    def to_dict(self) -> dict:
        """What ``run.json`` records (``params.walls``)."""
        return {"field": WALLS_FIELD, "components": list(self.components), "lower": list(self.lower),
                "upper": list(self.upper), "kappa": list(self.kappa), "margin": list(self.margin),
                "form": "kappa * max(0, s - upper)^2 + kappa * max(0, lower - s)^2 (PLUMED UPPER/LOWER_WALLS, EXP=2)",
                "units": {"bounds": "CV units", "kappa": "kJ/mol/CV-unit^2", "energy": "kJ/mol"}}


def resolve_walls(variables: Sequence[Any], kT: float, *, walls: bool = True, margin: Optional[Sequence[float]] = None,
                  kappa: Optional[Sequence[float]] = None) -> Optional[Walls]:
    """The walls of a bias on ``variables``, checked; None when ``walls`` is off or no biased
    component is non-periodic.

    Parameters
    ----------
    variables : sequence of BiasedVariable
        The biased components (grid range, sigma, periodicity).
    kT : float
        kJ/mol (for the default ``kappa``).
    walls : bool
    margin : sequence of float, optional
        Distance of the bounds inside the grid edges, one per biased component (entries of periodic
        components are ignored), CV units, >= 0; default ``4 sigma``.
    kappa : sequence of float, optional
        Stiffness, one per biased component (periodic entries ignored), kJ/mol/CV-unit^2, > 0;
        default ``2 kT / sigma**2``.
    """
    if not isinstance(walls, (bool, np.bool_)):
        raise GMVAEInputError(f"'walls' is {walls!r}, expected True or False")
    d = len(variables)
    margin_v = _per_component(margin, "wall_margin", d, strict=False)
    kappa_v = _per_component(kappa, "wall_kappa", d, strict=True)
    axes = [a for a, v in enumerate(variables) if not v.periodic]
    if not walls or not axes:
        return None
    lo, hi, ka, ma = [], [], [], []
    for a in axes:
        v = variables[a]
        m = WALL_MARGIN_SIGMAS * v.sigma if margin_v is None else margin_v[a]
        k = WALL_KT * kT / v.sigma**2 if kappa_v is None else kappa_v[a]
        if not v.minimum + m < v.maximum - m:
            raise GMVAEInputError(
                f"'wall_margin' of component {v.component} is {m:g}: the walls' bounds {v.minimum + m:g} and "
                f"{v.maximum - m:g} leave no room inside the grid [{v.minimum:g}, {v.maximum:g}]; "
                "give a smaller wall_margin or a wider grid")
        lo.append(float(v.minimum + m))
        hi.append(float(v.maximum - m))
        ka.append(float(k))
        ma.append(float(m))
    return Walls(axes=tuple(axes), components=tuple(int(variables[a].component) for a in axes), lower=tuple(lo),
                 upper=tuple(hi), kappa=tuple(ka), margin=tuple(ma))


def _per_component(values: Optional[Sequence[float]], name: str, d: int, *, strict: bool) -> Optional[list]:
    if values is None:
        return None
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64)) if np.ndim(values) <= 1 else None
    if arr is None or arr.shape != (d,):
        raise GMVAEInputError(f"'{name}' has {np.size(values)} value(s), expected {d} (one per biased component)")
    ok = np.isfinite(arr) & ((arr > 0) if strict else (arr >= 0))
    if not ok.all():
        raise GMVAEInputError(f"'{name}' is {arr.tolist()}, expected finite values {'> 0' if strict else '>= 0'}")
    return arr.tolist()
