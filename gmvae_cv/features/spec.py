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

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .._core.checks import check_int
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json
from .._core.jsonfile import check_stamp, load_json, stamped
from .numpy_core import _np_rational, _np_vec, _positions_and_box
from .topology import _as_mdtraj_topology, _atom_label
from .plumed_render import PlumedFeatures, render_plumed
from .torch_module import FeatureModule
from .types import (
    _FEATURE_TYPES,
    _GROUP_ORDER,
    SPEC_FORMAT,
    SPEC_VERSION,
    Contact,
    Feature,
    Torsion,
)

__all__ = ["FeatureSpec", "PlumedFeatures", "SPEC_FORMAT", "SPEC_VERSION"]


# ------------------------------------------------------------------------------------ the spec
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
    >>> from gmvae_cv.features import FeatureSpec, distance, torsion_sincos
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
        return cls.from_dict(load_json(path, "a feature spec JSON file"), source=Path(path))

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
        >>> from gmvae_cv.features import FeatureSpec, distance, torsion_sincos
    >>> spec = FeatureSpec([distance(0, 4), *torsion_sincos(4, 6, 8, 14, name="phi")], n_atoms=22)
        >>> lines, args = spec.plumed_input()
        >>> args
        ['f0', 'f1', 'f2']
        >>> [l for l in lines if not l.startswith("#")][:3]
        ['UNITS LENGTH=nm', 'f0: DISTANCE ATOMS=1,5  # d_0_4', 'f_t0: TORSION ATOMS=5,7,9,15']
        """
        return render_plumed(self, label_prefix=label_prefix, units_line=units_line)
