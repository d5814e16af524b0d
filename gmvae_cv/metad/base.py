"""What every engine biasing an exported CV through the fused force shares.

:class:`FusedBiasEngine` holds the CV, the grid the force interpolates, the force binding
(:class:`~gmvae_cv.metad.binding.ForceBinding`) and the stability checks
(:class:`~gmvae_cv.metad.stability.StabilityMonitor`), and advances walkers in lock-step, calling
:meth:`FusedBiasEngine._deposit_round` every ``pace`` steps. The engines say what a deposition
is: hills with the well-tempered rule (:class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`)
or a kernel of the OPES density estimate (:class:`~gmvae_cv.metad.opes.OPESBias`).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
from openmm import unit

from .._core.checks import check_int
from .._core.errors import GMVAEInputError
from ..deploy import CVModel
from .binding import ForceBinding
from .grid import BiasGrid
from .stability import StabilityMonitor, lockstep
from .walls import WALLS_FIELD, Walls

__all__ = ["FusedBiasEngine"]


class FusedBiasEngine:
    """Base of the engines: a CV, a grid, its forces, the stability checks and the stepping loop.

    Parameters
    ----------
    cv : CVModel
    components : tuple of int
        Biased CV components (the grid's axes).
    grid : BiasGrid
    temperature : float
        K (for the heating check).
    pace : int
        Steps between depositions.
    route, dtype, table_path
        See :class:`~gmvae_cv.metad.binding.ForceBinding`.
    heating_limit : float, 'auto' or None
        See :class:`~gmvae_cv.metad.stability.StabilityMonitor`.
    walls : Walls, optional
        Walls on the non-periodic components (:mod:`gmvae_cv.metad.walls`), added by the force (on
        every route) to the tabulated bias.

    Attributes
    ----------
    bias_fields : tuple of str
        The method's COLVAR bias fields (:meth:`bias_columns`); :attr:`colvar_fields` adds
        ``walls.bias`` when there are walls.
    """

    bias_fields: tuple = ()

    def __init__(self, cv: CVModel, components: tuple, grid: BiasGrid, *, temperature: float, pace: int, route: str,
                 dtype: str, table_path: Optional[str | os.PathLike], heating_limit: Optional[float | str],
                 walls: Optional[Walls] = None) -> None:
        self.cv = cv
        self.grid = grid
        self.walls = walls
        grid.walls = walls
        self.route = route
        self.dtype = dtype
        self.binding = ForceBinding(cv, components, grid, route=route, dtype=dtype, table_path=table_path)
        self.table_path = self.binding.table_path
        self.stability = StabilityMonitor(temperature, heating_limit, self.binding)
        self._components = tuple(components)
        self._pace = int(pace)

    # ------------------------------------------------------------------ the forces
    def add_force(self, system: Any, positions: Any, box: Any = None, *, topology: Any = None, use_box: Optional[bool] = None,
                  force_group: Optional[int] = None):
        """Add the bias force to ``system`` (one call per walker system) and return it.

        Parameters
        ----------
        system : openmm.System
            Its atom count must be the CV's ``n_atoms``.
        positions : array_like or Quantity, shape ``(n_atoms, 3)``
            A configuration (nm): the compiled force is traced and checked there, and its CV
            must lie inside the grid of non-periodic components.
        box : array_like, shape ``(3, 3)``, optional
            Periodic box vectors (rows, nm); default the system's.
        topology : openmm.app.Topology, optional
            Used to decide ``use_box``: OpenMM keeps molecules whole in its contexts, so a CV
            whose atoms all belong to one molecule needs no minimum image.
        use_box : bool, optional
            Pass the box to the CV (minimum image). Default: false for a non-periodic system or
            a CV within one molecule of ``topology``, true otherwise. With the box, the CV's
            minimum-image code branches on the box values, which tracing cannot follow: the
            force then uses the ``"autograd"`` route (a :class:`~gmvae_cv.metad.binding.BiasRouteWarning`
            says so and :attr:`force_info` records it).
        force_group : int, optional
            Default: the highest group no force of ``system`` uses (as ``app.Metadynamics``).

        Returns
        -------
        openmmtorch.TorchForce
        """
        return self.binding.add_force(system, positions, box, topology=topology, use_box=use_box,
                                      force_group=force_group, check_inside=self.check_inside)

    @property
    def force_info(self) -> dict:
        """How the force was built (route, dtype, compiled graph check), once :meth:`add_force` ran."""
        return self.binding.info

    @property
    def version(self) -> int:
        """Version of the table the forces read (increases at every write)."""
        return self.binding.version

    @version.setter
    def version(self, value: int) -> None:
        self.binding.version = int(value)

    @property
    def _builder(self):
        return self.binding.builder

    @property
    def _force_groups(self) -> dict:
        return self.binding.force_groups

    def sync(self, contexts: Sequence[Any]) -> None:
        """Make each context's bias force use the current table."""
        self.binding.sync(contexts)

    def refresh_table(self) -> None:
        """Recompute the whole table from the node values (as a restart does) and write it.

        Depositions update the table locally, which equals a recomputation to float64 rounding
        but not bit for bit; :func:`~gmvae_cv.metad.run.run_metadynamics` refreshes at every
        checkpoint, so that a run continued from a checkpoint is bit-identical to an
        uninterrupted one. Contexts must be told with :meth:`sync`.
        """
        self.binding.refresh()

    # ------------------------------------------------------------------ evaluation
    def cv_values(self, context: Any) -> np.ndarray:
        """All CV components of a context's current positions, shape ``(D,)``."""
        return self.binding.cv_values(context)

    def _cv_of_state(self, state: Any, pos: np.ndarray) -> np.ndarray:
        return self.binding.cv_of_state(state, pos)

    def bias_at(self, s: Any) -> float:
        """The method's bias (kJ/mol) at CV values ``s`` (all components, shape ``(D,)``), as the force
        computes it (the force adds :meth:`wall_energy`)."""
        s = np.asarray(s, dtype=np.float64)
        v, _ = self.grid.evaluate(s[list(self._components)][None])
        return float(v[0])

    def wall_energy(self, s: Any) -> float:
        """The walls' energy (kJ/mol) at CV values ``s`` (all components, shape ``(D,)``); 0 without walls."""
        if self.walls is None:
            return 0.0
        return float(self.walls.energy(np.asarray(s, dtype=np.float64)[list(self._components)]))

    def walls_info(self) -> Optional[dict]:
        """The walls' bounds and stiffness for ``run.json`` (None without walls)."""
        return None if self.walls is None else self.walls.to_dict()

    @property
    def colvar_fields(self) -> tuple:
        """The COLVAR bias fields: :attr:`bias_fields`, then ``walls.bias`` when there are walls."""
        return tuple(self.bias_fields) + ((WALLS_FIELD,) if self.walls is not None else ())

    def colvar_columns(self, s: np.ndarray) -> list[float]:
        """The values of :attr:`colvar_fields` at CV values ``s`` (all components)."""
        columns = list(self.bias_columns(s))
        if self.walls is not None:
            columns.append(self.wall_energy(s))
        return columns

    def bias_columns(self, s: np.ndarray) -> list[float]:
        """Hook: the values of :attr:`bias_fields` at CV values ``s``."""
        raise NotImplementedError

    def check_inside(self, s: np.ndarray, *, where: str) -> None:
        """Raise if the biased components of ``s`` lie outside a non-periodic grid range."""
        for a, c in enumerate(self._components):
            if self.grid.periodic[a]:
                continue
            if not (self.grid.lower[a] <= s[c] <= self.grid.upper[a]):
                raise GMVAEInputError(
                    f"CV component {c} of {where} is {s[c]:.6g}, outside the grid [{self.grid.lower[a]:.6g}, "
                    f"{self.grid.upper[a]:.6g}]; widen grid_min/grid_max (the bias is zero outside the grid)"
                )

    # ------------------------------------------------------------------ stability
    @property
    def heating_limit(self):
        return self.stability.heating_limit

    @property
    def kinetic_temperatures(self) -> list:
        return self.stability.kinetic_temperatures

    def temperature_limit(self, system: Any) -> Optional[float]:
        """The kinetic temperature (K) above which :meth:`check_stable` stops a walker of ``system``."""
        return self.stability.temperature_limit(system)

    def check_stable(self, simulations: Any) -> list[np.ndarray]:
        """Raise :class:`~gmvae_cv._core.errors.SimulationUnstableError` if a walker's positions,
        energies or CV are not finite or its kinetic temperature exceeds :meth:`temperature_limit`
        (called by :meth:`step` at every deposition); return every walker's CV values."""
        return self.stability.check(lockstep(simulations))

    def kinetic_temperature_summary(self) -> Optional[dict]:
        """Kinetic temperatures seen by :meth:`check_stable` in this object's lifetime: mean, 99th
        percentile and maximum (K), and the equilibrium expectation for comparison. A mean clearly
        above the thermostat's temperature (the standard error is given) means the bias force
        heats the system: see ``heating_limit``."""
        return self.stability.summary()

    # ------------------------------------------------------------------ stepping
    def step(self, simulations: Any, steps: int) -> list:
        """Advance one or several walkers by ``steps``, depositing every ``pace`` steps.

        Parameters
        ----------
        simulations : openmm.app.Simulation or list of them
            Walkers, each with this object's force (:meth:`add_force`) and all at the same
            ``currentStep``. They advance in lock-step, ``pace`` steps at a time.
        steps : int

        Returns
        -------
        list
            What was deposited during this call (engine-specific records).
        """
        sims = lockstep(simulations)
        steps = check_int(steps, "steps", minimum=0)
        if len({s.currentStep for s in sims}) != 1:
            raise GMVAEInputError(f"walkers are at different steps {[s.currentStep for s in sims]}, expected lock-step walkers")
        contexts = [s.context for s in sims]
        self._before_steps(sims)
        self.sync(contexts)
        pace = self._pace
        deposited: list = []
        todo = steps
        while todo > 0:
            current = sims[0].currentStep
            n = min(todo, pace - current % pace)
            for w, sim in enumerate(sims):
                self.stability.step(sim, w, n)
            todo -= n
            current = sims[0].currentStep
            if current % pace == 0:
                centers = self.check_stable(sims)
                time_ps = contexts[0].getTime().value_in_unit(_ps())
                deposited += self._deposit_round(centers, current, time_ps, sims)
                self._after_round()
                self.sync(contexts)
        return deposited

    def _before_steps(self, sims: list) -> None:
        """Hook: before a :meth:`step` call advances ``sims``."""

    def _deposit_round(self, centers: list, step: int, time_ps: float, sims: list) -> list:
        """Hook: one deposition per walker at CV values ``centers`` (all components each)."""
        raise NotImplementedError

    def _after_round(self) -> None:
        """Hook: after each deposition round."""


def _ps():
    return unit.picosecond
