"""Reading the inputs of a Markov model from files: state trajectories, the states a trained GMVAE
assigns to feature files, the bias columns of COLVAR files and TRAM's bias energies.

Every reader names the file (and the field) in its errors; the command line's ``gmvae-cv msm`` calls
these and nothing else to read its inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .._core.checks import load_array_file
from .._core.errors import GMVAEInputError
from .dtrajs import check_dtrajs, gmvae_states
from .plumed_files import PlumedFile
from ..learn import load_run

__all__ = ["read_dtrajs", "run_states", "colvar_bias", "read_bias_energies"]

PathLike = str | os.PathLike


def read_dtrajs(paths: Sequence[PathLike]) -> list[np.ndarray]:
    """State trajectories from integer ``.npy`` files, one per trajectory (checked by
    :func:`~gmvae_cv.analysis.dtrajs.check_dtrajs`).

    Returns
    -------
    list of (n_frames,) int ndarray
    """
    raw = []
    for pth in paths:
        if not Path(pth).is_file():
            raise GMVAEInputError(f"{pth}: file not found (expected an integer .npy of states)")
        try:
            raw.append(np.load(pth, allow_pickle=False))
        except Exception as exc:  # numpy raises several types for a bad file
            raise GMVAEInputError(f"{pth}: cannot be read as a .npy array ({exc})") from None
    return check_dtrajs(raw, sources=[str(p) for p in paths])


def run_states(run_dir: PathLike, data: Sequence[PathLike], *, method: str = "clusters",
               n_clusters: Optional[int] = None, seed: int = 42,
               out: Optional[PathLike] = None) -> list[np.ndarray]:
    """The states the GMVAE of the training run ``run_dir`` assigns to the frames of each feature file
    (:func:`~gmvae_cv.analysis.dtrajs.gmvae_states`); with ``out``, each is also saved as
    ``out/states_<file stem>.npy``.

    Parameters
    ----------
    run_dir : path
        A training run (:func:`gmvae_cv.load_run`).
    data : sequence of path
        Feature matrices ``(n_frames, n_features)``, one per trajectory.
    method, n_clusters, seed
        As for :func:`~gmvae_cv.analysis.dtrajs.gmvae_states`.
    out : path, optional
        Folder for the state files.
    """
    if not data:
        raise GMVAEInputError("'data' is empty: the states of a run are assigned to feature files (--data)")
    run = load_run(run_dir)
    arrays = [load_array_file(pth, "data", ndim=2, min_rows=2) for pth in data]
    dtrajs = gmvae_states(run, arrays, method=method, n_clusters=n_clusters, seed=seed, sources=[str(p) for p in data])
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        for pth, d in zip(data, dtrajs):
            np.save(Path(out) / f"states_{Path(pth).stem}.npy", d)
    return dtrajs


def colvar_bias(paths: Sequence[PathLike], column: Optional[str] = None) -> list[np.ndarray]:
    """The bias column(s) of each COLVAR file, flattened (kJ/mol): ``column`` if given, else every
    field named ``*.bias``, ``*.rbias`` or ``bias``; a file with none of them is unbiased and gives
    ``[0.0]``. Used to refuse an MSM on biased frames (:class:`~gmvae_cv.analysis.msm.BiasedDataError`).
    """
    out = []
    for pth in paths:
        pf = PlumedFile(pth)
        cols = [column] if column else [f for f in pf.fields if f.endswith(".bias") or f.endswith(".rbias") or f == "bias"]
        if not cols:
            out.append(np.zeros(1))
            continue
        pf.check_fields(cols)
        out.append(pf.read(cols).ravel())
    return out


def read_bias_energies(paths: Sequence[PathLike], n_trajectories: int) -> list[np.ndarray]:
    """TRAM's bias energies: one ``(n_frames, n_ensembles)`` array per trajectory, one file each, in
    the energy units of the ``kT`` (or kJ/mol with the ``temperature``) given to
    :class:`~gmvae_cv.analysis.tram.TRAMAnalysis`."""
    if not paths:
        raise GMVAEInputError("TRAM needs 'bias_energies' (--bias-energies: one .npy per trajectory)")
    if len(paths) != n_trajectories:
        raise GMVAEInputError(f"'bias_energies' has {len(paths)} files for {n_trajectories} trajectories")
    return [load_array_file(pth, "bias_energies", ndim=2) for pth in paths]
