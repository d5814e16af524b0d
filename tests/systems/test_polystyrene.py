"""Tests of gmvae_cv.systems.polystyrene: the built chain, its TraPPE-UA force field, bad input.

The force-field checks evaluate the TraPPE-UA energy in NumPy from the published parameters
(typed below in K from the papers, not read from the XML) over the topology's bond graph, and
compare OpenMM's energies with it.
"""

from __future__ import annotations

import json
import re

import mdtraj as md
import numpy as np
import openmm
import pytest
from openmm import unit

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.systems.polystyrene import Polystyrene, polystyrene_forcefield

KJ = unit.kilojoule_per_mole
R_KJ = 0.00831446261815324  # kJ/mol/K

# Published TraPPE-UA values (Martin & Siepmann 1998, 1999; Wick, Martin & Siepmann 2000)
LJ_K_A = {"CH3": (98.0, 3.75), "CH2": (46.0, 3.95), "CH": (10.0, 4.68), "CHaro": (50.5, 3.695), "Caro": (21.0, 3.88)}
TORSION_K = (-251.06, 428.73, -111.85, 441.27)  # CHx-CH2-CH-CHy, c0..c3
BEND_K = 62500.0  # K/rad^2, U = k/2 (theta - theta0)^2
SITE = {"CT": "CH3", "CA": "CH", "CB": "CH2", "CG": "Caro", "CD1": "CHaro", "CD2": "CHaro",
        "CE1": "CHaro", "CE2": "CHaro", "CZ": "CHaro"}


def trappe_torsion_kj(phi):
    """The published CHx-CH2-CH-CHy torsion (kJ/mol) at phi (rad), c0 included."""
    c0, c1, c2, c3 = TORSION_K
    return R_KJ * (c0 + c1 * (1 + np.cos(phi)) + c2 * (1 - np.cos(2 * phi)) + c3 * (1 + np.cos(3 * phi)))


