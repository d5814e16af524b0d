r"""Well-tempered metadynamics in OpenMM on an exported CV (TorchScript ``positions -> (D,)``).

:class:`WellTemperedMetadynamics` is used like ``openmm.app.Metadynamics``: it adds one force to
each walker's ``System`` (:meth:`~WellTemperedMetadynamics.add_force`) and advances
``Simulation`` objects with :meth:`~WellTemperedMetadynamics.step`, depositing a hill every
``pace`` steps. What differs from ``app.Metadynamics``:

- **one TorchForce** evaluates the CV and the tabulated bias in a single pass, compiled to a graph
  without autograd (:mod:`gmvae_cv.metad.force`); ``app.Metadynamics`` needs one ``TorchForce``
  per CV component inside a ``CustomCVForce``;
- **the hill history is kept** (centre, width, height, step and walker of every hill), written as
  PLUMED ``HILLS`` files, so the run can be reweighted (:math:`c(t)`) and ``plumed sum_hills``
  reproduces the bias;
- hills are PLUMED's stretched Gaussians by default (``kernel="gaussian"`` gives
  ``app.Metadynamics``'s); the grid is interpolated exactly as OpenMM interpolates its
  ``table(...)`` functions (:mod:`gmvae_cv.metad.grid`);
- **walkers share one bias exactly**: several ``Simulation`` objects passed to one
  :meth:`~WellTemperedMetadynamics.step` advance in lock-step; at each deposition every walker
  adds its hill (heights computed from the bias before this round, as PLUMED's ``WALKERS_MPI``)
  and every walker feels all hills from the next step on;
- **walkers in separate processes** share one bias through a directory (``walkers_dir``, as
  PLUMED's ``WALKERS_DIR``): each appends its hills to its own ``HILLS.<id>`` there and reads the
  others' new hills every ``walkers_stride`` own hills (:mod:`gmvae_cv.metad.walkers`);
- the full state (grid, hills, counters) round-trips through :meth:`state_dict`, which
  :mod:`gmvae_cv.metad.run` stores in atomic checkpoints together with the OpenMM state.

Well-tempered rule (Barducci et al. 2008): a hill deposited at :math:`s` has height
:math:`W = W_0 \exp(-V(s)/(k_B \Delta T))`, :math:`\Delta T = T(\gamma - 1)`, with :math:`V(s)` the
bias the system feels at that step (the interpolated grid, as the force computes it). The free
energy is :math:`F(s) = -\frac{T + \Delta T}{\Delta T} V(s) = -\frac{\gamma}{\gamma-1} V(s)`.

Units: CV values and sigmas in the CV's units, energies kJ/mol, temperature K, time ps.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError, SimulationUnstableError
from .._core.checks import as_value, check_array, check_int
from .force import ROUTES, VERSION_PARAMETER, BiasForceBuilder, TableFile
from .grid import DP2CUTOFF, KERNELS, BiasGrid
from ..deploy.loaders import CVModel
from .hill import Hill

__all__ = ["WellTemperedMetadynamics", "MetadynamicsParameters", "Hill", "BiasEdgeWarning", "BiasRouteWarning",
           "SimulationUnstableError", "as_value"]

_HILL_FIELDS = ("step", "walker", "time", "center", "sigma", "height")


class BiasEdgeWarning(UserWarning):
    """A hill was deposited near (or beyond) the edge of a non-periodic grid."""


class BiasRouteWarning(UserWarning):
    """The bias force uses another route than the one requested (and why)."""


def _gas_constant() -> float:
    from openmm import unit

    return unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["units"] = {"temperature": "K", "height": "kJ/mol", "sigma": "CV units", "pace": "steps", "grid": "CV units"}
        return d


class WellTemperedMetadynamics:
    """Well-tempered metadynamics on 1 to 3 components of an exported CV.

    Parameters
    ----------
    cv : CVModel
        From :func:`gmvae_cv.deploy.loaders.load_cv`.
    temperature : float or Quantity
        K.
    height : float or Quantity
        Initial hill height, kJ/mol.
    sigma : sequence of float
        Hill widths in CV units, one per biased component.
    bias_factor : float
        :math:`\\gamma`, > 1.
    pace : int
        Steps between hills (>= 1).
    components : sequence of int, optional
        Biased CV components, 1 to 3 distinct indices; default all (if D <= 3).
    grid_min, grid_max : sequence of float, optional
        Grid range per biased component. Default: the period for periodic components; for the
        others, the ``cv_range`` recorded in the CV file widened by 50 % on each side (an error
        if the file records none).
    grid_bin : sequence of int, optional
        Bins per component; default ``ceil(5 (max - min) / sigma)`` (OpenMM's default).
    kernel : {'stretched-gaussian', 'gaussian'}
    route : {'compiled', 'autograd'}
        How the force evaluates the bias (:mod:`gmvae_cv.metad.force`).
    dtype : {'float64', 'float32'}
        Arithmetic inside the force.
    table_path : path, optional
        File the forces read the bias table from; default a private temporary file, removed
        with this object.
    on_hill : callable, optional
        Called as ``on_hill(hill)`` after each deposition (e.g. a HILLS writer).
    heating_limit : float, 'auto' or None
        :meth:`step` raises :class:`SimulationUnstableError` when a walker's kinetic temperature
        exceeds ``heating_limit`` times ``temperature`` at a deposition. A CV that changes
        almost discontinuously between neighbouring configurations (a steep switch of q(y|x)
        between clusters with distant latent means) makes the bias force spike where it is
        crossed; the integrator then pumps energy into the system at every crossing until it
        blows up. ``'auto'``: the level an equilibrium kinetic temperature exceeds with
        probability 1e-12 (chi-squared with the system's degrees of freedom), at least 1.5.
        ``None`` disables the check (non-finite values are always an error).
    walkers_dir : path, optional
        A directory shared by walkers in other processes (:mod:`gmvae_cv.metad.walkers`): this
        walker publishes its hills to ``walkers_dir/HILLS.<walker_id>`` and adds the others' to its
        grid. Walkers with other parameters or another CV are refused. :meth:`step` then advances
        one simulation and exchanges (:meth:`exchange`) before its first step and every
        ``walkers_stride`` own hills.
    walker_id : int, optional
        This walker's id in ``walkers_dir`` (required with it), unique among its walkers.
    walkers_stride : int
        Own hills between exchanges (default 10).
    walker_info : dict, optional
        Free-form details for this walker's descriptor in ``walkers_dir`` (not compared).

    Examples
    --------
    >>> from gmvae_cv.deploy.loaders import feature_cv
    >>> from gmvae_cv.features import alanine_backbone_torsions
    >>> meta = WellTemperedMetadynamics(feature_cv(alanine_backbone_torsions(transform="raw")),
    ...     temperature=300, height=1.2, sigma=[0.35, 0.35], bias_factor=6, pace=500)
    >>> meta.grid.shape, meta.params.periodic
    ((91, 91), (True, True))
    """

    def __init__(
        self,
        cv: CVModel,
        *,
        temperature: Any,
        height: Any,
        sigma: Sequence[float],
        bias_factor: float,
        pace: int,
        components: Optional[Sequence[int]] = None,
        grid_min: Optional[Sequence[float]] = None,
        grid_max: Optional[Sequence[float]] = None,
        grid_bin: Optional[Sequence[int]] = None,
        kernel: str = "stretched-gaussian",
        route: str = "compiled",
        dtype: str = "float64",
        table_path: Optional[str | os.PathLike] = None,
        on_hill: Optional[Callable[[Hill], None]] = None,
        heating_limit: Optional[float | str] = "auto",
        walkers_dir: Optional[str | os.PathLike] = None,
        walker_id: Optional[int] = None,
        walkers_stride: int = 10,
        walker_info: Optional[dict] = None,
    ) -> None:
        from openmm import unit

        if not isinstance(cv, CVModel):
            raise GMVAEInputError(f"'cv' is {type(cv).__name__}, expected a CVModel (gmvae_cv.deploy.loaders.load_cv)")
        self.cv = cv
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
        if route not in ROUTES:
            raise GMVAEInputError(f"'route' is {route!r}, expected one of {', '.join(ROUTES)}")
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
        d = len(components)
        sigma_arr = np.atleast_1d(np.asarray(sigma, dtype=np.float64)) if np.ndim(sigma) <= 1 else None
        if sigma_arr is None or sigma_arr.shape != (d,):
            got = np.size(sigma) if sigma is not None else 0
            raise GMVAEInputError(f"'sigma' has {got} value(s), expected {d} (one per biased component {list(components)})")
        if not np.all(np.isfinite(sigma_arr)) or np.any(sigma_arr <= 0):
            raise GMVAEInputError(f"'sigma' is {sigma_arr.tolist()}, expected widths > 0 in CV units")
        periodic = tuple(cv.periodic[c] is not None for c in components)
        lo, hi = self._grid_range(cv, components, grid_min, grid_max, sigma_arr)
        if grid_bin is None:
            bins = tuple(int(math.ceil(5.0 * (hi[a] - lo[a]) / sigma_arr[a])) for a in range(d))
        else:
            if np.size(grid_bin) != d:
                raise GMVAEInputError(f"'grid_bin' has {np.size(grid_bin)} value(s), expected {d} (one per biased component)")
            bins = tuple(check_int(b, "grid_bin", minimum=2) for b in np.atleast_1d(grid_bin).tolist())
        self.params = MetadynamicsParameters(
            temperature=temperature, height=height, sigma=tuple(float(s) for s in sigma_arr), bias_factor=bias_factor,
            pace=pace, components=components, grid_min=tuple(float(x) for x in lo), grid_max=tuple(float(x) for x in hi),
            grid_bin=bins, periodic=periodic, kernel=kernel,
        )
        self.grid = BiasGrid(lo, hi, bins, periodic)
        for a in range(d):
            if self.grid.spacing[a] > sigma_arr[a] / 2.0:
                warnings.warn(
                    f"grid spacing {self.grid.spacing[a]:.3g} of component {components[a]} is more than sigma/2 = "
                    f"{sigma_arr[a] / 2:.3g}; the interpolated bias will be coarse (raise grid_bin)",
                    BiasEdgeWarning, stacklevel=2,
                )
        self.delta_t = temperature * (bias_factor - 1.0)
        self.kT_bias = _gas_constant() * self.delta_t  # k_B DeltaT in kJ/mol
        self.route = route
        self.dtype = dtype
        self.hills: list[Hill] = []
        self.version = 0
        self.on_hill = on_hill
        self.edge_events: list[dict] = []
        self._edge_warned: set = set()
        self._builder: Optional[BiasForceBuilder] = None
        self._force_groups: dict[int, int] = {}
        if table_path is None:
            tmpdir = tempfile.mkdtemp(prefix="gmvae-cv-bias-")
            table_path = Path(tmpdir) / "bias_table.f64"
            self._cleanup = weakref.finalize(self, _remove_tree, tmpdir)
        self.table_path = Path(table_path)
        self._table = TableFile(self.table_path, self.grid.force_table_shape)
        self._table_revision = -1  # grid revision the file was last written for
        self._write_table()
        if heating_limit is not None and heating_limit != "auto":
            try:
                heating_limit = float(heating_limit)
            except (TypeError, ValueError):
                raise GMVAEInputError(f"'heating_limit' is {heating_limit!r}, expected 'auto', None or a number > 1") from None
            if not heating_limit > 1.0:
                raise GMVAEInputError(f"'heating_limit' is {heating_limit!r}, expected 'auto', None or a number > 1")
        self.heating_limit = heating_limit
        self._dof: dict[int, int] = {}
        self.kinetic_temperatures: list[list[float]] = []
        self._limits: dict = {}
        # walkers in other processes
        self.walkers = None
        self.walker_id = 0
        self.walkers_stride = check_int(walkers_stride, "walkers_stride", minimum=1)
        self._own_hills: list[Hill] = []
        self._auto_exchange = True
        self._exchanged = False
        self._since_exchange = 0
        if walkers_dir is not None:
            from .walkers import SharedWalkers

            if walker_id is None:
                raise GMVAEInputError("'walker_id' is missing: a walker sharing 'walkers_dir' needs its own id (an integer >= 0)")
            self.walker_id = check_int(walker_id, "walker_id", minimum=0)
            self.walkers = SharedWalkers(walkers_dir, self.walker_id, self.params.to_dict(), cv.sha256,
                                         [f"cv.{c}" for c in components], [cv.periodic[c] for c in components],
                                         info=walker_info)
        elif walker_id is not None:
            raise GMVAEInputError("'walker_id' is given without 'walkers_dir'")

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _grid_range(cv: CVModel, components, grid_min, grid_max, sigma) -> tuple[np.ndarray, np.ndarray]:
        d = len(components)
        cv_range = cv.meta.get("cv_range")
        lo = np.zeros(d)
        hi = np.zeros(d)
        for a, c in enumerate(components):
            per = cv.periodic[c]
            given_lo = None if grid_min is None else grid_min
            given_hi = None if grid_max is None else grid_max
            if given_lo is not None and np.size(given_lo) != d:
                raise GMVAEInputError(f"'grid_min' has {np.size(given_lo)} value(s), expected {d} (one per biased component)")
            if given_hi is not None and np.size(given_hi) != d:
                raise GMVAEInputError(f"'grid_max' has {np.size(given_hi)} value(s), expected {d} (one per biased component)")
            if per is not None:
                if given_lo is not None or given_hi is not None:
                    glo = per[0] if given_lo is None else float(np.atleast_1d(given_lo)[a])
                    ghi = per[1] if given_hi is None else float(np.atleast_1d(given_hi)[a])
                    if not (math.isclose(glo, per[0], abs_tol=1e-9) and math.isclose(ghi, per[1], abs_tol=1e-9)):
                        raise GMVAEInputError(
                            f"'grid_min'/'grid_max' of component {c} are {glo:g}, {ghi:g}; the component is periodic on "
                            f"[{per[0]:g}, {per[1]:g}], expected the grid to be that period"
                        )
                lo[a], hi[a] = per
                continue
            if given_lo is not None and given_hi is not None:
                lo[a] = float(np.atleast_1d(given_lo)[a])
                hi[a] = float(np.atleast_1d(given_hi)[a])
            elif cv_range is not None and len(cv_range) > c:
                r_lo, r_hi = float(cv_range[c][0]), float(cv_range[c][1])
                pad = max(0.5 * (r_hi - r_lo), 4.0 * float(sigma[a]))
                lo[a] = float(np.atleast_1d(given_lo)[a]) if given_lo is not None else r_lo - pad
                hi[a] = float(np.atleast_1d(given_hi)[a]) if given_hi is not None else r_hi + pad
            else:
                raise GMVAEInputError(
                    f"'grid_min'/'grid_max' of component {c} are missing and the CV file records no 'cv_range'; "
                    "give the grid range of every non-periodic biased component"
                )
            if not (np.isfinite(lo[a]) and np.isfinite(hi[a]) and hi[a] > lo[a]):
                raise GMVAEInputError(f"'grid_max' of component {c} is {hi[a]:g}, expected a finite value above grid_min = {lo[a]:g}")
        return lo, hi

    def add_force(self, system: Any, positions: Any, box: Any = None, *, topology: Any = None, use_box: Optional[bool] = None,
                  force_group: Optional[int] = None):
        """Add the bias force to ``system`` (one call per walker system) and return it.

        Parameters
        ----------
        system : openmm.System
            Its atom count must be the CV's ``n_atoms``.
        positions : array_like or Quantity, shape ``(n_atoms, 3)``
            A configuration (nm): the compiled force is traced and checked there, and its CV
            must lie inside the grid of non-periodic components.
        box : array_like, shape ``(3, 3)``, optional
            Periodic box vectors (rows, nm); default the system's.
        topology : openmm.app.Topology, optional
            Used to decide ``use_box``: OpenMM keeps molecules whole in its contexts, so a CV
            whose atoms all belong to one molecule needs no minimum image.
        use_box : bool, optional
            Pass the box to the CV (minimum image). Default: false for a non-periodic system or
            a CV within one molecule of ``topology``, true otherwise. With the box, the CV's
            minimum-image code branches on the box values, which tracing cannot follow: the
            force then uses the ``"autograd"`` route (a :class:`BiasRouteWarning` says so and
            :attr:`force_info` records it).
        force_group : int, optional
            Default: the highest group no force of ``system`` uses (as ``app.Metadynamics``).

        Returns
        -------
        openmmtorch.TorchForce
        """
        from openmm import unit

        self.cv.check_system(system.getNumParticles())
        pos = _nm(positions, "positions")
        if pos.shape != (self.cv.n_atoms, 3):
            raise GMVAEInputError(f"'positions' has shape {pos.shape}, expected ({self.cv.n_atoms}, 3) in nm")
        periodic_system = system.usesPeriodicBoundaryConditions()
        box_reason = "given"
        if use_box is None:
            if not periodic_system:
                use_box, box_reason = False, "system not periodic"
            elif topology is not None and _one_molecule(topology, self.cv.atom_indices):
                use_box, box_reason = False, "the CV's atoms are one molecule, which OpenMM keeps whole"
            else:
                use_box, box_reason = True, "periodic system, CV atoms not known to be one molecule"
        if use_box and not periodic_system:
            raise GMVAEInputError("'use_box' is true but the system has no periodic boundary conditions")
        bx = None
        if use_box:
            bx = _nm(box, "box") if box is not None else np.array(
                [v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()], dtype=np.float64)
        s0 = self.cv(pos, bx)
        self.check_inside(s0, where="the starting configuration")
        if self._builder is None:
            route = self.route
            if use_box and route == "compiled":
                warnings.warn(
                    "the CV gets the periodic box, and its minimum-image code branches on the box values, which the "
                    "compiled route cannot trace: using route='autograd' (pass a topology in which the CV atoms form one "
                    "molecule, or use_box=False, to keep the compiled route)", BiasRouteWarning, stacklevel=2)
                route = "autograd"
            self._builder = BiasForceBuilder(self.cv.module, self.params.components, self.grid, self.table_path,
                                             route=route, dtype=self.dtype, use_box=use_box)
            self._builder.info["use_box_reason"] = box_reason
            self._builder.info["route_requested"] = self.route
        elif self._builder.use_box != use_box:
            raise GMVAEInputError("all walker systems must agree on periodic boundary conditions")
        force = self._builder.force(pos, bx)
        if force_group is None:
            used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
            free = sorted(set(range(32)) - used)
            if not free:
                raise GMVAEInputError("the system uses all 32 force groups; none is left for the bias force")
            force_group = free[-1]
        force.setForceGroup(int(force_group))
        system.addForce(force)
        self._force_groups[id(system)] = int(force_group)
        return force

    @property
    def force_info(self) -> dict:
        """How the force was built (route, dtype, compiled graph check), once :meth:`add_force` ran."""
        return dict(self._builder.info) if self._builder is not None else {}

    # ------------------------------------------------------------------ evaluation
    def cv_values(self, context: Any) -> np.ndarray:
        """All CV components of a context's current positions, shape ``(D,)``."""
        from openmm import unit

        state = context.getState(getPositions=True)
        return self._cv_of_state(state, state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))

    def _cv_of_state(self, state: Any, pos: np.ndarray) -> np.ndarray:
        """The CV at ``pos`` (nm, from ``state``), with the state's box where the force uses one."""
        from openmm import unit

        box = None
        if self._builder is not None and self._builder.use_box:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
        return self.cv(pos, box)

    def bias_at(self, s: Any) -> float:
        """The bias (kJ/mol) at CV values ``s`` (all components, shape ``(D,)``), as the force computes it."""
        s = np.asarray(s, dtype=np.float64)
        v, _ = self.grid.evaluate(s[list(self.params.components)][None])
        return float(v[0])

    def free_energy(self) -> np.ndarray:
        """Free energy on the grid nodes, kJ/mol: :math:`-\\frac{\\gamma}{\\gamma - 1} V` (not shifted)."""
        g = self.params.bias_factor
        return -(g / (g - 1.0)) * self.grid.values

    def rct(self) -> float:
        """Tiwary-Parrinello :math:`c(t)` of the current bias over the grid nodes, kJ/mol.

        :math:`c = k_B T \\log[\\sum e^{\\gamma V/((\\gamma-1)k_BT)} / \\sum e^{V/((\\gamma-1)k_BT)}]`
        over the nodes (the duplicate end node of periodic axes excluded), as PLUMED's
        ``CALC_RCT``.
        """
        kt = _gas_constant() * self.params.temperature
        g = self.params.bias_factor
        keep = tuple(slice(0, b) if p else slice(None) for b, p in zip(self.grid.bins, self.grid.periodic))
        v = self.grid.values[keep].ravel() / kt
        a = g / (g - 1.0) * v
        b = v / (g - 1.0)
        return float(kt * (_logsumexp(a) - _logsumexp(b)))

    def check_inside(self, s: np.ndarray, *, where: str) -> None:
        """Raise if the biased components of ``s`` lie outside a non-periodic grid range."""
        for a, c in enumerate(self.params.components):
            if self.grid.periodic[a]:
                continue
            if not (self.grid.lower[a] <= s[c] <= self.grid.upper[a]):
                raise GMVAEInputError(
                    f"CV component {c} of {where} is {s[c]:.6g}, outside the grid [{self.grid.lower[a]:.6g}, "
                    f"{self.grid.upper[a]:.6g}]; widen grid_min/grid_max (the bias is zero outside the grid)"
                )

    # ------------------------------------------------------------------ deposition
    def deposit(self, centers: Sequence[np.ndarray], step: int, time_ps: float, walkers: Optional[Sequence[int]] = None) -> list[Hill]:
        """Deposit one hill per walker at the given CV values (all components, shape ``(D,)`` each).

        Heights follow the well-tempered rule with the bias before this round; all hills are
        then added, the table rows they change are rewritten and :attr:`version` increases
        (contexts must be told with :meth:`sync`; :meth:`step` does it). ``walkers`` default to
        ``0, 1, ...``, or to :attr:`walker_id` with ``walkers_dir``.
        """
        p = self.params
        comp = list(p.components)
        if walkers is None:
            walkers = [self.walker_id] * len(centers) if self.walkers is not None else list(range(len(centers)))
        walkers = list(walkers)
        new = []
        sig = np.asarray(p.sigma)
        for w, s in zip(walkers, centers):
            s = np.asarray(s, dtype=np.float64)
            c = s[comp]
            v = self.bias_at(s)
            h = p.height * math.exp(-v / self.kT_bias)
            self._check_edges(c, sig, step, w)
            new.append(Hill(step=int(step), walker=int(w), time=float(time_ps), center=c, sigma=sig.copy(), height=h))
        self._add_hills(new)
        if self.walkers is not None:
            self._own_hills += [h for h in new if h.walker == self.walker_id]
        if self.on_hill is not None:
            for hill in new:
                self.on_hill(hill)
        return new

    def _check_edges(self, c: np.ndarray, sig: np.ndarray, step: int, walker: int) -> None:
        reach = math.sqrt(2.0 * DP2CUTOFF)  # hills vanish beyond this many sigmas (stretched kernel)
        for a, comp in enumerate(self.params.components):
            if self.grid.periodic[a]:
                continue
            lo, hi = self.grid.lower[a], self.grid.upper[a]
            for side, dist in (("min", c[a] - lo), ("max", hi - c[a])):
                if dist < reach * sig[a]:
                    outside = dist < 0
                    self.edge_events.append({"step": int(step), "walker": int(walker), "component": int(comp),
                                             "side": side, "cv": float(c[a]), "outside": bool(outside)})
                    key = (comp, side, outside)
                    if key not in self._edge_warned:
                        self._edge_warned.add(key)
                        what = "outside" if outside else f"within {reach:.2f} sigma of"
                        warnings.warn(
                            f"step {step}: a hill on component {comp} at {c[a]:.4g} is {what} the grid {side} "
                            f"({lo if side == 'min' else hi:.4g}); the bias is cut there and zero beyond it: widen the grid",
                            BiasEdgeWarning, stacklevel=3,
                        )

    def _add_hills(self, hills: Sequence[Hill]) -> None:
        """Add hills to the grid and the hill list; write the table rows they changed (the whole
        table if the grid was changed in another way since the file was last written)."""
        stale = self.grid.revision != self._table_revision
        self.grid.force_table()  # cached, so that add_hill updates it locally
        regions = []
        for hill in hills:
            regions.append(self.grid.add_hill(hill.center, hill.sigma, hill.height, self.params.kernel))
            self.hills.append(hill)
        table = self.grid.force_table()
        if stale:
            self._table.write(table)
        else:
            for region in regions:
                self._table.write_region(table, self.grid.shape, region)
        self._table_revision = self.grid.revision
        self.version += 1

    def _write_table(self) -> None:
        self._table.write(self.grid.force_table())
        self._table_revision = self.grid.revision
        self.version += 1

    def refresh_table(self) -> None:
        """Recompute the whole table from the node values (as a restart does) and write it.

        :meth:`deposit` updates the table locally, which equals a recomputation to float64
        rounding but not bit for bit; :func:`~gmvae_cv.metad.run.run_metadynamics` refreshes at
        every checkpoint, so that a run continued from a checkpoint is bit-identical to an
        uninterrupted one. Contexts must be told with :meth:`sync`.
        """
        self.grid.touch()
        self._write_table()

    def sync(self, contexts: Sequence[Any]) -> None:
        """Make each context's bias force use the current table."""
        for ctx in contexts:
            if ctx.getParameter(VERSION_PARAMETER) != self.version:
                ctx.setParameter(VERSION_PARAMETER, float(self.version))

    def step(self, simulations: Any, steps: int) -> list[Hill]:
        """Advance one or several walkers by ``steps``, depositing hills every ``pace`` steps.

        Parameters
        ----------
        simulations : openmm.app.Simulation or list of them
            Walkers, each with this object's force (:meth:`add_force`) and all at the same
            ``currentStep``. They advance in lock-step, ``pace`` steps at a time.
        steps : int

        Returns
        -------
        list of Hill
            The hills deposited during this call.
        """
        sims = list(simulations) if isinstance(simulations, (list, tuple)) else [simulations]
        steps = check_int(steps, "steps", minimum=0)
        if len({s.currentStep for s in sims}) != 1:
            raise GMVAEInputError(f"walkers are at different steps {[s.currentStep for s in sims]}, expected lock-step walkers")
        contexts = [s.context for s in sims]
        shared = self.walkers is not None
        if shared and len(sims) != 1:
            raise GMVAEInputError(f"{len(sims)} simulations given; a walker sharing 'walkers_dir' advances one simulation")
        if shared and self._auto_exchange and not self._exchanged:
            self.exchange()
        self.sync(contexts)
        pace = self.params.pace
        deposited: list[Hill] = []
        todo = steps
        while todo > 0:
            current = sims[0].currentStep
            n = min(todo, pace - current % pace)
            for w, sim in enumerate(sims):
                try:
                    sim.step(n)
                except Exception as exc:  # a force fed non-finite positions fails in its own way
                    self._diagnose_failure(sim, w, exc)
                    raise
            todo -= n
            current = sims[0].currentStep
            if current % pace == 0:
                centers = self.check_stable(sims)
                time_ps = contexts[0].getTime().value_in_unit(_ps())
                deposited += self.deposit(centers, current, time_ps, [self.walker_id] if shared else None)
                if shared and self._auto_exchange:
                    self._since_exchange += 1
                    if self._since_exchange >= self.walkers_stride:
                        self.exchange()
                self.sync(contexts)
        return deposited

    # ------------------------------------------------------------------ walkers in other processes
    def publish_hills(self) -> int:
        """Append this walker's hills not yet in ``walkers_dir/HILLS.<walker_id>`` there; return how
        many. The first call after construction or :meth:`load_state_dict` checks the file against
        this walker's hills (a line half-written by a killed process is cut)."""
        if self.walkers is None:
            raise GMVAEInputError("this bias has no 'walkers_dir'")
        return self.walkers.publish(self._own_hills)

    def read_walkers(self) -> list[Hill]:
        """Add the hills the other walkers of ``walkers_dir`` published since the last read to the
        grid (and to :attr:`hills`); return them. Contexts must be told with :meth:`sync`."""
        if self.walkers is None:
            raise GMVAEInputError("this bias has no 'walkers_dir'")
        new = self.walkers.read_new()
        if new:
            self._add_hills(new)
        return new

    def exchange(self) -> list[Hill]:
        """:meth:`publish_hills`, then :meth:`read_walkers` (what :meth:`step` does every
        ``walkers_stride`` own hills); return the hills read."""
        self.publish_hills()
        self._exchanged = True
        self._since_exchange = 0
        return self.read_walkers()

    def close(self) -> None:
        """Release the walker id in ``walkers_dir`` (also done when the object is collected)."""
        if self.walkers is not None:
            self.walkers.close()

    # ------------------------------------------------------------------ stability
    def _degrees_of_freedom(self, system: Any) -> int:
        import openmm

        key = id(system)
        if key not in self._dof:
            n = sum(1 for i in range(system.getNumParticles()) if system.getParticleMass(i)._value > 0)
            dof = 3 * n - system.getNumConstraints()
            if any(isinstance(system.getForce(i), openmm.CMMotionRemover) for i in range(system.getNumForces())):
                dof -= 3
            self._dof[key] = max(dof, 1)
        return self._dof[key]

    def temperature_limit(self, system: Any) -> Optional[float]:
        """The kinetic temperature (K) above which :meth:`check_stable` stops a walker of ``system``."""
        if self.heating_limit is None:
            return None
        if self.heating_limit == "auto":
            dof = self._degrees_of_freedom(system)
            if ("auto", dof) not in self._limits:  # scipy's isf costs more than the rest of a deposition
                from scipy.stats import chi2

                self._limits[("auto", dof)] = max(1.5, float(chi2.isf(1e-12, dof)) / dof)
            return self.params.temperature * self._limits[("auto", dof)]
        return self.params.temperature * float(self.heating_limit)

    def _unstable(self, sim: Any, walker: int, what: str) -> SimulationUnstableError:
        """The error for ``walker``, with the largest bias force when it can still be computed."""
        from openmm import unit

        detail = ""
        group = self._force_groups.get(id(sim.system))
        if group is not None:
            try:
                f = sim.context.getState(getForces=True, groups={group}).getForces(asNumpy=True)
                norms = np.linalg.norm(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer), axis=1)
                if np.all(np.isfinite(norms)):
                    detail = f" (bias force now at most {norms.max():.3g} kJ/mol/nm, on atom {int(norms.argmax())})"
            except Exception:  # the force itself may fail on these positions  # noqa: BLE001
                detail = " (the bias force cannot be evaluated there)"
        return SimulationUnstableError(
            f"walker {walker}, step {sim.currentStep}: {what}{detail}. The bias force changed faster than the "
            "integrator can follow: either the CV changes steeply between neighbouring configurations (e.g. a sharp "
            "switch of q(y|x) between clusters whose latent means lie far apart) or the hills are too high and narrow, "
            "and every crossing heats the system. Use a smoother CV (train with a larger entropy_weight, on data that "
            "covers the regions the bias will visit), a smaller time step, or wider sigma / lower height; the last "
            "checkpoint is kept"
        )

    def check_stable(self, simulations: Any) -> list[np.ndarray]:
        """Raise :class:`SimulationUnstableError` if a walker's positions, energies or CV are not
        finite or its kinetic temperature exceeds :meth:`temperature_limit` (called by :meth:`step`
        at every deposition); return every walker's CV values (:meth:`cv_values`)."""
        from openmm import unit

        sims = list(simulations) if isinstance(simulations, (list, tuple)) else [simulations]
        values = []
        for w, sim in enumerate(sims):
            state = sim.context.getState(getPositions=True, getEnergy=True)
            pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            pot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            kin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
            if not (np.all(np.isfinite(pos)) and math.isfinite(pot) and math.isfinite(kin)):
                raise self._unstable(sim, w, f"non-finite positions or energies (potential {pot:.6g}, kinetic {kin:.6g} kJ/mol)")
            s = self._cv_of_state(state, pos)  # the positions just checked, not a second copy
            if not np.all(np.isfinite(s)):
                raise self._unstable(sim, w, f"the CV is not finite: {s.tolist()}")
            limit = self.temperature_limit(sim.system)
            t_kin = 2.0 * kin / (self._degrees_of_freedom(sim.system) * _gas_constant())
            while len(self.kinetic_temperatures) <= w:
                self.kinetic_temperatures.append([])
            self.kinetic_temperatures[w].append(t_kin)
            if limit is not None and t_kin > limit:
                raise self._unstable(
                    sim, w, f"kinetic temperature {t_kin:.0f} K, above {limit:.0f} K (the thermostat is at "
                    f"{self.params.temperature:g} K), CV {np.array2string(s, precision=4)}")
            values.append(s)
        return values

    def kinetic_temperature_summary(self) -> Optional[dict]:
        """Kinetic temperatures seen by :meth:`check_stable` (one per walker and deposition) in
        this object's lifetime: mean, 99th percentile and maximum (K), and the equilibrium
        expectation for comparison. A mean clearly above the thermostat's temperature (the standard
        error is given) means the bias force heats the system: see ``heating_limit``."""
        t = np.concatenate([np.asarray(v) for v in self.kinetic_temperatures]) if self.kinetic_temperatures else np.zeros(0)
        if t.size == 0:
            return None
        return {"n_checks": int(t.size), "mean": float(t.mean()), "standard_error": float(t.std() / math.sqrt(t.size)),
                "p99": float(np.percentile(t, 99)), "max": float(t.max()), "thermostat": self.params.temperature,
                "units": "K"}

    def _diagnose_failure(self, sim: Any, walker: int, exc: BaseException) -> None:
        """Turn a force's failure on non-finite positions into :class:`SimulationUnstableError`."""
        from openmm import unit

        try:
            pos = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        except Exception:  # noqa: BLE001
            return
        if not np.all(np.isfinite(pos)):
            raise self._unstable(sim, walker, f"the positions became non-finite ({type(exc).__name__}: "
                                              f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})") from exc

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Grid values, hills and counters as plain arrays (for checkpoints); with ``walkers_dir``
        also ``"walkers"``: per other walker, the byte offset and the number of hills read."""
        d = len(self.params.components)
        m = len(self.hills)
        rows = np.zeros((m, 3 + 2 * d + 1))
        for k, h in enumerate(self.hills):
            rows[k, 0] = h.step
            rows[k, 1] = h.walker
            rows[k, 2] = h.time
            rows[k, 3 : 3 + d] = h.center
            rows[k, 3 + d : 3 + 2 * d] = h.sigma
            rows[k, -1] = h.height
        state = {"grid_values": self.grid.values.copy(), "hills": rows, "version": int(self.version)}
        if self.walkers is not None:
            state["walkers"] = self.walkers.state()  # JSON-able: offsets and counts of the hills read
        return state

    def load_state_dict(self, state: dict, *, source: str = "state") -> None:
        """Restore :meth:`state_dict` output (grid geometry must match)."""
        values = check_array(state["grid_values"], "grid_values", source=source)
        if values.shape != self.grid.shape:
            raise GMVAEInputError(f"{source}: 'grid_values' has shape {values.shape}, expected {self.grid.shape} (another grid)")
        rows = check_array(state["hills"], "hills", source=source, ndim=2)
        d = len(self.params.components)
        if rows.shape[0] and rows.shape[1] != 3 + 2 * d + 1:
            raise GMVAEInputError(f"{source}: 'hills' has {rows.shape[1]} columns, expected {3 + 2 * d + 1} for {d} components")
        self.grid.values = values.copy()
        self.hills = [Hill(step=int(r[0]), walker=int(r[1]), time=float(r[2]), center=r[3 : 3 + d].copy(),
                           sigma=r[3 + d : 3 + 2 * d].copy(), height=float(r[-1])) for r in rows]
        self.version = int(state.get("version", self.version))
        self._write_table()
        if self.walkers is not None:
            self._own_hills = [h for h in self.hills if h.walker == self.walker_id and h.step >= 0]
            self.walkers.load_state(state.get("walkers", {"walker_id": self.walker_id, "read": {}}), source=source)
            self._exchanged = False
            self._since_exchange = 0


def _ps():
    from openmm import unit

    return unit.picosecond


def _nm(value: Any, name: str) -> np.ndarray:
    """Positions or box vectors in nm, from an array, a Quantity, or a list of Vec3 Quantities."""
    from openmm import unit

    if hasattr(value, "value_in_unit"):
        value = value.value_in_unit(unit.nanometer)
    rows = [v.value_in_unit(unit.nanometer) if hasattr(v, "value_in_unit") else v for v in value]
    try:
        arr = np.array([[float(x) for x in r] for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        raise GMVAEInputError(f"'{name}' is not an array of 3-vectors in nm") from None
    return check_array(arr, name, ndim=2)


def _one_molecule(topology: Any, atoms: Optional[np.ndarray]) -> bool:
    """Whether ``atoms`` (all atoms if None) lie in one bonded molecule of an OpenMM topology."""
    if atoms is None or len(atoms) == 0:
        return False
    parent = list(range(topology.getNumAtoms()))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for bond in topology.bonds():
        a, b = find(bond[0].index), find(bond[1].index)
        if a != b:
            parent[a] = b
    return len({find(int(i)) for i in atoms}) == 1


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
