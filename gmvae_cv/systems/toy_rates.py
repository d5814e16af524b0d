r"""Rates with exact answers: a 1D double well, its exact mean first-passage time, and infrequent
metadynamics on toy systems (one independent bias per run, every run stopped at its first
transition).

- :class:`DoubleWell`: :math:`U(x) = h\,(x^2 - 1)^2`, minima at :math:`\pm 1`, barrier :math:`h` at 0.
- :func:`exact_mfpt`: the mean first-passage time of overdamped dynamics in 1D from the
  closed-form double integral (Gardiner, *Handbook of Stochastic Methods*, 5.2.7),

  .. math::
      T(x_0 \to b) = \frac{1}{D}\int_{x_0}^{b} dy\, e^{\beta U(y)} \int_{a}^{y} dz\, e^{-\beta U(z)},

  with a reflecting wall at :math:`a` and :math:`D = k_BT/\zeta`.
- :func:`toy_infrequent_metadynamics`: vectorised infrequent metadynamics (Tiwary and
  Parrinello 2013) of ``n_runs`` independent walkers, each with its own well-tempered bias on one
  coordinate; returns the biased and the rescaled first-passage times (:mod:`gmvae_cv.analysis.kinetics`
  has the statistics).

Reduced units as in :mod:`gmvae_cv.systems.toy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .._core.checks import check_int, check_positive
from .._core.errors import GMVAEInputError
from .toy import ToySystem, check_hill_schedule

__all__ = ["DoubleWell", "exact_mfpt", "ToyEscapes", "toy_infrequent_metadynamics"]


@dataclass
class DoubleWell(ToySystem):
    r"""The 1D double well :math:`U(x) = h\,(x^2 - 1)^2` (minima at :math:`\pm 1`, barrier ``h`` at 0).

    Kramers' rate out of one well is :math:`k \approx \sqrt{U''(1)|U''(0)|}/(2\pi\zeta)\,e^{-h/k_BT}`
    with :math:`U''(1) = 8h`, :math:`U''(0) = -4h`; :func:`exact_mfpt` gives the exact mean time.
    """

    kT: float = 1.0
    dt: float = 1e-3
    h: float = 6.0

    def __post_init__(self) -> None:
        self.name = "double-well"
        self.dim = 1
        check_positive(self.h, "h")

    def potential(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return self.h * (x**2 - 1.0) ** 2

    def gradient(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return 4.0 * self.h * x * (x**2 - 1.0)

    @property
    def minima(self) -> np.ndarray:
        """(2, 1) minima, left to right."""
        return np.array([[-1.0], [1.0]])

    def basin(self, x: np.ndarray) -> np.ndarray:
        """0 for x < 0, 1 otherwise."""
        x = self._check_positions(x)
        return (x[:, 0] >= 0).astype(np.int64)

    def kramers_time(self, friction: float = 1.0) -> float:
        """Kramers' (high-barrier) mean escape time out of one well, time units."""
        return float(2 * np.pi * friction / np.sqrt(8 * self.h * 4 * self.h) * np.exp(self.h / self.kT))


def exact_mfpt(system: ToySystem, x0: float, b: float, *, a: float, n_grid: int = 200001, friction: float = 1.0) -> float:
    r"""Exact mean first-passage time from ``x0`` to ``b`` (> ``x0``) of 1D overdamped dynamics.

    Parameters
    ----------
    system : ToySystem
        A 1D system (``potential``, ``kT``).
    x0 : float
        Start.
    b : float
        Absorbing point, > x0.
    a : float
        Reflecting wall, < x0, far enough that :math:`e^{-\beta U}` vanishes there.
    n_grid : int
        Trapezoid nodes on ``[a, b]``.
    friction : float
        :math:`\zeta` (1 in :func:`~gmvae_cv.systems.overdamped_langevin`).

    Returns
    -------
    float
        Time units of the integrator.
    """
    if system.dim != 1:
        raise GMVAEInputError(f"exact_mfpt: {system.name} is {system.dim}D, expected a 1D system")
    if not a < x0 < b:
        raise GMVAEInputError(f"exact_mfpt: expected a < x0 < b, got a={a}, x0={x0}, b={b}")
    n_grid = check_int(n_grid, "n_grid", minimum=100)
    beta = 1.0 / system.kT
    d = system.kT / check_positive(friction, "friction")
    x = np.linspace(a, b, n_grid)
    u = beta * np.ravel(system.potential(x[:, None]))
    u0 = u.min()
    inner = np.concatenate([[0.0], np.cumsum(0.5 * (np.exp(-(u[1:] - u0)) + np.exp(-(u[:-1] - u0))) * np.diff(x))])
    outer = np.exp(u - u0) * inner
    keep = x >= x0
    xs, ys = x[keep], outer[keep]
    return float(np.trapezoid(ys, xs) / d) if hasattr(np, "trapezoid") else float(np.trapz(ys, xs) / d)


@dataclass
class ToyEscapes:
    """The output of :func:`toy_infrequent_metadynamics` (one entry per run).

    Attributes
    ----------
    biased_time : (n_runs,) ndarray
        Simulated (biased) time to the first entry into the target, time units.
    rescaled_time : (n_runs,) ndarray
        :math:`t^* = \\sum \\Delta t\\, e^{\\beta V}`, time units.
    acceleration : (n_runs,) ndarray
        ``rescaled_time / biased_time``.
    bias_at_crossing : (n_runs,) ndarray
        Bias at the last step before entering the target, energy units.
    n_hills : (n_runs,) ndarray of int
    escaped : (n_runs,) ndarray of bool
        False for runs that reached ``max_steps`` first (their times are lower bounds).
    kT : float
    """

    biased_time: np.ndarray
    rescaled_time: np.ndarray
    acceleration: np.ndarray
    bias_at_crossing: np.ndarray
    n_hills: np.ndarray
    escaped: np.ndarray
    kT: float = field(default=1.0)


