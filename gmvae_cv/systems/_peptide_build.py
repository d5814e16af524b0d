"""Capped peptides ACE-(sequence)-NME from internal coordinates, hydrogens from OpenMM's Modeller.

The heavy atoms are placed one by one from standard bond lengths and angles (Engh-Huber style
values, the ones :mod:`gmvae_cv.systems._alanine_build` uses for the dipeptide), trans peptide
bonds (omega = 180 deg), L chirality at every CA, and the backbone torsions asked for; the
hydrogens are then added by :meth:`openmm.app.Modeller.addHydrogens` with the force field's
templates (pH 7: neutral GLN, no charged termini because of the caps). Residues supported:
ALA, GLN (the residues of AAQAA3) and GLY.

Torsion conventions (IUPAC, as mdtraj and PLUMED): phi_i = C(i-1)-N(i)-CA(i)-C(i),
psi_i = N(i)-CA(i)-C(i)-N(i+1). An ideal right-handed alpha helix has phi, psi = -57, -47 deg.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from openmm import app, unit

from .._core.errors import GMVAEInputError
from ._internal_coordinates import place

__all__ = ["peptide_heavy_atoms", "build_capped_peptide", "HELIX_PHI_PSI", "EXTENDED_PHI_PSI"]

HELIX_PHI_PSI = (-57.0, -47.0)
"""(phi, psi) of the ideal right-handed alpha helix, degrees."""
EXTENDED_PHI_PSI = (-150.0, 150.0)
"""(phi, psi) of the extended (beta-like) start, degrees."""

# bond lengths (nm) and angles (deg); the backbone ones are _alanine_build's
_B = {"C-C": 0.1522, "C=O": 0.1229, "C-N": 0.1335, "N-CA": 0.1458, "CA-C": 0.1525, "CA-CB": 0.1530,
      "N-CH3": 0.1449, "CB-CG": 0.1520, "CG-CD": 0.1516, "CD-OE1": 0.1231, "CD-NE2": 0.1328}
_A = {"CH3-C-N": 116.6, "CH3-C-O": 121.0, "C-N-CA": 121.7, "N-CA-C": 111.2, "N-CA-CB": 110.4,
      "CA-C-O": 120.5, "CA-C-N": 116.2, "C-N-CH3": 121.9, "CA-CB-CG": 114.1, "CB-CG-CD": 112.6,
      "CG-CD-OE1": 120.8, "CG-CD-NE2": 116.4}
# GLN side-chain rotamer (chi1, chi2, chi3), degrees: the common 'mt' rotamer of helices
_GLN_CHI = (-65.0, 180.0, -40.0)
_SUPPORTED = ("ALA", "GLN", "GLY")


def peptide_heavy_atoms(
    sequence: Sequence[str], phi: Sequence[float], psi: Sequence[float]
) -> list[tuple[str, list[tuple[str, str, np.ndarray]]]]:
    """Heavy atoms of ACE-(sequence)-NME from internal coordinates.

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names (ALA, GLN, GLY), N to C.
    phi, psi : sequence of float
        Backbone torsions of each residue of ``sequence``, degrees.

    Returns
    -------
    list of (residue name, [(atom name, element, position (3,) in nm), ...])
        ACE, the residues, NME; atom names as in OpenMM's templates (NME's methyl carbon is ``C``).
    """
    seq = [str(s).upper() for s in sequence]
    bad = [s for s in seq if s not in _SUPPORTED]
    if bad:
        raise GMVAEInputError(f"'sequence' contains {bad[0]!r}, expected residues among {', '.join(_SUPPORTED)}")
    if len(phi) != len(seq) or len(psi) != len(seq):
        raise GMVAEInputError(
            f"'phi' has {len(phi)} and 'psi' {len(psi)} entries, expected one per residue ({len(seq)})"
        )
    ch3 = np.zeros(3)
    c_prev = np.array([_B["C-C"], 0.0, 0.0])
    t = np.radians(_A["CH3-C-N"])
    n = c_prev + _B["C-N"] * np.array([-np.cos(t), np.sin(t), 0.0])
    o_ace = place(n, ch3, c_prev, _B["C=O"], _A["CH3-C-O"], 180.0)
    out = [("ACE", [("CH3", "C", ch3), ("C", "C", c_prev), ("O", "O", o_ace)])]
    before = ch3  # atom before c_prev along the backbone (the omega torsion's first atom)
    for name, ph, ps in zip(seq, phi, psi):
        ca = place(before, c_prev, n, _B["N-CA"], _A["C-N-CA"], 180.0)  # omega trans
        c = place(c_prev, n, ca, _B["CA-C"], _A["N-CA-C"], ph)
        n_next = place(n, ca, c, _B["C-N"], _A["CA-C-N"], ps)
        o = place(n_next, ca, c, _B["C=O"], _A["CA-C-O"], 180.0)
        atoms = [("N", "N", n), ("CA", "C", ca), ("C", "C", c), ("O", "O", o)]
        if name != "GLY":
            # L chirality: CB at phi - 120 deg about N-CA (as _alanine_build, checked by the tests)
            cb = place(c_prev, n, ca, _B["CA-CB"], _A["N-CA-CB"], ph - 120.0)
            atoms.append(("CB", "C", cb))
        if name == "GLN":
            chi1, chi2, chi3 = _GLN_CHI
            cg = place(n, ca, cb, _B["CB-CG"], _A["CA-CB-CG"], chi1)
            cd = place(ca, cb, cg, _B["CG-CD"], _A["CB-CG-CD"], chi2)
            oe1 = place(cb, cg, cd, _B["CD-OE1"], _A["CG-CD-OE1"], chi3)
            ne2 = place(cb, cg, cd, _B["CD-NE2"], _A["CG-CD-NE2"], chi3 + 180.0)
            atoms += [("CG", "C", cg), ("CD", "C", cd), ("OE1", "O", oe1), ("NE2", "N", ne2)]
        out.append((name, atoms))
        before, c_prev, n = ca, c, n_next
    c_nme = place(before, c_prev, n, _B["N-CH3"], _A["C-N-CH3"], 180.0)  # omega trans
    out.append(("NME", [("N", "N", n), ("C", "C", c_nme)]))
    return out


def build_capped_peptide(
    sequence: Sequence[str], phi: Sequence[float], psi: Sequence[float], forcefield
):
    """ACE-(sequence)-NME with hydrogens, as an OpenMM topology and positions (not minimised).

    Parameters
    ----------
    sequence : sequence of str
        Residue names, N to C.
    phi, psi : sequence of float
        Backbone torsions per residue, degrees.
    forcefield : openmm.app.ForceField
        Provides the hydrogen templates for :meth:`openmm.app.Modeller.addHydrogens`.

    Returns
    -------
    topology : openmm.app.Topology
    positions : ndarray, shape ``(n_atoms, 3)``
        nm.
    """
    residues = peptide_heavy_atoms(sequence, phi, psi)
    top = app.Topology()
    chain = top.addChain(id="A")
    pos = []
    for rname, atoms in residues:
        res = top.addResidue(rname, chain)
        for name, element, xyz in atoms:
            top.addAtom(name, app.Element.getBySymbol(element), res)
            pos.append(xyz)
    top.createStandardBonds()
    modeller = app.Modeller(top, np.array(pos) * unit.nanometer)
    modeller.addHydrogens(forcefield, pH=7.0)
    xyz = modeller.getPositions().value_in_unit(unit.nanometer)
    return modeller.topology, np.asarray([[v[0], v[1], v[2]] for v in xyz], dtype=np.float64)
