"""Tests of gmvae_cv.features: each rendering against an independent answer.

Independent answers used: closed-form geometry, mdtraj's compute_distances/angles/dihedrals
(periodic, triclinic), central finite differences, the real PLUMED kernel (``plumed driver``),
and the topology's bond graph.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
import torch

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.cli import main
from gmvae_cv.features import (
    SPEC_FORMAT,
    FeatureSpec,
    alanine_backbone_torsions,
    alanine_heavy_atom_distances,
    angle,
    check_length_units,
    contact,
    distance,
    features_from_selection,
    load_trajectory_features,
    phi_psi,
    torsion,
    torsion_sincos,
)
from gmvae_cv.systems import AlanineDipeptide

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")


# ------------------------------------------------------------------ fixtures and helpers
@pytest.fixture(scope="module")
def ala_run(tmp_path_factory):
    """A short real alanine dipeptide trajectory (300 steps, 30 frames) on the Reference platform."""
    out = tmp_path_factory.mktemp("ala_run")
    run = AlanineDipeptide().simulate(300, 10, out, seed=3, platform="Reference", equilibration_steps=500)
    traj = md.load(str(run.trajectory), top=str(run.topology))
    return run, traj


def _mixed_alanine_spec(periodic: bool = True) -> FeatureSpec:
    """Every feature type on alanine dipeptide (atom order of the bundled PDB)."""
    feats = [
        distance(1, 18),
        distance(5, 17),
        angle(4, 6, 8),
        angle(6, 8, 14),
        torsion(4, 6, 8, 14, name="phi"),
        *torsion_sincos(4, 6, 8, 14, name="phi"),
        *torsion_sincos(6, 8, 14, 16, name="psi"),
        torsion(6, 8, 14, 16, name="psi"),
        contact(5, 17, 0.25),  # the C7eq hydrogen bond O(ACE)...H(NME)
        contact(1, 18, 0.4, 6, 10),
    ]
    return FeatureSpec(feats, 22, periodic=periodic)


def _random_box_system(rng, n_atoms=16, n_frames=6, triclinic=True):
    """Random positions in (and partly outside) a box, with a reduced triclinic or orthorhombic box."""
    if triclinic:
        box = np.array([[2.0, 0.0, 0.0], [0.6, 1.9, 0.0], [-0.5, 0.7, 1.8]])
    else:
        box = np.diag([2.0, 1.7, 2.3])
    frac = rng.uniform(-0.2, 1.2, (n_frames, n_atoms, 3))
    xyz = frac @ box
    boxes = np.repeat(box[None], n_frames, axis=0)
    return xyz, boxes


def _random_spec(rng, n_atoms=16, periodic=True) -> FeatureSpec:
    feats = []
    for t in range(8):
        i, j = rng.choice(n_atoms, 2, replace=False)
        feats.append(distance(int(i), int(j), name=f"d{t}"))
    for t in range(5):
        i, j, k = rng.choice(n_atoms, 3, replace=False)
        feats.append(angle(int(i), int(j), int(k), name=f"a{t}"))
    for t in range(5):
        q = [int(a) for a in rng.choice(n_atoms, 4, replace=False)]
        feats.append(torsion(*q, name=f"t{t}"))
        feats.extend(torsion_sincos(*q, name=f"t{t}"))
    for t in range(4):
        i, j = rng.choice(n_atoms, 2, replace=False)
        n, m = int(rng.integers(4, 8)), int(rng.integers(8, 14))
        feats.append(contact(int(i), int(j), float(rng.uniform(0.3, 1.2)), n, m, name=f"c{t}"))
    return FeatureSpec(feats, n_atoms, periodic=periodic)


def _md_traj(xyz, boxes=None):
    top = md.Topology()
    res = top.add_residue("X", top.add_chain())
    for _ in range(xyz.shape[1]):
        top.add_atom("C", md.element.carbon, res)
    traj = md.Trajectory(xyz.astype(np.float32), top)
    if boxes is not None:
        traj.unitcell_vectors = boxes.astype(np.float32)
    return traj


def _mdtraj_reference(spec: FeatureSpec, traj: md.Trajectory, periodic: bool) -> np.ndarray:
    """The spec evaluated with mdtraj (float32 geometry) and closed-form transforms."""
    out = np.empty((traj.n_frames, spec.n_features))
    for k, f in enumerate(spec):
        idx = np.array([f.atoms])
        if f.kind == "distance":
            out[:, k] = md.compute_distances(traj, idx, periodic=periodic)[:, 0]
        elif f.kind == "angle":
            out[:, k] = md.compute_angles(traj, idx, periodic=periodic)[:, 0]
        elif f.kind == "torsion":
            phi = md.compute_dihedrals(traj, idx, periodic=periodic)[:, 0].astype(np.float64)
            out[:, k] = {"raw": phi, "sin": np.sin(phi), "cos": np.cos(phi)}[f.transform]
        elif f.kind == "contact":
            r = md.compute_distances(traj, idx, periodic=periodic)[:, 0].astype(np.float64)
            x = r / f.r0
            out[:, k] = (1 - x**f.n) / (1 - x**f.m)
    return out


def _assert_close_periodic(a, b, spec, atol):
    """Compare, treating raw torsions modulo 2 pi (float32 references may sit on the other side of pi)."""
    diff = np.abs(a - b)
    for k, f in enumerate(spec):
        if f.kind == "torsion" and f.transform == "raw":
            diff[:, k] = np.abs(np.angle(np.exp(1j * (a[:, k] - b[:, k]))))
    assert diff.max() < atol, f"max deviation {diff.max():.3g} in feature {spec.names[int(np.argmax(diff.max(0)))]}"


from plumed_tool import PLUMED, needs_plumed  # noqa: E402


def _run_plumed(workdir: Path, spec: FeatureSpec, traj_args: list[str]) -> np.ndarray:
    """Run the spec's PLUMED lines through ``plumed driver`` and return the COLVAR columns (spec order)."""
    lines, args = spec.plumed_input()
    text = "\n".join(lines) + f"\nPRINT ARG={','.join(args)} FILE=COLVAR FMT=%20.12f\n"
    (workdir / "plumed.dat").write_text(text)
    res = subprocess.run(
        [PLUMED, "driver", "--plumed", "plumed.dat", *traj_args],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    colvar = workdir / "COLVAR"
    fields = colvar.read_text().splitlines()[0].split()[2:]
    assert fields == ["time", *args]
    return np.loadtxt(colvar, comments="#", ndmin=2)[:, 1:]


def _write_xyz(path: Path, xyz: np.ndarray, boxes: np.ndarray | None) -> None:
    """xyz trajectory in nm, box (9 numbers, rows a, b, c) on the comment line, as ``plumed driver --ixyz`` reads it."""
    with open(path, "w") as fh:
        for f in range(xyz.shape[0]):
            fh.write(f"{xyz.shape[1]}\n")
            box = boxes[f].ravel() if boxes is not None else np.zeros(9)
            fh.write(" ".join(f"{v:.12f}" for v in box) + "\n")
            for p in xyz[f]:
                fh.write(f"X {p[0]:.12f} {p[1]:.12f} {p[2]:.12f}\n")


# ------------------------------------------------------------------ spec basics and JSON
def test_spec_names_atoms_and_counts():
    spec = FeatureSpec(
        [distance(5, 7), angle(1, 2, 3), *torsion_sincos(4, 6, 8, 14, name="phi"), contact(0, 9, 0.5)], n_atoms=22
    )
    assert spec.n_features == 5 == len(spec)
    assert spec.names == ["d_5_7", "a_1_2_3", "sin_phi", "cos_phi", "c_0_9"]
    assert spec.atoms_used.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]
    assert spec.n_atoms == 22
    assert spec.units == ["nm", "rad", "1", "1", "1"]
    assert torsion(0, 1, 2, 3).name == "tor_0_1_2_3"
    assert torsion(0, 1, 2, 3, transform="cos").name == "cos_tor_0_1_2_3"


