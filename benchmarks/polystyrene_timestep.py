"""Time step of the TraPPE-UA polystyrene chain: NVE energy conservation at 2-6 fs.

A 10-monomer syndiotactic chain (:class:`gmvae_cv.systems.Polystyrene`, all bonds and ring
triangles constrained) is equilibrated from the TTGG helix with Langevin dynamics at 300 K (20 ps,
2 fs), then run with a Verlet integrator for ``--ps`` ps at each time step from that state. The
total-energy standard deviation and drift (least-squares slope) go into
``benchmarks/polystyrene_timestep.json``. Reference platform, one thread.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/polystyrene_timestep.py [--ps 20] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from gmvae_cv._core.versions import machine_info  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ps", type=float, default=20.0, help="NVE length per time step, ps")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args(argv)
    import openmm
    from openmm import unit

    from gmvae_cv.systems.polystyrene import Polystyrene

    ps = Polystyrene(10, conformation="helix")
    system = ps.create_system()
    platform = openmm.Platform.getPlatformByName("Reference")
    integ = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002)
    integ.setRandomNumberSeed(3)
    ctx = openmm.Context(system, integ, platform)
    ctx.setPositions(ps.positions)
    ctx.setVelocitiesToTemperature(300.0, 3)
    integ.step(10000)
    start = ctx.getState(getPositions=True, getVelocities=True)
    rows = []
    for dt in (0.002, 0.004, 0.005, 0.006):
        verlet = openmm.VerletIntegrator(dt)
        c = openmm.Context(system, verlet, platform)
        c.setPositions(start.getPositions())
        c.setVelocities(start.getVelocities())
        n = int(round(args.ps / dt)) // 100
        energy, t0 = [], time.perf_counter()
        for _ in range(n):
            verlet.step(100)
            s = c.getState(getEnergy=True)
            energy.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
        wall = time.perf_counter() - t0
        e = np.array(energy)
        t = np.arange(1, n + 1) * 100 * dt
        rows.append({"timestep_fs": dt * 1000, "nve_ps": float(t[-1]), "total_energy_std_kj_mol": float(e.std()),
                     "drift_kj_mol_per_ns": float(np.polyfit(t, e, 1)[0] * 1000), "steps_per_s": n * 100 / wall})
    result = {"system": "polystyrene 10-mer, syndiotactic, TraPPE-UA, vacuum, from a 300 K state",
              "platform": "Reference", "rows": rows, "openmm": openmm.__version__, "machine": machine_info()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['timestep_fs']:.0f} fs: total-energy std {r['total_energy_std_kj_mol']:.3f} kJ/mol, "
              f"drift {r['drift_kj_mol_per_ns']:.1f} kJ/mol/ns, {r['steps_per_s']:.0f} steps/s")
    return result


if __name__ == "__main__":
    main()
