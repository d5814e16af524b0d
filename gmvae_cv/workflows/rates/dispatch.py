"""The runs of a rates ``DIR`` on Dask: the manifest, the missing runs as tasks, the client.

:func:`run_rates` refuses a ``DIR`` of another system, CV, states or parameters (``rates.json``),
submits one task per missing run and gathers them, then summarises.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..._core.checks import check_int
from ..._core.errors import GMVAEInputError
from ..._core.files import atomic_write_json
from ..._core.versions import versions
from .one_run import run_one, run_seed
from .settings import RATES_FORMAT, SYSTEMS, TORSION_CVS, InfrequentMetadWarning, RateSettings
from .states import alanine_start, check_states
from .summary import summarize_rates
from ...deploy import load_cv

__all__ = ["run_rates", "connect"]


def _distributed() -> Any:
    """``dask.distributed``, imported when runs are dispatched (about a second of start-up otherwise paid by
    every import of the workflows)."""
    import dask.distributed

    return dask.distributed


def connect(scheduler: Optional[str] = None, workers: int = 1, *, connect_timeout: float = 5.0):
    """A ``dask.distributed.Client``: to ``scheduler`` if given, else to a new ``LocalCluster`` of
    ``workers`` single-threaded processes. An unreachable scheduler raises :class:`GMVAEInputError`
    within about ``connect_timeout`` seconds."""
    distributed = _distributed()
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
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
        if exp in TORSION_CVS:
            cv = {"kind": exp}
        else:
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
    if exp in TORSION_CVS:
        return [0.35] * len(TORSION_CVS[exp])
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
    exp : path or 'phi-psi', 'phi', 'psi' or None
        The GMVAE export (EXP directory, ``model_openmm.pt`` inside) whose CV is biased;
        ``'phi-psi'`` biases the backbone torsions, ``'phi'`` or ``'psi'`` one of them
        (:data:`~gmvae_cv.workflows.rates.settings.TORSION_CVS`); ``None`` for ``system='double-well'``.
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
    exp, n_runs, settings = _check_inputs(exp, system, origin, target, n_runs, settings)
    out = Path(out)
    sigma = _sigma_for(system, exp, settings)
    manifest = _manifest(system, exp, origin, target, settings, sigma, both_directions, seed)
    _check_dir(out, manifest)
    msha = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    mpath = out / "rates.json"
    directions = [(origin, target)] + ([(target, origin)] if both_directions else [])
    if mpath.is_file() and not _tasks(out, system, exp, directions, n_runs, settings, sigma, seed, msha, remove=False):
        if log:
            log(f"{out}: all {len(directions) * len(settings.paces) * n_runs} run(s) done")
        return summarize_rates(out, reweighting_df=reweighting_df)  # nothing to run: no cluster to start
    client = connect(scheduler, workers, connect_timeout=connect_timeout)  # before anything is written
    try:
        _remove_stale(out)
        atomic_write_json(mpath, {**manifest, "versions": versions()} if not mpath.is_file() else json.loads(mpath.read_text()))
        tasks = _tasks(out, system, exp, directions, n_runs, settings, sigma, seed, msha)
        if log:
            log(f"{out}: {len(tasks)} run(s) to do on {len(client.scheduler_info().get('workers', {}))} Dask worker(s)")
        _gather(client, tasks, msha, retries, log)
        _remove_stale(out)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and scheduler is None:
            cluster.close()
    return summarize_rates(out, reweighting_df=reweighting_df)


def _check_inputs(exp: Optional[str | os.PathLike], system: str, origin: str, target: str, n_runs: int,
                  settings: Optional[RateSettings]) -> tuple[Optional[str], int, RateSettings]:
    """Refuse an unknown system, a missing export, bad states, run count or settings; warn of short paces.

    Returns ``exp`` as a string (None for the double well), ``n_runs`` and the checked settings.
    """
    if system not in SYSTEMS:
        raise GMVAEInputError(f"'--system' is {system!r}, expected one of {', '.join(SYSTEMS)}")
    n_runs = check_int(n_runs, "runs", minimum=1)
    settings = (settings or RateSettings()).check()
    if system == "alanine-dipeptide":
        if exp is None:
            raise GMVAEInputError(f"'exp' is missing: give an EXP directory (gmvae-cv export) or one of {', '.join(TORSION_CVS)}")
        exp = str(exp)
        if exp not in TORSION_CVS and not Path(exp).exists():
            raise GMVAEInputError(f"{exp}: not found (expected an EXP directory of gmvae-cv export, or one of "
                                  f"{', '.join(TORSION_CVS)})")
    check_states(system, origin, target, None if exp is None or exp in TORSION_CVS else exp)
    if system == "alanine-dipeptide":
        short = [p for p in settings.paces if p * settings.timestep < 1.0]
        if short:
            warnings.warn(
                f"pace(s) {short} steps deposit a hill more often than every 1 ps: infrequent metadynamics needs the "
                f"transition state free of bias; check the KS p-value and that tau does not change with the pace",
                InfrequentMetadWarning, stacklevel=3)
    return exp, n_runs, settings


def _check_dir(out: Path, manifest: dict) -> None:
    """Refuse an ``out`` holding runs of another system, CV, states or parameters, or other files."""
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


def _tasks(out: Path, system: str, exp: Optional[str], directions: list, n_runs: int, settings: RateSettings,
           sigma: list, seed: int, msha: str, *, remove: bool = True) -> list[dict]:
    """One task (a dict for :func:`run_one`) per run of ``out`` not yet finished.

    A run stopped unescaped at a shorter ``max_ps`` than the settings' is run again (its folder
    removed here if ``remove``).
    The folders and the export are absolute paths: the workers of a cluster started elsewhere
    (``--scheduler``) have their own working directory.
    """
    out = Path(out).resolve()
    if exp is not None and exp not in TORSION_CVS:
        exp = str(Path(exp).resolve())
    tasks = []
    for a, b in directions:
        start = None
        if system == "alanine-dipeptide":
            start = np.asarray(alanine_start(a, None if exp in TORSION_CVS else exp, seed)).tolist()
        for pace in settings.paces:
            chunk = min(settings.chunk, pace) if system == "alanine-dipeptide" else settings.chunk
            for i in range(n_runs):
                folder = out / "runs" / f"{a}-{b}" / f"pace{pace}" / f"run{i:03d}"
                if (folder / "result.json").is_file():
                    r = json.loads((folder / "result.json").read_text())
                    if r.get("escaped") or r.get("biased_time_ps", 0.0) >= settings.max_ps - 1e-9:
                        continue
                    if remove:
                        shutil.rmtree(folder)  # stopped unescaped at a shorter max_ps: run it again, longer
                tasks.append({"system": system, "exp": exp, "origin": a, "target": b, "direction": f"{a}-{b}",
                              "pace": int(pace), "index": i, "seed": run_seed(seed, f"{a}-{b}", pace, i),
                              "folder": str(folder), "settings": asdict(settings), "sigma": sigma,
                              "chunk": int(chunk), "start": start, "manifest_sha256": msha})
    return tasks


def _gather(client: Any, tasks: list[dict], msha: str, retries: int, log: Optional[Callable[[str], None]]) -> None:
    """Submit one :func:`run_one` per task to ``client`` and wait for all, logging each as it finishes."""
    as_completed = _distributed().as_completed
    futures = [client.submit(run_one, t, key=f"rate-run-{msha[:10]}-{t['direction']}-{t['pace']}-{t['index']}",
                             pure=False, retries=retries) for t in tasks]
    for n, fut in enumerate(as_completed(futures), 1):
        res = fut.result()
        if log:
            log(f"  run {n}/{len(tasks)}: {res['direction']} pace {res['pace']} #{res['index']}: "
                f"t* = {res['rescaled_time_ps']:.4g} ps (biased {res['biased_time_ps']:.4g} ps, {res['wall_s']:.0f} s)")


def _remove_stale(out: Path) -> None:
    """Remove the temporary folders of runs killed before they finished (none is running: this
    command owns ``out``; two commands on one ``out`` at once are not supported)."""
    for tmp in (out / "runs").glob("*/pace*/.run*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
