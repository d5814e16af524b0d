"""TorchScript modules that carry a trained GMVAE CV to PLUMED and OpenMM, and their file marker.

The modules here are rebuilt from a trained :class:`~gmvae_cv.model.GMVAECV` with plain
``Linear``/``ReLU`` layers and no Python control flow on data, so that they survive
``torch.jit.script`` then what PLUMED's ``PYTORCH_MODEL`` does to a model (``torch.jit.freeze``,
``torch.jit.optimize_for_inference``, autograd per output):

* :class:`EncoderMean` -- features ``(B, n_features)`` float32 -> the CV ``(B, D)``, the encoder
  mean :math:`s(x) = \\sum_i q(y{=}i|x)\\,\\mu_z(x, i)`;
* :class:`ClusterProbabilities` -- features -> :math:`q(y|x)`, ``(B, K)``, rows summing to 1;
* :class:`PositionsCV` -- positions ``(n_atoms, 3)`` in nm (any float dtype) -> the CV ``(D,)``,
  with the features computed inside by a :class:`~gmvae_cv.features.FeatureModule`;
* :class:`CVComponent` -- one component of a :class:`PositionsCV` as a scalar (an OpenMM-Torch
  energy).

**Standardisation is folded in**: the model's ``norm_in`` (``h = (x - mean) / range``) feeds only
the first linear layers of q(y|x) and q(z|x,y), so it is absorbed into their weights,
``W' = W / range`` and ``b' = b - W (mean / range)`` (computed in float64, stored in float32).
The exported models therefore take raw features in the spec's units. The y-embedding of
q(z|x,y), which does not depend on x, is evaluated once at export and stored as a constant.

Every saved file carries a JSON marker in its ``_extra_files`` (:data:`MARKER_NAME`); use
:func:`save_scripted` and :func:`read_marker`.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path
from typing import Any, List, Optional

import torch

from ._validation import GMVAEInputError

__all__ = [
    "EncoderMean",
    "ClusterProbabilities",
    "PositionsCV",
    "CVComponent",
    "MARKER_NAME",
    "MARKER_FORMAT",
    "MARKER_VERSION",
    "save_scripted",
    "read_marker",
    "load_scripted",
]

MARKER_NAME = "gmvae_cv.json"
"""Name of the extra file that marks a TorchScript file as written by gmvae-cv."""
MARKER_FORMAT = "gmvae-cv/torchscript"
"""Value of the marker's ``format`` field."""
MARKER_VERSION = 1
"""Version of the marker layout and of the module contracts described in it."""


# ------------------------------------------------------------------------------------ building blocks
def _plain_layers(seq: torch.nn.Module, where: str) -> List[torch.nn.Module]:
    """Copies of the Linear/ReLU layers of a Sequential (or mlcolvar FeedForward), in order."""
    if hasattr(seq, "nn") and isinstance(seq.nn, torch.nn.Sequential):
        seq = seq.nn
    out: List[torch.nn.Module] = []
    for layer in seq.children():
        if isinstance(layer, torch.nn.Linear):
            out.append(copy.deepcopy(layer).float())
        elif isinstance(layer, torch.nn.ReLU):
            out.append(torch.nn.ReLU())
        elif isinstance(layer, (torch.nn.Identity, torch.nn.Dropout)):
            continue  # identities in eval mode
        else:
            raise GMVAEInputError(
                f"'{where}' contains a {type(layer).__name__} layer, expected only Linear and ReLU layers "
                "(the export rebuilds the network from them)"
            )
    return out


def _fold_normalization(linear: torch.nn.Linear, mean: Optional[torch.Tensor], range_: Optional[torch.Tensor]) -> torch.nn.Linear:
    """``linear((x - mean) / range)`` as one Linear layer acting on ``x`` (float64 arithmetic)."""
    w = linear.weight.detach().double()
    b = linear.bias.detach().double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if mean is not None and range_ is not None:
        inv = 1.0 / range_.detach().double()
        b = b - w @ (mean.detach().double() * inv)
        w = w * inv
    out = torch.nn.Linear(w.shape[1], w.shape[0], bias=True)
    with torch.no_grad():
        out.weight.copy_(w.float())
        out.bias.copy_(b.float())
    return out


