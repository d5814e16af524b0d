"""The native bias route (gmvae_cv.metad.native): the numba kernel against the TorchScript CV run in
float64 (autograd), against finite differences of its own energy, against the compiled TorchForce
route inside OpenMM; refusals and fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmtorch")
pytest.importorskip("numba")
from openmm import unit  # noqa: E402

from gmvae_cv._core.errors import GMVAEInputError  # noqa: E402
from gmvae_cv.deploy.loaders import feature_cv, random_gmvae_cv, save_cv_module, load_cv  # noqa: E402
from gmvae_cv.deploy.torchscript import EncoderMean, PositionsCV  # noqa: E402
from gmvae_cv.features import (FeatureSpec, alanine_backbone_torsions, alanine_heavy_atom_distances, angle,  # noqa: E402
                               contact, distance, torsion)
from gmvae_cv.learn.model import GMVAECV  # noqa: E402
from gmvae_cv.metad.engine import BiasRouteWarning, WellTemperedMetadynamics  # noqa: E402
from gmvae_cv.metad.grid import BiasGrid  # noqa: E402
from gmvae_cv.metad.native import PROBE_TOLERANCE, NativeBias, NotNative, recipe_from_module  # noqa: E402
from gmvae_cv.metad.run import run_metadynamics  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _mixed_spec():
    """Every feature kind the kernel evaluates (distances, angles, raw/sin/cos torsions, contacts)."""
    feats = [distance(1, 8), distance(4, 14), angle(4, 6, 8), angle(6, 8, 14), torsion(4, 6, 8, 14, name="phi"),
             torsion(6, 8, 14, 16, transform="sin", name="s_psi"), torsion(6, 8, 14, 16, transform="cos", name="c_psi"),
             contact(4, 16, 0.35), contact(1, 18, 0.5, n=8, m=12), distance(0, 21)]
    return FeatureSpec(feats, n_atoms=22)


def _exported(spec, seed, qy=(32,), qz=(16,), k=4, d=2):
    """An exported-style CV (PositionsCV over EncoderMean) from an untrained GMVAE with standardisation."""
    torch.manual_seed(seed)
    model = GMVAECV(n_features=spec.n_features, n_cvs=d, n_clusters=k, qy_layers=qy, qz_layers=qz).eval()
    with torch.no_grad():  # a non-trivial standardisation, folded into the first layer at export
        model.norm_in.mean.copy_(torch.rand(spec.n_features) * 0.3)
        model.norm_in.range.copy_(torch.rand(spec.n_features) * 0.5 + 0.2)
    module = torch.jit.script(PositionsCV(spec.torch_module(), EncoderMean(model)))
    return module, d


def _cases(ala_spec):
    out = {}
    cv = random_gmvae_cv(ala_spec, n_cvs=2, n_clusters=4, hidden=32, seed=0)
    out["random_gmvae"] = (cv.module, 2, [0, 1], [False, False])
    tors = feature_cv(alanine_backbone_torsions(transform="raw"))
    out["torsions"] = (tors.module, 2, [0, 1], [True, True])
    mixed = _mixed_spec()
    out["mixed_features_as_cv"] = (feature_cv(mixed).module, mixed.n_features, [4, 0], [True, False])  # phi, d_1_8
    out["mixed_features_random_head"] = (random_gmvae_cv(mixed, n_cvs=3, n_clusters=3, hidden=8, seed=1).module, 3, [2, 0, 1],
                                         [False, False, False])
    out["exported_gmvae"] = (*_exported(ala_spec, 0), [0, 1], [False, False])
    out["exported_deep_gmvae"] = (*_exported(mixed, 1, qy=(16, 8), qz=(8, 6), k=3, d=3), [1], [False])
    return out


def _grid(module, d, comps, periodic, pos):
    with torch.no_grad():
        s0 = module(torch.as_tensor(pos), None).double().numpy()
    lo = [(-np.pi if p else s0[c] - 1.0) for c, p in zip(comps, periodic)]
    hi = [(np.pi if p else s0[c] + 1.0) for c, p in zip(comps, periodic)]
    g = BiasGrid(lo, hi, [30 + 7 * a for a in range(len(comps))], periodic)
    rng = np.random.default_rng(3)
    for _ in range(5):
        g.add_hill(s0[comps] + rng.normal(0, 0.2, size=len(comps)) * (g.upper - g.lower) / 4, (g.upper - g.lower) / 6, 1.0,
                   "gaussian")
    return g


@pytest.mark.parametrize("case", ["random_gmvae", "torsions", "mixed_features_as_cv", "mixed_features_random_head",
                                  "exported_gmvae", "exported_deep_gmvae"])
def test_kernel_matches_torchscript_in_float64_and_finite_differences(ala, case):
    module, d, comps, periodic = _cases(alanine_heavy_atom_distances())[case]
    pos = np.asarray(ala.positions, dtype=np.float64)
    g = _grid(module, d, comps, periodic, pos)
    table = np.ascontiguousarray(g.force_table())
    nb = NativeBias(recipe_from_module(module, d), comps, g, table)
    report = nb.check(module, pos, n_probes=6, seed=2)  # raises above 1e-9
    assert report["native_vs_torchscript_float64_max_rel_error"] < 1e-11
    # finite differences of the kernel's own energy, at a perturbed configuration with non-zero forces
    p = pos + 0.003 * np.random.default_rng(5).standard_normal(pos.shape)
    e0, f = nb.energy_forces(p)
    f = f.copy()
    assert abs(e0) > 1e-3 and np.abs(f).max() > 1e-2
    h = 1e-5
    fd = np.zeros_like(p)
    for i in np.unique(np.concatenate([nb.recipe.dist.ravel(), nb.recipe.angle.ravel(), nb.recipe.torsion.ravel(),
                                       nb.recipe.contact.ravel()])):
        for k in range(3):
            q = p.copy()
            q[i, k] += h
            ep, _ = nb.energy_forces(q)
            q[i, k] -= 2 * h
            em, _ = nb.energy_forces(q)
            fd[i, k] = -(ep - em) / (2 * h)
    assert np.abs(fd - f).max() < 1e-5 * max(1.0, np.abs(f).max())
    # the float32 network the exported TorchScript file runs differs by float32 round-off only
    with torch.no_grad():
        s32 = module(torch.as_tensor(pos), None).double().numpy()
    s64 = nb.cv_values(pos)
    assert np.abs(s64 - s32).max() < 1e-4 * max(1.0, np.abs(s64).max())


def test_a_network_the_kernel_misreads_is_refused_with_the_largest_difference(ala):
    cv = random_gmvae_cv(alanine_heavy_atom_distances(), n_cvs=2, n_clusters=4, hidden=32, seed=0)
    pos = np.asarray(ala.positions)
    g = _grid(cv.module, 2, [0, 1], [False, False], pos)
    recipe = recipe_from_module(cv.module, 2)
    recipe.hb[1] += 1e-7  # a slightly different head: the CV moves by 1e-7
    nb = NativeBias(recipe, [0, 1], g, np.ascontiguousarray(g.force_table()))
    with pytest.raises(GMVAEInputError, match=r"differs from the TorchScript CV \(run in float64\) by [0-9.e-]+ \(relative\)"):
        nb.check(cv.module, pos)
    assert nb.info["native_vs_torchscript_float64_max_rel_error"] > PROBE_TOLERANCE


class _Sigmoid(torch.nn.Module):
    """A CV this package did not build (a sigmoid of two features): the native route cannot read it."""

    def __init__(self, spec):
        super().__init__()
        self.features = spec.torch_module()

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(positions, box)
        return torch.sigmoid(f[:2] * 3.0)


def test_unsupported_module_falls_back_to_the_compiled_route_with_a_warning(ala, tmp_path):
    spec = alanine_heavy_atom_distances()
    path = save_cv_module(_Sigmoid(spec), tmp_path / "sigmoid.pt", n_atoms=22, n_cvs=2, feature_spec=spec)
    cv = load_cv(path)
    with pytest.raises(NotNative, match="_Sigmoid"):
        recipe_from_module(cv.module, 2)
    s0 = cv(ala.positions)
    meta = WellTemperedMetadynamics(cv, temperature=300, height=1.0, sigma=[0.05, 0.05], bias_factor=5, pace=10,
                                    grid_min=s0 - 0.5, grid_max=s0 + 0.5, grid_bin=[20, 20], route="native",
                                    walls=False)  # the walls: test_bias.py
    with pytest.warns(BiasRouteWarning, match=r"native bias route does not apply \(the CV module is a _Sigmoid.*route='compiled'"):
        meta.add_force(ala.create_system(), ala.positions)
    info = meta.force_info
    assert info["route"] == "compiled" and info["route_requested"] == "native"
    assert "_Sigmoid" in info["native_route_not_used"]


def test_native_force_in_openmm_equals_the_compiled_torchforce_and_follows_depositions(ala, tmp_path):
    """Same CV, same hills: the PythonForce and the compiled TorchForce give the same energy and
    forces on the Reference platform, before and after depositions (the kernel reads the table the
    engine rewrites)."""
    cv = random_gmvae_cv(alanine_heavy_atom_distances(), n_cvs=2, n_clusters=4, hidden=32, seed=0)
    s0 = cv(ala.positions)
    out = {}
    for route in ("native", "compiled"):
        meta = WellTemperedMetadynamics(cv, temperature=300, height=1.2, sigma=[0.1, 0.1], bias_factor=10, pace=10,
                                        grid_min=s0 - 3, grid_max=s0 + 3, grid_bin=[60, 60], route=route,
                                        table_path=tmp_path / f"{route}.f64", walls=False)  # the walls: test_bias.py
        system = ala.create_system()
        with warnings.catch_warnings():
            warnings.simplefilter("error", BiasRouteWarning)
            meta.add_force(system, ala.positions)
        assert meta.force_info["route"] == route
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ala.positions)
        meta.sync([ctx])
        group = meta._force_groups[id(system)]
        rows = []
        for k in range(3):
            meta.deposit([s0 + 0.05 * k], 10 * (k + 1), 0.01 * (k + 1))
            meta.sync([ctx])
            st = ctx.getState(getEnergy=True, getForces=True, groups={group})
            rows.append((st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                         st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)))
        out[route] = rows
    for (e_n, f_n), (e_c, f_c) in zip(out["native"], out["compiled"]):
        assert e_n > 0.1
        assert abs(e_n - e_c) < 1e-9 * max(1.0, abs(e_c))
        assert np.abs(f_n - f_c).max() < 1e-8 * max(1.0, np.abs(f_c).max())
    assert out["native"][2][0] > out["native"][0][0]  # the hills reached the force


# ------------------------------------------------------------------------------------------ restart
_RUN = dict(sigma=[0.35, 0.35], height=1.2, bias_factor=6.0, grid_bin=[200, 200], pace=50, colvar_stride=10, traj_stride=50,
            checkpoint_interval=200, platform="Reference", seed=4, route="native")
_CONTINUE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from gmvae_cv.deploy.loaders import load_cv
    from gmvae_cv.metad.run import run_metadynamics
    from gmvae_cv.systems import AlanineDipeptide
    ala = AlanineDipeptide()
    res = run_metadynamics(load_cv({cv!r}), {out!r}, system=ala.create_system(), topology=ala.topology,
                           positions=ala.positions, n_steps={n_steps}, **{kw!r})
    print("continued from", res.resumed_from)
    """
)