def test_json_round_trip(tmp_path):
    spec = _mixed_alanine_spec(periodic=False)
    spec.atom_labels = {4: "ACE1-C", 6: "ALA2-N"}
    path = tmp_path / "spec.json"
    spec.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == SPEC_FORMAT and data["format_version"] == 1
    assert data["features"][4] == {"type": "torsion", "name": "phi", "atoms": [4, 6, 8, 14], "transform": "raw"}
    assert data["features"][-1] == {"type": "contact", "name": "c_1_18", "atoms": [1, 18], "r0": 0.4, "n": 6, "m": 10}
    back = FeatureSpec.load(path)
    assert back == spec
    assert back.names == spec.names and back.periodic is False and back.atom_labels == spec.atom_labels


def _spec_file(tmp_path, mutate):
    data = _mixed_alanine_spec().to_dict()
    mutate(data)
    path = tmp_path / "bad_spec.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["features"][2].update(type="dihedral"), ["'features[2].type'", "'dihedral'", "expected one of distance, angle, torsion, contact"]),
        (lambda d: d["features"][0].update(atoms=[1, 22]), ["'features[0].atoms'", "22", "n_atoms = 22"]),
        (lambda d: d["features"][1].pop("atoms"), ["'features[1].atoms' is missing"]),
        (lambda d: d["features"][-1].pop("r0"), ["'features[11].r0' is missing", "contact"]),
        (lambda d: d["features"][5].update(transform="tan"), ["'features[5].transform'", "'tan'", "raw, sin, cos"]),
        (lambda d: d["features"][-1].update(n=12, m=6), ["'features[11].m'", "expected an integer > n"]),
        (lambda d: d["features"][0].update(atoms=[3, 3]), ["'features[0].atoms'", "distinct"]),
        (lambda d: d.update(format="something-else"), ["'format'", SPEC_FORMAT]),
        (lambda d: d.pop("n_atoms"), ["missing field 'n_atoms'"]),
        (lambda d: d["features"][3].update(name="d_1_18"), ["'features[3].name'", "unique"]),
    ],
)
def test_bad_spec_files_name_file_field_and_expectation(tmp_path, mutate, expected):
    path = _spec_file(tmp_path, mutate)
    with pytest.raises(GMVAEInputError) as info:
        FeatureSpec.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for piece in expected:
        assert piece in msg, msg


