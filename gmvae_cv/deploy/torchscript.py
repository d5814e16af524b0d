"""TorchScript modules that carry a trained GMVAE CV to PLUMED and OpenMM, and their file marker.

The modules here are rebuilt from a trained :class:`~gmvae_cv.learn.model.GMVAECV` as a few affine
layers (``addmm``) and ReLUs, with no Python control flow on data, so that they survive
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
``W' = W / range`` and ``b' = b - (mean / range) W`` (computed in float64, stored in float32; see
:func:`_fold` for the round-off this costs). The exported models take raw features in the
spec's units. The y-embedding of
q(z|x,y), which does not depend on x, is evaluated once at export and stored as a constant.
See :class:`EncoderMean` for how the K components are evaluated in a few wide layers.

Every saved file carries a JSON marker in its ``_extra_files`` (:data:`MARKER_NAME`); use
:func:`save_scripted` and :func:`read_marker`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, List, Optional

import torch

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_bytes

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
    "current_names",
    "RENAMED_KEYS",
]

MARKER_NAME = "gmvae_cv.json"
"""Name of the extra file that marks a TorchScript file as written by gmvae-cv."""
MARKER_FORMAT = "gmvae-cv/torchscript"
"""Value of the marker's ``format`` field."""
MARKER_VERSION = 1
"""Version of the marker layout and of the module contracts described in it."""


# ------------------------------------------------------------------------------------ building blocks
def _plain_layers(seq: torch.nn.Module, where: str) -> List[torch.nn.Module]:
    """The Linear/ReLU layers of a Sequential (or mlcolvar FeedForward), in order (not copied)."""
    if hasattr(seq, "nn") and isinstance(seq.nn, torch.nn.Sequential):
        seq = seq.nn
    out: List[torch.nn.Module] = []
    for layer in seq.children():
        if isinstance(layer, torch.nn.Linear):
            out.append(layer)
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


def _norm_buffers(model: Any) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    norm = getattr(model, "norm_in", None)
    if norm is None:
        return None, None
    return norm.mean, norm.range


class _Affine(torch.nn.Module):
    """``y = x @ weight + bias`` (one ``addmm``), optionally followed by ReLU; x of shape ``(B, n_in)``.

    ``weight`` is stored as ``(n_in, n_out)`` so that the frozen graph holds one ``addmm`` per
    layer (``nn.Linear`` becomes ``matmul`` + ``add`` after ``optimize_for_inference``).
    """

    __constants__ = ["relu"]

    def __init__(self, weight_in_out: torch.Tensor, bias: torch.Tensor, relu: bool) -> None:
        super().__init__()
        self.register_buffer("weight", weight_in_out.detach().float().contiguous())
        self.register_buffer("bias", bias.detach().float().contiguous())
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.bias, x, self.weight)
        if self.relu:
            y = torch.relu(y)
        return y


