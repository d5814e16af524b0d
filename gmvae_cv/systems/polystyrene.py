"""A single polystyrene chain in vacuum, TraPPE-UA united atoms: zigzag and helical conformers.

The polymorphs of syndiotactic polystyrene (sPS) differ in chain conformation: the alpha and beta
forms hold planar zigzag chains (backbone torsions all trans, ...TTTT...), the gamma and delta
forms helical ones (...TTGGTTGG..., the s(2/1)2 helix). :class:`Polystyrene` builds one chain of
``n_monomers`` styrene units, ``CH3-[CH(Ph)-CH2]_(N-1)-CH(Ph)-CH3`` (for N = 2 this is
2,4-diphenylpentane, the classic model compound), in either conformation (or any backbone torsion
list), with syndiotactic, isotactic or atactic stereochemistry, and simulates it with OpenMM.

Model. United atoms (each CHx one site): 2N + 1 backbone sites and 6 ring sites per monomer,
8N + 1 sites in all (81 for N = 10). Force field: ``gmvae_cv/data/polystyrene-trappe-ua.xml``,
written from the TraPPE-UA parameters of

* M. G. Martin, J. I. Siepmann, J. Phys. Chem. B 102, 2569 (1998), doi:10.1021/jp972543+
  (CH3, CH2 Lennard-Jones; 1.54 A bonds; CHx-CH2-CHy bending 114 deg, 62500 K/rad^2);
* M. G. Martin, J. I. Siepmann, J. Phys. Chem. B 103, 4508 (1999), doi:10.1021/jp984742e
  (CH Lennard-Jones; CHx-CH-CHy bending 112 deg; the CHx-CH2-CH-CHy torsion, see
  :data:`TRAPPE_TORSION_K`);
* C. D. Wick, M. G. Martin, J. I. Siepmann, J. Phys. Chem. B 104, 8008 (2000),
  doi:10.1021/jp001044x (aromatic CH and substituted C; rigid planar ring, 1.40 A).

Lennard-Jones acts between sites four or more bonds apart (1-2, 1-3 and 1-4 excluded, counted
over the bond graph with the ring bonds; :meth:`Polystyrene.create_system` rebuilds the exclusions
so, because OpenMM's ``ForceField`` would give each virtual site its parent atom's exclusions),
with Lorentz-Berthelot mixing and no cut-off; there are no charges. All bonds are constrained (TraPPE
fixes bond lengths). Choices that the papers do not make for polystyrene, stated in the XML:
the phenyl C(aro) counts as a CHx site in the backbone bending and torsion terms; rotation of the
ring about CH-C(aro) has no torsion term (only Lennard-Jones); the rigid ring is three massive
sites (CG, CE1, CE2, each a third of the ring mass, held by a constrained triangle) and three
OpenMM virtual sites (CD1, CZ, CD2), which keeps the ring's mass, centre and inertia; the CH-C(aro)
bond stays on the ring's axis through two 120 deg harmonic angles and two trans torsions
``k (1 + cos phi)`` (both with TraPPE's bending constant, 62500 K) instead of a rigid
attachment; the torsion constant ``c0`` is dropped, so energies are the published ones minus
``c0`` per backbone-type torsion. ``tests/test_polystyrene.py`` checks OpenMM's energies against
the published parameters evaluated in NumPy (conformers and a backbone torsion scan).

Atom names and residues. Backbone CH ``CA``, CH2 ``CB``, end methyls ``CT``; phenyl ``CG``
(ipso), ``CD1``, ``CE1``, ``CZ``, ``CE2``, ``CD2``. Residues ``STB`` (first monomer, with the start
methyl), ``STY``, ``STE`` (last monomer, with the end methyl, no CH2).

Torsions and tacticity. The backbone ``B_0 .. B_2N`` (CH3, CH, CH2, CH, ..., CH, CH3) has
``2N - 2`` torsions ``B_i B_(i+1) B_(i+2) B_(i+3)``, all about CH-CH2 bonds, trans at 180 deg
(IUPAC sign, as mdtraj and PLUMED measure it). Torsions ``2k`` and ``2k + 1`` flank the CH2 of
diad ``k`` (monomers k and k + 1), the pair that the rotational-isomeric-state picture of vinyl
polymers labels tt, tg, gg. The configuration of each CH is the sign
``s = sign(((B_prev - CH) x (B_next - CH)) . (CG - CH))``: equal signs on both monomers make a
meso diad (isotactic chains), opposite signs a racemo diad (syndiotactic chains).

Features and labels. :func:`polystyrene_backbone_torsions` is the FeatureSpec of the backbone
torsions (sin/cos or raw); :func:`torsion_states` (T, G+, G-), :func:`diad_labels` (TT, TG, GG),
:func:`tt_fraction`, :func:`ttgg_fraction` and :func:`chain_state` (zigzag-rich, helix-rich
core sets) label frames for analysis. ``gmvae-cv simulate polystyrene --monomers N --steps S
--out DIR`` writes a trajectory; ``examples/polystyrene.py`` runs the whole GMVAE route.
"""

from __future__ import annotations

import io
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.checks import as_value, check_array, check_int
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json, atomic_write_text
from ._alanine_build import _place

