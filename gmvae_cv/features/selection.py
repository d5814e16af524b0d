"""Building a spec from an atom selection (distances or torsions over the selected atoms)."""

from __future__ import annotations

from typing import Any

from .._core.checks import check_int
from .._core.errors import GMVAEInputError
from .spec import FeatureSpec
from .topology import _as_mdtraj_topology, _atom_label, _bond_graph, _bond_separation
from .types import Feature, distance, torsion, torsion_sincos

__all__ = ["features_from_selection"]


# ------------------------------------------------------------------------------------ builders
def features_from_selection(
    topology: Any,
    selection: str,
    kind: str = "distances",
    *,
    exclude_bonded: int = 2,
    torsion_transform: str = "sincos",
    periodic: bool = True,
) -> FeatureSpec:
    """A spec over the atoms of an mdtraj selection.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path
        The topology (its bonds are used).
    selection : str
        mdtraj atom selection, e.g. ``"not element H"`` or ``"backbone"``.
    kind : {'distances', 'torsions'}
        ``'distances'``: all pairs of selected atoms that are more than ``exclude_bonded`` bonds
        apart, ordered by (i, j). ``'torsions'``: one torsion per bond ``j-k`` between selected
        atoms that has selected neighbours ``i`` of ``j`` and ``l`` of ``k`` (the lowest indices
        are taken), ordered by (j, k).
    exclude_bonded : int
        For distances: drop pairs separated by at most this many bonds (0: keep all; 1: drop 1-2
        pairs; 2: also 1-3 pairs; 3: also 1-4 pairs). Bond paths may run through unselected atoms.
    torsion_transform : {'sincos', 'raw'}
        For torsions: a sin/cos pair or the raw angle per torsion.
    periodic : bool
        The spec's periodic flag.

    Returns
    -------
    FeatureSpec

    Examples
    --------
    >>> from gmvae_cv.systems import AlanineDipeptide
    >>> spec = features_from_selection(AlanineDipeptide().topology, "not element H", exclude_bonded=2)
    >>> spec.n_features
    25
    """
    top = _as_mdtraj_topology(topology)
    try:
        atoms = [int(a) for a in top.select(selection)]
    except Exception as exc:  # mdtraj's selection parser raises several types
        raise GMVAEInputError(f"'selection' {selection!r} is not a valid mdtraj selection ({exc})") from None
    nbrs = _bond_graph(top)
    chosen = set(atoms)
    labels = {}
    if kind == "distances":
        exclude_bonded = check_int(exclude_bonded, "exclude_bonded", minimum=0)
        if len(atoms) < 2:
            raise GMVAEInputError(f"'selection' {selection!r} selects {len(atoms)} atom(s), expected at least 2 for distances")
        if exclude_bonded > 0 and top.n_bonds == 0:
            raise GMVAEInputError(
                "'topology' has no bonds, so 1-2/1-3 pairs cannot be excluded; use a topology with "
                "bonds (a PDB with standard residues or CONECT records) or exclude_bonded=0"
            )
        feats: list[Feature] = []
        for a in atoms:
            near = _bond_separation(nbrs, a, exclude_bonded)
            for b in atoms:
                if b > a and b not in near:
                    feats.append(distance(a, b))
                    labels[a] = _atom_label(top.atom(a))
                    labels[b] = _atom_label(top.atom(b))
        if not feats:
            raise GMVAEInputError(
                f"'selection' {selection!r} with exclude_bonded={exclude_bonded} leaves no pairs, expected at least one"
            )
    elif kind == "torsions":
        if torsion_transform not in ("sincos", "raw"):
            raise GMVAEInputError(f"'torsion_transform' is {torsion_transform!r}, expected 'sincos' or 'raw'")
        feats = []
        for j in sorted(chosen):
            for k in sorted(nbrs[j]):
                if k <= j or k not in chosen:
                    continue
                ii = sorted(x for x in nbrs[j] if x in chosen and x != k)
                ll = sorted(x for x in nbrs[k] if x in chosen and x != j)
                pick = [(i, l) for i in ii for l in ll if i != l]
                if not pick:
                    continue
                i, l = pick[0]
                if torsion_transform == "raw":
                    feats.append(torsion(i, j, k, l))
                else:
                    feats.extend(torsion_sincos(i, j, k, l))
                for x in (i, j, k, l):
                    labels[x] = _atom_label(top.atom(x))
        if not feats:
            raise GMVAEInputError(
                f"'selection' {selection!r} contains no bonded chain of four atoms, expected at least one torsion"
            )
    else:
        raise GMVAEInputError(f"'kind' is {kind!r}, expected 'distances' or 'torsions'")
    return FeatureSpec(
        feats,
        top.n_atoms,
        periodic=periodic,
        atom_labels=labels,
        description=f"{kind} from selection {selection!r}" + (f", exclude_bonded={exclude_bonded}" if kind == "distances" else ""),
    )


