r"""Well-tempered metadynamics on the toy systems, writing PLUMED-format ``COLVAR`` and ``HILLS``.

A small, vectorised reference run with a known answer (the toy's potential) for the reweighting
tests and benchmarks. It follows PLUMED's ``METAD`` step by step:

1. the bias and its force come from the hills deposited so far (tabulated on a grid,
   :class:`gmvae_cv.analysis.hill_grid.HillSumGrid`);
2. a frame is recorded every ``stride`` steps with the bias it feels;
3. every ``pace`` steps (not at step 0) each walker deposits a hill of height
   :math:`W_0 e^{-V(s)/(k_BT(\gamma-1))}` at its CV value (multiple walkers share one bias);
4. the overdamped Langevin step
   :math:`x \leftarrow x - \Delta t\,\nabla(U + V)/\zeta + \sqrt{2k_BT\Delta t/\zeta}\,\xi`.

Times and energies are in the toy's reduced units; ``kT`` is recorded in the files' headers
(``#! SET kT``), so the reweighting reads the temperature from the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.checks import check_int
from ..analysis import GridSpec, Hills, HillSumGrid
from ..analysis import write_plumed
from .toy import ToySystem, check_hill_schedule

__all__ = ["ToyMetadRun", "toy_metadynamics"]


@dataclass
class ToyMetadRun:
    """The output of :func:`toy_metadynamics`.

    Attributes
    ----------
    times : (n_frames,) ndarray
        Frame times (reduced units).
    positions : (n_walkers, n_frames, dim) ndarray
        Recorded positions.
    bias : (n_walkers, n_frames) ndarray
        Bias each frame felt (hills deposited before it), energy units.
    hills : Hills
        All walkers' hills in deposition order (deposited heights).
    kT : float
    coordinate_names : tuple of str
        Names of the system's coordinates in the COLVAR (``x``, ``y``).
    """

    times: np.ndarray
    positions: np.ndarray
    bias: np.ndarray
    hills: Hills
    kT: float
    coordinate_names: tuple

    def write(self, out_dir: str | os.PathLike, *, fmt: str = "%.10g") -> dict:
        """Write ``COLVAR`` (``COLVAR.<i>`` per walker if several) and ``HILLS`` in PLUMED format.

        Returns
        -------
        dict
            ``{"colvar": [paths], "hills": path}``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        n_w = self.positions.shape[0]
        names = [out / ("COLVAR" if n_w == 1 else f"COLVAR.{i}") for i in range(n_w)]
        fields = ["time", *self.coordinate_names, "metad.bias"]
        for i, p in enumerate(names):
            data = np.column_stack([self.times, self.positions[i], self.bias[i]])
            write_plumed(p, fields, data, sets={"kT": repr(self.kT)}, fmt=fmt)
        hp = out / "HILLS"
        self.hills.to_file(hp, sets={"kT": repr(self.kT)}, fmt=fmt)
        return {"colvar": [str(p) for p in names], "hills": str(hp)}


def _biased_coordinates(system: ToySystem, cv_dims: Sequence[int], sigma: Any) -> tuple[list[int], np.ndarray]:
    """The checked biased coordinates and the hill width per coordinate, shape ``(len(cv_dims),)``."""
    cv_dims = [int(c) for c in cv_dims]
    if not cv_dims or any(c < 0 or c >= system.dim for c in cv_dims):
        raise GMVAEInputError(f"'cv_dims' is {cv_dims}, expected coordinates of a {system.dim}D system")
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (len(cv_dims),)).copy()
    if (sig <= 0).any():
        raise GMVAEInputError(f"'sigma' is {sigma}, expected > 0")
    return cv_dims, sig


def _default_grid(system: ToySystem, cv_dims: list[int], sig: np.ndarray) -> GridSpec:
    """The minima's box widened by 1.5 in each biased coordinate, spacing at most sigma/5, not periodic."""
    m = system.minima[:, cv_dims]
    lo, hi = m.min(axis=0) - 1.5, m.max(axis=0) + 1.5
    bins = tuple(int(np.ceil((h - l) / (0.2 * s))) for l, h, s in zip(lo, hi, sig))
    return GridSpec(tuple(lo), tuple(hi), bins, (False,) * len(cv_dims))


def _check_in_grid(s: np.ndarray, g_lo: np.ndarray, g_hi: np.ndarray, step: int, cv_names: tuple) -> None:
    """Raise naming the first walker whose CVs ``s`` ``(n_walkers, d)`` left the bias grid, as PLUMED does."""
    out = (s < g_lo) | (s > g_hi)
    if out.any():
        w, j = np.argwhere(out)[0]
        raise GMVAEInputError(
            f"toy_metadynamics: walker {w} left the bias grid at step {step} ({cv_names[j]} = {s[w, j]:.4g}, grid "
            f"{g_lo[j]:.4g}..{g_hi[j]:.4g}); widen 'grid' or lower 'height'/'biasfactor'"
        )