def test_bad_spec_file_not_json_and_missing(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(GMVAEInputError, match="x.json: not valid JSON"):
        FeatureSpec.load(path)
    with pytest.raises(GMVAEInputError, match="file not found"):
        FeatureSpec.load(tmp_path / "nope.json")


def test_atom_out_of_range_in_python_api():
    with pytest.raises(GMVAEInputError, match=r"'features\[1\]\.atoms' .* atom index 22, expected 0 <= index < n_atoms = 22"):
        FeatureSpec([distance(0, 1), distance(2, 22)], n_atoms=22)


# ------------------------------------------------------------------ closed-form values
def test_closed_form_values_numpy_and_torch():
    # atoms: 0 at origin, 1 on x, 2 on y: right angle at 0; torsion 3-0-1-4 built at +60 degrees
    c60, s60 = np.cos(np.pi / 3), np.sin(np.pi / 3)
    x = np.array(
        [
            [0.0, 0.0, 0.0],
            [0.15, 0.0, 0.0],
            [0.0, 0.2, 0.0],
            [0.0, 0.1, 0.0],  # torsion i: along +y from atom 0
            [0.15, 0.1 * c60, 0.1 * s60],  # torsion l: +y rotated by +60 deg about +x (the 0->1 axis)
            [0.45, 0.0, 0.0],  # 0.3 nm from atom 1
        ]
    )
    r = 0.3
    xr = 3.0 ** (1 / 6)  # (r/r0)^6 = 3 -> s = 1/(1+3)
    spec = FeatureSpec(
        [
            distance(0, 1),
            angle(1, 0, 2),
            torsion(3, 0, 1, 4),
            torsion(3, 0, 1, 4, transform="sin"),
            contact(1, 5, 0.3, name="c_at_r0"),  # r == r0: limit n/m
            contact(1, 5, 0.3, 5, 11, name="c_at_r0_5_11"),
            contact(1, 5, r / xr, name="c_quarter"),
        ],
        n_atoms=6,
    )
    expected = np.array([0.15, np.pi / 2, np.pi / 3, s60, 6 / 12, 5 / 11, 0.25])
    np.testing.assert_allclose(spec.compute(x)[0], expected, rtol=0, atol=1e-12)
    mod = spec.torch_module()
    np.testing.assert_allclose(mod(torch.tensor(x)).numpy(), expected, rtol=0, atol=1e-12)
    # and the plain formula just away from r0 matches the stable form
    for eps in (1e-3, 1e-7, -1e-7, 1e-10):
        s = FeatureSpec([contact(0, 1, 0.3, 6, 10)], 2).compute(np.array([[0, 0, 0], [0.3 * (1 + eps), 0, 0]]))[0, 0]
        y = 1 + eps
        ref = (1 - y**6) / (1 - y**10) if abs(eps) > 1e-8 else 0.6 * (1 - 2 * eps)
        assert abs(s - ref) < 1e-9


# ------------------------------------------------------------------ numpy vs mdtraj vs torch
def test_numpy_and_torch_match_mdtraj_on_alanine_trajectory(ala_run):
    _, traj = ala_run
    spec = _mixed_alanine_spec()
    ref = _mdtraj_reference(spec, traj, periodic=False)
    a = spec.compute(traj)
    assert a.shape == (traj.n_frames, spec.n_features) and a.dtype == np.float64
    _assert_close_periodic(a, ref, spec, 1e-5)
    b = spec.torch_module()(torch.tensor(traj.xyz, dtype=torch.float64))
    assert b.dtype == torch.float64 and b.shape == a.shape
    np.testing.assert_allclose(b.numpy(), a, rtol=0, atol=1e-10)
    # float32 input -> float32 output, same numbers to float32 precision
    c = spec.torch_module()(torch.tensor(traj.xyz))
    assert c.dtype == torch.float32
    _assert_close_periodic(c.numpy().astype(np.float64), a, spec, 1e-5)


@pytest.mark.parametrize("triclinic", [False, True])
def test_periodic_random_positions_match_mdtraj_minimum_image(triclinic):
    rng = np.random.default_rng(7 + triclinic)
    xyz, boxes = _random_box_system(rng, triclinic=triclinic)
    spec = _random_spec(rng)
    traj = _md_traj(xyz, boxes)
    x32 = traj.xyz.astype(np.float64)  # compare on the float32-rounded positions mdtraj sees
    b32 = traj.unitcell_vectors.astype(np.float64)
    ref = _mdtraj_reference(spec, traj, periodic=True)
    a = spec.compute(x32, b32)
    _assert_close_periodic(a, ref, spec, 1e-5)
    b = spec.torch_module()(torch.tensor(x32), torch.tensor(b32)).numpy()
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)
    # a single (3, 3) box broadcasts over the batch
    b1 = spec.torch_module()(torch.tensor(x32), torch.tensor(b32[0])).numpy()
    np.testing.assert_allclose(b1, a, rtol=0, atol=1e-10)
    # the minimum image is really used: some distances are shorter than the direct ones
    direct = spec.compute(x32)  # no box -> no wrapping
    nd = sum(f.kind == "distance" for f in spec)
    assert np.all(a[:, :nd] <= direct[:, :nd] + 1e-12) and np.any(a[:, :nd] < direct[:, :nd] - 0.1)
    # periodic=False ignores the box, like mdtraj periodic=False
    flat = FeatureSpec(spec.features, spec.n_atoms, periodic=False)
    _assert_close_periodic(flat.compute(x32, b32), _mdtraj_reference(spec, traj, periodic=False), spec, 1e-5)
    np.testing.assert_allclose(flat.torch_module()(torch.tensor(x32), torch.tensor(b32)).numpy(), direct, atol=1e-10)