__all__ = [
    "Polystyrene",
    "PolystyreneRun",
    "polystyrene_backbone_torsions",
    "backbone_torsion_atoms",
    "torsion_states",
    "diad_labels",
    "tt_fraction",
    "ttgg_fraction",
    "chain_state",
    "TORSION_STATE_NAMES",
    "DIAD_NAMES",
    "CHAIN_STATE_NAMES",
    "polystyrene_forcefield",
    "TACTICITIES",
    "CONFORMATIONS",
    "TRAPPE_TORSION_K",
    "RING_BOND_NM",
    "BACKBONE_BOND_NM",
]

TACTICITIES = ("syndiotactic", "isotactic", "atactic")
"""Stereochemistries :class:`Polystyrene` builds."""
CONFORMATIONS = ("zigzag", "helix")
"""Named start conformations: all-trans, and TTGG (diads alternately tt and gg)."""
TRAPPE_TORSION_K = (-251.06, 428.73, -111.85, 441.27)
"""``(c0, c1, c2, c3)`` in K of the TraPPE-UA CHx-CH2-CH-CHy torsion (Martin and Siepmann 1999),
``U = c0 + c1 (1 + cos phi) + c2 (1 - cos 2 phi) + c3 (1 + cos 3 phi)``."""
BACKBONE_BOND_NM = 0.154
"""TraPPE-UA CHx-CHy and CHx-C(aro) bond length, nm."""
RING_BOND_NM = 0.140
"""TraPPE-UA aromatic C-C bond length, nm."""

TORSION_STATE_NAMES = {0: "T", 1: "G+", 2: "G-"}
"""Labels of :func:`torsion_states`: trans ``|phi| >= 120 deg``, gauche+ ``0 <= phi < 120``,
gauche- ``-120 < phi < 0`` (degrees, IUPAC sign)."""
DIAD_NAMES = {0: "TT", 1: "TG", 2: "GG"}
"""Labels of :func:`diad_labels` (TG includes GT; GG includes g+g- as well as g+g+, g-g-)."""
CHAIN_STATE_NAMES = {0: "zigzag-rich", 1: "helix-rich", -1: "other"}
"""Labels of :func:`chain_state`."""

_ANGLE_CH_DEG = 112.0
_ANGLE_CH2_DEG = 114.0
_GAUCHE_DEG = -60.0
_RING_NAMES = ("CG", "CD1", "CE1", "CZ", "CE2", "CD2")  # around the ring, CG the ipso carbon
_RING_REAL = ("CG", "CE1", "CE2")
_RING_VIRTUAL = ("CD1", "CZ", "CD2")
_KB = 0.008314462618  # kJ/mol/K
_PROBE_PLATFORMS = ("Reference", "CPU")


def polystyrene_forcefield() -> Path:
    """Path of the bundled TraPPE-UA polystyrene force field (OpenMM ``ForceField`` XML)."""
    return Path(str(resources.files("gmvae_cv") / "data" / "polystyrene-trappe-ua.xml"))


def _chirality(n_monomers: int, tacticity: str, seed: int) -> np.ndarray:
    if tacticity == "isotactic":
        return np.ones(n_monomers, dtype=np.int64)
    if tacticity == "syndiotactic":
        return np.where(np.arange(n_monomers) % 2 == 0, 1, -1).astype(np.int64)
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([1, -1], dtype=np.int64), size=n_monomers)


def _start_torsions(n_monomers: int, conformation: Any) -> np.ndarray:
    n_tor = 2 * n_monomers - 2
    if isinstance(conformation, str):
        if conformation == "zigzag":
            return np.full(n_tor, 180.0)
        if conformation == "helix":
            # diads alternately tt and g-g- (-60 deg): ... T T G G T T G G ...; for the syndiotactic
            # chain built here (first CH +1) this register and sign minimise lowest (-71 vs -55 kJ/mol)
            pairs = [(180.0, 180.0) if k % 2 == 0 else (_GAUCHE_DEG, _GAUCHE_DEG) for k in range(n_monomers - 1)]
            return np.array([t for p in pairs for t in p])
        raise GMVAEInputError(
            f"'conformation' is {conformation!r}, expected one of {list(CONFORMATIONS)} or {n_tor} backbone torsions in degrees"
        )
    tor = np.asarray(conformation, dtype=float)
    if tor.shape != (n_tor,) or not np.all(np.isfinite(tor)):
        raise GMVAEInputError(
            f"'conformation' has shape {tor.shape}, expected {n_tor} finite backbone torsions in degrees "
            f"(2 n_monomers - 2 for n_monomers = {n_monomers}) or one of {list(CONFORMATIONS)}"
        )
    return tor


def _backbone_positions(torsions_deg: np.ndarray) -> np.ndarray:
    """Backbone ``B_0 .. B_2N`` (nm) from internal coordinates: 0.154 nm bonds, TraPPE angles."""
    n_back = len(torsions_deg) + 3
    pos = np.zeros((n_back, 3))
    b = BACKBONE_BOND_NM
    pos[1] = (b, 0.0, 0.0)
    a1 = np.radians(_ANGLE_CH_DEG)  # angle at B_1 (a CH)
    pos[2] = pos[1] + b * np.array([-np.cos(a1), np.sin(a1), 0.0])
    for i in range(3, n_back):
        angle = _ANGLE_CH_DEG if (i - 1) % 2 == 1 else _ANGLE_CH2_DEG  # angle at B_(i-1)
        pos[i] = _place(pos[i - 3], pos[i - 2], pos[i - 1], b, angle, torsions_deg[i - 3])
    return pos