def dihedral(p0, p1, p2, p3):
    """IUPAC dihedral (rad), written out independently of the package."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    return np.arctan2(np.linalg.norm(b1) * np.dot(b0, n2), np.dot(n1, n2))


class TrappeReference:
    """TraPPE-UA energy terms of a chain topology, from the bond graph and the published values."""

    def __init__(self, topology):
        atoms = list(topology.atoms())
        self.kind = [SITE[a.name] for a in atoms]
        n = len(atoms)
        self.nbrs = [set() for _ in range(n)]
        for a, b in topology.bonds():
            self.nbrs[a.index].add(b.index)
            self.nbrs[b.index].add(a.index)
        # angles: sp3 centres (all three sites), plus CH-C(aro)-CH(aro) at 120 deg
        self.angles = []
        for j in range(n):
            for i in self.nbrs[j]:
                for k in self.nbrs[j]:
                    if i < k:
                        if self.kind[j] in ("CH", "CH2"):
                            self.angles.append((i, j, k, 112.0 if self.kind[j] == "CH" else 114.0))
                        elif self.kind[j] == "Caro" and "CH" in (self.kind[i], self.kind[k]):
                            self.angles.append((i, j, k, 120.0))
        # torsions about every CH-CH2 bond
        self.torsions = []
        for b in range(n):
            for c in self.nbrs[b]:
                if self.kind[b] == "CH" and self.kind[c] == "CH2":
                    for a in self.nbrs[b] - {c}:
                        for d in self.nbrs[c] - {b}:
                            self.torsions.append((a, b, c, d))
        # ring attachment: CA-CG-CD-CE trans torsions, k (1 + cos phi) with k = 62500 K
        self.planar = [(a, b, c, d) for b in range(n) if self.kind[b] == "Caro"
                       for a in self.nbrs[b] if self.kind[a] == "CH"
                       for c in self.nbrs[b] if c != a for d in self.nbrs[c] if d != b]
        # Lennard-Jones pairs four or more bonds apart
        self.pairs = []
        for i in range(n):
            dist = {i: 0}
            frontier = [i]
            for depth in (1, 2, 3):
                frontier = [m for f in frontier for m in self.nbrs[f] if m not in dist]
                for m in frontier:
                    dist[m] = depth
            self.pairs += [(i, j) for j in range(i + 1, n) if j not in dist]

    def energy(self, x):
        """kJ/mol at positions ``x`` (nm), the published energy (torsion c0 included)."""
        e_angle = 0.0
        for i, j, k, t0 in self.angles:
            u, v = x[i] - x[j], x[k] - x[j]
            theta = np.arccos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))
            e_angle += 0.5 * BEND_K * R_KJ * (theta - np.radians(t0)) ** 2
        e_tor = sum(trappe_torsion_kj(dihedral(*x[list(q)])) for q in self.torsions)
        e_tor += sum(BEND_K * R_KJ * (1 + np.cos(dihedral(*x[list(q)]))) for q in self.planar)
        e_lj = 0.0
        for i, j in self.pairs:
            (ei, si), (ej, sj) = LJ_K_A[self.kind[i]], LJ_K_A[self.kind[j]]
            eps, sig = R_KJ * np.sqrt(ei * ej), 0.05 * (si + sj)
            sr6 = (sig / np.linalg.norm(x[i] - x[j])) ** 6
            e_lj += 4 * eps * (sr6 * sr6 - sr6)
        return e_angle + e_tor + e_lj


def _context(system, positions):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    ctx.computeVirtualSites()
    return ctx


def _energy_and_positions(ctx, groups=-1):
    st = ctx.getState(getEnergy=True, getPositions=True, groups=groups)
    return st.getPotentialEnergy().value_in_unit(KJ), st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)


@pytest.fixture(scope="module")
def zigzag():
    return Polystyrene(10, "syndiotactic", conformation="zigzag")


@pytest.fixture(scope="module")
def helix():
    return Polystyrene(10, "syndiotactic", conformation="helix")


# ------------------------------------------------------------------ the built chain
def test_topology_sizes_and_names(zigzag):
    top = zigzag.topology
    assert top.getNumAtoms() == 81 and top.getNumBonds() == 90  # 20 backbone + 10 CH-CG + 60 ring bonds
    assert [r.name for r in top.residues()] == ["STB"] + ["STY"] * 8 + ["STE"]
    assert zigzag.backbone_torsions.shape == (18, 4)
    names = [a.name for a in top.atoms()]
    assert [names[i] for i in zigzag.backbone] == ["CT"] + ["CA", "CB"] * 9 + ["CA", "CT"]
    mdtop = md.Topology.from_openmm(top)
    assert mdtop.n_bonds == 90


def test_geometry_is_trappe(zigzag, helix):
    sysm = zigzag.create_system()
    for ps in (zigzag, helix):
        x = ps.positions
        for a, b in ps.topology.bonds():
            d = np.linalg.norm(x[a.index] - x[b.index])
            ring = a.name in ("CD1", "CD2", "CE1", "CE2", "CZ") or b.name in ("CD1", "CD2", "CE1", "CE2", "CZ")
            assert d == pytest.approx(0.140 if ring else 0.154, abs=1e-6)
        for ring in ps.rings:
            r = x[ring]
            centre = r.mean(axis=0)
            assert np.allclose(np.linalg.norm(r - centre, axis=1), 0.140, atol=1e-6)  # regular hexagon
            _, s, _ = np.linalg.svd(r - centre)
            assert s[2] < 1e-6  # planar
        # the CH-C(aro) bond lies on the ring's axis (the two 120 deg angle terms)
        for k, ring in enumerate(ps.rings):
            ca, cg, cz = x[ps.backbone[2 * k + 1]], x[ring[0]], x[ring[3]]
            cosang = np.dot(ca - cg, cz - cg) / np.linalg.norm(ca - cg) / np.linalg.norm(cz - cg)
            assert np.degrees(np.arccos(np.clip(cosang, -1, 1))) > 170
    # three virtual sites and 3 + 1 constraints per ring, 20 backbone bonds
    assert sum(sysm.isVirtualSite(i) for i in range(81)) == 30
    assert sysm.getNumConstraints() == 20 + 10 + 30


def test_tacticity_signs_and_sides():
    """Isotactic: all CH of one sign, phenyls on one side of the zigzag plane; syndiotactic alternates."""
    for tac, want in (("isotactic", [1] * 6), ("syndiotactic", [1, -1] * 3)):
        ps = Polystyrene(6, tac, minimize=False)
        assert ps.chirality.tolist() == want
        x = ps.positions
        back = x[ps.backbone]
        centre = back.mean(axis=0)
        _, _, vt = np.linalg.svd(back - centre)
        normal = vt[2]  # normal of the planar all-trans zigzag
        side = np.sign((x[ps.rings[:, 0]] - centre) @ normal)
        assert np.all(side == side[0]) if tac == "isotactic" else np.all(side[1:] == -side[:-1])
        # the chirality sign recomputed from the positions
        ca = ps.backbone[1:-1:2]
        sign = [np.sign(np.dot(np.cross(x[b] - x[c], x[d] - x[c]), x[g] - x[c]))
                for b, c, d, g in zip(ps.backbone[0:-2:2], ca, ps.backbone[2::2], ps.rings[:, 0])]
        assert sign == want
    atactic = [Polystyrene(8, "atactic", seed=s, minimize=False).chirality.tolist() for s in (1, 2)]
    assert atactic[0] != atactic[1]
    assert Polystyrene(8, "atactic", seed=1, minimize=False).chirality.tolist() == atactic[0]


def test_conformers_keep_their_torsions(zigzag, helix):
    phi_z = np.degrees(zigzag.backbone_torsion_angles())
    phi_h = np.degrees(helix.backbone_torsion_angles())
    assert np.all(np.abs(phi_z) > 150)
    want = np.array([180, 180, -60, -60] * 5)[:18]
    diff = np.angle(np.exp(1j * np.radians(phi_h - want)), deg=True)
    assert np.all(np.abs(diff) < 30)
    mdphi = np.degrees(md.compute_dihedrals(helix.to_mdtraj(), helix.backbone_torsions)[0])
    assert np.allclose(np.angle(np.exp(1j * np.radians(mdphi - phi_h)), deg=True), 0, atol=1e-3)


# ------------------------------------------------------------------ the force field
def test_energy_matches_published_parameters(zigzag, helix):
    """OpenMM's total energy = the published TraPPE-UA energy (NumPy) minus c0 per torsion."""
    ref = TrappeReference(zigzag.topology)
    assert len(ref.torsions) == 36 and len(ref.angles) == 59 and len(ref.planar) == 20
    system = zigzag.create_system()
    iso = Polystyrene(10, "isotactic", conformation=[180.0, -60.0] * 9)  # the iPS 3/1 helix, TG
    rng = np.random.default_rng(0)
    rough = Polystyrene(10, "atactic", conformation=rng.uniform(-180, 180, 18), seed=3, minimize=False)
    energies = {}
    for name, ps in (("zigzag", zigzag), ("helix", helix), ("iso_tg", iso), ("rough", rough)):
        sysm = system if ps.tacticity == "syndiotactic" else ps.create_system()
        e_omm, x = _energy_and_positions(_context(sysm, ps.positions))
        e_ref = TrappeReference(ps.topology).energy(x) - len(ref.torsions) * R_KJ * TORSION_K[0]
        assert e_omm == pytest.approx(e_ref, rel=1e-7, abs=1e-6), name
        energies[name] = e_omm
    # the minimised conformers: the TTGG helix lies below the zigzag for this vacuum chain
    assert energies["helix"] < energies["zigzag"] < energies["rough"]


