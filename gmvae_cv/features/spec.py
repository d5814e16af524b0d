"""Feature specifications: typed geometric features over the atoms of a topology.

A :class:`FeatureSpec` is an ordered list of features, each one column of the feature matrix:

=============  =========================  =====  ==================================================
type           atoms (0-based)            unit   value
=============  =========================  =====  ==================================================
``distance``   ``(i, j)``                 nm     :math:`|x_j - x_i|`
``angle``      ``(i, j, k)``              rad    angle at ``j`` between ``i-j`` and ``k-j``, in [0, pi]
``torsion``    ``(i, j, k, l)``           rad/1  dihedral in (-pi, pi] (IUPAC/PLUMED/mdtraj sign),
                                                 or its ``sin`` / ``cos``
``contact``    ``(i, j)`` + ``r0, n, m``  1      :math:`(1-(r/r_0)^n)/(1-(r/r_0)^m)`, PLUMED's
                                                 RATIONAL switching function with ``D_0=0``
=============  =========================  =====  ==================================================

One spec has three renderings that agree to float64 round-off (the tests check them against each
other, against mdtraj and against the real PLUMED kernel):

* :meth:`FeatureSpec.compute` -- NumPy over an :class:`mdtraj.Trajectory` or a positions array,
  returns ``(n_frames, n_features)``;
* :meth:`FeatureSpec.torch_module` -- a TorchScript-able :class:`FeatureModule` over a positions
  tensor in nm, differentiable, with an optional periodic box (minimum image, triclinic allowed);
* :meth:`FeatureSpec.plumed_input` -- PLUMED input lines (1-based atom numbers, nm, rad) and the
  ordered ``ARG`` list.

Periodic boundaries. ``spec.periodic`` (default True) means "apply the minimum-image convention
whenever a box is known", which is what PLUMED (without ``NOPBC``) and mdtraj (``periodic=True``)
do: with no box (vacuum, a trajectory without unit cell) nothing is wrapped. With
``periodic=False`` no rendering ever wraps (PLUMED lines carry ``NOPBC``). Bond vectors of angles
and torsions are minimum-imaged too, as in PLUMED and mdtraj. For triclinic boxes the minimum
image is searched over the 27 neighbouring images after wrapping in fractional coordinates; this
is exact for the reduced boxes that MD engines use.
"""

from __future__ import annotations

from importlib import resources

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from .._core.errors import GMVAEInputError
from .._core.jsonfile import check_stamp, stamped
from .._core.files import atomic_write_json
from .._core.checks import check_array, check_int

__all__ = [
    "Feature",
    "Distance",
    "Angle",
    "Torsion",
    "Contact",
    "distance",
    "angle",
    "torsion",
    "torsion_sincos",
    "contact",
    "FeatureSpec",
    "FeatureModule",
    "PlumedFeatures",
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "check_length_units",
    "features_from_selection",
    "alanine_heavy_atom_distances",
    "alanine_backbone_torsions",
    "phi_psi",
    "load_trajectory_features",
]

SPEC_FORMAT = "gmvae-cv/feature-spec"
"""Value of the ``"format"`` field of a spec file."""
SPEC_VERSION = 1
"""Version of the spec file layout written by :meth:`FeatureSpec.to_dict`."""

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TORSION_TRANSFORMS = ("raw", "sin", "cos")
# |log(r/r0)| below which the contact switching function uses its Taylor series around r = r0
# (the closed form is 0/0 there). The series is exact to float64 round-off in this window.
_CONTACT_LIMIT_WINDOW = 1e-9


# ------------------------------------------------------------------------------------ features
def _check_atoms(atoms: Any, n: int, kind: str) -> tuple[int, ...]:
    try:
        seq = tuple(atoms)
    except TypeError:
        raise GMVAEInputError(f"'atoms' is {atoms!r}, expected {n} atom indices for a {kind}") from None
    if len(seq) != n:
        raise GMVAEInputError(f"'atoms' has {len(seq)} entries {list(seq)}, expected {n} atom indices for a {kind}")
    out = []
    for a in seq:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 0:
            raise GMVAEInputError(f"'atoms' contains {a!r}, expected non-negative integer atom indices (0-based)")
        out.append(int(a))
    if len(set(out)) != n:
        raise GMVAEInputError(f"'atoms' is {out}, expected {n} distinct atoms for a {kind}")
    return tuple(out)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise GMVAEInputError(
            f"'name' is {name!r}, expected an identifier (letters, digits, '_'; not starting with a digit)"
        )
    return name


@dataclass(frozen=True)
class Feature:
    """One column of a feature matrix: a typed function of a few atom positions.

    Use the subclasses (:class:`Distance`, :class:`Angle`, :class:`Torsion`, :class:`Contact`) or
    the factory functions :func:`distance`, :func:`angle`, :func:`torsion`, :func:`contact`.

    Attributes
    ----------
    atoms : tuple of int
        0-based atom indices into the topology the spec was built on.
    name : str
        Stable identifier (used as column name and in PLUMED comments).
    """

    atoms: tuple[int, ...]
    name: str
    kind: ClassVar[str] = ""
    n_atoms_needed: ClassVar[int] = 0
    unit: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "atoms", _check_atoms(self.atoms, self.n_atoms_needed, self.kind))
        _check_name(self.name)

    def params(self) -> dict:
        """Type-specific parameters (JSON-serialisable)."""
        return {}

    def to_dict(self) -> dict:
        """The JSON form: ``{"type", "name", "atoms", **params}``."""
        return {"type": self.kind, "name": self.name, "atoms": list(self.atoms), **self.params()}


@dataclass(frozen=True)
class Distance(Feature):
    """Distance between atoms ``i`` and ``j`` in nm."""

    kind: ClassVar[str] = "distance"
    n_atoms_needed: ClassVar[int] = 2
    unit: ClassVar[str] = "nm"


@dataclass(frozen=True)
class Angle(Feature):
    """Angle ``i-j-k`` (vertex ``j``) in rad, in [0, pi]; PLUMED's ``ANGLE ATOMS=i,j,k``."""

    kind: ClassVar[str] = "angle"
    n_atoms_needed: ClassVar[int] = 3
    unit: ClassVar[str] = "rad"


