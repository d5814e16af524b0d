"""A user's own OpenMM system: a serialized ``System`` XML plus a PDB, or a PDB plus force fields."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import openmm
from openmm import app, unit

from .._core.errors import GMVAEInputError

__all__ = ["MDSystem", "load_md_system"]


@dataclass
class MDSystem:
    """An OpenMM system with its topology and starting positions.

    Attributes
    ----------
    system : openmm.System
    topology : openmm.app.Topology
    positions : ndarray, shape ``(n_atoms, 3)``
        nm.
    description : dict
        Where it came from (files, force fields, options), for ``run.json``.
    """

    system: Any
    topology: Any
    positions: np.ndarray
    description: dict = field(default_factory=dict)


def load_md_system(
    pdb: str | os.PathLike,
    *,
    system_xml: Optional[str | os.PathLike] = None,
    forcefield: Optional[Sequence[str]] = None,
    nonbonded_cutoff: float = 1.0,
    constraints: Optional[str] = "HBonds",
) -> MDSystem:
    """Build an :class:`MDSystem` from files.

    Parameters
    ----------
    pdb : path
        Topology and starting positions (PDB or PDBx/mmCIF).
    system_xml : path, optional
        A serialized ``openmm.System`` (``XmlSerializer``); its particle count must match the PDB.
    forcefield : sequence of str, optional
        OpenMM force-field files (e.g. ``amber14-all.xml amber14/tip3p.xml``), used when no
        ``system_xml`` is given: PME with ``nonbonded_cutoff`` (nm) if the PDB has a box, else no
        cut-off; ``constraints`` (``'HBonds'``, ``'AllBonds'``, ``'HAngles'`` or ``None``), rigid water.

    Returns
    -------
    MDSystem
    """
    pdb = Path(pdb)
    if not pdb.is_file():
        raise GMVAEInputError(f"{pdb}: file not found (expected a PDB or mmCIF structure)")
    try:
        structure = app.PDBxFile(str(pdb)) if pdb.suffix.lower() in (".cif", ".pdbx") else app.PDBFile(str(pdb))
    except Exception as exc:  # OpenMM raises several types for bad files
        raise GMVAEInputError(f"{pdb}: cannot read the structure ({type(exc).__name__}: {exc})") from None
    topology = structure.topology
    positions = np.asarray(structure.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    if (system_xml is None) == (not forcefield):
        raise GMVAEInputError("give either a System XML file (--system-xml) or force-field files (--forcefield) with the PDB, not both")
    if system_xml is not None:
        path = Path(system_xml)
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (expected an OpenMM System serialized with XmlSerializer)")
        try:
            system = openmm.XmlSerializer.deserialize(path.read_text(encoding="utf-8"))
        except Exception as exc:  # OpenMM raises its own exception type
            raise GMVAEInputError(f"{path}: cannot read as an OpenMM System XML ({exc})") from None
        if not isinstance(system, openmm.System):
            raise GMVAEInputError(f"{path}: holds a {type(system).__name__}, expected an openmm.System")
        if system.getNumParticles() != topology.getNumAtoms():
            raise GMVAEInputError(f"{path}: has {system.getNumParticles()} particles, {pdb} has {topology.getNumAtoms()} atoms")
        description = {"system_xml": str(path), "pdb": str(pdb)}
    else:
        try:
            ff = app.ForceField(*forcefield)
        except Exception as exc:  # OpenMM raises ValueError/OSError for unknown files
            raise GMVAEInputError(f"'forcefield' {list(forcefield)}: cannot load ({exc})") from None
        periodic = topology.getPeriodicBoxVectors() is not None
        cons = {None: None, "None": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}
        if constraints not in cons:
            raise GMVAEInputError(f"'constraints' is {constraints!r}, expected HBonds, AllBonds, HAngles or None")
        try:
            system = ff.createSystem(
                topology,
                nonbondedMethod=app.PME if periodic else app.NoCutoff,
                nonbondedCutoff=nonbonded_cutoff * unit.nanometer,
                constraints=cons[constraints],
                rigidWater=True,
            )
        except Exception as exc:  # missing templates etc.
            raise GMVAEInputError(f"{pdb}: the force field {list(forcefield)} cannot parameterise it ({exc})") from None
        description = {"pdb": str(pdb), "forcefield": list(forcefield), "nonbonded": "PME" if periodic else "NoCutoff",
                       "nonbonded_cutoff_nm": nonbonded_cutoff if periodic else None, "constraints": constraints}
    return MDSystem(system=system, topology=topology, positions=positions, description=description)
