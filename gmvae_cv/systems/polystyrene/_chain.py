"""The :class:`Polystyrene` chain: built, parameterised, minimised and simulated (Langevin, OpenMM)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import openmm
from openmm import unit

from ..._core.checks import check_int
from ..._core.errors import GMVAEInputError
from .._simulate import MolecularSystem, SimulationRun, run_langevin
from ._forcefield import chain_system, check_coverage, polystyrene_forcefield
from ._geometry import TACTICITIES, build_chain, chirality_signs, start_torsions
from ._labels import dihedrals, torsion_quadruples

__all__ = ["Polystyrene", "PolystyreneRun"]


class PolystyreneRun(SimulationRun):
    """What :meth:`Polystyrene.simulate` wrote (the fields of :class:`~gmvae_cv.systems._simulate.SimulationRun`)."""


class Polystyrene(MolecularSystem):
    """One polystyrene chain in vacuum, TraPPE-UA united atoms, built in the package.

    Parameters
    ----------
    n_monomers : int
        Styrene units N (at least 3; default 10). The chain has 8N + 1 sites and 2N - 2 backbone
        torsions.
    tacticity : {'syndiotactic', 'isotactic', 'atactic'}
        Stereochemistry (see the module docstring); atactic draws each centre with ``seed``.
    conformation : {'zigzag', 'helix'} or sequence of float
        Start backbone torsions: all trans (180 deg), TTGG (diads alternately tt and g-g-, -60 deg),
        or ``2N - 2`` torsions in degrees.
    seed : int
        Seeds the atactic draw.
    forcefield : path, optional
        OpenMM force-field XML; default :func:`polystyrene_forcefield`. It must cover every atom
        (residues ``STB``/``STY``/``STE`` with the atom names of the module docstring) and make
        ``CD1``, ``CZ``, ``CD2`` virtual sites.
    minimize : bool
        Minimise the built structure (L-BFGS, constraints on, Reference platform); it stays in
        the start conformation's basin.

    Attributes
    ----------
    topology : openmm.app.Topology
    positions : ndarray, shape ``(8N + 1, 3)``
        nm, float64, virtual sites included.
    chirality : ndarray of int, shape ``(N,)``
        Configuration sign of each backbone CH (+1/-1).
    backbone : ndarray of int, shape ``(2N + 1,)``
        Atom indices of ``B_0 .. B_2N``.
    rings : ndarray of int, shape ``(N, 6)``
        Atom indices of each phenyl, in the order CG, CD1, CE1, CZ, CE2, CD2.
    backbone_torsions : ndarray of int, shape ``(2N - 2, 4)``
        Atom quadruples of the backbone torsions.

    Examples
    --------
    >>> ps = Polystyrene(5, minimize=False)
    >>> ps.topology.getNumAtoms(), ps.backbone_torsions.shape
    (41, (8, 4))
    >>> ps.chirality.tolist()
    [1, -1, 1, -1, 1]
    """

    def __init__(
        self,
        n_monomers: int = 10,
        tacticity: str = "syndiotactic",
        *,
        conformation: Any = "zigzag",
        seed: int = 0,
        forcefield: str | os.PathLike | None = None,
        minimize: bool = True,
    ) -> None:
        n = check_int(n_monomers, "n_monomers")
        if n < 3:
            raise GMVAEInputError(f"'n_monomers' is {n}, expected at least 3 styrene units")
        if tacticity not in TACTICITIES:
            raise GMVAEInputError(f"'tacticity' is {tacticity!r}, expected one of {', '.join(repr(t) for t in TACTICITIES)}")
        self.n_monomers = n
        self.tacticity = tacticity
        self.seed = check_int(seed, "seed", minimum=0)
        self.forcefield_path = Path(forcefield) if forcefield is not None else polystyrene_forcefield()
        if not self.forcefield_path.is_file():
            raise GMVAEInputError(f"{self.forcefield_path}: file not found (expected an OpenMM force-field XML)")
        self.chirality = chirality_signs(n, tacticity, self.seed)
        torsions = start_torsions(n, conformation)
        self.topology, self.positions, self.backbone, self.rings = build_chain(n, self.chirality, torsions)
        self.backbone_torsions = torsion_quadruples(self.backbone)
        check_coverage(self.forcefield_path, self.topology)
        if minimize:
            self.positions = self.minimized_positions()

    @property
    def system_label(self) -> str:
        """What ``simulation.json`` calls the system."""
        return f"polystyrene, {self.n_monomers} monomers, {self.tacticity}, vacuum, TraPPE-UA united atoms"

    # -- the system
    def create_system(self):
        """The OpenMM system: the force field, ``NoCutoff``, all bonds and ring triangles constrained.

        The Lennard-Jones exclusions are rebuilt from the bond graph (1-2, 1-3, 1-4 excluded,
        TraPPE's rule), whatever 1-4 scales the force-field file states.

        Returns
        -------
        openmm.System
            With a ``CMMotionRemover``; ``CD1``, ``CZ``, ``CD2`` of each ring are virtual sites.
        """
        return chain_system(self.forcefield_path, self.topology, self.rings)

    def minimized_positions(self, *, tolerance: float = 1.0) -> np.ndarray:
        """Positions (nm) after L-BFGS minimisation with constraints (Reference platform).

        Parameters
        ----------
        tolerance : float
            kJ/mol/nm.
        """
        system = self.create_system()
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(self.positions)
        ctx.applyConstraints(1e-8)
        ctx.computeVirtualSites()
        openmm.LocalEnergyMinimizer.minimize(ctx, tolerance, 0)
        ctx.applyConstraints(1e-10)  # the minimiser enforces constraints only loosely
        ctx.computeVirtualSites()
        pos = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return np.asarray(pos, dtype=np.float64)

    def backbone_torsion_angles(self, positions: Any = None) -> np.ndarray:
        """Backbone torsions (rad, in (-pi, pi]) of ``positions`` (default the structure), ``(2N - 2,)``."""
        xyz = self.positions if positions is None else np.asarray(positions, dtype=float)
        return dihedrals(xyz[None], self.backbone_torsions)[0]

    # -- dynamics
    def simulate(
        self,
        n_steps: int,
        report_interval: int,
        out_dir: str | os.PathLike,
        *,
        temperature: Any = 300.0,
        timestep: Any = 0.002,
        friction: Any = 1.0,
        seed: int = 0,
        platform: Optional[str] = None,
        equilibration_steps: int = 5000,
        progress: Optional[Callable] = None,
    ) -> PolystyreneRun:
        """Langevin dynamics; writes ``traj.dcd``, ``topology.pdb``, ``state.csv``, ``simulation.json``.

        Parameters
        ----------
        n_steps : int
            Integration steps (a multiple of ``report_interval``).
        report_interval : int
            Steps between saved frames (the first after ``report_interval`` steps).
        out_dir : path
            Output folder (created); files are written under temporary names and renamed.
        temperature : float or Quantity
            K (default 300).
        timestep : float or Quantity
            ps (default 0.002).
        friction : float or Quantity
            1/ps (default 1).
        seed : int
            Seeds the velocities and the integrator (OpenMM seed ``seed + 1``).
        platform : {'Reference', 'CPU', ...}, optional
            Default: the faster of Reference and CPU in a short timed probe (recorded).
        equilibration_steps : int
            Unsaved steps before the first frame (default 5000).
        progress : callable, optional
            tqdm-like class, ``progress(total=n_steps)``, updated per frame.

        Returns
        -------
        PolystyreneRun
        """
        meta = {
            "system": self.system_label,
            "n_monomers": self.n_monomers,
            "tacticity": self.tacticity,
            "chirality": self.chirality.tolist(),
            "forcefield": str(self.forcefield_path),
            "nonbonded_method": "NoCutoff",
            "constraints": "AllBonds + ring triangles",
        }
        return run_langevin(
            self, n_steps, report_interval, out_dir, temperature=temperature, timestep=timestep, friction=friction,
            seed=seed, platform=platform, equilibration_steps=equilibration_steps, progress=progress,
            system_meta=meta, what="polystyrene simulation", run_type=PolystyreneRun,
        )
