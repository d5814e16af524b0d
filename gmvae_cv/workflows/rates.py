r"""Rates by infrequent metadynamics: independent runs on Dask, each stopped at its first transition.

:func:`run_rates` runs ``n_runs`` independent infrequent-metadynamics runs (Tiwary and Parrinello,
PRL 111, 230602, 2013) from one state to another, per deposition pace and per direction, through
``dask.distributed``, then :func:`summarize_rates` computes the rescaled escape times, the mean
time with its interval, the Kolmogorov-Smirnov p-value against an exponential (Salvalaglio,
Tiwary and Parrinello, JCTC 10, 1420, 2014), the median/mean ratio, the pace test and the free
energy difference the two directions' ratio implies. ``gmvae-cv rates`` is the same on the command line.

The output folder ``DIR``::

    DIR/rates.json                  the manifest: system, CV (sha256), states, parameters; a DIR
                                    holding runs of another system, CV or states is refused
    DIR/runs/<from>-<to>/pace<P>/run<i>/result.json
                                    one finished run: biased time, rescaled time, acceleration,
                                    bias at the crossing, hills, wall time, seed
    DIR/runs/.../run<i>/COLVAR      time (ps), CV, bias (kJ/mol), state label, every chunk
    DIR/summary.json, ecdf.png, tau_vs_pace.png

Each run is written in a temporary folder next to its final place and renamed into place when it
has finished (``os.rename`` of a folder is atomic on one file system): a run folder exists whole
or not at all. A killed command started again runs only the runs whose folders are missing. Dask
reruns the task of a worker that died (``retries``, and the scheduler's own rescheduling of a
lost worker's tasks); a task whose folder already exists when it ends (a rerun of a task whose
first attempt did finish) discards its copy, so no run is counted twice. Seeds are derived from
``seed``, direction, pace and run index, so a rerun repeats the same run.

Dask. By default a ``LocalCluster`` with ``workers`` single-threaded worker processes on this
machine. ``scheduler="tcp://host:8786"`` connects to a running cluster instead, for example one that
dask-jobqueue started on SLURM::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="2GB", walltime="04:00:00")
    cluster.scale(jobs=32)            # 32 SLURM jobs, one worker each
    print(cluster.scheduler_address)  # pass it as --scheduler / scheduler=

(or ``dask scheduler`` on one node and ``dask worker tcp://host:8786 --nthreads 1`` in each job).
The workers need gmvae-cv installed and ``DIR`` on a shared file system. An address that
cannot be reached is an error within ``connect_timeout`` seconds, before anything is written.

States. ``C7eq``, ``C7ax`` (alanine dipeptide): the circular core sets on (phi, psi) of
:func:`gmvae_cv.systems.alanine_basin`; ``cluster:<i>``: frames whose GMVAE cluster probability
:math:`q(y=i|x)` (``model_clusters.ptc`` of the export) is at least 0.9. A run starts in the origin
and stops when a sampled frame lies in the target ("commits" to it: core sets, not a dividing line,
so that recrossings of the barrier do not end a run). ``double-well`` is a toy system
(:class:`gmvae_cv.systems.toy_rates.DoubleWell`, states ``left``/``right``) with an exact answer,
for tests and for trying the machinery without OpenMM.

The transition state must stay free of bias: the bias each run felt at its last frame before the
target (``bias_at_crossing``) is recorded, and :func:`summarize_rates` warns
(:class:`InfrequentMetadWarning`) when its median exceeds ``kT``: the rate then depends on the pace.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.checks import check_int, check_positive
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json, atomic_write_text
from .._core.versions import versions
from ..analysis.kinetics import escape_statistics, free_energy_from_rates, rates_agree

__all__ = ["RateSettings", "run_rates", "summarize_rates", "InfrequentMetadWarning", "RATES_FORMAT", "SYSTEMS"]

RATES_FORMAT = "gmvae-cv/rates"
RUN_FORMAT = "gmvae-cv/rate-run"
SYSTEMS = ("alanine-dipeptide", "double-well")
_KB = 0.008314462618  # kJ/mol/K
_STATES = {"alanine-dipeptide": ("C7eq", "C7ax"), "double-well": ("left", "right")}
CLUSTER_COMMIT = 0.9


class InfrequentMetadWarning(UserWarning):
    """The runs break an assumption of infrequent metadynamics (bias at the transition state)."""


@dataclass
class RateSettings:
    """Parameters of the infrequent-metadynamics runs (alanine: ps, kJ/mol, K; toy: reduced units).

    Attributes
    ----------
    paces : tuple of int
        Deposition paces to run (MD steps); the rate must not depend on them.
    height : float
        Initial hill height, kJ/mol.
    sigma : tuple of float, optional
        Hill widths in CV units (default: the METAD sigma of the export; 0.35 rad for phi/psi).
    bias_factor : float
    temperature : float
        K.
    timestep : float
        ps.
    friction : float
        1/ps.
    chunk : int
        Steps between state checks and bias samples (the rescaled time is a sum over chunks with
        the bias at each chunk's end).
    max_ps : float
        A run that has not reached the target by then stops unescaped (a lower bound, recorded and
        left out of the statistics with a warning).
    components : tuple of int, optional
        Biased CV components (default all, at most 3).
    platform : str
        OpenMM platform of each run.
    barrier : float
        ``double-well`` only: the barrier ``h`` in kT (times there are reduced units, not ps).
    """

    paces: tuple = (500,)
    height: float = 1.0
    sigma: Optional[tuple] = None
    bias_factor: float = 10.0
    temperature: float = 300.0
    timestep: float = 0.002
    friction: float = 1.0
    chunk: int = 100
    max_ps: float = 20000.0
    components: Optional[tuple] = None
    platform: str = "Reference"
    barrier: float = 8.0

    def check(self) -> "RateSettings":
        paces = tuple(check_int(p, "paces", minimum=1) for p in (self.paces if np.ndim(self.paces) else [self.paces]))
        if not paces:
            raise GMVAEInputError("'paces' is empty, expected at least one deposition pace in MD steps")
        check_positive(self.height, "height")
        if not self.bias_factor > 1:
            raise GMVAEInputError(f"'bias_factor' is {self.bias_factor}, expected > 1")
        check_positive(self.temperature, "temperature")
        check_positive(self.timestep, "timestep")
        check_int(self.chunk, "chunk", minimum=1)
        check_positive(self.max_ps, "max_ps")
        sigma = None if self.sigma is None else tuple(float(s) for s in np.atleast_1d(self.sigma))
        comps = None if self.components is None else tuple(int(c) for c in np.atleast_1d(self.components))
        return RateSettings(**{**asdict(self), "paces": paces, "sigma": sigma, "components": comps})


# ---------------------------------------------------------------- states
def _cluster_index(name: str) -> Optional[int]:
    if name.startswith("cluster:"):
        try:
            return int(name.split(":", 1)[1])
        except ValueError:
            raise GMVAEInputError(f"state {name!r}: expected 'cluster:<index>' with an integer index") from None
    return None


def check_states(system: str, origin: str, target: str, exp: Optional[str | os.PathLike] = None) -> None:
    """Refuse unknown, overlapping or never-visited states (see the module docstring for names).

    GMVAE cluster states need ``exp``: the cluster index must exist and at least one frame of the
    export's training data (``EXP/data/features.npy``) or check frames must commit to it.
    """
    names = _STATES[system]
    if origin == target:
        raise GMVAEInputError(f"'--from' and '--to' are both {origin!r}: the states overlap, expected two different states")
    for which, name in (("--from", origin), ("--to", target)):
        k = _cluster_index(name)
        if k is None and name not in names:
            raise GMVAEInputError(f"'{which}' is {name!r}, expected one of {', '.join(names)} or cluster:<i> (a GMVAE cluster)")
        if k is not None:
            if system != "alanine-dipeptide" or exp is None:
                raise GMVAEInputError(f"'{which}' is {name!r}: cluster states need a GMVAE export (EXP) of alanine dipeptide")
            probs = _exp_cluster_probs(exp)
            if not 0 <= k < probs.shape[1]:
                raise GMVAEInputError(f"'{which}' is {name!r}: the export has {probs.shape[1]} clusters (0..{probs.shape[1] - 1})")
            if not np.any(probs[:, k] >= CLUSTER_COMMIT):
                raise GMVAEInputError(
                    f"'{which}' is {name!r}: no frame of {Path(exp) / 'data' / 'features.npy'} has q(y={k}|x) >= "
                    f"{CLUSTER_COMMIT}; no frame visits this state")


def _exp_cluster_probs(exp) -> np.ndarray:
    import torch

    from ..deploy.contract import load_plumed_model

    exp = Path(exp)
    model, _ = load_plumed_model(exp / "model_clusters.ptc", kind="clusters")
    f = exp / "data" / "features.npy"
    if not f.is_file():
        raise GMVAEInputError(f"{f}: file not found; cluster states are checked on the export's training features")
    x = np.load(f)
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).numpy()


class _AlanineStates:
    """Label positions 0 (origin), 1 (target) or -1 for alanine dipeptide."""

    def __init__(self, origin: str, target: str, exp: Optional[str]) -> None:
        from ..deploy.loaders import feature_cv
        from ..features import alanine_backbone_torsions

        self.torsions = feature_cv(alanine_backbone_torsions(transform="raw"))
        self.names = (origin, target)
        self.clusters = None
        if any(_cluster_index(n) is not None for n in self.names):
            from ..deploy.contract import load_plumed_model
            from ..deploy.loaders import load_cv

            self.clusters, _ = load_plumed_model(Path(exp) / "model_clusters.ptc", kind="clusters")
            self.spec = load_cv(exp).feature_spec

    def __call__(self, pos: np.ndarray) -> int:
        from ..systems import alanine_basin

        inside = []
        basin = None
        probs = None
        for n in self.names:
            k = _cluster_index(n)
            if k is None:
                if basin is None:
                    phi, psi = self.torsions(pos)
                    basin = int(alanine_basin(np.array([phi]), np.array([psi]))[0])
                inside.append(basin == {"C7eq": 0, "C7ax": 1}[n])
            else:
                if probs is None:
                    import torch

                    with torch.no_grad():
                        probs = self.clusters(torch.as_tensor(self.spec.compute(pos), dtype=torch.float32)).numpy()[0]
                inside.append(bool(probs[k] >= CLUSTER_COMMIT))
        if inside[0] and inside[1]:
            raise GMVAEInputError(f"a frame lies in both states {self.names[0]!r} and {self.names[1]!r}: the states overlap")
        return 0 if inside[0] else (1 if inside[1] else -1)


def _alanine_start(state: str, exp: Optional[str], seed: int) -> np.ndarray:
    """Positions (nm) inside ``state``: the bundled C7eq minimum, a C7ax structure made by
    minimising with (phi, psi) restrained to the C7ax centre, or a check frame of the export."""
    import openmm
    from openmm import app, unit

    from ..systems import C7AX_CENTER_DEG, AlanineDipeptide

    ala = AlanineDipeptide()
    if state == "C7eq":
        return ala.positions
    if state == "C7ax":
        from ..features.presets import _backbone_torsion_atoms

        phi, psi = _backbone_torsion_atoms(ala.mdtraj_topology)
        system = ala.create_system(constraints=None)
        f = openmm.CustomTorsionForce("0.5*k*(1-cos(theta-theta0))")
        f.addGlobalParameter("k", 2000.0)
        f.addPerTorsionParameter("theta0")
        f.addTorsion(*phi, [math.radians(C7AX_CENTER_DEG[0])])
        f.addTorsion(*psi, [math.radians(C7AX_CENTER_DEG[1])])
        system.addForce(f)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ala.positions)
        openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 5000)
        ctx.setParameter("k", 0.0)
        openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 5000)
        return ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    frames = np.load(Path(exp) / "frames.npy")
    lab = _AlanineStates(state, "C7eq" if state != "C7eq" else "C7ax", exp)
    for x in frames:
        if lab(x) == 0:
            return np.asarray(x, dtype=np.float64)
    raise GMVAEInputError(f"{Path(exp) / 'frames.npy'}: no frame lies in state {state!r}, so no run can start there")


# ---------------------------------------------------------------- one run (in a worker)
def _seed(seed: int, direction: str, pace: int, index: int) -> int:
    h = hashlib.sha256(f"{seed}/{direction}/{pace}/{index}".encode()).digest()
    return int.from_bytes(h[:4], "little") % 2_000_000_000


def _run_alanine(task: dict, tmp: Path) -> dict:
    import openmm
    import torch
    from openmm import app, unit

    from ..deploy.loaders import feature_cv, load_cv
    from ..features import alanine_backbone_torsions
    from ..metad import WellTemperedMetadynamics
    from ..systems import AlanineDipeptide

    torch.set_num_threads(1)
    s = task["settings"]
    exp = task["exp"]
    cv = feature_cv(alanine_backbone_torsions(transform="raw")) if exp == "phi-psi" else load_cv(exp)
    ala = AlanineDipeptide()
    states = _AlanineStates(task["origin"], task["target"], None if exp == "phi-psi" else exp)
    pos0 = np.asarray(task["start"], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = WellTemperedMetadynamics(cv, temperature=s["temperature"], height=s["height"], sigma=task["sigma"],
                                        bias_factor=s["bias_factor"], pace=task["pace"], components=s["components"])
        system = ala.create_system()
        meta.add_force(system, pos0, topology=ala.topology)
    integ = openmm.LangevinMiddleIntegrator(s["temperature"] * unit.kelvin, s["friction"] / unit.picosecond,
                                            s["timestep"] * unit.picoseconds)
    integ.setRandomNumberSeed(task["seed"])
    sim = app.Simulation(ala.topology, system, integ, openmm.Platform.getPlatformByName(s["platform"]))
    sim.context.setPositions(pos0)
    sim.context.setVelocitiesToTemperature(s["temperature"] * unit.kelvin, task["seed"])
    kT = _KB * s["temperature"]
    chunk = task["chunk"]
    dt_chunk = chunk * s["timestep"]
    max_chunks = int(math.ceil(s["max_ps"] / dt_chunk))
    rows = []
    t_star = 0.0
    v_prev = 0.0
    label = 0
    for c in range(1, max_chunks + 1):
        meta.step(sim, chunk)
        st = sim.context.getState(getPositions=True)
        pos = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        cvs = meta._cv_of_state(st, pos)
        v = meta.bias_at(cvs)
        label = states(pos)
        # the chunk felt the bias from its start (v_prev) to its end (v): trapezoid in exp(V/kT)
        t_star += dt_chunk * 0.5 * (math.exp(v_prev / kT) + math.exp(v / kT))
        rows.append([c * dt_chunk, *cvs.tolist(), v, label])
        if label == 1:
            break
        v_prev = v
    escaped = label == 1
    biased = len(rows) * dt_chunk
    names = ["time", *cv.names, "metad.bias", "state"]
    body = "\n".join(" ".join(f"{x:.8g}" for x in r) for r in rows)
    atomic_write_text(tmp / "COLVAR", f"#! FIELDS {' '.join(names)}\n#! SET kT {kT!r}\n{body}\n")
    return {"biased_time_ps": biased, "rescaled_time_ps": t_star, "acceleration": t_star / biased,
            "bias_at_crossing_kjmol": float(v_prev) if escaped else None, "n_hills": len(meta.hills),
            "escaped": bool(escaped), "kT": kT}


def _run_double_well(task: dict, tmp: Path) -> dict:
    from ..systems.toy_rates import DoubleWell, toy_infrequent_metadynamics

    s = task["settings"]
    dw = DoubleWell(h=s["barrier"], dt=s["timestep"], kT=1.0)
    sign = 1.0 if task["target"] == "right" else -1.0
    r = toy_infrequent_metadynamics(dw, n_runs=1, target=lambda x: sign * x[:, 0] > 0.7, sigma=task["sigma"][0],
                                    height=s["height"], pace=task["pace"], biasfactor=s["bias_factor"],
                                    x0=[-sign], max_steps=int(s["max_ps"] / s["timestep"]), seed=task["seed"])
    atomic_write_text(tmp / "COLVAR", f"#! FIELDS biased_time rescaled_time\n{r.biased_time[0]!r} {r.rescaled_time[0]!r}\n")
    return {"biased_time_ps": float(r.biased_time[0]), "rescaled_time_ps": float(r.rescaled_time[0]),
            "acceleration": float(r.acceleration[0]), "bias_at_crossing_kjmol": float(r.bias_at_crossing[0]),
            "n_hills": int(r.n_hills[0]), "escaped": bool(r.escaped[0]), "kT": 1.0}


def run_one(task: dict) -> dict:
    """Do one run of ``task`` (a dict made by :func:`run_rates`) unless its folder exists; return its result.

    Runs in a Dask worker. The run is written into ``<folder>.tmp-<uuid>`` and renamed to
    ``<folder>`` when done; if ``<folder>`` appeared meanwhile (another attempt finished first),
    this attempt's copy is removed and the existing result returned.
    """
    final = Path(task["folder"])
    done = final / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        if task["system"] == "alanine-dipeptide":
            res = _run_alanine(task, tmp)
        else:
            res = _run_double_well(task, tmp)
        res.update({"format": RUN_FORMAT, "direction": task["direction"], "pace": task["pace"], "index": task["index"],
                    "seed": task["seed"], "wall_s": time.perf_counter() - t0, "pid": os.getpid(),
                    "manifest_sha256": task["manifest_sha256"]})
        atomic_write_json(tmp / "result.json", res)
        try:
            os.rename(tmp, final)
        except OSError:
            if done.is_file():  # another attempt of this run finished first: keep that one
                shutil.rmtree(tmp, ignore_errors=True)
                return json.loads(done.read_text())
            raise
        return res
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------- Dask
def connect(scheduler: Optional[str] = None, workers: int = 1, *, connect_timeout: float = 5.0):
    """A ``dask.distributed.Client``: to ``scheduler`` if given, else to a new ``LocalCluster`` of
    ``workers`` single-threaded processes. An unreachable scheduler raises :class:`GMVAEInputError`
    within about ``connect_timeout`` seconds."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise GMVAEInputError(
                f"'--scheduler' is {scheduler!r}: no Dask scheduler answered within {connect_timeout:g} s "
                f"({type(exc).__name__}); start one (dask scheduler, or dask-jobqueue) or leave --scheduler out") from None
    workers = check_int(workers, "workers", minimum=1)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