# ------------------------------------------------------------------ gradients and TorchScript
def test_autograd_matches_central_finite_differences():
    rng = np.random.default_rng(11)
    xyz, boxes = _random_box_system(rng, n_atoms=10, n_frames=1, triclinic=True)
    spec = _random_spec(rng, n_atoms=10)
    # put a contact exactly at r0 (the 0/0 limit) to check its gradient too
    d01 = np.linalg.norm(xyz[0, 1] - xyz[0, 0])
    spec = FeatureSpec([*spec.features, contact(0, 1, float(d01), name="c_at_r0")], 10)
    mod = spec.torch_module()
    x0 = torch.tensor(xyz[0], dtype=torch.float64)
    box = torch.tensor(boxes[0], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda p: mod(p, box), x0)  # (F, N, 3)
    h = 1e-6
    eye = torch.eye(x0.numel(), dtype=torch.float64).reshape(-1, *x0.shape) * h
    plus = mod(x0.unsqueeze(0) + eye, box)  # one batched call: (3N, F)
    minus = mod(x0.unsqueeze(0) - eye, box)
    fd = ((plus - minus) / (2 * h)).T.reshape(jac.shape)
    assert torch.isfinite(jac).all()
    np.testing.assert_allclose(jac.numpy(), fd.numpy(), rtol=1e-5, atol=1e-6)


