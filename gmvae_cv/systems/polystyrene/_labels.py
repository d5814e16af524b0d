"""Features and labels of polystyrene frames: backbone torsions, their rotational states, diads, chain states.

:func:`polystyrene_backbone_torsions` is the FeatureSpec of the ``2N - 2`` backbone torsions;
:func:`torsion_states` (T, G+, G-), :func:`diad_labels` (TT, TG, GG), :func:`tt_fraction`,
:func:`ttgg_fraction` and :func:`chain_state` (zigzag-rich, helix-rich core sets) label frames
from those torsions (rad, chain order). Conventions in :mod:`gmvae_cv.systems.polystyrene`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._core.checks import check_array
from ..._core.errors import GMVAEInputError
from ...features import FeatureSpec, torsion, torsion_sincos
from ...features import as_mdtraj_topology, atom_label

__all__ = [
    "polystyrene_backbone_torsions",
    "backbone_torsion_atoms",
    "torsion_states",
    "diad_labels",
    "tt_fraction",
    "ttgg_fraction",
    "chain_state",
    "TORSION_STATE_NAMES",
    "DIAD_NAMES",
    "CHAIN_STATE_NAMES",
]

TORSION_STATE_NAMES = {0: "T", 1: "G+", 2: "G-"}
"""Labels of :func:`torsion_states`: trans ``|phi| >= 120 deg``, gauche+ ``0 <= phi < 120``,
gauche- ``-120 < phi < 0`` (degrees, IUPAC sign)."""
DIAD_NAMES = {0: "TT", 1: "TG", 2: "GG"}
"""Labels of :func:`diad_labels` (TG includes GT; GG includes g+g- as well as g+g+, g-g-)."""
CHAIN_STATE_NAMES = {0: "zigzag-rich", 1: "helix-rich", -1: "other"}
"""Labels of :func:`chain_state`."""


def dihedrals(xyz: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Dihedrals (rad, IUPAC sign) of ``quads`` ``(n, 4)`` in frames ``xyz`` ``(n_frames, n_atoms, 3)``."""
    p0, p1, p2, p3 = (xyz[:, quads[:, m]] for m in range(4))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1 = np.cross(b0, b1)
    n2 = np.cross(b1, b2)
    y = np.linalg.norm(b1, axis=-1) * np.sum(b0 * n2, axis=-1)
    return np.arctan2(y, np.sum(n1 * n2, axis=-1))


def backbone_torsion_atoms(topology: Any) -> np.ndarray:
    """Atom quadruples ``(2N - 2, 4)`` of the backbone torsions of a :class:`Polystyrene` topology.

    The backbone is found by residue order and atom names (``STB``: CT, CA, CB; ``STY``: CA, CB;
    ``STE``: CA, CT), so a PDB without CONECT records works too.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path
        A chain written by :meth:`Polystyrene.simulate` (``topology.pdb``) or built by it.
    """
    top = as_mdtraj_topology(topology)
    order = {"STB": ("CT", "CA", "CB"), "STY": ("CA", "CB"), "STE": ("CA", "CT")}
    residues = list(top.residues)
    if len(residues) < 3 or residues[0].name != "STB" or residues[-1].name != "STE":
        names = [r.name for r in residues[:4]]
        raise GMVAEInputError(
            f"'topology' has residues {names}{'...' if len(residues) > 4 else ''}, expected a polystyrene chain "
            "STB, STY..., STE (as gmvae_cv.systems.Polystyrene writes it)"
        )
    backbone = []
    for res in residues:
        want = order.get(res.name)
        if want is None:
            raise GMVAEInputError(f"'topology' residue {res.name}{res.resSeq} is not STB, STY or STE (a polystyrene chain)")
        for name in want:
            hits = [a.index for a in res.atoms if a.name == name]
            if len(hits) != 1:
                raise GMVAEInputError(
                    f"'topology' residue {res.name}{res.resSeq} has {len(hits)} atoms named {name!r}, expected 1"
                )
            backbone.append(hits[0])
    return torsion_quadruples(np.asarray(backbone, dtype=np.int64))


