"""Training GMVAE CVs with Lightning, and the run directory that holds the result.

A run directory (``RUN``) contains

- ``gmvae_run.json``: format marker, configuration, data summary, training summary, versions;
- ``model.pt``: the trained weights (a plain ``state_dict``; read with ``weights_only=True``);
- ``history.json`` and ``loss.png``: the loss curves;
- ``checkpoints/last.ckpt``: the Lightning checkpoint of the last finished epoch, used to resume
  an interrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .._core.errors import GMVAEInputError
from .._core.versions import versions
from .._core.checks import as_list_of_arrays, check_array, check_int, check_n_features, check_positive
from .._core.files import atomic_write_json
from .._core.jsonfile import read_json_file
from .data import make_dataset
from .model import GMVAECV

__all__ = ["TrainConfig", "GMVAERun", "fit", "load_run", "TRAINING_RUN_FORMAT"]

TRAINING_RUN_FORMAT = "gmvae-cv/training-run"
TRAINING_RUN_VERSION = 1
RUN_JSON = "gmvae_run.json"


@dataclass
class TrainConfig:
    """Hyperparameters of a GMVAE training run (all saved in ``gmvae_run.json``).

    Parameters
    ----------
    n_clusters : int
        Number of mixture components (clusters), >= 2 (``k`` in the paper; :func:`fit` accepts
        ``k=`` as an alias, and run files written with ``k`` still load).
    latent_dim : int
        Latent dimension (number of CV components), >= 1.
    lag : int
        Time lag in frames (0: plain GMVAE; >0: reconstruct x(t+lag) from x(t)).
    qy_layers, qz_layers, pz_layers, px_layers : list of int
        Hidden widths (reference code: [32], [16], [16], [128]).
    entropy_weight : float
        Weight of the negative entropy of q(y|x) (reference: 0.05).
    lr : float
        Adam learning rate.
    batch_size : int
        Frames per batch (capped at the training set size).
    epochs : int
        Maximum number of epochs.
    patience : int
        Early stopping: epochs without improvement of the validation loss.
    val_fraction : float
        Fraction of frames held out for validation (random split, seeded).
    seed : int
        Seed of initialisation, data split, shuffling and sampling.
    cluster_init : {"gmm", "none"}
        How q(y|x) starts. ``"gmm"`` (default): a Gaussian mixture with ``n_clusters`` components is fitted
        to the standardised training features (projected on their first ``init_pca_dims``
        principal components), and q(y|x) is trained for ``init_steps`` steps to reproduce its
        responsibilities before the ELBO training starts (as VaDE initialises its mixture from a
        GMM). ``"none"``: random initialisation, as the reference code. On the four-well
        potential the random start ends in a local minimum that merges two wells and splits
        another (negative ELBO 0.93 against 0.77 for the well-aligned solution), the GMM start
        finds the well-aligned one (tests/test_train.py).
    init_pca_dims : int
        Principal components used for the GMM initialisation.
    init_steps : int
        Adam steps of the q(y|x) warm-up.
    """

    n_clusters: int = 4
    latent_dim: int = 2
    lag: int = 0
    qy_layers: list = field(default_factory=lambda: [32])
    qz_layers: list = field(default_factory=lambda: [16])
    pz_layers: list = field(default_factory=lambda: [16])
    px_layers: list = field(default_factory=lambda: [128])
    entropy_weight: float = 0.05
    lr: float = 1e-3
    batch_size: int = 5000
    epochs: int = 300
    patience: int = 30
    val_fraction: float = 0.2
    seed: int = 0
    cluster_init: str = "gmm"
    init_pca_dims: int = 5
    init_steps: int = 300

    def validate(self) -> "TrainConfig":
        """Check every field; raise :class:`GMVAEInputError` naming the field."""
        check_int(self.n_clusters, "n_clusters", minimum=2)
        check_int(self.latent_dim, "latent_dim", minimum=1)
        check_int(self.lag, "lag", minimum=0)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.patience, "patience", minimum=1)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.init_pca_dims, "init_pca_dims", minimum=1)
        check_int(self.init_steps, "init_steps", minimum=0)
        if self.cluster_init not in ("gmm", "none"):
            raise GMVAEInputError(f"'cluster_init' is {self.cluster_init!r}, expected 'gmm' or 'none'")
        check_positive(self.lr, "lr")
        check_positive(self.entropy_weight, "entropy_weight", strict=False)
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise GMVAEInputError(f"'val_fraction' is {self.val_fraction}, expected 0 <= val_fraction < 1")
        for name in ("qy_layers", "qz_layers", "pz_layers", "px_layers"):
            layers = list(getattr(self, name))
            if not layers:
                raise GMVAEInputError(f"'{name}' is empty, expected at least one hidden width")
            for w in layers:
                check_int(w, name, minimum=1)
            setattr(self, name, [int(w) for w in layers])
        return self

    def model_kwargs(self, n_features: int) -> dict[str, Any]:
        return dict(
            n_features=n_features,
            latent_dim=self.latent_dim,
            n_clusters=self.n_clusters,
            qy_layers=self.qy_layers,
            qz_layers=self.qz_layers,
            pz_layers=self.pz_layers,
            px_layers=self.px_layers,
            entropy_weight=self.entropy_weight,
            options={"optimizer": {"lr": self.lr}},
        )


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
        from ..features import FeatureSpec

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
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

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


def _plot_history(history: dict[str, list], path: Path) -> None:
    from .plots import plot_loss_curve

    plot_loss_curve(history, path)


def _read_run_json(path: Path) -> dict:
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
    import lightning
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from mlcolvar.data import DictModule

    if "k" in overrides:  # the paper's name, kept as an alias
        if "n_clusters" in overrides:
            raise GMVAEInputError("'k' and 'n_clusters' both given: they name the same number, give one")
        overrides["n_clusters"] = overrides.pop("k")
    config = dataclasses.replace(config or TrainConfig(), **overrides).validate()
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

    run_dir = Path(out) if out is not None else None
    ckpt_path = None
    info: dict[str, Any] = {
        "format": TRAINING_RUN_FORMAT,
        "format_version": TRAINING_RUN_VERSION,
        "complete": False,
        "config": dataclasses.asdict(config),
        "n_features": n_features,
        "feature_names": list(feature_names) if feature_names is not None else None,
        "data": [{"source": str(nm), "n_frames": int(len(t))} for nm, t in zip(names, trajs)],
        "feature_spec": feature_spec.to_dict() if feature_spec is not None else None,
        "weighted": weights is not None,
        "n_samples": n,
        "versions": versions("torch", "lightning", "mlcolvar"),
    }
    if extra_info:
        info.update(extra_info)
    if run_dir is not None:
        if run_dir.exists() and any(run_dir.iterdir()):
            try:
                old = _read_run_json(run_dir)
            except GMVAEInputError:
                raise GMVAEInputError(f"{run_dir}: exists, is not empty and is not a gmvae-cv run directory; choose another 'out'") from None
            if old.get("complete") and not overwrite:
                raise GMVAEInputError(f"{run_dir}: holds a finished run; pass overwrite=True (--overwrite) to replace it")
            last = run_dir / "checkpoints" / "last.ckpt"
            if not old.get("complete") and last.is_file():
                if _stored_config(old.get("config") or {}) != info["config"] or old.get("n_features") != n_features or old.get("data") != info["data"]:
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

    class _History(Callback):
        def __init__(self) -> None:
            self.history: dict[str, list] = {"epoch": []}

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            self.history["epoch"].append(int(trainer.current_epoch))
            for key, val in trainer.callback_metrics.items():
                self.history.setdefault(key, []).append(float(val))

        def state_dict(self) -> dict:
            return {"history": self.history}

        def load_state_dict(self, state: dict) -> None:
            self.history = state["history"]

    class _BestState(Callback):
        """The weights of the epoch with the lowest monitored loss, in memory (runs without ``out``)."""

        def __init__(self, monitor: str) -> None:
            self.monitor = monitor
            self.best = math.inf
            self.state: Optional[dict] = None

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            val = trainer.callback_metrics.get(self.monitor)
            if trainer.sanity_checking or val is None or not float(val) < self.best:
                return
            self.best = float(val)
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = GMVAECV(**config.model_kwargs(n_features))
        lengths = (1.0 - config.val_fraction, config.val_fraction) if n_val else (1.0,)
        bs = min(config.batch_size, max(1, n - n_val))
        datamodule = DictModule(dataset, lengths=lengths, batch_size=bs, generator=torch.Generator().manual_seed(config.seed))
        datamodule.setup("fit")
        init_info = None
        if ckpt_path is None:
            if model.norm_in is not None:
                model.norm_in.setup_from_datamodule(datamodule)
            if config.cluster_init == "gmm" and config.init_steps > 0:
                init_info = init_cluster_encoder(model, datamodule.train_dataloader().dataset, config)
        monitor = "valid_loss" if n_val else "train_loss"
        history_cb = _History()
        best_cb = _BestState(monitor)
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
    model = model.cpu().eval()
    info["complete"] = True
    info["history"] = history
    info["training"] = {
        "epochs_run": len(history["epoch"]),
        "best_epoch": best_epoch,
        "monitor": monitor,
        "best_loss": float(min(history[monitor])) if history.get(monitor) else None,
        "stopped_early": bool(trainer.should_stop and len(history["epoch"]) < config.epochs),
        "resumed_from_checkpoint": ckpt_path is not None,
        "cluster_init": init_info,
        "seconds": time.perf_counter() - t0,
    }
    run = GMVAERun(model, config, info, run_dir)
    if run_dir is not None:
        import io

        from .._core.files import atomic_write_bytes

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(run_dir / "model.pt", buf.getvalue())
        atomic_write_json(run_dir / "history.json", history)
        _plot_history(history, run_dir / "loss.png")
        atomic_write_json(run_dir / RUN_JSON, info)
    return run