def test_torchscript_module_gives_same_numbers(tmp_path, ala_run):
    _, traj = ala_run
    spec = _mixed_alanine_spec()
    eager = spec.torch_module()
    scripted = torch.jit.script(eager)
    path = tmp_path / "features.pt"
    scripted.save(str(path))
    loaded = torch.jit.load(str(path))
    x = torch.tensor(traj.xyz, dtype=torch.float64)
    ref = eager(x)
    for mod in (scripted, loaded):
        torch.testing.assert_close(mod(x), ref, rtol=0, atol=0)
        torch.testing.assert_close(mod(x[0]), ref[0], rtol=0, atol=0)  # unbatched
    # the spec travels inside the saved module
    assert FeatureSpec.from_dict(json.loads(loaded.feature_spec_json)) == spec
    assert list(loaded.names) == spec.names
    # periodic path scripted too
    rng = np.random.default_rng(3)
    xyz, boxes = _random_box_system(rng)
    rspec = _random_spec(rng)
    s = torch.jit.script(rspec.torch_module())
    torch.testing.assert_close(
        s(torch.tensor(xyz), torch.tensor(boxes)), rspec.torch_module()(torch.tensor(xyz), torch.tensor(boxes)), rtol=0, atol=0
    )
    with pytest.raises(Exception, match="n_atoms = 22"):
        loaded(torch.zeros(5, 3, dtype=torch.float64))


# ------------------------------------------------------------------ the real PLUMED
@needs_plumed
def test_plumed_matches_numpy_on_alanine_dcd(tmp_path, ala_run):
    run, traj = ala_run
    spec = _mixed_alanine_spec()
    shutil.copy(run.trajectory, tmp_path / "traj.dcd")
    got = _run_plumed(tmp_path, spec, ["--mf_dcd", "traj.dcd"])
    assert got.shape == (traj.n_frames, spec.n_features)
    _assert_close_periodic(got, spec.compute(traj), spec, 1e-5)


@needs_plumed
@pytest.mark.parametrize("box_kind", ["orthorhombic", "triclinic", "nopbc"])
def test_plumed_matches_numpy_with_periodic_boxes(tmp_path, box_kind):
    rng = np.random.default_rng({"orthorhombic": 1, "triclinic": 2, "nopbc": 3}[box_kind])
    xyz, boxes = _random_box_system(rng, triclinic=box_kind != "orthorhombic")
    xyz = np.round(xyz, 12)  # what the xyz file holds
    # one pair exactly at r0 in frame 0 (the n/m limit), along x
    xyz[0, 1] = xyz[0, 0] + np.array([0.35, 0.0, 0.0])
    spec = _random_spec(rng, periodic=box_kind != "nopbc")
    spec = FeatureSpec([*spec.features, contact(0, 1, 0.35, name="c_at_r0")], spec.n_atoms, periodic=spec.periodic)
    _write_xyz(tmp_path / "traj.xyz", xyz, boxes)
    got = _run_plumed(tmp_path, spec, ["--ixyz", "traj.xyz"])
    want = spec.compute(xyz, boxes)
    _assert_close_periodic(got, want, spec, 1e-9)
    assert abs(got[0, -1] - 0.5) < 1e-9
    if box_kind == "nopbc":
        # NOPBC really switched off the box: PLUMED equals the unwrapped numbers
        _assert_close_periodic(got, FeatureSpec(spec.features, spec.n_atoms).compute(xyz), spec, 1e-9)