# ---------------------------------------------------------------- the workflow
def _manifest(system: str, exp: Optional[str], origin: str, target: str, settings: RateSettings, sigma: list,
              both: bool, seed: int) -> dict:
    cv = {"kind": "none"}
    if system == "alanine-dipeptide":
        if exp == "phi-psi":
            cv = {"kind": "phi-psi"}
        else:
            from ..deploy.loaders import load_cv

            m = load_cv(exp)
            cv = {"kind": "export", "path": str(Path(exp).resolve()), "sha256": m.sha256}
    s = asdict(settings)
    s.pop("paces")
    s.pop("max_ps")
    return {"format": RATES_FORMAT, "system": system, "cv": cv, "from": origin, "to": target, "both_directions": both,
            "seed": seed, "sigma": sigma, "settings": s}


def _sigma_for(system: str, exp: Optional[str], settings: RateSettings) -> list:
    if settings.sigma is not None:
        return list(settings.sigma)
    if system == "double-well":
        return [0.1]
    if exp == "phi-psi":
        return [0.35, 0.35]
    from ..deploy.loaders import load_cv

    m = load_cv(exp)
    exported = ((m.meta.get("cv_json") or {}).get("plumed") or {}).get("metad", {}).get("sigma")
    if exported is None:
        raise GMVAEInputError(f"{exp}: no cv.json METAD sigma; give sigma (one width per biased component)")
    comps = settings.components if settings.components is not None else range(len(exported))
    return [float(exported[c]) for c in comps]


