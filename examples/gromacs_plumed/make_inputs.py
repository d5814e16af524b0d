"""Write the GROMACS inputs of alanine dipeptide that match the project's OpenMM system.

    python examples/gromacs_plumed/make_inputs.py            # rewrites vacuum/ and water/
    python examples/gromacs_plumed/make_inputs.py --check    # exit 1 if a committed file would change

The topologies are the project's OpenMM systems converted with ParmEd (``pip install parmed``,
the ``gromacs`` extra of this package), so the atom order is the one of
``gmvae_cv/data/alanine-dipeptide.pdb`` (the export's ``plumed.dat`` runs on them unchanged) and the
parameters are OpenMM's amber14 (ff14SB, TIP3P) rather than a GROMACS port of Amber:

``vacuum/``
    ACE-ALA-NME, 22 atoms, from ``AlanineDipeptide().create_system`` (OpenMM: ``NoCutoff``). GROMACS
    2022 has no cut-off-free scheme any more (the group scheme, which allowed ``pbc = no``, was
    removed in 2020), so the molecule sits in a periodic 6 nm box with plain cut-offs of 2.5 nm and
    no modifiers: every intramolecular pair (the molecule spans < 1 nm) interacts with the full
    Coulomb and Lennard-Jones potential, and no periodic image comes within 2.5 nm of the molecule
    (image distance >= 6 - 1 = 5 nm). On ``conf.gro`` GROMACS 2022.5 gives OpenMM's energy
    (-90.1251 kJ/mol both) and forces (relative difference 9e-6, single precision);
    ``tests/deploy/test_gromacs.py`` checks this with any GROMACS.
``water/``
    The same molecule with 225 TIP3P waters (697 atoms, cubic box 2.068 nm), built as in
    ``benchmarks/bias_speed.py`` (``Modeller.addSolvent(..., numAdded=225)``); PME, cut-offs
    0.9 nm, long-range dispersion correction (OpenMM's defaults), SETTLE for water. The
    positions are minimised and equilibrated for 20 ps (NVT, 300 K) in OpenMM before writing
    ``conf.gro``, so that ``md.mdp`` starts without an energy minimisation.
    On ``conf.gro`` (flexible water) the GROMACS energy is -8531.07 kJ/mol against OpenMM's
    -8530.75 (PME at ewald-rtol 1e-5 in both), forces within 4e-4 relative (1e-4 on the solute).

Both ``md.mdp`` files: Langevin dynamics (``integrator = sd``, ``tau-t = 1 ps`` = OpenMM's friction
1/ps) at 300 K, 2 fs, h-bond constraints (LINCS; OpenMM's ``HBonds``), velocities generated at
300 K, xtc every 50 steps (0.1 ps), 100 ps. ``gmx grompp -f md.mdp -c conf.gro -p topol.top -o
run.tpr`` needs no ``-maxwarn`` for either.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VACUUM_BOX_NM = 6.0
N_WATERS = 225
TEMPERATURE_K = 300.0
EQUILIBRATION_STEPS = 10000  # 20 ps at 2 fs
SEED = 2022

_COMMON_MDP = """\
; Langevin dynamics at 300 K (tau-t = 1 ps: OpenMM's LangevinMiddleIntegrator with friction 1/ps)
integrator               = sd
dt                       = 0.002        ; ps
nsteps                   = 50000        ; 100 ps
tc-grps                  = System
tau-t                    = 1.0          ; ps
ref-t                    = 300          ; K (PLUMED's TEMP in plumed.dat must match)
ld-seed                  = -1
gen-vel                  = yes
gen-temp                 = 300
gen-seed                 = -1
; bonds to hydrogen constrained (OpenMM: constraints=HBonds)
constraints              = h-bonds
constraint-algorithm     = lincs
; output: xtc every 0.1 ps (all atoms), energies every 0.1 ps, no full-precision trajectory
nstxout                  = 0
nstvout                  = 0
nstfout                  = 0
nstxout-compressed       = 50
nstenergy                = 50
nstlog                   = 5000
nstcalcenergy            = 50
"""

_VACUUM_MDP = _COMMON_MDP + """\
; Vacuum: GROMACS 2022 needs periodic boundaries (Verlet scheme); a 6 nm box and 2.5 nm plain
; cut-offs without modifiers make every intramolecular pair interact fully and keep images away.
cutoff-scheme            = Verlet
pbc                      = xyz
comm-mode                = Linear
nstcomm                  = 100
coulombtype              = Cut-off
coulomb-modifier         = None
epsilon-rf               = 1
rcoulomb                 = 2.5
vdwtype                  = Cut-off
vdw-modifier             = None
rvdw                     = 2.5
DispCorr                 = no
"""

_WATER_MDP = _COMMON_MDP + """\
; TIP3P water, PME with 0.9 nm cut-offs, LJ cut at 0.9 nm without shift plus the long-range
; dispersion correction (OpenMM's PME system with its default useDispersionCorrection)
cutoff-scheme            = Verlet
pbc                      = xyz
coulombtype              = PME
rcoulomb                 = 0.9
fourierspacing           = 0.12
pme-order                = 4
ewald-rtol               = 1e-5
vdwtype                  = Cut-off
vdw-modifier             = None
rvdw                     = 0.9
DispCorr                 = EnerPres
"""


def _header(what: str) -> str:
    return (
        f"; {what}\n"
        "; Written by examples/gromacs_plumed/make_inputs.py (do not edit: rerun it).\n"
        "; gmx grompp -f md.mdp -c conf.gro -p topol.top -o run.tpr\n"
        "; gmx mdrun -s run.tpr -ntmpi 1 -plumed plumed.dat\n"
    )


def _to_parmed(topology, system, positions_nm: np.ndarray, box_nm: np.ndarray):
    import parmed

    struct = parmed.openmm.load_topology(topology, system, xyz=positions_nm * 10.0)  # Angstrom
    struct.box = [box_nm[0] * 10.0, box_nm[1] * 10.0, box_nm[2] * 10.0, 90.0, 90.0, 90.0]
    return struct


def _write_gromacs(struct, folder: Path, title: str) -> dict[str, str]:
    """topol.top and conf.gro text of a ParmEd structure (written in a scratch folder)."""
    import parmed

    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp) / "topol.top"
        gro = Path(tmp) / "conf.gro"
        parmed.gromacs.GromacsTopologyFile.from_structure(struct).write(str(top))
        parmed.gromacs.GromacsGroFile.write(struct, str(gro))
        top_text = top.read_text()
        gro_lines = gro.read_text().splitlines()
    # ParmEd's first comment lines carry its version, the user and the date: drop them (stable output)
    lines = top_text.splitlines()
    while lines and (lines[0].startswith(";") or not lines[0].strip()):
        lines.pop(0)
    top_body = "\n".join(lines)
    gro_lines[0] = title
    top_body = re.sub(r"\bsystem1\b", "dipeptide", top_body)  # ParmEd's name of the solute molecule type
    return {
        "topol.top": f"; {title}\n; Written by examples/gromacs_plumed/make_inputs.py from the OpenMM system with ParmEd.\n" + top_body.rstrip() + "\n",
        "conf.gro": "\n".join(gro_lines) + "\n",
    }


def vacuum_files() -> dict[str, str]:
    from gmvae_cv.systems import AlanineDipeptide

    ala = AlanineDipeptide()
    system = ala.create_system(constraints=None)  # all bonds with their parameters; mdp constrains h-bonds
    pos = np.asarray(ala.positions, dtype=np.float64)
    pos = pos - pos.mean(axis=0) + VACUUM_BOX_NM / 2.0
    box = np.full(3, VACUUM_BOX_NM)
    struct = _to_parmed(ala.topology, system, pos, box)
    files = _write_gromacs(struct, HERE / "vacuum", "alanine dipeptide (ACE-ALA-NME) in vacuum, amber14 ff14SB via ParmEd, 6 nm box")
    files["md.mdp"] = _header("alanine dipeptide in vacuum: 100 ps Langevin at 300 K") + _VACUUM_MDP
    return files


def water_files() -> dict[str, str]:
    import openmm
    from openmm import app, unit

    from gmvae_cv.systems import AlanineDipeptide

    ala = AlanineDipeptide()
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(ala.topology, ala.positions * unit.nanometer)
    modeller.addSolvent(ff, model="tip3p", numAdded=N_WATERS)
    top = modeller.topology
    # equilibrate as OpenMM runs it (HBonds, rigid water), then write that structure
    run_sys = ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    integ = openmm.LangevinMiddleIntegrator(TEMPERATURE_K, 1.0, 0.002)
    integ.setRandomNumberSeed(SEED)
    ctx = openmm.Context(run_sys, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(modeller.getPositions())
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 500)
    ctx.setVelocitiesToTemperature(TEMPERATURE_K, SEED)
    integ.step(EQUILIBRATION_STEPS)
    state = ctx.getState(getPositions=True, enforcePeriodicBox=True)  # whole molecules wrapped into the box
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = np.diag(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    # parameters from a system without constraints (ParmEd needs every bond's force constant;
    # water becomes SETTLE in the topology, h-bonds are constrained by md.mdp)
    param_sys = ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                constraints=None, rigidWater=False)
    struct = _to_parmed(top, param_sys, np.asarray(pos), box)
    n_wat = top.getNumResidues() - 3
    files = _write_gromacs(struct, HERE / "water",
                           f"alanine dipeptide + {n_wat} TIP3P waters, amber14 ff14SB via ParmEd, OpenMM-equilibrated 20 ps")
    files["md.mdp"] = _header(f"alanine dipeptide in {n_wat} TIP3P waters: 100 ps Langevin at 300 K, PME") + _WATER_MDP
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing (vacuum only: "
                    "the water equilibration depends on the CPU's floating point)")
    ap.add_argument("--only", choices=["vacuum", "water"], default=None)
    args = ap.parse_args(argv)
    from gmvae_cv._core.files import atomic_write_text

    sets = {"vacuum": vacuum_files, "water": water_files}
    names = [args.only] if args.only else (["vacuum"] if args.check else list(sets))
    status = 0
    for name in names:
        files = sets[name]()
        for fname, text in files.items():
            path = HERE / name / fname
            if args.check:
                if not path.is_file() or path.read_text() != text:
                    print(f"differs: {path}")
                    status = 1
            else:
                atomic_write_text(path, text)
                print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
