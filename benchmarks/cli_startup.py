"""CPU time of ``gmvae-cv --help`` and ``gmvae-cv VERB --help`` (user + sys of the child process).

Each command runs ``REPEATS`` times in a fresh interpreter (``python -c`` calling the function the ``gmvae-cv``
script calls, with this checkout first on the path); the CPU time comes
from ``resource.getrusage(RUSAGE_CHILDREN)`` around each run, so other jobs on the machine slow the
wall clock but hardly the CPU time. With ``--compare PYTHONPATH`` the same is measured for another
checkout (e.g. the one before the command line became lazy).

Usage: ``python benchmarks/cli_startup.py [--repeats 5] [--out benchmarks/cli_startup.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what the `gmvae-cv` console script does (pyproject.toml: gmvae_cv.cli:main)
_RUN = "import sys; from gmvae_cv.cli import main; sys.exit(main())"


def cpu_seconds(argv: list[str], pythonpath: str) -> tuple[float, float]:
    """(user + sys CPU seconds, wall seconds) of one run of ``gmvae-cv ARGV`` (``gmvae_cv.cli.main``)."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd too: `python -c` puts the current folder first on sys.path
    subprocess.run([sys.executable, "-c", _RUN, *argv], env=env, cwd=pythonpath, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def measure(commands: list[list[str]], pythonpath: str, repeats: int) -> list[dict]:
    rows = []
    for argv in commands:
        runs = [cpu_seconds(argv, pythonpath) for _ in range(repeats)]
        cpu = [c for c, _ in runs]
        rows.append({
            "command": "gmvae-cv " + " ".join(argv),
            "cpu_seconds": cpu,
            "cpu_seconds_median": statistics.median(cpu),
            "wall_seconds_median": statistics.median(w for _, w in runs),
        })
        print(f"{rows[-1]['command']:<28} CPU {min(cpu):.2f}-{max(cpu):.2f} s (median {statistics.median(cpu):.2f} s)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compare", default=None, metavar="PYTHONPATH", help="another checkout to measure the same way")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "cli_startup.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from gmvae_cv._core.versions import machine_info

    commands = [["--help"], ["train", "--help"], ["bias", "--help"]]
    result = {
        "benchmark": "cli_startup",
        "command": "python benchmarks/cli_startup.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "load_1min": os.getloadavg()[0],
        "what": "user + sys CPU seconds of `gmvae-cv ARGS` (python -c calling gmvae_cv.cli.main) in a fresh interpreter, per repeat",
        "goal": "under 1 s of CPU (issue 11)",
        "rows": measure(commands, str(ROOT), args.repeats),
    }
    if args.compare:
        print(f"-- {args.compare}")
        result["compare"] = {"pythonpath": args.compare, "rows": measure(commands[:1], args.compare, args.repeats)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
