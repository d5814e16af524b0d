"""What :func:`~gmvae_cv.workflows.explore.explore` starts from: the system, the features, the given frames.

The system to bias (alanine dipeptide, an ``MDSystem`` or a user's PDB with a force field), the
feature spec (checked against the system's topology), the unbiased frames (refused when they come
from a biased run or another temperature without log-weights) and ``DIR/input``, the stage that
computes their features.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import openmm
import mdtraj as md

from ..._core.errors import GMVAEInputError
from ..markers import done, fresh, mark_done
from .settings import ALANINE, ExploreSettings
from ...features import alanine_backbone_torsions
from ...systems import AlanineDipeptide
from ...metad import load_md_system
from ...features import READY_SPECS, FeatureSpec, ready_spec
from ..._core.jsonfile import load_json
from ...features import load_trajectory_features
from ..._core.checks import as_list_of_arrays, check_array

__all__ = ["System", "Inputs", "make_system", "resolve_spec", "check_unbiased", "given_trajectories",
           "input_stage", "load_inputs"]


@dataclass
class System:
    """The system of the biased runs, with what the stages need of it.

    Attributes
    ----------
    system, topology : openmm.System, openmm.app.Topology
    positions : (n_atoms, 3) ndarray
        Starting positions, nm.
    description : dict
        Recorded in each biased run's ``run.json``.
    name : str
        ``'alanine-dipeptide'`` or ``'user'``.
    extra_colvar : optional
        Extra COLVAR columns of the biased runs (phi, psi for alanine dipeptide).
    sha256 : str
        Of the serialised ``openmm.System`` (the fingerprint in ``explore.json``).
    """

    system: Any
    topology: Any
    positions: np.ndarray
    description: dict
    name: str
    extra_colvar: Any = None
    sha256: str = ""

    @property
    def alanine(self) -> bool:
        """Whether this is the built-in alanine dipeptide (dF, transitions and core sets are computed)."""
        return self.name == ALANINE


@dataclass
class Inputs:
    """The given frames as ``DIR/input`` holds them.

    Attributes
    ----------
    features : list of (n_frames_i, n_features) ndarray
        One per given trajectory (or ``data`` array).
    frames : dict
        ``DIR/input/frames.npz``: ``logw`` (n_frames,), ``lengths`` (n_trajectories,) and, for
        alanine dipeptide from trajectories, ``phi``, ``psi`` (rad).
    """

    features: list
    frames: dict

    @property
    def lengths(self) -> list[int]:
        return [int(n) for n in self.frames["lengths"]]


def make_system(system: Any, pdb: Any, system_xml: Any, forcefield: Any) -> System:
    """The :class:`System` named by :func:`explore`'s ``system``, ``pdb``, ``system_xml``, ``forcefield``."""
    if isinstance(system, str) and system != ALANINE:
        raise GMVAEInputError(f"'system' is {system!r}, expected {ALANINE!r} or an MDSystem (gmvae_cv.load_md_system)")
    if system == ALANINE:
        if pdb is not None or system_xml is not None or forcefield is not None:
            raise GMVAEInputError(f"'system' is {ALANINE!r}, a built-in system; do not combine it with pdb/system_xml/forcefield")
        ala = AlanineDipeptide()
        out = System(ala.create_system(), ala.topology, ala.positions,
                     {"name": "alanine dipeptide (ACE-ALA-NME), vacuum", "forcefield": list(ala.forcefield_files),
                      "nonbonded": "NoCutoff", "constraints": "HBonds"}, ALANINE, alanine_backbone_torsions(transform="raw"))
    elif system is not None:
        if not all(hasattr(system, a) for a in ("system", "topology", "positions")):
            raise GMVAEInputError(f"'system' is {type(system).__name__}, expected {ALANINE!r} or an MDSystem")
        out = System(system.system, system.topology, np.asarray(system.positions, dtype=np.float64),
                     dict(getattr(system, "description", {}) or {}), "user")
    elif pdb is not None:
        md = load_md_system(pdb, system_xml=system_xml, forcefield=forcefield)
        out = System(md.system, md.topology, md.positions, md.description, "user")
    else:
        raise GMVAEInputError(f"no system: give system={ALANINE!r}, an MDSystem, or pdb with system_xml or forcefield")
    out.sha256 = hashlib.sha256(openmm.XmlSerializer.serialize(out.system).encode()).hexdigest()
    return out


def resolve_spec(spec: Any, topology: Any):
    """A FeatureSpec from a spec object, a ready name, a spec JSON file or an EXP directory.

    Returns ``(spec, source)``: the :class:`~gmvae_cv.features.FeatureSpec` and where it came from
    (``'object'``, the ready name or the path).
    """
    if isinstance(spec, FeatureSpec):
        return spec, "object"
    name = "alanine-distances" if spec == "alanine_heavy_atom_distances" else str(spec)  # the function's name, too
    if name in READY_SPECS:  # the alanine specs on the bundled topology; backbone torsions on the system's
        return ready_spec(name, topology if name == "backbone-torsions" else None), name
    p = Path(str(spec))
    if p.is_dir():
        cvj = p / "cv.json"
        if not cvj.is_file():
            raise GMVAEInputError(f"{p}: a directory without cv.json; expected an export (EXP) directory or a spec JSON file")
        meta = load_json(cvj, "an export's cv.json")
        if not isinstance(meta, dict) or not isinstance(meta.get("feature_spec"), dict):
            raise GMVAEInputError(f"{cvj}: has no 'feature_spec'; expected an export made by gmvae-cv")
        return FeatureSpec.from_dict(meta["feature_spec"], source=cvj), str(p)
    if p.is_file():
        return FeatureSpec.load(p), str(p)
    raise GMVAEInputError(f"'spec' is {spec!r}: not a ready spec name ({', '.join(READY_SPECS)}), a spec JSON file or "
                          "an EXP directory")


