"""The backbone-torsions preset against mdtraj's compute_phi/compute_psi, on AAQAA3 and the dipeptide."""

from __future__ import annotations

import mdtraj as md
import numpy as np
import pytest

from gmvae_cv import GMVAEInputError
from gmvae_cv.features import FeatureSpec, alanine_backbone_torsions
from gmvae_cv.features.peptide import backbone_torsions, feature_residues
from gmvae_cv.systems import AlanineDipeptide
from gmvae_cv.systems._peptide_build import build_capped_peptide
from gmvae_cv.systems.aaqaa3 import AAQAA3, AAQAA3_SEQUENCE


@pytest.fixture(scope="module")
def aaqaa3_frames():
    """Three unminimised AAQAA3 conformations: helix, extended, random torsions."""
    from openmm import app

    ff = app.ForceField(*AAQAA3.forcefield_files)
    rng = np.random.default_rng(0)
    xyz, top = [], None
    for phi, psi in ((np.full(15, -57.0), np.full(15, -47.0)), (np.full(15, -150.0), np.full(15, 150.0)),
                     (rng.uniform(-180, 180, 15), rng.uniform(-180, 180, 15))):
        top, pos = build_capped_peptide(AAQAA3_SEQUENCE, phi, psi, ff)
        xyz.append(pos)
    return md.Trajectory(np.array(xyz, dtype=np.float32), md.Topology.from_openmm(top))


def test_aaqaa3_has_60_features_that_match_mdtraj(aaqaa3_frames):
    traj = aaqaa3_frames
    spec = backbone_torsions(traj.topology)
    assert spec.n_features == 60 and spec.units == ["1"] * 60
    phi_idx, phi = md.compute_phi(traj)
    psi_idx, psi = md.compute_psi(traj)
    assert len(phi_idx) == len(psi_idx) == 15  # mdtraj counts the same 15 + 15 torsions
    x = spec.compute(traj)
    # columns per residue: sin phi, cos phi, sin psi, cos psi
    np.testing.assert_array_equal(np.array([f.atoms for f in spec.features[0::4]]), phi_idx)
    np.testing.assert_array_equal(np.array([f.atoms for f in spec.features[2::4]]), psi_idx)
    np.testing.assert_allclose(x[:, 0::4], np.sin(phi), atol=2e-6)
    np.testing.assert_allclose(x[:, 1::4], np.cos(phi), atol=2e-6)
    np.testing.assert_allclose(x[:, 2::4], np.sin(psi), atol=2e-6)
    np.testing.assert_allclose(x[:, 3::4], np.cos(psi), atol=2e-6)
    # the helix frame has phi, psi = -57, -47 deg (as built)
    np.testing.assert_allclose(np.degrees(np.arctan2(x[0, 0::4], x[0, 1::4])), -57.0, atol=1e-3)
    # names carry residue names and numbers, N to C (ACE is residue 1)
    names = [f"ALA{i}" if c == "ALA" else f"GLN{i}" for i, c in enumerate(AAQAA3_SEQUENCE, start=2)]
    assert spec.names[:4] == ["sin_phi_ALA2", "cos_phi_ALA2", "sin_psi_ALA2", "cos_psi_ALA2"]
    assert spec.names[8] == "sin_phi_GLN4" and spec.names[-1] == "cos_psi_ALA16"
    assert feature_residues(spec) == [n for n in names for _ in range(4)]
    # raw angles in rad, and the spec survives its JSON form with the labels that check the topology
    raw = backbone_torsions(traj.topology, transform="raw")
    np.testing.assert_allclose(raw.compute(traj)[:, 0::2], phi, atol=2e-6)
    again = FeatureSpec.from_dict(spec.to_dict())
    assert again == spec
    again.check_topology(traj.topology)


def test_the_torch_rendering_agrees(aaqaa3_frames):
    import torch

    spec = backbone_torsions(aaqaa3_frames.topology)
    mod = spec.torch_module()
    y = mod(torch.as_tensor(aaqaa3_frames.xyz[1], dtype=torch.float64)).detach().numpy()
    np.testing.assert_allclose(y, spec.compute(aaqaa3_frames)[1], atol=1e-6)


