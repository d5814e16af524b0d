"""Stability of metadynamics on an exported CV: does the bias heat the system?

A GMVAE CV can switch almost discontinuously between clusters whose latent means lie far apart;
the bias force then spikes where the switch is crossed and the integrator pumps energy in. This
benchmark runs well-tempered metadynamics of alanine dipeptide (300 K, Langevin 1/ps, one hill
per ps, this project's engine) on ``--cv EXP`` at each ``--timesteps`` value and, as the
control, on phi/psi at 2 fs, and records the kinetic temperature the engine sees at every
deposition (``run.json``: mean, standard error, p99, max), whether the run was stopped
(``SimulationUnstableError``), and C7eq <-> C7ax transitions. The comparison is the mean kinetic
temperature of each CV run minus the control's, in units of their combined standard error.

Usage::

    python benchmarks/bias_stability.py --cv EXP [--ns 1] [--timesteps 2 1] [--out benchmarks/bias_stability.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmvae_cv import SimulationUnstableError, load_cv, read_plumed, run_metadynamics  # noqa: E402
from gmvae_cv.deploy.loaders import feature_cv  # noqa: E402
from gmvae_cv.features import alanine_backbone_torsions  # noqa: E402
from gmvae_cv.systems import AlanineDipeptide, alanine_basin  # noqa: E402
from gmvae_cv._core.versions import machine_info  # noqa: E402


def one_run(cv, sigma, out: Path, ns: float, timestep_fs: float, args) -> dict:
    ala = AlanineDipeptide()
    pace = int(round(1000.0 / timestep_fs))
    n_steps = int(round(ns * 1e6 / timestep_fs / pace)) * pace
    t0 = time.time()
    stopped = None
    try:
        run_metadynamics(cv, out, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                         n_steps=n_steps, sigma=sigma, temperature=300.0, height=args.height, bias_factor=args.bias_factor,
                         pace=pace, seed=args.seed, timestep=timestep_fs / 1000.0, traj_stride=0,
                         colvar_stride=int(round(200.0 / timestep_fs)), extra_colvar=alanine_backbone_torsions(transform="raw"))
    except SimulationUnstableError as exc:
        stopped = str(exc).split(". The bias force")[0]
    info = json.loads((out / "run.json").read_text())
    colvar = read_plumed(out / "COLVAR")
    labels = alanine_basin(colvar["phi"], colvar["psi"])
    core = labels[labels >= 0]
    return {"timestep_fs": timestep_fs, "sigma": list(sigma), "simulated_ns": float(colvar["time"][-1]) / 1000.0,
            "stopped": stopped, "kinetic_temperature": info["kinetic_temperature_this_invocation"],
            "transitions": int(np.count_nonzero(core[1:] != core[:-1])), "fraction_C7ax": float(np.mean(labels == 1)),
            "wall_s": time.time() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv", required=True, help="an export directory (EXP) with cv.json")
    ap.add_argument("--ns", type=float, default=1.0, help="simulated time per run, ns")
    ap.add_argument("--timesteps", type=float, nargs="+", default=[2.0, 1.0], help="time steps of the CV runs, fs")
    ap.add_argument("--height", type=float, default=1.2, help="kJ/mol")
    ap.add_argument("--bias-factor", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("bias_stability.json")))
    args = ap.parse_args(argv)
    cv = load_cv(args.cv)
    sigma = cv.meta["cv_json"]["plumed"]["metad"]["sigma"]
    result = {"benchmark": "bias_stability", "settings": vars(args), "cv": str(Path(args.cv).resolve()),
              "cv_training": cv.meta["cv_json"].get("training"),
              "machine": {**machine_info(), "cpus": os.cpu_count()}, "runs": {}}
    with tempfile.TemporaryDirectory() as work:
        torsions = feature_cv(alanine_backbone_torsions(transform="raw"), path=Path(work) / "torsions.pt")
        result["runs"]["phi_psi_2fs"] = one_run(torsions, [0.35, 0.35], Path(work) / "phipsi", args.ns, 2.0, args)
        for dt in args.timesteps:
            result["runs"][f"cv_{dt:g}fs"] = one_run(cv, sigma, Path(work) / f"cv_{dt:g}", args.ns, dt, args)
    ctrl = result["runs"]["phi_psi_2fs"]["kinetic_temperature"]
    comparison = {}
    for name, run in result["runs"].items():
        kt = run["kinetic_temperature"]
        if name == "phi_psi_2fs" or kt is None:
            continue
        se = math.hypot(kt["standard_error"], ctrl["standard_error"])
        comparison[name] = {"mean_minus_control_K": kt["mean"] - ctrl["mean"], "in_standard_errors": (kt["mean"] - ctrl["mean"]) / se,
                            "max_over_control_max": kt["max"] / ctrl["max"]}
    result["comparison"] = comparison
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"runs": {k: {kk: v[kk] for kk in ("timestep_fs", "stopped", "kinetic_temperature", "transitions")}
                               for k, v in result["runs"].items()}, "comparison": comparison}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
