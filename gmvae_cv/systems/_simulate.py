"""The Langevin run that the OpenMM systems share (alanine dipeptide, AAQAA3, polystyrene).

:func:`run_langevin` is the body of each system's ``simulate``: it checks the run settings,
builds the system, picks the platform (a short timed probe of Reference and CPU unless one is
named), equilibrates, then writes ``traj.dcd`` frame by frame and ``topology.pdb``, ``state.csv``
and ``simulation.json`` after it. Every file is written under a temporary name and renamed when
complete, so a file with the final name is never partial. The systems differ only in what they
build (``create_system``) and in the entries that describe them at the head of
``simulation.json``.

:class:`MolecularSystem` is the base of those systems: a topology and positions (nm) with their
mdtraj views.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import mdtraj as md
import openmm
from openmm import unit
from openmm import app

from .._core.checks import as_value, check_int
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json, atomic_write_text
from .._core.versions import versions

__all__ = ["MolecularSystem", "SimulationRun", "run_langevin"]

_PROBE_PLATFORMS = ("Reference", "CPU")
_KB = 0.008314462618  # Boltzmann constant, kJ/mol/K
_STATE_HEADER = "step,time (ps),potential energy (kJ/mol),kinetic energy (kJ/mol),temperature (K)"


@dataclass
class SimulationRun:
    """What a system's ``simulate`` wrote.

    Attributes
    ----------
    trajectory, topology, metadata, state_log : Path
        ``traj.dcd``, ``topology.pdb``, ``simulation.json``, ``state.csv`` in the output folder.
    platform : str
        OpenMM platform used.
    steps_per_second : float
        Measured production speed.
    n_frames : int
        Frames in the trajectory.
    temperature_mean : float
        Mean instantaneous temperature over the saved frames, K.
    """

    trajectory: Path
    topology: Path
    metadata: Path
    state_log: Path
    platform: str
    steps_per_second: float
    n_frames: int
    temperature_mean: float


class MolecularSystem:
    """Base of the OpenMM systems: ``topology`` (openmm.app.Topology) and ``positions`` (nm).

    Subclasses set both in ``__init__`` and define ``create_system()``.
    """

    topology: Any
    positions: np.ndarray

    @property
    def mdtraj_topology(self):
        """The topology as an :class:`mdtraj.Topology`."""
        return md.Topology.from_openmm(self.topology)

    def to_mdtraj(self):
        """The structure as a one-frame :class:`mdtraj.Trajectory`."""
        return md.Trajectory(self.positions[None].astype(np.float32), self.mdtraj_topology)


@dataclass(frozen=True)
class _Settings:
    """Checked run settings: steps, K, ps, 1/ps, and the OpenMM seed (``seed + 1``, 0 means random)."""

    n_steps: int
    report_interval: int
    seed: int
    equilibration_steps: int
    temperature_K: float
    timestep_ps: float
    friction_ps: float

    @property
    def openmm_seed(self) -> int:
        return self.seed % 2_147_483_646 + 1

    @property
    def n_frames(self) -> int:
        return self.n_steps // self.report_interval

    def integrator(self):
        """A fresh seeded ``LangevinMiddleIntegrator``."""
        integ = openmm.LangevinMiddleIntegrator(self.temperature_K, self.friction_ps, self.timestep_ps)
        integ.setRandomNumberSeed(self.openmm_seed)
        return integ


def _check_settings(n_steps, report_interval, seed, equilibration_steps, temperature, timestep, friction) -> _Settings:
    """Validate the run arguments (naming the bad one) and convert Quantities to K, ps, 1/ps."""
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    report_interval = check_int(report_interval, "report_interval", minimum=1)
    if n_steps % report_interval:
        raise GMVAEInputError(f"'n_steps' is {n_steps}, expected a multiple of report_interval = {report_interval}")
    return _Settings(
        n_steps=n_steps,
        report_interval=report_interval,
        seed=check_int(seed, "seed", minimum=0),
        equilibration_steps=check_int(equilibration_steps, "equilibration_steps", minimum=0),
        temperature_K=as_value(temperature, unit.kelvin, "temperature"),
        timestep_ps=as_value(timestep, unit.picosecond, "timestep"),
        friction_ps=as_value(friction, unit.picosecond**-1, "friction"),
    )


def degrees_of_freedom(system: Any) -> int:
    """3 per massive particle, minus constraints, minus 3 if a ``CMMotionRemover`` is present."""
    dof = 3 * sum(system.getParticleMass(i).value_in_unit(unit.dalton) > 0 for i in range(system.getNumParticles()))
    dof -= system.getNumConstraints()
    if any(isinstance(system.getForce(i), openmm.CMMotionRemover) for i in range(system.getNumForces())):
        dof -= 3
    return int(dof)


def _probe_speed(system, positions: np.ndarray, integrator, name: str, seconds: float = 0.1) -> float:
    """Steps per second of ``integrator`` on platform ``name``, timed for about ``seconds``."""
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(name))
    context.setPositions(positions)
    context.setVelocitiesToTemperature(integrator.getTemperature())
    integrator.step(20)  # warm-up (kernel compilation, thread start)
    context.getState(getEnergy=True)
    steps, t0 = 0, time.perf_counter()
    while True:
        integrator.step(50)
        context.getState(getEnergy=True)  # forces a sync
        steps += 50
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds or steps >= 20000:
            break
    del context
    return steps / elapsed


def choose_platform(system: Any, positions: np.ndarray, settings: _Settings, platform: Optional[str]):
    """The platform to run on: ``platform`` if given (checked), else the faster of Reference and CPU.

    Returns
    -------
    name : str
    chosen_by : str
        ``'user'`` or how it was measured.
    probe : dict
        Probe speeds, steps/s per platform (empty when the user chose).
    """
    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    probe: dict[str, float] = {}
    if platform is not None:
        if platform not in available:
            raise GMVAEInputError(f"'platform' is {platform!r}, expected one of {sorted(available)}")
        return platform, "user", probe
    for name in _PROBE_PLATFORMS:
        if name in available:
            probe[name] = _probe_speed(system, positions, settings.integrator(), name)
    return max(probe, key=probe.get), "measurement (short timed probe of each platform)", probe


def _write_frames(out: Path, context, integrator, topology, s: _Settings, dof: int, progress, what: str):
    """Run production, writing ``traj.dcd`` atomically; returns the state log ``(n_frames, 5)`` and wall s.

    The log columns are step, time (ps), potential and kinetic energy (kJ/mol), temperature (K).
    """
    log = np.zeros((s.n_frames, 5))
    tmp_dcd = out / f".traj.dcd.{os.getpid()}.tmp"
    bar = progress(total=s.n_steps) if progress is not None else None
    t0 = time.perf_counter()
    try:
        with open(tmp_dcd, "wb") as fh:
            dcd = app.DCDFile(fh, topology, s.timestep_ps * unit.picosecond, s.report_interval, s.report_interval)
            for frame in range(s.n_frames):
                integrator.step(s.report_interval)
                state = context.getState(getPositions=True, getEnergy=True)
                pos = state.getPositions(asNumpy=True)
                epot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
                step = (frame + 1) * s.report_interval
                if not (np.isfinite(epot) and np.all(np.isfinite(pos.value_in_unit(unit.nanometer)))):
                    raise FloatingPointError(
                        f"{what} diverged by step {step} (energy {epot}); reduce the timestep ({s.timestep_ps} ps)"
                    )
                dcd.writeModel(pos)
                log[frame] = (step, step * s.timestep_ps, epot, ekin, 2.0 * ekin / (dof * _KB))
                if bar is not None:
                    bar.update(s.report_interval)
            fh.flush()
            os.fsync(fh.fileno())
        wall = time.perf_counter() - t0
        os.replace(tmp_dcd, out / "traj.dcd")
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
        if tmp_dcd.exists():
            tmp_dcd.unlink()
    return log, wall


def _write_structure_and_log(out: Path, topology, positions: np.ndarray, log: np.ndarray) -> None:
    """``topology.pdb`` (the start structure, nm) and ``state.csv`` (the log, units in the header)."""
    buf = io.StringIO()
    app.PDBFile.writeFile(topology, positions * unit.nanometer, buf, keepIds=True)
    atomic_write_text(out / "topology.pdb", buf.getvalue())
    rows = "\n".join(f"{int(r[0])},{r[1]:.6f},{r[2]:.6f},{r[3]:.6f},{r[4]:.4f}" for r in log)
    atomic_write_text(out / "state.csv", _STATE_HEADER + "\n" + rows + "\n")


def _run_metadata(s: _Settings, minimize: Optional[bool], dof: int, platform: tuple, wall: float, log: np.ndarray) -> dict:
    """The run's entries of ``simulation.json`` (after the system's own)."""
    speed = s.n_steps / wall if wall > 0 else float("inf")
    meta = {
        "integrator": "LangevinMiddleIntegrator",
        "temperature_K": s.temperature_K,
        "timestep_ps": s.timestep_ps,
        "friction_per_ps": s.friction_ps,
        "n_steps": s.n_steps,
        "report_interval_steps": s.report_interval,
        "frame_interval_ps": s.report_interval * s.timestep_ps,
        "n_frames": s.n_frames,
        "first_frame_step": s.report_interval,
        "seed": s.seed,
        "openmm_seed": s.openmm_seed,
    }
    if minimize is not None:
        meta["minimized_before_run"] = bool(minimize)
    name, chosen_by, probe = platform
    meta.update({
        "equilibration_steps": s.equilibration_steps,
        "degrees_of_freedom": int(dof),
        "platform": {"name": name, "chosen_by": chosen_by, "probe_steps_per_s": probe},
        "performance": {"wall_s": wall, "steps_per_s": speed, "ns_per_day": speed * s.timestep_ps * 86.4},
        "temperature_summary_K": {"mean": float(log[:, 4].mean()), "std": float(log[:, 4].std())},
        "files": {"trajectory": "traj.dcd", "topology": "topology.pdb", "state_log": "state.csv"},
        "units": {"length": "nm (DCD stores Angstrom; mdtraj/OpenMM convert)", "time": "ps", "energy": "kJ/mol"},
        "versions": versions("openmm", "mdtraj"),
    })
    return meta


def run_langevin(
    model: MolecularSystem,
    n_steps: int,
    report_interval: int,
    out_dir: str | os.PathLike,
    *,
    temperature: Any,
    timestep: Any,
    friction: Any,
    seed: int,
    platform: Optional[str],
    equilibration_steps: int,
    progress: Optional[Callable],
    system_meta: dict,
    what: str,
    minimize: Optional[bool] = None,
    run_type: type = SimulationRun,
) -> SimulationRun:
    """Langevin dynamics of ``model``; writes ``traj.dcd``, ``topology.pdb``, ``state.csv``, ``simulation.json``.

    Parameters
    ----------
    model : MolecularSystem
        Supplies ``topology``, ``positions`` (nm) and ``create_system()``.
    n_steps, report_interval, out_dir, temperature, timestep, friction, seed, platform, equilibration_steps, progress
        As in :meth:`gmvae_cv.systems.AlanineDipeptide.simulate` (K, ps, 1/ps; ``n_steps`` a
        multiple of ``report_interval``; frames after steps ``report_interval``, ``2 report_interval``, ...).
    system_meta : dict
        The entries that open ``simulation.json`` (``system``, the structure, the force field, ...).
    what : str
        Names the run in the divergence error (``"<what> diverged by step ..."``).
    minimize : bool, optional
        Minimise (with constraints) before the velocities are drawn; ``None``: not offered, and
        ``minimized_before_run`` is left out of ``simulation.json``.
    run_type : type
        The :class:`SimulationRun` subclass to return.

    Returns
    -------
    SimulationRun
        Of type ``run_type``.
    """
    s = _check_settings(n_steps, report_interval, seed, equilibration_steps, temperature, timestep, friction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    system = model.create_system()
    dof = degrees_of_freedom(system)
    chosen = choose_platform(system, model.positions, s, platform)

    integrator = s.integrator()
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(chosen[0]))
    context.setPositions(model.positions)
    if minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 0)
    context.setVelocitiesToTemperature(s.temperature_K, s.openmm_seed)
    if s.equilibration_steps:
        integrator.step(s.equilibration_steps)

    log, wall = _write_frames(out, context, integrator, model.topology, s, dof, progress, what)
    _write_structure_and_log(out, model.topology, model.positions, log)
    meta = {**system_meta, **_run_metadata(s, minimize, dof, chosen, wall, log)}
    atomic_write_json(out / "simulation.json", meta)
    return run_type(
        trajectory=out / "traj.dcd",
        topology=out / "topology.pdb",
        metadata=out / "simulation.json",
        state_log=out / "state.csv",
        platform=chosen[0],
        steps_per_second=meta["performance"]["steps_per_s"],
        n_frames=s.n_frames,
        temperature_mean=float(log[:, 4].mean()),
    )
