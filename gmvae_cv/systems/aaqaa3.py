"""The helix-forming peptide ACE-(AAQAA)3-NME in amber14 (ff14SB) with GBn2 implicit solvent.

The structure is built inside the package (:mod:`gmvae_cv.systems._peptide_build`): heavy atoms
from standard internal coordinates with every backbone (phi, psi) at the ideal alpha helix
(-57, -47 deg) or extended (-150, 150 deg), hydrogens from OpenMM's Modeller with the amber14
templates, then a short L-BFGS minimisation in the simulation force field (amber14-all.xml +
implicit/gbn2.xml, no cut-off, no constraints). 183 atoms: ACE (6), 12 ALA (10 each), 3 GLN (17
each), NME (6); residue numbers 1 (ACE), 2-16 (the 15 AAQAA residues), 17 (NME).

Helicity. :func:`dssp_helicity` assigns DSSP with :func:`mdtraj.compute_dssp` (simplified
codes: 'H' is any helix, alpha, 3-10 or pi) and counts the 15 AAQAA residues in 'H'. The caps
carry no DSSP code (mdtraj gives 'NA'), and the first and last AAQAA residues cannot be 'H' in
DSSP (a helix needs an i -> i+4 hydrogen bond on each side), so a perfect helix has helicity
13/15.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from openmm import app, unit
import openmm
import mdtraj as md

from .._core.errors import GMVAEInputError
from ._peptide_build import EXTENDED_PHI_PSI, HELIX_PHI_PSI, build_capped_peptide
from ._simulate import MolecularSystem
from .alanine import AlanineDipeptide
from ._alanine_build import write_pdb
from .._core.files import atomic_write_text

__all__ = ["AAQAA3", "AAQAA3_SEQUENCE", "dssp_helicity", "STARTS"]

AAQAA3_SEQUENCE = tuple({"A": "ALA", "Q": "GLN"}[c] for c in "AAQAA" * 3)
"""The 15 residues between the caps, N to C."""
STARTS = {"helix": HELIX_PHI_PSI, "extended": EXTENDED_PHI_PSI}
"""Start conformations: name -> (phi, psi) of every residue, degrees."""
_FULL_SEQUENCE = ("ACE", *AAQAA3_SEQUENCE, "NME")


def _missing_hydrogens(topology, positions: np.ndarray, forcefield) -> dict[str, list[str]]:
    """Hydrogens the force field's templates have and ``topology`` lacks, per residue label."""
    modeller = app.Modeller(topology, positions * unit.nanometer)
    modeller.addHydrogens(forcefield, pH=7.0)  # adds only the absent ones
    before = {r.index: {a.name for a in r.atoms()} for r in topology.residues()}
    missing = {}
    for res in modeller.topology.residues():
        new = sorted({a.name for a in res.atoms()} - before.get(res.index, set()))
        if new:
            missing[f"{res.name}{res.id}"] = new
    return missing


