"""Building a polystyrene chain: chirality, start torsions, united-atom positions and topology.

The backbone ``B_0 .. B_2N`` is placed from internal coordinates (0.154 nm bonds, TraPPE bending
angles 112 deg at CH and 114 deg at CH2, the torsions asked for); each phenyl is a regular
hexagon (0.140 nm sides) whose ipso carbon sits on the CH's substituent direction, the side
chosen by the CH's configuration sign. See :mod:`gmvae_cv.systems.polystyrene` for the names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from openmm import app

from ..._core.errors import GMVAEInputError
from .._internal_coordinates import place

__all__ = [
    "TACTICITIES",
    "CONFORMATIONS",
    "BACKBONE_BOND_NM",
    "RING_BOND_NM",
    "RING_NAMES",
    "chirality_signs",
    "start_torsions",
    "build_chain",
]

TACTICITIES = ("syndiotactic", "isotactic", "atactic")
"""Stereochemistries :class:`Polystyrene` builds."""
CONFORMATIONS = ("zigzag", "helix")
"""Named start conformations: all-trans, and TTGG (diads alternately tt and gg)."""
BACKBONE_BOND_NM = 0.154
"""TraPPE-UA CHx-CHy and CHx-C(aro) bond length, nm."""
RING_BOND_NM = 0.140
"""TraPPE-UA aromatic C-C bond length, nm."""

_ANGLE_CH_DEG = 112.0
_ANGLE_CH2_DEG = 114.0
_GAUCHE_DEG = -60.0
RING_NAMES = ("CG", "CD1", "CE1", "CZ", "CE2", "CD2")
"""Ring sites in order around the ring, ``CG`` the ipso carbon."""


def chirality_signs(n_monomers: int, tacticity: str, seed: int) -> np.ndarray:
    """Configuration sign (+1/-1) of each backbone CH, shape ``(n_monomers,)``; atactic draws with ``seed``."""
    if tacticity == "isotactic":
        return np.ones(n_monomers, dtype=np.int64)
    if tacticity == "syndiotactic":
        return np.where(np.arange(n_monomers) % 2 == 0, 1, -1).astype(np.int64)
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([1, -1], dtype=np.int64), size=n_monomers)


def start_torsions(n_monomers: int, conformation: Any) -> np.ndarray:
    """The ``2N - 2`` backbone torsions (degrees) of a named conformation or a given list (checked)."""
    n_tor = 2 * n_monomers - 2
    if isinstance(conformation, str):
        if conformation == "zigzag":
            return np.full(n_tor, 180.0)
        if conformation == "helix":
            # diads alternately tt and g-g- (-60 deg): ... T T G G T T G G ...; for the syndiotactic
            # chain built here (first CH +1) this register and sign minimise lowest (-71 vs -55 kJ/mol)
            pairs = [(180.0, 180.0) if k % 2 == 0 else (_GAUCHE_DEG, _GAUCHE_DEG) for k in range(n_monomers - 1)]
            return np.array([t for p in pairs for t in p])
        raise GMVAEInputError(
            f"'conformation' is {conformation!r}, expected one of {list(CONFORMATIONS)} or {n_tor} backbone torsions in degrees"
        )
    tor = np.asarray(conformation, dtype=float)
    if tor.shape != (n_tor,) or not np.all(np.isfinite(tor)):
        raise GMVAEInputError(
            f"'conformation' has shape {tor.shape}, expected {n_tor} finite backbone torsions in degrees "
            f"(2 n_monomers - 2 for n_monomers = {n_monomers}) or one of {list(CONFORMATIONS)}"
        )
    return tor


def _backbone_positions(torsions_deg: np.ndarray) -> np.ndarray:
    """Backbone ``B_0 .. B_2N`` (nm) from internal coordinates: 0.154 nm bonds, TraPPE angles."""
    n_back = len(torsions_deg) + 3
    pos = np.zeros((n_back, 3))
    b = BACKBONE_BOND_NM
    pos[1] = (b, 0.0, 0.0)
    a1 = np.radians(_ANGLE_CH_DEG)  # angle at B_1 (a CH)
    pos[2] = pos[1] + b * np.array([-np.cos(a1), np.sin(a1), 0.0])
    for i in range(3, n_back):
        angle = _ANGLE_CH_DEG if (i - 1) % 2 == 1 else _ANGLE_CH2_DEG  # angle at B_(i-1)
        pos[i] = place(pos[i - 3], pos[i - 2], pos[i - 1], b, angle, torsions_deg[i - 3])
    return pos


def _ring_positions(ch: np.ndarray, prev: np.ndarray, nxt: np.ndarray, sign: int) -> np.ndarray:
    """The six ring sites (order :data:`RING_NAMES`) of the phenyl on backbone CH ``ch``."""
    u1 = (prev - ch) / np.linalg.norm(prev - ch)
    u2 = (nxt - ch) / np.linalg.norm(nxt - ch)
    bis = (u1 + u2) / np.linalg.norm(u1 + u2)
    n = np.cross(u1, u2)
    n /= np.linalg.norm(n)
    half = np.radians(54.75)  # half the tetrahedral angle: substituent between the two backbone bonds
    d = -np.cos(half) * bis + sign * np.sin(half) * n
    d /= np.linalg.norm(d)
    p = np.cross(d, u2 - u1)  # ring plane across the local chain direction
    p /= np.linalg.norm(p)
    ipso = ch + BACKBONE_BOND_NM * d
    centre = ipso + RING_BOND_NM * d
    ang = np.radians(60.0 * np.arange(6))
    return centre + RING_BOND_NM * (-np.cos(ang)[:, None] * d + np.sin(ang)[:, None] * p)


def build_chain(n_monomers: int, chirality: np.ndarray, torsions_deg: np.ndarray):
    """Topology, positions (nm), backbone indices ``(2N + 1,)`` and ring indices ``(N, 6)`` of the chain."""
    carbon = app.Element.getBySymbol("C")
    backbone = _backbone_positions(torsions_deg)
    top = app.Topology()
    chain = top.addChain(id="A")
    pos: list[np.ndarray] = []
    back_idx = np.zeros(2 * n_monomers + 1, dtype=np.int64)
    ring_idx = np.zeros((n_monomers, 6), dtype=np.int64)
    atoms: dict[int, Any] = {}  # backbone position -> openmm atom
    ring_atoms: list[list[Any]] = []

    def add(name, res, xyz, bpos=None):
        atom = top.addAtom(name, carbon, res)
        pos.append(np.asarray(xyz, dtype=float))
        if bpos is not None:
            back_idx[bpos] = atom.index
            atoms[bpos] = atom
        return atom

    for k in range(n_monomers):
        name = "STB" if k == 0 else ("STE" if k == n_monomers - 1 else "STY")
        res = top.addResidue(name, chain, id=str(k + 1))
        ca = 2 * k + 1
        if k == 0:
            add("CT", res, backbone[0], 0)
        add("CA", res, backbone[ca], ca)
        if k == n_monomers - 1:
            add("CT", res, backbone[ca + 1], ca + 1)
        else:
            add("CB", res, backbone[ca + 1], ca + 1)
        ring_xyz = _ring_positions(backbone[ca], backbone[ca - 1], backbone[ca + 1], int(chirality[k]))
        ring = [add(nm, res, xyz) for nm, xyz in zip(RING_NAMES, ring_xyz)]
        ring_idx[k] = [a.index for a in ring]
        ring_atoms.append(ring)
    for i in range(len(back_idx) - 1):
        top.addBond(atoms[i], atoms[i + 1])
    for k, ring in enumerate(ring_atoms):
        top.addBond(atoms[2 * k + 1], ring[0])
        for j in range(6):
            top.addBond(ring[j], ring[(j + 1) % 6])
    return top, np.array(pos), back_idx, ring_idx
