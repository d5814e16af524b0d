"""A restartable biased run in a directory: what ``gmvae-cv bias`` does.

:func:`run_metadynamics` (well-tempered metadynamics; ``method="opes"`` or ``"opes-explore"``, or
:func:`run_opes`, for OPES: then ``KERNELS`` replaces ``HILLS`` and the COLVAR bias columns are
``opes.bias``, ``opes.rct``) writes into ``RUN``:

============================  ===================================================================
``run.json``                  every parameter, versions, platform (and how it was chosen),
                              torch settings, performance, warnings; ``status`` running/complete
``COLVAR`` (``COLVAR.<w>``)   PLUMED table: time (ps), CV components, ``metad.bias``,
                              ``metad.rct``, ``metad.rbias``, ``walls.bias`` (kJ/mol; with walls),
                              extra columns (phi, psi)
``HILLS`` (``HILLS.<w>``)     PLUMED hills (``plumed sum_hills --hills HILLS`` gives the bias)
``traj.dcd`` (``traj.<w>.dcd``)  positions every ``traj_stride`` steps
``bias_grid.dat``             the final bias on its grid, PLUMED grid layout with derivatives
``fes.dat``                   :math:`F = -\\gamma/(\\gamma-1) V` on the grid (not shifted)
``checkpoint.npz``            OpenMM state of every walker + grid + hills + counters + the byte
                              size of every output at that moment (written atomically)
============================  ===================================================================

With several walkers the files get a ``.<walker>`` suffix and all walkers share one bias.

Walkers in separate processes (``walkers_dir``, ``walker_id``; :mod:`gmvae_cv.metad.walkers`): each
process runs one walker in its own ``RUN`` and shares the bias through ``walkers_dir``. Every
``walkers_stride`` hills it reads the other walkers' new hills, writes a checkpoint (which records
how many hills of each other walker it has read) and then publishes its own new hills to
``walkers_dir/HILLS.<walker_id>``: a hill is published only once a checkpoint holds it, so a walker
killed and continued never withdraws a hill that others have added, and its own ``HILLS`` stays
exact (each hill once, as in a single run).

Restart. If ``RUN`` holds a run with the same parameters, the run continues from its checkpoint:
outputs are cut back to their checkpointed sizes, the bias and every walker's state are restored,
and the run goes on to ``n_steps`` (which may be larger than before). On a deterministic platform
(Reference) the continued run is identical, row for row and hill for hill, to an uninterrupted one
(``tests/metad/test_bias.py`` kills a run with SIGKILL to check it). A ``RUN`` holding anything else, or a
run with other parameters, is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from openmm import unit
import openmm
from openmm import app
import torch

from .._core.checks import as_value, check_int
from .._core.errors import GMVAEInputError, SimulationUnstableError
from .._core.files import atomic_write_json
from .._core.versions import versions
from ..deploy import CVModel
from .reporters import ColvarReporter, DCDWriter
from .rundir import (CHECKPOINT, CHECKPOINT_FORMAT, RUN_FORMAT, choose_platform, extra_columns, file_names,
                     load_checkpoint_info, prepare_directory, read_checkpoint, sha256_hex, walker_seed,
                     write_checkpoint)
from .run_methods import run_method
from .settings import RunSettings

__all__ = ["run_metadynamics", "run_opes", "BiasRunResult", "RUN_FORMAT", "CHECKPOINT_FORMAT", "load_checkpoint_info"]



@dataclass
class BiasRunResult:
    """What :func:`run_metadynamics` did.

    Attributes
    ----------
    path : Path
        The run directory.
    steps : int
        Steps done per walker (in total, over restarts).
    n_hills : int
        Hills (metadynamics) or kernels deposited (OPES; before compression).
    resumed_from : int or None
        Step of the checkpoint the run continued from.
    platform : str
    ns_per_day : float
        Speed of this invocation, per walker.
    info : dict
        The content of ``run.json``.
    """

    path: Path
    steps: int
    n_hills: int
    resumed_from: Optional[int]
    platform: str
    ns_per_day: float
    info: dict


def run_metadynamics(cv: CVModel, out: str | os.PathLike, settings: Optional[RunSettings] = None, *, system: Any,
                     topology: Any, positions: Any, n_steps: int, method: Optional[str] = None,
                     **keywords: Any) -> BiasRunResult:
    """Run (or continue) a biased simulation on an exported CV, writing into ``out``.

    Parameters
    ----------
    cv : CVModel
        The CV (:func:`gmvae_cv.deploy.loaders.load_cv`).
    out : path
        Run directory (see the module docstring for its files).
    settings : RunSettings, optional
        The bias, the dynamics, the outputs and the walkers (:mod:`gmvae_cv.metad.settings`);
        ``keywords`` override its fields.
    system : openmm.System
        The unbiased system (not modified; each walker gets a copy with the bias force).
    topology : openmm.app.Topology
    positions : array_like or Quantity, shape ``(n_atoms, 3)``
        Starting positions, nm (all walkers start there with their own velocities).
    n_steps : int
        Steps per walker, in total (a restart continues up to it).
    method : {'metad', 'opes', 'opes-explore'}, optional
        Default: the method of ``settings``, else ``'metad'``.
    **keywords
        Any field of :class:`~gmvae_cv.metad.settings.MetadynamicsSettings` (``sigma``, ``height``,
        ``bias_factor``, ``pace``, ``components``, ``grid_min``, ``grid_max``, ``grid_bin``,
        ``kernel``) or, for OPES, :class:`~gmvae_cv.metad.opes.OPESParameters`;
        :class:`~gmvae_cv.metad.settings.MDSettings` (``temperature``, ``timestep``, ``friction``,
        ``walkers``, ``seed``, ``platform``, ``cpu_threads``, ``torch_threads``, ``route``, ``dtype``,
        ``heating_limit``); :class:`~gmvae_cv.metad.settings.OutputSettings` (``colvar_stride``,
        ``traj_stride``, ``checkpoint_interval``, ``extra_colvar``, ``description``, ``overwrite``,
        ``progress``); :class:`~gmvae_cv.metad.settings.WalkerSettings` (``walkers_dir``,
        ``walker_id``, ``walkers_stride``). A parameter of another method (``bias_factor`` with
        ``method='opes'``) is refused by name.

    Returns
    -------
    BiasRunResult

    Raises
    ------
    SimulationUnstableError
        When the biased dynamics became unstable (see ``heating_limit``): ``run.json`` then says
        ``"status": "unstable"`` with the message, and the last checkpoint is kept.
    """
    if method is None:
        method = settings.method if settings is not None else "metad"
    settings = RunSettings.from_keywords(method, base=settings, **keywords)
    return _BiasRun(cv, Path(out), settings, system, topology, positions, n_steps).run()


def run_opes(cv: CVModel, out: str | os.PathLike, settings: Optional[RunSettings] = None, *, system: Any, topology: Any,
             positions: Any, n_steps: int, explore: bool = False, **keywords: Any) -> BiasRunResult:
    """:func:`run_metadynamics` with ``method="opes"`` (``"opes-explore"`` if ``explore``): OPES_METAD or
    OPES_METAD_EXPLORE through the fused force (see :class:`~gmvae_cv.metad.opes.OPESBias`)."""
    return run_metadynamics(cv, out, settings, system=system, topology=topology, positions=positions, n_steps=n_steps,
                            method="opes-explore" if explore else "opes", **keywords)


class _BiasRun:
    """One invocation of a run in a directory: set-up, the stepping loop with checkpoints, the end."""

    def __init__(self, cv: CVModel, out: Path, settings: RunSettings, system: Any, topology: Any, positions: Any,
                 n_steps: int) -> None:
        md, wk = settings.md, settings.walkers
        self.cv, self.out, self.settings, self.system, self.topology = cv, out, settings, system, topology
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self.walkers = check_int(md.walkers, "walkers", minimum=1)
        self.seed = check_int(md.seed, "seed", minimum=0)
        self.torch_threads = check_int(md.torch_threads, "torch_threads", minimum=1)
        self.timestep_ps = as_value(md.timestep, unit.picosecond, "timestep")
        self.friction_ps = as_value(md.friction, unit.picosecond**-1, "friction")
        if not isinstance(cv, CVModel):
            raise GMVAEInputError(f"'cv' is {type(cv).__name__}, expected a CVModel (gmvae_cv.deploy.loaders.load_cv)")
        cv.check_system(system.getNumParticles(), topology=topology)
        pos0 = np.asarray(positions.value_in_unit(unit.nanometer) if hasattr(positions, "value_in_unit") else positions,
                          dtype=np.float64)
        if pos0.shape != (system.getNumParticles(), 3) or not np.all(np.isfinite(pos0)):
            raise GMVAEInputError(f"'positions' has shape {pos0.shape}, expected ({system.getNumParticles()}, 3) finite values in nm")
        self.pos0 = pos0
        self.shared = wk.walkers_dir is not None
        self.walker_id = wk.walker_id
        self._check_walkers()
        self.method = run_method(settings.method)

    def _check_walkers(self) -> None:
        wk = self.settings.walkers
        if self.shared:
            if self.walkers != 1:
                raise GMVAEInputError(f"'walkers' is {self.walkers} with 'walkers_dir': a process sharing a walkers directory runs one walker")
            if wk.walker_id is None:
                raise GMVAEInputError("'walker_id' is missing: a walker sharing 'walkers_dir' needs its own id (an integer >= 0)")
            self.walker_id = check_int(wk.walker_id, "walker_id", minimum=0)
            self.walkers_stride = check_int(wk.walkers_stride, "walkers_stride", minimum=1)
            if Path(wk.walkers_dir).resolve() == self.out.resolve():
                raise GMVAEInputError(f"'walkers_dir' is the run directory {self.out}; give the walkers a directory of their own")
        elif wk.walker_id is not None:
            raise GMVAEInputError("'walker_id' is given without 'walkers_dir'")
        self.walkers_stride = wk.walkers_stride

    def run(self) -> BiasRunResult:
        # the bias (validates temperature, height, sigma, bias factor, pace, components, grid)
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta = self.method.engine(self.cv, self.settings, self.out, self.shared)
        try:
            return self._run()
        finally:
            self.meta.close()

    # ------------------------------------------------------------------ set-up
    def _strides(self) -> tuple[int, int, int]:
        o, pace = self.settings.output, self.meta._pace
        colvar_stride = check_int(o.colvar_stride, "colvar_stride", minimum=1) if o.colvar_stride is not None else max(1, pace // 5)
        traj_stride = check_int(o.traj_stride, "traj_stride", minimum=0) if o.traj_stride is not None else pace
        interval = o.checkpoint_interval
        if self.shared:
            if interval is not None and interval != self.walkers_stride * pace:
                raise GMVAEInputError(
                    f"'checkpoint_interval' is {interval}; with 'walkers_dir' every exchange is a checkpoint, "
                    f"every walkers_stride * pace = {self.walkers_stride * pace} steps: set walkers_stride instead")
            interval = self.walkers_stride * pace
        if interval is None:
            interval = pace * max(1, round(10000 / pace))
        interval = check_int(interval, "checkpoint_interval", minimum=1)
        if interval % pace:
            raise GMVAEInputError(f"'checkpoint_interval' is {interval}, expected a multiple of pace = {pace}")
        return colvar_stride, traj_stride, interval

    def _params(self, system_xml: str) -> dict:
        md, o = self.settings.md, self.settings.output
        temperature = self.meta.stability.temperature
        params = {
            self.method.record_key: self.method.record(self.meta),
            "md": {"integrator": "LangevinMiddleIntegrator", "timestep_ps": self.timestep_ps,
                   "friction_per_ps": self.friction_ps, "temperature_K": temperature},
            "walkers": self.walkers,
            "seed": self.seed,
            "colvar_stride": self.colvar_stride,
            "traj_stride": self.traj_stride,
            "checkpoint_interval": self.checkpoint_interval,
            "force": {"route": md.route, "dtype": md.dtype},
            "walls": self.meta.walls_info(),
            "extra_colvar": o.extra_colvar.names if o.extra_colvar is not None else [],
            "cv_sha256": self.cv.sha256,
            "system_sha256": sha256_hex(system_xml.encode()),
            "positions_sha256": sha256_hex(np.ascontiguousarray(self.pos0).tobytes()),
        }
        if self.shared:
            params["shared_walkers"] = {"dir": str(self.meta.walkers.dir), "walker_id": self.walker_id,
                                        "stride_hills": self.walkers_stride}
        return params

    def _simulations(self, systems: list) -> list:
        md = self.settings.md
        temperature = self.meta.stability.temperature
        self.chosen, self.probe = choose_platform(md.platform, systems[0], self.pos0, temperature, self.friction_ps,
                                                  self.timestep_ps, self.meta, md.cpu_threads)
        props = {"Threads": str(md.cpu_threads)} if (self.chosen == "CPU" and md.cpu_threads) else {}
        sims = []
        for w, s in enumerate(systems):
            integ = openmm.LangevinMiddleIntegrator(temperature, self.friction_ps, self.timestep_ps)
            integ.setRandomNumberSeed(walker_seed(self.seed, self.walker_ids[w]))
            sims.append(app.Simulation(self.topology, s, integ, openmm.Platform.getPlatformByName(self.chosen), props))
        return sims

    def _writers(self, sims: list) -> None:
        comps = self.meta._components
        self.biased = [f"cv.{c}" for c in comps]  # PLUMED field names; the CV's own names go to run.json
        per_biased = [self.cv.periodic[c] for c in comps]
        extra_fn, extra_names, extra_per = extra_columns(self.settings.output.extra_colvar)
        self.hills_writers, self.colvars, self.trajs, self.writers = [], [], [], []
        for w, sim in enumerate(sims):
            f = file_names(self.walkers, w, self.method.deposits)
            sizes = self.resume["files"][str(w)] if self.resume is not None else None
            hw = self.method.writer(self.meta, self.out / f["hills"], self.biased, per_biased,
                                    sizes["hills"] if sizes else None)
            cr = ColvarReporter(self.out / f["colvar"], self.meta, self.colvar_stride, extra=extra_fn,
                                extra_names=extra_names, extra_periodic=extra_per,
                                resume_size=sizes["colvar"] if sizes else None)
            self.hills_writers.append(hw)
            self.colvars.append(cr)
            self.writers += [hw, cr]
            sim.reporters.append(cr)
            tr = None
            if self.traj_stride:
                tr = DCDWriter(self.out / f["traj"], self.topology, self.timestep_ps, self.traj_stride,
                               resume=tuple(sizes["traj"]) if sizes else None)
                self.writers.append(tr)
                sim.reporters.append(tr)
            self.trajs.append(tr)
        by_id = dict(zip(self.walker_ids, self.hills_writers))
        self.method.set_callback(self.meta, lambda hill: by_id[hill.walker](hill))

    def _start(self, sims: list) -> None:
        if self.resume is not None:
            path = self.out / CHECKPOINT
            arrays = read_checkpoint(path, sims)
            self.method.restore(self.meta, arrays, self.resume, path)
            self.meta.sync([s.context for s in sims])
            for cr in self.colvars:
                cr.outside = int(self.resume.get("colvar_outside", 0))
        else:
            temperature = self.meta.stability.temperature
            for w, sim in enumerate(sims):
                sim.context.setPositions(self.pos0)
                sim.context.setVelocitiesToTemperature(temperature, walker_seed(self.seed, self.walker_ids[w]))
        if self.shared:  # publish what the checkpoint holds and the file may lack; feel the others from the start
            self.meta.publish_hills()
            self.meta.read_walkers()
            self.meta.sync([s.context for s in sims])

    # ------------------------------------------------------------------ the run
    def _run(self) -> BiasRunResult:
        self.colvar_stride, self.traj_stride, self.checkpoint_interval = self._strides()
        system_xml = openmm.XmlSerializer.serialize(self.system)
        self.params = self._params(system_xml)
        self.walker_ids = [self.walker_id] if self.shared else list(range(self.walkers))
        self.resume = prepare_directory(self.out, self.params, self.walkers, self.settings.output.overwrite)
        if self.resume is not None and self.resume["step"] > self.n_steps:
            raise GMVAEInputError(f"{self.out / CHECKPOINT}: the run is at step {self.resume['step']}, beyond n_steps = {self.n_steps}")
        old_threads = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        self.writers = []
        try:
            systems = [openmm.XmlSerializer.deserialize(system_xml) for _ in range(self.walkers)]
            for s in systems:  # walkers: each a copy of the system with the bias force
                self.meta.add_force(s, self.pos0, topology=self.topology)
            sims = self._simulations(systems)
            self._writers(sims)
            self._start(sims)
            self.start_step = sims[0].currentStep
            atomic_write_json(self.out / "run.json", self._info("running", None))
            perf = self._loop(sims)
            self.method.write_outputs(self.out, self.meta, self.biased)
            info = self._info("complete", perf)
            atomic_write_json(self.out / "run.json", info)
        finally:
            for wr in self.writers:
                wr.close()
            torch.set_num_threads(old_threads)
        return BiasRunResult(path=self.out, steps=sims[0].currentStep, n_hills=self.method.count(self.meta),
                             resumed_from=None if self.resume is None else int(self.resume["step"]),
                             platform=self.chosen, ns_per_day=perf["ns_per_day_per_walker"], info=info)

    def _loop(self, sims: list) -> dict:
        meta, pace, interval = self.meta, self.meta._pace, self.checkpoint_interval
        progress = self.settings.output.progress
        bar = progress(total=self.n_steps, initial=self.start_step, unit="step") if progress is not None else None
        t0 = time.perf_counter()
        try:
            while sims[0].currentStep < self.n_steps:
                boundary = min(self.n_steps, (sims[0].currentStep // interval + 1) * interval)
                while sims[0].currentStep < boundary:
                    k = min(boundary - sims[0].currentStep, pace - sims[0].currentStep % pace)
                    meta.step(sims, k)
                    if bar is not None:
                        self._update_bar(bar, k, sims[0].currentStep - self.start_step, time.perf_counter() - t0)
                if self.shared:
                    meta.read_walkers()
                    meta.sync([s.context for s in sims])
                self._checkpoint(sims)
                if self.shared:
                    meta.publish_hills()  # only hills a checkpoint holds: a restart never withdraws them
        except SimulationUnstableError as exc:
            info = self._info("unstable", None)
            info["error"] = {"step": int(sims[0].currentStep), "message": str(exc)}
            atomic_write_json(self.out / "run.json", info)
            raise
        finally:
            if bar is not None and hasattr(bar, "close"):
                bar.close()
        wall = time.perf_counter() - t0
        steps_done = sims[0].currentStep - self.start_step
        speed = steps_done / wall if wall > 0 else float("nan")
        return {"wall_s": wall, "steps_this_invocation": steps_done, "steps_per_s_per_walker": speed,
                "ns_per_day_per_walker": speed * self.timestep_ps * 86.4}

    def _update_bar(self, bar: Any, k: int, done: int, elapsed: float) -> None:
        bar.update(k)
        if elapsed > 0 and hasattr(bar, "set_postfix_str"):
            what = "hills" if self.method.deposits == "HILLS" else "kernels"
            bar.set_postfix_str(f"{done * self.timestep_ps * 86.4 / elapsed:.1f} ns/day, {self.method.count(self.meta)} {what}")

    def _checkpoint(self, sims: list) -> None:
        files = {}
        for w in range(self.walkers):
            files[str(w)] = {"hills": self.hills_writers[w].commit(), "colvar": self.colvars[w].commit(),
                             "traj": list(self.trajs[w].commit()) if self.trajs[w] is not None else None}
        arrays, bias_info = self.method.checkpoint(self.meta)
        p = self.params
        info = {"format": CHECKPOINT_FORMAT, "version": 1, "step": int(sims[0].currentStep), "walkers": self.walkers,
                "files": files, "system_sha256": p["system_sha256"], "cv_sha256": p["cv_sha256"],
                "positions_sha256": p["positions_sha256"],
                "colvar_outside": int(sum(c.outside for c in self.colvars)), **bias_info}
        write_checkpoint(self.out / CHECKPOINT, info, arrays, sims)
        # depositions update the table locally (equal to a recomputation to rounding, not bit for bit);
        # a run continued from this checkpoint recomputes it from the grid values, so this one does too
        self.meta.refresh_table()
        self.meta.sync([s.context for s in sims])

    def _info(self, status: str, perf: Optional[dict]) -> dict:
        meta, md = self.meta, self.settings.md
        files = {str(w): file_names(self.walkers, w, self.method.deposits) for w in range(self.walkers)}
        outside = int(sum(c.outside for c in self.colvars))
        edges = self.method.edge_events(meta)
        return {
            "format": RUN_FORMAT,
            "version": 1,
            "status": status,
            "params": json.loads(json.dumps(self.params)),
            "n_steps": self.n_steps,
            "steps_done": int(self.start_step if perf is None else self.start_step + perf["steps_this_invocation"]),
            "resumed_from_step": None if self.resume is None else int(self.resume["step"]),
            "n_hills": self.method.count(meta),
            "cv": {"path": str(self.cv.path) if self.cv.path else None, "sha256": self.cv.sha256, "names": self.cv.names,
                   "periodic": [None if q is None else list(q) for q in self.cv.periodic], "format": self.cv.meta.get("format")},
            "platform": {"name": self.chosen, **self.probe, "cpu_threads": md.cpu_threads},
            "force": meta.force_info,
            "torch": {"num_threads": self.torch_threads, "version": torch.__version__},
            "performance": perf,
            "kinetic_temperature_this_invocation": meta.kinetic_temperature_summary(),
            "shared_walkers": self.method.shared_info(meta),
            "warnings": {"edge_events": len(edges), "first_edge_events": edges[:10], "colvar_rows_outside_grid": outside},
            "files": {"per_walker": files, "checkpoint": CHECKPOINT, "bias_grid": "bias_grid.dat", "fes": "fes.dat"},
            "units": {"time": "ps", "energy": "kJ/mol", "temperature": "K", "cv": "as the CV file", "length": "nm"},
            "system": self.settings.output.description or {},
            "versions": versions("openmm", "openmmtorch", "torch"),
        }