def _ring_positions(ch: np.ndarray, prev: np.ndarray, nxt: np.ndarray, sign: int) -> np.ndarray:
    """The six ring sites (order :data:`_RING_NAMES`) of the phenyl on backbone CH ``ch``."""
    u1 = (prev - ch) / np.linalg.norm(prev - ch)
    u2 = (nxt - ch) / np.linalg.norm(nxt - ch)
    bis = (u1 + u2) / np.linalg.norm(u1 + u2)
    n = np.cross(u1, u2)
    n /= np.linalg.norm(n)
    half = np.radians(54.75)  # half the tetrahedral angle: substituent between the two backbone bonds
    d = -np.cos(half) * bis + sign * np.sin(half) * n
    d /= np.linalg.norm(d)
    p = np.cross(d, u2 - u1)  # ring plane across the local chain direction
    p /= np.linalg.norm(p)
    ipso = ch + BACKBONE_BOND_NM * d
    centre = ipso + RING_BOND_NM * d
    ang = np.radians(60.0 * np.arange(6))
    return centre + RING_BOND_NM * (-np.cos(ang)[:, None] * d + np.sin(ang)[:, None] * p)


def _build(n_monomers: int, chirality: np.ndarray, torsions_deg: np.ndarray):
    """Topology, positions (nm), backbone indices and ring indices of the chain."""
    from openmm import app

    carbon = app.Element.getBySymbol("C")
    backbone = _backbone_positions(torsions_deg)
    top = app.Topology()
    chain = top.addChain(id="A")
    pos: list[np.ndarray] = []
    back_idx = np.zeros(2 * n_monomers + 1, dtype=np.int64)
    ring_idx = np.zeros((n_monomers, 6), dtype=np.int64)
    atoms: dict[int, Any] = {}  # backbone position -> openmm atom
    ring_atoms: list[list[Any]] = []

    def add(name, res, xyz, bpos=None):
        atom = top.addAtom(name, carbon, res)
        pos.append(np.asarray(xyz, dtype=float))
        if bpos is not None:
            back_idx[bpos] = atom.index
            atoms[bpos] = atom
        return atom

    for k in range(n_monomers):
        name = "STB" if k == 0 else ("STE" if k == n_monomers - 1 else "STY")
        res = top.addResidue(name, chain, id=str(k + 1))
        ca = 2 * k + 1
        if k == 0:
            add("CT", res, backbone[0], 0)
        add("CA", res, backbone[ca], ca)
        if k == n_monomers - 1:
            add("CT", res, backbone[ca + 1], ca + 1)
        else:
            add("CB", res, backbone[ca + 1], ca + 1)
        ring_xyz = _ring_positions(backbone[ca], backbone[ca - 1], backbone[ca + 1], int(chirality[k]))
        ring = [add(nm, res, xyz) for nm, xyz in zip(_RING_NAMES, ring_xyz)]
        ring_idx[k] = [a.index for a in ring]
        ring_atoms.append(ring)
    for i in range(len(back_idx) - 1):
        top.addBond(atoms[i], atoms[i + 1])
    for k, ring in enumerate(ring_atoms):
        top.addBond(atoms[2 * k + 1], ring[0])
        for j in range(6):
            top.addBond(ring[j], ring[(j + 1) % 6])
    return top, np.array(pos), back_idx, ring_idx