def test_plumed_lines_format():
    spec = FeatureSpec(
        [distance(0, 4), *torsion_sincos(4, 6, 8, 14, name="phi"), torsion(4, 6, 8, 14), contact(5, 17, 0.25)],
        22,
        periodic=False,
    )
    lines, args = spec.plumed_input(label_prefix="g")
    body = [l for l in lines if not l.startswith("#")]
    assert args == ["g0", "g1", "g2", "g3", "g4"]
    assert body == [
        "UNITS LENGTH=nm",
        "g0: DISTANCE ATOMS=1,5 NOPBC  # d_0_4",
        "g_t0: TORSION ATOMS=5,7,9,15 NOPBC",
        "g1: CUSTOM ARG=g_t0 FUNC=sin(x) PERIODIC=NO  # sin_phi",
        "g2: CUSTOM ARG=g_t0 FUNC=cos(x) PERIODIC=NO  # cos_phi",
        "g3: TORSION ATOMS=5,7,9,15 NOPBC  # tor_4_6_8_14",
        "g4: COORDINATION GROUPA=6 GROUPB=18 SWITCH={RATIONAL R_0=0.25 NN=6 MM=12 D_0=0} NOPBC  # c_5_17",
    ]
    assert any("nm" in l and "rad" in l for l in lines if l.startswith("#"))


# ------------------------------------------------------------------ alanine specs
def _bond_separation_matrix(top) -> np.ndarray:
    """Bond counts between atoms by repeated adjacency products (independent of the BFS in features)."""
    n = top.n_atoms
    adj = np.zeros((n, n), dtype=int)
    for a, b in top.bonds:
        adj[a.index, b.index] = adj[b.index, a.index] = 1
    sep = np.full((n, n), 99)
    np.fill_diagonal(sep, 0)
    reach = np.eye(n, dtype=int)
    for k in range(1, 4):
        reach = np.minimum(reach @ adj + reach, 1)
        sep[(reach > 0) & (sep == 99)] = k
    return sep


def test_alanine_25_heavy_atom_distances_exclude_12_and_13_pairs():
    ala = AlanineDipeptide()
    top = ala.mdtraj_topology
    spec = alanine_heavy_atom_distances()
    assert spec.n_features == 25
    heavy = {a.index for a in top.atoms if a.element.symbol != "H"}
    assert len(heavy) == 10
    sep = _bond_separation_matrix(top)
    pairs = [f.atoms for f in spec]
    assert len(set(pairs)) == 25
    for i, j in pairs:
        assert i in heavy and j in heavy
        assert sep[i, j] >= 3, (i, j, sep[i, j])
    # and all heavy pairs at 3+ bonds are there: 45 - 9 bonds - 11 angles
    n_bonds = sum(sep[i, j] == 1 for i in heavy for j in heavy if i < j)
    n_angles = sum(sep[i, j] == 2 for i in heavy for j in heavy if i < j)
    assert (n_bonds, n_angles) == (9, 11)
    assert sum(sep[i, j] >= 3 for i in heavy for j in heavy if i < j) == 25
    # built on a PDB path gives the same spec
    assert alanine_heavy_atom_distances(ala.pdb_path).features == spec.features