class AAQAA3(MolecularSystem):
    """ACE-(AAQAA)3-NME, amber14 (ff14SB) with GBn2 implicit solvent, no cut-off.

    Parameters
    ----------
    start : {'helix', 'extended'}
        Conformation to build (ignored when ``pdb`` is given).
    pdb : path, optional
        Start from this structure instead (all 183 atoms, hydrogens included).
    minimize_tolerance : float
        L-BFGS tolerance (kJ/mol/nm) of the minimisation after the build; ``None`` skips it.
    hydrogen_mass : float, optional
        Hydrogen mass repartitioning for :meth:`create_system` (amu, e.g. 1.5 for 4 fs steps
        with ``HBonds`` constraints); the mass moves from the bonded heavy atom, the total stays.
        Default: none (1.008 amu).

    Attributes
    ----------
    topology : openmm.app.Topology
        183 atoms in 17 residues.
    positions : ndarray, shape ``(183, 3)``
        nm, float64.
    start : str
        'helix', 'extended', or 'pdb'.
    energy : float or None
        Potential energy after the build's minimisation, kJ/mol (None when read from a PDB).

    Examples
    --------
    >>> pep = AAQAA3("helix")  # doctest: +SKIP
    >>> pep.topology.getNumAtoms()  # doctest: +SKIP
    183
    """

    forcefield_files = ("amber14-all.xml", "implicit/gbn2.xml")
    system_label = "AAQAA3 (ACE-(AAQAA)3-NME), amber14 + GBn2 implicit solvent"
    n_atoms = 183

    # the system and the run are the dipeptide's (shared, not copied): they only use topology,
    # positions, pdb_path, forcefield_files, hydrogen_mass and system_label; the run itself and the
    # mdtraj views are systems._simulate's
    create_system = AlanineDipeptide.create_system
    simulate = AlanineDipeptide.simulate

    def __init__(
        self,
        start: str = "helix",
        *,
        pdb: str | os.PathLike | None = None,
        minimize_tolerance: Optional[float] = 10.0,
        hydrogen_mass: Optional[float] = None,
    ) -> None:
        ff = app.ForceField(*self.forcefield_files)
        self.energy: Optional[float] = None
        if hydrogen_mass is not None and not (isinstance(hydrogen_mass, (int, float)) and 1.0 <= hydrogen_mass <= 4.0):
            raise GMVAEInputError(f"'hydrogen_mass' is {hydrogen_mass!r}, expected a mass in amu between 1 and 4")
        self.hydrogen_mass = None if hydrogen_mass is None else float(hydrogen_mass)
        if pdb is not None:
            path = Path(pdb)
            if not path.is_file():
                raise GMVAEInputError(f"{path}: file not found (expected a PDB of ACE-(AAQAA)3-NME)")
            try:
                pdb_file = app.PDBFile(str(path))
            except Exception as exc:  # OpenMM raises several types for bad PDB files
                raise GMVAEInputError(f"{path}: cannot read as PDB ({exc})") from None
            self.topology = pdb_file.topology
            self.positions = np.asarray(pdb_file.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
            names = tuple(r.name for r in self.topology.residues())
            if names != _FULL_SEQUENCE:
                raise GMVAEInputError(
                    f"{path}: residues are {'-'.join(names)}, expected {'-'.join(_FULL_SEQUENCE)}"
                )
            missing = _missing_hydrogens(self.topology, self.positions, ff)
            if missing:
                first = ", ".join(f"{r}: {' '.join(h)}" for r, h in list(missing.items())[:3])
                n_h = sum(len(h) for h in missing.values())
                raise GMVAEInputError(
                    f"{path}: {n_h} hydrogens missing in {len(missing)} residues ({first}{', ...' if len(missing) > 3 else ''}); "
                    "amber14 needs every hydrogen: add them with openmm.app.Modeller.addHydrogens or use "
                    "AAQAA3('helix'/'extended')"
                )
            if self.topology.getNumAtoms() != self.n_atoms:
                raise GMVAEInputError(f"{path}: has {self.topology.getNumAtoms()} atoms, expected {self.n_atoms}")
            self.start = "pdb"
            self.pdb_path: Any = path
            return
        if start not in STARTS:
            raise GMVAEInputError(f"'start' is {start!r}, expected one of {', '.join(STARTS)}")
        phi, psi = STARTS[start]
        n = len(AAQAA3_SEQUENCE)
        self.topology, self.positions = build_capped_peptide(AAQAA3_SEQUENCE, [phi] * n, [psi] * n, ff)
        self.start = start
        if minimize_tolerance is not None:
            system = self.create_system(constraints=None)
            ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
            ctx.setPositions(self.positions)
            openmm.LocalEnergyMinimizer.minimize(ctx, float(minimize_tolerance), 0)
            state = ctx.getState(getEnergy=True, getPositions=True)
            self.positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
            self.energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        what = f"minimised to {minimize_tolerance} kJ/mol/nm" if minimize_tolerance is not None else "not minimised"
        self.pdb_path = f"built by gmvae_cv.systems.aaqaa3 ({start} start, phi/psi {phi}/{psi} deg, {what})"

    def write_pdb(self, path: str | os.PathLike) -> None:
        """Write the structure (``positions``) as PDB, atomically."""
        atomic_write_text(path, write_pdb(self.topology, self.positions, [self.system_label[:69], str(self.pdb_path)[:69]]))


def dssp_helicity(traj: Any) -> tuple[np.ndarray, np.ndarray]:
    """DSSP helicity of each frame and each residue of AAQAA3 (or any capped peptide).

    Parameters
    ----------
    traj : mdtraj.Trajectory
        Frames of the peptide.

    Returns
    -------
    helicity : ndarray, shape ``(n_frames,)``
        Fraction of the protein residues (those DSSP assigns, i.e. without the caps) whose
        simplified DSSP code is 'H' (alpha, 3-10 or pi helix).
    is_helix : ndarray of bool, shape ``(n_frames, n_residues)``
        Per frame and residue (caps excluded, N to C); the mean over frames is the helix fraction
        per residue.
    """
    if not isinstance(traj, md.Trajectory):
        raise GMVAEInputError(f"'traj' is {type(traj).__name__}, expected an mdtraj.Trajectory")
    codes = md.compute_dssp(traj, simplified=True)
    keep = np.array([c != "NA" for c in codes[0]])
    if not keep.any():
        raise GMVAEInputError("'traj' has no residue DSSP can assign (no protein backbone)")
    is_helix = codes[:, keep] == "H"
    return is_helix.mean(axis=1), is_helix