def _forcefield_templates(path: Path) -> dict[str, dict[str, str]]:
    """``{residue name: {atom name: type}}`` of an OpenMM force-field XML, with its checks."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise GMVAEInputError(f"{path}: cannot read as a force-field XML ({exc})") from None
    types = {t.get("name") for t in root.iter("Type")}
    nonbonded = {a.get("type") for f in root.iter("NonbondedForce") for a in f.iter("Atom")}
    templates: dict[str, dict[str, str]] = {}
    for res in root.iter("Residue"):
        atoms = {a.get("name"): a.get("type") for a in res.iter("Atom")}
        for aname, atype in atoms.items():
            if atype not in types:
                raise GMVAEInputError(
                    f"{path}: residue template {res.get('name')!r} gives atom {aname!r} the type {atype!r}, "
                    f"which the file's <AtomTypes> does not define"
                )
            if atype not in nonbonded:
                raise GMVAEInputError(
                    f"{path}: atom type {atype!r} (atom {aname!r} of residue template {res.get('name')!r}) "
                    "has no <NonbondedForce> entry, expected Lennard-Jones parameters for every type"
                )
        templates[res.get("name")] = atoms
    return templates


def _check_coverage(path: Path, topology: Any) -> None:
    """Raise naming the first atom of ``topology`` that the force field ``path`` does not cover."""
    templates = _forcefield_templates(path)
    for res in topology.residues():
        if res.name not in templates:
            first = next(iter(res.atoms()))
            raise GMVAEInputError(
                f"{path}: has no residue template {res.name!r}, so atom {first.name!r} (index {first.index}, "
                f"residue {res.name}{res.id}) is not covered; the file defines {sorted(templates)}"
            )
        for atom in res.atoms():
            if atom.name not in templates[res.name]:
                raise GMVAEInputError(
                    f"{path}: residue template {res.name!r} has no atom {atom.name!r}, so atom {atom.name!r} "
                    f"(index {atom.index}, residue {res.name}{res.id}) is not covered; expected every atom "
                    f"of the chain (template atoms: {sorted(templates[res.name])})"
                )


@dataclass
class PolystyreneRun:
    """What :meth:`Polystyrene.simulate` wrote.

    Attributes
    ----------
    trajectory, topology, metadata, state_log : Path
        ``traj.dcd``, ``topology.pdb``, ``simulation.json``, ``state.csv`` in the output folder.
    platform : str
        OpenMM platform used.
    steps_per_second : float
        Measured production speed.
    n_frames : int
        Frames in the trajectory.
    temperature_mean : float
        Mean instantaneous temperature over the saved frames, K.
    """

    trajectory: Path
    topology: Path
    metadata: Path
    state_log: Path
    platform: str
    steps_per_second: float
    n_frames: int
    temperature_mean: float


class Polystyrene:
    """One polystyrene chain in vacuum, TraPPE-UA united atoms, built in the package.

    Parameters
    ----------
    n_monomers : int
        Styrene units N (at least 3; default 10). The chain has 8N + 1 sites and 2N - 2 backbone
        torsions.
    tacticity : {'syndiotactic', 'isotactic', 'atactic'}
        Stereochemistry (see the module docstring); atactic draws each centre with ``seed``.
    conformation : {'zigzag', 'helix'} or sequence of float
        Start backbone torsions: all trans (180 deg), TTGG (diads alternately tt and g-g-, -60 deg),
        or ``2N - 2`` torsions in degrees.
    seed : int
        Seeds the atactic draw.
    forcefield : path, optional
        OpenMM force-field XML; default :func:`polystyrene_forcefield`. It must cover every atom
        (residues ``STB``/``STY``/``STE`` with the atom names of the module docstring) and make
        ``CD1``, ``CZ``, ``CD2`` virtual sites.
    minimize : bool
        Minimise the built structure (L-BFGS, constraints on, Reference platform); it stays in
        the start conformation's basin.

    Attributes
    ----------
    topology : openmm.app.Topology
    positions : ndarray, shape ``(8N + 1, 3)``
        nm, float64, virtual sites included.
    chirality : ndarray of int, shape ``(N,)``
        Configuration sign of each backbone CH (+1/-1).
    backbone : ndarray of int, shape ``(2N + 1,)``
        Atom indices of ``B_0 .. B_2N``.
    rings : ndarray of int, shape ``(N, 6)``
        Atom indices of each phenyl, in the order CG, CD1, CE1, CZ, CE2, CD2.
    backbone_torsions : ndarray of int, shape ``(2N - 2, 4)``
        Atom quadruples of the backbone torsions.

    Examples
    --------
    >>> ps = Polystyrene(5, minimize=False)
    >>> ps.topology.getNumAtoms(), ps.backbone_torsions.shape
    (41, (8, 4))
    >>> ps.chirality.tolist()
    [1, -1, 1, -1, 1]
    """

    def __init__(
        self,
        n_monomers: int = 10,
        tacticity: str = "syndiotactic",
        *,
        conformation: Any = "zigzag",
        seed: int = 0,
        forcefield: str | os.PathLike | None = None,
        minimize: bool = True,
    ) -> None:
        n = check_int(n_monomers, "n_monomers")
        if n < 3:
            raise GMVAEInputError(f"'n_monomers' is {n}, expected at least 3 styrene units")
        if tacticity not in TACTICITIES:
            raise GMVAEInputError(f"'tacticity' is {tacticity!r}, expected one of {', '.join(repr(t) for t in TACTICITIES)}")
        self.n_monomers = n
        self.tacticity = tacticity
        self.seed = check_int(seed, "seed", minimum=0)
        self.forcefield_path = Path(forcefield) if forcefield is not None else polystyrene_forcefield()
        if not self.forcefield_path.is_file():
            raise GMVAEInputError(f"{self.forcefield_path}: file not found (expected an OpenMM force-field XML)")
        self.chirality = _chirality(n, tacticity, self.seed)
        torsions = _start_torsions(n, conformation)
        self.topology, self.positions, self.backbone, self.rings = _build(n, self.chirality, torsions)
        b = self.backbone
        self.backbone_torsions = np.stack([b[:-3], b[1:-2], b[2:-1], b[3:]], axis=1)
        _check_coverage(self.forcefield_path, self.topology)
        if minimize:
            self.positions = self.minimized_positions()

    # -- topology helpers
    @property
    def mdtraj_topology(self):
        """The topology as an :class:`mdtraj.Topology`."""
        import mdtraj as md

        return md.Topology.from_openmm(self.topology)

    def to_mdtraj(self):
        """The structure as a one-frame :class:`mdtraj.Trajectory`."""
        import mdtraj as md

        return md.Trajectory(self.positions[None].astype(np.float32), self.mdtraj_topology)

    # -- the system
    def create_system(self):
        """The OpenMM system: the force field, ``NoCutoff``, all bonds and ring triangles constrained.

        The Lennard-Jones exclusions are rebuilt from the bond graph (1-2, 1-3, 1-4 excluded,
        TraPPE's rule), whatever 1-4 scales the force-field file states.

        Returns
        -------
        openmm.System
            With a ``CMMotionRemover``; ``CD1``, ``CZ``, ``CD2`` of each ring are virtual sites.
        """
        from openmm import app

        try:
            ff = app.ForceField(str(self.forcefield_path))
            system = ff.createSystem(self.topology, nonbondedMethod=app.NoCutoff, constraints=app.AllBonds)
        except Exception as exc:  # OpenMM raises ValueError/KeyError for templates it cannot apply
            raise GMVAEInputError(f"{self.forcefield_path}: cannot parameterise the chain ({exc})") from None
        atoms = list(self.topology.atoms())
        side = np.sqrt(3.0) * RING_BOND_NM
        for ring in self.rings:
            for j, name in zip(ring, _RING_NAMES):
                if system.isVirtualSite(int(j)) != (name in _RING_VIRTUAL):
                    a = atoms[int(j)]
                    want = "a virtual site" if name in _RING_VIRTUAL else "a massive site"
                    raise GMVAEInputError(
                        f"{self.forcefield_path}: atom {a.name!r} (index {a.index}, residue {a.residue.name}{a.residue.id}) "
                        f"is not {want}; expected the rigid ring of three massive sites CG, CE1, CE2 and "
                        f"virtual sites CD1, CZ, CD2"
                    )
            cg, ce1, ce2 = (int(ring[_RING_NAMES.index(x)]) for x in _RING_REAL)
            for i, j in ((cg, ce1), (ce1, ce2), (ce2, cg)):
                system.addConstraint(i, j, side)
        _exclusions_from_bonds(system, self.topology)
        return system

    def minimized_positions(self, *, tolerance: float = 1.0) -> np.ndarray:
        """Positions (nm) after L-BFGS minimisation with constraints (Reference platform).

        Parameters
        ----------
        tolerance : float
            kJ/mol/nm.
        """
        import openmm
        from openmm import unit

        system = self.create_system()
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(self.positions)
        ctx.applyConstraints(1e-8)
        ctx.computeVirtualSites()
        openmm.LocalEnergyMinimizer.minimize(ctx, tolerance, 0)
        ctx.applyConstraints(1e-10)  # the minimiser enforces constraints only loosely
        ctx.computeVirtualSites()
        pos = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return np.asarray(pos, dtype=np.float64)

    def backbone_torsion_angles(self, positions: Any = None) -> np.ndarray:
        """Backbone torsions (rad, in (-pi, pi]) of ``positions`` (default the structure), ``(2N - 2,)``."""
        xyz = self.positions if positions is None else np.asarray(positions, dtype=float)
        return _dihedrals(xyz[None], self.backbone_torsions)[0]

    # -- dynamics
    def simulate(
        self,
        n_steps: int,
        report_interval: int,
        out_dir: str | os.PathLike,
        *,
        temperature: Any = 300.0,
        timestep: Any = 0.002,
        friction: Any = 1.0,
        seed: int = 0,
        platform: Optional[str] = None,
        equilibration_steps: int = 5000,
        progress: Optional[Callable] = None,
    ) -> PolystyreneRun:
        """Langevin dynamics; writes ``traj.dcd``, ``topology.pdb``, ``state.csv``, ``simulation.json``.

        Parameters
        ----------
        n_steps : int
            Integration steps (a multiple of ``report_interval``).
        report_interval : int
            Steps between saved frames (the first after ``report_interval`` steps).
        out_dir : path
            Output folder (created); files are written under temporary names and renamed.
        temperature : float or Quantity
            K (default 300).
        timestep : float or Quantity
            ps (default 0.002).
        friction : float or Quantity
            1/ps (default 1).
        seed : int
            Seeds the velocities and the integrator (OpenMM seed ``seed + 1``).
        platform : {'Reference', 'CPU', ...}, optional
            Default: the faster of Reference and CPU in a short timed probe (recorded).
        equilibration_steps : int
            Unsaved steps before the first frame (default 5000).
        progress : callable, optional
            tqdm-like class, ``progress(total=n_steps)``, updated per frame.

        Returns
        -------
        PolystyreneRun
        """
        import openmm
        from openmm import app, unit

        from .._core.versions import versions
        from .alanine import _probe_speed

        n_steps = check_int(n_steps, "n_steps", minimum=1)
        report_interval = check_int(report_interval, "report_interval", minimum=1)
        if n_steps % report_interval:
            raise GMVAEInputError(f"'n_steps' is {n_steps}, expected a multiple of report_interval = {report_interval}")
        seed = check_int(seed, "seed", minimum=0)
        equilibration_steps = check_int(equilibration_steps, "equilibration_steps", minimum=0)
        temperature_K = as_value(temperature, unit.kelvin, "temperature")
        timestep_ps = as_value(timestep, unit.picosecond, "timestep")
        friction_ps = as_value(friction, unit.picosecond**-1, "friction")
        omm_seed = seed % 2_147_483_646 + 1
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

        system = self.create_system()
        n_massive = sum(system.getParticleMass(i).value_in_unit(unit.dalton) > 0 for i in range(system.getNumParticles()))
        dof = 3 * n_massive - system.getNumConstraints() - 3  # the force field adds a CMMotionRemover

        def make_integrator():
            integ = openmm.LangevinMiddleIntegrator(temperature_K, friction_ps, timestep_ps)
            integ.setRandomNumberSeed(omm_seed)
            return integ

        available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
        probe: dict[str, float] = {}
        if platform is None:
            for name in _PROBE_PLATFORMS:
                if name in available:
                    probe[name] = _probe_speed(system, self.positions, make_integrator(), name)
            platform_name = max(probe, key=probe.get)
            chosen_by = "measurement (short timed probe of each platform)"
        else:
            if platform not in available:
                raise GMVAEInputError(f"'platform' is {platform!r}, expected one of {sorted(available)}")
            platform_name, chosen_by = platform, "user"

        integrator = make_integrator()
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform_name))
        context.setPositions(self.positions)
        context.setVelocitiesToTemperature(temperature_K, omm_seed)
        if equilibration_steps:
            integrator.step(equilibration_steps)

        n_frames = n_steps // report_interval
        log = np.zeros((n_frames, 5))
        tmp_dcd = out / f".traj.dcd.{os.getpid()}.tmp"
        bar = progress(total=n_steps) if progress is not None else None
        t0 = time.perf_counter()
        try:
            with open(tmp_dcd, "wb") as fh:
                dcd = app.DCDFile(fh, self.topology, timestep_ps * unit.picosecond, report_interval, report_interval)
                for frame in range(n_frames):
                    integrator.step(report_interval)
                    state = context.getState(getPositions=True, getEnergy=True)
                    pos = state.getPositions(asNumpy=True)
                    epot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                    ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
                    step = (frame + 1) * report_interval
                    if not (np.isfinite(epot) and np.all(np.isfinite(pos.value_in_unit(unit.nanometer)))):
                        raise FloatingPointError(
                            f"polystyrene simulation diverged by step {step} (energy {epot}); "
                            f"reduce the timestep ({timestep_ps} ps)"
                        )
                    dcd.writeModel(pos)
                    log[frame] = (step, step * timestep_ps, epot, ekin, 2.0 * ekin / (dof * _KB))
                    if bar is not None:
                        bar.update(report_interval)
                fh.flush()
                os.fsync(fh.fileno())
            wall = time.perf_counter() - t0
            os.replace(tmp_dcd, out / "traj.dcd")
        finally:
            if bar is not None and hasattr(bar, "close"):
                bar.close()
            if tmp_dcd.exists():
                tmp_dcd.unlink()

        buf = io.StringIO()
        app.PDBFile.writeFile(self.topology, self.positions * unit.nanometer, buf, keepIds=True)
        atomic_write_text(out / "topology.pdb", buf.getvalue())
        header = "step,time (ps),potential energy (kJ/mol),kinetic energy (kJ/mol),temperature (K)"
        text = header + "\n" + "\n".join(
            f"{int(r[0])},{r[1]:.6f},{r[2]:.6f},{r[3]:.6f},{r[4]:.4f}" for r in log
        ) + "\n"
        atomic_write_text(out / "state.csv", text)
        speed = n_steps / wall if wall > 0 else float("inf")
        meta = {
            "system": f"polystyrene, {self.n_monomers} monomers, {self.tacticity}, vacuum, TraPPE-UA united atoms",
            "n_monomers": self.n_monomers,
            "tacticity": self.tacticity,
            "chirality": self.chirality.tolist(),
            "forcefield": str(self.forcefield_path),
            "nonbonded_method": "NoCutoff",
            "constraints": "AllBonds + ring triangles",
            "integrator": "LangevinMiddleIntegrator",
            "temperature_K": temperature_K,
            "timestep_ps": timestep_ps,
            "friction_per_ps": friction_ps,
            "n_steps": n_steps,
            "report_interval_steps": report_interval,
            "frame_interval_ps": report_interval * timestep_ps,
            "n_frames": n_frames,
            "first_frame_step": report_interval,
            "seed": seed,
            "openmm_seed": omm_seed,
            "equilibration_steps": equilibration_steps,
            "degrees_of_freedom": int(dof),
            "platform": {"name": platform_name, "chosen_by": chosen_by, "probe_steps_per_s": probe},
            "performance": {"wall_s": wall, "steps_per_s": speed, "ns_per_day": speed * timestep_ps * 86.4},
            "temperature_summary_K": {"mean": float(log[:, 4].mean()), "std": float(log[:, 4].std())},
            "files": {"trajectory": "traj.dcd", "topology": "topology.pdb", "state_log": "state.csv"},
            "units": {"length": "nm (DCD stores Angstrom; mdtraj/OpenMM convert)", "time": "ps", "energy": "kJ/mol"},
            "versions": versions("openmm", "mdtraj"),
        }
        atomic_write_json(out / "simulation.json", meta)
        return PolystyreneRun(
            trajectory=out / "traj.dcd",
            topology=out / "topology.pdb",
            metadata=out / "simulation.json",
            state_log=out / "state.csv",
            platform=platform_name,
            steps_per_second=speed,
            n_frames=n_frames,
            temperature_mean=float(log[:, 4].mean()),
        )


def _exclusions_from_bonds(system: Any, topology: Any) -> None:
    """Make the Lennard-Jones exclusions exactly the 1-2, 1-3 and 1-4 pairs of the bond graph.

    OpenMM's ``ForceField`` gives each virtual site the exclusions of its parent atom (as for
    lone pairs); TraPPE-UA counts bonds, ring bonds included. The NonbondedForce is replaced by
    one with the same particle parameters and exceptions from :meth:`createExceptionsFromBonds`
    (both 1-4 scales 0).
    """
    import openmm

    k = next(i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.NonbondedForce))
    old = system.getForce(k)
    new = openmm.NonbondedForce()
    new.setNonbondedMethod(old.getNonbondedMethod())
    new.setCutoffDistance(old.getCutoffDistance())
    new.setUseDispersionCorrection(old.getUseDispersionCorrection())
    for i in range(old.getNumParticles()):
        new.addParticle(*old.getParticleParameters(i))
    new.createExceptionsFromBonds([(a.index, b.index) for a, b in topology.bonds()], 0.0, 0.0)
    new.setForceGroup(old.getForceGroup())
    system.removeForce(k)
    system.addForce(new)


def _dihedrals(xyz: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Dihedrals (rad, IUPAC sign) of ``quads`` ``(n, 4)`` in frames ``xyz`` ``(n_frames, n_atoms, 3)``."""
    p0, p1, p2, p3 = (xyz[:, quads[:, m]] for m in range(4))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1 = np.cross(b0, b1)
    n2 = np.cross(b1, b2)
    y = np.linalg.norm(b1, axis=-1) * np.sum(b0 * n2, axis=-1)
    return np.arctan2(y, np.sum(n1 * n2, axis=-1))


