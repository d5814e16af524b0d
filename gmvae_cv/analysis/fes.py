r"""Free-energy surfaces from weighted frames: histograms with block-averaging errors.

:class:`FESEstimator` accumulates a weighted histogram (1D or 2D, more work too) from frames and
their log-weights, in one call or chunk by chunk, and makes a :class:`FreeEnergySurface`:
:math:`F = -k_BT \log p` (minimum at 0) with an error per bin from block averaging.

Block averaging follows the weighted scheme of the PLUMED masterclass (Bussi, Tribello): the
frames are cut into ``n_blocks`` consecutive blocks with weights :math:`W_b` and normalised
histograms :math:`h_b`; with :math:`N_\mathrm{eff} = (\sum W_b)^2/\sum W_b^2`,

.. math::
    \sigma^2_h = \frac{N_\mathrm{eff}}{N_\mathrm{eff}-1}\,
    \frac{\sum_b W_b (h_b - \bar h)^2}{\sum_b W_b}\Big/N_\mathrm{eff},
    \qquad \sigma_F = k_BT\,\sigma_h/\bar h .
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from .._core.errors import GMVAEInputError
from .._core.jsonfile import read_json_file
from .._core.files import atomic_write_text
from .._core.checks import check_int, check_positive

__all__ = ["FESEstimator", "FreeEnergySurface", "KB_KJ_MOL_K", "resolve_kT", "log_weights_from_weights"]

KB_KJ_MOL_K = 0.0083144626
"""Boltzmann constant in kJ/mol/K."""


def resolve_kT(temperature: Optional[float] = None, kT: Optional[float] = None, *, source: str = "") -> tuple[float, Optional[float]]:
    """Thermal energy from exactly one of ``temperature`` (K, energies in kJ/mol) or ``kT``.

    Returns
    -------
    kT : float
        Energy units (kJ/mol when from a temperature).
    temperature : float or None
        K, if given.

    Raises
    ------
    GMVAEInputError
        If neither or both are given: there is no default temperature.
    """
    where = f"{source}: " if source else ""
    if temperature is None and kT is None:
        raise GMVAEInputError(
            f"{where}no temperature: give the temperature (K) or kT (energy units) of the run; there is no default"
        )
    if temperature is not None and kT is not None:
        t_kt = KB_KJ_MOL_K * float(temperature)
        if not math.isclose(t_kt, float(kT), rel_tol=1e-6):
            raise GMVAEInputError(f"{where}temperature {temperature} K (kT {t_kt:.6g} kJ/mol) and kT {kT} disagree; give one")
    if temperature is not None:
        t = check_positive(temperature, "temperature")
        return KB_KJ_MOL_K * t, t
    return check_positive(kT, "kT"), None


def log_weights_from_weights(weights: np.ndarray, *, name: str = "weights", source: Optional[str] = None) -> np.ndarray:
    """Natural logs of per-frame weights, rejecting negative, NaN and infinite entries.

    Zero weights become ``-inf`` (the frame does not count).

    Parameters
    ----------
    weights : (n_frames,) array_like
    name, source : str
        Used in error messages.

    Returns
    -------
    (n_frames,) ndarray
    """
    w = np.asarray(weights, dtype=np.float64)
    where = f"{source}: '{name}'" if source else f"'{name}'"
    if w.ndim != 1:
        raise GMVAEInputError(f"{where} has shape {w.shape}, expected (n_frames,)")
    bad = np.isnan(w) | (w < 0) | np.isinf(w)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GMVAEInputError(f"{where} is {w[i]} at frame {i} ({int(bad.sum())} bad value(s)); weights must be finite and >= 0")
    if not (w > 0).any():
        raise GMVAEInputError(f"{where} are all zero")
    with np.errstate(divide="ignore"):
        return np.log(w)


@dataclass
class FreeEnergySurface:
    """A free-energy surface on a regular grid of bins, with block-averaging errors.

    Attributes
    ----------
    variables : list of str
        Names of the variables (CV columns).
    edges : list of (bins_j + 1,) ndarray
        Bin edges per variable, in the variables' units.
    free_energy : ndarray, shape ``bins``
        :math:`F` in energy units (kJ/mol for a temperature in K), minimum 0, ``inf`` in empty bins.
    error : ndarray, shape ``bins``
        Block-averaging standard error of :math:`F` (energy units); ``nan`` where undefined.
    probability : ndarray, shape ``bins``
        Normalised weighted histogram (sums to 1).
    counts : ndarray, shape ``bins``
        Frames per bin (unweighted).
    kT : float
        Thermal energy used, energy units.
    temperature : float or None
        K, if the surface was made from a temperature.
    periodic : list of bool
    n_frames : int
        Frames in range that entered the histogram.
    n_outside : int
        Frames outside the ranges (not counted).
    n_effective : float
        Kish effective sample size, :math:`(\\sum w)^2/\\sum w^2`.
    n_blocks : int
        Blocks used for the errors.
    energy_unit : str
    info : dict
        How the weights were made (method, files, ...).
    """

    variables: list
    edges: list
    free_energy: np.ndarray
    error: np.ndarray
    probability: np.ndarray
    counts: np.ndarray
    kT: float
    temperature: Optional[float]
    periodic: list
    n_frames: int
    n_outside: int
    n_effective: float
    n_blocks: int
    energy_unit: str = "kJ/mol"
    info: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return len(self.edges)

    @property
    def centers(self) -> list[np.ndarray]:
        """Bin centres per variable."""
        return [0.5 * (e[1:] + e[:-1]) for e in self.edges]

    def to_dict(self) -> dict:
        def arr(a):
            a = np.asarray(a, dtype=float)
            return np.where(np.isfinite(a), a, np.nan).tolist()

        return {
            "format": "gmvae-cv/fes",
            "format_version": 1,
            "variables": list(self.variables),
            "edges": [e.tolist() for e in self.edges],
            "periodic": list(self.periodic),
            "free_energy": {"unit": self.energy_unit, "values": arr(self.free_energy), "empty_bins": "null"},
            "error": {"unit": self.energy_unit, "values": arr(self.error)},
            "probability": arr(self.probability),
            "counts": np.asarray(self.counts).astype(int).tolist(),
            "kT": {"unit": self.energy_unit, "value": self.kT},
            "temperature": {"unit": "K", "value": self.temperature},
            "n_frames": int(self.n_frames),
            "n_outside": int(self.n_outside),
            "n_effective": float(self.n_effective),
            "n_blocks": int(self.n_blocks),
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the surface as JSON (atomically); empty bins have ``null`` free energy."""
        atomic_write_text(path, json.dumps(_nan_to_none(self.to_dict()), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FreeEnergySurface":
        """Read a surface written by :meth:`save`."""
        d = read_json_file(path, "gmvae-cv/fes", (1,))

        def arr(v, fill):
            a = np.array(v, dtype=object)
            a = np.where(a == None, fill, a).astype(float)  # noqa: E711 - elementwise
            return a

        return cls(
            variables=d["variables"],
            edges=[np.asarray(e, dtype=float) for e in d["edges"]],
            free_energy=arr(d["free_energy"]["values"], np.inf),
            error=arr(d["error"]["values"], np.nan),
            probability=arr(d["probability"], 0.0),
            counts=np.asarray(d["counts"], dtype=np.int64),
            kT=float(d["kT"]["value"]),
            temperature=d["temperature"]["value"],
            periodic=d["periodic"],
            n_frames=d["n_frames"],
            n_outside=d["n_outside"],
            n_effective=d["n_effective"],
            n_blocks=d["n_blocks"],
            energy_unit=d["free_energy"]["unit"],
            info=d.get("info", {}),
        )

    def write_dat(self, path: str | os.PathLike) -> None:
        """Write a PLUMED-style table: the variables' bin centres, free energy, error.

        Columns ``<var>... free_energy error``; empty bins have ``inf`` and ``nan``. 2D grids are
        written with the last variable fastest and a blank line between rows (gnuplot ``pm3d``).
        """
        cols = self.centers
        grids = np.meshgrid(*cols, indexing="ij")
        lines = [
            "#! FIELDS " + " ".join(self.variables) + " free_energy error",
            f"#! SET unit_free_energy {self.energy_unit}",
            f"#! SET kT {self.kT:.10g}",
        ]
        if self.temperature is not None:
            lines.append(f"#! SET temperature {self.temperature:.10g}")
        for v, e, p in zip(self.variables, self.edges, self.periodic):
            lines.append(f"#! SET min_{v} {e[0]:.10g}")
            lines.append(f"#! SET max_{v} {e[-1]:.10g}")
            lines.append(f"#! SET nbins_{v} {len(e) - 1}")
            lines.append(f"#! SET periodic_{v} {'true' if p else 'false'}")
        f = self.free_energy
        err = self.error
        if self.ndim == 1:
            for i in range(f.shape[0]):
                lines.append(f"{cols[0][i]:.8g} {f[i]:.8g} {err[i]:.8g}")
        else:
            flat_idx = np.ndindex(*f.shape)
            prev0 = None
            for idx in flat_idx:
                if prev0 is not None and idx[0] != prev0:
                    lines.append("")
                prev0 = idx[0]
                vals = " ".join(f"{g[idx]:.8g}" for g in grids)
                lines.append(f"{vals} {f[idx]:.8g} {err[idx]:.8g}")
        atomic_write_text(path, "\n".join(lines) + "\n")

    def plot(self, path: str | os.PathLike, *, max_energy: Optional[float] = None, title: str = "") -> None:
        """Save a PNG: a curve with its error band (1D) or filled contours (2D)."""
        from .plots import plot_fes

        plot_fes(self, path, max_energy=max_energy, title=title)


def _nan_to_none(obj):
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


class FESEstimator:
    """Weighted histogram of frames -> :class:`FreeEnergySurface`.

    Parameters
    ----------
    bins : int or sequence of int
        Bins per variable.
    ranges : sequence of (min, max)
        Histogram range per variable (for a periodic variable: its period). Frames outside are
        not counted (their number is reported).
    kT : float, optional
        Thermal energy, energy units. Give exactly one of ``kT`` and ``temperature``.
    temperature : float, optional
        K (energies then in kJ/mol).
    periodic : sequence of bool, optional
        Per variable; values of a periodic variable are wrapped into its range.
    n_blocks : int
        Consecutive blocks for the error (>= 2 for an error; 1 gives ``nan`` errors).
    variables : sequence of str, optional
        Names, for the output.

    Examples
    --------
    >>> import numpy as np
    >>> from gmvae_cv.analysis.fes import FESEstimator
    >>> x = np.random.default_rng(0).normal(size=(100_000, 1))
    >>> fes = FESEstimator(40, [(-3, 3)], kT=1.0).fit(x).fetch_model()
    >>> bool(abs(fes.free_energy[-1] - 4.5) < 0.3)   # F(x) = x^2/2 + const
    True
    """

    def __init__(
        self,
        bins: int | Sequence[int],
        ranges: Sequence[Sequence[float]],
        *,
        kT: Optional[float] = None,
        temperature: Optional[float] = None,
        periodic: Optional[Sequence[bool]] = None,
        n_blocks: int = 5,
        variables: Optional[Sequence[str]] = None,
    ) -> None:
        self.ranges = [tuple(float(v) for v in r) for r in ranges]
        d = len(self.ranges)
        if d < 1:
            raise GMVAEInputError("'ranges' is empty, expected one (min, max) per variable")
        for j, r in enumerate(self.ranges):
            if len(r) != 2 or not (math.isfinite(r[0]) and math.isfinite(r[1]) and r[1] > r[0]):
                raise GMVAEInputError(f"'ranges'[{j}] is {r}, expected (min, max) with min < max")
        b = [bins] * d if isinstance(bins, (int, np.integer)) else list(bins)
        if len(b) != d:
            raise GMVAEInputError(f"'bins' has {len(b)} entries for {d} variables")
        self.bins = [check_int(x, "bins", minimum=1) for x in b]
        self.kT, self.temperature = resolve_kT(temperature, kT)
        self.periodic = [False] * d if periodic is None else [bool(p) for p in periodic]
        if len(self.periodic) != d:
            raise GMVAEInputError(f"'periodic' has {len(self.periodic)} entries for {d} variables")
        self.n_blocks = check_int(n_blocks, "n_blocks", minimum=1)
        self.variables = list(variables) if variables is not None else [f"s{j}" for j in range(d)]
        if len(self.variables) != d:
            raise GMVAEInputError(f"'variables' has {len(self.variables)} names for {d} variables")
        self.info: dict = {}
        self._reset()

    def _reset(self) -> None:
        self._n_bins = int(np.prod(self.bins))
        self._blocks: dict[int, np.ndarray] = {}
        self._counts = np.zeros(self._n_bins, dtype=np.int64)
        self._shift: Optional[float] = None
        self._sw = 0.0
        self._sw2 = 0.0
        self._n_in = 0
        self._n_out = 0
        self._offset = 0
        self._block_length: Optional[int] = None
        self._model: Optional[FreeEnergySurface] = None

    # ---------------------------------------------------------------- accumulation
    _SUB = 1 << 18  # frames per inner step: the temporaries stay in cache

    def _bin_index(self, values: np.ndarray) -> np.ndarray:
        """Flat bin index per frame; frames outside the ranges get the overflow index ``n_bins``."""
        n = len(values)
        flat = np.zeros(n, dtype=np.intp)
        outside = np.zeros(n, dtype=bool)
        stride = 1
        for j in range(len(self.bins) - 1, -1, -1):
            lo, hi = self.ranges[j]
            nb = self.bins[j]
            x = values[:, j] - lo
            x *= nb / (hi - lo)
            if self.periodic[j]:
                np.mod(x, nb, out=x)
                i = x.astype(np.intp)
                np.minimum(i, nb - 1, out=i)
            else:
                outside |= ~((x >= 0) & (x <= nb))  # also catches NaN
                np.clip(x, 0, nb - 1, out=x)
                i = x.astype(np.intp)
            if stride != 1:
                i *= stride
            flat += i
            stride *= nb
        flat[outside] = self._n_bins
        return flat

    def _rescale(self, new_shift: float) -> None:
        if self._shift is None:
            self._shift = new_shift
            return
        f = math.exp(self._shift - new_shift)
        for h in self._blocks.values():
            h *= f
        self._sw *= f
        self._sw2 *= f * f
        self._shift = new_shift

    def partial_fit(self, values: np.ndarray, log_weights: Optional[np.ndarray] = None, *, block_length: Optional[int] = None) -> "FESEstimator":
        """Add a chunk of consecutive frames.

        Parameters
        ----------
        values : (n, n_variables) ndarray
            Variable values, in the ranges' units (finite).
        log_weights : (n,) ndarray, optional
            Natural-log weights (e.g. ``beta * (V - c)``); default: equal weights. ``-inf`` is a
            zero weight; NaN and ``+inf`` are errors.
        block_length : int, optional
            Frames per block; required on the first call when streaming (``fit`` sets it from
            ``n_blocks``).

        Returns
        -------
        self
        """
        d = len(self.bins)
        v = np.asarray(values)
        if v.ndim == 1 and d == 1:
            v = v[:, None]
        if v.ndim != 2 or v.shape[1] != d:
            raise GMVAEInputError(f"'values' has shape {v.shape}, expected (n_frames, {d})")
        if v.dtype.kind not in "fiu":
            raise GMVAEInputError(f"'values' has dtype {v.dtype}, expected numbers")
        n = len(v)
        lw = None
        if log_weights is not None:
            lw = np.asarray(log_weights, dtype=np.float64)
            if lw.shape != (n,):
                raise GMVAEInputError(f"'log_weights' has shape {lw.shape}, expected ({n},) to match 'values'")
        if block_length is not None:
            self._block_length = check_int(block_length, "block_length", minimum=1)
        if self._block_length is None:
            raise GMVAEInputError("give 'block_length' on the first partial_fit call (or use fit)")
        if n == 0:
            return self
        if lw is not None:
            top = float(np.max(lw))
            if not math.isfinite(top) or np.isnan(top):
                bad = np.flatnonzero(np.isnan(lw) | np.isposinf(lw))
                if bad.size:
                    i = int(bad[0])
                    raise GMVAEInputError(f"'log_weights' is {lw[i]} at frame {self._offset + i}, expected finite values (or -inf for weight 0)")
            if math.isfinite(top) and (self._shift is None or top > self._shift):
                self._rescale(top)
            elif self._shift is None:  # every weight is zero so far
                self._shift = 0.0
        elif self._shift is None:
            self._shift = 0.0
        elif self._shift < 0.0:
            self._rescale(0.0)
        nbins = self._n_bins
        counts = np.zeros(nbins + 1, dtype=np.int64)
        pos = 0
        while pos < n:
            block = (self._offset + pos) // self._block_length
            end = min(n, pos + self._SUB, (block + 1) * self._block_length - self._offset)
            vs = v[pos:end]
            if vs.dtype.kind == "f" and not np.isfinite(vs).all():
                i, j = np.argwhere(~np.isfinite(vs))[0]
                raise GMVAEInputError(f"'values' is {vs[i, j]} at frame {self._offset + pos + i}, variable {j}: expected finite values")
            flat = self._bin_index(vs)
            if lw is None:
                c = np.bincount(flat, minlength=nbins + 1)
                counts += c
                unit = math.exp(-self._shift)
                h = c * unit
                n_c = float(c[:nbins].sum())
                self._sw += n_c * unit
                self._sw2 += n_c * unit * unit
            else:
                w = lw[pos:end] - self._shift
                np.exp(w, out=w)
                h = np.bincount(flat, weights=w, minlength=nbins + 1)
                w[flat == nbins] = 0.0
                self._sw += float(w.sum())
                self._sw2 += float(np.dot(w, w))
                counts += np.bincount(flat, minlength=nbins + 1)
            part = h[:nbins]
            if block in self._blocks:
                self._blocks[block] += part
            else:
                self._blocks[block] = part.copy()
            pos = end
        self._counts += counts[:nbins]
        n_in = int(counts[:nbins].sum())
        self._n_in += n_in
        self._n_out += n - n_in
        self._offset += n
        self._model = None
        return self

    def fit(self, values: np.ndarray, log_weights: Optional[np.ndarray] = None, *, weights: Optional[np.ndarray] = None) -> "FESEstimator":
        """Histogram all frames at once (blocks: ``n_blocks`` consecutive parts).

        Parameters
        ----------
        values : (n_frames, n_variables) ndarray
        log_weights : (n_frames,) ndarray, optional
            Natural-log weights (preferred: no overflow for large biases).
        weights : (n_frames,) ndarray, optional
            Plain weights, >= 0 and finite (give one of ``weights`` and ``log_weights``).
        """
        if weights is not None:
            if log_weights is not None:
                raise GMVAEInputError("give one of 'weights' and 'log_weights'")
            log_weights = log_weights_from_weights(weights)
            if len(log_weights) != len(values):
                raise GMVAEInputError(f"'weights' has {len(log_weights)} entries for {len(values)} frames")
        self._reset()
        n = len(values)
        self._block_length = max(1, math.ceil(n / self.n_blocks))
        return self.partial_fit(values, log_weights)

    def fit_chunks(self, chunks: Iterable[tuple[np.ndarray, Optional[np.ndarray]]], n_frames: int) -> "FESEstimator":
        """Histogram ``(values, log_weights)`` chunks; ``n_frames`` (an estimate) sets the blocks."""
        self._reset()
        self._block_length = max(1, math.ceil(check_int(n_frames, "n_frames", minimum=1) / self.n_blocks))
        for v, lw in chunks:
            self.partial_fit(v, lw)
        return self

    # ---------------------------------------------------------------- model
    def fetch_model(self) -> FreeEnergySurface:
        """The surface of the frames added so far."""
        if self._model is not None:
            return self._model
        if self._n_in == 0 or not self._blocks:
            raise GMVAEInputError(
                f"no frame falls inside the ranges {self.ranges} (frames outside: {self._n_out}); check 'ranges' and the variables"
            )
        shape = tuple(self.bins)
        hists = np.array([self._blocks[k] for k in sorted(self._blocks)])
        wb = hists.sum(axis=1)
        total = hists.sum(axis=0)
        p = total / total.sum()
        kT = self.kT
        with np.errstate(divide="ignore", invalid="ignore"):
            f = -kT * np.log(p)
        f = f - np.min(f[np.isfinite(f)])
        keep = wb > 0
        err = np.full(self._n_bins, np.nan)
        if keep.sum() >= 2:
            hb = hists[keep] / wb[keep, None]
            wk = wb[keep]
            n_eff_b = wk.sum() ** 2 / np.dot(wk, wk)
            if n_eff_b > 1.0:
                var = (wk[:, None] * (hb - p[None, :]) ** 2).sum(axis=0) / wk.sum()
                var *= n_eff_b / (n_eff_b - 1.0)
                sig_p = np.sqrt(var / n_eff_b)
                with np.errstate(divide="ignore", invalid="ignore"):
                    err = np.where(p > 0, kT * sig_p / p, np.nan)
        edges = [np.linspace(lo, hi, nb + 1) for (lo, hi), nb in zip(self.ranges, self.bins)]
        self._model = FreeEnergySurface(
            variables=list(self.variables),
            edges=edges,
            free_energy=f.reshape(shape),
            error=err.reshape(shape),
            probability=p.reshape(shape),
            counts=self._counts.reshape(shape).copy(),
            kT=kT,
            temperature=self.temperature,
            periodic=list(self.periodic),
            n_frames=self._n_in,
            n_outside=self._n_out,
            n_effective=self._sw**2 / self._sw2 if self._sw2 > 0 else 0.0,
            n_blocks=int(keep.sum()),
            energy_unit="kJ/mol" if self.temperature is not None else "energy (units of the given kT)",
            info=dict(self.info),
        )
        return self._model
