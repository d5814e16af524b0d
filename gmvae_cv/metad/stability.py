"""Stability of a biased run: non-finite states and heating by the bias force.

A CV that changes almost discontinuously between neighbouring configurations (a steep switch of
q(y|x) between clusters with distant latent means) makes the bias force spike where it is crossed;
the integrator then pumps energy into the system at every crossing until it blows up.
:class:`StabilityMonitor` looks at every walker at every deposition and stops the run with
:class:`~gmvae_cv._core.errors.SimulationUnstableError` before that happens.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import openmm
from scipy.stats import chi2
from openmm import unit

from .._core.errors import GMVAEInputError, SimulationUnstableError
from .binding import ForceBinding
from .parameters import gas_constant

__all__ = ["StabilityMonitor"]


class StabilityMonitor:
    """Checks walkers for non-finite states and for a kinetic temperature above a limit.

    Parameters
    ----------
    temperature : float
        The thermostat's temperature, K.
    heating_limit : float, 'auto' or None
        A walker whose kinetic temperature exceeds ``heating_limit`` times ``temperature`` is
        stopped. ``'auto'``: the level an equilibrium kinetic temperature exceeds with
        probability 1e-12 (chi-squared with the system's degrees of freedom), at least 1.5.
        ``None`` disables the check (non-finite values are always an error).
    binding : ForceBinding
        The bias forces (for the CV the force sees and the bias force in error messages).

    Attributes
    ----------
    kinetic_temperatures : list of list of float
        Per walker, the kinetic temperature (K) at every check.
    """

    def __init__(self, temperature: float, heating_limit: Optional[float | str], binding: ForceBinding) -> None:
        if heating_limit is not None and heating_limit != "auto":
            try:
                heating_limit = float(heating_limit)
            except (TypeError, ValueError):
                raise GMVAEInputError(f"'heating_limit' is {heating_limit!r}, expected 'auto', None or a number > 1") from None
            if not heating_limit > 1.0:
                raise GMVAEInputError(f"'heating_limit' is {heating_limit!r}, expected 'auto', None or a number > 1")
        self.temperature = float(temperature)
        self.heating_limit = heating_limit
        self.binding = binding
        self.kinetic_temperatures: list[list[float]] = []
        self._dof: dict[int, int] = {}
        self._limits: dict = {}

    def degrees_of_freedom(self, system: Any) -> int:
        """Particles with mass times 3, less constraints and a removed centre-of-mass motion."""
        key = id(system)
        if key not in self._dof:
            n = sum(1 for i in range(system.getNumParticles()) if system.getParticleMass(i)._value > 0)
            dof = 3 * n - system.getNumConstraints()
            if any(isinstance(system.getForce(i), openmm.CMMotionRemover) for i in range(system.getNumForces())):
                dof -= 3
            self._dof[key] = max(dof, 1)
        return self._dof[key]

    def temperature_limit(self, system: Any) -> Optional[float]:
        """The kinetic temperature (K) above which :meth:`check` stops a walker of ``system``."""
        if self.heating_limit is None:
            return None
        if self.heating_limit == "auto":
            dof = self.degrees_of_freedom(system)
            if ("auto", dof) not in self._limits:  # scipy's isf costs more than the rest of a deposition
                self._limits[("auto", dof)] = max(1.5, float(chi2.isf(1e-12, dof)) / dof)
            return self.temperature * self._limits[("auto", dof)]
        return self.temperature * float(self.heating_limit)

    def unstable(self, sim: Any, walker: int, what: str) -> SimulationUnstableError:
        """The error for ``walker``, with the largest bias force when it can still be computed."""
        detail = ""
        group = self.binding.force_groups.get(id(sim.system))
        if group is not None:
            try:
                f = sim.context.getState(getForces=True, groups={group}).getForces(asNumpy=True)
                norms = np.linalg.norm(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer), axis=1)
                if np.all(np.isfinite(norms)):
                    detail = f" (bias force now at most {norms.max():.3g} kJ/mol/nm, on atom {int(norms.argmax())})"
            except Exception:  # the force itself may fail on these positions  # noqa: BLE001
                detail = " (the bias force cannot be evaluated there)"
        return SimulationUnstableError(
            f"walker {walker}, step {sim.currentStep}: {what}{detail}. The bias force changed faster than the "
            "integrator can follow: either the CV changes steeply between neighbouring configurations (e.g. a sharp "
            "switch of q(y|x) between clusters whose latent means lie far apart) or the hills are too high and narrow, "
            "and every crossing heats the system. Use a smoother CV (train with a larger entropy_weight, on data that "
            "covers the regions the bias will visit), a smaller time step, or wider sigma / lower height; the last "
            "checkpoint is kept"
        )

    def check(self, sims: list) -> list[np.ndarray]:
        """Raise :class:`SimulationUnstableError` if a walker's positions, energies or CV are not
        finite or its kinetic temperature exceeds :meth:`temperature_limit`; return every walker's
        CV values (all components, shape ``(D,)`` each)."""
        values = []
        for w, sim in enumerate(sims):
            state = sim.context.getState(getPositions=True, getEnergy=True)
            pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            pot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            kin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
            if not (np.all(np.isfinite(pos)) and math.isfinite(pot) and math.isfinite(kin)):
                raise self.unstable(sim, w, f"non-finite positions or energies (potential {pot:.6g}, kinetic {kin:.6g} kJ/mol)")
            s = self.binding.cv_of_state(state, pos)  # the positions just checked, not a second copy
            if not np.all(np.isfinite(s)):
                raise self.unstable(sim, w, f"the CV is not finite: {s.tolist()}")
            limit = self.temperature_limit(sim.system)
            t_kin = 2.0 * kin / (self.degrees_of_freedom(sim.system) * gas_constant())
            while len(self.kinetic_temperatures) <= w:
                self.kinetic_temperatures.append([])
            self.kinetic_temperatures[w].append(t_kin)
            if limit is not None and t_kin > limit:
                raise self.unstable(
                    sim, w, f"kinetic temperature {t_kin:.0f} K, above {limit:.0f} K (the thermostat is at "
                    f"{self.temperature:g} K), CV {np.array2string(s, precision=4)}")
            values.append(s)
        return values

    def summary(self) -> Optional[dict]:
        """Kinetic temperatures seen by :meth:`check`: mean, standard error, 99th percentile and
        maximum (K), and the thermostat's temperature for comparison; None before any check."""
        t = np.concatenate([np.asarray(v) for v in self.kinetic_temperatures]) if self.kinetic_temperatures else np.zeros(0)
        if t.size == 0:
            return None
        return {"n_checks": int(t.size), "mean": float(t.mean()), "standard_error": float(t.std() / math.sqrt(t.size)),
                "p99": float(np.percentile(t, 99)), "max": float(t.max()), "thermostat": self.temperature,
                "units": "K"}

    def step(self, sim: Any, walker: int, n: int) -> None:
        """``sim.step(n)``, turning a force's failure on non-finite positions into :class:`SimulationUnstableError`."""
        try:
            sim.step(n)
        except Exception as exc:  # a force fed non-finite positions fails in its own way
            self._diagnose_failure(sim, walker, exc)
            raise

    def _diagnose_failure(self, sim: Any, walker: int, exc: BaseException) -> None:
        try:
            pos = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        except Exception:  # noqa: BLE001
            return
        if not np.all(np.isfinite(pos)):
            raise self.unstable(sim, walker, f"the positions became non-finite ({type(exc).__name__}: "
                                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})") from exc


def lockstep(simulations: Any) -> list:
    """``simulations`` as a list (one Simulation or a list of them)."""
    return list(simulations) if isinstance(simulations, (list, tuple)) else [simulations]

