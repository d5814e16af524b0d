"""examples/gromacs_plumed/: check_with_driver.py runs the ready PLUMED inputs in ``plumed driver``
and its features/CV agree with the Python model; GROMACS file formats (.xtc + .gro, solvent after
the solute) and the atom-order check.

With the plain PLUMED kernel of the test environment (no libtorch) the script replaces each
PYTORCH_MODEL line by a READ stand-in fed with the .ptc outputs (see the script's docstring); with
PLUMED_KERNEL pointing at a libtorch build it would run PYTORCH_MODEL itself. Skipped only where no
``plumed`` command works.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from gmvae_cv import AlanineDipeptide
from gmvae_cv.cli import main as cli_main
from md_commands import check_gmvae_cv_command, fenced_blocks, inline_commands, section, shell_commands
from plumed_tool import PLUMED, needs_plumed

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "gromacs_plumed" / "check_with_driver.py"
REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
README = ROOT / "examples" / "gromacs_plumed" / "README.md"


def _readme_commands(heading: str | None = None) -> list[list[str]]:
    """Shell commands of the example's README (fenced bash blocks, optionally under one heading)."""
    text = README.read_text()
    if heading is not None:
        text = section(text, heading)
    return [c for _, _, body in fenced_blocks(text, "bash") for c in shell_commands(body)]


def _run_readme_fes(heading: str, workdir: Path) -> list[str]:
    """Run the README's `gmvae-cv fes` commands of one section in a folder holding COLVAR (and
    HILLS); returns the tables written."""
    cmds = [c for c in _readme_commands(heading) if c[:2] == ["gmvae-cv", "fes"]]
    assert cmds, f"no gmvae-cv fes command under {heading!r}"
    written = []
    cwd = Path.cwd()
    try:
        os.chdir(workdir)
        for c in cmds:
            assert cli_main(c[1:]) == 0, c
            out = c[c.index("--out") + 1]
            table = np.loadtxt(workdir / out, comments="#", ndmin=2)
            assert np.isfinite(table[:, -2]).any(), c
            written.append(out)
    finally:
        os.chdir(cwd)
    return written