def torsion_quadruples(backbone: np.ndarray) -> np.ndarray:
    """Atom quadruples ``(n - 3, 4)`` of the consecutive torsions along ``backbone`` ``(n,)``."""
    b = backbone
    return np.stack([b[:-3], b[1:-2], b[2:-1], b[3:]], axis=1)


def polystyrene_backbone_torsions(topology: Any, *, transform: str = "sincos", periodic: bool = True):
    """Sines and cosines of the ``2N - 2`` backbone torsions of a polystyrene chain.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path
        A :class:`Polystyrene` topology (see :func:`backbone_torsion_atoms`).
    transform : {'sincos', 'raw'}
        ``'sincos'``: ``sin_t00, cos_t00, sin_t01, ...`` (``4N - 4`` features, dimensionless);
        ``'raw'``: ``t00, t01, ...`` in rad.
    periodic : bool
        The spec's periodic flag (vacuum runs have no box, so nothing is wrapped).

    Returns
    -------
    FeatureSpec
        Torsion ``tkk`` is backbone torsion ``k`` (atoms ``B_k .. B_(k+3)``); ``t(2j)``, ``t(2j+1)``
        flank the CH2 of diad ``j``.

    Examples
    --------
    >>> from gmvae_cv.systems import Polystyrene
    >>> spec = polystyrene_backbone_torsions(Polystyrene(4, minimize=False).topology)
    >>> spec.n_features, spec.names[:3]
    (12, ['sin_t00', 'cos_t00', 'sin_t01'])
    """
    top = as_mdtraj_topology(topology)
    quads = backbone_torsion_atoms(top)
    if transform == "sincos":
        feats = [f for k, q in enumerate(quads) for f in torsion_sincos(*(int(a) for a in q), name=f"t{k:02d}")]
    elif transform == "raw":
        feats = [torsion(*(int(a) for a in q), name=f"t{k:02d}") for k, q in enumerate(quads)]
    else:
        raise GMVAEInputError(f"'transform' is {transform!r}, expected 'sincos' or 'raw'")
    labels = {int(a): atom_label(top.atom(int(a))) for a in np.unique(quads)}
    n_mono = (len(quads) + 2) // 2
    return FeatureSpec(
        feats, top.n_atoms, periodic=periodic, atom_labels=labels,
        description=f"polystyrene ({n_mono} monomers): {len(quads)} backbone torsions ({transform})",
    )


def _torsion_array(phi: Any, name: str = "phi", *, even: bool = True) -> np.ndarray:
    arr = check_array(phi, name)
    if arr.ndim not in (1, 2):
        raise GMVAEInputError(f"'{name}' has shape {arr.shape}, expected (n_torsions,) or (n_frames, n_torsions)")
    arr = arr[None] if arr.ndim == 1 else arr
    if even and (arr.shape[1] < 2 or arr.shape[1] % 2):
        raise GMVAEInputError(
            f"'{name}' has {arr.shape[1]} torsions per frame, expected an even number 2N - 2 >= 2 (backbone torsions in chain order)"
        )
    if arr.size and np.max(np.abs(arr)) > 2 * np.pi + 1e-6:
        raise GMVAEInputError(f"'{name}' has values beyond 2 pi, expected radians (convert degrees with np.radians)")
    return arr


def torsion_states(phi: Any) -> np.ndarray:
    """Rotational state of each backbone torsion: 0 = T, 1 = G+, 2 = G- (:data:`TORSION_STATE_NAMES`).

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, n_torsions)`` or ``(n_torsions,)``
        Backbone torsions in rad (e.g. :meth:`Polystyrene.backbone_torsion_angles` or the
        ``'raw'`` :func:`polystyrene_backbone_torsions` features).

    Returns
    -------
    ndarray of int, shape ``(n_frames, n_torsions)``

    Examples
    --------
    >>> torsion_states(np.radians([180.0, -170.0, 65.0, -60.0])).tolist()
    [[0, 0, 1, 2]]
    """
    arr = _torsion_array(phi, even=False)
    deg = np.degrees(np.angle(np.exp(1j * arr)))  # wrapped to (-180, 180]
    states = np.zeros(arr.shape, dtype=np.int64)
    states[(deg >= 0) & (deg < 120)] = 1
    states[(deg < 0) & (deg > -120)] = 2
    return states