def test_native_run_continued_from_its_checkpoint_in_a_new_process_equals_the_uninterrupted_run(ala, tmp_path):
    """A native run continued from its checkpoint by a new process equals, row for row, the same run
    done at once (Reference platform). The new process's first force call follows ``loadCheckpoint``
    alone, before anything has passed a sequence through OpenMM's wrapper: OpenMM's PythonForce then
    used the wrapper's NumPy C API unloaded, a segfault in ``ComputationWrapper::compute``, until
    :meth:`NativeBias.force` loaded it (this process has loaded it long ago, hence the subprocess)."""
    cv = feature_cv(alanine_backbone_torsions(transform="raw"), path=tmp_path / "torsions.pt")
    n_steps = 400
    ref, run = tmp_path / "reference", tmp_path / "continued"
    kw = dict(topology=ala.topology, positions=ala.positions, **_RUN)
    run_metadynamics(cv, ref, system=ala.create_system(), n_steps=n_steps, **kw)
    run_metadynamics(cv, run, system=ala.create_system(), n_steps=n_steps // 2, **kw)
    script = tmp_path / "continue.py"
    script.write_text(_CONTINUE.format(root=str(ROOT), cv=str(cv.path), out=str(run), n_steps=n_steps, kw=_RUN))
    done = subprocess.run([sys.executable, "-X", "faulthandler", str(script)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-3000:]}"
    assert "continued from 200" in done.stdout
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["force"]["route"] == "native" and info["resumed_from_step"] == 200
    for name in ("HILLS", "COLVAR", "bias_grid.dat", "fes.dat"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
    mdtraj = pytest.importorskip("mdtraj")
    top = mdtraj.Topology.from_openmm(ala.topology)
    a, b = (mdtraj.load_dcd(str(d / "traj.dcd"), top=top) for d in (run, ref))
    assert a.n_frames == b.n_frames == n_steps // 50 and np.array_equal(a.xyz, b.xyz)