@dataclass(frozen=True)
class Torsion(Feature):
    """Dihedral angle ``i-j-k-l`` in rad, in (-pi, pi], or its sine or cosine.

    The sign convention is IUPAC's, shared by PLUMED's ``TORSION`` and
    :func:`mdtraj.compute_dihedrals`: looking down ``j -> k``, positive is clockwise rotation of
    ``i`` onto ``l``. Alanine dipeptide's C7eq minimum has phi close to -83 degrees.

    Attributes
    ----------
    transform : {'raw', 'sin', 'cos'}
        ``'raw'`` gives the angle (rad, periodic), ``'sin'``/``'cos'`` its sine/cosine (unitless).
    """

    transform: str = "raw"
    kind: ClassVar[str] = "torsion"
    n_atoms_needed: ClassVar[int] = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transform not in _TORSION_TRANSFORMS:
            raise GMVAEInputError(
                f"'transform' is {self.transform!r}, expected one of {', '.join(_TORSION_TRANSFORMS)}"
            )

    @property
    def unit(self) -> str:  # type: ignore[override]
        return "rad" if self.transform == "raw" else "1"

    def params(self) -> dict:
        return {"transform": self.transform}


@dataclass(frozen=True)
class Contact(Feature):
    r"""Rational switching function of the ``i-j`` distance (unitless, 1 at contact, 0 far).

    .. math:: s(r) = \frac{1 - (r/r_0)^n}{1 - (r/r_0)^m}, \qquad s(r_0) = n/m,

    PLUMED's ``RATIONAL`` switching function with ``D_0=0`` and no ``D_MAX`` cut-off.

    Attributes
    ----------
    r0 : float
        Switching distance in nm, > 0.
    n, m : int
        Exponents, ``0 < n < m``.
    """

    r0: float = float("nan")
    n: int = 6
    m: int = 12
    kind: ClassVar[str] = "contact"
    n_atoms_needed: ClassVar[int] = 2
    unit: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            r0 = float(self.r0)
        except (TypeError, ValueError):
            raise GMVAEInputError(f"'r0' is {self.r0!r}, expected a distance in nm > 0") from None
        if not np.isfinite(r0) or r0 <= 0:
            raise GMVAEInputError(f"'r0' is {self.r0!r}, expected a distance in nm > 0")
        object.__setattr__(self, "r0", r0)
        n = check_int(self.n, "n", minimum=1)
        m = check_int(self.m, "m", minimum=1)
        if m <= n:
            raise GMVAEInputError(f"'m' is {m}, expected an integer > n = {n} (a switching function decays)")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "m", m)

    def params(self) -> dict:
        return {"r0": self.r0, "n": self.n, "m": self.m}


_FEATURE_TYPES: dict[str, type[Feature]] = {c.kind: c for c in (Distance, Angle, Torsion, Contact)}
_GROUP_ORDER = ("distance", "angle", "torsion", "contact")


def distance(i: int, j: int, *, name: Optional[str] = None) -> Distance:
    """Distance between atoms ``i`` and ``j`` (0-based) in nm; default name ``d_i_j``.

    Examples
    --------
    >>> distance(4, 14).name
    'd_4_14'
    """
    return Distance((i, j), name if name is not None else f"d_{i}_{j}")


def angle(i: int, j: int, k: int, *, name: Optional[str] = None) -> Angle:
    """Angle ``i-j-k`` with vertex ``j`` in rad; default name ``a_i_j_k``."""
    return Angle((i, j, k), name if name is not None else f"a_{i}_{j}_{k}")


def torsion(i: int, j: int, k: int, l: int, *, transform: str = "raw", name: Optional[str] = None) -> Torsion:
    """Torsion ``i-j-k-l`` (rad) or its ``'sin'``/``'cos'``.

    Default name ``tor_i_j_k_l``, prefixed by ``sin_``/``cos_`` for those transforms.

    Examples
    --------
    >>> torsion(4, 6, 8, 14, name="phi").to_dict()
    {'type': 'torsion', 'name': 'phi', 'atoms': [4, 6, 8, 14], 'transform': 'raw'}
    """
    if name is None:
        base = f"tor_{i}_{j}_{k}_{l}"
        name = base if transform == "raw" else f"{transform}_{base}"
    return Torsion((i, j, k, l), name, transform)


def torsion_sincos(i: int, j: int, k: int, l: int, *, name: Optional[str] = None) -> tuple[Torsion, Torsion]:
    """The pair ``(sin, cos)`` of torsion ``i-j-k-l``, named ``sin_<name>``, ``cos_<name>``.

    Examples
    --------
    >>> [f.name for f in torsion_sincos(4, 6, 8, 14, name="phi")]
    ['sin_phi', 'cos_phi']
    """
    base = name if name is not None else f"tor_{i}_{j}_{k}_{l}"
    return (
        Torsion((i, j, k, l), f"sin_{base}", "sin"),
        Torsion((i, j, k, l), f"cos_{base}", "cos"),
    )


def contact(i: int, j: int, r0: float, n: int = 6, m: int = 12, *, name: Optional[str] = None) -> Contact:
    """Rational switching function of distance ``i-j`` (see :class:`Contact`); default name ``c_i_j``.

    Parameters
    ----------
    i, j : int
        0-based atom indices.
    r0 : float
        Switching distance in nm.
    n, m : int
        Exponents, ``0 < n < m`` (PLUMED's ``NN``, ``MM``).
    """
    return Contact((i, j), name if name is not None else f"c_{i}_{j}", r0, n, m)


# ------------------------------------------------------------------------------------ the spec
class PlumedFeatures(NamedTuple):
    """PLUMED rendering of a :class:`FeatureSpec`.

    Attributes
    ----------
    lines : list of str
        Input lines (comments, ``UNITS``, one action per feature plus helper torsions).
    args : list of str
        Labels of the features, in spec order: ``ARG=`` + ``",".join(args)``.
    """

    lines: list[str]
    args: list[str]

    @property
    def text(self) -> str:
        """The lines joined with newlines (ends with a newline)."""
        return "\n".join(self.lines) + "\n"


