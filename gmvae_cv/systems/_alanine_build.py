"""How the bundled ``alanine-dipeptide.pdb`` was made: internal coordinates, then amber14 minimisation.

The 22 atoms of ACE-ALA-NME are placed from standard peptide bond lengths and angles (Engh-Huber
style values) with trans peptide bonds, L chirality at CA and staggered methyl groups, starting at
phi = -80 deg, psi = 75 deg; the structure is then minimised in amber14 (ff14SB), vacuum, no
cut-off and no constraints, with OpenMM's L-BFGS on the Reference platform. It ends in the C7eq
minimum. Run ``python -m gmvae_cv.systems._alanine_build OUT.pdb`` to regenerate the file.

Atom order (0-based; the order commonly used for alanine dipeptide, so phi = 4-6-8-14 and
psi = 6-8-14-16)::

    ACE: 0 H1, 1 CH3, 2 H2, 3 H3, 4 C, 5 O
    ALA: 6 N, 7 H, 8 CA, 9 HA, 10 CB, 11 HB1, 12 HB2, 13 HB3, 14 C, 15 O
    NME: 16 N, 17 H, 18 C, 19 H1, 20 H2, 21 H3

Names are the PDB/OpenMM standard ones; OpenMM maps them onto the amber14 templates.
"""

from __future__ import annotations

import io
import sys

import numpy as np
from openmm import app
import openmm
from openmm import unit

from ._internal_coordinates import place
from .._core.files import atomic_write_text

__all__ = ["build_alanine_dipeptide", "internal_coordinate_positions", "ATOMS", "write_pdb"]

# (residue, [(atom name, element), ...]) in file order
ATOMS: list[tuple[str, list[tuple[str, str]]]] = [
    ("ACE", [("H1", "H"), ("CH3", "C"), ("H2", "H"), ("H3", "H"), ("C", "C"), ("O", "O")]),
    ("ALA", [("N", "N"), ("H", "H"), ("CA", "C"), ("HA", "H"), ("CB", "C"), ("HB1", "H"),
             ("HB2", "H"), ("HB3", "H"), ("C", "C"), ("O", "O")]),
    ("NME", [("N", "N"), ("H", "H"), ("C", "C"), ("H1", "H"), ("H2", "H"), ("H3", "H")]),
]

# Standard geometry (nm, degrees)
_B = {"C-C": 0.1522, "C=O": 0.1229, "C-N": 0.1335, "N-CA": 0.1458, "CA-C": 0.1525, "CA-CB": 0.1530,
      "N-CH3": 0.1449, "N-H": 0.1010, "C-H": 0.1090}
_A = {"CH3-C-N": 116.6, "CH3-C-O": 121.0, "C-N-CA": 121.7, "C-N-H": 119.8, "N-CA-C": 111.2,
      "N-CA-CB": 110.4, "CA-C-O": 120.5, "CA-C-N": 116.2, "C-N-CH3": 121.9, "tet": 109.5}


