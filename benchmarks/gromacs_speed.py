"""Speed of PLUMED-patched GROMACS on the solvated dipeptide: unbiased, METAD on phi/psi, METAD on
the exported GMVAE CV (PYTORCH_MODEL); ns/day side by side in one run, JSON out.

System: ``examples/gromacs_plumed/water`` (alanine dipeptide + 225 TIP3P waters, 697 atoms, PME
0.9 nm, h-bond constraints, 2 fs, Langevin 300 K: the system of ``benchmarks/bias_speed.py``'s
water part). Cases, each ``gmx mdrun -ntmpi 1 -ntomp N`` on the same ``run.tpr``:

a  unbiased (no ``-plumed``)
b  PLUMED well-tempered METAD on phi/psi (``TORSION``; HEIGHT 1.2 kJ/mol, SIGMA 0.35 rad,
   BIASFACTOR 10, PACE 500, grid 90 x 90 bins on [-pi, pi), OpenMM's 91 points: the settings of bias_speed.py's
   case b)
c  PLUMED well-tempered METAD on the exported GMVAE CV: ``plumed.dat`` of
   ``gmvae-cv plumed-input export/alanine_dipeptide --top water/conf.gro`` (25 distances,
   ``PYTORCH_MODEL`` for the CV and for the cluster probabilities, as a user runs it)

``ns_per_day`` is GROMACS' own ``Performance:`` line of ``md.log`` with ``-resethway`` (counters
reset half-way, so start-up and PLUMED/libtorch initialisation are excluded), median over
interleaved rounds (a, b, c, a, b, c, ...), with the min and max. The cost of PYTORCH_MODEL per
step is (c) - (b) in microseconds per step (both pay PLUMED's own overhead). With ``--openmm`` the
OpenMM routes of ``benchmarks/bias_speed.py`` (water part: unbiased, app.Metadynamics phi/psi, this
project's fused TorchForce METAD) are measured in the same run, with the same thread count.
Usage::

    source external/gromacs-plumed/env.sh
    python benchmarks/gromacs_speed.py --ntomp 1 --out benchmarks/gromacs_speed.json [--steps 5000] [--rounds 3] [--openmm]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gmvae_cv._core.files import atomic_write_json  # noqa: E402
from gmvae_cv.deploy.gromacs_run import check_gromacs_run, run_mdrun  # noqa: E402
from gmvae_cv.deploy.plumed_topology import write_plumed_for_topology  # noqa: E402
from gmvae_cv._core.versions import machine_info  # noqa: E402

WATER = ROOT / "examples" / "gromacs_plumed" / "water"
REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
PHI, PSI = (5, 7, 9, 15), (7, 9, 15, 17)  # 1-based (gmvae-cv 0-based (4, 6, 8, 14), (6, 8, 14, 16))

PHIPSI_DAT = """\
UNITS LENGTH=nm
phi: TORSION ATOMS={phi}
psi: TORSION ATOMS={psi}
metad: METAD ARG=phi,psi SIGMA=0.35,0.35 HEIGHT=1.2 PACE=500 BIASFACTOR=10 TEMP=300 GRID_MIN=-pi,-pi GRID_MAX=pi,pi GRID_BIN=90,90 FILE=HILLS
PRINT ARG=phi,psi,metad.bias STRIDE=500 FILE=COLVAR
""".format(phi=",".join(map(str, PHI)), psi=",".join(map(str, PSI)))


def _lscpu() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return {}
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    keep = ("Model name", "Architecture", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)", "L3 cache", "Flags")
    return {k: info[k] for k in keep if k in info}


def _gmx_version(gmx: str) -> dict:
    out = subprocess.run([gmx, "-version"], capture_output=True, text=True, timeout=60).stdout
    keys = ("GROMACS version", "Precision", "MPI library", "OpenMP support", "SIMD instructions", "FFT library", "C++ compiler")
    info = {}
    for line in out.splitlines():
        k = line.split(":", 1)[0].strip()
        if k in keys:
            info[k] = line.split(":", 1)[1].strip()
    return info


def _ns_per_day(log: Path) -> float:
    m = re.search(r"^Performance:\s+([\d.]+)\s+([\d.]+)", log.read_text(), re.M)
    if m is None:
        raise RuntimeError(f"{log}: no 'Performance:' line")
    return float(m.group(1))


def _setup(workdir: Path, steps: int) -> dict[str, Path]:
    gmx = os.environ["GMX"]
    base = workdir / "base"
    base.mkdir(parents=True)
    for f in ("conf.gro", "topol.top"):
        shutil.copy(WATER / f, base / f)
    mdp = WATER / "md.mdp"
    text = re.sub(r"^nsteps\s*=.*$", f"nsteps                   = {steps}", mdp.read_text(), flags=re.M)
    text = re.sub(r"^(ld-seed|gen-seed)\s*=.*$", r"\1 = 7", text, flags=re.M)
    text = re.sub(r"^nstxout-compressed\s*=.*$", "nstxout-compressed       = 5000", text, flags=re.M)
    (base / "md.mdp").write_text(text)
    subprocess.run([gmx, "-quiet", "grompp", "-f", "md.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "run.tpr"],
                   cwd=base, check=True, capture_output=True, text=True)
    dirs = {}
    for case in ("a_unbiased", "b_metad_phipsi", "c_metad_gmvae"):
        d = workdir / case
        d.mkdir()
        shutil.copy(base / "run.tpr", d / "run.tpr")
        dirs[case] = d
    (dirs["b_metad_phipsi"] / "plumed.dat").write_text(PHIPSI_DAT)
    write_plumed_for_topology(REF_EXPORT, WATER / "conf.gro", dirs["c_metad_gmvae"])
    check_gromacs_run(dirs["c_metad_gmvae"], "plumed.dat", gmx=gmx)
    return dirs


def _clean(d: Path) -> None:
    for p in d.iterdir():
        if p.name not in ("run.tpr", "plumed.dat", "model_plumed.ptc", "model_clusters.ptc", "plumed_opes.dat"):
            p.unlink()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("gromacs_speed.json")))
    ap.add_argument("--ntomp", type=int, default=1, help="OpenMP threads of mdrun (-ntomp; -ntmpi is 1)")
    ap.add_argument("--steps", type=int, default=5000, help="MD steps per mdrun (default 5000 = 10 ps)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--openmm", action="store_true", help="also the OpenMM routes of bias_speed.py on the same system")
    args = ap.parse_args(argv)
    if not os.environ.get("GMX"):
        print("error: GMX is not set (source external/gromacs-plumed/env.sh)", file=sys.stderr)
        return 2
    gmx = os.environ["GMX"]
    t0 = time.time()
    load0 = os.getloadavg()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = _setup(Path(tmp), args.steps)
        for r in range(args.rounds):
            for case, d in dirs.items():
                _clean(d)
                plumed = None if case.startswith("a_") else "plumed.dat"
                run_mdrun(d, "run.tpr", plumed, gmx=gmx, ntomp=args.ntomp, deffnm="md", extra=["-resethway", "-noconfout"])
                results.setdefault(case, []).append(_ns_per_day(d / "md.log"))
                print(f"round {r}: {case}: {results[case][-1]:.1f} ns/day", flush=True)
        openmm = None
        if args.openmm:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            import torch

            import bias_speed

            torch.set_num_threads(1)
            openmm = bias_speed.water(argparse.Namespace(quick=False, rounds=args.rounds, water_rounds=args.rounds,
                                                               cpu_threads=args.ntomp), Path(tmp))
    med = {k: float(np.median(v)) for k, v in results.items()}
    us = {k: 0.002 * 86400 / (v * 1000) * 1e6 for k, v in med.items()}  # 2 fs steps
    out = {
        "benchmark": "gromacs_speed",
        "system": "alanine dipeptide + 225 TIP3P waters (697 atoms), amber14 ff14SB/TIP3P via ParmEd, PME 0.9 nm, h-bonds, 2 fs, sd 300 K",
        "settings": {"steps_per_run": args.steps, "rounds": args.rounds, "ntmpi": 1, "ntomp": args.ntomp, "resethway": True},
        "machine": {**machine_info(), "cpus": os.cpu_count(), "lscpu": _lscpu(),
                    "load_average_start": list(load0), "load_average_end": list(os.getloadavg())},
        "gromacs": {"gmx": gmx, **_gmx_version(gmx)},
        "plumed_kernel": os.environ.get("PLUMED_KERNEL"),
        "ns_per_day": med,
        "ns_per_day_all_rounds": results,
        "ns_per_day_min_max": {k: [min(v), max(v)] for k, v in results.items()},
        "us_per_step": us,
        "ratio_vs_unbiased": {k: v / med["a_unbiased"] for k, v in med.items()},
        "pytorch_model_cost_us_per_step": us["c_metad_gmvae"] - us["b_metad_phipsi"],
        "openmm_same_system": openmm,
        "wall_s": time.time() - t0,
    }
    atomic_write_json(args.out, out)
    print(json.dumps({k: out[k] for k in ("ns_per_day", "us_per_step", "pytorch_model_cost_us_per_step")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