def diad_labels(phi: Any) -> np.ndarray:
    """Each diad's torsion pair (torsions ``2j``, ``2j + 1``) as 0 = TT, 1 = TG/GT, 2 = GG.

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, 2N - 2)`` or ``(2N - 2,)``
        Backbone torsions in rad, in chain order.

    Returns
    -------
    ndarray of int, shape ``(n_frames, N - 1)``
        See :data:`DIAD_NAMES`.

    Examples
    --------
    >>> diad_labels(np.radians([180, 180, -60, -60, 180, 60])).tolist()
    [[0, 2, 1]]
    """
    gauche = torsion_states(_torsion_array(phi)) > 0
    return gauche[:, 0::2].astype(np.int64) + gauche[:, 1::2]


def tt_fraction(phi: Any) -> np.ndarray:
    """Fraction of the chain's diads in the zigzag state TT, per frame, shape ``(n_frames,)``.

    Examples
    --------
    >>> tt_fraction(np.radians([180, 180, -60, -60, 180, 180])).tolist()
    [0.6666666666666666]
    """
    return np.mean(diad_labels(phi) == 0, axis=1)


def ttgg_fraction(phi: Any) -> np.ndarray:
    """Fraction of neighbouring diad pairs that form a TTGG helix stretch, per frame.

    A pair of diads ``(j, j + 1)`` counts when one is TT and the other GG with both gauche of
    one sign (g+g+ or g-g-; the s(2/1)2 helix of sPS is ...tt g-g- tt g-g-... or its mirror).
    An ideal TTGG helix gives 1, the all-trans zigzag 0.

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, 2N - 2)`` or ``(2N - 2,)``
        Backbone torsions in rad, at least 4 (two diads).

    Returns
    -------
    ndarray, shape ``(n_frames,)``

    Examples
    --------
    >>> ttgg_fraction(np.radians([180, 180, -60, -60, 180, 180, -60, -60])).tolist()
    [1.0]
    >>> ttgg_fraction(np.radians([180, 180, 60, -60, 180, 180])).tolist()  # g+g- is no helix
    [0.0]
    """
    st = torsion_states(_torsion_array(phi))
    if st.shape[1] < 4:
        raise GMVAEInputError(f"'phi' has {st.shape[1]} torsions per frame, expected at least 4 (two diads) for TTGG")
    tt = (st[:, 0::2] == 0) & (st[:, 1::2] == 0)
    gg = (st[:, 0::2] > 0) & (st[:, 0::2] == st[:, 1::2])
    pair = (tt[:, :-1] & gg[:, 1:]) | (gg[:, :-1] & tt[:, 1:])
    return np.mean(pair, axis=1)


def chain_state(phi: Any, *, zigzag: float = 0.75, helix: float = 0.6) -> np.ndarray:
    """Core-set label per frame: 0 = zigzag-rich, 1 = helix-rich, -1 = neither.

    Zigzag-rich: :func:`tt_fraction` >= ``zigzag``; helix-rich: :func:`ttgg_fraction` >=
    ``helix``; a frame that meets both (possible on short chains) or neither is -1. For 10
    monomers (9 diads, 8 diad pairs) the defaults ask for 7 of 9 diads TT, or 5 of 8 pairs TTGG.
    Count transitions between the two cores, skipping frames labelled -1, so that recrossings of
    the barrier region do not count.

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, 2N - 2)``
        Backbone torsions in rad.
    zigzag, helix : float
        Thresholds in (0, 1].

    Returns
    -------
    ndarray of int, shape ``(n_frames,)``

    Examples
    --------
    >>> zig, hel = [np.pi] * 8, np.radians([180, 180, -60, -60] * 2)
    >>> chain_state(np.array([zig, hel])).tolist()
    [0, 1]
    """
    for name, value in (("zigzag", zigzag), ("helix", helix)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise GMVAEInputError(f"'{name}' is {value!r}, expected a fraction in (0, 1]")
    is_zig, is_hel = tt_fraction(phi) >= zigzag, ttgg_fraction(phi) >= helix
    out = np.full(is_zig.shape, -1, dtype=np.int64)
    out[is_zig & ~is_hel] = 0
    out[is_hel & ~is_zig] = 1
    return out