def run_rates(
    exp: Optional[str | os.PathLike],
    out: str | os.PathLike,
    *,
    system: str = "alanine-dipeptide",
    origin: str = "C7eq",
    target: str = "C7ax",
    n_runs: int,
    settings: Optional[RateSettings] = None,
    both_directions: bool = True,
    seed: int = 0,
    scheduler: Optional[str] = None,
    workers: int = 1,
    retries: int = 2,
    connect_timeout: float = 5.0,
    reweighting_df: Optional[Sequence[float]] = None,
    log: Optional[Callable[[str], None]] = None,
) -> dict:
    """Run the missing infrequent-metadynamics runs of ``out`` on Dask, then :func:`summarize_rates`.

    Parameters
    ----------
    exp : path or 'phi-psi' or None
        The GMVAE export (EXP directory, ``model_openmm.pt`` inside) whose CV is biased;
        ``'phi-psi'`` biases the backbone torsions; ``None`` for ``system='double-well'``.
    out : path
        Output folder ``DIR`` (see the module docstring).
    system : {'alanine-dipeptide', 'double-well'}
    origin, target : str
        States (module docstring): the runs go ``origin -> target`` and, with ``both_directions``,
        also ``target -> origin``.
    n_runs : int
        Runs per direction and pace (>= 1; at least 3 for the statistics).
    settings : RateSettings
    seed : int
    scheduler : str, optional
        Address of a running Dask scheduler; default a LocalCluster of ``workers`` processes.
    workers : int
    retries : int
        Extra attempts of a task that failed (a lost worker's task is also rescheduled by Dask).
    connect_timeout : float
        Seconds to wait for ``scheduler``.
    reweighting_df : (value, low, high), optional
        :math:`F_{to} - F_{from}` (kJ/mol) from reweighting the biased runs, to set next to the one
        the rates imply (``delta_f_consistent`` in the summary: do the intervals overlap).
    log : callable, optional
        Called with progress lines.

    Returns
    -------
    dict
        The summary (:func:`summarize_rates`).
    """
    if system not in SYSTEMS:
        raise GMVAEInputError(f"'--system' is {system!r}, expected one of {', '.join(SYSTEMS)}")
    n_runs = check_int(n_runs, "runs", minimum=1)
    settings = (settings or RateSettings()).check()
    if system == "alanine-dipeptide":
        if exp is None:
            raise GMVAEInputError("'exp' is missing: give an EXP directory (gmvae-cv export) or 'phi-psi'")
        exp = str(exp)
        if exp != "phi-psi" and not Path(exp).exists():
            raise GMVAEInputError(f"{exp}: not found (expected an EXP directory of gmvae-cv export, or 'phi-psi')")
    check_states(system, origin, target, None if exp in (None, "phi-psi") else exp)
    if system == "alanine-dipeptide":
        short = [p for p in settings.paces if p * settings.timestep < 1.0]
        if short:
            warnings.warn(
                f"pace(s) {short} steps deposit a hill more often than every 1 ps: infrequent metadynamics needs the "
                f"transition state free of bias; check the KS p-value and that tau does not change with the pace",
                InfrequentMetadWarning, stacklevel=2)
    out = Path(out)
    sigma = _sigma_for(system, exp, settings)
    manifest = _manifest(system, exp, origin, target, settings, sigma, both_directions, seed)
    mpath = out / "rates.json"
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        for key in ("format", "system", "cv", "from", "to", "both_directions", "seed", "sigma", "settings"):
            if old.get(key) != manifest.get(key):
                raise GMVAEInputError(
                    f"{mpath}: '{key}' is {old.get(key)!r}, this call has {manifest.get(key)!r}: {out} holds runs of "
                    f"another system, CV, states or parameters; use another --out")
    elif out.exists() and any(out.iterdir()):
        raise GMVAEInputError(f"{out}: exists and holds files but no rates.json; expected an empty or new folder")
    msha = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    client = connect(scheduler, workers, connect_timeout=connect_timeout)  # before anything is written
    try:
        _remove_stale(out)
        atomic_write_json(mpath, {**manifest, "versions": versions()} if not mpath.is_file() else json.loads(mpath.read_text()))
        directions = [(origin, target)] + ([(target, origin)] if both_directions else [])
        tasks = []
        for a, b in directions:
            start = None
            if system == "alanine-dipeptide":
                start = np.asarray(_alanine_start(a, None if exp == "phi-psi" else exp, seed)).tolist()
            for pace in settings.paces:
                chunk = min(settings.chunk, pace) if system == "alanine-dipeptide" else settings.chunk
                for i in range(n_runs):
                    folder = out / "runs" / f"{a}-{b}" / f"pace{pace}" / f"run{i:03d}"
                    if (folder / "result.json").is_file():
                        r = json.loads((folder / "result.json").read_text())
                        if r.get("escaped") or r.get("biased_time_ps", 0.0) >= settings.max_ps - 1e-9:
                            continue
                        shutil.rmtree(folder)  # stopped unescaped at a shorter max_ps: run it again, longer
                    tasks.append({"system": system, "exp": exp, "origin": a, "target": b, "direction": f"{a}-{b}",
                                  "pace": int(pace), "index": i, "seed": _seed(seed, f"{a}-{b}", pace, i),
                                  "folder": str(folder), "settings": asdict(settings), "sigma": sigma,
                                  "chunk": int(chunk), "start": start, "manifest_sha256": msha})
        if log:
            log(f"{out}: {len(tasks)} run(s) to do on {len(client.scheduler_info().get('workers', {}))} Dask worker(s)")
        from dask.distributed import as_completed

        futures = [client.submit(run_one, t, key=f"rate-run-{msha[:10]}-{t['direction']}-{t['pace']}-{t['index']}",
                                 pure=False, retries=retries) for t in tasks]
        for n, fut in enumerate(as_completed(futures), 1):
            res = fut.result()
            if log:
                log(f"  run {n}/{len(tasks)}: {res['direction']} pace {res['pace']} #{res['index']}: "
                    f"t* = {res['rescaled_time_ps']:.4g} ps (biased {res['biased_time_ps']:.4g} ps, {res['wall_s']:.0f} s)")
        _remove_stale(out)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and scheduler is None:
            cluster.close()
    return summarize_rates(out, reweighting_df=reweighting_df)


