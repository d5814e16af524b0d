"""The TraPPE-UA force field of the polystyrene chain: the bundled XML, its checks, the OpenMM system.

:func:`chain_system` makes the system the way TraPPE-UA asks, on top of what OpenMM's
``ForceField`` gives: all bonds and the ring triangles constrained (CG, CE1, CE2 massive; CD1,
CZ, CD2 virtual sites, checked), and Lennard-Jones exclusions rebuilt from the bond graph (1-2,
1-3 and 1-4 pairs, ring bonds included). The parameters and their sources are in
:mod:`gmvae_cv.systems.polystyrene`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from openmm import app
import openmm

from ..._core.errors import GMVAEInputError
from ._geometry import RING_BOND_NM, RING_NAMES

__all__ = ["polystyrene_forcefield", "TRAPPE_TORSION_K", "check_coverage", "chain_system"]

TRAPPE_TORSION_K = (-251.06, 428.73, -111.85, 441.27)
"""``(c0, c1, c2, c3)`` in K of the TraPPE-UA CHx-CH2-CH-CHy torsion (Martin and Siepmann 1999),
``U = c0 + c1 (1 + cos phi) + c2 (1 - cos 2 phi) + c3 (1 + cos 3 phi)``."""

_RING_REAL = ("CG", "CE1", "CE2")
_RING_VIRTUAL = ("CD1", "CZ", "CD2")


def polystyrene_forcefield() -> Path:
    """Path of the bundled TraPPE-UA polystyrene force field (OpenMM ``ForceField`` XML)."""
    return Path(str(resources.files("gmvae_cv") / "data" / "polystyrene-trappe-ua.xml"))


def _forcefield_templates(path: Path) -> dict[str, dict[str, str]]:
    """``{residue name: {atom name: type}}`` of an OpenMM force-field XML, with its checks."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise GMVAEInputError(f"{path}: cannot read as a force-field XML ({exc})") from None
    types = {t.get("name") for t in root.iter("Type")}
    nonbonded = {a.get("type") for f in root.iter("NonbondedForce") for a in f.iter("Atom")}
    templates: dict[str, dict[str, str]] = {}
    for res in root.iter("Residue"):
        atoms = {a.get("name"): a.get("type") for a in res.iter("Atom")}
        for aname, atype in atoms.items():
            if atype not in types:
                raise GMVAEInputError(
                    f"{path}: residue template {res.get('name')!r} gives atom {aname!r} the type {atype!r}, "
                    f"which the file's <AtomTypes> does not define"
                )
            if atype not in nonbonded:
                raise GMVAEInputError(
                    f"{path}: atom type {atype!r} (atom {aname!r} of residue template {res.get('name')!r}) "
                    "has no <NonbondedForce> entry, expected Lennard-Jones parameters for every type"
                )
        templates[res.get("name")] = atoms
    return templates


def check_coverage(path: Path, topology: Any) -> None:
    """Raise naming the first atom of ``topology`` that the force field ``path`` does not cover."""
    templates = _forcefield_templates(path)
    for res in topology.residues():
        if res.name not in templates:
            first = next(iter(res.atoms()))
            raise GMVAEInputError(
                f"{path}: has no residue template {res.name!r}, so atom {first.name!r} (index {first.index}, "
                f"residue {res.name}{res.id}) is not covered; the file defines {sorted(templates)}"
            )
        for atom in res.atoms():
            if atom.name not in templates[res.name]:
                raise GMVAEInputError(
                    f"{path}: residue template {res.name!r} has no atom {atom.name!r}, so atom {atom.name!r} "
                    f"(index {atom.index}, residue {res.name}{res.id}) is not covered; expected every atom "
                    f"of the chain (template atoms: {sorted(templates[res.name])})"
                )


def chain_system(forcefield_path: Path, topology: Any, rings: np.ndarray):
    """The OpenMM system of a chain: the force field, ``NoCutoff``, all bonds and ring triangles constrained.

    Parameters
    ----------
    forcefield_path : Path
        OpenMM force-field XML (CD1, CZ, CD2 must be virtual sites).
    topology : openmm.app.Topology
    rings : ndarray of int, shape ``(N, 6)``
        Ring atom indices in the order of :data:`RING_NAMES`.

    Returns
    -------
    openmm.System
        With a ``CMMotionRemover``; Lennard-Jones exclusions exactly the 1-2, 1-3, 1-4 pairs.
    """
    try:
        ff = app.ForceField(str(forcefield_path))
        system = ff.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.AllBonds)
    except Exception as exc:  # OpenMM raises ValueError/KeyError for templates it cannot apply
        raise GMVAEInputError(f"{forcefield_path}: cannot parameterise the chain ({exc})") from None
    atoms = list(topology.atoms())
    side = np.sqrt(3.0) * RING_BOND_NM
    for ring in rings:
        for j, name in zip(ring, RING_NAMES):
            if system.isVirtualSite(int(j)) != (name in _RING_VIRTUAL):
                a = atoms[int(j)]
                want = "a virtual site" if name in _RING_VIRTUAL else "a massive site"
                raise GMVAEInputError(
                    f"{forcefield_path}: atom {a.name!r} (index {a.index}, residue {a.residue.name}{a.residue.id}) "
                    f"is not {want}; expected the rigid ring of three massive sites CG, CE1, CE2 and "
                    f"virtual sites CD1, CZ, CD2"
                )
        cg, ce1, ce2 = (int(ring[RING_NAMES.index(x)]) for x in _RING_REAL)
        for i, j in ((cg, ce1), (ce1, ce2), (ce2, cg)):
            system.addConstraint(i, j, side)
    _exclusions_from_bonds(system, topology)
    return system


def _exclusions_from_bonds(system: Any, topology: Any) -> None:
    """Make the Lennard-Jones exclusions exactly the 1-2, 1-3 and 1-4 pairs of the bond graph.

    OpenMM's ``ForceField`` gives each virtual site the exclusions of its parent atom (as for
    lone pairs); TraPPE-UA counts bonds, ring bonds included. The NonbondedForce is replaced by
    one with the same particle parameters and exceptions from :meth:`createExceptionsFromBonds`
    (both 1-4 scales 0).
    """
    k = next(i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.NonbondedForce))
    old = system.getForce(k)
    new = openmm.NonbondedForce()
    new.setNonbondedMethod(old.getNonbondedMethod())
    new.setCutoffDistance(old.getCutoffDistance())
    new.setUseDispersionCorrection(old.getUseDispersionCorrection())
    for i in range(old.getNumParticles()):
        new.addParticle(*old.getParticleParameters(i))
    new.createExceptionsFromBonds([(a.index, b.index) for a, b in topology.bonds()], 0.0, 0.0)
    new.setForceGroup(old.getForceGroup())
    system.removeForce(k)
    system.addForce(new)
