"""Feature presets for any peptide or protein: the backbone torsions phi and psi of every residue.

:func:`backbone_torsions` finds, for each amino-acid residue (one with a ``CA``), its phi
``C(i-1)-N(i)-CA(i)-C(i)`` and psi ``N(i)-CA(i)-C(i)-N(i+1)`` wherever the neighbouring
residue supplies the atom, as :func:`mdtraj.compute_phi` / :func:`mdtraj.compute_psi` do, and
returns their sines and cosines (or the raw angles) as a :class:`~gmvae_cv.features.FeatureSpec`.

The count for AAQAA3 (ACE-(AAQAA)3-NME): the 15 residues between the caps each have a phi (the
preceding residue's ``C``: ACE's carbonyl for the first) and a psi (the following residue's
``N``: NME's for the last); the caps have no ``CA`` and so no torsions of their own. 15 phi + 15
psi = 30 torsions, sine and cosine of each: 60 features. Uncapped chains lose the first phi and
the last psi. The peptide-bond torsions omega (near 180 deg for trans) are not included.

:func:`feature_residues` maps each column of a spec to the residue most of its atoms belong to
(from the spec's atom labels), for summaries per residue.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from .._core.errors import GMVAEInputError
from .spec import FeatureSpec
from .topology import _as_mdtraj_topology, _atom_label
from .types import Feature, torsion, torsion_sincos

__all__ = ["backbone_torsions", "feature_residues", "CAP_RESIDUES"]

CAP_RESIDUES = frozenset({"ACE", "NME", "NHE", "NH2", "FOR", "CT3"})
"""Terminal caps: residues that carry backbone-like atoms (C, N) but no CA, and no torsions."""


def _atom(res: Any, name: str) -> Optional[int]:
    hits = [a.index for a in res.atoms if a.name == name]
    return hits[0] if len(hits) == 1 else None


def _label(res: Any, multi_chain: bool) -> str:
    chain = ""
    if multi_chain:
        cid = getattr(res.chain, "chain_id", None)
        chain = f"{cid if cid else res.chain.index}_"
    return f"{chain}{res.name}{res.resSeq}"


def backbone_torsions(
    topology: Any,
    *,
    residues: Optional[Sequence[int]] = None,
    transform: str = "sincos",
    periodic: bool = True,
) -> FeatureSpec:
    """The phi and psi torsions of every residue of a peptide, as a FeatureSpec preset.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path
        The peptide (caps, solvent and ions may be present; residues without backbone atoms are
        skipped).
    residues : sequence of int, optional
        Residue numbers (``resSeq``, as in the PDB) to take; each must have both phi and psi.
        Default: every amino-acid residue, with the torsions its neighbours allow.
    transform : {'sincos', 'raw'}
        ``'sincos'``: ``sin_phi_<RES>``, ``cos_phi_<RES>``, ``sin_psi_<RES>``, ``cos_psi_<RES>``
        per residue (unitless); ``'raw'``: ``phi_<RES>``, ``psi_<RES>`` in rad. ``<RES>`` is
        the residue name and number, e.g. ``ALA2`` (prefixed by the chain when there are
        several).
    periodic : bool
        The spec's periodic flag.

    Returns
    -------
    FeatureSpec
        Columns residue by residue, N to C; the atom labels of all atoms used are recorded.

    Raises
    ------
    GMVAEInputError
        If a residue in ``residues`` lacks phi or psi (naming it and the missing atom), is not
        in the topology, or an amino-acid-like residue (with N or C, not a cap) has no CA.

    Examples
    --------
    >>> from gmvae_cv.systems import AlanineDipeptide
    >>> backbone_torsions(AlanineDipeptide().mdtraj_topology).names
    ['sin_phi_ALA2', 'cos_phi_ALA2', 'sin_psi_ALA2', 'cos_psi_ALA2']
    """
    if transform not in ("sincos", "raw"):
        raise GMVAEInputError(f"'transform' is {transform!r}, expected 'sincos' or 'raw'")
    top = _as_mdtraj_topology(topology)
    multi_chain = top.n_chains > 1
    has_bonds = top.n_bonds > 0
    bonded = {frozenset((a.index, b.index)) for a, b in top.bonds} if has_bonds else set()
    all_res = list(top.residues)

    def neighbour(res: Any, step: int) -> Any:
        j = res.index + step
        if 0 <= j < len(all_res) and all_res[j].chain.index == res.chain.index:
            return all_res[j]
        return None

    wanted = None
    if residues is not None:
        wanted = []
        for r in residues:
            if isinstance(r, bool) or not isinstance(r, int):
                raise GMVAEInputError(f"'residues' contains {r!r}, expected residue numbers (resSeq, int)")
            hits = [res for res in all_res if res.resSeq == r]
            if not hits:
                raise GMVAEInputError(f"'residues' contains {r}: no residue with that number in the topology")
            if len(hits) > 1:
                raise GMVAEInputError(
                    f"'residues' contains {r}: {len(hits)} residues have that number "
                    f"({', '.join(_label(h, True) for h in hits)}); select one chain first"
                )
            wanted.append(hits[0])

    feats: list[Feature] = []
    used: set[int] = set()
    skipped: list[str] = []
    for res in wanted if wanted is not None else all_res:
        label = _label(res, multi_chain)
        n, ca, c = _atom(res, "N"), _atom(res, "CA"), _atom(res, "C")
        if ca is None:
            if wanted is None and (res.name in CAP_RESIDUES or n is None or c is None):
                continue  # a cap, water, an ion, a ligand
            what = "is a cap without CA" if res.name in CAP_RESIDUES else "has no CA"
            hint = "" if wanted is not None else " (pass residues= to leave it out)"
            raise GMVAEInputError(
                f"residue {label} {what}: its phi (C-N-CA-C) and psi (N-CA-C-N) do not exist in the topology{hint}"
            )
        if n is None or c is None:
            missing = " and ".join(x for x, i in (("N", n), ("C", c)) if i is None)
            raise GMVAEInputError(f"residue {label} has a CA but no {missing}: its phi/psi do not exist in the topology")
        prev, nxt = neighbour(res, -1), neighbour(res, +1)
        c_prev = _atom(prev, "C") if prev is not None else None
        n_next = _atom(nxt, "N") if nxt is not None else None
        if has_bonds:
            if c_prev is not None and frozenset((c_prev, n)) not in bonded:
                c_prev = None
            if n_next is not None and frozenset((c, n_next)) not in bonded:
                n_next = None
        for name, have, why in (
            ("phi", c_prev, f"no C atom in a preceding residue bonded to {label}'s N"),
            ("psi", n_next, f"no N atom in a following residue bonded to {label}'s C"),
        ):
            if have is None:
                if wanted is not None:
                    raise GMVAEInputError(f"residue {label} has no {name}: {why} (the torsion does not exist in the topology)")
                skipped.append(f"{name}_{label}")
                continue
            atoms = (c_prev, n, ca, c) if name == "phi" else (n, ca, c, n_next)
            used.update(atoms)
            if transform == "sincos":
                feats += list(torsion_sincos(*atoms, name=f"{name}_{label}"))
            else:
                feats.append(torsion(*atoms, name=f"{name}_{label}"))
    if not feats:
        raise GMVAEInputError("the topology has no backbone torsion (no residue with N, CA, C and a bonded neighbour)")
    n_tor = len(feats) // (2 if transform == "sincos" else 1)
    desc = f"backbone torsions phi/psi ({transform}): {n_tor} torsions"
    if skipped:
        desc += f"; absent at the chain ends: {', '.join(skipped)}"
    return FeatureSpec(
        feats, top.n_atoms, periodic=periodic,
        atom_labels={a: _atom_label(top.atom(a)) for a in sorted(used)}, description=desc,
    )


def feature_residues(spec: FeatureSpec) -> list[Optional[str]]:
    """The residue each column of ``spec`` belongs to, from its atom labels.

    Parameters
    ----------
    spec : FeatureSpec

    Returns
    -------
    list of str or None, length ``spec.n_features``
        The residue label (e.g. ``'ALA2'``) that most of the feature's atoms carry (the first of
        them on a tie); None where an atom of the feature has no label. For phi and psi it is the
        residue of the CA (3 of their 4 atoms).
    """
    out: list[Optional[str]] = []
    for f in spec.features:
        labels = [spec.atom_labels.get(a) for a in f.atoms]
        if any(lab is None for lab in labels):
            out.append(None)
            continue
        res = [lab.rsplit("-", 1)[0] for lab in labels]
        out.append(max(dict.fromkeys(res), key=res.count))
    return out