def _remove_stale(out: Path) -> None:
    """Remove the temporary folders of runs killed before they finished (none is running: this
    command owns ``out``; two commands on one ``out`` at once are not supported)."""
    for tmp in (out / "runs").glob("*/pace*/.run*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _load_runs(out: Path) -> dict:
    mpath = out / "rates.json"
    if not mpath.is_file():
        raise GMVAEInputError(f"{mpath}: file not found; expected a rates folder (gmvae-cv rates)")
    groups: dict = {}
    for f in sorted((out / "runs").glob("*/pace*/run*/result.json")):
        r = json.loads(f.read_text())
        if r.get("format") != RUN_FORMAT:
            raise GMVAEInputError(f"{f}: 'format' is {r.get('format')!r}, expected {RUN_FORMAT!r}")
        groups.setdefault(r["direction"], {}).setdefault(int(r["pace"]), []).append(r)
    return groups


def summarize_rates(out: str | os.PathLike, *, confidence: float = 0.95, reweighting_df: Optional[Sequence[float]] = None) -> dict:
    """Statistics of the finished runs of ``out``; writes ``summary.json``, ``ecdf.png``, ``tau_vs_pace.png``.

    Per direction and pace: :func:`~gmvae_cv.analysis.kinetics.escape_statistics` of the rescaled
    times (ps; ``tau`` also in ns), the median acceleration, the median bias at the crossing in
    kT. Per direction: all paces pooled, and the pace test
    (:func:`~gmvae_cv.analysis.kinetics.rates_agree`). With both directions:
    :math:`F_{to} - F_{from}` from the ratio of the pooled means, next to ``reweighting_df``
    ([value, low, high], kJ/mol) if given.

    Returns
    -------
    dict
        JSON-ready; keys ``directions`` (per direction: ``paces``, ``pooled``, ``pace_pvalue``),
        ``tau_<from>_to_<to>_ns`` as [value, low, high], ``rates_ks_pvalue`` (the smallest over
        the pooled directions), ``rates_runs``, ``delta_f_from_rates_kjmol``.
    """
    out = Path(out)
    manifest = json.loads((out / "rates.json").read_text()) if (out / "rates.json").is_file() else None
    groups = _load_runs(out)
    summary: dict = {"format": "gmvae-cv/rates-summary", "confidence": confidence, "directions": {}}
    kT = None
    pooled_times = {}
    n_total = 0
    for direction, by_pace in groups.items():
        d: dict = {"paces": {}}
        all_t = []
        per_pace = []
        for pace, runs in sorted(by_pace.items()):
            esc = [r for r in runs if r["escaped"]]
            kT = runs[0]["kT"]
            n_total += len(esc)
            entry = {"runs": len(runs), "escaped": len(esc)}
            if len(esc) < len(runs):
                warnings.warn(f"{direction}, pace {pace}: {len(runs) - len(esc)} run(s) did not reach the target "
                              f"within max_ps; they are left out (their times are lower bounds)", InfrequentMetadWarning)
            t = np.array([r["rescaled_time_ps"] for r in esc])
            if len(t) >= 3:
                st = escape_statistics(t, confidence=confidence, time_unit="ps").to_dict()
                st["tau_ns"] = [st["tau"] / 1000, st["tau_low"] / 1000, st["tau_high"] / 1000]
                entry.update(st)
                per_pace.append(t)
            if esc:
                vc = np.array([r["bias_at_crossing_kjmol"] for r in esc], dtype=float) / kT
                entry["median_acceleration"] = float(np.median([r["acceleration"] for r in esc]))
                entry["median_bias_at_crossing_kT"] = float(np.median(vc))
                entry["biased_ns_total"] = float(sum(r["biased_time_ps"] for r in esc) / 1000)
                entry["wall_s_total"] = float(sum(r["wall_s"] for r in runs))
                if np.median(vc) > 1.0:
                    warnings.warn(
                        f"{direction}, pace {pace}: the median bias at the last frame before the target is "
                        f"{np.median(vc):.2f} kT: hills land near the transition state, so the rate depends on the "
                        f"pace; deposit more slowly or lower the height", InfrequentMetadWarning)
            d["paces"][str(pace)] = entry
            all_t.append(t)
        t_all = np.concatenate(all_t) if all_t else np.array([])
        if t_all.size >= 3:
            st = escape_statistics(t_all, confidence=confidence, time_unit="ps").to_dict()
            st["tau_ns"] = [st["tau"] / 1000, st["tau_low"] / 1000, st["tau_high"] / 1000]
            d["pooled"] = st
            pooled_times[direction] = t_all
        d["pace_pvalue"] = rates_agree(per_pace) if len(per_pace) >= 2 else None
        summary["directions"][direction] = d
        a, b = direction.split("-", 1)
        if "pooled" in d:
            summary[f"tau_{a.lower()}_to_{b.lower()}_ns"] = d["pooled"]["tau_ns"]
    summary["rates_runs"] = n_total
    ks = [d["pooled"]["ks_pvalue"] for d in summary["directions"].values() if "pooled" in d]
    summary["rates_ks_pvalue"] = min(ks) if ks else None
    if manifest and manifest.get("both_directions"):
        fwd, bwd = f"{manifest['from']}-{manifest['to']}", f"{manifest['to']}-{manifest['from']}"
        if fwd in pooled_times and bwd in pooled_times:
            summary["delta_f_from_rates_kjmol"] = list(free_energy_from_rates(pooled_times[fwd], pooled_times[bwd], kT,
                                                                              confidence=confidence))
            summary["delta_f_definition"] = f"F({manifest['to']}) - F({manifest['from']}) = kT ln(tau_{fwd} / tau_{bwd})"
    if reweighting_df is not None:
        summary["delta_f_reweighting_kjmol"] = [float(x) for x in reweighting_df]
        if "delta_f_from_rates_kjmol" in summary:
            _, lo, hi = summary["delta_f_from_rates_kjmol"]
            rv, rlo, rhi = summary["delta_f_reweighting_kjmol"]
            summary["delta_f_consistent"] = bool(lo <= rhi and rlo <= hi)
    if manifest:
        summary["system"] = manifest["system"]
        summary["cv"] = manifest["cv"]
    atomic_write_json(out / "summary.json", summary)
    _plots(out, groups, summary)
    return summary


def _plots(out: Path, groups: dict, summary: dict) -> None:
    from .._core.figures import _pyplot, save_figure

    plt = _pyplot()
    dirs = [d for d in summary["directions"] if "pooled" in summary["directions"][d]]
    if not dirs:
        return
    fig, axes = plt.subplots(1, len(dirs), figsize=(4.5 * len(dirs), 3.6), squeeze=False)
    for ax, direction in zip(axes[0], dirs):
        for pace, runs in sorted(groups[direction].items()):
            t = np.sort([r["rescaled_time_ps"] for r in runs if r["escaped"]]) / 1000
            if t.size:
                ax.step(t, np.arange(1, t.size + 1) / t.size, where="post", label=f"pace {pace} (n={t.size})")
        st = summary["directions"][direction]["pooled"]
        tt = np.linspace(0, ax.get_xlim()[1], 200)
        ax.plot(tt, 1 - np.exp(-tt * 1000 / st["tau_ks"]), "k--", label=f"1 - exp(-t/tau), tau = {st['tau_ks'] / 1000:.3g} ns")
        ax.set_xscale("symlog", linthresh=max(float(tt[1]), 1e-6))
        ax.set_xlabel("rescaled escape time t* (ns)")
        ax.set_ylabel("empirical CDF")
        ax.set_title(f"{direction}: KS p = {st['ks_pvalue']:.2f}, median/mean = {st['median_over_mean']:.2f}")
        ax.legend(fontsize=7)
    save_figure(fig, out / "ecdf.png")
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for direction in dirs:
        ps = [(int(p), e) for p, e in summary["directions"][direction]["paces"].items() if "tau_ns" in e]
        if not ps:
            continue
        x = np.array([p for p, _ in ps])
        y = np.array([e["tau_ns"] for _, e in ps])
        ax.errorbar(x, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], marker="o", capsize=3, label=direction)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deposition pace (MD steps)")
    ax.set_ylabel("tau (ns), 95 % interval")
    ax.legend(fontsize=7)
    save_figure(fig, out / "tau_vs_pace.png")