def _linear_wb(layer: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight as (n_in, n_out), bias) of a Linear layer, float64."""
    w = layer.weight.detach().double().T
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros(w.shape[1], dtype=torch.float64)
    return w, b


def _fold(w_in_out: torch.Tensor, b: torch.Tensor, mean: Optional[torch.Tensor], range_: Optional[torch.Tensor]):
    """``((x - mean) / range) @ w + b`` as ``x @ w' + b'``: ``w' = w / range``, ``b' = b - (mean / range) @ w``.

    Computed in float64, stored in float32. The float32 layer then adds terms of size
    ``|mean / range| |w|`` (tens for distances of ~0.3 nm spread by ~0.02 nm) that cancel to O(1),
    which costs about a factor 2-4 in float32 round-off against a separate centring step (on the
    reference export: CV values within 2.3e-6 instead of 6e-7 of the float64 model on float64
    features, gradients 2.7e-6 instead of 1.3e-6 relative). That is the size of the error PLUMED
    already makes by casting the features to float32, and the centring would cost one more
    operation per call (about 5% of the per-step time in PLUMED).
    """
    if mean is None or range_ is None:
        return w_in_out, b
    inv = 1.0 / range_.detach().double()
    return w_in_out * inv[:, None], b - (mean.detach().double() * inv) @ w_in_out


def _mlp_pairs(layers: List[torch.nn.Module], where: str) -> List[tuple[torch.nn.Linear, bool]]:
    """[(Linear, followed by ReLU)] from a flat Linear/ReLU list."""
    out: List[tuple[torch.nn.Linear, bool]] = []
    for layer in layers:
        if isinstance(layer, torch.nn.Linear):
            out.append((layer, False))
        elif isinstance(layer, torch.nn.ReLU) and out and not out[-1][1]:
            out[-1] = (out[-1][0], True)
        else:
            raise GMVAEInputError(f"'{where}' has a ReLU that does not follow a Linear layer")
    return out


def _qy_pairs(model: Any) -> List[tuple[torch.nn.Linear, bool]]:
    pairs = _mlp_pairs(_plain_layers(model.qy.nn, "qy"), "qy")
    if len(pairs) < 2 or not pairs[0][1] or pairs[-1][1]:
        raise GMVAEInputError("'qy' is not Linear-ReLU-...-Linear, expected an MLP with at least one hidden layer")
    return pairs


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
        mean, range_ = _norm_buffers(model)
        layers = []
        for i, (lin, relu) in enumerate(_qy_pairs(model)):
            w, b = _linear_wb(lin)
            if i == 0:
                w, b = _fold(w, b, mean, range_)
            layers.append(_Affine(w, b, relu))
        self.logits = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


def _block_diag(w: torch.Tensor, k: int) -> torch.Tensor:
    return torch.block_diag(*([w] * k))


class EncoderMean(torch.nn.Module):
    """The GMVAE CV on raw features: ``s(x) = sum_i q(y=i|x) mu_z(x, i)``, ``(B, n_features)`` -> ``(B, D)``.

    The same function as :meth:`gmvae_cv.learn.model.GMVAECV.forward_cv`, rewritten exactly (up to
    float32 round-off) with few, wide layers, because a batch-1 model in PLUMED costs per
    operation, not per multiply. With the reference widths the frozen graph is
    ``addmm, relu, addmm, softmax, mul, addmm`` (a bare 3-layer MLP: ``matmul, add, relu`` x 3):

    1. One shared first layer ``x -> r = [q(y|x) hidden | q(z|x, y=1) hidden | ... | q(z|x, y=K) hidden]``:
       the first layers of q(y|x) and of q(z|x,y) both act on ``(x - mean) / range``, so the
       standardisation is folded into one weight matrix (:func:`_fold`), and the x-independent
       y-embedding of q(z|x,y) becomes the bias of the K copies of its first layer.
    2. Further hidden layers read their part of ``r`` through zero-padded weights (q(y|x)) or
       block-diagonal ones (K copies, q(z|x,y)), giving ``h_z = [h_1 | ... | h_K]``, blocks of width H.
    3. The mean head of q(z|x,y) is affine, so ``sum_i q_i (h_i W + b) = (sum_i q_i h_i) W + b``.
       The last q(y|x) layer is widened to give each logit once per entry of its block of
       ``h_z`` (entries of ``r`` that belong to q(y|x) get a logit of -1e30): a softmax over that
       row gives ``q_i / H`` on block i and 0 elsewhere. So
       ``s = (softmax(l_wide) * h_z) @ (H [W; ...; W]) + b``: the mixture costs one ``mul``.
       The variance heads, which the CV does not use, are left out.

    Parameters
    ----------
    model : GMVAECV
        A trained model; its encoder weights are copied into the layers above (the model is left
        unchanged). ``forward`` maps float32 features ``(B, n_features)`` to float32 ``(B, D)``.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        mean, range_ = _norm_buffers(model)
        qz = model.qz
        k = int(qz.k)
        qy = _qy_pairs(model)
        w_y0, b_y0 = _linear_wb(qy[0][0])
        w_z0, b_z0 = _linear_wb(qz.in_x)
        with torch.no_grad():
            eye = torch.eye(k, dtype=torch.float64)
            ye = eye @ qz.y_embed.weight.double().T + qz.y_embed.bias.double()
            hy = ye @ qz.in_y.weight.double().T  # (K, H0): the y part of q(z|x,y)'s first layer
        h_y, h_z0 = w_y0.shape[1], w_z0.shape[1]
        w0 = torch.cat([w_y0, w_z0.repeat(1, k)], dim=1)
        b0 = torch.cat([b_y0, (b_z0[None, :] + hy).reshape(-1)])
        self.shared = _Affine(*_fold(w0, b0, mean, range_), True)

        # q(z|x,y) hidden layers (block-diagonal); without any, h_z is r itself
        hidden = _mlp_pairs(_plain_layers(qz.hidden, "qz.hidden"), "qz.hidden") if qz.hidden is not None else []
        z_layers = []
        for i, (lin, relu) in enumerate(hidden):
            w, b = _linear_wb(lin)
            w, b = _block_diag(w, k), b.repeat(k)
            if i == 0:
                w = torch.cat([torch.zeros(h_y, w.shape[1], dtype=torch.float64), w], dim=0)
            z_layers.append(_Affine(w, b, relu))
        self.qz_hidden = torch.nn.Sequential(*z_layers)
        block = int(hidden[-1][0].out_features) if hidden else h_z0
        pad = 0 if hidden else h_y  # leading entries of h_z that are not q(z|x,y) units

        # q(y|x) hidden layers after the first (the first of them reads r through zero padding)
        y_layers = []
        for i, (lin, relu) in enumerate(qy[1:-1]):
            w, b = _linear_wb(lin)
            if i == 0:
                w = torch.cat([w, torch.zeros(k * h_z0, w.shape[1], dtype=torch.float64)], dim=0)
            y_layers.append(_Affine(w, b, relu))
        self.qy_hidden = torch.nn.Sequential(*y_layers)
        w_l, b_l = _linear_wb(qy[-1][0])
        if len(qy) == 2:  # the logits layer reads r directly
            w_l = torch.cat([w_l, torch.zeros(k * h_z0, k, dtype=torch.float64)], dim=0)
        widen = torch.zeros(k, pad + k * block, dtype=torch.float64)
        for i in range(k):
            widen[i, pad + i * block : pad + (i + 1) * block] = 1.0
        b_wide = b_l @ widen
        b_wide[:pad] = -1e30
        self.logits_wide = _Affine(w_l @ widen, b_wide, False)

        w_m, b_m = _linear_wb(qz.head.mean)  # (block, D)
        w_head = torch.cat([torch.zeros(pad, w_m.shape[1], dtype=torch.float64), block * w_m.repeat(k, 1)], dim=0)
        self.register_buffer("head_weight", w_head.float().contiguous())
        self.register_buffer("head_bias", b_m.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.shared(x)  # (B, H_y + K H_0)
        h_z = self.qz_hidden(r)  # (B, [H_y +] K H)
        q_wide = torch.softmax(self.logits_wide(self.qy_hidden(r)), dim=-1)  # q_i / H on block i
        # matmul + add, not addmm: with the features in front (model_openmm.pt), a frozen graph
        # ending in addmm(mul(softmax(.), .)) makes torch 2.12's profiling executor fail on the
        # first call ("Dimension out of range ... got 192" in linalg_vector_norm); export()
        # runs the frozen OpenMM model once to catch such failures (_check_frozen_openmm).
        return torch.matmul(q_wide * h_z, self.head_weight) + self.head_bias  # (B, D)


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
        cv = self.encoder(f.to(torch.float32).view(1, -1)).view(-1)
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


RENAMED_KEYS = {"D": "latent_dim", "K": "n_clusters"}
"""Keys that files written before the names were unified used (old -> current)."""


def current_names(info: dict) -> dict:
    """``info`` with the keys of :data:`RENAMED_KEYS` under their current names (a copy; files
    written before the rename keep loading)."""
    out = dict(info)
    for old, new in RENAMED_KEYS.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    return out


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
    marker = current_names(_parse_marker(path, text))
    if kind is not None and marker.get("kind") != kind:
        raise GMVAEInputError(f"{path}: marker 'kind' is {marker.get('kind')!r}, expected {kind!r}")
    return module.eval(), marker
