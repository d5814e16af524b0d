"""Cost of rates by infrequent metadynamics: Dask throughput and overhead, and what a 30 % rate costs.

Measured:

- ``dask_overhead``: M empty tasks through a ``LocalCluster`` of 1 worker (the way
  :func:`gmvae_cv.workflows.rates.run_rates` submits them: one ``client.submit`` per run, gathered
  with ``as_completed``) against a plain loop; seconds per task.
- ``throughput``: T fixed-work tasks (overdamped Langevin on the four-well, ``--task-steps``
  steps: the same CPU work each, unlike escape runs) with 1 and 2 local workers; tasks/s and the
  efficiency per worker ``(rate_2 / 2) / rate_1``; the plain loop as reference. On a machine shared
  with other jobs the efficiency reflects the cores that were free: the load average is recorded.
- ``rate_cost`` (with ``--runs DIR [DIR ...]``, rates folders of ``gmvae-cv rates``): per folder and
  direction, the mean biased ns and wall seconds per escape run, the number of runs a 95 %
  interval of +-30 % on tau needs (exact chi-squared), and the biased ns and walltime that costs.

Usage::

    python benchmarks/rates.py [--tasks 8] [--task-steps 20000] [--runs DIR ...] [--out benchmarks/rates.json]
    python benchmarks/rates.py --only-cost --runs DIR ...   # add the cost of finished rates folders
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _empty(i: int) -> int:
    return i


def _work(args) -> float:
    from gmvae_cv.systems import FourWell, overdamped_langevin

    seed, n_steps = args
    fw = FourWell()
    t0 = time.perf_counter()
    overdamped_langevin(fw.gradient, fw.minima[:1].copy(), n_steps, fw.dt, fw.kT, stride=1000, seed=seed)
    return time.perf_counter() - t0


def _through_dask(fn, items, workers: int) -> float:
    from dask.distributed import Client, LocalCluster, as_completed

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.submit(_empty, -1, pure=False).result()  # workers up
        t0 = time.perf_counter()
        futs = [client.submit(fn, x, pure=False) for x in items]
        for f in as_completed(futs):
            f.result()
        return time.perf_counter() - t0


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--empty-tasks", type=int, default=200)
    p.add_argument("--task-steps", type=int, default=20000)
    p.add_argument("--runs", nargs="*", default=[], help="rates folders (gmvae-cv rates --out) to cost")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "rates.json"))
    p.add_argument("--only-cost", action="store_true", help="add rate_cost of --runs to an existing --out, measure nothing else")
    args = p.parse_args(argv)
    import dask

    if args.only_cost:
        res = json.loads(Path(args.out).read_text())
        res["rate_cost"] = rate_cost(args.runs)
        res["rate_cost_command"] = " ".join(["python", "benchmarks/rates.py", *(argv if argv is not None else sys.argv[1:])])
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res["rate_cost"], indent=1))
        return 0

    res = {"command": " ".join(["python", "benchmarks/rates.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_start": os.getloadavg()},
           "dask_version": dask.__version__}
    m = args.empty_tasks
    t0 = time.perf_counter()
    for i in range(m):
        _empty(i)
    loop = time.perf_counter() - t0
    dsk = _through_dask(_empty, list(range(m)), 1)
    res["dask_overhead"] = {"tasks": m, "plain_loop_s": loop, "dask_s": dsk, "overhead_s_per_task": (dsk - loop) / m}
    items = [(i, args.task_steps) for i in range(args.tasks)]
    t0 = time.perf_counter()
    per = [_work(x) for x in items]
    loop = time.perf_counter() - t0
    one = _through_dask(_work, items, 1)
    two = _through_dask(_work, items, 2)
    res["throughput"] = {
        "tasks": args.tasks, "task_steps": args.task_steps, "task_s_plain_loop": [float(np.mean(per)), float(np.min(per)), float(np.max(per))],
        "plain_loop_tasks_per_s": args.tasks / loop, "workers_1_tasks_per_s": args.tasks / one,
        "workers_2_tasks_per_s": args.tasks / two, "efficiency_per_worker_2": (args.tasks / two) / 2 / (args.tasks / one),
        "overhead_1_worker_vs_loop": one / loop - 1,
    }
    if args.runs:
        res["rate_cost"] = rate_cost(args.runs)
    res["machine"]["load_average_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
