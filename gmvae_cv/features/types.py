"""The feature types: one column of the feature matrix each (distance, angle, torsion, contact)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np

from .._core.checks import check_int
from .._core.errors import GMVAEInputError

__all__ = ["Feature", "Distance", "Angle", "Torsion", "Contact", "distance", "angle", "torsion", "torsion_sincos", "contact"]


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