class FeatureSpec:
    """An ordered list of features over the atoms of one topology.

    Parameters
    ----------
    features : sequence of Feature
        The columns, in order. Names must be unique.
    n_atoms : int
        Number of atoms of the topology the spec was built on; atom indices must be below it and
        positions given to the renderings must have exactly this many atoms.
    periodic : bool
        Apply the minimum-image convention when a box is known (see the module docstring).
    atom_labels : mapping int -> str, optional
        Labels such as ``'ALA2-CA'`` of the atoms used, recorded so that :meth:`check_topology`
        can detect a topology with another atom order.
    description : str
        Free text stored in the JSON file.

    Examples
    --------
    >>> spec = FeatureSpec([distance(1, 18), *torsion_sincos(4, 6, 8, 14, name="phi")], n_atoms=22)
    >>> spec.names
    ['d_1_18', 'sin_phi', 'cos_phi']
    >>> spec.n_features, spec.atoms_used.tolist()
    (3, [1, 4, 6, 8, 14, 18])
    """

    def __init__(
        self,
        features: Iterable[Feature],
        n_atoms: int,
        *,
        periodic: bool = True,
        atom_labels: Optional[Mapping[int, str]] = None,
        description: str = "",
    ) -> None:
        feats = tuple(features)
        for k, f in enumerate(feats):
            if not isinstance(f, Feature) or type(f) is Feature:
                raise GMVAEInputError(f"'features[{k}]' is {f!r}, expected a Distance, Angle, Torsion or Contact")
        if not feats:
            raise GMVAEInputError("'features' is empty, expected at least one feature")
        self.n_atoms = check_int(n_atoms, "n_atoms", minimum=1)
        for k, f in enumerate(feats):
            bad = [a for a in f.atoms if a >= self.n_atoms]
            if bad:
                raise GMVAEInputError(
                    f"'features[{k}].atoms' ({f.name}) contains atom index {bad[0]}, "
                    f"expected 0 <= index < n_atoms = {self.n_atoms}"
                )
        seen: dict[str, int] = {}
        for k, f in enumerate(feats):
            if f.name in seen:
                raise GMVAEInputError(
                    f"'features[{k}].name' is {f.name!r}, already used by features[{seen[f.name]}]; expected unique names"
                )
            seen[f.name] = k
        if not isinstance(periodic, bool):
            raise GMVAEInputError(f"'periodic' is {periodic!r}, expected true or false")
        self.features: tuple[Feature, ...] = feats
        self.periodic = periodic
        self.description = str(description)
        labels = {}
        for key, value in dict(atom_labels or {}).items():
            idx = int(key)
            if not 0 <= idx < self.n_atoms:
                raise GMVAEInputError(f"'atom_labels' has atom index {idx}, expected 0 <= index < n_atoms = {self.n_atoms}")
            labels[idx] = str(value)
        self.atom_labels: dict[int, str] = labels

    # -- basic properties
    @property
    def n_features(self) -> int:
        """Number of columns."""
        return len(self.features)

    @property
    def names(self) -> list[str]:
        """Feature names, in column order."""
        return [f.name for f in self.features]

    @property
    def units(self) -> list[str]:
        """Unit of each column: ``'nm'``, ``'rad'`` or ``'1'``."""
        return [f.unit for f in self.features]

    @property
    def atoms_used(self) -> np.ndarray:
        """Sorted unique 0-based indices of the atoms any feature reads, shape ``(n_used,)``."""
        return np.array(sorted({a for f in self.features for a in f.atoms}), dtype=np.int64)

    def __len__(self) -> int:
        return self.n_features

    def __iter__(self):
        return iter(self.features)

    def __getitem__(self, k: int) -> Feature:
        return self.features[k]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureSpec):
            return NotImplemented
        return (
            self.features == other.features
            and self.n_atoms == other.n_atoms
            and self.periodic == other.periodic
            and self.atom_labels == other.atom_labels
        )

    def __repr__(self) -> str:
        kinds = {k: sum(f.kind == k for f in self.features) for k in _GROUP_ORDER}
        what = ", ".join(f"{v} {k}" for k, v in kinds.items() if v)
        return f"FeatureSpec({self.n_features} features: {what}; n_atoms={self.n_atoms}, periodic={self.periodic})"

    # -- JSON
    def to_dict(self) -> dict:
        """JSON-serialisable form, stamped with ``format``/``format_version``."""
        return stamped(SPEC_FORMAT, SPEC_VERSION, {
            "units": {"length": "nm", "angle": "rad", "atom_indices": "0-based"},
            "n_atoms": self.n_atoms,
            "periodic": self.periodic,
            "description": self.description,
            "features": [f.to_dict() for f in self.features],
            "atom_labels": {str(k): v for k, v in sorted(self.atom_labels.items())},
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> "FeatureSpec":
        """Build a spec from :meth:`to_dict` output, checking every field.

        Raises
        ------
        GMVAEInputError
            Naming ``source``, the field (e.g. ``'features[3].type'``) and what was expected.
        """
        pre = f"{source}: " if source is not None else ""
        if not isinstance(data, Mapping):
            raise GMVAEInputError(f"{pre}top level is {type(data).__name__}, expected a JSON object (a feature spec)")
        data = check_stamp(dict(data), SPEC_FORMAT, (SPEC_VERSION,), source=source)
        for key in ("n_atoms", "features"):
            if key not in data:
                raise GMVAEInputError(f"{pre}missing field '{key}'")
        n_atoms = data["n_atoms"]
        if isinstance(n_atoms, bool) or not isinstance(n_atoms, int) or n_atoms < 1:
            raise GMVAEInputError(f"{pre}'n_atoms' is {n_atoms!r}, expected a positive integer")
        raw = data["features"]
        if not isinstance(raw, list) or not raw:
            raise GMVAEInputError(f"{pre}'features' is {raw!r:.60}, expected a non-empty list of feature objects")
        features = []
        for k, item in enumerate(raw):
            where = f"{pre}'features[{k}]"
            if not isinstance(item, Mapping):
                raise GMVAEInputError(f"{where}' is {item!r:.60}, expected an object with 'type', 'name', 'atoms'")
            kind = item.get("type")
            if kind is None:
                raise GMVAEInputError(f"{where}.type' is missing, expected one of {', '.join(_FEATURE_TYPES)}")
            if kind not in _FEATURE_TYPES:
                raise GMVAEInputError(f"{where}.type' is {kind!r}, expected one of {', '.join(_FEATURE_TYPES)}")
            fcls = _FEATURE_TYPES[kind]
            required = ["name", "atoms"] + (["transform"] if fcls is Torsion else []) + (
                ["r0", "n", "m"] if fcls is Contact else []
            )
            for key in required:
                if key not in item:
                    raise GMVAEInputError(f"{where}.{key}' is missing (required for a {kind} feature)")
            extra = set(item) - set(required) - {"type"}
            if extra:
                raise GMVAEInputError(f"{where}' has unknown field(s) {sorted(extra)}, expected only {['type', *required]}")
            kwargs = {key: item[key] for key in required}
            atoms = kwargs["atoms"]
            if isinstance(atoms, list):
                for a in atoms:
                    if isinstance(a, int) and not isinstance(a, bool) and a >= n_atoms:
                        raise GMVAEInputError(
                            f"{where}.atoms' contains atom index {a}, expected 0 <= index < n_atoms = {n_atoms}"
                        )
            try:
                features.append(fcls(**kwargs))
            except GMVAEInputError as exc:
                msg = str(exc)
                field_name = msg.split("'")[1] if msg.startswith("'") else ""
                raise GMVAEInputError(f"{where}.{field_name}'" + msg[len(field_name) + 2 :]) from None
        periodic = data.get("periodic", True)
        if not isinstance(periodic, bool):
            raise GMVAEInputError(f"{pre}'periodic' is {periodic!r}, expected true or false")
        labels = data.get("atom_labels", {})
        if not isinstance(labels, Mapping):
            raise GMVAEInputError(f"{pre}'atom_labels' is {labels!r:.60}, expected an object {{index: label}}")
        try:
            return cls(
                features,
                n_atoms,
                periodic=periodic,
                atom_labels={int(k): v for k, v in labels.items()},
                description=data.get("description", ""),
            )
        except (GMVAEInputError, ValueError) as exc:
            raise GMVAEInputError(f"{pre}{exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the spec as JSON (atomically)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSpec":
        """Read a spec written by :meth:`save`; errors name the file and the field."""
        path = Path(path)
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (expected a feature spec JSON file)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GMVAEInputError(f"{path}: not valid JSON ({exc}); expected a feature spec") from None
        return cls.from_dict(data, source=path)

    # -- topology check
    def check_topology(self, topology: Any, *, source: str | os.PathLike | None = None) -> None:
        """Check that ``topology`` has ``n_atoms`` atoms and the recorded atom labels.

        Parameters
        ----------
        topology : mdtraj.Topology, openmm.app.Topology or path
            The topology positions will come from.
        source : str, optional
            Named in error messages (e.g. the topology file).

        Raises
        ------
        GMVAEInputError
            If the atom count differs or a labelled atom has another residue/name.
        """
        top = _as_mdtraj_topology(topology)
        where = f"{source}: " if source is not None else ""
        if top.n_atoms != self.n_atoms:
            raise GMVAEInputError(
                f"{where}topology has {top.n_atoms} atoms, the feature spec expects n_atoms = {self.n_atoms}"
            )
        for idx, label in sorted(self.atom_labels.items()):
            have = _atom_label(top.atom(idx))
            if have != label:
                raise GMVAEInputError(
                    f"{where}atom {idx} is {have!r}, the feature spec expects {label!r} "
                    "(the spec was built on a topology with another atom order)"
                )

    # -- grouping shared by the NumPy and torch renderings
    def _groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {k: [] for k in _GROUP_ORDER}
        for k, f in enumerate(self.features):
            groups[f.kind].append(k)
        return groups

    # -- rendering (a): NumPy
    def compute(
        self,
        traj: Any,
        box: Optional[np.ndarray] = None,
        *,
        dtype: Any = np.float64,
        source: str | os.PathLike | None = None,
    ) -> np.ndarray:
        """Evaluate the features with NumPy (float64 arithmetic).

        Parameters
        ----------
        traj : mdtraj.Trajectory or array_like
            A trajectory (its ``unitcell_vectors`` are used as the box), or positions in nm of
            shape ``(n_atoms, 3)`` or ``(n_frames, n_atoms, 3)``.
        box : array_like, optional
            Box vectors in nm as rows, shape ``(3, 3)`` or ``(n_frames, 3, 3)``; overrides the
            trajectory's unit cell. Ignored when ``spec.periodic`` is False.
        dtype : numpy dtype
            Output dtype (the computation is float64 either way).
        source : str, optional
            Named in error messages.

        Returns
        -------
        ndarray, shape ``(n_frames, n_features)``
            Columns in spec order; distances in nm, angles and raw torsions in rad.

        Raises
        ------
        GMVAEInputError
            Wrong atom count, non-finite positions or a degenerate box.
        """
        xyz, box = _positions_and_box(traj, box, self.n_atoms, source=source)
        if not self.periodic:
            box = None
        out = np.empty((xyz.shape[0], self.n_features), dtype=np.float64)
        groups = self._groups()
        feats = self.features
        if groups["distance"]:
            idx = np.array([feats[k].atoms for k in groups["distance"]])
            d = _np_vec(xyz, idx[:, 0], idx[:, 1], box)
            out[:, groups["distance"]] = np.sqrt((d * d).sum(-1))
        if groups["angle"]:
            idx = np.array([feats[k].atoms for k in groups["angle"]])
            u = _np_vec(xyz, idx[:, 1], idx[:, 0], box)
            v = _np_vec(xyz, idx[:, 1], idx[:, 2], box)
            out[:, groups["angle"]] = np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), (u * v).sum(-1))
        if groups["torsion"]:
            idx = np.array([feats[k].atoms for k in groups["torsion"]])
            b1 = _np_vec(xyz, idx[:, 0], idx[:, 1], box)
            b2 = _np_vec(xyz, idx[:, 1], idx[:, 2], box)
            b3 = _np_vec(xyz, idx[:, 2], idx[:, 3], box)
            c1 = np.cross(b2, b3)
            c2 = np.cross(b1, b2)
            y = (b1 * c1).sum(-1) * np.linalg.norm(b2, axis=-1)
            x = (c1 * c2).sum(-1)
            phi = np.arctan2(y, x)
            modes = [feats[k].transform for k in groups["torsion"]]
            vals = np.where(
                np.array([m == "raw" for m in modes]),
                phi,
                np.where(np.array([m == "sin" for m in modes]), np.sin(phi), np.cos(phi)),
            )
            out[:, groups["torsion"]] = vals
        if groups["contact"]:
            fs = [feats[k] for k in groups["contact"]]
            idx = np.array([f.atoms for f in fs])
            d = _np_vec(xyz, idx[:, 0], idx[:, 1], box)
            r = np.sqrt((d * d).sum(-1))
            r0 = np.array([f.r0 for f in fs])
            n = np.array([f.n for f in fs], dtype=np.float64)
            m = np.array([f.m for f in fs], dtype=np.float64)
            out[:, groups["contact"]] = _np_rational(r, r0, n, m)
        return out.astype(dtype, copy=False)

    # -- rendering (b): torch
    def torch_module(self, *, periodic: Optional[bool] = None) -> "FeatureModule":
        """A :class:`FeatureModule` (``torch.nn.Module``) evaluating this spec.

        Parameters
        ----------
        periodic : bool, optional
            Override ``spec.periodic``.
        """
        return FeatureModule(self, periodic=periodic)

    # -- rendering (c): PLUMED
    def plumed_input(self, *, label_prefix: str = "f", units_line: bool = True) -> PlumedFeatures:
        """PLUMED input lines computing the features, and the ordered ARG list.

        Feature ``k`` gets label ``<label_prefix><k>`` (``f0, f1, ...``) and its name in a trailing
        comment. Atom numbers are 1-based (spec index + 1). Lengths are nm and angles rad:
        ``UNITS LENGTH=nm`` is written (PLUMED's default, stated explicitly; PLUMED has no angle
        unit, angles are always rad). Without ``spec.periodic`` each action carries ``NOPBC``.

        Renderings: ``DISTANCE``, ``ANGLE``, ``TORSION``; sin/cos torsions are a helper
        ``TORSION`` (shared with an earlier torsion on the same atoms) followed by
        ``CUSTOM ARG=.. FUNC=sin(x) PERIODIC=NO``; contacts are
        ``COORDINATION GROUPA=i GROUPB=j SWITCH={RATIONAL R_0=.. NN=.. MM=.. D_0=0}``. The
        ``SWITCH={...}`` form is used on purpose: with the plain ``R_0=``/``NN=``/``MM=``
        keywords PLUMED cuts the function at the distance where it reaches 1e-5 and stretches it,
        which differs from :class:`Contact` by up to 1e-5.

        Parameters
        ----------
        label_prefix : str
            Prefix of the labels; choose one that does not collide with labels in the rest of
            your input.
        units_line : bool
            Write the ``UNITS LENGTH=nm`` line (turn off if your input has its own ``UNITS``; it
            must then use nm, or the ``R_0`` values here are misread).

        Returns
        -------
        PlumedFeatures
            ``lines`` and ``args`` (labels in spec order).

        Examples
        --------
        >>> spec = FeatureSpec([distance(0, 4), *torsion_sincos(4, 6, 8, 14, name="phi")], n_atoms=22)
        >>> lines, args = spec.plumed_input()
        >>> args
        ['f0', 'f1', 'f2']
        >>> [l for l in lines if not l.startswith("#")][:3]
        ['UNITS LENGTH=nm', 'f0: DISTANCE ATOMS=1,5  # d_0_4', 'f_t0: TORSION ATOMS=5,7,9,15']
        """
        if not _NAME_RE.match(label_prefix):
            raise GMVAEInputError(f"'label_prefix' is {label_prefix!r}, expected an identifier")
        nopbc = "" if self.periodic else " NOPBC"
        lines = [
            f"# gmvae-cv feature spec: {self.n_features} features over a topology of {self.n_atoms} atoms",
            "# Units: lengths in nm (PLUMED's default, set explicitly below), angles in rad (PLUMED",
            "# always uses rad); atom numbers are 1-based (gmvae-cv index + 1).",
            "# Periodic boundaries: "
            + (
                "minimum image whenever the MD engine passes a box (PLUMED's default)."
                if self.periodic
                else "ignored (NOPBC on every action), as in the spec."
            ),
        ]
        if units_line:
            lines.append("UNITS LENGTH=nm")
        args: list[str] = []
        torsion_labels: dict[tuple[int, ...], str] = {}  # atoms -> label of a TORSION already defined
        n_helper = 0
        for k, f in enumerate(self.features):
            label = f"{label_prefix}{k}"
            atoms = ",".join(str(a + 1) for a in f.atoms)
            if isinstance(f, Distance):
                lines.append(f"{label}: DISTANCE ATOMS={atoms}{nopbc}  # {f.name}")
            elif isinstance(f, Angle):
                lines.append(f"{label}: ANGLE ATOMS={atoms}{nopbc}  # {f.name}")
            elif isinstance(f, Torsion):
                if f.transform == "raw":
                    lines.append(f"{label}: TORSION ATOMS={atoms}{nopbc}  # {f.name}")
                    torsion_labels.setdefault(f.atoms, label)
                else:
                    tor = torsion_labels.get(f.atoms)
                    if tor is None:
                        tor = f"{label_prefix}_t{n_helper}"
                        n_helper += 1
                        torsion_labels[f.atoms] = tor
                        lines.append(f"{tor}: TORSION ATOMS={atoms}{nopbc}")
                    lines.append(f"{label}: CUSTOM ARG={tor} FUNC={f.transform}(x) PERIODIC=NO  # {f.name}")
            elif isinstance(f, Contact):
                i, j = (a + 1 for a in f.atoms)
                lines.append(
                    f"{label}: COORDINATION GROUPA={i} GROUPB={j} "
                    f"SWITCH={{RATIONAL R_0={f.r0!r} NN={f.n} MM={f.m} D_0=0}}{nopbc}  # {f.name}"
                )
            else:  # pragma: no cover - the constructor admits only the four types
                raise GMVAEInputError(f"'features[{k}]' has unknown type {f.kind!r}")
            args.append(label)
        return PlumedFeatures(lines, args)


# ------------------------------------------------------------------------------------ NumPy core
def _pre(source: Any) -> str:
    """``'<source>: '`` for error messages, or nothing."""
    return f"{source}: " if source is not None else ""


def _positions_and_box(traj: Any, box: Any, n_atoms: int, *, source: Any = None):
    """Return ``(xyz (F, N, 3) float64, box (F, 3, 3) float64 or None)``, checked."""
    name = "positions"
    if hasattr(traj, "xyz") and hasattr(traj, "topology"):
        xyz = traj.xyz
        if box is None and getattr(traj, "unitcell_vectors", None) is not None:
            box = traj.unitcell_vectors
        name = "traj.xyz"
    else:
        xyz = traj
    xyz = check_array(xyz, name, source=source)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise GMVAEInputError(
            f"{_pre(source)}'{name}' has shape {xyz.shape}, expected (n_atoms, 3) or (n_frames, n_atoms, 3) in nm"
        )
    if xyz.shape[1] != n_atoms:
        raise GMVAEInputError(
            f"{_pre(source)}'{name}' has {xyz.shape[1]} atoms, the feature spec expects n_atoms = {n_atoms}"
        )
    if box is not None:
        box = check_array(box, "box", source=source)
        if box.ndim == 2:
            box = np.broadcast_to(box, (xyz.shape[0], 3, 3))
        if box.shape != (xyz.shape[0], 3, 3):
            raise GMVAEInputError(
                f"{_pre(source)}'box' has shape {box.shape}, expected (3, 3) or ({xyz.shape[0]}, 3, 3) box vectors (rows, nm)"
            )
        det = np.linalg.det(box)
        if np.any(det <= 0):
            frame = int(np.argmax(det <= 0))
            raise GMVAEInputError(
                f"{_pre(source)}'box' of frame {frame} has volume {det[frame]:.4g} nm^3, expected box vectors (rows) spanning a positive volume"
            )
    return xyz, box


_SHIFTS = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=np.float64)