# ------------------------------------------------------------------------- features and labels
def backbone_torsion_atoms(topology: Any) -> np.ndarray:
    """Atom quadruples ``(2N - 2, 4)`` of the backbone torsions of a :class:`Polystyrene` topology.

    The backbone is found by residue order and atom names (``STB``: CT, CA, CB; ``STY``: CA, CB;
    ``STE``: CA, CT), so a PDB without CONECT records works too.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path
        A chain written by :meth:`Polystyrene.simulate` (``topology.pdb``) or built by it.
    """
    from ..features.topology import _as_mdtraj_topology

    top = _as_mdtraj_topology(topology)
    order = {"STB": ("CT", "CA", "CB"), "STY": ("CA", "CB"), "STE": ("CA", "CT")}
    residues = list(top.residues)
    if len(residues) < 3 or residues[0].name != "STB" or residues[-1].name != "STE":
        names = [r.name for r in residues[:4]]
        raise GMVAEInputError(
            f"'topology' has residues {names}{'...' if len(residues) > 4 else ''}, expected a polystyrene chain "
            "STB, STY..., STE (as gmvae_cv.systems.Polystyrene writes it)"
        )
    backbone = []
    for res in residues:
        want = order.get(res.name)
        if want is None:
            raise GMVAEInputError(f"'topology' residue {res.name}{res.resSeq} is not STB, STY or STE (a polystyrene chain)")
        for name in want:
            hits = [a.index for a in res.atoms if a.name == name]
            if len(hits) != 1:
                raise GMVAEInputError(
                    f"'topology' residue {res.name}{res.resSeq} has {len(hits)} atoms named {name!r}, expected 1"
                )
            backbone.append(hits[0])
    b = np.asarray(backbone, dtype=np.int64)
    return np.stack([b[:-3], b[1:-2], b[2:-1], b[3:]], axis=1)


