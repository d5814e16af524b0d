"""A restartable metadynamics run in a directory: what ``gmvae-cv bias`` does.

:func:`run_metadynamics` writes into ``RUN``:

============================  ===================================================================
``run.json``                  every parameter, versions, platform (and how it was chosen),
                              torch settings, performance, warnings; ``status`` running/complete
``COLVAR`` (``COLVAR.<w>``)   PLUMED table: time (ps), CV components, ``metad.bias``,
                              ``metad.rct``, ``metad.rbias`` (kJ/mol), extra columns (phi, psi)
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
(``tests/test_bias.py`` kills a run with SIGKILL to check it). A ``RUN`` holding anything else, or a
run with other parameters, is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.versions import versions
from .._core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from .._core.checks import check_int
from .._core.quiet import LOG_NAME
from .engine import SimulationUnstableError, WellTemperedMetadynamics, as_value
from .reporters import ColvarReporter, DCDWriter, HillsWriter
from ..deploy.loaders import CVModel
from ..features.spec import FeatureSpec

__all__ = ["run_metadynamics", "BiasRunResult", "RUN_FORMAT", "CHECKPOINT_FORMAT", "load_checkpoint_info"]

RUN_FORMAT = "gmvae-cv/metadynamics-run"
CHECKPOINT_FORMAT = "gmvae-cv/metadynamics-checkpoint"
_CHECKPOINT = "checkpoint.npz"
_TABLE = ".bias_table.f64"
_PROBE_PLATFORMS = ("Reference", "CPU")


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


def _file_names(n_walkers: int, w: int) -> dict:
    sfx = "" if n_walkers == 1 else f".{w}"
    return {"colvar": f"COLVAR{sfx}", "hills": f"HILLS{sfx}", "traj": "traj.dcd" if n_walkers == 1 else f"traj.{w}.dcd"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_checkpoint_info(path: str | os.PathLike) -> dict:
    """The JSON part of a checkpoint (step, hills, file sizes, fingerprints), checked for its format."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            info = json.loads(bytes(z["info"]).decode("utf-8"))
    except Exception as exc:  # numpy raises several types for foreign files
        raise GMVAEInputError(f"{p}: cannot read as a gmvae-cv checkpoint ({type(exc).__name__}: {exc})") from None
    if info.get("format") != CHECKPOINT_FORMAT:
        raise GMVAEInputError(f"{p}: 'format' is {info.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    return info


def run_metadynamics(
    cv: CVModel,
    out: str | os.PathLike,
    *,
    system: Any,
    topology: Any,
    positions: Any,
    n_steps: int,
    sigma: Sequence[float],
    temperature: Any = 300.0,
    height: Any = 1.2,
    bias_factor: float = 10.0,
    pace: int = 500,
    components: Optional[Sequence[int]] = None,
    grid_min: Optional[Sequence[float]] = None,
    grid_max: Optional[Sequence[float]] = None,
    grid_bin: Optional[Sequence[int]] = None,
    kernel: str = "stretched-gaussian",
    walkers: int = 1,
    seed: int = 0,
    timestep: Any = 0.002,
    friction: Any = 1.0,
    platform: Optional[str] = None,
    colvar_stride: Optional[int] = None,
    traj_stride: Optional[int] = None,
    checkpoint_interval: Optional[int] = None,
    route: str = "compiled",
    dtype: str = "float64",
    torch_threads: int = 1,
    cpu_threads: Optional[int] = None,
    extra_colvar: Optional[FeatureSpec] = None,
    description: Optional[dict] = None,
    overwrite: bool = False,
    progress: Optional[Callable] = None,
    heating_limit: Optional[float | str] = "auto",
    walkers_dir: Optional[str | os.PathLike] = None,
    walker_id: Optional[int] = None,
    walkers_stride: int = 10,
) -> BiasRunResult:
    """Run (or continue) well-tempered metadynamics on an exported CV, writing into ``out``.

    Parameters
    ----------
    cv : CVModel
        The CV (:func:`gmvae_cv.deploy.loaders.load_cv`).
    out : path
        Run directory (see the module docstring for its files).
    system : openmm.System
        The unbiased system (not modified; each walker gets a copy with the bias force).
    topology : openmm.app.Topology
    positions : array_like or Quantity, shape ``(n_atoms, 3)``
        Starting positions, nm (all walkers start there with their own velocities).
    n_steps : int
        Steps per walker, in total (a restart continues up to it).
    sigma : sequence of float
        Hill widths (CV units), one per biased component.
    temperature : float or Quantity
        K.
    height : float or Quantity
        Initial hill height, kJ/mol.
    bias_factor : float
        > 1.
    pace : int
        Steps between hills.
    components, grid_min, grid_max, grid_bin, kernel, route, dtype
        See :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`.
    walkers : int
        Walkers sharing one bias.
    seed : int
        Seeds velocities and Langevin noise (walker ``w`` uses a seed derived from ``seed`` and
        ``w``); a run is reproducible on the Reference platform.
    timestep : float or Quantity
        ps (LangevinMiddleIntegrator).
    friction : float or Quantity
        1/ps.
    platform : {'Reference', 'CPU', ...}, optional
        Default: the faster of Reference and CPU for this biased system, measured with a short
        probe (recorded in ``run.json``).
    colvar_stride : int, optional
        Steps between COLVAR rows (default ``pace // 5`` or 1).
    traj_stride : int, optional
        Steps between trajectory frames (default ``pace``; 0 for no trajectory).
    checkpoint_interval : int, optional
        Steps between checkpoints, a multiple of ``pace`` (default about 10000 steps).
    torch_threads : int
        ``torch.set_num_threads`` during the run (restored afterwards; the TorchForce runs in
        this process's libtorch).
    cpu_threads : int, optional
        ``Threads`` property of the CPU platform.
    extra_colvar : FeatureSpec, optional
        More COLVAR columns (e.g. phi, psi of :func:`~gmvae_cv.features.alanine_backbone_torsions`
        with ``transform="raw"``).
    description : dict, optional
        Free-form description of the system for ``run.json``.
    overwrite : bool
        Replace a run in ``out`` that has other parameters (never done silently).
    progress : callable, optional
        tqdm-like class: ``progress(total=n_steps, initial=done, unit="step")``, updated as steps
        advance, ``set_postfix_str`` shows ns/day.
    heating_limit : float, 'auto' or None
        See :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`: a walker heated beyond it (or with
        non-finite positions, energies or CV) stops the run with
        :class:`~gmvae_cv.metad.engine.SimulationUnstableError`; ``run.json`` then says ``"status":
        "unstable"`` with the message, and the last checkpoint is kept.
    walkers_dir : path, optional
        Share the bias with walkers in other processes through this directory (see the module
        docstring); needs ``walker_id`` and ``walkers=1``. Walkers with other metadynamics
        parameters or another CV are refused.
    walker_id : int, optional
        This walker's id in ``walkers_dir`` (unique; it also seeds the walker's velocities and noise).
    walkers_stride : int
        Own hills between exchanges with the other walkers; every exchange is a checkpoint, so
        ``checkpoint_interval`` is ``walkers_stride * pace`` (default 10).

    Returns
    -------
    BiasRunResult

    Raises
    ------
    SimulationUnstableError
        When the biased dynamics became unstable (see ``heating_limit``).
    """
    from openmm import unit

    out = Path(out)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    walkers = check_int(walkers, "walkers", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    torch_threads = check_int(torch_threads, "torch_threads", minimum=1)
    timestep_ps = as_value(timestep, unit.picosecond, "timestep")
    friction_ps = as_value(friction, unit.picosecond**-1, "friction")
    if not isinstance(cv, CVModel):
        raise GMVAEInputError(f"'cv' is {type(cv).__name__}, expected a CVModel (gmvae_cv.deploy.loaders.load_cv)")
    cv.check_system(system.getNumParticles(), topology=topology)
    pos0 = np.asarray(positions.value_in_unit(unit.nanometer) if hasattr(positions, "value_in_unit") else positions, dtype=np.float64)
    if pos0.shape != (system.getNumParticles(), 3) or not np.all(np.isfinite(pos0)):
        raise GMVAEInputError(f"'positions' has shape {pos0.shape}, expected ({system.getNumParticles()}, 3) finite values in nm")

    shared = walkers_dir is not None
    if shared:
        if walkers != 1:
            raise GMVAEInputError(f"'walkers' is {walkers} with 'walkers_dir': a process sharing a walkers directory runs one walker")
        if walker_id is None:
            raise GMVAEInputError("'walker_id' is missing: a walker sharing 'walkers_dir' needs its own id (an integer >= 0)")
        walker_id = check_int(walker_id, "walker_id", minimum=0)
        walkers_stride = check_int(walkers_stride, "walkers_stride", minimum=1)
        if Path(walkers_dir).resolve() == out.resolve():
            raise GMVAEInputError(f"'walkers_dir' is the run directory {out}; give the walkers a directory of their own")
    elif walker_id is not None:
        raise GMVAEInputError("'walker_id' is given without 'walkers_dir'")

    # the bias (validates temperature, height, sigma, bias factor, pace, components, grid)
    out.mkdir(parents=True, exist_ok=True)
    meta = WellTemperedMetadynamics(
        cv, temperature=temperature, height=height, sigma=sigma, bias_factor=bias_factor, pace=pace,
        components=components, grid_min=grid_min, grid_max=grid_max, grid_bin=grid_bin, kernel=kernel,
        route=route, dtype=dtype, table_path=out / _TABLE, heating_limit=heating_limit,
        walkers_dir=walkers_dir, walker_id=walker_id, walkers_stride=walkers_stride,
        walker_info={"run": str(out.resolve())} if shared else None,
    )
    meta._auto_exchange = False  # exchanges happen at checkpoints (below)
    try:
        return _run(meta, cv, out, system, topology, pos0, n_steps, walkers, seed, torch_threads, timestep_ps, friction_ps,
                    platform, colvar_stride, traj_stride, checkpoint_interval, route, dtype, cpu_threads, extra_colvar,
                    description, overwrite, progress, shared, walker_id, walkers_stride)
    finally:
        meta.close()


def _run(meta, cv, out, system, topology, pos0, n_steps, walkers, seed, torch_threads, timestep_ps, friction_ps, platform,
         colvar_stride, traj_stride, checkpoint_interval, route, dtype, cpu_threads, extra_colvar, description, overwrite,
         progress, shared, walker_id, walkers_stride) -> BiasRunResult:
    import openmm
    import torch
    from openmm import app

    p = meta.params
    colvar_stride = check_int(colvar_stride, "colvar_stride", minimum=1) if colvar_stride is not None else max(1, p.pace // 5)
    traj_stride = check_int(traj_stride, "traj_stride", minimum=0) if traj_stride is not None else p.pace
    if shared:
        if checkpoint_interval is not None and checkpoint_interval != walkers_stride * p.pace:
            raise GMVAEInputError(
                f"'checkpoint_interval' is {checkpoint_interval}; with 'walkers_dir' every exchange is a checkpoint, "
                f"every walkers_stride * pace = {walkers_stride * p.pace} steps: set walkers_stride instead")
        checkpoint_interval = walkers_stride * p.pace
    if checkpoint_interval is None:
        checkpoint_interval = p.pace * max(1, round(10000 / p.pace))
    checkpoint_interval = check_int(checkpoint_interval, "checkpoint_interval", minimum=1)
    if checkpoint_interval % p.pace:
        raise GMVAEInputError(f"'checkpoint_interval' is {checkpoint_interval}, expected a multiple of pace = {p.pace}")

    system_xml = openmm.XmlSerializer.serialize(system)
    params = {
        "metadynamics": p.to_dict(),
        "md": {"integrator": "LangevinMiddleIntegrator", "timestep_ps": timestep_ps, "friction_per_ps": friction_ps,
               "temperature_K": p.temperature},
        "walkers": walkers,
        "seed": seed,
        "colvar_stride": colvar_stride,
        "traj_stride": traj_stride,
        "checkpoint_interval": checkpoint_interval,
        "force": {"route": route, "dtype": dtype},
        "extra_colvar": extra_colvar.names if extra_colvar is not None else [],
        "cv_sha256": cv.sha256,
        "system_sha256": _sha256(system_xml.encode()),
        "positions_sha256": _sha256(np.ascontiguousarray(pos0).tobytes()),
    }
    if shared:
        params["shared_walkers"] = {"dir": str(meta.walkers.dir), "walker_id": walker_id, "stride_hills": walkers_stride}
    walker_ids = [walker_id] if shared else list(range(walkers))
    resume = _prepare_directory(out, params, walkers, overwrite)
    if resume is not None and resume["step"] > n_steps:
        raise GMVAEInputError(f"{out / _CHECKPOINT}: the run is at step {resume['step']}, beyond n_steps = {n_steps}")

    old_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    writers: list = []
    try:
        # walkers: each a copy of the system with the bias force
        systems = [openmm.XmlSerializer.deserialize(system_xml) for _ in range(walkers)]
        for s in systems:
            meta.add_force(s, pos0, topology=topology)
        chosen, probe = _choose_platform(platform, systems[0], pos0, p.temperature, friction_ps, timestep_ps, meta, cpu_threads)
        props = {"Threads": str(cpu_threads)} if (chosen == "CPU" and cpu_threads) else {}
        sims = []
        for w, s in enumerate(systems):
            integ = openmm.LangevinMiddleIntegrator(p.temperature, friction_ps, timestep_ps)
            integ.setRandomNumberSeed(_walker_seed(seed, walker_ids[w]))
            sim = app.Simulation(topology, s, integ, openmm.Platform.getPlatformByName(chosen), props)
            sims.append(sim)
        biased = [f"cv.{c}" for c in p.components]  # PLUMED field names; the CV's own names go to run.json
        per_biased = [cv.periodic[c] for c in p.components]
        extra_fn, extra_names, extra_per = _extra_columns(extra_colvar)
        hills_writers, colvars, trajs = [], [], []
        for w, sim in enumerate(sims):
            f = _file_names(walkers, w)
            sizes = resume["files"][str(w)] if resume is not None else None
            hw = HillsWriter(out / f["hills"], biased, p.bias_factor, p.kernel, per_biased,
                             resume_size=sizes["hills"] if sizes else None)
            cr = ColvarReporter(out / f["colvar"], meta, colvar_stride, extra=extra_fn, extra_names=extra_names,
                                extra_periodic=extra_per, resume_size=sizes["colvar"] if sizes else None)
            hills_writers.append(hw)
            colvars.append(cr)
            writers += [hw, cr]
            sim.reporters.append(cr)
            if traj_stride:
                tr = DCDWriter(out / f["traj"], topology, timestep_ps, traj_stride,
                               resume=tuple(sizes["traj"]) if sizes else None)
                trajs.append(tr)
                writers.append(tr)
                sim.reporters.append(tr)
            else:
                trajs.append(None)
        by_id = dict(zip(walker_ids, hills_writers))
        meta.on_hill = lambda hill: by_id[hill.walker](hill)

        if resume is not None:
            _restore(out / _CHECKPOINT, meta, sims, resume)
            for cr in colvars:
                cr.outside = int(resume.get("colvar_outside", 0))
        else:
            for w, sim in enumerate(sims):
                sim.context.setPositions(pos0)
                sim.context.setVelocitiesToTemperature(p.temperature, _walker_seed(seed, walker_ids[w]))
        if shared:  # publish what the checkpoint holds and the file may lack; feel the others from the start
            meta.publish_hills()
            meta.read_walkers()
            meta.sync([s.context for s in sims])
        start_step = sims[0].currentStep
        info = _run_info(params, n_steps, start_step, meta, chosen, probe, torch_threads, cpu_threads, description,
                         cv, walkers, "running", None, colvars, resume)
        atomic_write_json(out / "run.json", info)

        bar = progress(total=n_steps, initial=start_step, unit="step") if progress is not None else None
        t0 = time.perf_counter()
        try:
            while sims[0].currentStep < n_steps:
                current = sims[0].currentStep
                boundary = min(n_steps, (current // checkpoint_interval + 1) * checkpoint_interval)
                while sims[0].currentStep < boundary:
                    k = min(boundary - sims[0].currentStep, p.pace - sims[0].currentStep % p.pace)
                    meta.step(sims, k)
                    if bar is not None:
                        bar.update(k)
                        elapsed = time.perf_counter() - t0
                        if elapsed > 0 and hasattr(bar, "set_postfix_str"):
                            done = sims[0].currentStep - start_step
                            bar.set_postfix_str(f"{done * timestep_ps * 86.4 / elapsed:.1f} ns/day, {len(meta.hills)} hills")
                if shared:
                    meta.read_walkers()
                    meta.sync([s.context for s in sims])
                _checkpoint(out, meta, sims, hills_writers, colvars, trajs, params, walkers)
                if shared:
                    meta.publish_hills()  # only hills a checkpoint holds: a restart never withdraws them
        except SimulationUnstableError as exc:
            info = _run_info(params, n_steps, start_step, meta, chosen, probe, torch_threads, cpu_threads, description,
                             cv, walkers, "unstable", None, colvars, resume)
            info["error"] = {"step": int(sims[0].currentStep), "message": str(exc)}
            atomic_write_json(out / "run.json", info)
            raise
        finally:
            if bar is not None and hasattr(bar, "close"):
                bar.close()
        wall = time.perf_counter() - t0
        steps_done = sims[0].currentStep - start_step
        speed = steps_done / wall if wall > 0 else float("nan")
        perf = {"wall_s": wall, "steps_this_invocation": steps_done, "steps_per_s_per_walker": speed,
                "ns_per_day_per_walker": speed * timestep_ps * 86.4}
        _write_grids(out, meta, biased)
        info = _run_info(params, n_steps, start_step, meta, chosen, probe, torch_threads, cpu_threads, description,
                         cv, walkers, "complete", perf, colvars, resume)
        atomic_write_json(out / "run.json", info)
    finally:
        for wr in writers:
            wr.close()
        torch.set_num_threads(old_threads)
    return BiasRunResult(path=out, steps=sims[0].currentStep, n_hills=len(meta.hills),
                         resumed_from=None if resume is None else int(resume["step"]), platform=chosen,
                         ns_per_day=perf["ns_per_day_per_walker"], info=info)


def _walker_seed(seed: int, w: int) -> int:
    return (seed * 7919 + w * 104729) % 2_147_483_646 + 1  # OpenMM reads 0 as "random"


def _extra_columns(spec: Optional[FeatureSpec]):
    if spec is None:
        return None, [], []
    per = [(-math.pi, math.pi) if (f.kind == "torsion" and f.transform == "raw") else None for f in spec.features]

    def fn(pos: np.ndarray) -> list:
        return spec.compute(pos[None])[0].tolist()

    return fn, spec.names, per


def _prepare_directory(out: Path, params: dict, walkers: int, overwrite: bool) -> Optional[dict]:
    """Check what ``out`` holds; return the checkpoint info to resume from, or None for a fresh run."""
    ours = {"run.json", _CHECKPOINT, _TABLE, "bias_grid.dat", "fes.dat", LOG_NAME, *_file_names(1, 0).values()}
    for w in range(max(walkers, 256)):
        ours.update(_file_names(2, w).values())
    for q in out.iterdir():  # temporary files of atomic writes interrupted by a kill
        if q.name.endswith(".tmp") and any(q.name.startswith(f".{n}.") for n in ours):
            q.unlink()
    present = [q for q in out.iterdir() if q.name != _TABLE]  # the table is rewritten at every start
    if not present:
        return None
    run_json = out / "run.json"
    foreign = [q.name for q in present if q.name not in ours]
    if not run_json.is_file() or foreign:
        if not overwrite:
            what = f"files that are not a gmvae-cv bias run ({', '.join(sorted(foreign)[:5])})" if foreign else "no run.json"
            raise GMVAEInputError(f"{out}: exists and holds {what}; choose another output directory")
        if foreign:
            raise GMVAEInputError(f"{out}: holds files gmvae-cv did not write ({', '.join(sorted(foreign)[:5])}); not overwriting them")
    try:
        prev = json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GMVAEInputError(f"{run_json}: not valid JSON ({exc}); cannot tell what run the directory holds") from None
    if prev and prev.get("format") != RUN_FORMAT:
        raise GMVAEInputError(f"{run_json}: 'format' is {prev.get('format')!r}, expected {RUN_FORMAT!r}")
    same = prev.get("params") == json.loads(json.dumps(params))
    if not same or overwrite:
        if not overwrite:
            old = prev.get("params", {})
            for key, label in (("system_sha256", "another system (its System XML differs)"),
                               ("cv_sha256", "another CV file"), ("positions_sha256", "other starting positions")):
                if old.get(key) != params[key]:
                    raise GMVAEInputError(
                        f"{out}: holds a run (and its checkpoint) made with {label}; cannot continue it with this one: "
                        "choose another output directory, or --overwrite to replace it"
                    )
            diff = _dict_diff(prev.get("params", {}), json.loads(json.dumps(params)))
            raise GMVAEInputError(
                f"{out}: holds a run with other parameters ({'; '.join(diff[:4])}); give the same parameters to continue it, "
                "another output directory, or overwrite=True (--overwrite) to replace it"
            )
        for q in present:
            q.unlink()
        return None
    ckpt = out / _CHECKPOINT
    if not ckpt.is_file():
        return None  # killed before the first checkpoint: start again (outputs are recreated)
    info = load_checkpoint_info(ckpt)
    for key, label in (("system_sha256", "system"), ("cv_sha256", "CV file"), ("positions_sha256", "starting positions")):
        if info.get(key) != params[key]:
            raise GMVAEInputError(f"{ckpt}: the checkpoint was written for another {label} ('{key}' differs); cannot continue it")
    if info.get("walkers") != walkers:
        raise GMVAEInputError(f"{ckpt}: 'walkers' is {info.get('walkers')}, this run has {walkers}")
    return info


def _dict_diff(a: Any, b: Any, prefix: str = "") -> list:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _dict_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def _choose_platform(platform: Optional[str], system: Any, pos0: np.ndarray, temperature: float, friction: float,
                     timestep: float, meta: WellTemperedMetadynamics, cpu_threads: Optional[int]) -> tuple[str, dict]:
    import openmm

    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    if platform is not None:
        if platform not in available:
            raise GMVAEInputError(f"'platform' is {platform!r}, expected one of {sorted(available)}")
        return platform, {"chosen_by": "user"}
    probe = {}
    for name in _PROBE_PLATFORMS:
        if name not in available:
            continue
        integ = openmm.LangevinMiddleIntegrator(temperature, friction, timestep)
        props = {"Threads": str(cpu_threads)} if (name == "CPU" and cpu_threads) else {}
        ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName(name), props)
        ctx.setPositions(pos0)
        ctx.setVelocitiesToTemperature(temperature, 1)
        meta.sync([ctx])
        integ.step(10)
        ctx.getState(getEnergy=True)
        steps, t0 = 0, time.perf_counter()
        while True:
            integ.step(20)
            ctx.getState(getEnergy=True)
            steps += 20
            elapsed = time.perf_counter() - t0
            if elapsed > 0.3 or steps >= 20000:
                break
        probe[name] = steps / elapsed
        del ctx
    return max(probe, key=probe.get), {"chosen_by": "measurement (biased system, ~0.3 s per platform)", "probe_steps_per_s": probe}


def _checkpoint(out: Path, meta: WellTemperedMetadynamics, sims: list, hills_writers: list, colvars: list, trajs: list,
                params: dict, walkers: int) -> None:
    files = {}
    for w in range(walkers):
        files[str(w)] = {"hills": hills_writers[w].commit(), "colvar": colvars[w].commit(),
                         "traj": list(trajs[w].commit()) if trajs[w] is not None else None}
    state = meta.state_dict()
    info = {
        "format": CHECKPOINT_FORMAT, "version": 1, "step": int(sims[0].currentStep), "n_hills": len(meta.hills),
        "walkers": walkers, "files": files, "system_sha256": params["system_sha256"], "cv_sha256": params["cv_sha256"],
        "positions_sha256": params["positions_sha256"], "bias_version": int(meta.version),
        "colvar_outside": int(sum(c.outside for c in colvars)), "edge_events": meta.edge_events[-100:],
    }
    if "walkers" in state:
        info["shared_walkers"] = state["walkers"]
    arrays = {"info": np.frombuffer(json.dumps(info).encode("utf-8"), dtype=np.uint8),
              "grid_values": state["grid_values"], "hills": state["hills"]}
    for w, sim in enumerate(sims):
        arrays[f"context_{w}"] = np.frombuffer(sim.context.createCheckpoint(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out / _CHECKPOINT, buf.getvalue())
    # hills update the table locally (equal to a recomputation to rounding, not bit for bit); a run
    # continued from this checkpoint recomputes it from the grid values, so this one does too
    meta.refresh_table()
    meta.sync([s.context for s in sims])


def _restore(path: Path, meta: WellTemperedMetadynamics, sims: list, info: dict) -> None:
    with np.load(path, allow_pickle=False) as z:
        state = {"grid_values": z["grid_values"], "hills": z["hills"], "version": info["bias_version"]}
        if meta.walkers is not None:
            if "shared_walkers" not in info:
                raise GMVAEInputError(f"{path}: the checkpoint has no record of the hills read from other walkers")
            state["walkers"] = info["shared_walkers"]
        meta.load_state_dict(state, source=str(path))
        for w, sim in enumerate(sims):
            key = f"context_{w}"
            if key not in z:
                raise GMVAEInputError(f"{path}: has no state for walker {w}")
            try:
                sim.context.loadCheckpoint(bytes(z[key]))
            except Exception as exc:  # OpenMM raises its own exception type for a foreign checkpoint
                raise GMVAEInputError(f"{path}: OpenMM cannot load the state of walker {w} into this system ({exc})") from None
            sim.currentStep = sim.context.getStepCount()
    meta.edge_events = list(info.get("edge_events", []))
    meta.sync([s.context for s in sims])


def _write_grids(out: Path, meta: WellTemperedMetadynamics, names: list) -> None:
    g = meta.params.bias_factor
    header = {"bias_factor": g, "temperature_K": meta.params.temperature, "n_hills": len(meta.hills),
              "kernel": meta.params.kernel, "units": "kJ/mol"}
    atomic_write_text(out / "bias_grid.dat", meta.grid.to_plumed_text(names, "metad.bias", header=header))
    fes = meta.grid.copy()
    fes.values = meta.free_energy()
    atomic_write_text(out / "fes.dat", fes.to_plumed_text(names, "file.free", header=header))


def _run_info(params, n_steps, start_step, meta, chosen, probe, torch_threads, cpu_threads, description, cv, walkers,
              status, perf, colvars, resume) -> dict:
    import torch

    files = {str(w): _file_names(walkers, w) for w in range(walkers)}
    return {
        "format": RUN_FORMAT,
        "version": 1,
        "status": status,
        "params": json.loads(json.dumps(params)),
        "n_steps": n_steps,
        "steps_done": int(start_step if perf is None else start_step + perf["steps_this_invocation"]),
        "resumed_from_step": None if resume is None else int(resume["step"]),
        "n_hills": len(meta.hills),
        "cv": {"path": str(cv.path) if cv.path else None, "sha256": cv.sha256, "names": cv.names,
               "periodic": [None if q is None else list(q) for q in cv.periodic], "format": cv.meta.get("format")},
        "platform": {"name": chosen, **probe, "cpu_threads": cpu_threads},
        "force": meta.force_info,
        "torch": {"num_threads": torch_threads, "version": torch.__version__},
        "performance": perf,
        "kinetic_temperature_this_invocation": meta.kinetic_temperature_summary(),
        "shared_walkers": None if meta.walkers is None else {
            "dir": str(meta.walkers.dir), "walker_id": meta.walker_id, "stride_hills": meta.walkers_stride,
            "own_hills": len(meta._own_hills), "published": meta.walkers.published,
            "hills_read": {k: v[1] for k, v in meta.walkers.state()["read"].items()}},
        "warnings": {"edge_events": len(meta.edge_events), "first_edge_events": meta.edge_events[:10],
                     "colvar_rows_outside_grid": int(sum(c.outside for c in colvars))},
        "files": {"per_walker": files, "checkpoint": _CHECKPOINT, "bias_grid": "bias_grid.dat", "fes": "fes.dat"},
        "units": {"time": "ps", "energy": "kJ/mol", "temperature": "K", "cv": "as the CV file", "length": "nm"},
        "system": description or {},
        "versions": versions("openmm", "openmmtorch", "torch"),
    }