def _module():
    spec = importlib.util.spec_from_file_location("check_with_driver", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _reference_traj(n_water: int = 0) -> md.Trajectory:
    """The reference export's 32 check frames on the bundled topology, in a 3 nm box, optionally
    with ``n_water`` three-site waters appended after the solute (as in a solvated GROMACS run)."""
    top = AlanineDipeptide().mdtraj_topology
    xyz = np.load(REF_EXPORT / "frames.npy")
    if n_water:
        top = top.copy()
        chain = top.add_chain()
        rng = np.random.default_rng(0)
        extra = []
        for w in range(n_water):
            res = top.add_residue("HOH", chain, resSeq=100 + w)
            o = top.add_atom("O", md.element.oxygen, res)
            for h in ("H1", "H2"):
                top.add_bond(o, top.add_atom(h, md.element.hydrogen, res))
            c = rng.uniform(0.2, 2.8, 3)
            extra.append([c, c + [0.0957, 0, 0], c + [-0.024, 0.0927, 0]])
        extra = np.broadcast_to(np.array(extra, dtype=np.float32).reshape(1, -1, 3), (len(xyz), 3 * n_water, 3))
        xyz = np.concatenate([xyz, extra], axis=1)
    n = len(xyz)
    return md.Trajectory(xyz, top, unitcell_lengths=np.full((n, 3), 3.0), unitcell_angles=np.full((n, 3), 90.0))


@needs_plumed
def test_check_with_driver_on_reference_export(tmp_path):
    """The script as a user runs it (default: the reference export's frames, plumed_inputs/metad.dat
    then reweight.dat): exit status 0, features and CV/cluster values within tolerance."""
    work = tmp_path / "work"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--plumed", PLUMED, "--workdir", str(work)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "PASSED" in res.stdout
    summary = json.loads((work / "check_with_driver.json").read_text())
    assert summary["passed"] and summary["n_frames"] == 32
    assert summary["mode"] in ("standin", "pytorch")
    assert [Path(r["input"]).name for r in summary["inputs"]] == ["metad.dat", "reweight.dat"]
    for r in summary["inputs"]:
        assert r["frames"] == 32 and r["passed"]
        assert r["features_max_abs_diff"] < 1e-5
        assert r["cv_max_abs_diff"] < 2e-5 * 10 and r["clusters_max_abs_diff"] < 2e-5
    # METAD deposited one hill per frame after the first; reweight.dat read them and wrote its FES
    assert np.loadtxt(work / "HILLS", comments="#", ndmin=2).shape[0] == 31
    for name in ("fes_cv.dat", "fes_torsions.dat", "COLVAR", "COLVAR_REWEIGHT"):
        assert (work / name).is_file(), name
    # the README's reweighting commands on this COLVAR and HILLS
    assert _run_readme_fes("7. Reweighting after the run", work) == ["fes_ct.dat", "fes_rbias.dat"]


@needs_plumed
def test_check_with_driver_gromacs_files_with_solvent(tmp_path, capsys):
    """.xtc + .gro with water after the solute: PLUMED numbers atoms in the whole system, the
    feature atoms come first, so the export's inputs apply unchanged."""
    traj = _reference_traj(n_water=5)
    traj.save_xtc(str(tmp_path / "md.xtc"))
    traj[0].save_gro(str(tmp_path / "conf.gro"))
    rc = _module().main([
        "--traj", str(tmp_path / "md.xtc"), "--top", str(tmp_path / "conf.gro"),
        "--input", str(REF_EXPORT / "plumed_opes.dat"), "--plumed", PLUMED, "--workdir", str(tmp_path / "w"),
    ])
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = json.loads((tmp_path / "w" / "check_with_driver.json").read_text())
    assert summary["atom_order"]["n_atoms_topology"] == 22 + 15 and summary["atom_order"]["mismatches"] == []
    assert "15 atoms after the spec's 22" in out
    (row,) = summary["inputs"]
    # xtc stores positions to 1e-3 nm; both sides read the same rounded positions
    assert row["passed"] and row["features_max_abs_diff"] < 1e-5
    assert (tmp_path / "w" / "KERNELS").is_file()
    # the README's OPES reweighting command on the COLVAR that plumed_opes.dat printed
    assert _run_readme_fes("8. OPES instead of METAD", tmp_path / "w") == ["fes_opes.dat"]


def test_atom_order_check_names_the_differing_atoms():
    """A topology whose atoms are in another order (two heavy atoms swapped) is caught before
    anything runs; the message gives PLUMED's 1-based number."""
    from gmvae_cv.features import FeatureSpec

    mod = _module()
    spec = FeatureSpec.from_dict(json.loads((REF_EXPORT / "cv.json").read_text())["feature_spec"])
    top = AlanineDipeptide().mdtraj_topology
    assert mod.check_atom_order(spec, top)["mismatches"] == []
    swapped = top.copy()
    a, b = swapped.atom(4), swapped.atom(5)  # ACE C and O
    a.name, b.name = b.name, a.name
    mm = mod.check_atom_order(spec, swapped)["mismatches"]
    assert mm == [
        {"plumed_atom": 5, "index": 4, "spec": "ACE1-C", "topology": "ACE1-O"},
        {"plumed_atom": 6, "index": 5, "spec": "ACE1-O", "topology": "ACE1-C"},
    ]
    with pytest.raises(mod.CheckError, match="has 3 atoms, the feature spec was built on 22"):
        mod.check_atom_order(spec, md.Topology.from_openmm(_tiny_openmm_topology()))


def _tiny_openmm_topology():
    from openmm.app import Element, Topology

    t = Topology()
    res = t.addResidue("HOH", t.addChain())
    for name in ("O", "H1", "H2"):
        t.addAtom(name, Element.getBySymbol(name[0]), res)
    return t


@needs_plumed
def test_check_with_driver_fails_on_another_atom_order(tmp_path, capsys):
    """A run whose topology lists ALA's C and O the other way round (as another topology builder
    may): exit status 1 with both atoms listed, PLUMED's numbers given; --allow-atom-mismatch turns
    the failure into a report. (Naming variants that mdtraj standardises when it reads a .gro, e.g.
    GROMACS-Amber's NME CH3/HH31 for C/H1, are not differences.)"""
    traj = _reference_traj()
    order = np.arange(22)
    order[[14, 15]] = [15, 14]
    traj.save_gro(str(tmp_path / "ref.gro"))
    lines = (tmp_path / "ref.gro").read_text().splitlines()
    body = [lines[2 + i] for i in order]
    body = [b[:15] + f"{k + 1:5d}" + b[20:] for k, b in enumerate(body)]  # atom numbers stay 1..22
    (tmp_path / "conf.gro").write_text("\n".join(lines[:2] + body + [lines[2 + 22]]) + "\n")
    swapped = md.Trajectory(traj.xyz[:, order], md.load_topology(str(tmp_path / "conf.gro")),
                            unitcell_lengths=traj.unitcell_lengths, unitcell_angles=traj.unitcell_angles)
    swapped.save_xtc(str(tmp_path / "md.xtc"))
    argv = ["--traj", str(tmp_path / "md.xtc"), "--top", str(tmp_path / "conf.gro"), "--plumed", PLUMED,
            "--input", str(REF_EXPORT / "plumed.dat")]
    mod = _module()
    assert mod.main(argv + ["--workdir", str(tmp_path / "a")]) == 1
    out = capsys.readouterr().out
    assert "PLUMED atom 15 (index 14): spec ALA2-C, topology ALA2-O" in out
    assert "PLUMED atom 16 (index 15): spec ALA2-O, topology ALA2-C" in out and "FAILED" in out
    assert mod.main(argv + ["--workdir", str(tmp_path / "b"), "--allow-atom-mismatch"]) == 0


def _all_readme_commands() -> list[list[str]]:
    text = README.read_text()
    inline = [c for c in inline_commands(text, "gmvae-cv") if len(c) > 2]
    return _readme_commands() + inline


def test_readme_gmvae_cv_commands_parse():
    """Every gmvae-cv and check_with_driver.py command in the README uses options that exist;
    files it copies from the repository exist. (gmx commands are not checked: no GROMACS here.)"""
    cmds = _all_readme_commands()
    seen = set()
    for c in cmds:
        if c[0] == "gmvae-cv":
            seen.add(check_gmvae_cv_command(c))
        elif c[:2] == ["python", "examples/gromacs_plumed/check_with_driver.py"]:
            _module().build_parser().parse_args(c[2:])
            seen.add("check_with_driver")
        elif c[0] == "bash":
            assert (ROOT / c[1]).is_file(), c
        elif c[0] == "cp":
            for src in c[1:-1]:
                assert (ROOT / src).is_file(), c
    assert {"export", "features", "train", "fes", "check_with_driver"} <= seen
    assert any(c[:2] == ["gmx", "mdrun"] and "-plumed" in c for c in cmds)


@needs_plumed
def test_readme_plumed_commands_use_existing_options():
    """plumed driver/patch/config commands in the README: their options are in the real
    PLUMED's help, the patch engine in `plumed patch -l`."""
    def out(*args):
        r = subprocess.run([PLUMED, *args], capture_output=True, text=True, timeout=60)
        return r.stdout + r.stderr

    n = 0
    for c in _all_readme_commands():
        if not c[0].endswith("plumed") or len(c) < 2:
            continue
        n += 1
        sub, rest = c[1], c[2:]
        if sub == "config":
            assert rest[0] in out("config", "--help"), c
            continue
        assert sub in ("driver", "patch"), c
        helptext = out(sub, "--help")
        for w in rest:
            if w.startswith("-"):
                assert re.search(rf"(^|[\s,]){re.escape(w)}(\s|,|=|$)", helptext, re.M), (w, c)
        if sub == "patch":
            assert rest[rest.index("-e") + 1] in out("patch", "-l").split(), c
    assert n >= 3
