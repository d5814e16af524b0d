"""Training GMVAE CVs with Lightning (:func:`fit`).

:func:`fit` resolves the configuration, prepares the dataset (time-lagged pairs, weights, a seeded
validation split), starts q(y|x) from a Gaussian mixture (:func:`init_cluster_encoder`), trains
with early stopping, keeps the best validation epoch and writes the run directory
(:mod:`gmvae_cv.learn.rundir`, which also holds :class:`GMVAERun` and :func:`load_run`).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
import lightning
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from mlcolvar.data import DictModule

from .._core.checks import as_list_of_arrays
from .._core.errors import GMVAEInputError
from .._core.versions import versions
from .config import TrainConfig
from .data import make_dataset
from .model import GMVAECV
from .rundir import RUN_JSON, TRAINING_RUN_FORMAT, TRAINING_RUN_VERSION, GMVAERun, load_run, prepare_run_dir, write_run_dir  # noqa: F401
from .callbacks import BestState, History

__all__ = ["TrainConfig", "GMVAERun", "fit", "load_run", "TRAINING_RUN_FORMAT"]


def init_cluster_encoder(model: GMVAECV, dataset, config: TrainConfig) -> dict[str, Any]:
    """Start q(y|x) from a Gaussian mixture fitted to the standardised features.

    Parameters
    ----------
    model : GMVAECV
        Model with ``norm_in`` already set; its q(y|x) network is trained in place.
    dataset : mlcolvar.data.DictDataset
        The training set (keys ``data`` and optionally ``target``, ``weights``).
    config : TrainConfig
        Uses ``k``, ``init_pca_dims``, ``init_steps``, ``batch_size``, ``lr`` and ``seed``.

    Returns
    -------
    dict
        ``gmm_weights`` (k,), the mixture's component populations, and ``agreement``: the
        fraction of frames whose argmax q(y|x) after the warm-up equals the GMM's label.
    """
    x = dataset["data"]
    with torch.no_grad():
        h = model._normalize(x).double().numpy()
    n_dims = min(config.init_pca_dims, h.shape[1], max(1, h.shape[0] - 1))
    proj = PCA(n_components=n_dims, random_state=config.seed).fit_transform(h) if n_dims < h.shape[1] else h
    gmm = GaussianMixture(n_components=config.n_clusters, n_init=3, random_state=config.seed, reg_covar=1e-4).fit(proj)
    resp = torch.as_tensor(gmm.predict_proba(proj), dtype=torch.float32)
    opt = torch.optim.Adam(model.qy.parameters(), lr=max(config.lr, 1e-3))
    gen = torch.Generator().manual_seed(config.seed)
    bs = min(config.batch_size, len(x))
    for _ in range(config.init_steps):
        idx = torch.randint(0, len(x), (bs,), generator=gen)
        logp = torch.log_softmax(model.qy(model._normalize(x[idx])), dim=-1)
        loss = -(resp[idx] * logp).sum(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Then the other blocks learn the mixture with q(y|x) held fixed (an E-step-like start):
    # a fresh optimiser on all blocks would otherwise move q(y|x) towards whichever randomly
    # initialised component happens to score best, and lose the start.
    others = [p for name, p in model.named_parameters() if not name.startswith("qy.")]
    opt = torch.optim.Adam(others, lr=config.lr)
    for _ in range(config.init_steps):
        idx = torch.randint(0, len(x), (bs,), generator=gen)
        loss = model.loss_terms(dataset[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        agree = float((model.cluster_probabilities(x).argmax(-1) == resp.argmax(-1)).float().mean())
    return {"gmm_weights": [float(w) for w in gmm.weights_], "agreement": agree}


def fit(
    data: np.ndarray | Sequence[np.ndarray],
    config: Optional[TrainConfig] = None,
    *,
    weights: np.ndarray | Sequence[np.ndarray] | None = None,
    out: str | os.PathLike | None = None,
    sources: Optional[Sequence[str]] = None,
    feature_names: Optional[Sequence[str]] = None,
    feature_spec: Any = None,
    extra_info: Optional[dict] = None,
    progress: bool = True,
    overwrite: bool = False,
    accelerator: str = "cpu",
    **overrides: Any,
) -> GMVAERun:
    """Train a GMVAE CV.

    Parameters
    ----------
    data : (n_frames, n_features) array or list of them
        Feature matrices, one per trajectory.
    config : TrainConfig, optional
        Hyperparameters; ``overrides`` (e.g. ``n_clusters=4, latent_dim=1``) replace its fields.
    weights : (n_frames,) array or list of them, optional
        Per-frame weights, one array per trajectory.
    out : path, optional
        Run directory. If it holds an unfinished run with the same configuration, training
        resumes from its last checkpoint; a finished run is only replaced with ``overwrite``.
    sources : sequence of str, optional
        Names of the trajectories (for messages and ``gmvae_run.json``).
    feature_names : sequence of str, optional
        Names of the feature columns, stored in ``gmvae_run.json``.
    feature_spec : FeatureSpec, optional
        How the columns were computed from atoms; stored in ``gmvae_run.json`` (key
        ``feature_spec``) so that export can rebuild the features for PLUMED and OpenMM. Its
        ``n_features`` must equal the data's column count; its names become ``feature_names``.
    extra_info : dict, optional
        More entries for ``gmvae_run.json`` (e.g. a feature spec).
    progress : bool
        Show Lightning's progress bar.
    overwrite : bool
        Replace a finished run in ``out``.
    accelerator : str
        Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``).

    Returns
    -------
    GMVAERun
        The trained model (best validation epoch) and its metadata.

    Examples
    --------
    >>> import numpy as np
    >>> from gmvae_cv import fit
    >>> x = np.random.default_rng(0).normal(size=(200, 3))
    >>> run = fit(x, n_clusters=2, latent_dim=1, epochs=2, progress=False)
    >>> run.transform(x)["z"].shape
    (200, 1)
    """
    config = _resolve_config(config, overrides)
    prepared = _prepare_data(data, weights, sources, feature_names, feature_spec, config)
    run_dir = Path(out) if out is not None else None
    info = _run_info(config, prepared, feature_spec, weights is not None, extra_info)
    ckpt_path = prepare_run_dir(run_dir, info, overwrite) if run_dir is not None else None
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trained = _train(config, prepared, run_dir, ckpt_path, progress, accelerator)
    model = trained.model.cpu().eval()
    history = trained.history
    info["complete"] = True
    info["history"] = history
    info["training"] = {
        "epochs_run": len(history["epoch"]),
        "best_epoch": trained.best_epoch,
        "monitor": trained.monitor,
        "best_loss": float(min(history[trained.monitor])) if history.get(trained.monitor) else None,
        "stopped_early": bool(trained.should_stop and len(history["epoch"]) < config.epochs),
        "resumed_from_checkpoint": ckpt_path is not None,
        "cluster_init": trained.init_info,
        "seconds": time.perf_counter() - t0,
    }
    run = GMVAERun(model, config, info, run_dir)
    if run_dir is not None:
        write_run_dir(run_dir, model, history, info)
    return run


def _resolve_config(config: Optional[TrainConfig], overrides: dict) -> TrainConfig:
    """``config`` (default :class:`TrainConfig`) with ``overrides`` applied (``k`` an alias of ``n_clusters``), validated."""
    if "k" in overrides:  # the paper's name, kept as an alias
        if "n_clusters" in overrides:
            raise GMVAEInputError("'k' and 'n_clusters' both given: they name the same number, give one")
        overrides["n_clusters"] = overrides.pop("k")
    return dataclasses.replace(config or TrainConfig(), **overrides).validate()


@dataclass
class _Prepared:
    """The training data of one :func:`fit` call.

    Attributes
    ----------
    dataset : mlcolvar.data.DictDataset
        Frames (or time-lagged pairs) with their weights.
    trajs : list of (n_frames_i, n_features) ndarray
    names : list of str
        One per trajectory.
    feature_names : list of str or None
    n_features, n, n_val : int
        Columns, samples, and samples held out for validation.
    """

    dataset: Any
    trajs: list
    names: list
    feature_names: Optional[Sequence[str]]
    n_features: int
    n: int
    n_val: int


def _prepare_data(data: Any, weights: Any, sources: Optional[Sequence[str]], feature_names: Optional[Sequence[str]],
                  feature_spec: Any, config: TrainConfig) -> _Prepared:
    """The dataset of ``data`` (checked against ``feature_spec`` and ``feature_names``) and its validation size."""
    trajs = as_list_of_arrays(data, "data")
    names = list(sources) if sources is not None else [f"data[{i}]" for i in range(len(trajs))]
    dataset = make_dataset(trajs, weights=weights, lag=config.lag, sources=names)
    n_features = int(dataset["data"].shape[1])
    if feature_spec is not None:
        if feature_spec.n_features != n_features:
            raise GMVAEInputError(f"'feature_spec' has {feature_spec.n_features} features, the data have {n_features} columns")
        if feature_names is None:
            feature_names = feature_spec.names
    if feature_names is not None and len(feature_names) != n_features:
        raise GMVAEInputError(f"'feature_names' has {len(feature_names)} names, the data have {n_features} features")
    n = len(dataset)
    n_val = int(round(config.val_fraction * n))
    if config.val_fraction > 0 and (n_val < 1 or n - n_val < 1):
        raise GMVAEInputError(f"'data' has {n} frames (pairs), too few to hold out val_fraction={config.val_fraction}")
    return _Prepared(dataset, trajs, names, feature_names, n_features, n, n_val)


def _run_info(config: TrainConfig, prepared: _Prepared, feature_spec: Any, weighted: bool, extra_info: Optional[dict]) -> dict:
    """The first content of ``gmvae_run.json`` (``complete`` false until training has finished)."""
    info: dict[str, Any] = {
        "format": TRAINING_RUN_FORMAT,
        "format_version": TRAINING_RUN_VERSION,
        "complete": False,
        "config": dataclasses.asdict(config),
        "n_features": prepared.n_features,
        "feature_names": list(prepared.feature_names) if prepared.feature_names is not None else None,
        "data": [{"source": str(nm), "n_frames": int(len(t))} for nm, t in zip(prepared.names, prepared.trajs)],
        "feature_spec": feature_spec.to_dict() if feature_spec is not None else None,
        "weighted": weighted,
        "n_samples": prepared.n,
        "versions": versions("torch", "lightning", "mlcolvar"),
    }
    if extra_info:
        info.update(extra_info)
    return info


@dataclass
class _Trained:
    """What :func:`_train` leaves: the model at its best epoch, the history and how training went."""

    model: GMVAECV
    history: dict
    best_epoch: Optional[int]
    monitor: str
    should_stop: bool
    init_info: Optional[dict]


def _build_trainer(config: TrainConfig, run_dir: Optional[Path], monitor: str, progress: bool, accelerator: str):
    """The Lightning trainer (early stopping on ``monitor``, checkpoints in ``run_dir``) and its history and best-state callbacks."""
    history_cb = History()
    best_cb = BestState(monitor)
    callbacks = [history_cb, best_cb, EarlyStopping(monitor=monitor, patience=config.patience, mode="min")]
    if run_dir is not None:
        callbacks.append(
            ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min", save_last=True)
        )
    trainer = lightning.Trainer(
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=run_dir is not None,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir) if run_dir is not None else None,
        deterministic=True,
    )
    return trainer, history_cb, best_cb


def _train(config: TrainConfig, prepared: _Prepared, run_dir: Optional[Path], ckpt_path: Optional[Path],
           progress: bool, accelerator: str) -> _Trained:
    """Build the model and the data split, start q(y|x) (unless resuming), train, and load the best epoch's weights.

    Runs under the caller's seeded torch RNG.
    """
    n, n_val = prepared.n, prepared.n_val
    model = GMVAECV(**config.model_kwargs(prepared.n_features))
    lengths = (1.0 - config.val_fraction, config.val_fraction) if n_val else (1.0,)
    bs = min(config.batch_size, max(1, n - n_val))
    datamodule = DictModule(prepared.dataset, lengths=lengths, batch_size=bs, generator=torch.Generator().manual_seed(config.seed))
    datamodule.setup("fit")
    init_info = None
    if ckpt_path is None:
        if model.norm_in is not None:
            model.norm_in.setup_from_datamodule(datamodule)
        if config.cluster_init == "gmm" and config.init_steps > 0:
            init_info = init_cluster_encoder(model, datamodule.train_dataloader().dataset, config)
    monitor = "valid_loss" if n_val else "train_loss"
    trainer, history_cb, best_cb = _build_trainer(config, run_dir, monitor, progress, accelerator)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    history = history_cb.history
    best_epoch = None
    if monitor in history and history[monitor]:
        best_i = int(np.argmin(history[monitor]))
        best_epoch = history["epoch"][best_i]
    best = run_dir / "checkpoints" / "best.ckpt" if run_dir is not None else None
    if best is not None and best_epoch is not None and best.is_file():
        # written by this run (an earlier run's checkpoints are removed above); covers epochs before a resume
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    elif best_cb.state is not None:
        model.load_state_dict(best_cb.state)
    return _Trained(model, history, best_epoch, monitor, bool(trainer.should_stop), init_info)
