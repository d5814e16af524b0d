"""Cost of rates by infrequent metadynamics: Dask overhead and throughput, and what a 30 % rate costs.

Everything goes through the dispatch code of ``gmvae-cv rates``
(:mod:`gmvae_cv.workflows.rates.dispatch`): ``connect`` (a ``LocalCluster`` of single-threaded
worker processes), ``_tasks`` (one task dict per run of a ``DIR``) and ``_gather`` (one
``client.submit(run_one, ...)`` per run, gathered with ``as_completed``); the plain loop calls
``run_one`` on the same task dicts in this process. The runs are ``double-well`` runs (no OpenMM).

Measured, ``--repeats`` times (interleaved: loop, 1 worker, 2 workers in each round):

- ``dask_overhead``: ``--tiny-tasks`` runs of 10 steps each (about a millisecond of work plus the
  run folder's files) through ``_gather`` on 1 worker against the plain loop: milliseconds of
  Dask per task; and the same number of no-op functions submitted the same way (Dask alone).
- ``throughput``: ``--tasks`` runs of fixed work (a 40 kT barrier that no run crosses in
  ``--task-steps`` steps, a hill every 1000 steps: every run is ``--task-steps`` steps of real
  well-tempered metadynamics) with 1 and 2 workers and the plain loop: tasks/s while the tasks
  run (``gather``), the cluster's start-up and close separately, and the efficiency per worker
  ``rate_2 / (2 rate_1)``. On a machine shared with other jobs the efficiency reflects the cores
  that were free (a lower bound): the load average is recorded before and after.
- ``rate_cost`` (with ``--runs DIR [DIR ...]``, rates folders of ``gmvae-cv rates``): per folder and
  direction, the mean biased ns and wall seconds per escape run, the number of runs a 95 %
  interval of +-30 % on tau needs (exact chi-squared), and the biased ns and walltime that costs.
  Without ``--runs`` an earlier ``rate_cost`` in ``--out`` is kept, with the command that made it.

Usage::

    python benchmarks/rates.py [--tasks 8] [--task-steps 110000] [--tiny-tasks 200] [--repeats 3] [--out benchmarks/rates.json]
    python benchmarks/rates.py --only-cost --runs DIR ...   # add the cost of finished rates folders
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DT = 2e-3  # reduced time step of the double-well runs


def _noop(i: int) -> int:
    return i


def _lscpu() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)", "Hypervisor vendor")
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _load() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def _stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}


def _run_tasks(out: Path, n: int, steps: int, seed: int = 0):
    """The task dicts of ``n`` double-well runs of ``steps`` steps in a new rates ``DIR`` ``out``, and the manifest's sha256.

    40 kT barrier, a hill of 0.1 kT every 1000 steps (bias factor 10): at most ``steps / 1000 * 0.1`` kT of
    bias, so no run crosses and each does exactly ``steps`` steps.
    """
    import hashlib

    from gmvae_cv.workflows.rates import RateSettings
    from gmvae_cv.workflows.rates import dispatch

    settings = RateSettings(paces=(1000,), height=0.1, bias_factor=10.0, timestep=DT, max_ps=steps * DT,
                            barrier=40.0).check()
    sigma = dispatch._sigma_for("double-well", None, settings)
    manifest = dispatch._manifest("double-well", None, "left", "right", settings, sigma, False, seed)
    msha = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    tasks = dispatch._tasks(out, "double-well", None, [("left", "right")], n, settings, sigma, seed, msha)
    assert len(tasks) == n
    return tasks, msha


def _results(out: Path) -> list:
    res = [json.loads(f.read_text()) for f in sorted(out.glob("runs/*/pace*/run*/result.json"))]
    return res


def _plain_loop(tasks: list, out: Path) -> dict:
    from gmvae_cv.workflows.rates.one_run import run_one

    t0 = time.perf_counter()
    for t in tasks:
        run_one(t)
    wall = time.perf_counter() - t0
    res = _results(out)
    assert len(res) == len(tasks)
    return {"run_s": wall, "task_wall_s": [r["wall_s"] for r in res], "escaped": sum(r["escaped"] for r in res)}


def _through_dask(tasks: list, msha: str, out: Path, workers: int, noop: int = 0) -> dict:
    """``tasks`` through ``connect`` + ``_gather`` on ``workers`` local workers; seconds of each phase."""
    from gmvae_cv.workflows.rates import dispatch

    t0 = time.perf_counter()
    client = dispatch.connect(None, workers)
    t1 = time.perf_counter()
    try:
        # what the first task on each worker pays once: importing the task's module (torch, OpenMM)
        client.run(__import__, "gmvae_cv.workflows.rates.one_run")
        t2 = time.perf_counter()
        dispatch._gather(client, tasks, msha, 2, None)
        t3 = time.perf_counter()
        noop_s = None
        if noop:
            as_completed = dispatch._distributed().as_completed
            t4 = time.perf_counter()
            futs = [client.submit(_noop, i, key=f"noop-{i}", pure=False, retries=2) for i in range(noop)]
            for f in as_completed(futs):
                f.result()
            noop_s = time.perf_counter() - t4
    finally:
        t5 = time.perf_counter()
        cluster = client.cluster
        client.close()
        cluster.close()
        close_s = time.perf_counter() - t5
    res = _results(out)
    assert len(res) == len(tasks), (len(res), len(tasks))
    assert len({r["pid"] for r in res}) <= workers
    return {"connect_s": t1 - t0, "import_s": t2 - t1, "run_s": t3 - t2, "close_s": close_s, "noop_s": noop_s,
            "workers_used": len({r["pid"] for r in res}), "task_wall_s": [r["wall_s"] for r in res],
            "escaped": sum(r["escaped"] for r in res)}


def runs_for_error(rel: float = 0.30, confidence: float = 0.95) -> int:
    """Smallest n whose exact chi-squared interval on an exponential mean lies within +-rel of it."""
    from scipy.stats import chi2

    a = 1 - confidence
    for n in range(2, 10000):
        lo = 2 * n / chi2.ppf(1 - a / 2, 2 * n)
        hi = 2 * n / chi2.ppf(a / 2, 2 * n)
        if hi - 1 <= rel and 1 - lo <= rel:
            return n
    raise RuntimeError("no n found")


def rate_cost(dirs) -> list:
    n_need = runs_for_error()
    out = []
    for d in dirs:
        d = Path(d)
        manifest = json.loads((d / "rates.json").read_text())
        by_dir: dict = {}
        for f in sorted(d.glob("runs/*/pace*/run*/result.json")):
            r = json.loads(f.read_text())
            by_dir.setdefault((r["direction"], r["pace"]), []).append(r)
        for (direction, pace), runs in sorted(by_dir.items()):
            esc = [r for r in runs if r["escaped"]]
            ns = np.array([r["biased_time_ps"] for r in esc]) / 1000
            wall = np.array([r["wall_s"] for r in runs])
            out.append({
                "folder": str(d), "cv": manifest["cv"].get("kind"), "direction": direction, "pace": pace,
                "runs": len(runs), "escaped": len(esc),
                "biased_ns_per_run": [float(ns.mean()), float(ns.min()), float(ns.max())] if len(ns) else None,
                "wall_s_per_run": [float(wall.mean()), float(wall.min()), float(wall.max())],
                "ns_per_day": float(ns.sum() / (wall[[r["escaped"] for r in runs]].sum() / 86400)) if len(ns) else None,
                "runs_for_30pct": n_need,
                "biased_ns_for_30pct": float(n_need * ns.mean()) if len(ns) else None,
                "wall_h_for_30pct_one_worker": float(n_need * wall.mean() / 3600),
            })
    return out


def _round(args, base: Path, r: int) -> dict:
    """One round: the tiny tasks (loop, 1 worker) and the fixed-work tasks (loop, 1, 2 workers)."""
    out = {}
    tiny_loop_dir, tiny_dask_dir = base / f"tiny-loop-{r}", base / f"tiny-dask-{r}"
    tasks, _ = _run_tasks(tiny_loop_dir, args.tiny_tasks, 10)
    out["tiny_loop"] = _plain_loop(tasks, tiny_loop_dir)
    tasks, msha = _run_tasks(tiny_dask_dir, args.tiny_tasks, 10)
    out["tiny_dask_1"] = _through_dask(tasks, msha, tiny_dask_dir, 1, noop=args.tiny_tasks)
    for name, workers in (("loop", 0), ("dask_1", 1), ("dask_2", 2)):
        d = base / f"{name}-{r}"
        tasks, msha = _run_tasks(d, args.tasks, args.task_steps)
        load0 = _load()
        out[name] = _plain_loop(tasks, d) if workers == 0 else _through_dask(tasks, msha, d, workers)
        out[name]["load_average_before"], out[name]["load_average_after"] = load0, _load()
        print(f"round {r} {name}: {out[name]['run_s']:.2f} s for {args.tasks} tasks, load {load0} -> {_load()}", flush=True)
    return out


def _summarise(args, rounds: list) -> dict:
    n, m = args.tasks, args.tiny_tasks
    over = [(x["tiny_dask_1"]["run_s"] - x["tiny_loop"]["run_s"]) / m * 1e3 for x in rounds]
    dask_overhead = {
        "tiny_tasks": m, "tiny_task_steps": 10,
        "plain_loop_ms_per_task": _stats([x["tiny_loop"]["run_s"] / m * 1e3 for x in rounds]),
        "dask_1_worker_ms_per_task": _stats([x["tiny_dask_1"]["run_s"] / m * 1e3 for x in rounds]),
        "overhead_ms_per_task": _stats(over),
        "noop_through_dask_ms_per_task": _stats([x["tiny_dask_1"]["noop_s"] / m * 1e3 for x in rounds]),
        "note": "overhead = (1-worker _gather - plain loop of run_one) / tasks, once the worker has imported the task "
                "module; cluster start-up, that import and close are fixed costs per command, in throughput",
    }
    rate = {k: [n / x[k]["run_s"] for x in rounds] for k in ("loop", "dask_1", "dask_2")}
    thr = {
        "tasks": n, "task_steps": args.task_steps, "escaped": sum(x[k]["escaped"] for x in rounds for k in rate),
        "task_wall_s_plain_loop": _stats([w for x in rounds for w in x["loop"]["task_wall_s"]]),
        "task_wall_s_1_worker": _stats([w for x in rounds for w in x["dask_1"]["task_wall_s"]]),
        "task_wall_s_2_workers": _stats([w for x in rounds for w in x["dask_2"]["task_wall_s"]]),
        "plain_loop_tasks_per_s": _stats(rate["loop"]),
        "workers_1_tasks_per_s": _stats(rate["dask_1"]),
        "workers_2_tasks_per_s": _stats(rate["dask_2"]),
        "efficiency_per_worker_2": _stats([b / (2 * a) for a, b in zip(rate["dask_1"], rate["dask_2"])]),
        "workers_1_vs_plain_loop": _stats([a / b for a, b in zip(rate["dask_1"], rate["loop"])]),
        "cluster_start_s": {f"workers_{w}": _stats([x[f"dask_{w}"]["connect_s"] for x in rounds]) for w in (1, 2)},
        "worker_import_s": {f"workers_{w}": _stats([x[f"dask_{w}"]["import_s"] for x in rounds]) for w in (1, 2)},
        "cluster_close_s": {f"workers_{w}": _stats([x[f"dask_{w}"]["close_s"] for x in rounds]) for w in (1, 2)},
        "workers_used": {f"workers_{w}": [x[f"dask_{w}"]["workers_used"] for x in rounds] for w in (1, 2)},
        "load_average": {k: [[x[k]["load_average_before"], x[k]["load_average_after"]] for x in rounds] for k in rate},
        "note": "tasks/s while the tasks run (after start-up and the workers' first import); efficiency = "
                "rate(2 workers) / (2 rate(1 worker)), per round, then median; measured with other jobs on the "
                "machine it is a lower bound",
    }
    return {"dask_overhead": dask_overhead, "throughput": thr}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=8, help="fixed-work runs per throughput measurement")
    p.add_argument("--task-steps", type=int, default=110000, help="steps of each fixed-work run (about 5 s)")
    p.add_argument("--tiny-tasks", type=int, default=200, help="10-step runs for the overhead per task")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", nargs="*", default=[], help="rates folders (gmvae-cv rates --out) to cost")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "rates.json"))
    p.add_argument("--only-cost", action="store_true", help="add rate_cost of --runs to an existing --out, measure nothing else")
    args = p.parse_args(argv)
    command = " ".join(["python", "benchmarks/rates.py", *(argv if argv is not None else sys.argv[1:])])
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if args.only_cost:
        old["rate_cost"] = rate_cost(args.runs)
        old["rate_cost_command"] = command
        _write(Path(args.out), old)
        print(json.dumps(old["rate_cost"], indent=1))
        return 0

    import dask
    import distributed

    from gmvae_cv._core.versions import machine_info

    res = {"command": command, "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENMM_CPU_THREADS")},
           "machine": {**machine_info(), "lscpu": _lscpu(), "load_average_start": _load()},
           "dask_version": dask.__version__, "distributed_version": distributed.__version__,
           "python": sys.version.split()[0]}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rates-bench-") as tmp:
        rounds = [_round(args, Path(tmp), r) for r in range(args.repeats)]
    res.update(_summarise(args, rounds))
    res["machine"]["load_average_end"] = _load()
    res["wall_s"] = time.perf_counter() - t0
    res["rounds"] = rounds
    if args.runs:
        res["rate_cost"], res["rate_cost_command"] = rate_cost(args.runs), command
    elif "rate_cost" in old:  # measured earlier from rates folders: kept with the command that made it
        res["rate_cost"], res["rate_cost_command"] = old["rate_cost"], old.get("rate_cost_command", old.get("command"))
    _write(Path(args.out), res)
    print(json.dumps({k: res[k] for k in ("dask_overhead", "throughput")}, indent=1))
    return 0


def _write(path: Path, res: dict) -> None:
    from gmvae_cv._core.files import atomic_write_json

    atomic_write_json(path, res)


if __name__ == "__main__":
    sys.exit(main())
