"""Tests of gmvae_cv.deploy.torchscript: the exported modules equal GMVAECV for any widths, survive
PLUMED's and OpenMM-Torch's loading (freeze, optimize_for_inference, autograd), and carry
their marker."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gmvae_cv import GMVAEInputError
from gmvae_cv.features import alanine_backbone_torsions, alanine_heavy_atom_distances
from gmvae_cv.learn.model import GMVAECV
from gmvae_cv.systems import AlanineDipeptide
from gmvae_cv.deploy.torchscript import (
    ClusterProbabilities,
    CVComponent,
    EncoderMean,
    PositionsCV,
    load_scripted,
    read_marker,
    save_scripted,
)

ARCHS = [
    ([32], [16], 2, 4),  # the defaults (reference code widths)
    ([32, 8], [16], 1, 3),
    ([32], [16, 8], 3, 5),
    ([24, 12, 6], [16, 8, 4], 2, 2),
]


def _model(n: int, qy, qz, d: int, k: int, seed: int = 0, norm: bool = True) -> GMVAECV:
    torch.manual_seed(seed)
    m = GMVAECV(n, d, k, qy_layers=qy, qz_layers=qz, options=None if norm else {"norm_in": None}).eval()
    if norm:
        g = torch.Generator().manual_seed(seed)
        m.norm_in.set_custom(torch.rand(n, generator=g) * 0.3 + 0.2, torch.rand(n, generator=g) * 0.05 + 0.02)
    return m


def _positions(n_frames: int = 4) -> np.ndarray:
    base = AlanineDipeptide().positions
    return base[None] + 0.01 * np.random.default_rng(1).standard_normal((n_frames, *base.shape))


@pytest.mark.parametrize("qy,qz,d,k", ARCHS)
@pytest.mark.parametrize("norm", [True, False])
def test_modules_equal_the_model_under_plumed_pattern(qy, qz, d, k, norm):
    m = _model(25, qy, qz, d, k, norm=norm)
    m64 = copy.deepcopy(m).double()
    x = torch.tensor(alanine_heavy_atom_distances().compute(_positions(6)), dtype=torch.float32)
    for module, ref_fn in ((EncoderMean(m), m64.forward_cv), (ClusterProbabilities(m), m64.cluster_probabilities)):
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(module.eval())))
        xin = x.clone().requires_grad_(True)
        out = frozen(xin)
        x64 = x.double().requires_grad_(True)
        ref = ref_fn(x64)
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert (out.double() - ref).abs().max() < 2e-5 * max(1.0, ref.abs().max().item())
        for j in range(out.shape[1]):
            g = torch.autograd.grad(out[:, j].sum(), xin, retain_graph=True)[0].double()
            gr = torch.autograd.grad(ref[:, j].sum(), x64, retain_graph=True)[0]
            assert (g - gr).abs().max() < 5e-5 * max(1.0, gr.abs().max().item())


@pytest.mark.parametrize("qy,qz,d,k", ARCHS)
@pytest.mark.parametrize("spec_name", ["distances", "torsions"])
def test_positions_cv_survives_freeze_as_in_openmm_torch(qy, qz, d, k, spec_name):
    """OpenMM-Torch freezes the module; the profiling executor then optimises the graph on the
    first calls (a graph ending in addmm(mul(softmax)) failed there, see EncoderMean)."""
    spec = alanine_heavy_atom_distances() if spec_name == "distances" else alanine_backbone_torsions()
    m = _model(spec.n_features, qy, qz, d, k)
    m64 = copy.deepcopy(m).double()
    feat = spec.torch_module()
    scripted = torch.jit.script(CVComponent(PositionsCV(spec.torch_module(), EncoderMean(m)), d - 1)).eval()
    frozen = torch.jit.freeze(scripted)
    for pos in _positions(4):
        p = torch.tensor(pos, requires_grad=True)
        e = frozen(p)
        assert e.dtype == torch.float64 and e.dim() == 0
        (g,) = torch.autograd.grad(e, p)
        p2 = torch.tensor(pos, requires_grad=True)
        ref = m64.forward_cv(feat(p2)[None])[0, d - 1]
        (gr,) = torch.autograd.grad(ref, p2)
        assert abs(float(e) - float(ref)) < 2e-5 * max(1.0, abs(float(ref)))
        assert (g - gr).abs().max() < 5e-5 * max(1.0, gr.abs().max().item())


def test_marker_round_trip_and_errors(tmp_path):
    m = _model(25, [32], [16], 2, 4)
    save_scripted(EncoderMean(m), tmp_path / "a.ptc", {"kind": "plumed", "n_features": 25})
    module, marker = load_scripted(tmp_path / "a.ptc", kind="plumed")
    assert marker["format"] == "gmvae-cv/torchscript" and marker["n_features"] == 25
    assert read_marker(tmp_path / "a.ptc") == marker
    with pytest.raises(GMVAEInputError, match="marker 'kind' is 'plumed', expected 'openmm'"):
        load_scripted(tmp_path / "a.ptc", kind="openmm")
    with pytest.raises(GMVAEInputError, match="file not found"):
        load_scripted(tmp_path / "missing.ptc")
    (tmp_path / "junk.ptc").write_bytes(b"not a model")
    with pytest.raises(GMVAEInputError, match="cannot be read as a TorchScript file"):
        load_scripted(tmp_path / "junk.ptc")
    # the same module saved twice gives the same bytes (the reference export relies on it)
    save_scripted(EncoderMean(m), tmp_path / "b.ptc", {"kind": "plumed", "n_features": 25})
    assert (tmp_path / "a.ptc").read_bytes() == (tmp_path / "b.ptc").read_bytes()
