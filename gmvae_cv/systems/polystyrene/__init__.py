"""A single polystyrene chain in vacuum, TraPPE-UA united atoms: zigzag and helical conformers.

The polymorphs of syndiotactic polystyrene (sPS) differ in chain conformation: the alpha and beta
forms hold planar zigzag chains (backbone torsions all trans, ...TTTT...), the gamma and delta
forms helical ones (...TTGGTTGG..., the s(2/1)2 helix). :class:`Polystyrene` builds one chain of
``n_monomers`` styrene units, ``CH3-[CH(Ph)-CH2]_(N-1)-CH(Ph)-CH3`` (for N = 2 this is
2,4-diphenylpentane, the classic model compound), in either conformation (or any backbone torsion
list), with syndiotactic, isotactic or atactic stereochemistry, and simulates it with OpenMM.

Model. United atoms (each CHx one site): 2N + 1 backbone sites and 6 ring sites per monomer,
8N + 1 sites in all (81 for N = 10). Force field: ``gmvae_cv/data/polystyrene-trappe-ua.xml``,
written from the TraPPE-UA parameters of

* M. G. Martin, J. I. Siepmann, J. Phys. Chem. B 102, 2569 (1998), doi:10.1021/jp972543+
  (CH3, CH2 Lennard-Jones; 1.54 A bonds; CHx-CH2-CHy bending 114 deg, 62500 K/rad^2);
* M. G. Martin, J. I. Siepmann, J. Phys. Chem. B 103, 4508 (1999), doi:10.1021/jp984742e
  (CH Lennard-Jones; CHx-CH-CHy bending 112 deg; the CHx-CH2-CH-CHy torsion, see
  :data:`TRAPPE_TORSION_K`);
* C. D. Wick, M. G. Martin, J. I. Siepmann, J. Phys. Chem. B 104, 8008 (2000),
  doi:10.1021/jp001044x (aromatic CH and substituted C; rigid planar ring, 1.40 A).

Lennard-Jones acts between sites four or more bonds apart (1-2, 1-3 and 1-4 excluded, counted
over the bond graph with the ring bonds; :meth:`Polystyrene.create_system` rebuilds the exclusions
so, because OpenMM's ``ForceField`` would give each virtual site its parent atom's exclusions),
with Lorentz-Berthelot mixing and no cut-off; there are no charges. All bonds are constrained (TraPPE
fixes bond lengths). Choices that the papers do not make for polystyrene, stated in the XML:
the phenyl C(aro) counts as a CHx site in the backbone bending and torsion terms; rotation of the
ring about CH-C(aro) has no torsion term (only Lennard-Jones); the rigid ring is three massive
sites (CG, CE1, CE2, each a third of the ring mass, held by a constrained triangle) and three
OpenMM virtual sites (CD1, CZ, CD2), which keeps the ring's mass, centre and inertia; the CH-C(aro)
bond stays on the ring's axis through two 120 deg harmonic angles and two trans torsions
``k (1 + cos phi)`` (both with TraPPE's bending constant, 62500 K) instead of a rigid
attachment; the torsion constant ``c0`` is dropped, so energies are the published ones minus
``c0`` per backbone-type torsion. ``tests/systems/test_polystyrene.py`` checks OpenMM's energies against
the published parameters evaluated in NumPy (conformers and a backbone torsion scan).

Atom names and residues. Backbone CH ``CA``, CH2 ``CB``, end methyls ``CT``; phenyl ``CG``
(ipso), ``CD1``, ``CE1``, ``CZ``, ``CE2``, ``CD2``. Residues ``STB`` (first monomer, with the start
methyl), ``STY``, ``STE`` (last monomer, with the end methyl, no CH2).

Torsions and tacticity. The backbone ``B_0 .. B_2N`` (CH3, CH, CH2, CH, ..., CH, CH3) has
``2N - 2`` torsions ``B_i B_(i+1) B_(i+2) B_(i+3)``, all about CH-CH2 bonds, trans at 180 deg
(IUPAC sign, as mdtraj and PLUMED measure it). Torsions ``2k`` and ``2k + 1`` flank the CH2 of
diad ``k`` (monomers k and k + 1), the pair that the rotational-isomeric-state picture of vinyl
polymers labels tt, tg, gg. The configuration of each CH is the sign
``s = sign(((B_prev - CH) x (B_next - CH)) . (CG - CH))``: equal signs on both monomers make a
meso diad (isotactic chains), opposite signs a racemo diad (syndiotactic chains).

Features and labels. :func:`polystyrene_backbone_torsions` is the FeatureSpec of the backbone
torsions (sin/cos or raw); :func:`torsion_states` (T, G+, G-), :func:`diad_labels` (TT, TG, GG),
:func:`tt_fraction`, :func:`ttgg_fraction` and :func:`chain_state` (zigzag-rich, helix-rich
core sets) label frames for analysis. ``gmvae-cv simulate polystyrene --monomers N --steps S
--out DIR`` writes a trajectory; ``examples/polystyrene.py`` runs the whole GMVAE route.

Modules. ``_geometry`` builds the chain (chirality, start torsions, positions, topology);
``_forcefield`` holds the bundled XML, its checks and the OpenMM system; ``_labels`` the features
and labels; ``_chain`` the :class:`Polystyrene` class (its run is the shared Langevin run of
:mod:`gmvae_cv.systems._simulate`).
"""

from . import _chain, _labels
from ._chain import Polystyrene, PolystyreneRun
from ._forcefield import TRAPPE_TORSION_K, polystyrene_forcefield
from ._geometry import BACKBONE_BOND_NM, CONFORMATIONS, RING_BOND_NM, TACTICITIES
from ._labels import (
    CHAIN_STATE_NAMES,
    DIAD_NAMES,
    TORSION_STATE_NAMES,
    backbone_torsion_atoms,
    chain_state,
    diad_labels,
    polystyrene_backbone_torsions,
    torsion_states,
    tt_fraction,
    ttgg_fraction,
)

__all__ = [
    *_chain.__all__,
    *_labels.__all__,
    "polystyrene_forcefield",
    "TACTICITIES",
    "CONFORMATIONS",
    "TRAPPE_TORSION_K",
    "RING_BOND_NM",
    "BACKBONE_BOND_NM",
]
