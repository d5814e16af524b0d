"""The PLUMED rendering of a :class:`~gmvae_cv.features.spec.FeatureSpec`: input lines that compute
the same features as :meth:`~gmvae_cv.features.spec.FeatureSpec.compute` (1-based atom numbers, nm,
rad), and the ordered ``ARG`` list."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._core.errors import GMVAEInputError
from .types import _NAME_RE, Angle, Contact, Distance, Torsion

__all__ = ["PlumedFeatures", "render_plumed"]


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


def render_plumed(spec: Any, *, label_prefix: str = "f", units_line: bool = True) -> PlumedFeatures:
    """PLUMED input lines computing ``spec``'s features (see
    :meth:`~gmvae_cv.features.spec.FeatureSpec.plumed_input`, which documents the renderings)."""
    if not _NAME_RE.match(label_prefix):
        raise GMVAEInputError(f"'label_prefix' is {label_prefix!r}, expected an identifier")
    nopbc = "" if spec.periodic else " NOPBC"
    lines = [
        f"# gmvae-cv feature spec: {spec.n_features} features over a topology of {spec.n_atoms} atoms",
        "# Units: lengths in nm (PLUMED's default, set explicitly below), angles in rad (PLUMED",
        "# always uses rad); atom numbers are 1-based (gmvae-cv index + 1).",
        "# Periodic boundaries: "
        + (
            "minimum image whenever the MD engine passes a box (PLUMED's default)."
            if spec.periodic
            else "ignored (NOPBC on every action), as in the spec."
        ),
    ]
    if units_line:
        lines.append("UNITS LENGTH=nm")
    args: list[str] = []
    torsion_labels: dict[tuple[int, ...], str] = {}  # atoms -> label of a TORSION already defined
    n_helper = 0
    for k, f in enumerate(spec.features):
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