def polystyrene_backbone_torsions(topology: Any, *, transform: str = "sincos", periodic: bool = True):
    """Sines and cosines of the ``2N - 2`` backbone torsions of a polystyrene chain.

    Parameters
    ----------
    topology : mdtraj.Topology, openmm.app.Topology or path
        A :class:`Polystyrene` topology (see :func:`backbone_torsion_atoms`).
    transform : {'sincos', 'raw'}
        ``'sincos'``: ``sin_t00, cos_t00, sin_t01, ...`` (``4N - 4`` features, dimensionless);
        ``'raw'``: ``t00, t01, ...`` in rad.
    periodic : bool
        The spec's periodic flag (vacuum runs have no box, so nothing is wrapped).

    Returns
    -------
    FeatureSpec
        Torsion ``tkk`` is backbone torsion ``k`` (atoms ``B_k .. B_(k+3)``); ``t(2j)``, ``t(2j+1)``
        flank the CH2 of diad ``j``.

    Examples
    --------
    >>> spec = polystyrene_backbone_torsions(Polystyrene(4, minimize=False).topology)
    >>> spec.n_features, spec.names[:3]
    (12, ['sin_t00', 'cos_t00', 'sin_t01'])
    """
    from ..features import FeatureSpec, torsion, torsion_sincos
    from ..features.topology import _as_mdtraj_topology, _atom_label

    top = _as_mdtraj_topology(topology)
    quads = backbone_torsion_atoms(top)
    if transform == "sincos":
        feats = [f for k, q in enumerate(quads) for f in torsion_sincos(*(int(a) for a in q), name=f"t{k:02d}")]
    elif transform == "raw":
        feats = [torsion(*(int(a) for a in q), name=f"t{k:02d}") for k, q in enumerate(quads)]
    else:
        raise GMVAEInputError(f"'transform' is {transform!r}, expected 'sincos' or 'raw'")
    labels = {int(a): _atom_label(top.atom(int(a))) for a in np.unique(quads)}
    n_mono = (len(quads) + 2) // 2
    return FeatureSpec(
        feats, top.n_atoms, periodic=periodic, atom_labels=labels,
        description=f"polystyrene ({n_mono} monomers): {len(quads)} backbone torsions ({transform})",
    )


