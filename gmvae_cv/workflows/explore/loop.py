"""The loop of :func:`explore`: the inputs, then rounds of train, export + check, bias, analyse, until the stop rule."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Optional

from .inputs import given_trajectories, input_stage, load_inputs, make_system, resolve_spec
from .round_analysis import stop_rule
from .settings import ALANINE, ExploreSettings
from .stages import analysis_stage, bias_stage, export_stage, train_stage
from .state import Exploration, identity, prepare_dir, round_plan, training_blocks
from .summary import round_entry, write_summary

__all__ = ["explore"]


def explore(
    out: str | os.PathLike,
    *,
    traj: Any = None,
    top: Any = None,
    data: Any = None,
    spec: Any = "alanine-distances",
    system: Any = ALANINE,
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
    cfg = dataclasses.replace(settings or ExploreSettings(), **overrides).validate()
    out = Path(out)
    sysm = make_system(system, pdb, system_xml, forcefield)
    fspec, spec_source = resolve_spec(spec, sysm.topology)
    fspec.check_topology(sysm.topology, source=spec_source if spec_source not in ("object",) else None)
    traj_files, cfg = given_trajectories(traj, top, data, input_logw, cfg, overrides)
    # DIR: new, or an explore with the same inputs and settings
    prepare_dir(out, identity(cfg, sysm, fspec, traj_files, data, input_logw))
    input_stage(out / "input", traj_files, top, data, input_logw, fspec, sysm, log)
    ex = Exploration(out, cfg, sysm, fspec, traj_files, top, progress, log)
    rounds, stop_reason = _rounds(ex)
    return write_summary(out, rounds, stop_reason, cfg, sysm)


def _rounds(ex: Exploration) -> tuple[list[dict], str]:
    """Run (or continue) the rounds of ``ex.out``; return their ``summary.json`` entries and why they stopped.

    A round trains its GMVAE on everything sampled so far, checks the stop rule (from round 1,
    before its CV is biased), chooses the CV to bias (:func:`~.state.round_plan`), exports and
    checks it when it is new, biases it (or continues the run of the CV it keeps) and analyses the
    biased run; ``summary.json`` is rewritten after every round.
    """
    cfg = ex.cfg
    inputs = load_inputs(ex.out / "input")
    rounds: list[dict] = []
    for r in range(cfg.rounds):
        rd = ex.out / f"round_{r:02d}"
        rd.mkdir(exist_ok=True)
        blocks = training_blocks(ex.out, inputs, r)
        run_info = train_stage(ex, rd, r, blocks)
        if r >= 1:
            reason = stop_rule(rounds, run_info["clusters"], cfg)
            if reason is not None:
                return rounds, reason
        plan = round_plan(ex.out, r, cfg)
        export_stage(ex, rd, r, blocks, plan)
        bias_stage(ex, rd, r, plan)
        analysis_stage(ex, rd, r, plan)
        rounds.append(round_entry(rd, r))
        write_summary(ex.out, rounds, f"running: {len(rounds)} round(s) done", cfg, ex.sysm)  # a summary after every round
    return rounds, f"round budget: {cfg.rounds} biased run(s)"
