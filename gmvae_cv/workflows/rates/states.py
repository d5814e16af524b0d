"""The states of the rate runs: names checked, frames labelled, a start structure inside the origin.

``C7eq``, ``C7ax``: the core sets of :func:`gmvae_cv.systems.alanine_basin`; ``cluster:<i>``: frames
whose GMVAE cluster probability is at least :data:`CLUSTER_COMMIT`; ``left``, ``right`` of the toy
double well.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import openmm
from openmm import unit

from ..._core.errors import GMVAEInputError
from .settings import CLUSTER_COMMIT, STATES
from ...deploy import load_plumed_model
from ...deploy import feature_cv
from ...features import alanine_backbone_torsions
from ...deploy import load_cv
from ...systems import alanine_basin
from ...systems import C7AX_CENTER_DEG, AlanineDipeptide
from ...features import backbone_torsion_atoms

__all__ = ["check_states", "AlanineStates", "alanine_start", "exp_cluster_probs"]


def _cluster_index(name: str) -> Optional[int]:
    """``i`` of a state ``cluster:<i>``, None for a named state."""
    if name.startswith("cluster:"):
        try:
            return int(name.split(":", 1)[1])
        except ValueError:
            raise GMVAEInputError(f"state {name!r}: expected 'cluster:<index>' with an integer index") from None
    return None


def check_states(system: str, origin: str, target: str, exp: Optional[str | os.PathLike] = None) -> None:
    """Refuse unknown, overlapping or never-visited states (see the module docstring for names).

    GMVAE cluster states need ``exp``: the cluster index must exist and at least one frame of the
    export's training data (``EXP/data/features.npy``) or check frames must commit to it.
    """
    names = STATES[system]
    if origin == target:
        raise GMVAEInputError(f"'--from' and '--to' are both {origin!r}: the states overlap, expected two different states")
    for which, name in (("--from", origin), ("--to", target)):
        k = _cluster_index(name)
        if k is None and name not in names:
            raise GMVAEInputError(f"'{which}' is {name!r}, expected one of {', '.join(names)} or cluster:<i> (a GMVAE cluster)")
        if k is not None:
            if system != "alanine-dipeptide" or exp is None:
                raise GMVAEInputError(f"'{which}' is {name!r}: cluster states need a GMVAE export (EXP) of alanine dipeptide")
            probs = exp_cluster_probs(exp)
            if not 0 <= k < probs.shape[1]:
                raise GMVAEInputError(f"'{which}' is {name!r}: the export has {probs.shape[1]} clusters (0..{probs.shape[1] - 1})")
            if not np.any(probs[:, k] >= CLUSTER_COMMIT):
                raise GMVAEInputError(
                    f"'{which}' is {name!r}: no frame of {Path(exp) / 'data' / 'features.npy'} has q(y={k}|x) >= "
                    f"{CLUSTER_COMMIT}; no frame visits this state")


def exp_cluster_probs(exp) -> np.ndarray:
    """q(y|x), ``(n_frames, n_clusters)``, of the export's training features (``EXP/data/features.npy``)."""
    exp = Path(exp)
    model, _ = load_plumed_model(exp / "model_clusters.ptc", kind="clusters")
    f = exp / "data" / "features.npy"
    if not f.is_file():
        raise GMVAEInputError(f"{f}: file not found; cluster states are checked on the export's training features")
    x = np.load(f)
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).numpy()


class AlanineStates:
    """Label positions 0 (origin), 1 (target) or -1 for alanine dipeptide."""

    def __init__(self, origin: str, target: str, exp: Optional[str]) -> None:
        self.torsions = feature_cv(alanine_backbone_torsions(transform="raw"))
        self.names = (origin, target)
        self.clusters = None
        if any(_cluster_index(n) is not None for n in self.names):
            self.clusters, _ = load_plumed_model(Path(exp) / "model_clusters.ptc", kind="clusters")
            self.spec = load_cv(exp).feature_spec

    def __call__(self, pos: np.ndarray) -> int:
        inside = []
        basin = None
        probs = None
        for n in self.names:
            k = _cluster_index(n)
            if k is None:
                if basin is None:
                    phi, psi = self.torsions(pos)
                    basin = int(alanine_basin(np.array([phi]), np.array([psi]))[0])
                inside.append(basin == {"C7eq": 0, "C7ax": 1}[n])
            else:
                if probs is None:
                    with torch.no_grad():
                        probs = self.clusters(torch.as_tensor(self.spec.compute(pos), dtype=torch.float32)).numpy()[0]
                inside.append(bool(probs[k] >= CLUSTER_COMMIT))
        if inside[0] and inside[1]:
            raise GMVAEInputError(f"a frame lies in both states {self.names[0]!r} and {self.names[1]!r}: the states overlap")
        return 0 if inside[0] else (1 if inside[1] else -1)


def alanine_start(state: str, exp: Optional[str], seed: int) -> np.ndarray:
    """Positions (nm) inside ``state``: the bundled C7eq minimum, a C7ax structure made by
    minimising with (phi, psi) restrained to the C7ax centre, or a check frame of the export."""
    ala = AlanineDipeptide()
    if state == "C7eq":
        return ala.positions
    if state == "C7ax":
        phi, psi = backbone_torsion_atoms(ala.mdtraj_topology)
        system = ala.create_system(constraints=None)
        f = openmm.CustomTorsionForce("0.5*k*(1-cos(theta-theta0))")
        f.addGlobalParameter("k", 2000.0)
        f.addPerTorsionParameter("theta0")
        f.addTorsion(*phi, [math.radians(C7AX_CENTER_DEG[0])])
        f.addTorsion(*psi, [math.radians(C7AX_CENTER_DEG[1])])
        system.addForce(f)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ala.positions)
        openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 5000)
        ctx.setParameter("k", 0.0)
        openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 5000)
        return ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    frames = np.load(Path(exp) / "frames.npy")
    lab = AlanineStates(state, "C7eq" if state != "C7eq" else "C7ax", exp)
    for x in frames:
        if lab(x) == 0:
            return np.asarray(x, dtype=np.float64)
    raise GMVAEInputError(f"{Path(exp) / 'frames.npy'}: no frame lies in state {state!r}, so no run can start there")
