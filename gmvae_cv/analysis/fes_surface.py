r"""The model of :class:`~gmvae_cv.analysis.fes.FESEstimator`: a free-energy surface on a grid.

:class:`FreeEnergySurface` holds :math:`F = -k_BT \log p` (minimum 0) per bin with its
block-averaging error, the histogram behind it, and saves as JSON (:meth:`~FreeEnergySurface.save`,
:meth:`~FreeEnergySurface.load`), as a PLUMED-style table (:meth:`~FreeEnergySurface.write_dat`) or
as a plot.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .._core.files import atomic_write_text
from .._core.jsonfile import read_json_file
from .results_json import nan_to_none
from .plots import plot_fes

__all__ = ["FreeEnergySurface"]


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
        atomic_write_text(path, json.dumps(nan_to_none(self.to_dict()), indent=1) + "\n")

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
        plot_fes(self, path, max_energy=max_energy, title=title)