def test_alanine_backbone_torsions_and_phi_psi_match_mdtraj(ala_run):
    _, traj = ala_run
    raw = alanine_backbone_torsions(transform="raw")
    assert raw.names == ["phi", "psi"]
    phi_idx, phi_ref = md.compute_phi(traj)
    psi_idx, psi_ref = md.compute_psi(traj)
    assert raw[0].atoms == tuple(phi_idx[0]) and raw[1].atoms == tuple(psi_idx[0])
    ref = np.column_stack([phi_ref[:, 0], psi_ref[:, 0]]).astype(np.float64)
    got = phi_psi(traj, unit="rad")
    assert np.abs(np.angle(np.exp(1j * (got - ref)))).max() < 1e-5
    np.testing.assert_allclose(phi_psi(traj, unit="deg"), np.degrees(got))
    sc = alanine_backbone_torsions().compute(traj)
    np.testing.assert_allclose(sc, np.column_stack([np.sin(got[:, 0]), np.cos(got[:, 0]), np.sin(got[:, 1]), np.cos(got[:, 1])]), atol=1e-12)
    both = alanine_backbone_torsions(transform="both")
    assert both.names == ["sin_phi", "cos_phi", "sin_psi", "cos_psi", "phi", "psi"]
    with pytest.raises(GMVAEInputError, match="'unit'"):
        phi_psi(traj, unit="degrees")


def test_features_from_selection_torsions_and_distances():
    top = AlanineDipeptide().mdtraj_topology
    spec = features_from_selection(top, "name C or name N or name CA or name CH3", "torsions", torsion_transform="raw")
    quads = [f.atoms for f in spec]
    # the backbone chain CH3-C-N-CA-C-N-CH3: torsions around C-N (omega), N-CA (phi), CA-C (psi), C-N (omega)
    assert quads == [(1, 4, 6, 8), (4, 6, 8, 14), (6, 8, 14, 16), (8, 14, 16, 18)]
    allpairs = features_from_selection(top, "not element H", exclude_bonded=0)
    assert allpairs.n_features == 45
    no12 = features_from_selection(top, "not element H", exclude_bonded=1)
    assert no12.n_features == 36
    with pytest.raises(GMVAEInputError, match="not a valid mdtraj selection"):
        features_from_selection(top, "name ==== C")
    with pytest.raises(GMVAEInputError, match="'kind'"):
        features_from_selection(top, "all", kind="angles")


def test_check_topology_detects_other_atom_order():
    ala = AlanineDipeptide()
    spec = alanine_heavy_atom_distances()
    spec.check_topology(ala.topology)  # OpenMM topology accepted
    atoms, bonds = ala.mdtraj_topology.to_dataframe()
    order = list(range(22))
    order[1], order[4] = order[4], order[1]
    swapped = md.Topology.from_dataframe(atoms.iloc[order].reset_index(drop=True), bonds)
    with pytest.raises(GMVAEInputError, match="atom 1 is 'ACE1-C', the feature spec expects 'ACE1-CH3'"):
        spec.check_topology(swapped)


# ------------------------------------------------------------------ guards and the loader
def test_angstrom_guard_on_positions():
    ala = AlanineDipeptide()
    med = check_length_units(ala.positions, ala.topology)
    assert 0.1 < med < 0.16
    with pytest.raises(GMVAEInputError, match="Angstrom read as nm"):
        check_length_units(ala.positions * 10, ala.topology, source="frames.npy")
    with pytest.raises(GMVAEInputError, match="too small"):
        check_length_units(ala.positions / 10, ala.topology)
    # a topology without bonds falls back to nearest-neighbour distances
    bare = md.Topology()
    res = bare.add_residue("X", bare.add_chain())
    for a in ala.mdtraj_topology.atoms:
        bare.add_atom(a.name, a.element, res)
    assert 0.09 < check_length_units(ala.positions, bare) < 0.16
    with pytest.raises(GMVAEInputError, match="nearest-neighbour"):
        check_length_units(ala.positions * 10, bare)


