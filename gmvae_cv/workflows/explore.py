"""Discovery from a stuck run: train a GMVAE, bias its CV, retrain on everything sampled, repeat.

:func:`explore` starts from unbiased frames that know only some states (e.g. 300 K alanine
dipeptide, never phi > 0). Round ``r`` trains a GMVAE on the given frames plus the frames of every
biased run before it, exports and checks it, biases its CV (well-tempered metadynamics in OpenMM,
``method="metad"``) and analyses the biased run. It stops when the stop rule holds or after
``rounds`` biased runs.

Layout of ``DIR``::

    explore.json            format, settings, fingerprints of the system, the frames and the spec
    input/                  features (and phi/psi) of the given frames
    round_NN/run/           the GMVAE of round NN (gmvae_cv.fit)
    round_NN/exp/           its export (checked: check.json)
    round_NN/bias/          the biased run (run_metadynamics: COLVAR, HILLS, traj.dcd, checkpoint)
    round_NN/analysis/      analysis.json, frames.npz, features.npy, latent.png, coverage.png
    summary.json, reweighted.npz, delta_f.png

Every stage writes ``done.json`` when it has finished; a stage without it is redone (a biased run
continues from its checkpoint), so a killed ``explore`` started again continues with the round and
stage it was in.

Stop rule (after the GMVAE of round ``r`` is trained and before it is biased): no new cluster in the
GMVAEs of rounds ``r - 1`` and ``r``, and the estimate of dF stable within its error for two rounds
(``|dF(r-1) - dF(r-2)|`` and ``|dF(r-2) - dF(r-3)|`` each at most ``stable_sigmas`` times their
combined error). A cluster of the GMVAE of round ``r`` is *new* when it holds at least
``min_cluster_fraction`` of the training frames and fewer than ``new_cluster_old_fraction`` of its
frames come from data that the GMVAE of round ``r - 1`` was trained on (so it lives in frames
sampled by the last biased run). The rule reads no phi/psi: it works for any system. dF, transitions
and core sets are computed when the system is alanine dipeptide.

Training frames (``training_weights``). ``"coverage"`` (default): every frame counts once, so the
states a biased run has reached shape the next CV as much as the known ones. ``"reweighted"``:
frames carry their Boltzmann weights at the run temperature (c(t) weights of their biased run,
normalised per run), which gives the newly reached high free-energy regions almost no weight.
Measured (``benchmarks/explore.py``, 3 seeds, round 0 = 0.4 ns on the 300 K GMVAE CV): the frames
beyond the 99th percentile of phi of the unbiased start are 1.0-2.8 % of the biased frames but carry
0.08-0.9 % of their c(t) weight (3-12 times less; Kish effective sample size 24-34 % of the frames),
so a reweighted GMVAE sees the frontier even less than the biased run reached it; coverage is the
default. (Round 1 of seed 0 trained both ways: no C7ax either way, so that test does not separate them.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._core.checks import check_int, check_positive
from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_bytes, atomic_write_json

__all__ = ["ExploreSettings", "explore", "EXPLORE_FORMAT", "METHODS"]

EXPLORE_FORMAT = "gmvae-cv/explore"
METHODS = ("metad", "opes", "opes-explore")
"""Bias methods of :func:`explore` (well-tempered metadynamics, OPES_METAD, OPES_METAD_EXPLORE)."""
_KB = 0.008314462618  # kJ/mol/K
_ALANINE = "alanine-dipeptide"


@dataclass
class ExploreSettings:
    """Sizes and parameters of :func:`explore` (all saved in ``explore.json``).

    Parameters
    ----------
    rounds : int
        Round budget: biased runs at most (>= 1).
    ns_per_round : float
        Simulated time of each biased run, ns (per walker).
    method : {'metad', 'opes', 'opes-explore'}
        Bias method (:func:`gmvae_cv.run_metadynamics` with that ``method``). Metadynamics frames
        are reweighted with :math:`\\beta (V - c(t))` from the hills, OPES frames with
        :math:`\\beta V` (``opes.bias`` of the COLVAR).
    walkers : int
        Walkers sharing one bias in each round.
    seed : int
        Seeds training (``seed + round``) and the biased runs (``seed + 1000 round``).
    n_clusters, latent_dim, lag, entropy_weight, epochs : int, int, int, float, int
        GMVAE (as the demo: 4 clusters, 2 components, a 5-frame time lag, entropy weight 2).
    training_weights : {'coverage', 'reweighted'}
        See the module docstring.
    temperature : float
        K, of the biased runs and of the free energies.
    timestep_fs : float
        Time step of the biased runs, fs. Hills every ps and trajectory frames every ps whatever it is.
    height, bias_factor : float
        Well-tempered metadynamics: initial hill height (kJ/mol) and bias factor.
    barrier : float
        OPES: the barrier to overcome, kJ/mol (``BARRIER``).
    frame_ps : float
        Spacing of the given unbiased frames, ps (the lag counts frames; the biased runs write
        frames at this spacing too). Read from the ``simulation.json`` beside the trajectory when
        there is one.
    discard_fraction : float
        Leading fraction of each biased run left out of its dF estimate.
    n_blocks : int
        Blocks of the jackknife error of dF.
    min_cluster_fraction, new_cluster_old_fraction, stable_sigmas : float
        Stop rule, see the module docstring.

    Examples
    --------
    >>> cfg = ExploreSettings(rounds=4, ns_per_round=1.0).validate()
    >>> cfg.pace, cfg.steps_per_round
    (500, 500000)
    """

    rounds: int = 6
    ns_per_round: float = 2.0
    method: str = "metad"
    walkers: int = 1
    seed: int = 0
    n_clusters: int = 4
    latent_dim: int = 2
    lag: int = 5
    entropy_weight: float = 2.0
    epochs: int = 150
    training_weights: str = "coverage"
    temperature: float = 300.0
    timestep_fs: float = 2.0
    height: float = 1.2
    bias_factor: float = 10.0
    barrier: float = 40.0
    frame_ps: float = 1.0
    discard_fraction: float = 0.1
    n_blocks: int = 10
    min_cluster_fraction: float = 0.02
    new_cluster_old_fraction: float = 0.1
    stable_sigmas: float = 2.0

    def validate(self) -> "ExploreSettings":
        """Check every field; raise :class:`GMVAEInputError` naming it."""
        check_int(self.rounds, "rounds", minimum=1)
        check_int(self.walkers, "walkers", minimum=1)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.n_clusters, "n_clusters", minimum=2)
        check_int(self.latent_dim, "latent_dim", minimum=1)
        check_int(self.lag, "lag", minimum=0)
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.n_blocks, "n_blocks", minimum=2)
        for name in ("ns_per_round", "temperature", "timestep_fs", "height", "frame_ps", "stable_sigmas"):
            check_positive(getattr(self, name), name)
        check_positive(self.barrier, "barrier")
        if self.method not in METHODS:
            raise GMVAEInputError(f"'method' is {self.method!r}, expected one of {list(METHODS)}")
        if not self.bias_factor > 1:
            raise GMVAEInputError(f"'bias_factor' is {self.bias_factor}, expected > 1")
        if self.training_weights not in ("coverage", "reweighted"):
            raise GMVAEInputError(f"'training_weights' is {self.training_weights!r}, expected 'coverage' or 'reweighted'")
        for name in ("discard_fraction", "min_cluster_fraction", "new_cluster_old_fraction"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise GMVAEInputError(f"'{name}' is {getattr(self, name)}, expected 0 <= {name} < 1")
        if (1000.0 / self.timestep_fs) % 1 or (self.frame_ps * 1000.0 / self.timestep_fs) % 1:
            raise GMVAEInputError(f"'timestep_fs' is {self.timestep_fs}: 1 ps and frame_ps = {self.frame_ps} ps must be whole numbers of steps")
        return self

    @property
    def pace(self) -> int:
        """Steps between hills (1 ps)."""
        return int(round(1000.0 / self.timestep_fs))

    @property
    def steps_per_round(self) -> int:
        return int(round(self.ns_per_round * 1e6 / self.timestep_fs / self.pace)) * self.pace


@dataclass
class _System:
    system: Any
    topology: Any
    positions: np.ndarray
    description: dict
    name: str
    extra_colvar: Any = None
    sha256: str = ""

    @property
    def alanine(self) -> bool:
        return self.name == _ALANINE


# ------------------------------------------------------------------ small helpers
def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _done(stage: Path) -> bool:
    return (stage / "done.json").is_file()


def _read_done(stage: Path) -> dict:
    return json.loads((stage / "done.json").read_text())


def _mark(stage: Path, info: dict) -> None:
    atomic_write_json(stage / "done.json", info)


def _fresh(stage: Path) -> Path:
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _make_system(system: Any, pdb: Any, system_xml: Any, forcefield: Any) -> _System:
    import openmm

    if isinstance(system, str) and system != _ALANINE:
        raise GMVAEInputError(f"'system' is {system!r}, expected {_ALANINE!r} or an MDSystem (gmvae_cv.load_md_system)")
    if system == _ALANINE:
        if pdb is not None or system_xml is not None or forcefield is not None:
            raise GMVAEInputError(f"'system' is {_ALANINE!r}, a built-in system; do not combine it with pdb/system_xml/forcefield")
        from ..features import alanine_backbone_torsions
        from ..systems import AlanineDipeptide

        ala = AlanineDipeptide()
        out = _System(ala.create_system(), ala.topology, ala.positions,
                      {"name": "alanine dipeptide (ACE-ALA-NME), vacuum", "forcefield": list(ala.forcefield_files),
                       "nonbonded": "NoCutoff", "constraints": "HBonds"}, _ALANINE, alanine_backbone_torsions(transform="raw"))
    elif system is not None:
        if not all(hasattr(system, a) for a in ("system", "topology", "positions")):
            raise GMVAEInputError(f"'system' is {type(system).__name__}, expected {_ALANINE!r} or an MDSystem")
        out = _System(system.system, system.topology, np.asarray(system.positions, dtype=np.float64),
                      dict(getattr(system, "description", {}) or {}), "user")
    elif pdb is not None:
        from ..metad.user_system import load_md_system

        md = load_md_system(pdb, system_xml=system_xml, forcefield=forcefield)
        out = _System(md.system, md.topology, md.positions, md.description, "user")
    else:
        raise GMVAEInputError(f"no system: give system={_ALANINE!r}, an MDSystem, or pdb with system_xml or forcefield")
    out.sha256 = _sha256_bytes(openmm.XmlSerializer.serialize(out.system).encode())
    return out


def _resolve_spec(spec: Any, topology: Any):
    """A FeatureSpec from a spec object, a ready name, a spec JSON file or an EXP directory."""
    from ..features import FeatureSpec, alanine_backbone_torsions, alanine_heavy_atom_distances

    if isinstance(spec, FeatureSpec):
        return spec, "object"
    if spec in ("alanine-distances", "alanine_heavy_atom_distances"):
        return alanine_heavy_atom_distances(), "alanine-distances"
    if spec in ("alanine-torsions",):
        return alanine_backbone_torsions(transform="sincos"), "alanine-torsions"
    p = Path(str(spec))
    if p.is_dir():
        cvj = p / "cv.json"
        if not cvj.is_file():
            raise GMVAEInputError(f"{p}: a directory without cv.json; expected an export (EXP) directory or a spec JSON file")
        try:
            meta = json.loads(cvj.read_text())
        except json.JSONDecodeError as exc:
            raise GMVAEInputError(f"{cvj}: not valid JSON ({exc})") from None
        if not isinstance(meta.get("feature_spec"), dict):
            raise GMVAEInputError(f"{cvj}: has no 'feature_spec'; expected an export made by gmvae-cv")
        return FeatureSpec.from_dict(meta["feature_spec"], source=cvj), str(p)
    if p.is_file():
        return FeatureSpec.load(p), str(p)
    raise GMVAEInputError(f"'spec' is {spec!r}: not a ready spec name (alanine-distances, alanine-torsions), a spec JSON file or an EXP directory")


def _check_unbiased(traj: Sequence[Path], temperature: float, input_logw: Any) -> float | None:
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


# ------------------------------------------------------------------ the loop
def explore(
    out: str | os.PathLike,
    *,
    traj: Any = None,
    top: Any = None,
    data: Any = None,
    spec: Any = "alanine-distances",
    system: Any = _ALANINE,
    pdb: Any = None,
    system_xml: Any = None,
    forcefield: Any = None,
    input_logw: Any = None,
    settings: Optional[ExploreSettings] = None,
    progress: Optional[Callable] = None,
    log: Callable[[str], None] = lambda s: None,
    **overrides: Any,
) -> dict:
    """Explore from unbiased frames: GMVAE, export + check, bias, retrain, until the stop rule.

    Parameters
    ----------
    out : path
        ``DIR`` (see the module docstring); a ``DIR`` of an earlier ``explore`` with the same
        inputs and settings is continued, anything else is refused.
    traj : path or sequence of paths, optional
        Unbiased trajectories (any format mdtraj reads), with ``top``.
    top : path, optional
        Topology of ``traj`` (PDB).
    data : (n_frames, n_features) array or list of them, optional
        Features of the unbiased frames instead of ``traj`` (then the export checks run on the
        system's starting positions and, from round 1, on biased frames).
    spec : FeatureSpec, str or path
        The features: a ready name (``'alanine-distances'``), a spec JSON file, or an EXP
        directory (its ``cv.json`` feature spec). Checked against the system's topology.
    system : 'alanine-dipeptide' or MDSystem or None
        The system to bias; ``None`` with ``pdb`` and ``system_xml`` or ``forcefield`` (see
        :func:`gmvae_cv.load_md_system`).
    pdb, system_xml, forcefield : optional
        A user's own system.
    input_logw : (n_frames,) array, optional
        Log-weights of the given frames if they are not Boltzmann-distributed at ``temperature``
        (frames of a biased run); without them such frames are refused.
    settings : ExploreSettings, optional
        Sizes and parameters; ``overrides`` (e.g. ``rounds=4``) replace its fields.
    progress : callable, optional
        tqdm-like class for the biased runs.
    log : callable
        Receives one line per stage.

    Returns
    -------
    dict
        The content of ``DIR/summary.json``.

    Raises
    ------
    GMVAEInputError
        A round budget < 1, a method the engine lacks, frames of a biased run (or of another
        temperature) without ``input_logw``, a spec whose atoms do not fit the system, a ``DIR``
        of another command, system or settings.
    SimulationUnstableError
        A biased run that heated up or blew up (its ``run.json`` says where).

    Examples
    --------
    >>> from gmvae_cv import AlanineDipeptide, explore
    >>> md = AlanineDipeptide().simulate(2_000_000, 500, "md300", temperature=300.0)  # doctest: +SKIP
    >>> summary = explore("ex", traj=md.trajectory, top=md.topology, rounds=6, ns_per_round=2.0)  # doctest: +SKIP
    >>> summary["first_transition_ns"], summary["final"]["delta_f_phi_pos_minus_neg_kjmol"]  # doctest: +SKIP
    """
    import dataclasses

    cfg = dataclasses.replace(settings or ExploreSettings(), **overrides).validate()
    out = Path(out)
    sysm = _make_system(system, pdb, system_xml, forcefield)
    fspec, spec_source = _resolve_spec(spec, sysm.topology)
    fspec.check_topology(sysm.topology, source=spec_source if spec_source not in ("object",) else None)
    if (traj is None) == (data is None):
        raise GMVAEInputError("give either 'traj' (with 'top') or 'data' (features of the unbiased frames)")
    traj_files = [Path(t) for t in ([traj] if isinstance(traj, (str, os.PathLike)) else (traj or []))]
    if traj_files:
        if top is None:
            raise GMVAEInputError("'traj' needs 'top' (the topology file of the trajectories)")
        for t in traj_files:
            if not t.is_file():
                raise GMVAEInputError(f"{t}: trajectory file not found")
        spacing = _check_unbiased(traj_files, cfg.temperature, input_logw)
        if spacing is not None and abs(spacing - cfg.frame_ps) > 1e-9:
            if "frame_ps" in overrides:
                raise GMVAEInputError(f"'frame_ps' is {cfg.frame_ps}, the trajectory's simulation.json says {spacing} ps")
            cfg = dataclasses.replace(cfg, frame_ps=spacing).validate()

    # DIR: new, or an explore with the same inputs and settings
    identity = {
        "format": EXPLORE_FORMAT, "version": 1,
        "settings": {k: v for k, v in asdict(cfg).items() if k != "rounds"},  # the budget may grow on a restart
        "system": {"name": sysm.name, "system_sha256": sysm.sha256, "n_atoms": int(sysm.system.getNumParticles())},
        "spec": fspec.to_dict(),
        "input": {"traj": [str(t.resolve()) for t in traj_files], "data": data is not None,
                  "input_logw": input_logw is not None},
    }
    _prepare_dir(out, identity)

    # input features
    inp = out / "input"
    if not _done(inp):
        log(f"[input] features of the unbiased frames ({fspec.n_features} {fspec.features[0].kind} features)")
        _fresh(inp)
        if traj_files:
            from ..features import load_trajectory_features

            x0 = load_trajectory_features(traj_files, top, fspec)
        else:
            from .._core.checks import as_list_of_arrays, check_array

            x0 = [check_array(m, f"data[{i}]", ndim=2) for i, m in enumerate(as_list_of_arrays(data, "data"))]
        for i, m in enumerate(x0):
            if m.shape[1] != fspec.n_features:
                raise GMVAEInputError(f"'data[{i}]' has {m.shape[1]} features, the spec has {fspec.n_features}")
        np.save(inp / "features.npy", np.concatenate(x0))
        lw = np.zeros(sum(len(m) for m in x0)) if input_logw is None else np.asarray(input_logw, dtype=np.float64).reshape(-1)
        if len(lw) != sum(len(m) for m in x0):
            raise GMVAEInputError(f"'input_logw' has {len(lw)} values for {sum(len(m) for m in x0)} frames")
        arrays = {"logw": lw, "lengths": np.array([len(m) for m in x0])}
        if traj_files and sysm.alanine:
            import mdtraj as md

            tr = md.load([str(t) for t in traj_files], top=str(top))
            arrays["phi"] = md.compute_phi(tr)[1][:, 0]
            arrays["psi"] = md.compute_psi(tr)[1][:, 0]
        np.savez(inp / "frames.npz", **arrays)
        _mark(inp, {"n_frames": int(len(lw)), "sources": [str(t) for t in traj_files] or ["data"]})
    x_in = np.load(inp / "features.npy")
    inp_frames = dict(np.load(inp / "frames.npz"))
    lengths = [int(n) for n in inp_frames["lengths"]]
    x_in_list = np.split(x_in, np.cumsum(lengths)[:-1])

    rounds: list[dict] = []
    stop_reason = None
    r = 0
    while True:
        if r >= cfg.rounds:
            stop_reason = f"round budget: {cfg.rounds} biased run(s)"
            break
        rd = out / f"round_{r:02d}"
        rd.mkdir(exist_ok=True)
        # 1. GMVAE on everything sampled so far
        blocks, block_logw, block_names = list(x_in_list), [inp_frames["logw"][s] for s in _slices(lengths)], [
            f"input[{i}]" for i in range(len(lengths))]
        for q in range(r):
            a = out / f"round_{q:02d}" / "analysis"
            blocks.append(np.load(a / "features.npy"))
            block_logw.append(np.load(a / "frames.npz")["traj_logw"])
            block_names.append(f"round_{q:02d}")
        run_dir = rd / "run"
        run_stage = rd / "run_stage"
        if not _done(run_stage):
            log(f"[round {r}] GMVAE on {sum(len(b) for b in blocks)} frames ({len(blocks)} trajectories, "
                f"{cfg.training_weights})")
            t0 = time.perf_counter()
            if run_dir.exists():
                shutil.rmtree(run_dir)
            _fresh(run_stage)
            weights = None
            if cfg.training_weights == "reweighted" and any(np.any(lw != 0) for lw in block_logw):
                weights = [_normalised_weights(lw) for lw in block_logw]  # (unbiased frames only: no weights)
            from ..learn.train import fit

            fit(blocks, weights=weights, n_clusters=cfg.n_clusters, latent_dim=cfg.latent_dim, epochs=cfg.epochs, batch_size=500,
                lr=3e-3, seed=cfg.seed + r, entropy_weight=cfg.entropy_weight, lag=cfg.lag, feature_spec=fspec,
                out=run_dir, sources=block_names, progress=False)
            clusters = _cluster_provenance(run_dir, blocks, r, len(lengths), cfg)
            _mark(run_stage, {"seconds": time.perf_counter() - t0, "n_frames": int(sum(len(b) for b in blocks)),
                              "clusters": clusters})
        run_info = _read_done(run_stage)
        # stop rule (before biasing this round's CV)
        if r >= 1:
            reason = _stop_rule(rounds, run_info["clusters"], cfg)
            if reason is not None:
                stop_reason = reason
                break
        # 2. export + check
        exp_dir = rd / "exp"
        exp_stage = rd / "exp_stage"
        if not _done(exp_stage):
            log(f"[round {r}] export and check")
            t0 = time.perf_counter()
            _fresh(exp_stage)
            if exp_dir.exists():
                shutil.rmtree(exp_dir)
            from ..deploy import check_export, export
            from ..learn.train import load_run

            frames = _check_frames(out, r, traj_files, top, sysm)
            export(load_run(run_dir), exp_dir, data=np.concatenate(blocks), frames=frames)
            report = check_export(exp_dir)
            reports = [report.to_dict()]
            if not report.passed and _only_kinks_failed(report):
                # check_export refuses its finite-difference row when more than 20 % of the
                # coordinates of its 4 frames lie within h of a ReLU kink (not a disagreement: those
                # coordinates are skipped); check again on 16 other frames, and keep both reports
                report = check_export(exp_dir, frames=_other_frames(frames, 32, cfg.seed + r), n_fd_frames=16)
                reports.append(report.to_dict())
            atomic_write_json(exp_stage / "check.json", _json_safe({"reports": reports}))
            if not report.passed:
                raise GMVAEInputError(f"{exp_dir}: the exported CV disagrees with the Python model:\n{report.to_text()}")
            _mark(exp_stage, {"seconds": time.perf_counter() - t0, "passed": True, "n_checks": len(reports)})
        # 3. biased run
        bias_dir = rd / "bias"
        bias_stage = rd / "bias_stage"
        if not _done(bias_stage):
            from ..deploy.loaders import load_cv
            from ..metad.run import run_metadynamics

            cv = load_cv(exp_dir)
            plumed = cv.meta["cv_json"]["plumed"]
            if cfg.method == "metad":
                bias_kw = {"sigma": plumed["metad"]["sigma"], "height": cfg.height, "bias_factor": cfg.bias_factor}
            else:  # OPES: the export's OPES sigma (width of the unbiased distribution)
                bias_kw = {"sigma": (plumed.get("opes") or plumed["metad"])["sigma"], "barrier": cfg.barrier}
            log(f"[round {r}] {cfg.method} on the GMVAE CV: {cfg.ns_per_round} ns")
            bias_stage.mkdir(exist_ok=True)
            # a continued run keeps its platform: an OpenMM checkpoint loads only on the platform that
            # wrote it, and the default choice (a timed probe) can change with the machine's load
            platform = None
            if (bias_dir / "checkpoint.npz").is_file() and (bias_dir / "run.json").is_file():
                platform = (_read_json(bias_dir / "run.json").get("platform") or {}).get("name")
            t0 = time.perf_counter()
            res = run_metadynamics(
                cv, bias_dir, system=sysm.system, topology=sysm.topology, positions=sysm.positions,
                n_steps=cfg.steps_per_round, method=cfg.method, temperature=cfg.temperature, pace=cfg.pace,
                walkers=cfg.walkers, seed=cfg.seed + 1000 * r,
                timestep=cfg.timestep_fs / 1000.0, traj_stride=int(round(cfg.frame_ps * 1000.0 / cfg.timestep_fs)),
                extra_colvar=sysm.extra_colvar, description=sysm.description, progress=progress, platform=platform,
                **bias_kw)
            _mark(bias_stage, {"seconds": time.perf_counter() - t0, "ns_per_day": res.ns_per_day,
                               "platform": res.platform, "n_hills": res.n_hills, "resumed_from": res.resumed_from,
                               "kinetic_temperature": res.info["kinetic_temperature_this_invocation"],
                               "edge_events": (res.info.get("warnings") or {}).get("edge_events")})
        # 4. analysis
        an = rd / "analysis"
        if not _done(an):
            log(f"[round {r}] analysis")
            t0 = time.perf_counter()
            _fresh(an)
            info = _analyse_round(rd, r, cfg, sysm, fspec, out)
            info["seconds"] = time.perf_counter() - t0
            atomic_write_json(an / "analysis.json", _json_safe(info))
            _mark(an, {"seconds": info["seconds"]})
        rounds.append(_round_entry(rd, r, cfg))
        _summary(out, rounds, f"running: {len(rounds)} round(s) done", cfg, sysm)  # a summary after every round
        r += 1

    summary = _summary(out, rounds, stop_reason, cfg, sysm)
    return summary


def _read_json(p: Path) -> dict:
    return json.loads(p.read_text())


def _slices(lengths: Sequence[int]) -> list[slice]:
    ends = np.cumsum(lengths)
    return [slice(int(e - n), int(e)) for e, n in zip(ends, lengths)]


def _normalised_weights(logw: np.ndarray) -> np.ndarray:
    """Weights ``exp(logw)`` scaled to mean 1 (each run counts by its frame count)."""
    w = np.exp(logw - logw.max())
    return w * (len(w) / w.sum())


def _prepare_dir(out: Path, identity: dict) -> None:
    meta = out / "explore.json"
    if out.exists() and not out.is_dir():
        raise GMVAEInputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not meta.is_file():
            what = sorted(q.name for q in out.iterdir())[:5]
            raise GMVAEInputError(f"{out}: holds files that are not an explore run ({', '.join(what)}; no explore.json); "
                                  "choose another output directory")
        try:
            prev = json.loads(meta.read_text())
        except json.JSONDecodeError as exc:
            raise GMVAEInputError(f"{meta}: not valid JSON ({exc})") from None
        if prev.get("format") != EXPLORE_FORMAT:
            raise GMVAEInputError(f"{meta}: 'format' is {prev.get('format')!r}, expected {EXPLORE_FORMAT!r} (a DIR of another command)")
        want = json.loads(json.dumps(identity))
        if prev.get("system") != want["system"]:
            raise GMVAEInputError(f"{meta}: 'system' is {prev.get('system', {}).get('name')!r} with system_sha256 "
                                  f"{str(prev.get('system', {}).get('system_sha256'))[:12]}..., this explore has {want['system']['name']!r} "
                                  f"({want['system']['system_sha256'][:12]}...): a DIR of another system; choose another output directory")
        for key in ("spec", "input", "settings"):
            if prev.get(key) != want[key]:
                diff = [k for k in sorted(set(prev.get(key) or {}) | set(want[key])) if (prev.get(key) or {}).get(k) != want[key].get(k)]
                raise GMVAEInputError(f"{meta}: '{key}' differs ({', '.join(map(str, diff[:5]))}): {out} holds an explore "
                                      "with other inputs or settings; give the same ones to continue it, or another output directory")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta, identity)


def _cluster_provenance(run_dir: Path, blocks: list, r: int, n_input: int, cfg: ExploreSettings) -> dict:
    """Training-set populations of the GMVAE's clusters and which of them are new (module docstring)."""
    from ..learn.train import load_run

    run = load_run(run_dir)
    x = np.concatenate(blocks)
    lab = run.transform(x)["clusters"]
    n_old_blocks = n_input + max(r - 1, 0)  # blocks the previous round's GMVAE was trained on
    old = np.zeros(len(x), dtype=bool)
    old[: sum(len(b) for b in blocks[:n_old_blocks])] = True
    pops, old_frac, new = [], [], []
    for c in range(cfg.n_clusters):
        m = lab == c
        pops.append(float(m.mean()))
        of = float(old[m].mean()) if m.any() else float("nan")
        old_frac.append(of)
        if m.mean() >= cfg.min_cluster_fraction and (r == 0 or of < cfg.new_cluster_old_fraction):
            new.append(c)
    occupied = [c for c in range(cfg.n_clusters) if pops[c] >= cfg.min_cluster_fraction]
    return {"training_populations": pops, "fraction_from_earlier_data": old_frac, "occupied": occupied, "new": new}


def _stop_rule(rounds: list[dict], clusters_now: dict, cfg: ExploreSettings) -> Optional[str]:
    """The stop reason, or None (module docstring)."""
    if len(rounds) < 3 or clusters_now["new"] or rounds[-1]["clusters"]["new"]:
        return None
    df = [q["delta_f_phi_pos_minus_neg_kjmol"] for q in rounds[-3:]]
    if any(v is None or v[0] is None or v[1] is None for v in df):
        return None
    for (a, ea), (b, eb) in ((df[0], df[1]), (df[1], df[2])):
        if abs(a - b) > cfg.stable_sigmas * math.hypot(ea, eb):
            return None
    return (f"stop rule: no new cluster in rounds {len(rounds) - 1} and {len(rounds)}, dF stable within "
            f"{cfg.stable_sigmas:g} x its error over rounds {len(rounds) - 3}..{len(rounds) - 1}")


def _check_frames(out: Path, r: int, traj_files: list, top: Any, sysm: _System):
    """Positions (nm) for the export check: the given frames, else the last biased run's, else the start."""
    import mdtraj as md

    if traj_files:
        return md.load(str(traj_files[0]), top=str(top))
    if r > 0:
        prev = out / f"round_{r - 1:02d}" / "bias"
        names = sorted(prev.glob("traj*.dcd"))
        if names:
            return md.load(str(names[0]), top=md.Topology.from_openmm(sysm.topology))
    return np.asarray(sysm.positions, dtype=np.float64)[None]


def _only_kinks_failed(report: Any) -> bool:
    failed = [q for q in report.rows if not q.passed]
    return bool(failed) and all("finite differences of the energy" in q.quantity and not math.isfinite(q.max_abs_error)
                                for q in failed)


def _other_frames(frames: Any, n: int, seed: int) -> np.ndarray:
    """``n`` frames (positions, nm) drawn at random from ``frames`` (a trajectory or an array)."""
    xyz = np.asarray(frames.xyz if hasattr(frames, "xyz") else frames, dtype=np.float64)
    idx = np.sort(np.random.default_rng(seed).choice(len(xyz), size=min(n, len(xyz)), replace=False))
    return xyz[idx]


def _traj_files(bias_dir: Path, walkers: int) -> list[tuple[Path, Path]]:
    if walkers == 1:
        return [(bias_dir / "traj.dcd", bias_dir / "COLVAR")]
    return [(bias_dir / f"traj.{w}.dcd", bias_dir / f"COLVAR.{w}") for w in range(walkers)]


def _analyse_round(rd: Path, r: int, cfg: ExploreSettings, sysm: _System, fspec: Any, out: Path) -> dict:
    """Reweighting, dF, transitions, clusters and plots of one round's biased run."""
    import mdtraj as md

    from ..analysis.hills import Hills
    from ..analysis.plumed_files import read_plumed
    from ..analysis.reweight import ct_log_weights
    from ..analysis.states import count_transitions, delta_f, delta_f_phi
    from ..features import load_trajectory_features
    from ..learn.train import load_run

    kT = _KB * cfg.temperature
    bias_dir, an = rd / "bias", rd / "analysis"
    run = load_run(rd / "run")
    # one bias shared by all walkers: every walker's frames are reweighted with the hills of all of them
    hills = None
    if cfg.method == "metad":
        hills = Hills.from_file(bias_dir / "HILLS" if cfg.walkers == 1 else [bias_dir / f"HILLS.{w}" for w in range(cfg.walkers)])
    feats, traj_logw, rows = [], [], []
    top = md.Topology.from_openmm(sysm.topology)
    for w, (tfile, cfile) in enumerate(_traj_files(bias_dir, cfg.walkers)):
        colvar = read_plumed(cfile)
        s = np.column_stack([colvar[f"cv.{i}"] for i in range(cfg.latent_dim)])
        t = np.asarray(colvar["time"], dtype=np.float64)
        # metadynamics: beta (V - c(t)) from the hills; OPES: beta V, its bias at the frame
        logw = ct_log_weights(hills, s, t, kT) if hills is not None else np.asarray(colvar["opes.bias"], dtype=np.float64) / kT
        x = load_trajectory_features([tfile], top, fspec)[0]
        # frame i of traj.dcd is at time (i + 1) * frame_ps (the start structure is not saved)
        tf = (np.arange(len(x)) + 1) * cfg.frame_ps
        idx = np.clip(np.searchsorted(t, tf - 1e-6), 0, len(t) - 1)
        if len(t) and np.max(np.abs(t[idx] - tf)) > 1e-3:
            raise GMVAEInputError(f"{cfile}: no COLVAR row at the times of the frames of {tfile}")
        feats.append(x)
        traj_logw.append(logw[idx])
        row = {"time": t, "logw": logw, "s": s}
        if sysm.alanine:
            row["phi"], row["psi"] = np.asarray(colvar["phi"]), np.asarray(colvar["psi"])
        rows.append(row)
    x_all = np.concatenate(feats)
    np.save(an / "features.npy", x_all)
    info: dict[str, Any] = {"round": r, "biased_ns": float(cfg.steps_per_round * cfg.timestep_fs * 1e-6 * cfg.walkers)}
    t_all = np.concatenate([q["time"] for q in rows])
    lw_all = np.concatenate([q["logw"] for q in rows])
    keep = np.concatenate([q["time"] >= cfg.discard_fraction * q["time"][-1] for q in rows])
    arrays = {"time": t_all, "logw": lw_all, "keep": keep, "traj_logw": np.concatenate(traj_logw)}
    # clusters of this round's GMVAE on its biased frames (raw and reweighted)
    tr = run.transform(x_all)
    lab = tr["clusters"]
    wt = np.exp(arrays["traj_logw"] - arrays["traj_logw"].max())
    info["clusters"] = {
        "biased_raw_populations": [float(np.mean(lab == c)) for c in range(cfg.n_clusters)],
        "biased_reweighted_populations": [float(wt[lab == c].sum() / wt.sum()) for c in range(cfg.n_clusters)],
    }
    if sysm.alanine:
        phi = np.concatenate([q["phi"] for q in rows])
        psi = np.concatenate([q["psi"] for q in rows])
        arrays["phi"], arrays["psi"] = phi, psi
        from ..systems import alanine_basin

        trans, first = 0, None
        for q in rows:
            lab_c = alanine_basin(q["phi"], q["psi"])
            trans += count_transitions(lab_c)
            core = np.flatnonzero(lab_c >= 0)
            hits = core[1:][(lab_c[core[1:]] == 1) & (lab_c[core[:-1]] == 0)]
            if len(hits):
                tt = float(q["time"][hits[0]]) / 1000.0
                first = tt if first is None else min(first, tt)
        info["transitions"] = int(trans)
        info["transitions_per_ns"] = trans / info["biased_ns"]
        info["first_transition_in_round_ns"] = first
        info["fraction_phi_positive"] = float(np.mean(np.angle(np.exp(1j * phi)) > 0))
        d1 = delta_f_phi(phi[keep], lw_all[keep], kT, n_blocks=cfg.n_blocks)
        core = alanine_basin(phi[keep], psi[keep])
        d2 = delta_f(core == 0, core == 1, lw_all[keep], kT, n_blocks=cfg.n_blocks)
        info["delta_f_phi_pos_minus_neg_kjmol"] = d1.to_list()
        info["delta_f_c7ax_minus_c7eq_kjmol"] = d2.to_list()
        # dF against time within the round (for the plot)
        n = int(keep.sum())
        ends = [max(2, int(round(f * n))) for f in np.linspace(0.1, 1.0, 10)]
        from ..analysis.states import delta_f_running

        ph, lw = np.angle(np.exp(1j * phi[keep])), lw_all[keep]
        run_df = delta_f_running(ph < 0, ph > 0, lw, kT, ends, n_blocks=cfg.n_blocks)
        t_keep = t_all[keep]
        info["delta_f_running"] = [[float(t_keep[e - 1]) / 1000.0, *d.to_list()] for e, d in zip(ends, run_df)]
    np.savez(an / "frames.npz", **arrays)
    bias_done = _read_done(rd / "bias_stage")
    info["kinetic_temperature"] = bias_done.get("kinetic_temperature")
    info["edge_events"] = bias_done.get("edge_events")
    _plot_round(rd, r, run, arrays, tr, out, sysm, cfg)
    return info


def _plot_round(rd: Path, r: int, run: Any, arrays: dict, tr: dict, out: Path, sysm: _System, cfg: ExploreSettings) -> None:
    from .._core.figures import _pyplot, save_figure

    plt = _pyplot()
    an = rd / "analysis"
    z = tr["z"]
    fig, axes = plt.subplots(1, 2 if sysm.alanine else 1, figsize=(11 if sysm.alanine else 5.5, 4.4),
                             layout="constrained", squeeze=False)
    ax = axes[0, 0]
    ax.scatter(z[:, 0], z[:, 1] if z.shape[1] > 1 else np.zeros(len(z)), c=tr["clusters"], cmap="tab10", s=3, vmin=0, vmax=9)
    ax.set_title(f"round {r}: latent space of its biased frames, by cluster")
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    if sysm.alanine:
        import mdtraj as md

        xt = md.load(str(rd / "bias" / ("traj.dcd" if cfg.walkers == 1 else "traj.0.dcd")), top=md.Topology.from_openmm(sysm.topology))
        phi_t = md.compute_phi(xt)[1][:, 0]
        n = min(len(phi_t), len(z))
        sc = axes[0, 1].scatter(z[:n, 0], z[:n, 1] if z.shape[1] > 1 else np.zeros(n), c=np.degrees(phi_t[:n]), cmap="twilight",
                                s=3, vmin=-180, vmax=180)
        fig.colorbar(sc, ax=axes[0, 1], label="phi (deg)")
        axes[0, 1].set_title("the same, coloured by phi")
        axes[0, 1].set_xlabel("z0")
    save_figure(fig, an / "latent.png")
    if sysm.alanine:
        fig, ax = plt.subplots(figsize=(5.5, 4.6), layout="constrained")
        inp = np.load(out / "input" / "frames.npz")
        if "phi" in inp:
            ax.scatter(np.degrees(inp["phi"]), np.degrees(inp["psi"]), s=1, c="0.7", label="unbiased input")
        ax.scatter(np.degrees(arrays["phi"]), np.degrees(arrays["psi"]), s=1, c=arrays["time"] / 1000.0, cmap="viridis")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xlabel("phi (deg)")
        ax.set_ylabel("psi (deg)")
        ax.set_title(f"round {r}: phi/psi coverage (colour: ns into the round)")
        save_figure(fig, an / "coverage.png")


def _round_entry(rd: Path, r: int, cfg: ExploreSettings) -> dict:
    a = _read_json(rd / "analysis" / "analysis.json")
    run_d, exp_d, bias_d = (_read_done(rd / s) for s in ("run_stage", "exp_stage", "bias_stage"))
    entry = {
        "round": r,
        "biased_ns": a["biased_ns"],
        "walltime_s": run_d["seconds"] + exp_d["seconds"] + bias_d["seconds"] + a["seconds"],
        "walltime_s_by_stage": {"train": run_d["seconds"], "export_check": exp_d["seconds"], "bias": bias_d["seconds"],
                                "analysis": a["seconds"]},
        "ns_per_day": bias_d["ns_per_day"],
        "transitions": a.get("transitions"),
        "transitions_per_ns": a.get("transitions_per_ns"),
        "first_transition_in_round_ns": a.get("first_transition_in_round_ns"),
        "fraction_phi_positive": a.get("fraction_phi_positive"),
        "clusters": {**run_d["clusters"], **a["clusters"]},
        "delta_f_phi_pos_minus_neg_kjmol": a.get("delta_f_phi_pos_minus_neg_kjmol"),
        "delta_f_c7ax_minus_c7eq_kjmol": a.get("delta_f_c7ax_minus_c7eq_kjmol"),
        "delta_f_running": a.get("delta_f_running"),
        "kinetic_temperature": a.get("kinetic_temperature"),
        "edge_events": a.get("edge_events"),
        "training_frames": run_d["n_frames"],
    }
    return entry


def _summary(out: Path, rounds: list[dict], stop_reason: Optional[str], cfg: ExploreSettings, sysm: _System) -> dict:
    from ..analysis.states import delta_f_phi

    kT = _KB * cfg.temperature
    total = float(sum(q["biased_ns"] for q in rounds))
    first, acc = None, 0.0
    for q in rounds:
        if first is None and q.get("first_transition_in_round_ns") is not None:
            first = acc + q["first_transition_in_round_ns"]
        acc += q["biased_ns"]
    summary: dict[str, Any] = {
        "format": "gmvae-cv/explore-summary",
        "system": sysm.name,
        "method": cfg.method,
        "n_rounds": len(rounds),
        "stop_reason": stop_reason,
        "biased_ns_total": total,
        "first_transition_ns": first,
        "rounds": rounds,
        "settings": asdict(cfg),
    }
    if rounds and sysm.alanine:
        last = rounds[-1]
        fr = np.load(out / f"round_{last['round']:02d}" / "analysis" / "frames.npz")
        keep = fr["keep"]
        atomic_write_bytes(out / "reweighted.npz", _npz_bytes(phi=fr["phi"][keep], psi=fr["psi"][keep], logw=fr["logw"][keep]))
        check = delta_f_phi(fr["phi"][keep], fr["logw"][keep], kT, n_blocks=cfg.n_blocks)
        summary["final"] = {
            "round": last["round"],
            "delta_f_phi_pos_minus_neg_kjmol": check.to_list(),
            "delta_f_c7ax_minus_c7eq_kjmol": last["delta_f_c7ax_minus_c7eq_kjmol"],
            "transitions_per_ns": last["transitions_per_ns"],
            "reached_c7ax": any((q.get("transitions") or 0) > 0 for q in rounds),
        }
        summary["reweighted"] = str((out / "reweighted.npz").resolve())
        summary["reweighted_note"] = ("frames of the last round's biased run (first "
                                      f"{cfg.discard_fraction:g} left out); phi, psi in rad; logw = beta (V - c(t)); "
                                      "dF = -kT ln(sum w[phi>0] / sum w[phi<0]), kT = 2.494 kJ/mol at 300 K")
        if cfg.method != "metad":
            summary["reweighted_note"] = summary["reweighted_note"].replace("beta (V - c(t))", "beta V (OPES bias)")
        _plot_delta_f(out, rounds)
    summary = _json_safe(summary)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _plot_delta_f(out: Path, rounds: list[dict]) -> None:
    from .._core.figures import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    acc = 0.0
    for q in rounds:
        pts = [p for p in (q.get("delta_f_running") or []) if p[1] is not None]
        if pts:
            t = np.array([acc + p[0] - 0.0 for p in pts])
            v = np.array([p[1] for p in pts])
            e = np.array([p[2] if p[2] is not None else np.nan for p in pts])
            ax.plot(t, v, "-o", ms=3, label=f"round {q['round']}")
            ax.fill_between(t, v - e, v + e, alpha=0.25)
        acc += q["biased_ns"]
        ax.axvline(acc, color="0.8", lw=0.8)
    ax.set_xlabel("biased simulated time, ns (all rounds)")
    ax.set_ylabel("F(phi>0) - F(phi<0), kJ/mol")
    ax.set_title("dF per round against simulated time (band: jackknife error)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_figure(fig, out / "delta_f.png")
