"""Rates of alanine dipeptide's C7eq <-> C7ax flip by infrequent metadynamics, on three CVs.

The campaign (``--run``), each a ``gmvae-cv rates`` command on one local Dask worker, hills of
1 kJ/mol with bias factor 10, paces of 500 and 2500 steps (1 and 5 ps, 2 fs steps), 300 K:

- ``phi-psi``: the backbone torsions (the CV an expert picks), 20 runs per direction and pace;
- ``gmvae``: the CV ``explore`` kept in the default demo (``--gmvae EXP``: its round's export),
  20 runs per direction and pace, and a third pace of 5000 steps (10 ps);
- ``psi``: psi alone, the textbook poor CV (it leaves the slow phi rotation unbiased): 20 runs
  per pace C7ax -> C7eq (where runs escape within 4 ns), 6 runs C7eq -> C7ax at pace 500 stopped
  at 2 ns (lower bounds).

Without ``--run`` the rates folders under ``--work`` (from an earlier ``--run``, or the same
commands run by hand) are collected. Per folder: the summary of :func:`gmvae_cv.summarize_rates`
(tau per direction and pace with its 95 % interval, KS p-value against an exponential,
median/mean, the pace test, dF from the two directions against the reweighting reference) and
the walltime and biased ns of its runs.

Usage::

    python benchmarks/rates_alanine.py --work DIR --gmvae EXP --run   # about 30 min on one core
    python benchmarks/rates_alanine.py --work DIR                       # collect only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REFERENCE_DF = (8.29, 8.09, 8.49)
"""F(C7ax) - F(C7eq), kJ/mol: 26 ns of well-tempered metadynamics on phi/psi (8.29 +- 0.10,
``benchmarks/explore_keep.json``), as [value, -2 sigma, +2 sigma]."""


def commands(work: Path, gmvae: str | None) -> dict:
    """The ``gmvae-cv rates`` command of each campaign folder (name -> argv)."""
    common = ["--workers", "1"]
    ref = ["--reweighting-df", *map(str, REFERENCE_DF)]
    out = {
        "phi-psi": ["phi-psi", "--runs", "20", "--max-ns", "20", "--pace", "500", "2500", *ref],
        "psi_ax_eq": ["psi", "--from", "C7ax", "--to", "C7eq", "--one-way", "--runs", "20", "--max-ns", "4",
                      "--pace", "500", "2500"],
        "psi_eq_ax": ["psi", "--from", "C7eq", "--to", "C7ax", "--one-way", "--runs", "6", "--max-ns", "2", "--pace", "500"],
    }
    if gmvae:
        out["gmvae"] = [gmvae, "--runs", "20", "--max-ns", "20", "--pace", "500", "2500", "5000", *ref]
    return {k: ["gmvae-cv", "rates", *v, "--out", str(work / f"rates_{k}"), *common] for k, v in out.items()}


def _folder_figures(d: Path) -> dict:
    summary = json.loads((d / "summary.json").read_text())
    runs = [json.loads(f.read_text()) for f in sorted(d.glob("runs/*/pace*/run*/result.json"))]
    return {
        "summary": summary,
        "runs": len(runs),
        "escaped": sum(r["escaped"] for r in runs),
        "biased_ns": sum(r["biased_time_ps"] for r in runs) / 1000,
        "wall_s_runs": sum(r["wall_s"] for r in runs),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True, help="folder of the rates folders")
    p.add_argument("--gmvae", default=None, help="EXP of the GMVAE CV (the CV explore kept)")
    p.add_argument("--run", action="store_true", help="run the missing runs first (each command resumes)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "rates_alanine.json")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "rates" / "tau_vs_pace.png")
    args = p.parse_args(argv)
    from gmvae_cv._core.versions import machine_info

    cmds = commands(args.work, args.gmvae)
    walls = {}
    load_start = os.getloadavg()
    if args.run:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENMM_CPU_THREADS": "1"}
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env)
            walls[name] = time.perf_counter() - t0
    result = {
        "command": " ".join(["python", "benchmarks/rates_alanine.py", *(argv if argv is not None else sys.argv[1:])]),
        "campaign_commands": {k: " ".join(v) for k, v in cmds.items()},
        "machine": {**machine_info(), "load_average_start": load_start, "load_average_end": os.getloadavg()},
        "reference_delta_f_kjmol": list(REFERENCE_DF),
        "command_wall_s": walls or None,
        "folders": {},
    }
    for name in cmds:
        d = args.work / f"rates_{name}"
        if (d / "summary.json").is_file():
            result["folders"][name] = _folder_figures(d)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if result["folders"]:
        plot(result, args.figure)
    print(f"wrote {args.out}, {args.figure}: {', '.join(result['folders'])}")
    return 0


def plot(result: dict, path: Path) -> None:
    """tau (95 % interval) against the pace, one panel per direction, one line per CV."""
    from gmvae_cv._core.figures import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    labels = {"phi-psi": "phi/psi", "gmvae": "GMVAE CV (kept by explore)", "psi_ax_eq": "psi alone",
              "psi_eq_ax": "psi alone"}
    for ax, direction in zip(axes, ("C7eq-C7ax", "C7ax-C7eq")):
        for name, f in result["folders"].items():
            d = f["summary"]["directions"].get(direction)
            if not d:
                continue
            ps = sorted((int(p), e) for p, e in d["paces"].items() if "tau_ns" in e)
            if not ps:
                continue
            x = [p * 0.002 for p, _ in ps]
            y = [e["tau_ns"] for _, e in ps]
            p_txt = f", pace test p = {d['pace_pvalue']:.2g}" if d.get("pace_pvalue") is not None else ""
            lost = sum(e["runs"] - e["escaped"] for _, e in ps)
            p_txt += f" ({lost} run(s) did not escape: tau too short)" if lost else ""
            ax.errorbar(x, [v[0] for v in y], yerr=[[v[0] - v[1] for v in y], [v[2] - v[0] for v in y]], marker="o",
                        capsize=3, label=f"{labels.get(name, name)}{p_txt}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("hill pace (ps)")
        ax.set_ylabel("tau (ns), 95 % interval")
        ax.set_title(f"{direction}: infrequent metadynamics, 300 K, vacuum")
        ax.legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
