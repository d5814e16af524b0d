"""Atom mapping by residue and atom name, and PLUMED inputs rendered for another topology.

These need no GROMACS: the other topologies are the bundled dipeptide with its atoms shuffled,
renamed the way GROMACS' Amber ports name them, and solvent put first; the rendered feature lines
run in the real ``plumed driver`` (the kernel the test suite has).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.features.atom_mapping import map_spec_atoms, remap_spec
from gmvae_cv.deploy import read_cv_json
from gmvae_cv.features import FeatureSpec
from gmvae_cv.deploy.plumed_topology import write_plumed_for_topology
from gmvae_cv.systems import AlanineDipeptide
from plumed_tool import needs_plumed, read_colvar, run_driver

ROOT = Path(__file__).resolve().parents[2]
REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
# GROMACS' Amber ports (pdb2gmx amber99sb-ildn) spell the caps' atoms so
GMX_NAMES = {("ACE", "H1"): "HH31", ("ACE", "H2"): "HH32", ("ACE", "H3"): "HH33",
             ("NME", "C"): "CH3", ("NME", "H1"): "HH31", ("NME", "H2"): "HH32", ("NME", "H3"): "HH33"}


def _spec() -> FeatureSpec:
    return FeatureSpec.from_dict(read_cv_json(REF_EXPORT)["feature_spec"])


def _other_topology(seed: int = 0, n_water: int = 3, rename: bool = True, resseq_shift: int = 0):
    """The dipeptide with waters first, its atoms shuffled within residues, caps renamed.

    Returns (topology, perm) with ``new_xyz[:, n_water*3 + k] = old_xyz[:, perm[k]]``.
    """
    old = AlanineDipeptide().mdtraj_topology
    rng = np.random.default_rng(seed)
    top = md.Topology()
    chain = top.add_chain()
    O, H = md.element.oxygen, md.element.hydrogen
    for w in range(n_water):
        r = top.add_residue("HOH", chain, resSeq=100 + w)
        top.add_atom("O", O, r)
        top.add_atom("H1", H, r)
        top.add_atom("H2", H, r)
    perm = []
    for res in old.residues:
        r = top.add_residue(res.name, chain, resSeq=res.resSeq + resseq_shift)
        atoms = list(res.atoms)
        for k in rng.permutation(len(atoms)):
            a = atoms[k]
            name = GMX_NAMES.get((res.name, a.name), a.name) if rename else a.name
            top.add_atom(name, a.element, r)
            perm.append(a.index)
    return top, np.array(perm)


def _frames() -> np.ndarray:
    return np.load(REF_EXPORT / "frames.npy").astype(np.float32)


def _embed(xyz: np.ndarray, perm: np.ndarray, n_water: int) -> np.ndarray:
    out = np.zeros((xyz.shape[0], n_water * 3 + len(perm), 3), dtype=np.float32)
    out[:, n_water * 3:] = xyz[:, perm]
    out[:, : n_water * 3] = 5.0 + np.arange(n_water * 3)[None, :, None] * 0.5  # far from the solute
    return out


def test_permuted_renamed_topology_maps_and_gives_the_same_features(tmp_path):
    spec = _spec()
    top, perm = _other_topology()
    gro = tmp_path / "conf.gro"
    xyz = _frames()
    md.Trajectory(_embed(xyz[:1], perm, 3), top).save_gro(str(gro))
    mapping = map_spec_atoms(spec, gro)
    assert mapping.n_atoms == 9 + 22 and not mapping.is_identity
    # every spec atom goes to the atom that holds its coordinates after the shuffle
    for old, new in mapping.old_to_new.items():
        assert perm[new - 9] == old
    # the alias table at work (mdtraj's .gro reader already renames NME CH3 to C; the topology
    # itself keeps GROMACS' names)
    in_memory = map_spec_atoms(spec, top)
    assert in_memory.old_to_new == mapping.old_to_new
    assert in_memory.new_labels[in_memory.old_to_new[18]] == "NME3-CH3"
    assert in_memory.new_labels[in_memory.old_to_new[1]] == "ACE1-CH3"
    new_spec = remap_spec(spec, mapping)
    assert new_spec.n_atoms == 31 and new_spec.names == spec.names
    np.testing.assert_allclose(new_spec.compute(_embed(xyz, perm, 3)), spec.compute(xyz), atol=1e-6)


def test_identity_on_the_project_inputs():
    spec = _spec()
    for folder in ("vacuum", "water"):
        m = map_spec_atoms(spec, ROOT / "examples" / "gromacs_plumed" / folder / "conf.gro")
        assert m.is_identity and m.n_atoms == (22 if folder == "vacuum" else 697)


def test_residue_offset():
    spec = _spec()
    top, perm = _other_topology(n_water=0, resseq_shift=10)
    with pytest.raises(GMVAEInputError, match=r"ACE1-CH3"):
        map_spec_atoms(spec, top)
    m = map_spec_atoms(spec, top, residue_offset=10)
    assert all(perm[new] == old for old, new in m.old_to_new.items())


def test_missing_atom_is_refused_with_its_name():
    spec = _spec()
    top, _ = _other_topology(n_water=0, rename=False)
    next(a for a in top.atoms if a.residue.name == "ALA" and a.name == "CB").name = "CX"
    with pytest.raises(GMVAEInputError, match=r"do not map one-to-one.*10 \(ALA2-CB\)"):
        map_spec_atoms(spec, top, source="conf.gro")


def test_duplicate_molecule_is_refused_naming_both_atoms():
    """Two copies of the dipeptide with the same residue numbers: not one-to-one."""
    old = AlanineDipeptide().mdtraj_topology
    top = md.Topology()
    for _ in range(2):
        chain = top.add_chain()
        for res in old.residues:
            r = top.add_residue(res.name, chain, resSeq=res.resSeq)
            for a in res.atoms:
                top.add_atom(a.name, a.element, r)
    with pytest.raises(GMVAEInputError, match=r"several atoms match spec atoms 1 \(ACE1-CH3\) -> 2 \(ACE1-CH3\), 24 \(ACE1-CH3\)"):
        map_spec_atoms(_spec(), top)


def test_two_spec_atoms_on_one_atom_are_refused():
    """Names that the alias table makes equal (NME C and CH3 both present) cannot both map."""
    spec = _spec()
    labels = dict(spec.atom_labels)
    labels[19] = "NME3-CH3"  # a spec that (wrongly) names another used atom CH3
    d = spec.to_dict()
    d["atom_labels"] = {str(k): v for k, v in labels.items()}
    d["features"].append({"type": "distance", "name": "d_16_19", "atoms": [16, 19]})
    bad = FeatureSpec.from_dict(d)
    with pytest.raises(GMVAEInputError, match=r"share one atom: 18 \(NME3-C\), 19 \(NME3-CH3\) -> 19 \(NME3-C\)"):
        map_spec_atoms(bad, AlanineDipeptide().mdtraj_topology)


def test_unlabelled_spec_is_refused():
    d = _spec().to_dict()
    d["atom_labels"] = {}
    with pytest.raises(GMVAEInputError, match="no residue/atom label for atoms"):
        map_spec_atoms(FeatureSpec.from_dict(d), AlanineDipeptide().mdtraj_topology)


@needs_plumed
def test_rendered_inputs_run_in_plumed_on_the_permuted_topology(tmp_path):
    """plumed.dat for the shuffled topology: its feature lines in the real plumed driver on the
    shuffled frames equal the features of the original frames; the .ptc files are copied."""
    top, perm = _other_topology(seed=3)
    xyz = _frames()
    new_xyz = _embed(xyz, perm, 3)
    md.Trajectory(new_xyz[:1], top).save_gro(str(tmp_path / "conf.gro"))
    run = tmp_path / "run"
    written, mapping = write_plumed_for_topology(REF_EXPORT, tmp_path / "conf.gro", run)
    assert sorted(p.name for p in written) == ["model_clusters.ptc", "model_plumed.ptc", "plumed.dat", "plumed_opes.dat"]
    info = read_cv_json(REF_EXPORT)
    for name in ("model_plumed.ptc", "model_clusters.ptc"):
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == info["files"][name]["sha256"]
    text = (run / "plumed.dat").read_text()
    assert "# Atoms mapped by residue and atom name onto conf.gro (31 atoms):" in text
    assert re.search(r"^cv: PYTORCH_MODEL FILE=model_plumed.ptc ARG=f0,", text, re.M)
    assert "PRINT ARG=cv.*,clusters.*,metad.bias,metad.rbias STRIDE=500 FILE=COLVAR" in text
    opes = (run / "plumed_opes.dat").read_text()
    assert "opes: OPES_METAD ..." in opes and "FILE=COLVAR" in opes
    features = [l for l in text.splitlines() if re.match(r"^(UNITS|f\d+:)", l)]
    n = len(_spec().names)
    (run / "features.dat").write_text("\n".join(features) + f"\nPRINT ARG={','.join(f'f{i}' for i in range(n))} FILE=FEAT FMT=%.8f\n")
    md.Trajectory(new_xyz, top).save_dcd(str(run / "traj.dcd"))
    run_driver(run, "features.dat", "traj.dcd")
    got = read_colvar(run / "FEAT")
    plumed_x = np.stack([got[f"f{i}"] for i in range(n)], axis=1)
    np.testing.assert_allclose(plumed_x, _spec().compute(xyz), atol=2e-6)


def test_missing_or_altered_model_file_is_refused(tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(REF_EXPORT, exp, ignore=shutil.ignore_patterns("run", "data"))
    gro = ROOT / "examples" / "gromacs_plumed" / "vacuum" / "conf.gro"
    (exp / "model_clusters.ptc").write_bytes((exp / "model_clusters.ptc").read_bytes() + b"x")
    with pytest.raises(GMVAEInputError, match=r"model_clusters.ptc: sha256 differs"):
        write_plumed_for_topology(exp, gro, tmp_path / "out")
    (exp / "model_plumed.ptc").unlink()
    with pytest.raises(GMVAEInputError, match=r"model_plumed.ptc: file not found"):
        write_plumed_for_topology(exp, gro, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_plumed_input(tmp_path, capsys):
    from gmvae_cv.cli import main

    top, perm = _other_topology(seed=5)
    md.Trajectory(_embed(_frames()[:1], perm, 3), top).save_gro(str(tmp_path / "conf.gro"))
    rc = main(["plumed-input", str(REF_EXPORT), "--top", str(tmp_path / "conf.gro"), "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0 and "31 atoms; the 10 atoms the features use map one-to-one" in out
    spec = FeatureSpec.from_dict(read_cv_json(REF_EXPORT)["feature_spec"])
    m = map_spec_atoms(spec, tmp_path / "conf.gro")
    i, j = spec.features[0].atoms
    assert f"f0: DISTANCE ATOMS={m.old_to_new[i] + 1},{m.old_to_new[j] + 1}" in (tmp_path / "run" / "plumed.dat").read_text()
    # a topology without the molecule: exit status 2, the atoms named
    md.Trajectory(np.zeros((1, 3, 3), np.float32), _other_topology(n_water=1)[0].subset([0, 1, 2])).save_gro(str(tmp_path / "water.gro"))
    rc = main(["plumed-input", str(REF_EXPORT), "--top", str(tmp_path / "water.gro"), "--out", str(tmp_path / "run2")])
    err = capsys.readouterr().err
    assert rc == 2 and "gmvae-cv plumed-input: error:" in err and "ACE1-CH3" in err and "NME3-C" in err
    assert not (tmp_path / "run2").exists()


def test_walker_inputs_for_another_topology(tmp_path):
    """--walkers: walker_i.dat with the mapped feature lines of plumed.dat and WALKERS_N/ID."""
    from gmvae_cv.cli import main

    top, perm = _other_topology(seed=7)
    md.Trajectory(_embed(_frames()[:1], perm, 3), top).save_gro(str(tmp_path / "conf.gro"))
    assert main(["plumed-input", str(REF_EXPORT), "--top", str(tmp_path / "conf.gro"), "--out", str(tmp_path / "run"),
                 "--walkers", "3"]) == 0
    feats = lambda text: [l for l in text.splitlines() if re.match(r"^f\d+: ", l)]  # noqa: E731
    ref = feats((tmp_path / "run" / "plumed.dat").read_text())
    assert len(ref) == 25
    for i in range(3):
        text = (tmp_path / "run" / f"walker_{i}.dat").read_text()
        assert feats(text) == ref and "WALKERS_N=3" in text and f"WALKERS_ID={i}" in text and f"FILE=COLVAR.{i}" in text
    assert not (tmp_path / "run" / "walker_3.dat").exists()
    with pytest.raises(GMVAEInputError, match="'n_walkers' is 1"):
        write_plumed_for_topology(REF_EXPORT, tmp_path / "conf.gro", tmp_path / "run2", n_walkers=1)


def test_gromacs_run_module_exit_status(tmp_path, capsys):
    """python -m gmvae_cv.deploy.gromacs_run DIR: exit status 2 and the reasons on stderr."""
    from gmvae_cv.deploy.gromacs_run import main

    write_plumed_for_topology(REF_EXPORT, ROOT / "examples" / "gromacs_plumed" / "vacuum" / "conf.gro", tmp_path)
    (tmp_path / "model_plumed.ptc").unlink()
    assert main([str(tmp_path), "--plumed", "plumed.dat", "--gmx", str(tmp_path / "no-gmx")]) == 2
    err = capsys.readouterr().err
    assert "model_plumed.ptc: file not found" in err and "no-gmx" in err
