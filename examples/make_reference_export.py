"""Make the reference export of alanine dipeptide: ``export/alanine_dipeptide`` and ``plumed_inputs/``.

    python examples/make_reference_export.py [--quick | --reexport]

Steps (all seeded; the simulation runs on OpenMM's Reference platform, which is deterministic):

1. 2 ns of unbiased Langevin dynamics of alanine dipeptide in vacuum (amber14, 300 K, 2 fs,
   seed 0), one frame per ps: 2000 frames.
2. The 25 heavy-atom distances beyond 1-3 (``alanine_heavy_atom_distances``), saved as
   ``export/alanine_dipeptide/data/features.npy`` (float32; the training data, kept so that
   tests can re-export from the stored run and compare).
3. A GMVAE with K=4 clusters and a 2D latent space (seed 0, batch 256, up to 300 epochs with
   early stopping), trained on those features into a temporary run folder.
4. ``gmvae_cv.export`` into ``export/alanine_dipeptide`` (32 check frames, default bias
   settings), ``gmvae_cv.check_export`` (its table is printed and saved as ``check.json``),
   and ``write_plumed_inputs`` into ``plumed_inputs/`` with phi and psi for reweighting.

``tests/deploy/test_export.py`` re-exports from ``export/alanine_dipeptide/run`` with the stored data
and fails if any generated file would change. After changing the export code on purpose, run
``--reexport``: step 4 only, from the stored run, features and frames (seconds, no training).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gmvae_cv import (  # noqa: E402
    AlanineDipeptide,
    alanine_backbone_torsions,
    alanine_heavy_atom_distances,
    check_export,
    export,
    fit,
    write_plumed_inputs,
)


def finish(out_exp: Path, out_inputs: Path) -> int:
    # check.json records the folder as given: relative to the repository, not this machine's path
    shown = out_exp.relative_to(ROOT) if out_exp.is_relative_to(ROOT) else out_exp
    cwd = os.getcwd()
    os.chdir(ROOT if out_exp.is_relative_to(ROOT) else cwd)
    try:
        report = check_export(shown)
    finally:
        os.chdir(cwd)
    print(report.to_text())
    torsions = {f.name: f.atoms for f in alanine_backbone_torsions(transform="raw")}
    if out_inputs.exists():
        shutil.rmtree(out_inputs)
    written = write_plumed_inputs(out_exp, out_inputs, torsions=torsions)
    print(f"wrote {out_exp} and {len(written)} files in {out_inputs}")
    return 0 if report.passed else 1


def reexport() -> int:
    """Export the stored run again with the stored features and frames (what the sync test does)."""
    exp = ROOT / "export" / "alanine_dipeptide"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(exp / "run", tmp / "run")
        shutil.copytree(exp / "data", tmp / "data")
        frames = np.load(exp / "frames.npy")
        features = np.load(tmp / "data" / "features.npy")
        export(tmp / "run", exp, data=features, frames=frames, n_check_frames=len(frames), overwrite=True)
        shutil.copytree(tmp / "data", exp / "data")
    return finish(exp, ROOT / "plumed_inputs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.2 ns and 20 epochs, into /tmp (a smoke run)")
    parser.add_argument("--reexport", action="store_true", help="only step 4, from the stored run and data")
    args = parser.parse_args()
    if args.reexport:
        return reexport()
    out_exp = ROOT / "export" / "alanine_dipeptide" if not args.quick else Path(tempfile.mkdtemp()) / "alanine_dipeptide"
    out_inputs = ROOT / "plumed_inputs" if not args.quick else out_exp.parent / "plumed_inputs"
    n_steps, epochs = (1_000_000, 300) if not args.quick else (100_000, 20)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = AlanineDipeptide().simulate(n_steps, 500, tmp / "sim", seed=0, platform="Reference")
        print(f"simulated {sim.n_frames} frames at {sim.steps_per_second:.0f} steps/s ({time.perf_counter() - t0:.0f} s)")
        import mdtraj as md

        traj = md.load(str(sim.trajectory), top=str(sim.topology))
        spec = alanine_heavy_atom_distances()
        features = spec.compute(traj, dtype=np.float32)
        run = fit(
            features, n_clusters=4, latent_dim=2, seed=0, batch_size=256, epochs=epochs, patience=30,
            feature_spec=spec, out=tmp / "run", progress=False,
        )
        print(f"trained {run.info['training']['epochs_run']} epochs, best valid loss {run.info['training']['best_loss']:.4f} "
              f"({time.perf_counter() - t0:.0f} s)")
        export(tmp / "run", out_exp, data=features, frames=traj, n_check_frames=32, overwrite=True)
        (out_exp / "data").mkdir()
        np.save(out_exp / "data" / "features.npy", features, allow_pickle=False)
        meta = json.loads(sim.metadata.read_text())
        for key in ("performance", "platform", "versions", "structure"):
            meta.pop(key, None)  # machine-dependent
        (out_exp / "data" / "simulation.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"made the run and the export in {time.perf_counter() - t0:.0f} s")
    return finish(out_exp, out_inputs)


if __name__ == "__main__":
    sys.exit(main())