def test_dipeptide_is_the_alanine_preset():
    top = AlanineDipeptide().mdtraj_topology
    spec = backbone_torsions(top)
    ref = alanine_backbone_torsions(top)
    assert [f.atoms for f in spec] == [f.atoms for f in ref]
    assert [f.transform for f in spec] == [f.transform for f in ref]


def test_uncapped_chain_loses_the_end_torsions(aaqaa3_frames):
    # drop the caps: the first phi and the last psi no longer exist and are left out, and said so
    keep = [a.index for a in aaqaa3_frames.topology.atoms if a.residue.name not in ("ACE", "NME")]
    sub = aaqaa3_frames.atom_slice(keep)
    spec = backbone_torsions(sub.topology)
    assert spec.n_features == 56
    assert "sin_phi_ALA2" not in spec.names and "sin_psi_ALA16" not in spec.names
    assert "absent at the chain ends: phi_ALA2, psi_ALA16" in spec.description
    assert spec.names[:2] == ["sin_psi_ALA2", "cos_psi_ALA2"]
    np.testing.assert_allclose(spec.compute(sub)[:, 0], np.sin(md.compute_psi(sub)[1][:, 0]), atol=2e-6)
    assert len(md.compute_phi(sub)[0]) == 14 and len(md.compute_psi(sub)[0]) == 14  # mdtraj agrees


def test_a_torsion_that_does_not_exist_names_the_residue(aaqaa3_frames):
    top = aaqaa3_frames.topology
    with pytest.raises(GMVAEInputError, match="residue ACE1 is a cap without CA: its phi"):
        backbone_torsions(top, residues=[1, 2])
    keep = [a.index for a in top.atoms if a.residue.name not in ("ACE",)]
    with pytest.raises(GMVAEInputError, match="residue ALA2 has no phi: no C atom in a preceding residue"):
        backbone_torsions(aaqaa3_frames.atom_slice(keep).topology, residues=[2, 3])
    # a residue whose CA is missing (a broken structure) is named, not skipped
    no_ca = [a.index for a in top.atoms if not (a.residue.resSeq == 7 and a.name == "CA")]
    with pytest.raises(GMVAEInputError, match="residue ALA7 has no CA"):
        backbone_torsions(aaqaa3_frames.atom_slice(no_ca).topology)
    with pytest.raises(GMVAEInputError, match="'residues' contains 40: no residue"):
        backbone_torsions(top, residues=[40])
    with pytest.raises(GMVAEInputError, match="'transform' is 'cos'"):
        backbone_torsions(top, transform="cos")
    sel = backbone_torsions(top, residues=[4, 9])
    assert sel.names == ["sin_phi_GLN4", "cos_phi_GLN4", "sin_psi_GLN4", "cos_psi_GLN4",
                         "sin_phi_GLN9", "cos_phi_GLN9", "sin_psi_GLN9", "cos_psi_GLN9"]


def test_cli_ready_spec_backbone_torsions(aaqaa3_frames, tmp_path):
    from gmvae_cv.cli import main

    top = tmp_path / "aaqaa3.pdb"
    aaqaa3_frames[0].save_pdb(str(top))
    dcd = tmp_path / "t.dcd"
    aaqaa3_frames.save_dcd(str(dcd))
    spec_file, out = tmp_path / "spec.json", tmp_path / "x.npy"
    assert main(["features", "--spec", "backbone-torsions", "--top", str(top), "--traj", str(dcd),
                 "--out", str(out), "--write-spec", str(spec_file), "--dtype", "float64"]) == 0
    spec = FeatureSpec.load(spec_file)
    assert spec.n_features == 60 and spec.names[0] == "sin_phi_ALA2"
    x = np.load(out)
    traj = md.load(str(dcd), top=str(top))
    np.testing.assert_allclose(x[:, 0::4], np.sin(md.compute_phi(traj)[1]), atol=1e-5)
    assert main(["features", "--spec", "backbone-torsions", "--write-spec", str(spec_file)]) == 2  # no --top