def test_load_trajectory_features_formats_and_errors(tmp_path, ala_run):
    run, traj = ala_run
    spec = alanine_heavy_atom_distances()
    traj.save_xtc(str(tmp_path / "t.xtc"))
    traj.save_trr(str(tmp_path / "t.trr"))
    mats = load_trajectory_features([run.trajectory, tmp_path / "t.xtc", tmp_path / "t.trr"], run.topology, spec)
    ref = spec.compute(traj)
    np.testing.assert_allclose(mats[0], ref, atol=1e-12)
    np.testing.assert_allclose(mats[1], ref, atol=2e-3)  # xtc stores 1e-3 nm
    np.testing.assert_allclose(mats[2], ref, atol=1e-12)
    strided = load_trajectory_features(run.trajectory, run.topology, spec, stride=3, dtype=np.float32)[0]
    assert strided.dtype == np.float32 and strided.shape == (10, 25)
    np.testing.assert_allclose(strided, ref[::3], atol=1e-6)
    for f in (run.trajectory, tmp_path / "t.trr"):  # chunks of 7 frames, stride 2: same rows
        chunked = load_trajectory_features(f, run.topology, spec, stride=2, chunk=7)[0]
        np.testing.assert_allclose(chunked, ref[::2], atol=1e-12)
    # Angstrom stored as nm: a DCD that holds 10x the coordinates
    big = md.Trajectory(traj.xyz * 10, traj.topology)
    big.save_dcd(str(tmp_path / "angstrom.dcd"))
    with pytest.raises(GMVAEInputError, match=r"angstrom\.dcd: median bond length .* Angstrom read as nm"):
        load_trajectory_features(tmp_path / "angstrom.dcd", run.topology, spec)
    # NaN positions
    bad = traj[:3]
    bad.xyz[1, 5] = np.nan
    bad.save_trr(str(tmp_path / "nan.trr"))
    with pytest.raises(GMVAEInputError, match=r"nan\.trr: positions contain NaN/inf \(first at frame 1 of those read, atom 5\)"):
        load_trajectory_features(tmp_path / "nan.trr", run.topology, spec)
    with pytest.raises(GMVAEInputError, match=r"'positions' contains 3 NaN/inf"):
        spec.compute(bad.xyz)
    with pytest.raises(GMVAEInputError, match="missing.dcd: file not found"):
        load_trajectory_features(tmp_path / "missing.dcd", run.topology, spec)
    # a topology with another atom count
    other = traj.atom_slice(range(21))
    other[0].save_pdb(str(tmp_path / "small.pdb"))
    with pytest.raises(GMVAEInputError, match="small.pdb: topology has 21 atoms, the feature spec expects n_atoms = 22"):
        load_trajectory_features(run.trajectory, tmp_path / "small.pdb", spec)
    with pytest.raises(GMVAEInputError, match="has 21 atoms, the feature spec expects n_atoms = 22"):
        spec.compute(other)


def test_cli_features_and_write_spec(tmp_path, ala_run, capsys):
    run, traj = ala_run
    spec_path = tmp_path / "ala25.json"
    assert main(["features", "--spec", "alanine-distances", "--write-spec", str(spec_path)]) == 0
    spec = FeatureSpec.load(spec_path)
    assert spec == alanine_heavy_atom_distances()
    out = tmp_path / "feats.npy"
    rc = main(["features", "--traj", str(run.trajectory), str(run.trajectory), "--top", str(run.topology),
               "--spec", str(spec_path), "--out", str(out)])
    assert rc == 0
    for i in range(2):
        mat = np.load(tmp_path / f"feats_{i}.npy")
        assert mat.dtype == np.float32
        np.testing.assert_allclose(mat, spec.compute(traj), atol=1e-6)
    rc = main(["features", "--traj", str(run.trajectory), "--top", str(run.topology), "--spec", "alanine-torsions",
               "--out", str(out), "--dtype", "float64"])
    assert rc == 0
    np.testing.assert_allclose(np.load(out), alanine_backbone_torsions().compute(traj), atol=1e-12)
    # errors are reported, not raised
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**spec.to_dict(), "features": [{"type": "dihedral", "name": "x", "atoms": [0, 1, 2, 3]}]}))
    rc = main(["features", "--traj", str(run.trajectory), "--top", str(run.topology), "--spec", str(bad), "--out", str(out)])
    assert rc == 2
    assert "bad.json: 'features[0].type' is 'dihedral'" in capsys.readouterr().err


def test_docstring_examples_run():
    import doctest

    import importlib
    import pkgutil

    import gmvae_cv.features as package

    attempted = failed = 0
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        attempted, failed = attempted + result.attempted, failed + result.failed
    assert attempted >= 10 and failed == 0
