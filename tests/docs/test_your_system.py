"""examples/your_system.md: its code blocks marked ``<!-- tested -->`` run, in order, in one
namespace, read from the file (not copied); its gmvae-cv commands parse.

The page's snippets refer to names the user has: ``conf`` (one frame of the MD structure),
``polymer_top`` (a polymer topology with bonds), ``x`` (feature matrices, one per trajectory) and
``labels`` (known states). The test provides them: a synthetic ACE-(AAQAA)3-NME frame (atoms named
as in Amber, random coordinates: the snippets only read the topology or compute features), a
synthetic chain of 12 styrene-like monomers with backbone carbons C1/C2, and short four-well
trajectories with their exact wells. One substitution, to fit the test budget: the k scan runs
k = 2 and 4 with ``epochs=15`` instead of k = 2..6 with the default epochs.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from md_commands import check_gmvae_cv_command, fenced_blocks, inline_commands, shell_commands

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "examples" / "your_system.md"
_TESTED = re.compile(r"<!-- tested -->\s*\n[ \t]*```python[ \t]*\n(?P<body>.*?)^[ \t]*```", re.S | re.M)


def _tested_blocks() -> list[str]:
    return [textwrap.dedent(m.group("body")) for m in _TESTED.finditer(PAGE.read_text())]


def _aaqaa3() -> md.Trajectory:
    top = md.Topology()
    chain = top.add_chain()

    def residue(name, atoms):
        r = top.add_residue(name, chain, resSeq=top.n_residues + 1)
        for a in atoms:
            top.add_atom(a, md.element.get_by_symbol(a[0]), r)

    residue("ACE", ["CH3", "C", "O"])
    for aa in "AAQAA" * 3:
        side = ["CG", "CD", "OE1", "NE2"] if aa == "Q" else []
        residue("ALA" if aa == "A" else "GLN", ["N", "H", "CA", "CB", *side, "C", "O"])
    residue("NME", ["N", "H", "C"])
    xyz = np.random.default_rng(0).uniform(0, 3, size=(1, top.n_atoms, 3))
    return md.Trajectory(xyz, top)


def _polymer(n_monomers: int = 12) -> md.Topology:
    """A chain of -CH2(C2)-CH(C1)(phenyl)- monomers, heavy atoms only, with bonds."""
    top = md.Topology()
    chain = top.add_chain()
    prev = None
    for _ in range(n_monomers):
        r = top.add_residue("STY", chain)
        c2 = top.add_atom("C2", md.element.carbon, r)
        c1 = top.add_atom("C1", md.element.carbon, r)
        ring = [top.add_atom(f"CR{i}", md.element.carbon, r) for i in range(6)]
        top.add_bond(c2, c1)
        top.add_bond(c1, ring[0])
        for i in range(6):
            top.add_bond(ring[i], ring[(i + 1) % 6])
        if prev is not None:
            top.add_bond(prev, c2)
        prev = c1
    return top


def test_tested_blocks_run(tmp_path, monkeypatch, capsys):
    from gmvae_cv import FourWell

    blocks = _tested_blocks()
    assert len(blocks) == 6, "the page's tested blocks changed: update this test"
    monkeypatch.chdir(tmp_path)
    fw = FourWell()
    traj = fw.simulate(60_000, n_walkers=4, stride=100, seed=1)
    ns = {"conf": _aaqaa3(), "polymer_top": _polymer(), "x": list(traj), "labels": fw.basin(traj.reshape(-1, 1))}
    scan = blocks[3]
    assert "for k in (2, 3, 4, 5, 6):" in scan and "progress=False)" in scan
    blocks[3] = scan.replace("(2, 3, 4, 5, 6)", "(2, 4)").replace("progress=False)", "progress=False, epochs=15)")
    for b in blocks:
        exec(compile(b, str(PAGE), "exec"), ns)
    out = capsys.readouterr().out
    spec, big, chain = ns["spec"], ns["big"], ns["chain"]
    # 15 residues x (phi, psi) x (sin, cos)
    assert spec.n_features == 60 and str(spec).startswith("FeatureSpec(60 features: 60 torsion")
    assert spec.names[:2] == ["sin_phi_ALA2", "cos_phi_ALA2"] and spec.names[-1] == "cos_psi_ALA16"
    # phi of residue i is C(i-1)-N-CA-C, as mdtraj (and PLUMED's TORSION) define it
    conf = ns["conf"]
    np.testing.assert_allclose(spec.compute(conf)[0, 0], np.sin(md.compute_phi(conf)[1][0, 0]), atol=1e-6)
    assert len(ns["ca"]) == 105 and len(ns["hbonds"]) == 13 and big.n_features == 60 + 105 + 13
    assert any("COORDINATION" in line for line in ns["lines"]) and len(ns["args"]) == big.n_features
    assert big.compute(conf).shape == (1, big.n_features)
    # a chain of 24 backbone carbons: 21 torsions, as sin/cos pairs
    assert chain.n_features == 42 and chain.names[0].startswith("sin_")
    assert set(ns["scan"]) == {2, 4} and all(np.isfinite(v[0]) for v in ns["scan"].values())
    assert "validation loss" in out and "|d s0/d features|" in out and "accuracy" in out


def _page_commands() -> list[list[str]]:
    text = PAGE.read_text()
    cmds = [c for _, _, body in fenced_blocks(text, "bash") for c in shell_commands(body)]
    return cmds + inline_commands(text, "gmvae-cv") + inline_commands(text, "python")


def test_page_commands_parse():
    """Every gmvae-cv command on the page (fenced or inline) uses a subcommand and options the CLI
    has, and parses if complete (md_commands.check_gmvae_cv_command); so do the check script's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cwd", ROOT / "examples" / "gromacs_plumed" / "check_with_driver.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seen = []
    for c in _page_commands():
        if c[0] == "gmvae-cv" and len(c) > 2:
            seen.append(check_gmvae_cv_command(c))
        elif c[:2] == ["python", "examples/gromacs_plumed/check_with_driver.py"]:
            mod.build_parser().parse_args(c[2:])
            seen.append("check_with_driver")
    assert {"msm", "export", "check", "bias", "fes", "train", "check_with_driver"} <= set(seen), seen


@pytest.mark.parametrize("name", ["examples/gromacs_plumed/README.md", "examples/time_lagged.py", "examples/polystyrene.py"])
def test_page_links(name):
    """Files the page points to: the GROMACS page exists; time_lagged.py is being written
    elsewhere, so only its mention is checked."""
    assert name in PAGE.read_text()
    if name.endswith(".md"):
        assert (ROOT / name).is_file()
