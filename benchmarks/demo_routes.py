"""The demo's walltime with and without the native bias route, on one machine, JSON out.

"Before" is the demo as it ran before the native route existed: every biased run on the compiled
TorchForce route. It is made by hiding numba from the demo and its Dask workers (a ``numba``
package on ``PYTHONPATH`` whose import fails), so that ``route='auto'`` finds no native kernel and
takes the compiled route; each run's ``run.json`` records which route ran, and this script checks
that every biased run of the "before" demo was compiled and every one of the "after" demo native.
"After" is the demo as shipped. Each runs in a new output folder (nothing reused), one after the
other, with ``OMP_NUM_THREADS=1``; peak RSS is the largest of the demo's processes. Usage::

    python benchmarks/demo_routes.py --out benchmarks/demo_routes.json [--quick-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmvae_cv._core.versions import machine_info, versions  # noqa: E402

_BLOCKER = ('raise ImportError("numba hidden by benchmarks/demo_routes.py: the demo as it ran before the native bias '
            'route (every bias on the compiled TorchForce route)")\n')


def _routes(out: Path) -> dict:
    """``{run.json path: force route}`` of every biased run under ``out``."""
    return {str(p.relative_to(out)): json.loads(p.read_text())["force"]["route"] for p in sorted(out.rglob("run.json"))}


def run_demo(quick: bool, native: bool, work: Path) -> dict:
    """One ``gmvae-cv demo`` in a new folder under ``work``: walltime, stage times, routes."""
    name = ("quick" if quick else "full") + ("_native" if native else "_compiled")
    out = work / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not native:
        block = work / "numba_hidden" / "numba"
        block.mkdir(parents=True, exist_ok=True)
        (block / "__init__.py").write_text(_BLOCKER)
        env["PYTHONPATH"] = os.pathsep.join([str(block.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "gmvae_cv.cli", "demo", "--out", str(out)] + (["--quick"] if quick else [])
    print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] the demo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    routes = _routes(out)
    want = "native" if native else "compiled"
    wrong = {k: v for k, v in routes.items() if v != want}
    if not routes or wrong:
        raise SystemExit(f"[{name}] expected every biased run on the {want} route, found {wrong or 'no run.json'}")
    summary = json.loads((out / "summary.json").read_text())
    print(f"[{name}] {wall:.0f} s", flush=True)
    return {"wall_s": wall, "routes": sorted(set(routes.values())), "biased_runs_with_run_json": len(routes),
            "explore_walltime_s": summary.get("walltime_s_explore"),
            "explore_rounds_walltime_s": [q.get("walltime_s") for q in summary.get("rounds") or []],
            "rates_walltime_s": summary.get("walltime_s_rates"), "rates_cv_round": summary.get("rates_cv_round")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("demo_routes.json")))
    ap.add_argument("--quick-only", action="store_true", help="only `gmvae-cv demo --quick` (about 2 + 5 min)")
    ap.add_argument("--work", default=None, help="folder for the demo runs (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    res = {"benchmark": "demo_routes", "command": "python benchmarks/demo_routes.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": {**machine_info(), "load_average_start": os.getloadavg()}, "versions": versions("torch", "openmm"),
           "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for quick in ((True,) if args.quick_only else (True, False)):
            for native in (True, False):
                res["runs"][("quick" if quick else "full") + ("_native" if native else "_compiled")] = run_demo(quick, native, work)
                _write(res, Path(args.out))  # after every demo: a stopped benchmark keeps the finished ones
    print(json.dumps({k: v["wall_s"] for k, v in res["runs"].items()}, indent=1))
    return 0


def _write(res: dict, out: Path) -> None:
    res["machine"]["load_average_end"] = os.getloadavg()
    res["peak_rss_mb_any_process"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    runs = res["runs"]
    res["ratios_compiled_over_native_wall"] = {
        k: runs[f"{k}_compiled"]["wall_s"] / runs[f"{k}_native"]["wall_s"] for k in ("quick", "full")
        if f"{k}_native" in runs and f"{k}_compiled" in runs}
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp_out, out)


if __name__ == "__main__":
    sys.exit(main())