def _norm_buffers(model: Any) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    norm = getattr(model, "norm_in", None)
    if norm is None:
        return None, None
    return norm.mean, norm.range


def _cluster_logits_net(model: Any) -> torch.nn.Sequential:
    """q(y|x) logits as a Sequential acting on raw features (normalisation folded in)."""
    layers = _plain_layers(model.qy.nn, "qy")
    if not layers or not isinstance(layers[0], torch.nn.Linear):
        raise GMVAEInputError("'qy' does not start with a Linear layer, expected an MLP")
    mean, range_ = _norm_buffers(model)
    layers[0] = _fold_normalization(layers[0], mean, range_)
    return torch.nn.Sequential(*layers)


class ClusterProbabilities(torch.nn.Module):
    """q(y|x) of a GMVAE on raw features: ``(B, n_features)`` -> ``(B, K)``.

    Parameters
    ----------
    model : GMVAECV
        A trained model (its weights are copied; the model is not modified).

    Notes
    -----
    ``forward`` takes float32 features of shape ``(B, n_features)`` in spec order and units and
    returns float32 probabilities of shape ``(B, K)``, rows summing to one.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.logits = _cluster_logits_net(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


class EncoderMean(torch.nn.Module):
    """The GMVAE CV on raw features: ``s(x) = sum_i q(y=i|x) mu_z(x, i)``, ``(B, n_features)`` -> ``(B, D)``.

    The same function as :meth:`gmvae_cv.model.GMVAECV.forward_cv`, rebuilt from its weights
    with the standardisation folded into the first layers and the x-independent y-embedding of
    q(z|x,y) precomputed; the variance heads, which the CV does not use, are left out.

    Parameters
    ----------
    model : GMVAECV
        A trained model (its weights are copied; the model is not modified).

    Notes
    -----
    ``forward`` takes float32 features ``(B, n_features)`` and returns float32 ``(B, D)``.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        mean, range_ = _norm_buffers(model)
        qz = model.qz
        self.qy_logits = _cluster_logits_net(model)
        self.qz_in = _fold_normalization(qz.in_x, mean, range_)
        with torch.no_grad():
            eye = torch.eye(qz.k, dtype=torch.float64)
            ye = eye @ qz.y_embed.weight.double().T + qz.y_embed.bias.double()
            hy = ye @ qz.in_y.weight.double().T
        self.register_buffer("qz_y", hy.float())  # (K, H0): the y part of the first hidden layer
        hidden = _plain_layers(qz.hidden, "qz.hidden") if qz.hidden is not None else []
        self.qz_hidden = torch.nn.Sequential(*hidden)
        self.qz_mean = copy.deepcopy(qz.head.mean).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.qy_logits(x), dim=-1)  # (B, K)
        h = torch.relu(self.qz_in(x).unsqueeze(-2) + self.qz_y)  # (B, K, H0)
        z_mean = self.qz_mean(self.qz_hidden(h))  # (B, K, D)
        return torch.matmul(p.unsqueeze(-2), z_mean).squeeze(-2)  # (B, D)


class PositionsCV(torch.nn.Module):
    """The CV of a configuration: positions (nm) -> features -> GMVAE encoder mean, ``(D,)``.

    Parameters
    ----------
    features : FeatureModule
        Computes the features from positions (:meth:`gmvae_cv.features.FeatureSpec.torch_module`).
    encoder : EncoderMean
        The CV on features.

    Notes
    -----
    ``forward(positions, box=None)``: ``positions`` of shape ``(n_atoms, 3)`` in nm, any float
    dtype (OpenMM-Torch passes float64 on the Reference and CPU platforms); ``box`` ``(3, 3)``
    box vectors as rows in nm, or None (no minimum image). The features are computed in the
    positions' dtype, the network in float32, and the CV is returned as shape ``(D,)`` in the
    positions' dtype, differentiable with respect to the positions.
    """

    def __init__(self, features: torch.nn.Module, encoder: EncoderMean) -> None:
        super().__init__()
        self.features = features
        self.encoder = encoder

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        f = self.features(positions, box)
        cv = self.encoder(f.to(torch.float32).unsqueeze(0)).squeeze(0)
        return cv.to(positions.dtype)


