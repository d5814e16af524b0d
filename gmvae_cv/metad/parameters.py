r"""What a bias on a CV is made of: one :class:`BiasedVariable` per biased component, and the
well-tempered :class:`MetadynamicsParameters` (what ``run.json`` and the walkers' descriptors record).

:func:`biased_variables` turns a user's ``components``, ``sigma`` and grid options into the
variables (as ``openmm.app.BiasVariable``: component, range, width, bins, periodicity), checking
each against the CV file; the engines (:mod:`gmvae_cv.metad.engine`, :mod:`gmvae_cv.metad.opes`)
then build their grid from them. Units: CV values and widths in the CV's units, energies kJ/mol,
temperature K.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np
from openmm import unit

from .._core.checks import as_value, check_int
from .._core.errors import GMVAEInputError
from ..deploy import CVModel
from .grid import BiasGrid
from .kernels import KERNELS

__all__ = ["BiasedVariable", "MetadynamicsParameters", "BiasEdgeWarning", "biased_variables", "variables_grid",
           "gas_constant", "check_cv", "wall_values"]


class BiasEdgeWarning(UserWarning):
    """A hill was deposited near (or beyond) the edge of a non-periodic grid."""


def gas_constant() -> float:
    """:math:`R` in kJ/mol/K (OpenMM's value)."""
    return unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def check_cv(cv: Any) -> CVModel:
    """``cv`` if it is a :class:`~gmvae_cv.deploy.loaders.CVModel`, else a :class:`GMVAEInputError`."""
    if not isinstance(cv, CVModel):
        raise GMVAEInputError(f"'cv' is {type(cv).__name__}, expected a CVModel (gmvae_cv.deploy.loaders.load_cv)")
    return cv


@dataclass(frozen=True)
class BiasedVariable:
    """One biased CV component (as ``openmm.app.BiasVariable``).

    Attributes
    ----------
    component : int
        Index of the component in the CV's output.
    minimum, maximum : float
        Grid range, CV units (the period of a periodic component).
    sigma : float
        Kernel width, CV units.
    bins : int
        Grid bins (``bins + 1`` nodes, PLUMED's ``GRID_BIN``).
    periodic : bool
    """

    component: int
    minimum: float
    maximum: float
    sigma: float
    bins: int
    periodic: bool

    @property
    def name(self) -> str:
        """The PLUMED field name of the component (``cv.<component>``)."""
        return f"cv.{self.component}"

    @property
    def period(self) -> Optional[tuple[float, float]]:
        """``(minimum, maximum)`` for a periodic component, else None."""
        return (self.minimum, self.maximum) if self.periodic else None


def biased_variables(cv: CVModel, components: Optional[Sequence[int]], sigma: Sequence[float],
                     grid_min: Optional[Sequence[float]] = None, grid_max: Optional[Sequence[float]] = None,
                     grid_bin: Optional[Sequence[int]] = None) -> tuple[BiasedVariable, ...]:
    """The biased variables of ``cv`` from a user's options, checked.

    Parameters
    ----------
    cv : CVModel
    components : sequence of int, optional
        1 to 3 distinct CV components; default all (if the CV has at most 3).
    sigma : sequence of float
        One width per biased component, CV units, > 0.
    grid_min, grid_max : sequence of float, optional
        Default: the period for periodic components; for the others, the ``cv_range`` recorded in
        the CV file widened by 50 % (at least 4 sigma) on each side (an error if the file records none).
    grid_bin : sequence of int, optional
        Default ``ceil(5 (max - min) / sigma)`` (OpenMM's default).

    Returns
    -------
    tuple of BiasedVariable
    """
    components = _components(cv, components)
    d = len(components)
    sigma_arr = np.atleast_1d(np.asarray(sigma, dtype=np.float64)) if np.ndim(sigma) <= 1 else None
    if sigma_arr is None or sigma_arr.shape != (d,):
        got = np.size(sigma) if sigma is not None else 0
        raise GMVAEInputError(f"'sigma' has {got} value(s), expected {d} (one per biased component {list(components)})")
    if not np.all(np.isfinite(sigma_arr)) or np.any(sigma_arr <= 0):
        raise GMVAEInputError(f"'sigma' is {sigma_arr.tolist()}, expected widths > 0 in CV units")
    lo, hi = _grid_range(cv, components, grid_min, grid_max, sigma_arr)
    if grid_bin is None:
        bins = tuple(int(math.ceil(5.0 * (hi[a] - lo[a]) / sigma_arr[a])) for a in range(d))
    else:
        if np.size(grid_bin) != d:
            raise GMVAEInputError(f"'grid_bin' has {np.size(grid_bin)} value(s), expected {d} (one per biased component)")
        bins = tuple(check_int(b, "grid_bin", minimum=2) for b in np.atleast_1d(grid_bin).tolist())
    return tuple(BiasedVariable(component=c, minimum=float(lo[a]), maximum=float(hi[a]), sigma=float(sigma_arr[a]),
                                bins=bins[a], periodic=cv.periodic[c] is not None) for a, c in enumerate(components))


def variables_grid(variables: Sequence[BiasedVariable], *, stacklevel: int = 3) -> BiasGrid:
    """An empty :class:`~gmvae_cv.metad.grid.BiasGrid` over ``variables`` (a :class:`BiasEdgeWarning`
    when the spacing exceeds sigma / 2)."""
    grid = BiasGrid([v.minimum for v in variables], [v.maximum for v in variables], [v.bins for v in variables],
                    [v.periodic for v in variables])
    for a, v in enumerate(variables):
        if grid.spacing[a] > v.sigma / 2.0:
            warnings.warn(
                f"grid spacing {grid.spacing[a]:.3g} of component {v.component} is more than sigma/2 = "
                f"{v.sigma / 2:.3g}; the interpolated bias will be coarse (raise grid_bin)",
                BiasEdgeWarning, stacklevel=stacklevel,
            )
    return grid


def _components(cv: CVModel, components: Optional[Sequence[int]]) -> tuple[int, ...]:
    n_cvs = cv.n_cvs
    if components is None:
        if n_cvs > 3:
            raise GMVAEInputError(f"'components' is missing: the CV has {n_cvs} components, choose 1 to 3 to bias")
        components = tuple(range(n_cvs))
    components = tuple(check_int(c, "components", minimum=0) for c in components)
    if not 1 <= len(components) <= 3:
        raise GMVAEInputError(f"'components' is {list(components)}, expected 1 to 3 components")
    if len(set(components)) != len(components) or max(components) >= n_cvs:
        raise GMVAEInputError(f"'components' is {list(components)}, expected distinct indices below D = {n_cvs}")
    return components


def _grid_range(cv: CVModel, components, grid_min, grid_max, sigma) -> tuple[np.ndarray, np.ndarray]:
    d = len(components)
    if grid_min is not None and np.size(grid_min) != d:
        raise GMVAEInputError(f"'grid_min' has {np.size(grid_min)} value(s), expected {d} (one per biased component)")
    if grid_max is not None and np.size(grid_max) != d:
        raise GMVAEInputError(f"'grid_max' has {np.size(grid_max)} value(s), expected {d} (one per biased component)")
    lo = np.zeros(d)
    hi = np.zeros(d)
    for a, c in enumerate(components):
        given_lo = None if grid_min is None else float(np.atleast_1d(grid_min)[a])
        given_hi = None if grid_max is None else float(np.atleast_1d(grid_max)[a])
        lo[a], hi[a] = _axis_range(cv, c, given_lo, given_hi, float(sigma[a]))
        if not (np.isfinite(lo[a]) and np.isfinite(hi[a]) and hi[a] > lo[a]):
            raise GMVAEInputError(f"'grid_max' of component {c} is {hi[a]:g}, expected a finite value above grid_min = {lo[a]:g}")
    return lo, hi


def _axis_range(cv: CVModel, c: int, given_lo: Optional[float], given_hi: Optional[float], sigma: float) -> tuple[float, float]:
    """The grid range of component ``c`` (see :func:`biased_variables`)."""
    per = cv.periodic[c]
    if per is not None:
        if given_lo is not None or given_hi is not None:
            glo = per[0] if given_lo is None else given_lo
            ghi = per[1] if given_hi is None else given_hi
            if not (math.isclose(glo, per[0], abs_tol=1e-9) and math.isclose(ghi, per[1], abs_tol=1e-9)):
                raise GMVAEInputError(
                    f"'grid_min'/'grid_max' of component {c} are {glo:g}, {ghi:g}; the component is periodic on "
                    f"[{per[0]:g}, {per[1]:g}], expected the grid to be that period"
                )
        return per[0], per[1]
    if given_lo is not None and given_hi is not None:
        return given_lo, given_hi
    cv_range = cv.meta.get("cv_range")
    if cv_range is not None and len(cv_range) > c:
        r_lo, r_hi = float(cv_range[c][0]), float(cv_range[c][1])
        pad = max(0.5 * (r_hi - r_lo), 4.0 * sigma)
        return (given_lo if given_lo is not None else r_lo - pad), (given_hi if given_hi is not None else r_hi + pad)
    raise GMVAEInputError(
        f"'grid_min'/'grid_max' of component {c} are missing and the CV file records no 'cv_range'; "
        "give the grid range of every non-periodic biased component"
    )


@dataclass
class MetadynamicsParameters:
    """Every parameter of a well-tempered metadynamics bias (what ``run.json`` records).

    Attributes
    ----------
    temperature : float
        K.
    height : float
        Initial hill height :math:`W_0`, kJ/mol.
    sigma : tuple of float
        Hill widths, one per biased component, in CV units.
    bias_factor : float
        :math:`\\gamma > 1`.
    pace : int
        Steps between hills.
    components : tuple of int
        Biased CV components (1 to 3).
    grid_min, grid_max : tuple of float
        Grid range per biased component (the period for periodic components).
    grid_bin : tuple of int
        Bins per biased component (PLUMED's ``GRID_BIN``).
    periodic : tuple of bool
        Per biased component.
    kernel : str
        ``"stretched-gaussian"`` (PLUMED) or ``"gaussian"`` (``app.Metadynamics``).
    walls : bool
        Whether the non-periodic components have walls (:mod:`gmvae_cv.metad.walls`).
    wall_margin, wall_kappa : tuple or None
        Per biased component, the walls' bounds inside the grid edges (CV units) and stiffness
        (kJ/mol/CV-unit^2); None entries for periodic components, None without walls.
    """

    temperature: float
    height: float
    sigma: tuple
    bias_factor: float
    pace: int
    components: tuple
    grid_min: tuple
    grid_max: tuple
    grid_bin: tuple
    periodic: tuple
    kernel: str = "stretched-gaussian"
    walls: bool = True
    wall_margin: Optional[tuple] = None
    wall_kappa: Optional[tuple] = None

    @staticmethod
    def check_scalars(*, temperature: Any, height: Any, bias_factor: Any, pace: Any, kernel: str) -> dict:
        """The well-tempered scalars (Quantity or bare numbers in K, kJ/mol), checked, as keywords of :meth:`create`."""
        temperature = as_value(temperature, unit.kelvin, "temperature")
        height = as_value(height, unit.kilojoule_per_mole, "height")
        try:
            bias_factor = float(bias_factor)
        except (TypeError, ValueError):
            raise GMVAEInputError(f"'bias_factor' is {bias_factor!r}, expected a number > 1") from None
        if not (np.isfinite(bias_factor) and bias_factor > 1.0):
            raise GMVAEInputError(f"'bias_factor' is {bias_factor!r}, expected a number > 1 (well-tempered metadynamics)")
        pace = check_int(pace, "pace", minimum=1)
        if kernel not in KERNELS:
            raise GMVAEInputError(f"'kernel' is {kernel!r}, expected one of {', '.join(KERNELS)}")
        return {"temperature": temperature, "height": height, "bias_factor": bias_factor, "pace": pace, "kernel": kernel}

    @classmethod
    def create(cls, variables: Sequence[BiasedVariable], *, temperature: float, height: float, bias_factor: float,
               pace: int, kernel: str, walls: bool = True, wall_set: Any = None) -> "MetadynamicsParameters":
        """The parameters of a bias on ``variables`` (scalars as :meth:`check_scalars` returns them;
        ``wall_set`` the :class:`~gmvae_cv.metad.walls.Walls` in use, or None)."""
        return cls(temperature=temperature, height=height, sigma=tuple(v.sigma for v in variables), bias_factor=bias_factor,
                   pace=pace, components=tuple(v.component for v in variables),
                   grid_min=tuple(v.minimum for v in variables), grid_max=tuple(v.maximum for v in variables),
                   grid_bin=tuple(v.bins for v in variables), periodic=tuple(v.periodic for v in variables), kernel=kernel,
                   walls=bool(walls), **wall_values(variables, wall_set))

    @property
    def variables(self) -> tuple[BiasedVariable, ...]:
        """The biased variables these parameters describe."""
        return tuple(BiasedVariable(int(c), float(lo), float(hi), float(s), int(b), bool(p)) for c, lo, hi, s, b, p in
                     zip(self.components, self.grid_min, self.grid_max, self.sigma, self.grid_bin, self.periodic))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["units"] = {"temperature": "K", "height": "kJ/mol", "sigma": "CV units", "pace": "steps", "grid": "CV units",
                      "wall_margin": "CV units", "wall_kappa": "kJ/mol/CV-unit^2"}
        return d


def wall_values(variables: Sequence[BiasedVariable], wall_set: Any) -> dict:
    """``wall_margin`` and ``wall_kappa`` per biased component of a :class:`~gmvae_cv.metad.walls.Walls`
    (None entries for components without walls; both None when ``wall_set`` is None)."""
    if wall_set is None:
        return {"wall_margin": None, "wall_kappa": None}
    margin: list = [None] * len(variables)
    kappa: list = [None] * len(variables)
    for k, a in enumerate(wall_set.axes):
        margin[a], kappa[a] = wall_set.margin[k], wall_set.kappa[k]
    return {"wall_margin": tuple(margin), "wall_kappa": tuple(kappa)}