def test_backbone_torsion_profile_matches_published_formula(zigzag):
    """Scan torsion 8 by rotating one side of its bond; only torsion terms about that bond change."""
    system = zigzag.create_system()
    for f in system.getForces():
        f.setForceGroup(1 if isinstance(f, openmm.PeriodicTorsionForce) else 0)
    ctx = _context(system, zigzag.positions)
    _, x0 = _energy_and_positions(ctx)
    t = 8
    b, c = zigzag.backbone[t + 1], zigzag.backbone[t + 2]
    ref = TrappeReference(zigzag.topology)
    # atoms on c's side of the b-c bond
    side, todo = {c}, [c]
    while todo:
        for m in ref.nbrs[todo.pop()]:
            if m not in side and m != b:
                side.add(m)
                todo.append(m)
    side = np.array(sorted(side))
    axis = (x0[c] - x0[b]) / np.linalg.norm(x0[c] - x0[b])
    about_bond = [q for q in ref.torsions if {q[1], q[2]} == {b, c}]
    assert len(about_bond) == 2  # from the CH end: the chain and the phenyl
    quad = tuple(zigzag.backbone_torsions[t])
    # an OpenMM system with only the three periodic terms of this one torsion
    single = openmm.System()
    for i in range(system.getNumParticles()):
        single.addParticle(1.0)
    one = openmm.PeriodicTorsionForce()
    src = [f for f in system.getForces() if isinstance(f, openmm.PeriodicTorsionForce)][0]
    for k in range(src.getNumTorsions()):
        i, j, kk, l, n, phase, kf = src.getTorsionParameters(k)
        if (i, j, kk, l) in (quad, quad[::-1]):
            one.addTorsion(i, j, kk, l, n, phase, kf)
    assert one.getNumTorsions() == 3
    single.addForce(one)
    ctx1 = openmm.Context(single, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    profile = []
    for delta in np.radians(np.arange(-180, 181, 15)):
        kx = np.cross(axis, np.eye(3))
        rot = np.cos(delta) * np.eye(3) + np.sin(delta) * kx.T + (1 - np.cos(delta)) * np.outer(axis, axis)
        x = x0.copy()
        x[side] = (x0[side] - x0[c]) @ rot.T + x0[c]
        ctx.setPositions(x)
        e_tor, _ = _energy_and_positions(ctx, groups={1})
        e_np = sum(trappe_torsion_kj(dihedral(*x[list(q)])) for q in ref.torsions) - len(ref.torsions) * R_KJ * TORSION_K[0]
        e_np += sum(BEND_K * R_KJ * (1 + np.cos(dihedral(*x[list(q)]))) for q in ref.planar)
        assert e_tor == pytest.approx(e_np, abs=1e-6)
        ctx1.setPositions(x)
        phi = dihedral(*x[list(quad)])
        e_one = ctx1.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
        assert e_one == pytest.approx(trappe_torsion_kj(phi) - R_KJ * TORSION_K[0], abs=1e-6)
        profile.append((phi, e_one))
    phi, e = np.array(profile).T
    # the published curve: trans minimum, gauche 475.3 K = 3.952 kJ/mol above it
    assert np.degrees(phi[np.argmin(e)]) % 360 == pytest.approx(180, abs=16)
    assert trappe_torsion_kj(np.radians(60)) - trappe_torsion_kj(np.pi) == pytest.approx(1.5 * (428.73 - 111.85) * R_KJ)


# ------------------------------------------------------------------ bad input
def test_bad_tacticity_names_the_choices():
    with pytest.raises(GMVAEInputError, match="syndiotactic.*isotactic.*atactic"):
        Polystyrene(5, "syndio")


@pytest.mark.parametrize("n", [2, 0, -1])
def test_too_few_monomers(n):
    with pytest.raises(GMVAEInputError, match="at least 3"):
        Polystyrene(n)


def test_bad_conformation():
    with pytest.raises(GMVAEInputError, match="8 finite backbone torsions"):
        Polystyrene(5, conformation=[180.0] * 7)
    with pytest.raises(GMVAEInputError, match="zigzag"):
        Polystyrene(5, conformation="coil")


def _edit_forcefield(tmp_path, pattern, repl="", count=1):
    text = polystyrene_forcefield().read_text()
    new, n = re.subn(pattern, repl, text, count=count, flags=re.S)
    assert n == count or count == 0
    path = tmp_path / "ff.xml"
    path.write_text(new)
    return path


def test_forcefield_missing_an_atom_names_it(tmp_path):
    # drop CZ from the middle residue's template
    path = _edit_forcefield(tmp_path, r'(<Residue name="STY">.*?)\s*<Atom name="CZ" type="PS_CHV"/>', r"\1")
    with pytest.raises(GMVAEInputError, match=r"ff\.xml: residue template 'STY' has no atom 'CZ'.*index 14"):
        Polystyrene(5, forcefield=path)


def test_forcefield_missing_a_residue_names_it(tmp_path):
    path = _edit_forcefield(tmp_path, r'<Residue name="STE">.*?</Residue>')
    with pytest.raises(GMVAEInputError, match=r"no residue template 'STE'.*atom 'CA'"):
        Polystyrene(5, forcefield=path)


def test_forcefield_without_lennard_jones_for_a_type(tmp_path):
    path = _edit_forcefield(tmp_path, r'<Atom type="PS_CH2"[^>]*/>')
    with pytest.raises(GMVAEInputError, match=r"'PS_CH2'.*no <NonbondedForce> entry"):
        Polystyrene(5, forcefield=path)


def test_forcefield_without_virtual_sites_names_the_atom(tmp_path):
    path = _edit_forcefield(tmp_path, r'<VirtualSite [^>]*/>', count=0)
    path.write_text(re.sub(r"\s*<VirtualSite [^>]*/>", "", polystyrene_forcefield().read_text()))
    with pytest.raises(GMVAEInputError, match=r"atom 'CD1' \(index 4.*not a virtual site"):
        Polystyrene(5, forcefield=path)


def test_missing_forcefield_file(tmp_path):
    with pytest.raises(GMVAEInputError, match="file not found"):
        Polystyrene(5, forcefield=tmp_path / "nope.xml")


# ------------------------------------------------------------------ simulate (API and CLI)
def test_cli_simulate_polystyrene(tmp_path, capsys):
    from gmvae_cv.cli import main

    out = tmp_path / "ps"
    rc = main(["simulate", "polystyrene", "--monomers", "4", "--steps", "400", "--stride", "100", "--out", str(out),
               "--timestep", "4", "--temperature", "400", "--platform", "Reference", "--equilibration", "200"])
    assert rc == 0
    traj = md.load(str(out / "traj.dcd"), top=str(out / "topology.pdb"))
    assert traj.n_frames == 4 and traj.n_atoms == 33
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["n_monomers"] == 4 and meta["chirality"] == [1, -1, 1, -1] and meta["timestep_ps"] == 0.004
    # constraints hold in the written frames (DCD float32 in Angstrom: 1e-4 nm)
    ps = Polystyrene(4, minimize=False)
    b = ps.backbone
    d = np.linalg.norm(traj.xyz[:, b[1:]] - traj.xyz[:, b[:-1]], axis=-1)
    assert np.allclose(d, 0.154, atol=2e-4)
    assert "wrote" in capsys.readouterr().out
    assert main(["simulate", "polystyrene", "--monomers", "2", "--steps", "10", "--out", str(out)]) == 2
    assert "at least 3" in capsys.readouterr().err


# ------------------------------------------------------------------ features and labels
from gmvae_cv.systems.polystyrene import (  # noqa: E402
    backbone_torsion_atoms,
    chain_state,
    diad_labels,
    polystyrene_backbone_torsions,
    torsion_states,
    tt_fraction,
    ttgg_fraction,
)

T, GP, GM = 180.0, 60.0, -60.0


def _rad(*deg):
    return np.radians(np.array(deg, dtype=float))


def test_torsion_states_boundaries_and_wrapping():
    deg = [180, -180, 120.01, 119.99, 0, -0.01, -119.99, -120.01, 200, 300, 359.9]
    assert torsion_states(np.radians(deg)).tolist() == [[0, 0, 0, 1, 1, 2, 2, 0, 0, 2, 2]]


def test_diad_labels_and_fractions_on_hand_built_chains():
    zig = _rad(*[T] * 18)
    hel = _rad(*[T, T, GM, GM] * 4, T, T)  # 9 diads: TT GG TT GG TT GG TT GG TT
    half = _rad(*[T] * 8, GM, GM, T, T, GP, GP, T, T, GM, GM)  # TT TT TT TT GG TT GG TT GG
    tg = _rad(*[T, GM] * 9)  # the isotactic 3/1 helix: every diad TG
    mixed_gauche = _rad(*[T, T, GP, GM] * 4, T, T)  # g+g- diads: GG but no helix
    phi = np.stack([zig, hel, half, tg, mixed_gauche])
    assert diad_labels(phi).tolist() == [
        [0] * 9, [0, 2] * 4 + [0], [0, 0, 0, 0, 2, 0, 2, 0, 2], [1] * 9, [0, 2] * 4 + [0]]
    assert tt_fraction(phi) == pytest.approx([1.0, 5 / 9, 6 / 9, 0.0, 5 / 9])
    assert ttgg_fraction(phi) == pytest.approx([0.0, 1.0, 5 / 8, 0.0, 0.0])
    assert chain_state(phi).tolist() == [0, 1, 1, -1, -1]
    assert chain_state(phi, helix=0.7).tolist() == [0, 1, -1, -1, -1]
    # one frame as a 1-D array, and the minimised conformers of the built chain
    assert diad_labels(zig).shape == (1, 9)


def test_labels_of_built_conformers(zigzag, helix):
    assert tt_fraction(zigzag.backbone_torsion_angles()).tolist() == [1.0]
    assert ttgg_fraction(helix.backbone_torsion_angles()).tolist() == [1.0]
    assert chain_state(np.stack([zigzag.backbone_torsion_angles(), helix.backbone_torsion_angles()])).tolist() == [0, 1]


def test_label_bad_input():
    with pytest.raises(GMVAEInputError, match="radians"):
        tt_fraction(np.full((2, 18), 180.0))
    with pytest.raises(GMVAEInputError, match="even number"):
        diad_labels(np.zeros((2, 7)))
    with pytest.raises(GMVAEInputError, match="at least 4"):
        ttgg_fraction(np.zeros((1, 2)))
    with pytest.raises(GMVAEInputError, match="'helix' is 1.5"):
        chain_state(np.zeros((1, 8)), helix=1.5)


def test_backbone_torsion_spec_matches_mdtraj(zigzag, helix, tmp_path):
    spec = polystyrene_backbone_torsions(zigzag.topology)
    assert spec.n_features == 36 and spec.names[:4] == ["sin_t00", "cos_t00", "sin_t01", "cos_t01"]
    assert np.array_equal(backbone_torsion_atoms(zigzag.topology), zigzag.backbone_torsions)
    xyz = np.stack([zigzag.positions, helix.positions])
    traj = md.Trajectory(xyz.astype(np.float32), zigzag.mdtraj_topology)
    phi = md.compute_dihedrals(traj, zigzag.backbone_torsions)
    want = np.stack([np.sin(phi), np.cos(phi)], axis=-1).reshape(2, -1)
    assert np.allclose(spec.compute(traj), want, atol=1e-5)
    import torch

    module = spec.torch_module()
    got = module(torch.tensor(xyz[1], dtype=torch.float64)).detach().numpy()
    assert np.allclose(got.ravel(), want[1], atol=1e-6)
    raw = polystyrene_backbone_torsions(zigzag.topology, transform="raw")
    assert np.allclose(tt_fraction(raw.compute(traj)), [1.0, 5 / 9])
    # the same atoms from a PDB as simulate writes it
    from openmm import app

    pdb = tmp_path / "ps.pdb"
    with open(pdb, "w") as fh:
        app.PDBFile.writeFile(zigzag.topology, zigzag.positions * unit.nanometer, fh, keepIds=True)
    assert polystyrene_backbone_torsions(str(pdb)) == spec
    assert "TORSION ATOMS=" in polystyrene_backbone_torsions(str(pdb)).plumed_input().text


def test_backbone_torsion_spec_rejects_other_topologies():
    from gmvae_cv.systems import AlanineDipeptide

    with pytest.raises(GMVAEInputError, match="expected a polystyrene chain"):
        polystyrene_backbone_torsions(AlanineDipeptide().topology)
    with pytest.raises(GMVAEInputError, match="'transform'"):
        polystyrene_backbone_torsions(Polystyrene(3, minimize=False).topology, transform="both")


# ------------------------------------------------------------------ the example
@pytest.mark.slow  # 70-240 s on a loaded 2-core machine
def test_example_quick(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "polystyrene.py"
    spec = importlib.util.spec_from_file_location("polystyrene_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--out", str(tmp_path), "--quick"])
    assert summary["export_check_passed"]
    # the training data hold both conformer families, and the clusters separate them
    assert summary["training_labels"]["zigzag-rich"] > 0 and summary["training_labels"]["helix-rich"] > 0
    rows = np.array(summary["confusion"]["matrix"])
    assert rows.sum() == summary["training_frames"] == 40
    zig_cluster = int(np.argmax(rows[0]))
    hel_cluster = int(np.argmax(rows[1]))
    assert zig_cluster != hel_cluster
    assert summary["clusters"][str(zig_cluster)]["mean_tt_fraction"] > summary["clusters"][str(hel_cluster)]["mean_tt_fraction"]
    # metadynamics and the unbiased run cover the same time, labelled frame by frame
    for key in ("metadynamics", "unbiased"):
        part = summary[key]
        assert part["fraction_zigzag_rich"] + part["fraction_helix_rich"] + part["fraction_other"] == pytest.approx(1.0)
    assert summary["metadynamics"]["n_hills"] == 10
    for name in ("latent.png", "confusion.png", "transitions.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    # --summarize recomputes the same numbers from the run folders
    seeds = module.summarize([tmp_path], tmp_path / "sum")
    for part in ("metadynamics", "unbiased"):
        for key in ("transitions", "fraction_helix_rich", "exits_from_helix_rich", "mean_tt_fraction", "max_tt_fraction"):
            assert seeds["seeds"][0][part][key] == summary[part][key], (part, key)
