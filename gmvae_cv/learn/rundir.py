"""The run directory of a trained GMVAE (``RUN``): what :func:`~gmvae_cv.learn.fit` writes and :func:`load_run` reads.

A run directory contains

- ``gmvae_run.json``: format marker, configuration, data summary, training summary, versions;
- ``model.pt``: the trained weights (a plain ``state_dict``; read with ``weights_only=True``);
- ``history.json`` and ``loss.png``: the loss curves;
- ``checkpoints/last.ckpt``: the Lightning checkpoint of the last finished epoch, used to resume
  an interrupted run.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .._core.checks import check_array, check_n_features
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_bytes, atomic_write_json
from .._core.jsonfile import read_json_file
from .config import TrainConfig
from .model import GMVAECV
from ..features import FeatureSpec
from .plots import plot_loss_curve

__all__ = ["GMVAERun", "load_run", "TRAINING_RUN_FORMAT", "TRAINING_RUN_VERSION", "RUN_JSON",
           "prepare_run_dir", "write_run_dir"]

TRAINING_RUN_FORMAT = "gmvae-cv/training-run"
TRAINING_RUN_VERSION = 1
RUN_JSON = "gmvae_run.json"


class GMVAERun:
    """A trained GMVAE with its configuration: what ``fit`` returns and ``load_run`` reads.

    Attributes
    ----------
    model : GMVAECV
        The trained model, in eval mode.
    config : TrainConfig
    info : dict
        The content of ``gmvae_run.json``.
    path : pathlib.Path or None
        The run directory.
    """

    def __init__(self, model: GMVAECV, config: TrainConfig, info: dict, path: Optional[Path] = None) -> None:
        self.model = model.eval()
        self.config = config
        self.info = info
        self.path = path

    @property
    def n_features(self) -> int:
        return int(self.info["n_features"])

    @property
    def feature_spec(self):
        """The :class:`~gmvae_cv.features.FeatureSpec` the run was trained on, or None."""
        d = self.info.get("feature_spec")
        src = self.path / RUN_JSON if self.path is not None else None
        return FeatureSpec.from_dict(d, source=src) if d is not None else None

    @property
    def history(self) -> dict[str, list]:
        return self.info.get("history", {})

    def transform(self, data: np.ndarray, *, batch_size: int = 65536, dtype: Any = np.float64,
                  source: Optional[str | os.PathLike] = None) -> dict[str, np.ndarray]:
        """Embedding and clustering of frames.

        Parameters
        ----------
        data : (n_frames, n_features) ndarray
            Raw features, in the units and order the model was trained on.
        batch_size : int
            Frames evaluated at once.
        dtype : numpy dtype
            Output dtype (float64 or float32).
        source : str or path, optional
            The file ``data`` came from, named in error messages.

        Returns
        -------
        dict
            ``z``: (n_frames, latent_dim), the CV (encoder mean); ``cluster_probs``:
            (n_frames, k), q(y|x); ``clusters``: (n_frames,) int, argmax of q(y|x).
        """
        x = check_n_features(check_array(data, "data", ndim=2, source=source), self.n_features, "data", source=source)
        zs, ps = [], []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = torch.as_tensor(x[i : i + batch_size], dtype=torch.float32)
                zs.append(self.model.forward_cv(xb).numpy())
                ps.append(self.model.cluster_probabilities(xb).numpy())
        z = np.concatenate(zs) if zs else np.zeros((0, self.config.latent_dim))
        p = np.concatenate(ps) if ps else np.zeros((0, self.config.n_clusters))
        return {"z": z.astype(dtype), "cluster_probs": p.astype(dtype), "clusters": p.argmax(axis=1).astype(np.int64)}


def _read_run_json(path: Path) -> dict:
    """The content of ``path/gmvae_run.json`` (format and version checked)."""
    f = path / RUN_JSON
    if not f.is_file():
        raise GMVAEInputError(f"{path}: not a gmvae-cv run directory (no {RUN_JSON})")
    return read_json_file(f, TRAINING_RUN_FORMAT, (TRAINING_RUN_VERSION,))


def load_run(path: str | os.PathLike) -> GMVAERun:
    """Load a finished run directory written by :func:`fit`.

    Parameters
    ----------
    path : path
        The run directory.

    Returns
    -------
    GMVAERun

    Raises
    ------
    GMVAEInputError
        If the directory is not a complete gmvae-cv run, or ``model.pt`` does not fit the
        configuration.
    """
    path = Path(path)
    info = _read_run_json(path)
    if not info.get("complete"):
        raise GMVAEInputError(f"{path / RUN_JSON}: 'complete' is false: training did not finish (run fit again on {path} to resume)")
    cfg_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    stored = _stored_config(info["config"])
    config = TrainConfig(**{k: v for k, v in stored.items() if k in cfg_fields}).validate()
    model = GMVAECV(**config.model_kwargs(int(info["n_features"])))
    weights = path / "model.pt"
    if not weights.is_file():
        raise GMVAEInputError(f"{weights}: file not found (the run's trained weights)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GMVAEInputError(f"{weights}: cannot be read as a weights-only state dict ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise GMVAEInputError(f"{weights}: does not fit the configuration in {RUN_JSON} ({str(exc).splitlines()[0]})") from None
    return GMVAERun(model, config, info, path)


def _stored_config(config: dict) -> dict:
    """A configuration as stored in ``gmvae_run.json``, with names from before the rename updated
    (``k`` -> ``n_clusters``), in the field order of :class:`TrainConfig`."""
    stored = dict(config)
    if "k" in stored and "n_clusters" not in stored:
        stored["n_clusters"] = stored.pop("k")
    order = [f.name for f in dataclasses.fields(TrainConfig)]
    return {k: stored[k] for k in order if k in stored} | {k: v for k, v in stored.items() if k not in order}


def prepare_run_dir(run_dir: Path, info: dict, overwrite: bool) -> Optional[Path]:
    """Make ``run_dir`` ready for a run described by ``info`` (the first ``gmvae_run.json``); return the checkpoint to resume from.

    An unfinished run with the same configuration, feature count and data resumes from its
    ``checkpoints/last.ckpt``; a finished one is replaced only with ``overwrite``; anything else
    there is refused. Checkpoints of a run that is not resumed are removed.
    """
    ckpt_path = None
    if run_dir.exists() and any(run_dir.iterdir()):
        try:
            old = _read_run_json(run_dir)
        except GMVAEInputError:
            raise GMVAEInputError(f"{run_dir}: exists, is not empty and is not a gmvae-cv run directory; choose another 'out'") from None
        if old.get("complete") and not overwrite:
            raise GMVAEInputError(f"{run_dir}: holds a finished run; pass overwrite=True (--overwrite) to replace it")
        last = run_dir / "checkpoints" / "last.ckpt"
        if not old.get("complete") and last.is_file():
            if _stored_config(old.get("config") or {}) != info["config"] or old.get("n_features") != info["n_features"] or old.get("data") != info["data"]:
                raise GMVAEInputError(
                    f"{run_dir / RUN_JSON}: an unfinished run with another configuration or data is there; "
                    "use another 'out' or remove it"
                )
            ckpt_path = last
    if ckpt_path is None and (run_dir / "checkpoints").is_dir():
        # a replaced or never-checkpointed earlier run: its best.ckpt must not stand in for this run's
        shutil.rmtree(run_dir / "checkpoints")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / RUN_JSON, info)
    return ckpt_path


def write_run_dir(run_dir: Path, model: GMVAECV, history: dict[str, list], info: dict) -> None:
    """Write the finished run: ``model.pt``, ``history.json``, ``loss.png`` and the final ``gmvae_run.json``."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(run_dir / "model.pt", buf.getvalue())
    atomic_write_json(run_dir / "history.json", history)
    plot_loss_curve(history, run_dir / "loss.png")
    atomic_write_json(run_dir / RUN_JSON, info)
