"""Cost of one OPES deposition: this project's OPESBias (openmm-opes' estimator + the fused force's
table) vs openmm-opes' own route (estimator + its CustomCVForce table, updateParametersInContext),
and of one well-tempered metadynamics hill, on a 2D periodic grid (phi, psi of alanine dipeptide).

Run: ``OMP_NUM_THREADS=1 python benchmarks/opes_deposition.py [--repeats 3] [--n 200]``; prints
ms per deposition for each repeat (CV values drawn uniformly, seed 0). The MD itself is not timed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openmm  # noqa: E402
import openmm_opes  # noqa: E402
import torch  # noqa: E402
from openmm import app  # noqa: E402

from gmvae_cv.deploy.loaders import feature_cv  # noqa: E402
from gmvae_cv.features import alanine_backbone_torsions  # noqa: E402
from gmvae_cv.metad.engine import WellTemperedMetadynamics  # noqa: E402
from gmvae_cv.metad.opes import OPESBias  # noqa: E402
from gmvae_cv.systems import AlanineDipeptide  # noqa: E402


def _torsion(atoms):
    f = openmm.CustomTorsionForce("theta")
    f.addTorsion(*atoms)
    return f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=200, help="depositions per repeat")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ala = AlanineDipeptide()
    cv = feature_cv(alanine_backbone_torsions(transform="raw"))
    rng = np.random.default_rng(0)
    for rep in range(args.repeats):
        pts = rng.uniform(-math.pi, math.pi, size=(args.n, 2))
        ours = OPESBias(cv, temperature=300, barrier=40, pace=500, sigma=[0.35, 0.35])
        meta = WellTemperedMetadynamics(cv, temperature=300, height=1.2, sigma=[0.35, 0.35], bias_factor=10, pace=500)
        system = ala.create_system()
        native = openmm_opes.OPES(system, [app.BiasVariable(_torsion(a), -math.pi, math.pi, 0.35, True, ours.grid.shape[0])
                                           for a in ((4, 6, 8, 14), (6, 8, 14, 16))], 300.0, 40.0, 500, None)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ala.positions)
        t0 = time.perf_counter()
        for k, p in enumerate(pts):
            ours.deposit([p], 500 * (k + 1), float(k))
        t1 = time.perf_counter()
        for p, kernel in zip(pts, ours.kernels):  # the bias ours felt at p (the context holds other positions)
            native.getBiasEnergy(ctx)
            native.addKernel(p, kernel.bias)
            native.updateContext(ctx)
        t2 = time.perf_counter()
        for k, p in enumerate(pts):
            meta.deposit([p], 500 * (k + 1), float(k))
        t3 = time.perf_counter()
        n = args.n
        print(f"repeat {rep}: grid {ours.grid.shape} nodes; ms per deposition: OPESBias {1e3 * (t1 - t0) / n:.2f} "
              f"({ours.n_kernels()} kernels), openmm-opes own route {1e3 * (t2 - t1) / n:.2f} "
              f"({native.getNumKernels()} kernels), metad hill {1e3 * (t3 - t2) / n:.2f}")


if __name__ == "__main__":
    main()