def internal_coordinate_positions(phi: float = -80.0, psi: float = 75.0) -> np.ndarray:
    """Positions (nm) of the 22 atoms from standard internal coordinates.

    Parameters
    ----------
    phi, psi : float
        Backbone torsions in degrees.

    Returns
    -------
    ndarray, shape ``(22, 3)``
        In the atom order of :data:`ATOMS`.
    """
    p = {}
    p["CH3a"] = np.zeros(3)
    p["Ca"] = np.array([_B["C-C"], 0.0, 0.0])
    t = np.radians(_A["CH3-C-N"])
    p["Na"] = p["Ca"] + _B["C-N"] * np.array([-np.cos(t), np.sin(t), 0.0])
    p["O1"] = place(p["Na"], p["CH3a"], p["Ca"], _B["C=O"], _A["CH3-C-O"], 180.0)
    p["CA"] = place(p["CH3a"], p["Ca"], p["Na"], _B["N-CA"], _A["C-N-CA"], 180.0)  # omega trans
    p["H1n"] = place(p["CH3a"], p["Ca"], p["Na"], _B["N-H"], _A["C-N-H"], 0.0)
    p["C"] = place(p["Ca"], p["Na"], p["CA"], _B["CA-C"], _A["N-CA-C"], phi)
    # L chirality: CB at phi - 120, HA at phi + 120 (chiral volume (N-CA).((C-CA)x(CB-CA)) > 0)
    p["CB"] = place(p["Ca"], p["Na"], p["CA"], _B["CA-CB"], _A["N-CA-CB"], phi - 120.0)
    p["HA"] = place(p["Ca"], p["Na"], p["CA"], _B["C-H"], _A["tet"], phi + 120.0)
    p["O2"] = place(p["Na"], p["CA"], p["C"], _B["C=O"], _A["CA-C-O"], psi + 180.0)
    p["N2"] = place(p["Na"], p["CA"], p["C"], _B["C-N"], _A["CA-C-N"], psi)
    p["CH3b"] = place(p["CA"], p["C"], p["N2"], _B["N-CH3"], _A["C-N-CH3"], 180.0)  # omega trans
    p["H2n"] = place(p["CA"], p["C"], p["N2"], _B["N-H"], _A["C-N-H"], 0.0)
    for s, d in zip("abc", (0.0, 120.0, -120.0)):
        p["HC" + s] = place(p["O1"], p["Ca"], p["CH3a"], _B["C-H"], _A["tet"], d)
    for s, d in zip("abc", (60.0, 180.0, -60.0)):
        p["HB" + s] = place(p["Na"], p["CA"], p["CB"], _B["C-H"], _A["tet"], d)
        p["HN" + s] = place(p["C"], p["N2"], p["CH3b"], _B["C-H"], _A["tet"], d)
    order = ["HCa", "CH3a", "HCb", "HCc", "Ca", "O1",
             "Na", "H1n", "CA", "HA", "CB", "HBa", "HBb", "HBc", "C", "O2",
             "N2", "H2n", "CH3b", "HNa", "HNb", "HNc"]
    return np.array([p[k] for k in order])


def _topology():
    top = app.Topology()
    chain = top.addChain(id="A")
    for rname, atoms in ATOMS:
        res = top.addResidue(rname, chain)
        for name, element in atoms:
            top.addAtom(name, app.Element.getBySymbol(element), res)
    top.createStandardBonds()
    return top


def build_alanine_dipeptide(phi: float = -80.0, psi: float = 75.0, *, tolerance: float = 1e-3):
    """Build and minimise alanine dipeptide in amber14 (vacuum, no cut-off, no constraints).

    Parameters
    ----------
    phi, psi : float
        Start torsions in degrees.
    tolerance : float
        L-BFGS tolerance in kJ/mol/nm.

    Returns
    -------
    topology : openmm.app.Topology
    positions : ndarray, shape ``(22, 3)``
        Minimised positions in nm.
    energy : float
        Potential energy in kJ/mol at the minimum.
    """
    top = _topology()
    ff = app.ForceField("amber14-all.xml")
    system = ff.createSystem(top, nonbondedMethod=app.NoCutoff, constraints=None)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(internal_coordinate_positions(phi, psi))
    openmm.LocalEnergyMinimizer.minimize(ctx, tolerance, 0)
    state = ctx.getState(getEnergy=True, getPositions=True)
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return top, np.asarray(pos), state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def write_pdb(topology, positions: np.ndarray, remarks: list[str] | None = None) -> str:
    """PDB text of ``positions`` (nm), with ``REMARK`` lines first."""
    buf = io.StringIO()
    for line in remarks or []:
        buf.write(f"REMARK 250 {line[:69]}\n")
    app.PDBFile.writeFile(topology, positions * unit.nanometer, buf, keepIds=True)
    return buf.getvalue()


def _main(argv: list[str]) -> int:  # pragma: no cover - regeneration script
    out = argv[1] if len(argv) > 1 else "alanine-dipeptide.pdb"
    top, pos, energy = build_alanine_dipeptide()
    remarks = [
        "ACE-ALA-NME BUILT BY gmvae_cv.systems._alanine_build FROM STANDARD",
        "INTERNAL COORDINATES, MINIMISED IN AMBER14 (FF14SB) IN VACUUM,",
        f"NO CUTOFF NO CONSTRAINTS, OPENMM {openmm.__version__} REFERENCE L-BFGS",
        f"POTENTIAL ENERGY AT MINIMUM {energy:.3f} KJ/MOL (C7EQ)",
    ]
    atomic_write_text(out, write_pdb(top, pos, remarks))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv))
