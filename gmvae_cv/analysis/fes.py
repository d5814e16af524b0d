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

:class:`FreeEnergySurface` (:mod:`.fes_surface`), :data:`KB_KJ_MOL_K` and :func:`resolve_kT`
(:mod:`.thermal`) are re-exported here.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np

from .._core.checks import check_int
from .._core.errors import GMVAEInputError
from .fes_surface import FreeEnergySurface
from .thermal import KB_KJ_MOL_K, resolve_kT

__all__ = ["FESEstimator", "FreeEnergySurface", "KB_KJ_MOL_K", "resolve_kT", "log_weights_from_weights"]


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
