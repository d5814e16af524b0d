"""CV files for OpenMM: a TorchScript module ``positions -> CV`` plus its JSON marker.

The contract a CV file (``EXP/model_openmm.pt``) fulfils, and what :func:`load_cv` checks:

- a TorchScript module whose ``forward(positions, box=None)`` takes positions of shape
  ``(n_atoms, 3)`` in **nm** (any floating dtype) and optionally the box vectors ``(3, 3)`` in nm
  as rows, and returns the CV, shape ``(D,)``, in the dtype of the positions, differentiable with
  respect to them;
- an extra file ``gmvae_cv.json`` stored inside the TorchScript archive (``_extra_files``) with at
  least ``format`` (a string starting with ``"gmvae-cv"``), ``n_atoms`` and ``D`` (the number of
  CV components). Optional keys used when present: ``K`` (clusters), ``feature_names``,
  ``atom_indices`` (0-based atoms the features read), ``cv_names``, ``periodic`` (per component
  ``null`` or ``[min, max]``), ``cv_range`` (per component ``[min, max]`` seen in training),
  ``feature_spec`` (a :class:`~gmvae_cv.features.FeatureSpec` dictionary).

An EXP directory holds ``model_openmm.pt`` and ``cv.json``; :func:`load_cv` accepts either the
file or the directory. :func:`save_cv_module` writes such a file from any scriptable module;
:func:`feature_cv` and :func:`random_gmvae_cv` build modules for tests and benchmarks (the raw
features as the CV, and a GMVAE-shaped CV with random weights).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_bytes
from .._core.checks import check_int
from ..features import FeatureModule, FeatureSpec

__all__ = [
    "CVModel",
    "load_cv",
    "save_cv_module",
    "feature_cv",
    "random_gmvae_cv",
    "CV_MARKER",
    "CV_FORMAT",
    "OPENMM_CV_FILE",
]

CV_MARKER = "gmvae_cv.json"
"""Name of the JSON marker stored inside a CV file (TorchScript ``_extra_files``)."""
CV_FORMAT = "gmvae-cv/openmm-cv"
"""``format`` written by :func:`save_cv_module`; :func:`load_cv` accepts any ``gmvae-cv*``."""
OPENMM_CV_FILE = "model_openmm.pt"
"""File name of the OpenMM flavour of an exported CV inside an EXP directory."""

_D_KEYS = ("D", "n_cvs", "latent_dim")


@dataclass
class CVModel:
    """A loaded CV file: the TorchScript module and its metadata.

    Attributes
    ----------
    module : torch.jit.ScriptModule
        ``forward(positions (n_atoms, 3) nm, box=None) -> (D,)``.
    meta : dict
        The ``gmvae_cv.json`` marker (plus ``cv.json`` keys of an EXP directory under ``"cv_json"``).
    path : Path or None
        The CV file.
    sha256 : str
        Hash of the file's bytes (recorded in runs and checkpoints).
    """

    module: Any
    meta: dict
    path: Optional[Path] = None
    sha256: str = ""
    _periodic: tuple = field(default=(), repr=False)

    @property
    def n_atoms(self) -> int:
        """Atoms the positions must have."""
        return int(self.meta["n_atoms"])

    @property
    def n_cvs(self) -> int:
        """Number of CV components ``D``."""
        return int(self.meta["D"])

    @property
    def names(self) -> list[str]:
        """Component names; ``cv.0, cv.1, ...`` unless the marker names them."""
        return list(self.meta.get("cv_names") or [f"cv.{i}" for i in range(self.n_cvs)])

    @property
    def periodic(self) -> tuple[Optional[tuple[float, float]], ...]:
        """Per component ``(min, max)`` of its period, or ``None`` if not periodic."""
        return self._periodic

    @property
    def atom_indices(self) -> Optional[np.ndarray]:
        """0-based atoms the CV reads (from the marker), or ``None``."""
        idx = self.meta.get("atom_indices")
        return None if idx is None else np.asarray(idx, dtype=np.int64)

    @property
    def feature_spec(self) -> Optional[FeatureSpec]:
        """The feature spec recorded in the marker or ``cv.json``, or ``None``."""
        d = self.meta.get("feature_spec") or (self.meta.get("cv_json") or {}).get("feature_spec")
        return FeatureSpec.from_dict(d, source=self.path) if d else None

    def __call__(self, positions: Any, box: Any = None) -> np.ndarray:
        """CV values of positions in nm, shape ``(n_atoms, 3)`` (float64 NumPy out, shape ``(D,)``)."""
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        b = None if box is None else torch.as_tensor(np.asarray(box, dtype=np.float64))
        with torch.no_grad():
            out = self.module(pos, b)
        return out.detach().cpu().numpy().astype(np.float64)

    def check_system(self, n_atoms: int, *, source: str = "system", topology: Any = None) -> None:
        """Check that positions of a system with ``n_atoms`` atoms (and ``topology``) fit this CV.

        Raises
        ------
        GMVAEInputError
            If the atom count differs, a feature atom is out of range, or the recorded atom labels
            do not match ``topology``.
        """
        where = self.path if self.path is not None else "CV"
        if n_atoms != self.n_atoms:
            raise GMVAEInputError(
                f"{where}: 'n_atoms' is {self.n_atoms}, the {source} has {n_atoms} atoms; "
                "the CV was exported for another system"
            )
        idx = self.atom_indices
        if idx is not None and idx.size and (idx.min() < 0 or idx.max() >= n_atoms):
            raise GMVAEInputError(
                f"{where}: 'atom_indices' contains {int(idx.max())}, expected indices below the {n_atoms} atoms of the {source}"
            )
        spec = self.feature_spec
        if spec is not None and topology is not None:
            spec.check_topology(topology, source=f"{source} topology (CV {where})")


def _read_marker(path: Path) -> tuple[Any, dict, bytes]:
    data = path.read_bytes()
    extra = {CV_MARKER: ""}
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises several types for non-TorchScript files
        raise GMVAEInputError(f"{path}: cannot load as a TorchScript module ({type(exc).__name__}: {str(exc)[:200]})") from None
    raw = extra[CV_MARKER]
    if not raw:
        raise GMVAEInputError(
            f"{path}: no '{CV_MARKER}' marker inside the TorchScript file; expected a CV exported by "
            "gmvae-cv (model_openmm.pt) or written by gmvae_cv.deploy.loaders.save_cv_module"
        )
    try:
        meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GMVAEInputError(f"{path}: '{CV_MARKER}' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise GMVAEInputError(f"{path}: '{CV_MARKER}' is {type(meta).__name__}, expected a JSON object")
    return module, meta, data


def _check_meta(meta: dict, source: Path) -> tuple:
    fmt = meta.get("format")
    if not isinstance(fmt, str) or not fmt.startswith("gmvae-cv"):
        raise GMVAEInputError(f"{source}: '{CV_MARKER}' field 'format' is {fmt!r}, expected a 'gmvae-cv...' format name")
    if "n_atoms" not in meta:
        raise GMVAEInputError(f"{source}: '{CV_MARKER}' has no 'n_atoms', expected the atom count of the system")
    meta["n_atoms"] = check_int(meta["n_atoms"], "n_atoms", minimum=1, source=f"{source}:{CV_MARKER}")
    d_key = next((k for k in _D_KEYS if k in meta), None)
    if d_key is None:
        raise GMVAEInputError(f"{source}: '{CV_MARKER}' has no 'D', expected the number of CV components")
    meta["D"] = check_int(meta[d_key], d_key, minimum=1, source=f"{source}:{CV_MARKER}")
    names = meta.get("cv_names")
    if names is not None and (not isinstance(names, list) or len(names) != meta["D"]):
        raise GMVAEInputError(f"{source}: '{CV_MARKER}' field 'cv_names' is {names!r}, expected {meta['D']} names")
    # per-component periodicity lives in 'cv_periodic'; 'periodic' is the feature module's PBC
    # flag in exported files (a bool) and, in files written before, the per-component list
    per = meta.get("cv_periodic", meta.get("periodic") if isinstance(meta.get("periodic"), list) else None)
    if per is None:
        periodic = (None,) * meta["D"]
    else:
        if not isinstance(per, list) or len(per) != meta["D"]:
            raise GMVAEInputError(f"{source}: '{CV_MARKER}' field 'periodic' is {per!r}, expected {meta['D']} entries (null or [min, max])")
        out = []
        for i, p in enumerate(per):
            if p is None or p is False:
                out.append(None)
                continue
            try:
                lo, hi = float(p[0]), float(p[1])
            except (TypeError, ValueError, IndexError):
                raise GMVAEInputError(f"{source}: '{CV_MARKER}' field 'periodic[{i}]' is {p!r}, expected null or [min, max]") from None
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise GMVAEInputError(f"{source}: '{CV_MARKER}' field 'periodic[{i}]' is {p!r}, expected min < max")
            out.append((lo, hi))
        periodic = tuple(out)
    return periodic


def load_cv(path: str | os.PathLike) -> CVModel:
    """Load a CV file, or the ``model_openmm.pt`` of an EXP directory, and check its marker.

    Parameters
    ----------
    path : path
        A TorchScript file with a ``gmvae_cv.json`` marker, or a directory containing
        ``model_openmm.pt`` (and optionally ``cv.json``, read into ``meta["cv_json"]``).

    Returns
    -------
    CVModel

    Raises
    ------
    GMVAEInputError
        For a missing file, a file that is not TorchScript, a missing or malformed marker.
    """
    p = Path(path)
    cv_json = None
    if p.is_dir():
        if (p / "cv.json").is_file():
            try:
                cv_json = json.loads((p / "cv.json").read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise GMVAEInputError(f"{p / 'cv.json'}: not valid JSON ({exc})") from None
        p = p / OPENMM_CV_FILE
        if not p.is_file():
            raise GMVAEInputError(f"{p}: file not found; expected the OpenMM CV of the EXP directory (gmvae-cv export)")
    elif not p.is_file():
        raise GMVAEInputError(f"{p}: file not found (expected a CV file model_openmm.pt or an EXP directory)")
    module, meta, data = _read_marker(p)
    periodic = _check_meta(meta, p)
    if cv_json is not None:
        # an EXP directory: the file must be the one cv.json records, and the CV range seen in
        # training (cv.json 'cv_statistics') sets the default grid
        want = ((cv_json.get("files") or {}).get(OPENMM_CV_FILE) or {}).get("sha256")
        have = hashlib.sha256(data).hexdigest()
        if want is not None and want != have:
            raise GMVAEInputError(f"{p}: sha256 {have[:12]}... differs from cv.json 'files.{OPENMM_CV_FILE}.sha256' {want[:12]}...: the file was altered")
        meta["cv_json"] = cv_json
        stats = cv_json.get("cv_statistics") or {}
        if "cv_range" not in meta and "min" in stats and "max" in stats:
            meta["cv_range"] = [[float(a), float(b)] for a, b in zip(stats["min"], stats["max"])]
    module.eval()
    return CVModel(module=module, meta=meta, path=p, sha256=hashlib.sha256(data).hexdigest(), _periodic=periodic)


def save_cv_module(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    n_atoms: int,
    n_cvs: int,
    periodic: Optional[Sequence[Optional[Sequence[float]]]] = None,
    cv_names: Optional[Sequence[str]] = None,
    feature_spec: Optional[FeatureSpec] = None,
    extra: Optional[dict] = None,
) -> Path:
    """Script ``module`` (if needed) and save it with a ``gmvae_cv.json`` marker, atomically.

    Parameters
    ----------
    module : torch.nn.Module or ScriptModule
        ``forward(positions (n_atoms, 3) nm, box=None) -> (n_cvs,)``.
    path : path
        Output file (``.pt``).
    n_atoms, n_cvs : int
        Atom count of the system and number of CV components.
    periodic : sequence, optional
        Per component ``None`` or ``(min, max)``.
    cv_names : sequence of str, optional
    feature_spec : FeatureSpec, optional
        Recorded (with its atom indices and feature names) in the marker.
    extra : dict, optional
        More marker keys (e.g. ``K``, ``cv_range``).

    Returns
    -------
    Path
    """
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    meta: dict[str, Any] = {"format": CV_FORMAT, "format_version": 1, "n_atoms": int(n_atoms), "D": int(n_cvs)}
    meta["units"] = {"positions": "nm", "box": "nm (rows are box vectors)"}
    if periodic is not None:
        meta["cv_periodic"] = [None if p is None else [float(p[0]), float(p[1])] for p in periodic]
    if cv_names is not None:
        meta["cv_names"] = list(cv_names)
    if feature_spec is not None:
        meta["n_features"] = feature_spec.n_features
        meta["feature_names"] = feature_spec.names
        meta["atom_indices"] = feature_spec.atoms_used.tolist()
        meta["feature_spec"] = feature_spec.to_dict()
    meta.update(extra or {})
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={CV_MARKER: json.dumps(meta)})
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out


class _FeatureCV(torch.nn.Module):
    """The features themselves as the CV (e.g. phi, psi from a raw-torsion spec)."""

    def __init__(self, features: FeatureModule) -> None:
        super().__init__()
        self.features = features

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.features(positions, box)


class _RandomGMVAEHead(torch.nn.Module):
    """The encoder mean of a GMVAE, ``sum_k softmax(q(y|x))_k mu_z(x, k)``, with random weights.

    Same anatomy as :meth:`gmvae_cv.learn.model.GMVAECV.forward_cv` with one hidden layer in q(y|x)
    and q(z|x, y): standardisation, two MLPs on the features, a per-component embedding added
    before the ReLU of q(z|x, y), softmax mixing.
    """

    def __init__(self, n_features: int, n_cvs: int, n_clusters: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()

        def w(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64) / math.sqrt(shape[-1])

        self.register_buffer("shift", torch.rand(n_features, generator=generator, dtype=torch.float64) * 0.4 + 0.2)
        self.register_buffer("scale", torch.full((n_features,), 5.0, dtype=torch.float64))
        self.register_buffer("qy_w1", w(hidden, n_features))
        self.register_buffer("qy_b1", w(hidden, 1).squeeze(-1))
        self.register_buffer("qy_w2", w(n_clusters, hidden))
        self.register_buffer("qy_b2", w(n_clusters, 1).squeeze(-1))
        self.register_buffer("qz_w1", w(hidden, n_features))
        self.register_buffer("qz_embed", w(n_clusters, hidden))
        self.register_buffer("qz_wm", w(n_cvs, hidden))
        self.register_buffer("qz_bm", w(n_cvs, 1).squeeze(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.shift) * self.scale
        logits = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(h, self.qy_w1, self.qy_b1)), self.qy_w2, self.qy_b2)
        q = torch.softmax(logits, dim=-1)
        a = torch.relu(torch.nn.functional.linear(h, self.qz_w1).unsqueeze(-2) + self.qz_embed)
        z = torch.nn.functional.linear(a, self.qz_wm, self.qz_bm)
        return (q.unsqueeze(-1) * z).sum(-2)


class _FeatureHeadCV(torch.nn.Module):
    def __init__(self, features: FeatureModule, head: torch.nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.features(positions, box).to(torch.float64)
        return self.head(x).to(positions.dtype)


def feature_cv(spec: FeatureSpec, path: Optional[str | os.PathLike] = None) -> CVModel:
    """The features of ``spec`` as the CV (``D = n_features``), e.g. phi, psi of a raw-torsion spec.

    Raw torsion features are marked periodic on ``[-pi, pi]``; other features are not periodic.

    Parameters
    ----------
    spec : FeatureSpec
    path : path, optional
        Save the CV file there (and load it back, so the returned module is the saved one).

    Returns
    -------
    CVModel

    Examples
    --------
    >>> from gmvae_cv.features import alanine_backbone_torsions
    >>> cv = feature_cv(alanine_backbone_torsions(transform="raw"))
    >>> cv.names, cv.periodic[0][1] == math.pi
    (['phi', 'psi'], True)
    """
    periodic = [(-math.pi, math.pi) if (f.kind == "torsion" and f.transform == "raw") else None for f in spec.features]
    module = torch.jit.script(_FeatureCV(spec.torch_module()))
    return _finish(module, spec, spec.n_features, periodic, spec.names, path, {})


def random_gmvae_cv(
    spec: FeatureSpec,
    *,
    n_cvs: int = 2,
    n_clusters: int = 4,
    hidden: int = 32,
    seed: int = 0,
    path: Optional[str | os.PathLike] = None,
) -> CVModel:
    """A GMVAE-shaped CV with random weights, for tests and benchmarks without a trained model.

    Features -> standardisation -> q(y|x) (``hidden`` ReLU units, ``n_clusters`` logits) and
    q(z|x, y) (``hidden`` ReLU units, ``n_cvs`` outputs per component) -> softmax-weighted mean.
    The cost per evaluation is that of a trained GMVAE of the same widths.

    Parameters
    ----------
    spec : FeatureSpec
    n_cvs, n_clusters, hidden : int
    seed : int
        Seeds the weights (a local ``torch.Generator``; no global state).
    path : path, optional
        Save the CV file there.

    Returns
    -------
    CVModel
    """
    gen = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    head = _RandomGMVAEHead(spec.n_features, n_cvs, n_clusters, hidden, gen)
    module = torch.jit.script(_FeatureHeadCV(spec.torch_module(), head))
    names = [f"cv.{i}" for i in range(n_cvs)]
    return _finish(module, spec, n_cvs, [None] * n_cvs, names, path, {"K": n_clusters, "random_weights": True, "seed": seed})


def _finish(module, spec, n_cvs, periodic, names, path, extra) -> CVModel:
    if path is not None:
        p = save_cv_module(module, path, n_atoms=spec.n_atoms, n_cvs=n_cvs, periodic=periodic, cv_names=names, feature_spec=spec, extra=extra)
        return load_cv(p)
    meta = {"format": CV_FORMAT, "format_version": 1, "n_atoms": spec.n_atoms, "D": n_cvs, "cv_names": list(names),
            "cv_periodic": [None if p is None else list(p) for p in periodic], "feature_names": spec.names,
            "atom_indices": spec.atoms_used.tolist(), "feature_spec": spec.to_dict(), **extra}
    buf = io.BytesIO()
    torch.jit.save(module, buf, _extra_files={CV_MARKER: json.dumps(meta)})
    return CVModel(module=module.eval(), meta=meta, path=None, sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
                   _periodic=tuple(None if p is None else (float(p[0]), float(p[1])) for p in periodic))