def _torsion_array(phi: Any, name: str = "phi", *, even: bool = True) -> np.ndarray:
    arr = check_array(phi, name)
    if arr.ndim not in (1, 2):
        raise GMVAEInputError(f"'{name}' has shape {arr.shape}, expected (n_torsions,) or (n_frames, n_torsions)")
    arr = arr[None] if arr.ndim == 1 else arr
    if even and (arr.shape[1] < 2 or arr.shape[1] % 2):
        raise GMVAEInputError(
            f"'{name}' has {arr.shape[1]} torsions per frame, expected an even number 2N - 2 >= 2 (backbone torsions in chain order)"
        )
    if arr.size and np.max(np.abs(arr)) > 2 * np.pi + 1e-6:
        raise GMVAEInputError(f"'{name}' has values beyond 2 pi, expected radians (convert degrees with np.radians)")
    return arr


def torsion_states(phi: Any) -> np.ndarray:
    """Rotational state of each backbone torsion: 0 = T, 1 = G+, 2 = G- (:data:`TORSION_STATE_NAMES`).

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, n_torsions)`` or ``(n_torsions,)``
        Backbone torsions in rad (e.g. :meth:`Polystyrene.backbone_torsion_angles` or the
        ``'raw'`` :func:`polystyrene_backbone_torsions` features).

    Returns
    -------
    ndarray of int, shape ``(n_frames, n_torsions)``

    Examples
    --------
    >>> torsion_states(np.radians([180.0, -170.0, 65.0, -60.0])).tolist()
    [[0, 0, 1, 2]]
    """
    arr = _torsion_array(phi, even=False)
    deg = np.degrees(np.angle(np.exp(1j * arr)))  # wrapped to (-180, 180]
    states = np.zeros(arr.shape, dtype=np.int64)
    states[(deg >= 0) & (deg < 120)] = 1
    states[(deg < 0) & (deg > -120)] = 2
    return states