class CVComponent(torch.nn.Module):
    """Component ``index`` of a positions -> ``(D,)`` CV module, as a scalar (an OpenMM-Torch energy).

    Parameters
    ----------
    cv : torch.nn.Module or torch.jit.ScriptModule
        A :class:`PositionsCV` (or a loaded ``model_openmm.pt``).
    index : int
        The component, ``0 <= index < D``.
    """

    def __init__(self, cv: torch.nn.Module, index: int) -> None:
        super().__init__()
        self.cv = cv
        self.index = int(index)

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.cv(positions, box)[self.index]


# ------------------------------------------------------------------------------------ files and markers
def save_scripted(module: torch.nn.Module, path: str | os.PathLike, marker: dict) -> bytes:
    """Script ``module`` (if not yet scripted), save it with ``marker`` as :data:`MARKER_NAME`.

    Parameters
    ----------
    module : torch.nn.Module
        A scriptable module (or a ScriptModule).
    path : path
        Output file; written atomically.
    marker : dict
        JSON-serialisable; ``format`` and ``format_version`` are added.

    Returns
    -------
    bytes
        The file's content.
    """
    from ._validation import atomic_write_bytes

    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module.eval())
    full = {"format": MARKER_FORMAT, "format_version": MARKER_VERSION, **marker}
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={MARKER_NAME: json.dumps(full, sort_keys=True)})
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return data


def _load_with_marker(path: Path) -> tuple[torch.jit.ScriptModule, Optional[str]]:
    extra = {MARKER_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError and others for non-TorchScript files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GMVAEInputError(
            f"{path}: cannot be read as a TorchScript file ({first}); expected a model exported by gmvae-cv"
        ) from None
    text = extra[MARKER_NAME]
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return module, (text or None)


def _parse_marker(path: Path, text: Optional[str]) -> dict:
    if not text:
        raise GMVAEInputError(
            f"{path}: a TorchScript file without the '{MARKER_NAME}' marker: not made by gmvae-cv "
            "(export a run with 'gmvae-cv export RUN --out EXP')"
        )
    try:
        marker = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GMVAEInputError(f"{path}: the '{MARKER_NAME}' marker is not valid JSON ({exc})") from None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        got = marker.get("format") if isinstance(marker, dict) else None
        raise GMVAEInputError(f"{path}: marker 'format' is {got!r}, expected {MARKER_FORMAT!r}")
    if marker.get("format_version") != MARKER_VERSION:
        raise GMVAEInputError(
            f"{path}: marker 'format_version' is {marker.get('format_version')!r}, this gmvae-cv reads {MARKER_VERSION}"
        )
    return marker


def read_marker(path: str | os.PathLike) -> dict:
    """The gmvae-cv marker of a TorchScript file.

    Raises
    ------
    GMVAEInputError
        If the file is missing, is not TorchScript, or has no (or a foreign) marker.
    """
    return load_scripted(path)[1]


def load_scripted(path: str | os.PathLike, *, kind: Optional[str] = None) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file written by gmvae-cv and its marker, on the CPU, in eval mode.

    Parameters
    ----------
    path : path
        The file.
    kind : str, optional
        Required marker ``kind`` (``'plumed'``, ``'clusters'``, ``'openmm'``).

    Returns
    -------
    (torch.jit.ScriptModule, dict)

    Raises
    ------
    GMVAEInputError
        Missing file, not TorchScript, no gmvae-cv marker, or another kind of model.
    """
    path = Path(path)
    if not path.is_file():
        raise GMVAEInputError(f"{path}: file not found (expected a TorchScript model exported by gmvae-cv)")
    module, text = _load_with_marker(path)
    marker = _parse_marker(path, text)
    if kind is not None and marker.get("kind") != kind:
        raise GMVAEInputError(f"{path}: marker 'kind' is {marker.get('kind')!r}, expected {kind!r}")
    return module.eval(), marker
