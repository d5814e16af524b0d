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
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.checks import as_value, check_int
from .._core.errors import GMVAEInputError, SimulationUnstableError
from ..deploy import CVModel
from .base import FusedBiasEngine
from .bias_state import HillBias
from .binding import BiasRouteWarning
from .hill import Hill
from .parameters import BiasEdgeWarning, MetadynamicsParameters, biased_variables, check_cv, gas_constant, variables_grid
from .walkers import SharedWalkers
from .walls import resolve_walls

__all__ = ["WellTemperedMetadynamics", "MetadynamicsParameters", "Hill", "BiasEdgeWarning", "BiasRouteWarning",
           "SimulationUnstableError", "as_value"]


class WellTemperedMetadynamics(FusedBiasEngine):
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
    walls : bool
        Walls on the non-periodic biased components, zero inside the grid less ``wall_margin``
        (PLUMED's ``UPPER_WALLS``/``LOWER_WALLS``, :mod:`gmvae_cv.metad.walls`); default on.
    wall_margin : sequence of float, optional
        Distance of the walls' bounds inside the grid edges, CV units, one per biased component;
        default 4 sigma.
    wall_kappa : sequence of float, optional
        Walls' stiffness, kJ/mol/CV-unit^2, one per biased component; default 2 kT / sigma^2.
    route : {'auto', 'native', 'compiled', 'autograd'}
        How the force evaluates the bias. ``'native'``: a numba-compiled kernel behind a
        ``PythonForce`` (:mod:`gmvae_cv.metad.native`), where it applies (float64, no periodic box the
        CV needs, numba installed, a CV module gmvae-cv built), else ``'compiled'`` with a
        :class:`BiasRouteWarning`. ``'compiled'``/``'autograd'``: the TorchForce routes of
        :mod:`gmvae_cv.metad.force`. ``'auto'`` (default): ``'native'`` where it applies, else the
        TorchForce route, without a warning; ``force_info['route']`` says which ran
        (``docs/benchmarks.md``: in vacuum the native route adds 9.8 us per step against the compiled
        route's 221 us, 0.51 of unbiased MD; in water its force costs about 40 us of a 2.5 ms step).
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
        walls: bool = True,
        wall_margin: Optional[Sequence[float]] = None,
        wall_kappa: Optional[Sequence[float]] = None,
        route: str = "auto",
        dtype: str = "float64",
        table_path: Optional[str | os.PathLike] = None,
        on_hill: Optional[Callable[[Hill], None]] = None,
        heating_limit: Optional[float | str] = "auto",
        walkers_dir: Optional[str | os.PathLike] = None,
        walker_id: Optional[int] = None,
        walkers_stride: int = 10,
        walker_info: Optional[dict] = None,
    ) -> None:
        cv = check_cv(cv)
        scalars = MetadynamicsParameters.check_scalars(temperature=temperature, height=height, bias_factor=bias_factor,
                                                       pace=pace, kernel=kernel)
        variables = biased_variables(cv, components, sigma, grid_min, grid_max, grid_bin)
        wall_set = resolve_walls(variables, gas_constant() * scalars["temperature"], walls=walls, margin=wall_margin,
                                 kappa=wall_kappa)
        self.params = MetadynamicsParameters.create(variables, walls=walls, wall_set=wall_set, **scalars)
        super().__init__(cv, self.params.components, variables_grid(variables), temperature=self.params.temperature,
                         pace=self.params.pace, route=route, dtype=dtype, table_path=table_path, heating_limit=heating_limit,
                         walls=wall_set)
        self.variables = variables
        self.bias = HillBias(self.grid, self.params.kernel, self.params.components)
        self.delta_t = self.params.temperature * (self.params.bias_factor - 1.0)
        self.kT_bias = gas_constant() * self.delta_t  # k_B DeltaT in kJ/mol
        self.on_hill = on_hill
        self._init_walkers(walkers_dir, walker_id, walkers_stride, walker_info)

    def _init_walkers(self, walkers_dir, walker_id, walkers_stride, walker_info) -> None:
        self.walkers = None
        self.walker_id = 0
        self.walkers_stride = check_int(walkers_stride, "walkers_stride", minimum=1)
        self._own_hills: list[Hill] = []
        self._auto_exchange = True
        self._exchanged = False
        self._since_exchange = 0
        if walkers_dir is not None:
            if walker_id is None:
                raise GMVAEInputError("'walker_id' is missing: a walker sharing 'walkers_dir' needs its own id (an integer >= 0)")
            self.walker_id = check_int(walker_id, "walker_id", minimum=0)
            comps = self.params.components
            self.walkers = SharedWalkers(walkers_dir, self.walker_id, self.params.to_dict(), self.cv.sha256,
                                         [f"cv.{c}" for c in comps], [self.cv.periodic[c] for c in comps], info=walker_info)
        elif walker_id is not None:
            raise GMVAEInputError("'walker_id' is given without 'walkers_dir'")

    # ------------------------------------------------------------------ the hills
    @property
    def hills(self) -> list[Hill]:
        """Every hill in the bias (own and other walkers'), in the order added."""
        return self.bias.hills

    @hills.setter
    def hills(self, value: list[Hill]) -> None:
        self.bias.hills = value

    @property
    def edge_events(self) -> list[dict]:
        """Hills deposited near (or beyond) a non-periodic grid edge."""
        return self.bias.edge_events

    @edge_events.setter
    def edge_events(self, value: list[dict]) -> None:
        self.bias.edge_events = value

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
        kt = gas_constant() * self.params.temperature
        g = self.params.bias_factor
        keep = tuple(slice(0, b) if p else slice(None) for b, p in zip(self.grid.bins, self.grid.periodic))
        v = self.grid.values[keep].ravel() / kt
        a = g / (g - 1.0) * v
        b = v / (g - 1.0)
        return float(kt * (_logsumexp(a) - _logsumexp(b)))

    bias_fields = ("metad.bias", "metad.rct", "metad.rbias")

    def bias_columns(self, s: np.ndarray) -> list[float]:
        """``metad.bias``, ``metad.rct`` and ``metad.rbias`` at CV values ``s`` (rct cached per table version)."""
        bias = self.bias_at(s)
        if getattr(self, "_rct_cache", (None,))[0] != self.version:
            self._rct_cache = (self.version, self.rct())
        rct = self._rct_cache[1]
        return [bias, rct, bias - rct]

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
        new = []
        sig = np.asarray(p.sigma)
        for w, s in zip(list(walkers), centers):
            s = np.asarray(s, dtype=np.float64)
            c = s[comp]
            h = p.height * math.exp(-self.bias_at(s) / self.kT_bias)
            self.bias.check_edges(c, sig, step, w)
            new.append(Hill(step=int(step), walker=int(w), time=float(time_ps), center=c, sigma=sig.copy(), height=h))
        self._add_hills(new)
        if self.walkers is not None:
            self._own_hills += [h for h in new if h.walker == self.walker_id]
        if self.on_hill is not None:
            for hill in new:
                self.on_hill(hill)
        return new

    def _add_hills(self, hills: Sequence[Hill]) -> None:
        """Add hills to the grid and the hill list; write the table rows they changed."""
        self.binding.update(lambda: self.bias.add(hills))

    def _write_table(self) -> None:
        self.binding.write()

    def _deposit_round(self, centers: list, step: int, time_ps: float, sims: list) -> list[Hill]:
        return self.deposit(centers, step, time_ps, [self.walker_id] if self.walkers is not None else None)

    def _before_steps(self, sims: list) -> None:
        if self.walkers is not None and len(sims) != 1:
            raise GMVAEInputError(f"{len(sims)} simulations given; a walker sharing 'walkers_dir' advances one simulation")
        if self.walkers is not None and self._auto_exchange and not self._exchanged:
            self.exchange()

    def _after_round(self) -> None:
        if self.walkers is not None and self._auto_exchange:
            self._since_exchange += 1
            if self._since_exchange >= self.walkers_stride:
                self.exchange()

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

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Grid values, hills and counters as plain arrays (for checkpoints); with ``walkers_dir``
        also ``"walkers"``: per other walker, the byte offset and the number of hills read."""
        state = {**self.bias.arrays(), "version": int(self.version)}
        if self.walkers is not None:
            state["walkers"] = self.walkers.state()  # JSON-able: offsets and counts of the hills read
        return state

    def load_state_dict(self, state: dict, *, source: str = "state") -> None:
        """Restore :meth:`state_dict` output (grid geometry must match)."""
        self.bias.load_arrays(state, source=source)
        self.version = int(state.get("version", self.version))
        self._write_table()
        if self.walkers is not None:
            self._own_hills = [h for h in self.hills if h.walker == self.walker_id and h.step >= 0]
            self.walkers.load_state(state.get("walkers", {"walker_id": self.walker_id, "read": {}}), source=source)
            self._exchanged = False
            self._since_exchange = 0


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))
