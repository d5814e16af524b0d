"""The run directory of a biased run: its files, its checkpoint, and what may continue in it.

Shared by :func:`~gmvae_cv.metad.run.run_metadynamics` and :func:`~gmvae_cv.metad.run.run_opes`:
the names of the per-walker outputs, the check of what a directory holds (a run with the same
parameters continues, anything else is refused unless overwritten), the checkpoint file (the
OpenMM state of every walker, the bias' arrays and the byte size of every output, written
atomically), the platform choice and the walkers' seeds.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import openmm

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_bytes
from .._core.platform import check_platform_request
from .._core.quiet import LOG_NAME
from ..features import FeatureSpec

__all__ = ["RUN_FORMAT", "CHECKPOINT_FORMAT", "CHECKPOINT", "TABLE", "file_names", "load_checkpoint_info",
           "prepare_directory", "choose_platform", "walker_seed", "extra_columns", "sha256_hex", "write_checkpoint",
           "read_checkpoint"]

RUN_FORMAT = "gmvae-cv/metadynamics-run"
CHECKPOINT_FORMAT = "gmvae-cv/metadynamics-checkpoint"
CHECKPOINT = "checkpoint.npz"
TABLE = ".bias_table.f64"
GRID_FILES = ("bias_grid.dat", "fes.dat")
DEPOSIT_FILES = ("HILLS", "KERNELS")
_PROBE_PLATFORMS = ("Reference", "CPU")


def file_names(n_walkers: int, w: int, deposits: str = "HILLS") -> dict:
    """Per-walker output names: ``colvar``, ``hills`` (the deposition file: ``HILLS`` or ``KERNELS``), ``traj``."""
    sfx = "" if n_walkers == 1 else f".{w}"
    return {"colvar": f"COLVAR{sfx}", "hills": f"{deposits}{sfx}", "traj": "traj.dcd" if n_walkers == 1 else f"traj.{w}.dcd"}


def sha256_hex(data: bytes) -> str:
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


def walker_seed(seed: int, w: int) -> int:
    return (seed * 7919 + w * 104729) % 2_147_483_646 + 1  # OpenMM reads 0 as "random"


def extra_columns(spec: Optional[FeatureSpec]):
    if spec is None:
        return None, [], []
    per = [(-math.pi, math.pi) if (f.kind == "torsion" and f.transform == "raw") else None for f in spec.features]

    def fn(pos: np.ndarray) -> list:
        return spec.compute(pos[None])[0].tolist()

    return fn, spec.names, per


def prepare_directory(out: Path, params: dict, walkers: int, overwrite: bool) -> Optional[dict]:
    """Check what ``out`` holds; return the checkpoint info to resume from, or None for a fresh run."""
    ours = {"run.json", CHECKPOINT, TABLE, LOG_NAME, *GRID_FILES}  # LOG_NAME: the CLI's log of the run
    for deposits in DEPOSIT_FILES:
        ours.update(file_names(1, 0, deposits).values())
        for w in range(max(walkers, 256)):
            ours.update(file_names(2, w, deposits).values())
    for q in out.iterdir():  # temporary files of atomic writes interrupted by a kill
        if q.name.endswith(".tmp") and any(q.name.startswith(f".{n}.") for n in ours):
            q.unlink()
    present = [q for q in out.iterdir() if q.name != TABLE]  # the table is rewritten at every start
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
    ckpt = out / CHECKPOINT
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


def probe_platforms(available) -> list[str]:
    """The platforms ``auto`` measures: Reference and CPU, and CUDA where OpenMM has it and the
    installed OpenMM-Torch is the CUDA build (the TorchForce cannot run there otherwise)."""
    names = [n for n in _PROBE_PLATFORMS if n in available]
    if "CUDA" in available:
        try:
            names.append(check_platform_request("CUDA", available))
        except GMVAEInputError:
            pass
    return names


def choose_platform(platform: Optional[str], system: Any, pos0: np.ndarray, temperature: float, friction: float,
                     timestep: float, meta: Any, cpu_threads: Optional[int]) -> tuple[str, dict]:
    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    if platform is not None and platform.lower() == "auto":
        platform = None
    if platform is not None:
        return check_platform_request(platform, available), {"chosen_by": "user"}
    probe = {}
    for name in probe_platforms(available):
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


def write_checkpoint(path: Path, info: dict, arrays: dict, sims: list) -> None:
    """Write ``info`` (JSON), the bias ``arrays`` and every walker's OpenMM state atomically to ``path``."""
    arrays = {"info": np.frombuffer(json.dumps(info).encode("utf-8"), dtype=np.uint8), **arrays}
    for w, sim in enumerate(sims):
        arrays[f"context_{w}"] = np.frombuffer(sim.context.createCheckpoint(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: Path, sims: list) -> dict:
    """Load every walker's OpenMM state from ``path`` into ``sims``; return the other arrays."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "info" and not k.startswith("context_")}
        for w, sim in enumerate(sims):
            key = f"context_{w}"
            if key not in z:
                raise GMVAEInputError(f"{path}: has no state for walker {w}")
            try:
                sim.context.loadCheckpoint(bytes(z[key]))
            except Exception as exc:  # OpenMM raises its own exception type for a foreign checkpoint
                raise GMVAEInputError(f"{path}: OpenMM cannot load the state of walker {w} into this system ({exc})") from None
            sim.currentStep = sim.context.getStepCount()
    return arrays
