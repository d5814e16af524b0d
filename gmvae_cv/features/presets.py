"""Presets: the alanine-dipeptide specs of the paper (25 heavy-atom distances, backbone torsions)
and phi/psi."""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
from openmm import app

from .._core.errors import GMVAEInputError
from .peptide import backbone_torsions
from .selection import features_from_selection
from .spec import FeatureSpec
from .topology import _as_mdtraj_topology, _atom_label
from .types import Feature, torsion, torsion_sincos

__all__ = ["alanine_heavy_atom_distances", "alanine_backbone_torsions", "phi_psi", "backbone_torsion_atoms", "READY_SPECS", "ready_spec", "resolve_spec"]

READY_SPECS = ("alanine-distances", "alanine-torsions", "alanine-torsions-raw", "backbone-torsions")
"""Names :func:`ready_spec` knows (the ``--spec`` values of the CLI besides a spec JSON file)."""

def _default_alanine_topology():
    """The bundled ACE-ALA-NME topology (``gmvae_cv/data/alanine-dipeptide.pdb``, OpenMM's reader)."""
    pdb = app.PDBFile(str(resources.files("gmvae_cv") / "data" / "alanine-dipeptide.pdb"))
    return _as_mdtraj_topology(pdb.topology)


def backbone_torsion_atoms(top: Any, *, source: Any = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(phi, psi) atom quadruples of the one residue that has both (a dipeptide)."""
    found = []
    residues = list(top.residues)
    for prev, res, nxt in zip(residues, residues[1:], residues[2:]):
        if prev.chain.index != res.chain.index or res.chain.index != nxt.chain.index:
            continue

        def pick(r, name):
            hits = [a.index for a in r.atoms if a.name == name]
            return hits[0] if len(hits) == 1 else None

        c_prev, n, ca, c, n_next = pick(prev, "C"), pick(res, "N"), pick(res, "CA"), pick(res, "C"), pick(nxt, "N")
        if None not in (c_prev, n, ca, c, n_next):
            found.append(((c_prev, n, ca, c), (n, ca, c, n_next)))
    if len(found) != 1:
        where = f"{source}: " if source is not None else ""
        raise GMVAEInputError(
            f"{where}topology has {len(found)} residues with both phi (C-N-CA-C) and psi (N-CA-C-N) "
            "atoms, expected exactly one (a capped dipeptide such as ACE-ALA-NME)"
        )
    return found[0]


def alanine_heavy_atom_distances(topology: Any = None, *, periodic: bool = True) -> FeatureSpec:
    """The 25 heavy-atom distances of alanine dipeptide that are neither 1-2 nor 1-3 bonded.

    10 heavy atoms give 45 pairs; 9 are bonds and 11 are bond angles, leaving 25 (the "25D"
    input of the GMVAE alanine example). Distances in nm.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path, optional
        An ACE-ALA-NME topology; default the bundled one
        (:class:`gmvae_cv.systems.AlanineDipeptide`). Indices follow its atom order.
    periodic : bool
        The spec's periodic flag.

    Examples
    --------
    >>> spec = alanine_heavy_atom_distances()
    >>> spec.n_features, spec.names[0]
    (25, 'd_1_8')
    """
    top = _as_mdtraj_topology(topology) if topology is not None else _default_alanine_topology()
    spec = features_from_selection(top, "not element H", "distances", exclude_bonded=2, periodic=periodic)
    if spec.n_features != 25:
        raise GMVAEInputError(
            f"'topology' gives {spec.n_features} heavy-atom distances beyond 1-3, expected 25 for alanine "
            "dipeptide (ACE-ALA-NME with bonds)"
        )
    spec.description = "alanine dipeptide: 25 heavy-atom distances, 1-2 and 1-3 pairs excluded"
    return spec


def alanine_backbone_torsions(
    topology: Any = None, *, transform: str = "sincos", periodic: bool = True
) -> FeatureSpec:
    """Backbone torsions phi and psi of alanine dipeptide.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path, optional
        A dipeptide topology; default the bundled alanine dipeptide.
    transform : {'sincos', 'raw', 'both'}
        ``'sincos'``: ``sin_phi, cos_phi, sin_psi, cos_psi``; ``'raw'``: ``phi, psi`` (rad);
        ``'both'``: the four sin/cos features then ``phi, psi``.
    periodic : bool
        The spec's periodic flag.

    Examples
    --------
    >>> alanine_backbone_torsions().names
    ['sin_phi', 'cos_phi', 'sin_psi', 'cos_psi']
    >>> alanine_backbone_torsions(transform="raw")[0].atoms
    (4, 6, 8, 14)
    """
    top = _as_mdtraj_topology(topology) if topology is not None else _default_alanine_topology()
    phi, psi = backbone_torsion_atoms(top)
    feats: list[Feature] = []
    if transform in ("sincos", "both"):
        feats += [*torsion_sincos(*phi, name="phi"), *torsion_sincos(*psi, name="psi")]
    if transform in ("raw", "both"):
        feats += [torsion(*phi, name="phi"), torsion(*psi, name="psi")]
    if not feats:
        raise GMVAEInputError(f"'transform' is {transform!r}, expected 'sincos', 'raw' or 'both'")
    labels = {a: _atom_label(top.atom(a)) for a in (*phi, *psi)}
    return FeatureSpec(
        feats, top.n_atoms, periodic=periodic, atom_labels=labels,
        description=f"alanine dipeptide backbone torsions phi, psi ({transform})",
    )


def phi_psi(traj: Any, unit: str = "rad") -> np.ndarray:
    """Backbone torsions (phi, psi) of a dipeptide trajectory.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        A trajectory of a capped dipeptide (exactly one residue with both phi and psi).
    unit : {'rad', 'deg'}
        Unit of the result; radians are the package's contract, degrees are for people.

    Returns
    -------
    ndarray, shape ``(n_frames, 2)``, float64
        Columns phi, psi in (-pi, pi] rad or (-180, 180] degrees (no periodic wrapping across
        the box: torsions of a molecule are computed with the minimum image, as in mdtraj).
    """
    if unit not in ("rad", "deg"):
        raise GMVAEInputError(f"'unit' is {unit!r}, expected 'rad' or 'deg'")
    if not hasattr(traj, "xyz") or not hasattr(traj, "topology"):
        raise GMVAEInputError(f"'traj' is {type(traj).__name__}, expected an mdtraj.Trajectory")
    phi, psi = backbone_torsion_atoms(traj.topology)
    spec = FeatureSpec([torsion(*phi, name="phi"), torsion(*psi, name="psi")], traj.n_atoms)
    out = spec.compute(traj)
    return np.degrees(out) if unit == "deg" else out




def ready_spec(name: str, topology: Any = None) -> FeatureSpec:
    """A ready spec by name (one of :data:`READY_SPECS`).

    ``alanine-distances``: :func:`alanine_heavy_atom_distances`; ``alanine-torsions``: phi/psi as
    sin/cos, ``alanine-torsions-raw``: phi/psi in rad (:func:`alanine_backbone_torsions`);
    ``backbone-torsions``: sin/cos of every backbone phi/psi of a peptide
    (:func:`~gmvae_cv.features.peptide.backbone_torsions`), which needs the peptide's ``topology``.
    The alanine specs use ``topology`` (a path or topology) if given, else the bundled one.
    """
    if name == "alanine-distances":
        return alanine_heavy_atom_distances(topology)
    if name == "alanine-torsions":
        return alanine_backbone_torsions(topology, transform="sincos")
    if name == "alanine-torsions-raw":
        return alanine_backbone_torsions(topology, transform="raw")
    if name == "backbone-torsions":
        if topology is None:
            raise GMVAEInputError("'top' is missing: backbone-torsions is built on the peptide's topology (a PDB)")
        return backbone_torsions(topology)
    raise GMVAEInputError(f"'spec' is {name!r}, expected one of {', '.join(READY_SPECS)} or a spec JSON file")


def resolve_spec(spec: Any, topology: Any = None) -> FeatureSpec:
    """``spec`` as a :class:`FeatureSpec`: a spec itself, a ready name (:func:`ready_spec`) or the
    path of a spec JSON file (:meth:`FeatureSpec.load`, which names the file in its errors)."""
    if isinstance(spec, FeatureSpec):
        return spec
    if str(spec) in READY_SPECS:
        return ready_spec(str(spec), topology)
    return FeatureSpec.load(spec)