def diad_labels(phi: Any) -> np.ndarray:
    """Each diad's torsion pair (torsions ``2j``, ``2j + 1``) as 0 = TT, 1 = TG/GT, 2 = GG.

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, 2N - 2)`` or ``(2N - 2,)``
        Backbone torsions in rad, in chain order.

    Returns
    -------
    ndarray of int, shape ``(n_frames, N - 1)``
        See :data:`DIAD_NAMES`.

    Examples
    --------
    >>> diad_labels(np.radians([180, 180, -60, -60, 180, 60])).tolist()
    [[0, 2, 1]]
    """
    gauche = torsion_states(_torsion_array(phi)) > 0
    return gauche[:, 0::2].astype(np.int64) + gauche[:, 1::2]


def tt_fraction(phi: Any) -> np.ndarray:
    """Fraction of the chain's diads in the zigzag state TT, per frame, shape ``(n_frames,)``.

    Examples
    --------
    >>> tt_fraction(np.radians([180, 180, -60, -60, 180, 180])).tolist()
    [0.6666666666666666]
    """
    return np.mean(diad_labels(phi) == 0, axis=1)


def ttgg_fraction(phi: Any) -> np.ndarray:
    """Fraction of neighbouring diad pairs that form a TTGG helix stretch, per frame.

    A pair of diads ``(j, j + 1)`` counts when one is TT and the other GG with both gauche of
    one sign (g+g+ or g-g-; the s(2/1)2 helix of sPS is ...tt g-g- tt g-g-... or its mirror).
    An ideal TTGG helix gives 1, the all-trans zigzag 0.

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, 2N - 2)`` or ``(2N - 2,)``
        Backbone torsions in rad, at least 4 (two diads).

    Returns
    -------
    ndarray, shape ``(n_frames,)``

    Examples
    --------
    >>> ttgg_fraction(np.radians([180, 180, -60, -60, 180, 180, -60, -60])).tolist()
    [1.0]
    >>> ttgg_fraction(np.radians([180, 180, 60, -60, 180, 180])).tolist()  # g+g- is no helix
    [0.0]
    """
    st = torsion_states(_torsion_array(phi))
    if st.shape[1] < 4:
        raise GMVAEInputError(f"'phi' has {st.shape[1]} torsions per frame, expected at least 4 (two diads) for TTGG")
    tt = (st[:, 0::2] == 0) & (st[:, 1::2] == 0)
    gg = (st[:, 0::2] > 0) & (st[:, 0::2] == st[:, 1::2])
    pair = (tt[:, :-1] & gg[:, 1:]) | (gg[:, :-1] & tt[:, 1:])
    return np.mean(pair, axis=1)


def chain_state(phi: Any, *, zigzag: float = 0.75, helix: float = 0.6) -> np.ndarray:
    """Core-set label per frame: 0 = zigzag-rich, 1 = helix-rich, -1 = neither.

    Zigzag-rich: :func:`tt_fraction` >= ``zigzag``; helix-rich: :func:`ttgg_fraction` >=
    ``helix``; a frame that meets both (possible on short chains) or neither is -1. For 10
    monomers (9 diads, 8 diad pairs) the defaults ask for 7 of 9 diads TT, or 5 of 8 pairs TTGG.
    Count transitions between the two cores, skipping frames labelled -1, so that recrossings of
    the barrier region do not count.

    Parameters
    ----------
    phi : array_like, shape ``(n_frames, 2N - 2)``
        Backbone torsions in rad.
    zigzag, helix : float
        Thresholds in (0, 1].

    Returns
    -------
    ndarray of int, shape ``(n_frames,)``

    Examples
    --------
    >>> zig, hel = [np.pi] * 8, np.radians([180, 180, -60, -60] * 2)
    >>> chain_state(np.array([zig, hel])).tolist()
    [0, 1]
    """
    for name, value in (("zigzag", zigzag), ("helix", helix)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise GMVAEInputError(f"'{name}' is {value!r}, expected a fraction in (0, 1]")
    is_zig, is_hel = tt_fraction(phi) >= zigzag, ttgg_fraction(phi) >= helix
    out = np.full(is_zig.shape, -1, dtype=np.int64)
    out[is_zig & ~is_hel] = 0
    out[is_hel & ~is_zig] = 1
    return out