def toy_infrequent_metadynamics(
    system: ToySystem,
    *,
    n_runs: int,
    target: Callable[[np.ndarray], np.ndarray],
    sigma: float,
    height: float,
    pace: int,
    biasfactor: float,
    cv_dim: int = 0,
    grid: tuple[float, float, int] = (-2.5, 2.5, 2001),
    x0: Optional[np.ndarray] = None,
    max_steps: int = 10_000_000,
    seed: int | np.random.Generator | None = None,
) -> ToyEscapes:
    r"""Independent infrequent-metadynamics runs on a toy system, each stopped at its first transition.

    Every run has its own well-tempered bias on coordinate ``cv_dim`` (a hill of height
    :math:`W_0 e^{-V(s)/(k_BT(\gamma-1))}` every ``pace`` steps, not at step 0), and stops the first
    time ``target(x)`` holds. The rescaled time accumulates :math:`\Delta t\, e^{\beta V}` at every
    step with the bias the step felt.

    Parameters
    ----------
    system : ToySystem
        Supplies ``gradient``, ``kT``, ``dt``, ``dim`` (e.g. :class:`DoubleWell`).
    n_runs : int
        Independent runs (integrated together).
    target : callable
        ``target(x)`` with ``x`` of shape ``(n, dim)`` returns a bool array ``(n,)``: in the target state.
    sigma, height : float
        Hill width (coordinate units) and initial height (energy units).
    pace : int
        Steps between hills.
    biasfactor : float
        :math:`\gamma > 1`.
    cv_dim : int
        The biased coordinate.
    grid : (lower, upper, n_nodes)
        Grid of each bias (linear interpolation of values and analytic derivatives); a walker
        outside it feels no bias.
    x0 : (dim,) array_like, optional
        Common start (default the first minimum).
    max_steps : int
        Runs not in the target after this many steps stop with ``escaped = False``.
    seed : int or Generator, optional

    Returns
    -------
    ToyEscapes
    """
    n_runs = check_int(n_runs, "n_runs", minimum=1)
    pace, height, gamma = check_hill_schedule(pace, height, biasfactor)
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    sigma = check_positive(sigma, "sigma")
    if not 0 <= int(cv_dim) < system.dim:
        raise GMVAEInputError(f"'cv_dim' is {cv_dim}, expected a coordinate of a {system.dim}D system")
    cv_dim = int(cv_dim)
    lo, hi, nb = float(grid[0]), float(grid[1]), check_int(grid[2], "grid[2]", minimum=3)
    nodes = np.linspace(lo, hi, nb)
    dx = nodes[1] - nodes[0]
    kT, dt = float(system.kT), float(system.dt)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    start = np.asarray(system.minima[0] if x0 is None else x0, dtype=float).reshape(system.dim)
    x = np.tile(start, (n_runs, 1))
    if np.any(target(x)):
        raise GMVAEInputError("toy_infrequent_metadynamics: the start is inside the target state")
    values = np.zeros((n_runs, nb))
    derivs = np.zeros((n_runs, nb))
    rows = np.arange(n_runs)
    active = np.ones(n_runs, dtype=bool)
    t_bias = np.zeros(n_runs)
    t_star = np.zeros(n_runs)
    v_cross = np.zeros(n_runs)
    n_hills = np.zeros(n_runs, dtype=np.int64)
    noise = np.sqrt(2.0 * kT * dt)
    kt_bias = kT * (gamma - 1.0)
    for step in range(1, max_steps + 1):
        s = x[:, cv_dim]
        f = (s - lo) / dx
        i = np.clip(np.floor(f).astype(np.int64), 0, nb - 2)
        w = np.clip(f - i, 0.0, 1.0)
        inside = (s >= lo) & (s <= hi)
        v = np.where(inside, (1 - w) * values[rows, i] + w * values[rows, i + 1], 0.0)
        dv = np.where(inside, (1 - w) * derivs[rows, i] + w * derivs[rows, i + 1], 0.0)
        t_bias[active] += dt
        t_star[active] += dt * np.exp(v[active] / kT)
        g = system.gradient(x)
        g[:, cv_dim] += dv
        x = x - dt * g + noise * rng.standard_normal(x.shape)
        hit = active & target(x)
        if hit.any():
            v_cross[hit] = v[hit]
            active &= ~hit
            if not active.any():
                break
        if step % pace == 0:
            dep = active & inside
            c = s[dep]
            h = height * np.exp(-v[dep] / kt_bias)
            diff = nodes[None, :] - c[:, None]
            gauss = h[:, None] * np.exp(-0.5 * (diff / sigma) ** 2)
            values[dep] += gauss
            derivs[dep] += -gauss * diff / sigma**2
            n_hills[dep] += 1
    escaped = ~active
    return ToyEscapes(biased_time=t_bias, rescaled_time=t_star, acceleration=t_star / t_bias, bias_at_crossing=v_cross,
                      n_hills=n_hills, escaped=escaped, kT=kT)
