"""Map the atoms of a feature spec onto another topology of the same molecule, by residue and name.

A :class:`~gmvae_cv.features.FeatureSpec` defines its features on 0-based atom indices of the
topology it was built on and records a label ``RESNAME RESSEQ - ATOMNAME`` (e.g. ``'ALA2-CA'``) for
every atom it uses. Another tool (``gmx pdb2gmx``, a solvated system, another force-field port)
may list the same atoms in another order; :func:`map_spec_atoms` finds, for every labelled atom,
the one atom of the new topology with the same residue name, residue number and atom name, and
:func:`remap_spec` returns the spec with its atom indices replaced, ready to be rendered for
PLUMED on the new topology.

Names are compared after a small table of equivalent spellings (:data:`RESIDUE_ALIASES`,
:data:`ATOM_ALIASES`): protonation variants of a residue (HID/HIE/HIP -> HIS, ...), Amber's
terminal caps as GROMACS' Amber ports name them (NME ``CH3``/``HH31..`` = ``C``/``H1..``; ACE
``HH31..`` = ``H1..``) and CHARMM's amide ``HN`` = ``H``. The mapping must be one-to-one: an atom
with no match, an atom with several matches (two chains with the same residue numbers, names
made equal by the table), or two spec atoms on one new atom are refused with a
:class:`~gmvae_cv._validation.GMVAEInputError` that names the atoms.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional
import mdtraj as md

from .._core.errors import GMVAEInputError
from .spec import FeatureSpec

__all__ = ["RESIDUE_ALIASES", "ATOM_ALIASES", "AtomMapping", "map_spec_atoms", "remap_spec", "canonical_name", "mapping_comment"]

RESIDUE_ALIASES: dict[str, str] = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
    "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS", "NMA": "NME",
    "WAT": "HOH", "SOL": "HOH", "TIP3": "HOH",
}
"""Residue names compared as the same residue (left -> canonical)."""

ATOM_ALIASES: dict[Optional[str], dict[str, str]] = {
    None: {"HN": "H"},
    "NME": {"CH3": "C", "HH31": "H1", "HH32": "H2", "HH33": "H3"},
    "ACE": {"HH31": "H1", "HH32": "H2", "HH33": "H3"},
    "HOH": {"OW": "O", "HW1": "H1", "HW2": "H2"},
}
"""Atom names compared as the same atom, per canonical residue name (``None``: any residue)."""

_LABEL = re.compile(r"^(?P<res>.+?)(?P<num>-?\d+)-(?P<atom>[^-]+)$")


def canonical_name(resname: str, atom: str) -> tuple[str, str]:
    """``(residue, atom)`` names after :data:`RESIDUE_ALIASES` and :data:`ATOM_ALIASES`."""
    res = RESIDUE_ALIASES.get(resname.upper(), resname.upper())
    name = atom.upper()
    name = ATOM_ALIASES.get(res, {}).get(name, ATOM_ALIASES[None].get(name, name))
    return res, name


def _parses(label: str) -> list[tuple[str, int, str]]:
    """Every reading ``(resname, resseq, atom)`` of a label: residue names may end in digits."""
    m = _LABEL.match(label)
    if m is None:
        return []
    head, atom = label.rsplit("-", 1)
    out = []
    for cut in range(1, len(head)):
        res, num = head[:cut], head[cut:]
        if re.fullmatch(r"-?\d+", num) and not res.endswith("-"):
            out.append((res, int(num), atom))
    return out


@dataclass(frozen=True)
class AtomMapping:
    """Where each atom of a spec sits in another topology.

    Attributes
    ----------
    old_to_new : dict int -> int
        0-based index in the spec's topology -> 0-based index in the new topology.
    old_labels, new_labels : dict int -> str
        The labels (``'ALA2-CA'``) on both sides, keyed by the respective index.
    n_atoms : int
        Atoms of the new topology.
    source : str
        The new topology, as named in messages.
    """

    old_to_new: dict[int, int]
    old_labels: dict[int, str]
    new_labels: dict[int, str]
    n_atoms: int
    source: str

    @property
    def is_identity(self) -> bool:
        """True if every atom keeps its index."""
        return all(k == v for k, v in self.old_to_new.items())

    def describe(self) -> list[str]:
        """One line per atom: ``gmvae-cv i (label) -> PLUMED j (label)`` (PLUMED numbers 1-based)."""
        return [
            f"{old:>5d} {self.old_labels[old]:<12s} -> {new + 1:>6d} {self.new_labels[new]}"
            for old, new in sorted(self.old_to_new.items())
        ]


def _topology(topology: Any, source: Optional[str]):
    if isinstance(topology, md.Trajectory):
        return topology.topology, source or "topology"
    if isinstance(topology, md.Topology):
        return topology, source or "topology"
    if hasattr(topology, "atoms") and hasattr(topology, "residues"):  # openmm.app.Topology
        return md.Topology.from_openmm(topology), source or "topology"
    path = os.fspath(topology)
    if not os.path.isfile(path):
        raise GMVAEInputError(f"{path}: file not found (expected a structure/topology file, e.g. conf.gro or a PDB)")
    try:
        return md.load_topology(path), source or path
    except Exception as exc:  # mdtraj raises many types for unreadable files
        raise GMVAEInputError(f"{path}: cannot read a topology ({exc})") from None


def map_spec_atoms(spec: Any, topology: Any, *, residue_offset: int = 0, source: Optional[str] = None) -> AtomMapping:
    """Find every labelled atom of ``spec`` in ``topology`` by residue name, number and atom name.

    Parameters
    ----------
    spec : FeatureSpec
        The features; every atom they use needs a label in ``spec.atom_labels``.
    topology : path, mdtraj.Topology/Trajectory or openmm.app.Topology
        The other topology of the same molecule (may contain more atoms: solvent, ions).
    residue_offset : int
        Added to the spec's residue numbers before comparing (for a topology that numbers the
        residues from another start).
    source : str, optional
        Name of the topology in messages (default: its path).

    Returns
    -------
    AtomMapping

    Raises
    ------
    GMVAEInputError
        A used atom without a label, an atom not found, found more than once, or two spec
        atoms on one atom of the new topology. The message names every atom concerned.
    """
    top, where = _topology(topology, source)
    residue_offset = int(residue_offset)
    used = [int(a) for a in spec.atoms_used]
    unlabelled = [a for a in used if a not in spec.atom_labels]
    if unlabelled:
        raise GMVAEInputError(
            f"the feature spec has no residue/atom label for atoms {unlabelled} (0-based) it uses, so they cannot be "
            f"found in {where} by name; rebuild the spec on a topology with residue and atom names"
        )
    index: dict[tuple[str, int, str], list[int]] = {}
    new_labels: dict[int, str] = {}
    for atom in top.atoms:
        res, name = canonical_name(atom.residue.name, atom.name)
        index.setdefault((res, int(atom.residue.resSeq), name), []).append(atom.index)
        new_labels[atom.index] = f"{atom.residue.name}{atom.residue.resSeq}-{atom.name}"

    old_to_new: dict[int, int] = {}
    missing, ambiguous = [], []
    for old in used:
        label = spec.atom_labels[old]
        found: set[int] = set()
        for res, num, name in _parses(label):
            c_res, c_name = canonical_name(res, name)
            found.update(index.get((c_res, num + residue_offset, c_name), []))
        if not found:
            missing.append(f"{old} ({label})")
        elif len(found) > 1:
            ambiguous.append(f"{old} ({label}) -> " + ", ".join(f"{j + 1} ({new_labels[j]})" for j in sorted(found)))
        else:
            old_to_new[old] = found.pop()
    problems = []
    if missing:
        shift = f" with residue numbers shifted by {residue_offset}" if residue_offset else ""
        problems.append(f"no atom with the same residue name, residue number{shift} and atom name for spec atoms "
                        + "; ".join(missing))
    if ambiguous:
        problems.append("several atoms match spec atoms " + "; ".join(ambiguous) + " (PLUMED numbers, 1-based)")
    inverse: dict[int, list[int]] = {}
    for old, new in old_to_new.items():
        inverse.setdefault(new, []).append(old)
    shared = {new: olds for new, olds in inverse.items() if len(olds) > 1}
    if shared:
        problems.append("spec atoms share one atom: " + "; ".join(
            f"{', '.join(f'{o} ({spec.atom_labels[o]})' for o in olds)} -> {new + 1} ({new_labels[new]})"
            for new, olds in sorted(shared.items())))
    if problems:
        raise GMVAEInputError(
            f"{where}: the atoms of the feature spec (0-based indices, labels RESNAME+RESSEQ-ATOM) do not map one-to-one "
            f"onto this topology ({top.n_atoms} atoms): " + ". ".join(problems)
        )
    return AtomMapping(
        old_to_new=old_to_new,
        old_labels={a: spec.atom_labels[a] for a in used},
        new_labels={new: new_labels[new] for new in old_to_new.values()},
        n_atoms=int(top.n_atoms),
        source=str(where),
    )


def remap_spec(spec: Any, mapping: AtomMapping, *, description: Optional[str] = None) -> Any:
    """``spec`` with its atom indices replaced by ``mapping.old_to_new``, over ``mapping.n_atoms`` atoms.

    The features keep their names, order and parameters; ``atom_labels`` become the new
    topology's labels. ``spec.periodic`` is kept.
    """
    data = spec.to_dict()
    for f in data["features"]:
        f["atoms"] = [mapping.old_to_new[int(a)] for a in f["atoms"]]
    data["n_atoms"] = mapping.n_atoms
    data["atom_labels"] = {str(new): mapping.new_labels[new] for new in mapping.old_to_new.values()}
    if description is not None:
        data["description"] = description
    return FeatureSpec.from_dict(data, source=mapping.source)


def mapping_comment(mapping: AtomMapping) -> list[str]:
    """Comment lines for a PLUMED input: which topology, and the atoms that moved."""
    moved = [(o, n) for o, n in sorted(mapping.old_to_new.items()) if o != n]
    lines = [f"# Atoms mapped by residue and atom name onto {os.path.basename(mapping.source)} ({mapping.n_atoms} atoms):"]
    if not moved:
        lines.append("#   every atom the features use keeps its number")
    else:
        lines.append("#   exported atom (0-based, label) -> PLUMED atom number here (1-based, label)")
        lines += [f"#   {o} {mapping.old_labels[o]} -> {n + 1} {mapping.new_labels[n]}" for o, n in moved]
    return lines
