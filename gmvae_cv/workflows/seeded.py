"""Seeded short unbiased runs on Dask: the data of a Markov model that starts from every state a biased run found.

A biased run finds states that unbiased MD would need microseconds to reach; short unbiased runs
started in each of them, pooled, give transition counts whose reversible MSM does not depend on
where the runs started (within the Markov assumption), so the slow processes between those
states can be resolved with far less simulation than one long run (Pande, Beauchamp and Bowman,
Methods 52, 99, 2010). :func:`run_seeded` runs them as independent tasks through
``dask.distributed``, as :func:`~gmvae_cv.workflows.rates.run_rates` does:

    OUT/seeded.json                 the manifest: the system (sha256 of its XML), the settings, the
                                    states and their number of starts; an OUT of another system or
                                    settings is refused
    OUT/runs/<state>/run<i>/traj.dcd, result.json
                                    one finished run (frames every ``report_ps``), whole or absent

A killed command started again runs only the missing runs; a task a lost worker was running is
retried; a run is never counted twice (:func:`~gmvae_cv._core.files.run_in_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from .._core.checks import check_int, check_positive
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json, run_in_folder

__all__ = ["SeededSettings", "run_seeded", "SEEDED_FORMAT"]

SEEDED_FORMAT = "gmvae-cv/seeded"


@dataclass
class SeededSettings:
    """Parameters of every seeded run.

    Attributes
    ----------
    ns_per_run : float
        Simulated time of each run, ns.
    timestep : float
        ps (4 fs needs a system built with heavier hydrogens, e.g. ``hydrogenMass=4 amu``).
    temperature : float
        K (Langevin middle integrator).
    friction : float
        1/ps.
    report_ps : float
        Time between saved frames, ps.
    platform : str
        OpenMM platform of each run.
    threads : int
        Threads of each run on the CPU platform (a worker does one run at a time).
    """

    ns_per_run: float
    timestep: float = 0.002
    temperature: float = 300.0
    friction: float = 1.0
    report_ps: float = 1.0
    platform: str = "CPU"
    threads: int = 1

    def steps(self) -> tuple[int, int]:
        """(steps per run, steps between frames); raise :class:`GMVAEInputError` naming a bad field."""
        for name in ("ns_per_run", "timestep", "temperature", "friction", "report_ps"):
            check_positive(getattr(self, name), name)
        check_int(self.threads, "threads", minimum=1)
        every = int(round(self.report_ps / self.timestep))
        if every < 1 or abs(every * self.timestep - self.report_ps) > 1e-9 * self.report_ps:
            raise GMVAEInputError(f"'report_ps' is {self.report_ps}, expected a multiple of the time step {self.timestep} ps")
        n = int(round(self.ns_per_run * 1000.0 / self.timestep / every)) * every
        if n < every:
            raise GMVAEInputError(f"'ns_per_run' is {self.ns_per_run}, shorter than one frame ({self.report_ps} ps)")
        return n, every


def _run_task(task: dict) -> dict:
    """One seeded run (a Dask task): ``task['folder']`` appears with ``traj.dcd`` and ``result.json``."""
    def work(tmp: Path) -> dict:
        import openmm
        from openmm import app, unit

        t0 = time.perf_counter()
        system = openmm.XmlSerializer.deserialize(Path(task["system_xml"]).read_text())
        s = task["settings"]
        integ = openmm.LangevinMiddleIntegrator(s["temperature"] * unit.kelvin, s["friction"] / unit.picosecond,
                                                s["timestep"] * unit.picoseconds)
        integ.setRandomNumberSeed(task["seed"])
        platform = openmm.Platform.getPlatformByName(s["platform"])
        props = {"Threads": str(s["threads"])} if s["platform"] == "CPU" else {}
        pdb = app.PDBFile(task["topology"])
        sim = app.Simulation(pdb.topology, system, integ, platform, props)
        start = np.load(task["starts"])[task["index"]]
        sim.context.setPositions(start * unit.nanometer)
        if task.get("box") is not None:
            sim.context.setPeriodicBoxVectors(*[openmm.Vec3(*v) * unit.nanometer for v in task["box"]])
        sim.context.setVelocitiesToTemperature(s["temperature"] * unit.kelvin, task["seed"])
        sim.reporters.append(app.DCDReporter(str(tmp / "traj.dcd"), task["every"]))
        t1 = time.perf_counter()
        sim.step(task["n_steps"])
        md_s = time.perf_counter() - t1
        del sim
        ns = task["n_steps"] * s["timestep"] / 1000.0
        return {"format": SEEDED_FORMAT + "-run", "state": task["state"], "index": task["index"], "seed": task["seed"],
                "n_frames": task["n_steps"] // task["every"], "ns": ns, "ns_per_day": ns / (md_s / 86400.0),
                "wall_s": time.perf_counter() - t0, "pid": os.getpid(), "manifest_sha256": task["manifest_sha256"]}

    return run_in_folder(task["folder"], work)


def run_seeded(
    system_xml: str | os.PathLike,
    topology: str | os.PathLike,
    starts: Mapping[str, np.ndarray],
    out: str | os.PathLike,
    settings: SeededSettings,
    *,
    box: Optional[np.ndarray] = None,
    seed: int = 0,
    scheduler: Optional[str] = None,
    workers: int = 1,
    retries: int = 2,
    connect_timeout: float = 5.0,
    log: Optional[Callable[[str], None]] = None,
) -> dict:
    """Run the missing seeded runs of ``out`` on Dask (module docstring) and return what was run.

    Parameters
    ----------
    system_xml : path
        The OpenMM ``System`` (``openmm.XmlSerializer``), without any bias.
    topology : path
        A PDB file of the same atoms (for the DCD files).
    starts : mapping of str to (n_runs, n_atoms, 3) array
        Start positions (nm) per state name: one run per start.
    out : path
    settings : SeededSettings
    box : (3, 3) array, optional
        Periodic box vectors (rows, nm) of every start, e.g. those of the run they came from.
    seed : int
        Seeds of the runs are derived from it, the state and the run index (a rerun repeats a run).
    scheduler, workers, retries, connect_timeout
        As :func:`~gmvae_cv.workflows.rates.run_rates` (a ``LocalCluster`` of ``workers``
        single-threaded processes by default).
    log : callable, optional

    Returns
    -------
    dict
        ``runs``: per state the run folders (str), ``ns`` (all runs), ``ran`` (runs done by this call).
    """
    from .rates.dispatch import _distributed, connect

    n_steps, every = settings.steps()
    system_xml, topology, out = Path(system_xml), Path(topology), Path(out)
    for f, what in ((system_xml, "an OpenMM System XML"), (topology, "a PDB file")):
        if not f.is_file():
            raise GMVAEInputError(f"{f}: file not found; expected {what}")
    import openmm

    n_atoms = openmm.XmlSerializer.deserialize(system_xml.read_text()).getNumParticles()
    if not starts:
        raise GMVAEInputError("'starts' is empty: expected start positions for at least one state")
    arrays = {}
    for name, x in starts.items():
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 3 or a.shape[1:] != (n_atoms, 3) or len(a) == 0:
            raise GMVAEInputError(f"starts[{name!r}] has shape {a.shape}, expected (n_runs >= 1, {n_atoms}, 3): "
                                  f"positions in nm of the {n_atoms} atoms of {system_xml}")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise GMVAEInputError(f"state name {name!r}: expected letters, digits, '-' or '_' (it names a folder)")
        arrays[name] = a
    starts_sha = hashlib.sha256(b"".join(k.encode() + np.ascontiguousarray(v).tobytes() for k, v in sorted(arrays.items())))
    manifest = {"format": SEEDED_FORMAT, "system_sha256": hashlib.sha256(system_xml.read_bytes()).hexdigest(),
                "settings": asdict(settings), "seed": seed, "states": {k: len(v) for k, v in arrays.items()},
                "starts_sha256": starts_sha.hexdigest()}
    mpath = out / "seeded.json"
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        for key in ("format", "system_sha256", "settings", "seed", "states", "starts_sha256"):
            if old.get(key) != manifest[key]:
                raise GMVAEInputError(f"{mpath}: '{key}' is {old.get(key)!r}, this call has {manifest[key]!r}: {out} holds "
                                      "runs of another system, settings or starts; use another out")
    msha = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    tasks, folders = [], {}
    for name, a in arrays.items():
        folders[name] = []
        for i in range(len(a)):
            folder = (out / "runs" / name / f"run{i:03d}").resolve()
            folders[name].append(str(folder))
            if not (folder / "result.json").is_file():
                h = hashlib.sha256(f"{seed}/{name}/{i}".encode()).digest()
                tasks.append({"folder": str(folder), "state": name, "index": i, "seed": int.from_bytes(h[:4], "little") % 2_000_000_000,
                              "system_xml": str(system_xml.resolve()), "topology": str(topology.resolve()),
                              "starts": str((out / "starts" / f"{name}.npy").resolve()), "settings": asdict(settings),
                              "n_steps": n_steps, "every": every, "manifest_sha256": msha,
                              "box": None if box is None else np.asarray(box, dtype=float).tolist()})
    if tasks:
        client = connect(scheduler, workers, connect_timeout=connect_timeout)  # before anything is written
        try:
            atomic_write_json(mpath, manifest)
            for name, a in arrays.items():
                f = out / "starts" / f"{name}.npy"
                f.parent.mkdir(parents=True, exist_ok=True)
                np.save(f, a)
            if log:
                log(f"{out}: {len(tasks)} seeded run(s) of {settings.ns_per_run:g} ns to do")
            futures = [client.submit(_run_task, t, key=f"seeded-{msha[:10]}-{t['state']}-{t['index']}", pure=False,
                                     retries=retries) for t in tasks]
            for n, fut in enumerate(_distributed().as_completed(futures), 1):
                r = fut.result()
                if log:
                    log(f"  run {n}/{len(tasks)}: {r['state']} #{r['index']}: {r['ns']:g} ns at {r['ns_per_day']:.0f} ns/day")
        finally:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler is None:
                cluster.close()
    total = sum(json.loads((Path(f) / "result.json").read_text())["ns"] for fs in folders.values() for f in fs)
    return {"runs": folders, "ns": total, "ran": len(tasks)}
