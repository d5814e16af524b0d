r"""OPES on an exported CV through the fused force: OPES_METAD and OPES_METAD_EXPLORE.

:class:`OPESBias` is :class:`~gmvae_cv.metad.base.FusedBiasEngine` (one TorchForce: features,
CV and tabulated bias) with the estimator of the ``openmm-opes`` package (Invernizzi and
Parrinello 2020, 2022; validated there against PLUMED): its kernel density estimate with
compression, the Silverman bandwidth shrink, :math:`Z`, :math:`\epsilon` and ``rct``. Nothing of
that maths is written again here: every :math:`k`-th step the engine hands ``openmm-opes`` the CV
values of each walker and the bias it felt (``OPES.addKernel``), then writes ``OPES.getBias()``
(on the same grid nodes, ``linspace(min, max, bins + 1)`` per axis) into the table the fused
force interpolates, exactly as ``openmm-opes`` feeds its own ``CustomCVForce``'s ``table()``:

.. math:: V(s) = (1 - 1/\gamma)\,k_BT \log(P(s)/Z + \epsilon), \quad
          \gamma = \Delta E / k_BT, \quad \epsilon = e^{-\Delta E/((1-1/\gamma) k_BT)}

(OPES_METAD_EXPLORE: :math:`\gamma (1 - 1/\gamma) k_BT` and the unweighted estimate). The table
holds :math:`V + \Delta E` (``openmm-opes``' convention: the unexplored floor at 0 energy);
:meth:`OPESBias.bias_at` and the COLVAR column ``opes.bias`` report :math:`V` itself, as PLUMED.

Why not ``openmm_opes.OPES`` as it is: its bias force is a ``CustomCVForce`` holding the CV's
forces, the route whose cost the fused force avoids (see ``benchmarks/bias_speed.py``), and it
reads the CV from that force. Here its ``OPES`` object is built on a throwaway ``System`` with
placeholder variables carrying the grid, widths and periodicity; its force is never put in a
context.

Units: CV values and sigma in the CV's units, energies kJ/mol, temperature K.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from openmm import unit
import openmm
from openmm import app

from .._core.checks import as_value, check_int, check_positive
from .._core.errors import GMVAEInputError
from ..deploy import CVModel
from .base import FusedBiasEngine
from .parameters import BiasedVariable, biased_variables, check_cv, gas_constant, variables_grid, wall_values
from .walls import resolve_walls

__all__ = ["OPESBias", "OPESParameters", "OPESKernel"]


@dataclass
class OPESParameters:
    r"""The parameters of an OPES bias (what ``run.json`` records; also the ``bias`` of a
    :class:`~gmvae_cv.metad.settings.RunSettings`).

    Attributes
    ----------
    sigma : sequence of float
        Kernel widths, CV units: ``openmm-opes``' fixed ``biasWidth``, the width of the unbiased
        distribution. OPES_METAD kernels start at ``sigma`` (PLUMED's ``SIGMA``), OPES_METAD_EXPLORE
        kernels (an estimate of the sampled density) at :math:`\sqrt{\gamma}` ``sigma``; both
        shrink with the effective sample size.
    barrier : float
        Free-energy barrier to overcome :math:`\\Delta E`, kJ/mol (``BARRIER``; sets
        :math:`\\gamma = \\Delta E / k_BT` and :math:`\\epsilon`), > 0 and above :math:`k_BT`.
    pace : int
        Steps between kernels (``PACE``), >= 1.
    explore : bool
        OPES_METAD_EXPLORE instead of OPES_METAD.
    components, grid_min, grid_max, grid_bin
        The biased components and their grid (defaults as in :func:`~gmvae_cv.metad.parameters.biased_variables`).
    compression_threshold : float
        Mahalanobis distance below which kernels merge (``COMPRESSION_THRESHOLD``, default 1).
    walls : bool
        Walls on the non-periodic biased components (:mod:`gmvae_cv.metad.walls`), default on.
    wall_margin, wall_kappa : sequence of float, optional
        Per biased component: the walls' bounds inside the grid edges (CV units, default 4 sigma)
        and stiffness (kJ/mol/CV-unit^2, default 2 kT / sigma^2). The engine records the values
        used (None for periodic components and without walls).
    """

    sigma: Optional[Sequence[float]] = None
    barrier: float = 40.0
    pace: int = 500
    explore: bool = False
    components: Optional[Sequence[int]] = None
    grid_min: Optional[Sequence[float]] = None
    grid_max: Optional[Sequence[float]] = None
    grid_bin: Optional[Sequence[int]] = None
    compression_threshold: float = 1.0
    walls: bool = True
    wall_margin: Optional[Sequence[float]] = None
    wall_kappa: Optional[Sequence[float]] = None

    @property
    def method(self) -> str:
        return "opes-explore" if self.explore else "opes"


@dataclass
class OPESKernel:
    """One deposited kernel, as PLUMED's ``KERNELS`` file lists it (before compression).

    Attributes
    ----------
    step, walker : int
    time : float
        ps.
    center, sigma : ndarray, shape ``(d,)``
        CV units; ``sigma`` after the bandwidth shrink.
    height : float
        PLUMED's ``height``: :math:`e^{\\log w} \\prod_i \\sigma_{0,i}/\\sigma_i`.
    logweight : float
        :math:`\\beta V` at deposition (0 for OPES_METAD_EXPLORE, whose estimate is unweighted).
    bias : float
        :math:`V` the walker felt, kJ/mol.
    """

    step: int
    walker: int
    time: float
    center: np.ndarray
    sigma: np.ndarray
    height: float
    logweight: float
    bias: float


class OPESBias(FusedBiasEngine):
    """OPES (or OPES-explore) on 1 to 3 components of an exported CV, through the fused force.

    Parameters
    ----------
    cv : CVModel
    temperature : float or Quantity
        K.
    barrier : float or Quantity
        kJ/mol, > 0 (and > :math:`k_BT`, so that :math:`\\gamma > 1`).
    pace : int
        Steps between kernels (>= 1).
    sigma : sequence of float
        Initial kernel widths, CV units, one per biased component.
    explore : bool
        OPES_METAD_EXPLORE.
    components, grid_min, grid_max, grid_bin
        As :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`; the components must be all
        periodic or none (``openmm-opes``' grids).
    compression_threshold : float
    walls, wall_margin, wall_kappa, route, dtype, table_path, heating_limit
        As :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`.
    on_kernel : callable, optional
        ``on_kernel(kernel)`` with each :class:`OPESKernel` (e.g. a KERNELS writer).

    Examples
    --------
    >>> from gmvae_cv.deploy.loaders import feature_cv
    >>> from gmvae_cv.features import alanine_backbone_torsions
    >>> opes = OPESBias(feature_cv(alanine_backbone_torsions(transform="raw")), temperature=300, barrier=30,
    ...                 pace=500, sigma=[0.3, 0.3])
    >>> opes.grid.shape, round(opes.bias_at([0.0, 0.0]), 6)
    ((106, 106), -30.0)
    """

    def __init__(self, cv: CVModel, *, temperature: Any, barrier: Any, pace: int, sigma: Sequence[float],
                 explore: bool = False, components: Optional[Sequence[int]] = None,
                 grid_min: Optional[Sequence[float]] = None, grid_max: Optional[Sequence[float]] = None,
                 grid_bin: Optional[Sequence[int]] = None, compression_threshold: float = 1.0, walls: bool = True,
                 wall_margin: Optional[Sequence[float]] = None, wall_kappa: Optional[Sequence[float]] = None,
                 route: str = "auto",
                 dtype: str = "float64", table_path: Optional[str | os.PathLike] = None,
                 heating_limit: Optional[float | str] = "auto", on_kernel: Optional[Callable] = None) -> None:
        cv = check_cv(cv)
        temperature = as_value(temperature, unit.kelvin, "temperature")
        barrier = as_value(barrier, unit.kilojoule_per_mole, "barrier")
        pace = check_int(pace, "pace", minimum=1)
        kt = gas_constant() * temperature
        if not barrier > kt:
            raise GMVAEInputError(f"'barrier' is {barrier:g} kJ/mol, expected more than kT = {kt:.4g} kJ/mol at {temperature:g} K "
                                  "(OPES's bias factor barrier/kT must exceed 1)")
        compression_threshold = check_positive(compression_threshold, "compression_threshold", strict=False)
        variables = biased_variables(cv, components, sigma, grid_min, grid_max, grid_bin)
        if len({v.periodic for v in variables}) > 1:
            raise GMVAEInputError(f"'components' {[v.component for v in variables]} mix periodic and non-periodic "
                                  "components; OPES (openmm-opes) needs all periodic or none")
        wall_set = resolve_walls(variables, kt, walls=walls, margin=wall_margin, kappa=wall_kappa)
        super().__init__(cv, tuple(v.component for v in variables), variables_grid(variables), temperature=temperature,
                         pace=pace, route=route, dtype=dtype, table_path=table_path, heating_limit=heating_limit,
                         walls=wall_set)
        self.variables = variables
        self.params = OPESParameters(sigma=tuple(v.sigma for v in variables), barrier=float(barrier), pace=pace,
                                     explore=bool(explore), components=tuple(v.component for v in variables),
                                     grid_min=tuple(v.minimum for v in variables),
                                     grid_max=tuple(v.maximum for v in variables),
                                     grid_bin=tuple(v.bins for v in variables),
                                     compression_threshold=float(compression_threshold), walls=bool(walls),
                                     **wall_values(variables, wall_set))
        self.temperature = float(temperature)
        self.kT = kt
        self.estimator = _estimator(variables, temperature, barrier, pace, bool(explore), float(compression_threshold))
        self.on_kernel = on_kernel
        self.kernels: list[OPESKernel] = []  # this object's lifetime (a restart starts a new list)
        self.n_deposited = 0
        self._update_grid()
        self.binding.write()

    # ------------------------------------------------------------------ the bias
    @property
    def bias_factor(self) -> float:
        """:math:`\\gamma = \\Delta E / k_BT` (OPES's default, as PLUMED)."""
        return float(self.estimator._biasFactor)

    def _update_grid(self) -> None:
        """Node values = ``openmm-opes``' bias on the grid + barrier (its axes are reversed)."""
        bias = self.estimator.getBias().value_in_unit(unit.kilojoule_per_mole)
        self.grid.values = np.ascontiguousarray(np.asarray(bias).T) + self.params.barrier

    def bias_at(self, s: Any) -> float:
        """The bias :math:`V` (kJ/mol) at CV values ``s`` (all components, shape ``(D,)``), as the force
        computes it less the barrier (PLUMED's ``opes.bias``)."""
        return super().bias_at(s) - self.params.barrier

    def bias_on_grid(self) -> np.ndarray:
        """:math:`V` on the grid nodes, kJ/mol, axis ``a`` = biased component ``a``."""
        return self.grid.values - self.params.barrier

    def rct(self) -> float:
        """PLUMED's ``rct`` (``openmm-opes``' running :math:`c(t)`), kJ/mol."""
        return float(self.estimator.getCt("running").value_in_unit(unit.kilojoule_per_mole))

    def free_energy(self) -> np.ndarray:
        """``openmm-opes``' free-energy estimate on the grid nodes, kJ/mol (NaN before the first kernel)."""
        return np.ascontiguousarray(np.asarray(self.estimator.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)).T)

    def n_kernels(self) -> int:
        """Kernels in the compressed estimate that defines the bias."""
        return int(self.estimator.getNumKernels())

    bias_fields = ("opes.bias", "opes.rct", "opes.nker")

    def bias_columns(self, s: np.ndarray) -> list[float]:
        """``opes.bias``, ``opes.rct`` and ``opes.nker`` at CV values ``s``."""
        if getattr(self, "_rct_cache", (None,))[0] != self.version:
            self._rct_cache = (self.version, self.rct())
        return [self.bias_at(s), self._rct_cache[1], float(self.n_kernels())]

    # ------------------------------------------------------------------ deposition
    def deposit(self, centers: Sequence[np.ndarray], step: int, time_ps: float,
                walkers: Optional[Sequence[int]] = None) -> list[OPESKernel]:
        """Add one kernel per walker at CV values ``centers`` (all components each), weighted by the
        bias each felt before this round (as PLUMED's ``WALKERS_MPI``), then write the new bias to
        the table (contexts must be told with :meth:`sync`; :meth:`step` does it)."""
        comp = list(self.params.components)
        walkers = list(range(len(centers))) if walkers is None else list(walkers)
        points = [np.asarray(s, dtype=np.float64)[comp] for s in centers]
        felt = [self.bias_at(s) for s in centers]
        new = []
        for w, c, v in zip(walkers, points, felt):
            if not self.estimator._observe(c):
                continue
            sigma0, sigma = self._bandwidths(v)
            if self.estimator.addKernel(c, v * unit.kilojoule_per_mole):
                logw = 0.0 if self.params.explore else v / self.kT
                new.append(OPESKernel(step=int(step), walker=int(w), time=float(time_ps), center=c.copy(), sigma=sigma,
                                      height=float(math.exp(logw) * np.prod(sigma0 / sigma)), logweight=logw, bias=v))
        if new:
            self.n_deposited += len(new)
            self._update_grid()
            self.binding.write()
            for k in new:
                self.kernels.append(k)
                if self.on_kernel is not None:
                    self.on_kernel(k)
        return new

    def _bandwidths(self, v: float) -> tuple[np.ndarray, np.ndarray]:
        """Widths of the kernel ``addKernel`` is about to add to the estimate that defines the bias:
        before and after the shrink (``openmm-opes``' rule, read back for the KERNELS file)."""
        est = self.estimator
        variance = np.asarray(est._variance["total"].get(), dtype=float)
        weighting = "" if self.params.explore else ".rw"
        if weighting == ".rw":
            variance = variance / est._biasFactor
        logw = 0.0 if self.params.explore else v / self.kT
        factor = est._kde[f"total{weighting}"].bandwidthFactor(logw)
        sigma0 = np.sqrt(variance)
        return sigma0, np.maximum(sigma0 * factor, est.minBandwidth)

    def _deposit_round(self, centers: list, step: int, time_ps: float, sims: list) -> list:
        return self.deposit(centers, step, time_ps)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """``openmm-opes``' state (flat arrays, prefixed ``opes.``) and the counters."""
        state = {f"opes.{k}": np.asarray(v) for k, v in self.estimator.getState().items()}
        state["n_deposited"] = np.asarray(self.n_deposited)
        state["version"] = np.asarray(self.version)
        return state

    def load_state_dict(self, state: dict, *, source: str = "state") -> None:
        """Restore :meth:`state_dict` output; the table is rewritten from the restored estimate."""
        opes = {k[len("opes."):]: v for k, v in state.items() if k.startswith("opes.")}
        if not opes:
            raise GMVAEInputError(f"{source}: holds no OPES state ('opes.*' arrays); it is not from an OPES run")
        positions = np.asarray(opes.get("totalRW_positions", opes.get("total_positions", np.zeros((0, 0)))))
        if positions.size and positions.shape[1] != len(self.params.components):
            raise GMVAEInputError(f"{source}: the OPES kernels have {positions.shape[1]} CV components, "
                                  f"this bias {len(self.params.components)}")
        try:
            self.estimator.setState({k: (v.item() if np.ndim(v) == 0 else v) for k, v in opes.items()})
        except (KeyError, ValueError) as exc:
            raise GMVAEInputError(f"{source}: the OPES state does not fit this bias ({exc})") from None
        self.n_deposited = int(state.get("n_deposited", 0))
        self.version = int(state.get("version", self.version))
        self._update_grid()
        self.binding.write()

    def refresh_table(self) -> None:
        """Rebuild the estimate from its own state (as a restart does: ``openmm-opes`` recomputes its
        caches there) and rewrite the table, so that a run continued from a checkpoint is
        bit-identical to an uninterrupted one. Contexts must be told with :meth:`sync`."""
        self.estimator.setState(self.estimator.getState())
        self._update_grid()
        self.binding.refresh()

    def close(self) -> None:
        """Nothing to release (no walkers directory)."""


def _estimator(variables: Sequence[BiasedVariable], temperature: float, barrier: float, pace: int, explore: bool,
               compression_threshold: float):
    """``openmm_opes.OPES`` on a throwaway System, with placeholder CV forces carrying our grid and widths."""
    from openmm_opes import OPES

    placeholders = [app.BiasVariable(openmm.CustomBondForce("0"), v.minimum, v.maximum, v.sigma, v.periodic, v.bins + 1)
                    for v in variables]
    return OPES(openmm.System(), placeholders, temperature, barrier, pace, None, exploreMode=explore,
                compressionThreshold=compression_threshold)