def check_unbiased(traj: Sequence[Path], temperature: float, input_logw: Any) -> float | None:
    """Refuse frames of a biased run (or of another temperature) unless log-weights are given.

    Returns the frame spacing in ps when a ``simulation.json`` beside the trajectory records it.
    """
    spacing = None
    for t in traj:
        run_json = t.parent / "run.json"
        if run_json.is_file():
            try:
                fmt = json.loads(run_json.read_text()).get("format", "")
            except (json.JSONDecodeError, UnicodeDecodeError):
                fmt = ""
            if "metadynamics" in str(fmt) and input_logw is None:
                raise GMVAEInputError(
                    f"{t}: frames of a biased run ({run_json} is a {fmt!r}); explore starts from unbiased frames. "
                    "Pass their log-weights (input_logw, e.g. from gmvae_cv.ct_log_weights) or unbiased frames")
        sim_json = t.parent / "simulation.json"
        if sim_json.is_file():
            try:
                sim = json.loads(sim_json.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            temp = sim.get("temperature_K")
            if temp is not None and abs(float(temp) - temperature) > 1e-6 and input_logw is None:
                raise GMVAEInputError(
                    f"{sim_json}: 'temperature_K' is {temp}, explore runs at {temperature} K: these frames are biased "
                    "(by temperature) relative to the run; pass their log-weights (input_logw) or frames at the run temperature")
            if sim.get("frame_interval_ps") is not None:
                spacing = float(sim["frame_interval_ps"])
    return spacing


def given_trajectories(traj: Any, top: Any, data: Any, input_logw: Any, cfg: ExploreSettings,
                       overrides: dict) -> tuple[list[Path], ExploreSettings]:
    """The given trajectory files (checked), and ``cfg`` with the frame spacing their ``simulation.json`` records.

    Exactly one of ``traj`` (with ``top``) and ``data`` must be given; an explicit ``frame_ps``
    in ``overrides`` that disagrees with the recorded spacing is refused.
    """
    if (traj is None) == (data is None):
        raise GMVAEInputError("give either 'traj' (with 'top') or 'data' (features of the unbiased frames)")
    traj_files = [Path(t) for t in ([traj] if isinstance(traj, (str, os.PathLike)) else (traj or []))]
    if traj_files:
        if top is None:
            raise GMVAEInputError("'traj' needs 'top' (the topology file of the trajectories)")
        for t in traj_files:
            if not t.is_file():
                raise GMVAEInputError(f"{t}: trajectory file not found")
        spacing = check_unbiased(traj_files, cfg.temperature, input_logw)
        if spacing is not None and abs(spacing - cfg.frame_ps) > 1e-9:
            if "frame_ps" in overrides:
                raise GMVAEInputError(f"'frame_ps' is {cfg.frame_ps}, the trajectory's simulation.json says {spacing} ps")
            cfg = replace(cfg, frame_ps=spacing).validate()
    return traj_files, cfg


def _given_features(traj_files: list[Path], top: Any, data: Any, fspec: Any) -> list[np.ndarray]:
    """Features ``(n_frames_i, n_features)`` of each given trajectory, or the given ``data`` arrays (checked)."""
    if traj_files:
        x0 = load_trajectory_features(traj_files, top, fspec)
    else:
        x0 = [check_array(m, f"data[{i}]", ndim=2) for i, m in enumerate(as_list_of_arrays(data, "data"))]
    for i, m in enumerate(x0):
        if m.shape[1] != fspec.n_features:
            raise GMVAEInputError(f"'data[{i}]' has {m.shape[1]} features, the spec has {fspec.n_features}")
    return x0


def input_stage(inp: Path, traj_files: list[Path], top: Any, data: Any, input_logw: Any, fspec: Any,
                sysm: System, log: Callable[[str], None]) -> None:
    """Write ``DIR/input`` (``features.npy``, ``frames.npz``, ``done.json``) unless it is done."""
    if done(inp):
        return
    log(f"[input] features of the unbiased frames ({fspec.n_features} {fspec.features[0].kind} features)")
    fresh(inp)
    x0 = _given_features(traj_files, top, data, fspec)
    np.save(inp / "features.npy", np.concatenate(x0))
    n_frames = sum(len(m) for m in x0)
    lw = np.zeros(n_frames) if input_logw is None else np.asarray(input_logw, dtype=np.float64).reshape(-1)
    if len(lw) != n_frames:
        raise GMVAEInputError(f"'input_logw' has {len(lw)} values for {n_frames} frames")
    arrays = {"logw": lw, "lengths": np.array([len(m) for m in x0])}
    if traj_files and sysm.alanine:
        tr = md.load([str(t) for t in traj_files], top=str(top))
        arrays["phi"] = md.compute_phi(tr)[1][:, 0]
        arrays["psi"] = md.compute_psi(tr)[1][:, 0]
    np.savez(inp / "frames.npz", **arrays)
    mark_done(inp, {"n_frames": int(len(lw)), "sources": [str(t) for t in traj_files] or ["data"]})


def load_inputs(inp: Path) -> Inputs:
    """``DIR/input`` as :class:`Inputs`."""
    x_in = np.load(inp / "features.npy")
    frames = dict(np.load(inp / "frames.npz"))
    lengths = [int(n) for n in frames["lengths"]]
    return Inputs(np.split(x_in, np.cumsum(lengths)[:-1]), frames)
