"""Systems with known answers: toy potentials and alanine dipeptide in vacuum.

:class:`FourWell`, :class:`MullerBrown`
    Toy potentials with an overdamped Langevin integrator (reduced units).
:class:`AlanineDipeptide`
    ACE-ALA-NME in vacuum with amber14 (OpenMM), the bundled C7eq structure;
    :func:`alanine_basin` labels (phi, psi) with the C7eq/C7ax core sets.
:class:`AAQAA3`
    ACE-(AAQAA)3-NME in amber14 + GBn2 implicit solvent, built helical or extended;
    :func:`dssp_helicity` gives DSSP helicity per frame and residue.
:class:`Polystyrene`
    One polystyrene chain (syndiotactic, isotactic or atactic), TraPPE-UA united atoms, vacuum;
    zigzag (TT) and helical (TTGG) conformers; :func:`polystyrene_backbone_torsions` (FeatureSpec
    preset), :func:`diad_labels`, :func:`tt_fraction`, :func:`ttgg_fraction`, :func:`chain_state`.
"""

from . import alanine
from .aaqaa3 import AAQAA3, dssp_helicity
from .alanine import (
    BASIN_NAMES,
    BASIN_RADIUS_DEG,
    C7AX_CENTER_DEG,
    C7EQ_CENTER_DEG,
    AlanineDipeptide,
    AlanineRun,
    alanine_basin,
    alanine_dipeptide_pdb,
)
from .polystyrene import (
    TACTICITIES,
    Polystyrene,
    PolystyreneRun,
    chain_state,
    diad_labels,
    polystyrene_backbone_torsions,
    polystyrene_forcefield,
    tt_fraction,
    ttgg_fraction,
)
from .toy import SYSTEMS, FourWell, MullerBrown, ToySystem, overdamped_langevin
from .toy_rates import DoubleWell, toy_infrequent_metadynamics

__all__ = [
    "FourWell",
    "MullerBrown",
    "ToySystem",
    "overdamped_langevin",
    "SYSTEMS",
    *alanine.__all__,
    "AAQAA3",
    "dssp_helicity",
    "Polystyrene",
    "PolystyreneRun",
    "polystyrene_forcefield",
    "TACTICITIES",
    "polystyrene_backbone_torsions",
    "diad_labels",
    "tt_fraction",
    "ttgg_fraction",
    "chain_state",
    "DoubleWell",
    "toy_infrequent_metadynamics",
]
