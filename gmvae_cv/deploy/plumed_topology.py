"""PLUMED inputs of an export rendered for another topology of the same molecule.

``gmvae-cv plumed-input EXP --top conf.gro --out DIR`` (:func:`write_plumed_for_topology`): the
export's features are mapped onto the atoms of ``conf.gro`` by residue and atom name
(:mod:`gmvae_cv.features.atom_mapping`, one-to-one or refused), and ``DIR/plumed.dat`` (well-tempered
METAD) and ``DIR/plumed_opes.dat`` (OPES_METAD) are rendered with the same bias settings as the
export's own files, with the atom numbers of that topology; the two ``.ptc`` files are copied
beside them (after checking their sha256 against ``cv.json``), so that DIR is a ready run folder
for ``gmx mdrun -plumed plumed.dat``. COLVAR, HILLS, KERNELS and STATE are written in the folder
mdrun runs in, as with the export's own inputs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Optional

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_bytes, atomic_write_text
from ..features import AtomMapping, map_spec_atoms, mapping_comment, remap_spec
from ..features import FeatureSpec
from .contract import read_cv_json
from .plumed import render_plumed_dat, render_plumed_opes, render_walkers, render_walkers_mpi

__all__ = ["PLUMED_MODEL_FILES", "write_plumed_for_topology"]

PLUMED_MODEL_FILES = ("model_plumed.ptc", "model_clusters.ptc")
"""The TorchScript files the PLUMED inputs load (``FILE=`` of the ``PYTORCH_MODEL`` lines)."""


def _with_mapping(text: str, mapping: AtomMapping) -> str:
    lines = text.splitlines()
    return "\n".join([lines[0], *mapping_comment(mapping), *lines[1:]]) + "\n"


def write_plumed_for_topology(
    exp_dir: str | os.PathLike,
    topology: Any,
    out_dir: str | os.PathLike,
    *,
    residue_offset: int = 0,
    n_walkers: int = 0,
    source: Optional[str] = None,
) -> tuple[list[Path], AtomMapping]:
    """Write ``plumed.dat``, ``plumed_opes.dat`` and the ``.ptc`` files for another topology.

    Parameters
    ----------
    exp_dir : path
        An export (``gmvae-cv export``); its ``cv.json`` gives the features and bias settings.
    topology : path, mdtraj.Topology or openmm.app.Topology
        The structure the MD engine runs (e.g. GROMACS' ``conf.gro``; solvent after the solute
        is fine). Atoms are found by residue name, residue number and atom name.
    out_dir : path
        The run folder (created).
    residue_offset : int
        Added to the export's residue numbers before comparing.
    n_walkers : int
        If at least 2, also ``walker_0.dat`` ... ``walker_{n-1}.dat``: multiple-walkers METAD
        sharing one bias through ``HILLS.<id>`` in the folder all walkers run in
        (:func:`gmvae_cv.deploy.plumed.render_walkers`), and ``walkers_mpi.dat``, the same walkers
        over MPI for ``gmx_mpi mdrun -multidir`` (:func:`~gmvae_cv.deploy.plumed.render_walkers_mpi`);
        0 (default) writes none.
    source : str, optional
        Name of the topology in messages.

    Returns
    -------
    (list of Path, AtomMapping)
        The files written, and the mapping used.

    Raises
    ------
    GMVAEInputError
        Not an export, a ``.ptc`` file missing or altered (sha256 differs from ``cv.json``), or
        atoms that do not map one-to-one (the message names them).
    """
    exp_dir = Path(exp_dir)
    info = read_cv_json(exp_dir)
    spec = FeatureSpec.from_dict(info["feature_spec"], source=exp_dir / "cv.json")
    models = {}
    for name in PLUMED_MODEL_FILES:
        path = exp_dir / name
        if not path.is_file():
            raise GMVAEInputError(f"{path}: file not found (the export's PLUMED inputs load it with PYTORCH_MODEL FILE={name})")
        data = path.read_bytes()
        want = info["files"].get(name, {}).get("sha256")
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise GMVAEInputError(f"{path}: sha256 differs from the one in {exp_dir / 'cv.json'} (the file was changed after export)")
        models[name] = data
    n_walkers = int(n_walkers)
    if n_walkers == 1 or n_walkers < 0:
        raise GMVAEInputError(f"'n_walkers' is {n_walkers}, expected 0 (no walker inputs) or at least 2")
    mapping = map_spec_atoms(spec, topology, residue_offset=residue_offset, source=source)
    new_spec = remap_spec(spec, mapping, description=f"{spec.description} (atoms mapped onto {mapping.source})")
    out = Path(out_dir)
    texts = {
        "plumed.dat": _with_mapping(render_plumed_dat(info, new_spec), mapping),
        "plumed_opes.dat": _with_mapping(render_plumed_opes(info, new_spec), mapping),
        **{f"walker_{i}.dat": _with_mapping(render_walkers(info, new_spec, n_walkers, i), mapping) for i in range(n_walkers)},
    }
    if n_walkers >= 2:
        texts["walkers_mpi.dat"] = _with_mapping(render_walkers_mpi(info, new_spec, n_walkers), mapping)
    written = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    for name, data in models.items():
        atomic_write_bytes(out / name, data)
        written.append(out / name)
    return written, mapping