def toy_metadynamics(
    system: ToySystem,
    n_steps: int,
    *,
    sigma: float | Sequence[float],
    height: float,
    pace: int,
    biasfactor: float,
    cv_dims: Sequence[int] = (0,),
    n_walkers: int = 1,
    stride: int = 100,
    grid: Optional[GridSpec] = None,
    x0: Optional[np.ndarray] = None,
    seed: int | np.random.Generator | None = None,
    progress: Optional[Callable] = None,
) -> ToyMetadRun:
    r"""Run well-tempered metadynamics on a toy system, biasing some of its coordinates.

    Parameters
    ----------
    system : ToySystem
        E.g. :class:`~gmvae_cv.systems.MullerBrown` (``kT``, ``dt`` taken from it).
    n_steps : int
        Steps per walker.
    sigma : float or sequence of float
        Hill width per biased coordinate.
    height : float
        Initial hill height :math:`W_0` (energy units).
    pace : int
        Steps between depositions.
    biasfactor : float
        :math:`\gamma > 1`.
    cv_dims : sequence of int
        Coordinates that are biased (the CVs are the coordinates themselves).
    n_walkers : int
        Walkers sharing one bias.
    stride : int
        Steps between recorded frames.
    grid : GridSpec, optional
        Grid of the bias (default: the minima's box widened by 1.5 in each biased coordinate,
        spacing sigma/5). A walker that leaves it is an error, as in PLUMED.
    x0 : (n_walkers, dim) ndarray, optional
        Start positions (default: the minima in turn).
    seed : int or Generator, optional
    progress : callable, optional
        tqdm-like class, advanced per recorded frame.

    Returns
    -------
    ToyMetadRun
    """
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    pace, height, gamma = check_hill_schedule(pace, height, biasfactor)
    stride = check_int(stride, "stride", minimum=1)
    n_walkers = check_int(n_walkers, "n_walkers", minimum=1)
    cv_dims, sig = _biased_coordinates(system, cv_dims, sigma)
    d = len(cv_dims)
    kT, dt = float(system.kT), float(system.dt)
    names = ("x", "y", "z")[: system.dim]
    cv_names = tuple(names[c] for c in cv_dims)
    if grid is None:
        grid = _default_grid(system, cv_dims, sig)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if x0 is None:
        mins = system.minima
        x0 = mins[np.arange(n_walkers) % len(mins)]
    x = np.array(x0, dtype=float).reshape(n_walkers, system.dim)
    n_dep_max = n_steps // pace
    cap = n_dep_max * n_walkers
    h_time = np.zeros(cap)
    h_cent = np.zeros((cap, d))
    h_height = np.zeros(cap)
    bg = HillSumGrid(None, grid, biasfactor=gamma)
    n_frames = n_steps // stride + 1
    pos = np.empty((n_walkers, n_frames, system.dim))
    bias_rec = np.empty((n_walkers, n_frames))
    times = np.arange(n_frames) * stride * dt
    noise = np.sqrt(2.0 * kT * dt)
    n_hills = 0
    bar = progress(total=n_frames) if progress is not None else None
    g_lo = np.array(grid.lower)
    g_hi = np.array(grid.upper)
    for step in range(n_steps + 1):
        s = x[:, cv_dims]
        _check_in_grid(s, g_lo, g_hi, step, cv_names)
        v, gv = bg.evaluate(s, gradient=True)
        if step % stride == 0:
            f = step // stride
            pos[:, f] = x
            bias_rec[:, f] = v
            if bar is not None:
                bar.update(1)
        if step > 0 and step % pace == 0:
            h = height * np.exp(-v / (kT * (gamma - 1.0)))
            sl = slice(n_hills, n_hills + n_walkers)
            h_time[sl] = step * dt
            h_cent[sl] = s
            h_height[sl] = h
            n_hills += n_walkers
            bg.add_hills(s, sig, h)
        if step == n_steps:
            break
        g = system.gradient(x)
        g[:, cv_dims] += gv
        x = x - dt * g + noise * rng.standard_normal(x.shape)
        if not np.all(np.isfinite(x)):
            raise FloatingPointError(f"toy_metadynamics: positions diverged at step {step}; reduce dt ({dt}) or the hill height")
    if bar is not None:
        bar.close()
    hills = Hills(
        time=h_time[:n_hills].copy(),
        centers=h_cent[:n_hills].copy(),
        sigmas=np.tile(sig, (n_hills, 1)),
        heights=h_height[:n_hills].copy(),
        cv_names=cv_names,
        biasfactor=gamma,
        source="toy metadynamics",
    )
    return ToyMetadRun(times=times, positions=pos, bias=bias_rec, hills=hills, kT=kT, coordinate_names=names)
