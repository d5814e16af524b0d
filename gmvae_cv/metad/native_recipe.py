"""The recipe of the native bias route: what :mod:`gmvae_cv.metad.native`'s compiled kernel needs,
read out of a CV module built by this package.

:func:`recipe_from_module` walks a TorchScript CV (:class:`~gmvae_cv.deploy.torchscript.PositionsCV`
over an ``EncoderMean``, the random GMVAE stand-in, or the features alone) and returns a
:class:`NativeRecipe`: the feature atom indices by kind, and the encoder mean's network as flat
float64 layers (the first layer's rows shared between the K copies of q(z|x,y), the logits of
q(y|x) grouped where they are identical). Any module it cannot read raises :class:`NotNative`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["NotNative", "NativeRecipe", "recipe_from_module", "numba_available"]

_PAD = -1e29  # wide logits at or below this are EncoderMean's padding entries (exp() == 0)


class NotNative(Exception):
    """The CV module cannot be evaluated by the native route (the message says why)."""


def _numba() -> Any:
    """The numba module, or None when it cannot be imported (then there is no native route)."""
    try:
        import numba
    except Exception:  # noqa: BLE001 -- any import failure means no native route
        return None
    return numba


def numba_available() -> bool:
    """Whether numba (the compiler of the native route) can be imported."""
    return _numba() is not None


# ------------------------------------------------------------------------------------ the recipe
@dataclass
class _Chain:
    """Dense layers ``a <- W a + b`` (ReLU where flagged), packed flat for the kernel."""

    w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dims: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))  # (n_in, n_out) per layer
    relu: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def of(cls, layers: Sequence[tuple[np.ndarray, np.ndarray, bool]]) -> "_Chain":
        """From ``[(W (n_out, n_in), b (n_out,), relu)]``."""
        if not layers:
            return cls()
        return cls(
            w=np.concatenate([np.ascontiguousarray(w, dtype=np.float64).ravel() for w, _, _ in layers]),
            b=np.concatenate([np.asarray(b, dtype=np.float64) for _, b, _ in layers]),
            dims=np.array([[w.shape[1], w.shape[0]] for w, _, _ in layers], dtype=np.int64),
            relu=np.array([int(bool(r)) for _, _, r in layers], dtype=np.int64),
        )

    @property
    def n_out(self) -> int:
        return int(self.dims[-1, 1]) if len(self.dims) else 0

    def width(self) -> int:
        return int(self.dims[:, 1].sum()) if len(self.dims) else 0


@dataclass
class NativeRecipe:
    """What the kernel evaluates: features of positions, then (optionally) a mixture network.

    Features (0-based atoms): ``dist (n, 2)``, ``angle (n, 3)`` (vertex in the middle), ``torsion
    (n, 4)`` with ``torsion_mode`` (0 raw, 1 sin, 2 cos), ``contact (n, 2)`` with ``r0, n, m``;
    ``dest[c]`` is the output column of the ``c``-th feature in group order (distances, angles,
    torsions, contacts).

    Network (``has_net``), EncoderMean's wide form in float64: ``r = relu(W0 x + b0)``;
    ``h = chain_z(r)``; ``t = chain_y(r)``; logits ``L = WL t + bL`` per group (entries of ``h``
    sharing a logit; ``group[e]`` is entry ``e``'s group, -1 for padding, ``mult`` the group sizes);
    ``q_e = exp(L_g) / sum_g mult_g exp(L_g)``; ``s = sum_e q_e h_e Hw[e] + Hb``. Without a
    network the features are the CV.
    """

    n_atoms: int
    n_features: int
    n_cvs: int
    dist: np.ndarray
    angle: np.ndarray
    torsion: np.ndarray
    torsion_mode: np.ndarray
    contact: np.ndarray
    contact_r0: np.ndarray
    contact_n: np.ndarray
    contact_m: np.ndarray
    dest: np.ndarray
    has_net: bool = False
    w0: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    b0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    chain_z: _Chain = field(default_factory=_Chain)
    chain_y: _Chain = field(default_factory=_Chain)
    wl: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (G, n_t)
    bl: np.ndarray = field(default_factory=lambda: np.zeros(0))
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mult: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n_h, D)
    hb: np.ndarray = field(default_factory=lambda: np.zeros(0))
    source: str = ""

    def multiply_adds(self) -> int:
        """Multiply-adds of one network pass (forward), for the record."""
        if not self.has_net:
            return 0
        n = self.w0.size + self.wl.size + self.hw.size
        n += sum(int(a * b) for a, b in self.chain_z.dims) + sum(int(a * b) for a, b in self.chain_y.dims)
        return int(n)


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _name(module: Any) -> str:
    return str(getattr(module, "original_name", type(module).__name__))


def _features_of(fm: Any) -> dict:
    if _name(fm) != "FeatureModule":
        raise NotNative(f"the CV's feature module is a {_name(fm)}, expected gmvae-cv's FeatureModule")
    order = fm.order.detach().cpu().numpy().astype(np.int64)
    dest = np.empty_like(order)
    dest[order] = np.arange(order.size)
    out = {
        "n_atoms": int(fm.n_atoms), "n_features": int(fm.n_features),
        "dist": fm.dist_atoms.cpu().numpy().astype(np.int64).reshape(-1, 2),
        "angle": fm.angle_atoms.cpu().numpy().astype(np.int64).reshape(-1, 3),
        "torsion": fm.torsion_atoms.cpu().numpy().astype(np.int64).reshape(-1, 4),
        "torsion_mode": fm.torsion_mode.cpu().numpy().astype(np.int64).reshape(-1),
        "contact": fm.contact_atoms.cpu().numpy().astype(np.int64).reshape(-1, 2),
        "contact_r0": _np(fm.contact_r0).reshape(-1), "contact_n": _np(fm.contact_n).reshape(-1),
        "contact_m": _np(fm.contact_m).reshape(-1), "dest": dest,
    }
    return out


def _affines(seq: Any, where: str) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    layers = []
    for _, child in seq.named_children():
        if _name(child) != "_Affine":
            raise NotNative(f"'{where}' contains a {_name(child)} layer; the native route reads only gmvae-cv's affine+ReLU layers")
        layers.append((_np(child.weight).T, _np(child.bias), bool(child.relu)))
    return layers


def _groups(wl_wide: np.ndarray, bl_wide: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compress wide logits (columns of ``wl_wide (n_t, n_h)``) into groups of identical columns."""
    keys: dict = {}
    group = np.full(bl_wide.shape[0], -1, dtype=np.int64)
    rows_w, rows_b = [], []
    for e in range(bl_wide.shape[0]):
        if bl_wide[e] <= _PAD:
            continue
        key = (wl_wide[:, e].tobytes(), float(bl_wide[e]))
        if key not in keys:
            keys[key] = len(rows_w)
            rows_w.append(wl_wide[:, e].copy())
            rows_b.append(float(bl_wide[e]))
        group[e] = keys[key]
    if not rows_w:
        raise NotNative("the network's softmax has no live entries")
    mult = np.bincount(group[group >= 0], minlength=len(rows_w)).astype(np.float64)
    return np.array(rows_w), np.array(rows_b), group, mult


def _encoder_mean(enc: Any) -> dict:
    """EncoderMean (exported GMVAE, float32 weights) in float64."""
    for sub in ("shared", "qz_hidden", "qy_hidden", "logits_wide"):
        if not hasattr(enc, sub):
            raise NotNative(f"the encoder has no '{sub}' block, expected gmvae-cv's EncoderMean")
    (shared,) = _affines(_One(enc.shared), "encoder.shared")
    if not shared[2]:
        raise NotNative("the encoder's first layer has no ReLU, expected gmvae-cv's EncoderMean")
    ((wl_t, bl_w, relu_l),) = _affines(_One(enc.logits_wide), "encoder.logits_wide")
    if relu_l:
        raise NotNative("the encoder's logits layer has a ReLU, expected a linear one")
    wl, bl, group, mult = _groups(wl_t.T, bl_w)
    return {"w0": shared[0], "b0": shared[1], "chain_z": _Chain.of(_affines(enc.qz_hidden, "encoder.qz_hidden")),
            "chain_y": _Chain.of(_affines(enc.qy_hidden, "encoder.qy_hidden")), "wl": wl, "bl": bl, "group": group,
            "mult": mult, "hw": _np(enc.head_weight), "hb": _np(enc.head_bias)}


class _One:
    """A single child presented like a container (for :func:`_affines`)."""

    def __init__(self, child: Any) -> None:
        self.child = child

    def named_children(self):
        return [("0", self.child)]


def _random_head(head: Any) -> dict:
    """The random GMVAE stand-in (``_RandomGMVAEHead``), rewritten in EncoderMean's wide form."""
    p = {k: _np(getattr(head, k)) for k in ("shift", "scale", "qy_w1", "qy_b1", "qy_w2", "qy_b2", "qz_w1", "qz_embed", "qz_wm", "qz_bm")}
    hy, nf = p["qy_w1"].shape
    k, hz = p["qz_embed"].shape
    wy = p["qy_w1"] * p["scale"][None, :]
    wz = p["qz_w1"] * p["scale"][None, :]
    w0 = np.concatenate([wy] + [wz] * k, axis=0)
    b0 = np.concatenate([p["qy_b1"] - wy @ p["shift"]] + [p["qz_embed"][i] - wz @ p["shift"] for i in range(k)])
    # h = r; logits of group i read the q(y|x) units (first hy entries of r)
    n_h = hy + k * hz
    wl = np.zeros((k, n_h))
    wl[:, :hy] = p["qy_w2"]
    group = np.full(n_h, -1, dtype=np.int64)
    for i in range(k):
        group[hy + i * hz : hy + (i + 1) * hz] = i
    hw = np.zeros((n_h, p["qz_wm"].shape[0]))
    for i in range(k):
        hw[hy + i * hz : hy + (i + 1) * hz] = hz * p["qz_wm"].T  # q_e = q_i / hz on block i
    return {"w0": w0, "b0": b0, "chain_z": _Chain(), "chain_y": _Chain(), "wl": wl, "bl": p["qy_b2"].copy(),
            "group": group, "mult": np.full(k, float(hz)), "hw": hw, "hb": p["qz_bm"].copy()}


def recipe_from_module(module: Any, n_cvs: int) -> NativeRecipe:
    """Read a gmvae-cv CV module (scripted or not) into a :class:`NativeRecipe`.

    Raises
    ------
    NotNative
        If the module (or a part of it) is not one this route reads; the message names it.
    """
    name = _name(module)
    if name not in ("PositionsCV", "_FeatureHeadCV", "_FeatureCV"):
        raise NotNative(f"the CV module is a {name}; the native route reads gmvae-cv's PositionsCV, feature CVs "
                        "and the random GMVAE stand-in")
    feats = _features_of(module.features)
    net: dict = {}
    if name == "PositionsCV":
        if _name(module.encoder) != "EncoderMean":
            raise NotNative(f"the CV's network is a {_name(module.encoder)}, expected gmvae-cv's EncoderMean")
        net = _encoder_mean(module.encoder)
    elif name == "_FeatureHeadCV":
        if _name(module.head) != "_RandomGMVAEHead":
            raise NotNative(f"the CV's network is a {_name(module.head)}, expected gmvae-cv's random GMVAE stand-in")
        net = _random_head(module.head)
    recipe = NativeRecipe(n_cvs=int(n_cvs), has_net=bool(net), source=name, **feats, **net)
    d_out = recipe.hw.shape[1] if recipe.has_net else recipe.n_features
    if d_out != n_cvs:
        raise NotNative(f"the network gives {d_out} components, the CV file says D = {n_cvs}")
    if recipe.has_net:
        n_h = recipe.chain_z.n_out or recipe.w0.shape[0]
        n_t = recipe.chain_y.n_out or recipe.w0.shape[0]
        if recipe.w0.shape[1] != recipe.n_features or recipe.hw.shape[0] != n_h or recipe.group.shape[0] != n_h \
                or recipe.wl.shape[1] != n_t:
            raise NotNative("the network's layer shapes do not chain (features -> shared -> heads)")
    return recipe
