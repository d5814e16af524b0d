"""The torch rendering of a spec: a TorchScript-able module from positions (nm) to features."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, List, Optional

import torch

from .numpy_core import _SHIFTS
from .types import _CONTACT_LIMIT_WINDOW, _GROUP_ORDER, _TORSION_TRANSFORMS

if TYPE_CHECKING:  # the spec builds this module (FeatureSpec.torch_module); no import at run time
    from .spec import FeatureSpec

__all__ = ["FeatureModule"]


# ------------------------------------------------------------------------------------ torch
class FeatureModule(torch.nn.Module):
    """TorchScript-able evaluation of a :class:`FeatureSpec` on a positions tensor.

    Features are grouped by type and each group is evaluated in one vectorised pass; index
    buffers hold the atoms. The spec travels with the module as ``feature_spec_json`` (also in a
    scripted and saved module), the column names as ``names``.

    Parameters
    ----------
    spec : FeatureSpec
        What to compute.
    periodic : bool, optional
        Override ``spec.periodic``.

    Examples
    --------
    >>> from gmvae_cv.features import FeatureSpec, angle, distance
    >>> spec = FeatureSpec([distance(0, 1), angle(0, 1, 2)], n_atoms=3)
    >>> mod = torch.jit.script(spec.torch_module())
    >>> x = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0]], dtype=torch.float64)
    >>> mod(x)
    tensor([0.1000, 1.5708], dtype=torch.float64)
    """

    def __init__(self, spec: FeatureSpec, periodic: Optional[bool] = None) -> None:
        super().__init__()
        groups = spec._groups()
        feats = spec.features

        def atoms(kind: str, n: int) -> torch.Tensor:
            rows = [list(feats[k].atoms) for k in groups[kind]]
            return torch.tensor(rows, dtype=torch.long).reshape(-1, n)

        self.register_buffer("dist_atoms", atoms("distance", 2))
        self.register_buffer("angle_atoms", atoms("angle", 3))
        self.register_buffer("torsion_atoms", atoms("torsion", 4))
        self.register_buffer(
            "torsion_mode",
            torch.tensor([_TORSION_TRANSFORMS.index(feats[k].transform) for k in groups["torsion"]], dtype=torch.long),
        )
        self.register_buffer("contact_atoms", atoms("contact", 2))
        cs = [feats[k] for k in groups["contact"]]
        self.register_buffer("contact_r0", torch.tensor([f.r0 for f in cs], dtype=torch.float64))
        self.register_buffer("contact_n", torch.tensor([float(f.n) for f in cs], dtype=torch.float64))
        self.register_buffer("contact_m", torch.tensor([float(f.m) for f in cs], dtype=torch.float64))
        concat = [k for kind in _GROUP_ORDER for k in groups[kind]]
        order = [0] * len(concat)
        for pos, k in enumerate(concat):
            order[k] = pos
        self.register_buffer("order", torch.tensor(order, dtype=torch.long))
        self.register_buffer("shifts", torch.tensor(_SHIFTS, dtype=torch.float64))
        self.periodic: bool = spec.periodic if periodic is None else bool(periodic)
        self.n_atoms: int = spec.n_atoms
        self.n_features: int = spec.n_features
        self.n_dist: int = len(groups["distance"])
        self.n_angle: int = len(groups["angle"])
        self.n_torsion: int = len(groups["torsion"])
        self.n_contact: int = len(groups["contact"])
        self.contact_window: float = _CONTACT_LIMIT_WINDOW
        self.names: List[str] = spec.names
        spec_dict = spec.to_dict()
        spec_dict["periodic"] = self.periodic  # the flag this module uses
        self.feature_spec_json: str = json.dumps(spec_dict)

    def _min_image(self, d: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        # d: (B, P, 3); box: (B, 3, 3) with box vectors as rows, d = frac @ box
        frac = torch.bmm(d, torch.linalg.inv(box))
        d = d - torch.bmm(torch.round(frac), box)
        offdiag = box - torch.diag_embed(torch.diagonal(box, dim1=-2, dim2=-1))
        if bool((offdiag != 0).any()):
            images = torch.matmul(self.shifts.to(d.dtype), box)  # (B, 27, 3)
            cand = d.unsqueeze(2) + images.unsqueeze(1)  # (B, P, 27, 3)
            best = (cand * cand).sum(-1).argmin(dim=2)  # (B, P)
            d = torch.gather(cand, 2, best.unsqueeze(-1).unsqueeze(-1).expand(-1, -1, 1, 3)).squeeze(2)
        return d

    def _vec(self, pos: torch.Tensor, i: torch.Tensor, j: torch.Tensor, box: Optional[torch.Tensor]) -> torch.Tensor:
        d = pos.index_select(1, j) - pos.index_select(1, i)
        if box is not None:
            d = self._min_image(d, box)
        return d

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Features of ``positions``.

        Parameters
        ----------
        positions : Tensor, shape ``(n_atoms, 3)`` or ``(batch, n_atoms, 3)``
            Positions in nm, any floating dtype (the output has the same dtype and device).
        box : Tensor, optional, shape ``(3, 3)`` or ``(batch, 3, 3)``
            Box vectors in nm as rows (OpenMM's and PLUMED's layout). Used only if the module is
            periodic.

        Returns
        -------
        Tensor, shape ``(n_features,)`` or ``(batch, n_features)``
            Columns in spec order.
        """
        unbatched = positions.dim() == 2
        if unbatched:
            pos = positions.unsqueeze(0)
        else:
            pos = positions
        if pos.dim() != 3 or pos.shape[2] != 3 or pos.shape[1] != self.n_atoms:
            raise ValueError(
                "positions must have shape (n_atoms, 3) or (batch, n_atoms, 3) with n_atoms = "
                + str(self.n_atoms)
                + ", got "
                + str(list(positions.shape))
            )
        b: Optional[torch.Tensor] = None
        if self.periodic and box is not None:
            bx = box.to(dtype=pos.dtype, device=pos.device)
            if bx.dim() == 2:
                bx = bx.unsqueeze(0).expand(pos.shape[0], 3, 3)
            b = bx
        parts: List[torch.Tensor] = []
        if self.n_dist > 0:
            d = self._vec(pos, self.dist_atoms[:, 0], self.dist_atoms[:, 1], b)
            parts.append(torch.linalg.vector_norm(d, dim=-1))
        if self.n_angle > 0:
            u = self._vec(pos, self.angle_atoms[:, 1], self.angle_atoms[:, 0], b)
            v = self._vec(pos, self.angle_atoms[:, 1], self.angle_atoms[:, 2], b)
            parts.append(torch.atan2(torch.linalg.vector_norm(torch.cross(u, v, dim=-1), dim=-1), (u * v).sum(-1)))
        if self.n_torsion > 0:
            ta = self.torsion_atoms
            b1 = self._vec(pos, ta[:, 0], ta[:, 1], b)
            b2 = self._vec(pos, ta[:, 1], ta[:, 2], b)
            b3 = self._vec(pos, ta[:, 2], ta[:, 3], b)
            c1 = torch.cross(b2, b3, dim=-1)
            c2 = torch.cross(b1, b2, dim=-1)
            y = (b1 * c1).sum(-1) * torch.linalg.vector_norm(b2, dim=-1)
            x = (c1 * c2).sum(-1)
            phi = torch.atan2(y, x)
            mode = self.torsion_mode
            parts.append(torch.where(mode == 0, phi, torch.where(mode == 1, torch.sin(phi), torch.cos(phi))))
        if self.n_contact > 0:
            d = self._vec(pos, self.contact_atoms[:, 0], self.contact_atoms[:, 1], b)
            r = torch.linalg.vector_norm(d, dim=-1)
            r0 = self.contact_r0.to(pos.dtype)
            n = self.contact_n.to(pos.dtype)
            m = self.contact_m.to(pos.dtype)
            t = torch.log(r / r0)
            a = torch.abs(t)
            small = a < self.contact_window
            a_safe = torch.where(small, torch.ones_like(a), a)
            tpos = torch.where(small, torch.zeros_like(t), torch.clamp(t, min=0.0))
            q = torch.expm1(-n * a_safe) / torch.expm1(-m * a_safe) * torch.exp((n - m) * tpos)
            limit = n / m * (1.0 + 0.5 * (n - m) * t)
            parts.append(torch.where(small, limit, q))
        out = torch.cat(parts, dim=1).index_select(1, self.order)
        if unbatched:
            return out.squeeze(0)
        return out


