"""One infrequent-metadynamics run, in a Dask worker: biased until its first frame in the target state.

:func:`run_one` writes the run into a temporary folder and renames it into place when it has
finished, so a run folder exists whole or not at all.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit
import torch

from ..._core.files import atomic_write_text, run_in_folder
from .settings import KB, RUN_FORMAT, TORSION_CVS, torsion_cv
from .states import AlanineStates
from ...deploy import load_cv
from ...metad import WellTemperedMetadynamics
from ...systems import AlanineDipeptide
from ...systems import DoubleWell, toy_infrequent_metadynamics

__all__ = ["run_one", "run_seed"]


def run_seed(seed: int, direction: str, pace: int, index: int) -> int:
    """The seed of run ``index`` of ``direction`` at ``pace``, derived from ``seed`` (a rerun repeats the run)."""
    h = hashlib.sha256(f"{seed}/{direction}/{pace}/{index}".encode()).digest()
    return int.from_bytes(h[:4], "little") % 2_000_000_000


def _alanine_simulation(task: dict):
    """The biased OpenMM simulation of an alanine ``task``, at its start positions with seeded velocities.

    Returns ``(sim, meta, cv, states)``: the ``Simulation``, its
    :class:`~gmvae_cv.metad.WellTemperedMetadynamics`, the biased CV and the state labeller.
    """
    s = task["settings"]
    exp = task["exp"]
    cv = torsion_cv(exp) if exp in TORSION_CVS else load_cv(exp)
    ala = AlanineDipeptide()
    states = AlanineStates(task["origin"], task["target"], None if exp in TORSION_CVS else exp)
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
    return sim, meta, cv, states


def _run_alanine(task: dict, tmp: Path) -> dict:
    """Run an alanine ``task`` chunk by chunk until a frame lies in the target or ``max_ps``; write ``tmp/COLVAR``.

    The rescaled time sums, chunk by chunk, the chunk's length times the trapezoid mean of
    :math:`e^{V/kT}` between the bias at its start and at its end (ps).
    """
    torch.set_num_threads(1)
    s = task["settings"]
    sim, meta, cv, states = _alanine_simulation(task)
    kT = KB * s["temperature"]
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

    Runs in a Dask worker, through :func:`~gmvae_cv._core.files.run_in_folder`: the run is written
    into a temporary sibling folder and renamed to ``task['folder']`` when done; if that folder
    appeared meanwhile (another attempt finished first), this attempt's copy is removed and the
    existing result returned.
    """
    def work(tmp: Path) -> dict:
        t0 = time.perf_counter()
        res = _run_alanine(task, tmp) if task["system"] == "alanine-dipeptide" else _run_double_well(task, tmp)
        res.update({"format": RUN_FORMAT, "direction": task["direction"], "pace": task["pace"], "index": task["index"],
                    "seed": task["seed"], "wall_s": time.perf_counter() - t0, "pid": os.getpid(),
                    "manifest_sha256": task["manifest_sha256"]})
        return res

    return run_in_folder(task["folder"], work)