def _np_vec(xyz: np.ndarray, i: np.ndarray, j: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
    """Vectors ``x_j - x_i`` of shape ``(F, P, 3)``, minimum-imaged if ``box`` is given."""
    d = xyz[:, j] - xyz[:, i]
    if box is None:
        return d
    frac = d @ np.linalg.inv(box)
    d = d - np.round(frac) @ box
    offdiag = box - box * np.eye(3)
    if np.any(offdiag != 0):
        cand = d[:, :, None, :] + (_SHIFTS @ box)[:, None, :, :]  # (F, P, 27, 3)
        best = np.argmin((cand * cand).sum(-1), axis=2)
        d = np.take_along_axis(cand, best[:, :, None, None], axis=2)[:, :, 0]
    return d


def _np_rational(r: np.ndarray, r0: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``(1 - x^n) / (1 - x^m)`` with ``x = r / r0``, stable near ``x = 1`` and for large ``x``."""
    t = np.log(r / r0)
    a = np.abs(t)
    small = a < _CONTACT_LIMIT_WINDOW
    a_safe = np.where(small, 1.0, a)
    q = np.expm1(-n * a_safe) / np.expm1(-m * a_safe) * np.exp((n - m) * np.maximum(t, 0.0) * (~small))
    limit = n / m * (1.0 + 0.5 * (n - m) * t)
    return np.where(small, limit, q)


# ------------------------------------------------------------------------------------ torch
class FeatureModule(torch.nn.Module):
    """TorchScript-able evaluation of a :class:`FeatureSpec` on a positions tensor.

    Features are grouped by type and each group is evaluated in one vectorised pass; index
    buffers hold the atoms. The spec travels with the module as ``feature_spec_json`` (also in a
    scripted and saved module), the column names as ``names``.

    Parameters
    ----------
    spec : FeatureSpec
        What to compute.
    periodic : bool, optional
        Override ``spec.periodic``.

    Examples
    --------
    >>> spec = FeatureSpec([distance(0, 1), angle(0, 1, 2)], n_atoms=3)
    >>> mod = torch.jit.script(spec.torch_module())
    >>> x = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0]], dtype=torch.float64)
    >>> mod(x)
    tensor([0.1000, 1.5708], dtype=torch.float64)
    """

    def __init__(self, spec: FeatureSpec, periodic: Optional[bool] = None) -> None:
        super().__init__()
        groups = spec._groups()
        feats = spec.features

        def atoms(kind: str, n: int) -> torch.Tensor:
            rows = [list(feats[k].atoms) for k in groups[kind]]
            return torch.tensor(rows, dtype=torch.long).reshape(-1, n)

        self.register_buffer("dist_atoms", atoms("distance", 2))
        self.register_buffer("angle_atoms", atoms("angle", 3))
        self.register_buffer("torsion_atoms", atoms("torsion", 4))
        self.register_buffer(
            "torsion_mode",
            torch.tensor([_TORSION_TRANSFORMS.index(feats[k].transform) for k in groups["torsion"]], dtype=torch.long),
        )
        self.register_buffer("contact_atoms", atoms("contact", 2))
        cs = [feats[k] for k in groups["contact"]]
        self.register_buffer("contact_r0", torch.tensor([f.r0 for f in cs], dtype=torch.float64))
        self.register_buffer("contact_n", torch.tensor([float(f.n) for f in cs], dtype=torch.float64))
        self.register_buffer("contact_m", torch.tensor([float(f.m) for f in cs], dtype=torch.float64))
        concat = [k for kind in _GROUP_ORDER for k in groups[kind]]
        order = [0] * len(concat)
        for pos, k in enumerate(concat):
            order[k] = pos
        self.register_buffer("order", torch.tensor(order, dtype=torch.long))
        self.register_buffer("shifts", torch.tensor(_SHIFTS, dtype=torch.float64))
        self.periodic: bool = spec.periodic if periodic is None else bool(periodic)
        self.n_atoms: int = spec.n_atoms
        self.n_features: int = spec.n_features
        self.n_dist: int = len(groups["distance"])
        self.n_angle: int = len(groups["angle"])
        self.n_torsion: int = len(groups["torsion"])
        self.n_contact: int = len(groups["contact"])
        self.contact_window: float = _CONTACT_LIMIT_WINDOW
        self.names: List[str] = spec.names
        spec_dict = spec.to_dict()
        spec_dict["periodic"] = self.periodic  # the flag this module uses
        self.feature_spec_json: str = json.dumps(spec_dict)

    def _min_image(self, d: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        # d: (B, P, 3); box: (B, 3, 3) with box vectors as rows, d = frac @ box
        frac = torch.bmm(d, torch.linalg.inv(box))
        d = d - torch.bmm(torch.round(frac), box)
        offdiag = box - torch.diag_embed(torch.diagonal(box, dim1=-2, dim2=-1))
        if bool((offdiag != 0).any()):
            images = torch.matmul(self.shifts.to(d.dtype), box)  # (B, 27, 3)
            cand = d.unsqueeze(2) + images.unsqueeze(1)  # (B, P, 27, 3)
            best = (cand * cand).sum(-1).argmin(dim=2)  # (B, P)
            d = torch.gather(cand, 2, best.unsqueeze(-1).unsqueeze(-1).expand(-1, -1, 1, 3)).squeeze(2)
        return d

    def _vec(self, pos: torch.Tensor, i: torch.Tensor, j: torch.Tensor, box: Optional[torch.Tensor]) -> torch.Tensor:
        d = pos.index_select(1, j) - pos.index_select(1, i)
        if box is not None:
            d = self._min_image(d, box)
        return d

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Features of ``positions``.

        Parameters
        ----------
        positions : Tensor, shape ``(n_atoms, 3)`` or ``(batch, n_atoms, 3)``
            Positions in nm, any floating dtype (the output has the same dtype and device).
        box : Tensor, optional, shape ``(3, 3)`` or ``(batch, 3, 3)``
            Box vectors in nm as rows (OpenMM's and PLUMED's layout). Used only if the module is
            periodic.

        Returns
        -------
        Tensor, shape ``(n_features,)`` or ``(batch, n_features)``
            Columns in spec order.
        """
        unbatched = positions.dim() == 2
        if unbatched:
            pos = positions.unsqueeze(0)
        else:
            pos = positions
        if pos.dim() != 3 or pos.shape[2] != 3 or pos.shape[1] != self.n_atoms:
            raise ValueError(
                "positions must have shape (n_atoms, 3) or (batch, n_atoms, 3) with n_atoms = "
                + str(self.n_atoms)
                + ", got "
                + str(list(positions.shape))
            )
        b: Optional[torch.Tensor] = None
        if self.periodic and box is not None:
            bx = box.to(dtype=pos.dtype, device=pos.device)
            if bx.dim() == 2:
                bx = bx.unsqueeze(0).expand(pos.shape[0], 3, 3)
            b = bx
        parts: List[torch.Tensor] = []
        if self.n_dist > 0:
            d = self._vec(pos, self.dist_atoms[:, 0], self.dist_atoms[:, 1], b)
            parts.append(torch.linalg.vector_norm(d, dim=-1))
        if self.n_angle > 0:
            u = self._vec(pos, self.angle_atoms[:, 1], self.angle_atoms[:, 0], b)
            v = self._vec(pos, self.angle_atoms[:, 1], self.angle_atoms[:, 2], b)
            parts.append(torch.atan2(torch.linalg.vector_norm(torch.cross(u, v, dim=-1), dim=-1), (u * v).sum(-1)))
        if self.n_torsion > 0:
            ta = self.torsion_atoms
            b1 = self._vec(pos, ta[:, 0], ta[:, 1], b)
            b2 = self._vec(pos, ta[:, 1], ta[:, 2], b)
            b3 = self._vec(pos, ta[:, 2], ta[:, 3], b)
            c1 = torch.cross(b2, b3, dim=-1)
            c2 = torch.cross(b1, b2, dim=-1)
            y = (b1 * c1).sum(-1) * torch.linalg.vector_norm(b2, dim=-1)
            x = (c1 * c2).sum(-1)
            phi = torch.atan2(y, x)
            mode = self.torsion_mode
            parts.append(torch.where(mode == 0, phi, torch.where(mode == 1, torch.sin(phi), torch.cos(phi))))
        if self.n_contact > 0:
            d = self._vec(pos, self.contact_atoms[:, 0], self.contact_atoms[:, 1], b)
            r = torch.linalg.vector_norm(d, dim=-1)
            r0 = self.contact_r0.to(pos.dtype)
            n = self.contact_n.to(pos.dtype)
            m = self.contact_m.to(pos.dtype)
            t = torch.log(r / r0)
            a = torch.abs(t)
            small = a < self.contact_window
            a_safe = torch.where(small, torch.ones_like(a), a)
            tpos = torch.where(small, torch.zeros_like(t), torch.clamp(t, min=0.0))
            q = torch.expm1(-n * a_safe) / torch.expm1(-m * a_safe) * torch.exp((n - m) * tpos)
            limit = n / m * (1.0 + 0.5 * (n - m) * t)
            parts.append(torch.where(small, limit, q))
        out = torch.cat(parts, dim=1).index_select(1, self.order)
        if unbatched:
            return out.squeeze(0)
        return out


