"""Stage 1, features: what the CV is computed from.

Typed features (:func:`distance`, :func:`angle`, :func:`torsion`, :func:`torsion_sincos`,
:func:`contact`), the :class:`FeatureSpec` that orders them and its three renderings that agree to
float tolerance (:meth:`FeatureSpec.compute` with numpy over mdtraj, :class:`FeatureModule` in
torch over positions, :meth:`FeatureSpec.plumed_input` as PLUMED lines), selections
(:func:`features_from_selection`), trajectory I/O (:func:`load_trajectory_features`) and presets
(:func:`alanine_heavy_atom_distances`, :func:`alanine_backbone_torsions`, :func:`phi_psi`).
Imports only :mod:`gmvae_cv._core`.
"""

from .peptide import backbone_torsions, feature_residues
from .atom_mapping import AtomMapping, map_spec_atoms, mapping_comment, remap_spec
from .presets import READY_SPECS, alanine_backbone_torsions, backbone_torsion_atoms, alanine_heavy_atom_distances, phi_psi, ready_spec, resolve_spec
from .selection import features_from_selection
from .spec import SPEC_FORMAT, SPEC_VERSION, FeatureSpec, PlumedFeatures
from .topology import _as_mdtraj_topology as as_mdtraj_topology, _atom_label as atom_label, check_length_units
from .torch_module import FeatureModule
from .trajectory import load_frames, load_trajectory_features
from .types import Angle, Contact, Distance, Feature, Torsion, angle, contact, distance, torsion, torsion_sincos

__all__ = [
    "Feature", "Distance", "Angle", "Torsion", "Contact", "distance", "angle", "torsion", "torsion_sincos",
    "contact", "FeatureSpec", "FeatureModule", "PlumedFeatures", "SPEC_FORMAT", "SPEC_VERSION",
    "check_length_units", "features_from_selection", "alanine_heavy_atom_distances",
    "alanine_backbone_torsions", "phi_psi", "load_trajectory_features", "load_frames", "READY_SPECS", "ready_spec",
    "resolve_spec", "backbone_torsion_atoms", "AtomMapping", "map_spec_atoms", "mapping_comment", "remap_spec",
    "as_mdtraj_topology", "atom_label", "backbone_torsions", "feature_residues",
]
