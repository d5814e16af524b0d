"""Stage 1, features: what the CV is computed from.

Typed features (:func:`distance`, :func:`angle`, :func:`torsion`, :func:`torsion_sincos`,
:func:`contact`), the :class:`FeatureSpec` that orders them and its three renderings that agree to
float tolerance (:meth:`FeatureSpec.compute` with numpy over mdtraj, :class:`FeatureModule` in
torch over positions, :meth:`FeatureSpec.plumed_input` as PLUMED lines), selections
(:func:`features_from_selection`), trajectory I/O (:func:`load_trajectory_features`) and presets
(:func:`alanine_heavy_atom_distances`, :func:`alanine_backbone_torsions`, :func:`phi_psi`).
Imports only :mod:`gmvae_cv._core`.
"""

from .spec import (
    SPEC_FORMAT,
    SPEC_VERSION,
    Angle,
    Contact,
    Distance,
    Feature,
    FeatureModule,
    FeatureSpec,
    PlumedFeatures,
    Torsion,
    alanine_backbone_torsions,
    alanine_heavy_atom_distances,
    angle,
    check_length_units,
    contact,
    distance,
    features_from_selection,
    load_trajectory_features,
    phi_psi,
    torsion,
    torsion_sincos,
)

__all__ = [
    "Feature", "Distance", "Angle", "Torsion", "Contact", "distance", "angle", "torsion", "torsion_sincos",
    "contact", "FeatureSpec", "FeatureModule", "PlumedFeatures", "SPEC_FORMAT", "SPEC_VERSION",
    "check_length_units", "features_from_selection", "alanine_heavy_atom_distances",
    "alanine_backbone_torsions", "phi_psi", "load_trajectory_features",
]