# ------------------------------------------------------------------------------------ topology helpers
def _as_mdtraj_topology(topology: Any):
    import mdtraj as md

    if isinstance(topology, md.Topology):
        return topology
    if isinstance(topology, md.Trajectory):
        return topology.topology
    if isinstance(topology, (str, os.PathLike)):
        path = Path(topology)
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (expected a topology file, e.g. a PDB)")
        try:
            return md.load_topology(str(path))
        except Exception as exc:  # mdtraj raises many types for unreadable files
            raise GMVAEInputError(f"{path}: cannot read a topology ({exc})") from None
    try:
        from openmm import app
    except ImportError:  # pragma: no cover
        app = None
    if app is not None and isinstance(topology, app.Topology):
        return md.Topology.from_openmm(topology)
    raise GMVAEInputError(
        f"'topology' is {type(topology).__name__}, expected an mdtraj.Topology, an openmm.app.Topology or a file path"
    )


def _atom_label(atom: Any) -> str:
    return f"{atom.residue.name}{atom.residue.resSeq}-{atom.name}"


def _bond_graph(top: Any) -> list[set[int]]:
    nbrs: list[set[int]] = [set() for _ in range(top.n_atoms)]
    for a, b in top.bonds:
        nbrs[a.index].add(b.index)
        nbrs[b.index].add(a.index)
    return nbrs


