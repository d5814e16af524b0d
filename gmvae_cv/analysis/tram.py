"""TRAM (deeptime) over ensembles that each carry a static bias.

When each ensemble has a *static* bias (umbrella windows, replicas at other temperatures, a frozen
final metadynamics bias) the multi-ensemble estimator TRAM gives the unbiased stationary
distribution from biased frames: :class:`TRAMAnalysis` (estimator) -> :class:`TRAMResult` (model).
A plain MSM (:class:`~gmvae_cv.analysis.msm.MarkovAnalysis`) refuses such frames.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from deeptime.markov.msm import TRAM, TRAMDataset

from .._core.checks import as_list_of_arrays, check_int, check_positive
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_text
from .dtrajs import check_dtrajs, check_lags
from .results_json import nan_to_none
from .thermal import resolve_kT

__all__ = ["TRAMAnalysis", "TRAMResult"]


@dataclass
class TRAMResult:
    """Unbiased thermodynamics (and per-ensemble MSMs) from several statically biased ensembles.

    Attributes
    ----------
    n_states : int
    stationary_distribution : (n_states,) ndarray
        Unbiased probability of each Markov state (``nan`` for states TRAM could not connect).
    free_energies : (n_states,) ndarray
        :math:`-k_BT \\log \\pi_i`, minimum 0, energy units of ``kT``.
    ensemble_free_energies : (n_ensembles,) ndarray
        Free energy of each biased ensemble relative to the first, energy units.
    kT : float
    lagtime : int
        Frames.
    info : dict
    """

    n_states: int
    stationary_distribution: np.ndarray
    free_energies: np.ndarray
    ensemble_free_energies: np.ndarray
    kT: float
    lagtime: int
    info: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        d = {
            "format": "gmvae-cv/tram",
            "format_version": 1,
            "n_states": self.n_states,
            "stationary_distribution": np.asarray(self.stationary_distribution).tolist(),
            "free_energies": {"unit": self.info.get("energy_unit", "energy"), "values": np.asarray(self.free_energies).tolist()},
            "ensemble_free_energies": {"unit": self.info.get("energy_unit", "energy"), "values": np.asarray(self.ensemble_free_energies).tolist()},
            "kT": self.kT,
            "lagtime": {"unit": "frames", "value": self.lagtime},
            "info": self.info,
        }
        atomic_write_text(path, json.dumps(nan_to_none(d), indent=1) + "\n")


class TRAMAnalysis:
    """Estimator: TRAM (deeptime) over ensembles that each carry a static bias.

    Valid for umbrella windows, a frozen (final) metadynamics bias, or several temperatures; not
    for frames of a run whose bias changed while it ran (metadynamics as it fills).

    Parameters
    ----------
    lagtime : int
        Lag (frames) of the per-ensemble transition counts.
    kT : float, optional
        Thermal energy in the units of the bias energies. Give exactly one of ``kT`` and
        ``temperature``.
    temperature : float, optional
        K, with bias energies in kJ/mol.
    maxiter, maxerr : int, float
        TRAM iterations and convergence threshold (change of the free energies, kT).
    connectivity : str
        How the largest connected set is found (deeptime's ``restrict_to_largest_connected_set``):
        ``"summed_count_matrix"`` (transitions pooled over the ensembles; the default, since in
        deeptime 0.5 ``"post_hoc_RE"`` cut well-overlapping umbrella windows apart in our tests).
    progress : callable, optional
        tqdm-like class passed to deeptime.
    """

    def __init__(
        self,
        lagtime: int,
        *,
        kT: Optional[float] = None,
        temperature: Optional[float] = None,
        maxiter: int = 10000,
        maxerr: float = 1e-8,
        connectivity: str = "summed_count_matrix",
        progress: Optional[Callable] = None,
    ) -> None:
        if connectivity not in ("summed_count_matrix", "post_hoc_RE", "BAR_variance"):
            raise GMVAEInputError(f"'connectivity' is {connectivity!r}, expected summed_count_matrix, post_hoc_RE or BAR_variance")
        self.connectivity = connectivity
        self.lagtime = check_int(lagtime, "lagtime", minimum=1)
        self.kT, self.temperature = resolve_kT(temperature, kT)
        self.maxiter = check_int(maxiter, "maxiter", minimum=1)
        self.maxerr = check_positive(maxerr, "maxerr")
        self.progress = progress
        self._model: Optional[TRAMResult] = None

    def fit(self, dtrajs: Any, bias_energies: Any, *, ensembles: Optional[Sequence[int]] = None) -> "TRAMAnalysis":
        """Estimate.

        Parameters
        ----------
        dtrajs : list of (n_frames,) int arrays
            Markov state of each frame, one array per trajectory.
        bias_energies : list of (n_frames, n_ensembles) arrays
            Bias energy of each frame evaluated in *every* ensemble (0 for an unbiased one), in the
            units of ``kT`` (kJ/mol with ``temperature``).
        ensembles : sequence of int, optional
            The ensemble each trajectory was sampled in (default: trajectory i in ensemble i).

        Returns
        -------
        self
        """
        dtrajs = check_dtrajs(dtrajs)
        bias = [np.asarray(b, dtype=np.float64) for b in as_list_of_arrays(bias_energies, "bias_energies")]
        if len(bias) != len(dtrajs):
            raise GMVAEInputError(f"'bias_energies' has {len(bias)} arrays for {len(dtrajs)} trajectories")
        n_ens = bias[0].shape[1] if bias[0].ndim == 2 else -1
        for i, (b, d) in enumerate(zip(bias, dtrajs)):
            if b.ndim != 2 or b.shape[0] != len(d) or b.shape[1] != n_ens:
                raise GMVAEInputError(f"'bias_energies'[{i}] has shape {b.shape}, expected ({len(d)}, {n_ens}) (frames, ensembles)")
            if not np.isfinite(b).all():
                raise GMVAEInputError(f"'bias_energies'[{i}] has NaN/inf entries")
        ens = list(range(len(dtrajs))) if ensembles is None else [check_int(int(e), "ensembles", minimum=0) for e in ensembles]
        if len(ens) != len(dtrajs) or max(ens) >= n_ens:
            raise GMVAEInputError(f"'ensembles' must give, for each of the {len(dtrajs)} trajectories, an ensemble index < {n_ens}")
        check_lags([self.lagtime], dtrajs)
        ttrajs = [np.full(len(d), e, dtype=np.int32) for d, e in zip(dtrajs, ens)]
        reduced = [b / self.kT for b in bias]
        n_states = int(max(int(d.max()) for d in dtrajs)) + 1
        ds = TRAMDataset(dtrajs=dtrajs, bias_matrices=reduced, ttrajs=ttrajs, lagtime=self.lagtime, n_therm_states=n_ens, n_markov_states=n_states)
        ds.restrict_to_largest_connected_set(connectivity=self.connectivity)
        est = TRAM(lagtime=self.lagtime, maxiter=self.maxiter, maxerr=self.maxerr, progress=self.progress)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*max_iter.*")
            model = est.fit_fetch(ds)
        f = np.asarray(model.markov_state_energies, dtype=float)
        pi = np.full(n_states, np.nan)
        ok = np.isfinite(f)
        p = np.exp(-(f[ok] - f[ok].min()))
        pi[: len(f)][ok] = p / p.sum()
        fe = np.full(n_states, np.nan)
        fe[: len(f)][ok] = self.kT * (f[ok] - f[ok].min())
        therm = np.asarray(model.therm_state_energies, dtype=float)
        self._model = TRAMResult(
            n_states=n_states,
            stationary_distribution=pi,
            free_energies=fe,
            ensemble_free_energies=self.kT * (therm - therm[0]),
            kT=self.kT,
            lagtime=self.lagtime,
            info={"n_ensembles": n_ens, "n_trajectories": len(dtrajs), "energy_unit": "kJ/mol" if self.temperature is not None else "units of kT"},
        )
        return self

    def fetch_model(self) -> TRAMResult:
        if self._model is None:
            raise GMVAEInputError("TRAMAnalysis: call fit first")
        return self._model