def _bond_separation(nbrs: list[set[int]], start: int, max_depth: int) -> dict[int, int]:
    """Atoms within ``max_depth`` bonds of ``start`` and their bond counts (BFS)."""
    dist = {start: 0}
    frontier = [start]
    for depth in range(1, max_depth + 1):
        nxt = []
        for a in frontier:
            for b in nbrs[a]:
                if b not in dist:
                    dist[b] = depth
                    nxt.append(b)
        frontier = nxt
    return dist


# ------------------------------------------------------------------------------------ unit guard
def check_length_units(
    positions: Any,
    topology: Any,
    *,
    source: str | os.PathLike | None = None,
    max_frames: int = 10,
    typical: tuple[float, float] = (0.05, 0.6),
) -> Optional[float]:
    """Guard against coordinates in Angstrom (or other units) read as nm.

    Takes the median length of the topology's bonds (or, for a topology without bonds, the median
    nearest-neighbour distance) over up to ``max_frames`` evenly spaced frames. Covalent bonds are
    0.1-0.16 nm; a median above ``typical[1]`` (default 0.6 nm, i.e. about 4x the longest common
    bond) means the numbers are about 10x too large, as when Angstrom are fed as nm.

    Parameters
    ----------
    positions : mdtraj.Trajectory or array_like
        Positions, shape ``(n_atoms, 3)`` or ``(n_frames, n_atoms, 3)``, supposedly in nm.
    topology : mdtraj.Topology, openmm.app.Topology or path
        Supplies the bonds.
    source : str, optional
        Named in the error message (the trajectory file).
    max_frames : int
        At most this many frames are checked.
    typical : (float, float)
        Accepted range of the median bond length in nm.

    Returns
    -------
    float or None
        The median bond (or nearest-neighbour) length in nm; None with fewer than two atoms.

    Raises
    ------
    GMVAEInputError
        If the median is outside ``typical``.

    Examples
    --------
    >>> from gmvae_cv.systems import AlanineDipeptide
    >>> ala = AlanineDipeptide()
    >>> round(check_length_units(ala.positions, ala.topology), 3)
    0.109
    """
    top = _as_mdtraj_topology(topology)
    xyz = positions.xyz if hasattr(positions, "xyz") else positions
    xyz = check_array(xyz, "positions", source=source)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[1:] != (top.n_atoms, 3):
        raise GMVAEInputError(
            f"{_pre(source)}'positions' has shape {xyz.shape}, expected (n_frames, {top.n_atoms}, 3) for this topology"
        )
    if top.n_atoms < 2:
        return None
    frames = np.unique(np.linspace(0, xyz.shape[0] - 1, min(max_frames, xyz.shape[0])).astype(int))
    x = xyz[frames]
    pairs = np.array([(a.index, b.index) for a, b in top.bonds], dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        what = f"bond length (over {len(pairs)} bonds)"
        lengths = np.linalg.norm(x[:, pairs[:, 1]] - x[:, pairs[:, 0]], axis=-1)
    else:
        what = "nearest-neighbour distance (the topology has no bonds)"
        diff = x[:, :, None, :] - x[:, None, :, :]
        dd = np.sqrt((diff * diff).sum(-1))
        dd[:, np.arange(top.n_atoms), np.arange(top.n_atoms)] = np.inf
        lengths = dd.min(axis=2)
    med = float(np.median(lengths))
    lo, hi = typical
    where = f"{source}: " if source is not None else ""
    if med > hi:
        raise GMVAEInputError(
            f"{where}median {what} is {med:.3g}, expected about 0.1-0.16 nm (at most {hi} nm): the "
            f"coordinates look {med / 0.13:.0f}x too large, as Angstrom read as nm; convert them to nm (divide by 10)"
        )
    if med < lo:
        raise GMVAEInputError(
            f"{where}median {what} is {med:.3g}, expected about 0.1-0.16 nm (at least {lo} nm): the "
            "coordinates look too small; are they in nm?"
        )
    return med


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


def _default_alanine_topology():
    """The bundled ACE-ALA-NME topology (``gmvae_cv/data/alanine-dipeptide.pdb``, OpenMM's reader)."""
    from openmm import app

    pdb = app.PDBFile(str(resources.files("gmvae_cv") / "data" / "alanine-dipeptide.pdb"))
    return _as_mdtraj_topology(pdb.topology)


def _backbone_torsion_atoms(top: Any, *, source: Any = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
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
    phi, psi = _backbone_torsion_atoms(top)
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
    phi, psi = _backbone_torsion_atoms(traj.topology)
    spec = FeatureSpec([torsion(*phi, name="phi"), torsion(*psi, name="psi")], traj.n_atoms)
    out = spec.compute(traj)
    return np.degrees(out) if unit == "deg" else out


# ------------------------------------------------------------------------------------ loader
def load_trajectory_features(
    traj_files: str | os.PathLike | Sequence[str | os.PathLike],
    top: Any,
    spec: FeatureSpec,
    *,
    stride: int = 1,
    check_units: bool = True,
    dtype: Any = np.float64,
    chunk: int = 10000,
    progress: Optional[Any] = None,
) -> list[np.ndarray]:
    """Read trajectories (any format mdtraj reads) and compute a spec's features.

    Parameters
    ----------
    traj_files : path or sequence of paths
        Trajectory files (``.dcd``, ``.xtc``, ``.trr``, ``.nc``, ``.h5``, ``.pdb``, ...).
    top : mdtraj.Topology, openmm.app.Topology or path
        Topology of the trajectories (a PDB, or anything mdtraj reads as a topology).
    spec : FeatureSpec
        The features; checked against the topology (:meth:`FeatureSpec.check_topology`).
    stride : int
        Read every ``stride``-th frame.
    check_units : bool
        Run :func:`check_length_units` on the first chunk of each trajectory (catches Angstrom
        read as nm).
    dtype : numpy dtype
        Output dtype.
    chunk : int
        Frames read at a time (memory holds one chunk of positions, plus the features).
    progress : callable, optional
        tqdm-like; called as ``progress(total=n_files)`` and updated per file.

    Returns
    -------
    list of ndarray, each ``(n_frames_i, n_features)``
        One matrix per file, in order.

    Raises
    ------
    GMVAEInputError
        Missing or unreadable file, wrong atom count, NaN positions, suspicious units; the
        message names the file.
    """
    import mdtraj as md

    if isinstance(traj_files, (str, os.PathLike)):
        traj_files = [traj_files]
    files = [Path(f) for f in traj_files]
    if not files:
        raise GMVAEInputError("'traj_files' is empty, expected at least one trajectory file")
    stride = check_int(stride, "stride", minimum=1)
    chunk = check_int(chunk, "chunk", minimum=1)
    top_source = top if isinstance(top, (str, os.PathLike)) else None
    topology = _as_mdtraj_topology(top)
    spec.check_topology(topology, source=top_source)
    out = []
    bar = progress(total=len(files)) if progress is not None else None
    try:
        for f in files:
            if not f.is_file():
                raise GMVAEInputError(f"{f}: file not found (expected a trajectory)")
            parts = []
            n_read = 0
            try:
                chunks = md.iterload(str(f), chunk=chunk, top=topology, stride=stride)
                for traj in chunks:
                    bad = ~np.isfinite(traj.xyz)
                    if bad.any():
                        frame, atom, _ = (int(v) for v in np.argwhere(bad)[0])
                        raise GMVAEInputError(
                            f"{f}: positions contain NaN/inf (first at frame {n_read + frame} of those read, "
                            f"atom {atom}), expected finite nm"
                        )
                    if check_units and n_read == 0:
                        check_length_units(traj, topology, source=f)
                    parts.append(spec.compute(traj, dtype=dtype, source=str(f)))
                    n_read += traj.n_frames
            except GMVAEInputError:
                raise
            except Exception as exc:  # mdtraj raises many types for bad files
                raise GMVAEInputError(f"{f}: cannot read as a trajectory with this topology ({exc})") from None
            if n_read == 0:
                raise GMVAEInputError(f"{f}: no frames, expected at least one")
            out.append(np.concatenate(parts, axis=0))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
    return out
