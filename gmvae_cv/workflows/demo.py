"""The main job on the embedded default: alanine dipeptide from MD to a checked, biased GMVAE CV.

Two routes share stage 1, ``md``: unbiased Langevin MD of alanine dipeptide in vacuum (amber14,
300 K, 2 fs). At 300 K the dipeptide stays at phi < 0 (C7eq, C5/beta, alpha_R) for far longer than
the run: the states at phi > 0 (C7ax, alpha_L) are unknown to it.

Default (``train_temperature=None``): discovery from that stuck run
(:mod:`gmvae_cv.workflows.demo_explore`): ``explore`` (GMVAE, export + check, OPES-explore, retrain,
until the stop rule), the free energy on phi/psi and on the latent space, an MSM of the GMVAE states
of the 300 K run, ``report.md`` and ``summary.json``.

With a ``train_temperature`` (e.g. 700 K, where the molecule happens to cross), the route that
uses that prior knowledge (each stage in its own folder of ``out``):

1. ``md_train``: a second unbiased run (another seed) at ``train_temperature``, whose frames train
   the GMVAE (see :class:`DemoSettings`);
2. ``run``: the 25 heavy-atom distances, time-lagged GMVAE training (n_clusters=4, latent dimension 2,
   lag 5 ps, seeded);
3. ``exp``: export and check (stops the demo if any consumer disagrees);
4. ``bias``: well-tempered metadynamics on both CV components in OpenMM (1 fs steps, a hill per ps);
5. ``analysis``: c(t)-reweighted free energy on phi/psi, C7eq/C7ax free-energy difference with a
   block-averaging error, C7eq <-> C7ax transitions, MSM (implied timescales, Chapman-Kolmogorov
   test) on the GMVAE states of the unbiased run, plots;
6. ``report.md`` and ``summary.json`` (every number computed by the stages above).

A stage whose ``done`` marker exists is reused, so a killed demo started again continues where it
stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import mdtraj as md

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_json, atomic_write_text
from .markers import done, fresh, mark_done, read_done
from ..features import alanine_heavy_atom_distances, load_trajectory_features
from ..learn import load_run
from ..systems import AlanineDipeptide, alanine_basin
from ..learn import fit
from ..deploy import check_export, export
from ..deploy import load_cv
from ..features import alanine_backbone_torsions
from ..metad import run_metadynamics
from ..analysis import Hills, ReweightedFES, ct_log_weights, read_plumed
from .._core.figures import _pyplot, save_figure
from ..analysis import MarkovAnalysis, count_transitions, gmvae_states
from .demo_explore import fes_minimum, run_explore_route

__all__ = ["DemoSettings", "run_demo"]

_KB = 0.0083144626  # kJ/mol/K
_REPORT_INTERVAL = 500  # MD steps between frames of the unbiased runs: 1 ps per frame (2 fs steps)


@dataclass
class DemoSettings:
    """Sizes of the demo's stages (``quick`` shrinks them for tests).

    Parameters
    ----------
    unbiased_ns : float
        Simulated time of the unbiased 300 K run, ns.
    rounds, ns_per_round : int, float
        Default route: the round budget of ``explore`` and the OPES-explore time of each round, ns.
    train_temperature : float or None
        None (default): the explore route from the 300 K run (module docstring). A temperature
        (K): the route that trains the GMVAE on an unbiased run at that temperature. At 300 K the
        dipeptide does not leave C7eq/beta in nanoseconds: a GMVAE trained there and biased with
        well-tempered metadynamics drove 0 C7eq <-> C7ax transitions in 4 ns (measured); at 700 K
        about 17 % of the frames have phi > 0, and the CV resolves the phi rotation.
    biased_ns : float
        With ``train_temperature``: simulated time of the metadynamics run, ns.
    train_ns : float
        With ``train_temperature``: simulated time of the unbiased training run, ns.
    entropy_weight : float
        Weight of the negative entropy of q(y|x) in the loss. The reference's 0.05 gives a
        q(y|x) that switches within a few hundredths of a nm between clusters whose latent means
        lie far apart; metadynamics on such a CV heated the dipeptide to 1100 K within 1 ns and a
        4 ns run blew up (measured). 2.0 gives softer switches (mean max q(y|x) 0.62 instead of
        0.99 on the 700 K frames).
    lag : int
        Time lag of the GMVAE in training frames (1 ps each): the time-lagged variant
        reconstructs x(t + lag) from x(t), so its latent space follows the slow processes. On
        the 4 ns, 700 K training run (entropy weight 2, 1 fs biased steps, 1 ns of
        metadynamics) the CV without lag drove 1 C7eq <-> C7ax transition, with a lag of 5 ps 16
        (metadynamics on phi/psi itself: 10 in 1 ns), measured.
    timestep_fs : float
        Time step of the biased run, fs. With the 700 K CV (entropy weight 2) the mean kinetic
        temperature of a 2 fs biased run was 316 K with spikes to 795 K (the thermostat at 300 K),
        at 1 fs 301 K (as metadynamics on phi/psi at 2 fs: 301 K). The time-lagged CV is
        smoother: 299 K at 2 fs and 305 K at 1 fs (+- 2 K, ``benchmarks/bias_stability.json``);
        1 fs is kept as the margin for a CV that was never looked at. The hill pace is 1 ps
        whatever the time step.
    epochs : int
        Maximum GMVAE training epochs (the route with ``train_temperature``).
    explore_epochs : int
        Maximum GMVAE training epochs of each explore round (as in ``benchmarks/explore.py``).
    n_clusters, latent_dim : int
        Clusters and CV components.
    rate_runs, rate_paces, rate_max_ns, rate_workers : int, tuple of int, float, int
        Default route's rates stage (:mod:`~gmvae_cv.workflows.demo_rates`): infrequent-metadynamics
        runs per direction and pace, the hill paces (MD steps of 2 fs; two, so that the pace test
        can fail), the biased ns after which a run stops unescaped, and local Dask workers. On the
        CV the demo keeps, hills every 1 ps made the C7eq -> C7ax time 5x longer than at 5 or 10
        ps (20 runs per pace, p = 1e-6), and at 5 and 10 ps it agreed with itself and with
        phi/psi (``docs/benchmarks.md``, "Rates"): hence 5 and 10 ps. On an AMD EPYC VM the
        same runs took 16.7 us at 5 ps against 5.35 at 10 (p = 4e-4): the pace test can fail.
    seed : int
        Seed of every stage.
    """

    unbiased_ns: float = 4.0
    rounds: int = 10
    ns_per_round: float = 1.0
    train_temperature: Optional[float] = None
    biased_ns: float = 4.0
    train_ns: float = 4.0
    entropy_weight: float = 2.0
    lag: int = 5
    timestep_fs: float = 1.0
    epochs: int = 150
    explore_epochs: int = 100
    n_clusters: int = 4
    latent_dim: int = 2
    rate_runs: int = 10
    rate_paces: tuple = (2500, 5000)
    rate_max_ns: float = 20.0
    rate_workers: int = 2
    seed: int = 0

    @classmethod
    def quick(cls, train_temperature: Optional[float] = None) -> "DemoSettings":
        """Small sizes: 0.4 ns at 300 K, then 3 explore rounds of 0.3 ns and 3 rate runs per direction
        at one pace, of at most 0.5 ns (or, with a ``train_temperature``, 2 ns there and 1 ns of metadynamics);
        40 epochs."""
        return cls(unbiased_ns=0.4, rounds=3, ns_per_round=0.3, biased_ns=1.0, train_ns=2.0, epochs=40,
                   explore_epochs=40, train_temperature=train_temperature, rate_runs=3, rate_paces=(500,), rate_max_ns=0.5,
                   rate_workers=1)


def _delta_f(labels: np.ndarray, logw: np.ndarray, kT: float, n_blocks: int = 5) -> tuple[float, float]:
    """F(C7ax) - F(C7eq) in kJ/mol from weighted core-set populations, with a block-averaging error."""
    w = np.exp(logw - logw.max())

    def df(sel: slice) -> float:
        p_eq = w[sel][labels[sel] == 0].sum()
        p_ax = w[sel][labels[sel] == 1].sum()
        return -kT * math.log(p_ax / p_eq) if p_ax > 0 and p_eq > 0 else float("nan")

    value = df(slice(None))
    n = len(labels)
    blocks = np.array([df(slice(b * n // n_blocks, (b + 1) * n // n_blocks)) for b in range(n_blocks)])
    blocks = blocks[np.isfinite(blocks)]
    err = float(blocks.std(ddof=1) / math.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")
    return value, err


def run_demo(out: str | os.PathLike, *, quick: bool = False, settings: Optional[DemoSettings] = None,
             progress: Optional[Callable] = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the demo into ``out`` and return the summary.

    Parameters
    ----------
    out : path
        Output folder; finished stages found there are reused.
    quick : bool
        Small sizes (:meth:`DemoSettings.quick`).
    settings : DemoSettings, optional
        Explicit sizes (override ``quick``).
    progress : callable, optional
        tqdm-like progress class for the MD stages.
    log : callable
        Receives one line per stage (the CLI prints them).

    Returns
    -------
    dict
        The content of ``summary.json``.
    """
    cfg = settings or (DemoSettings.quick() if quick else DemoSettings())
    out = Path(out)
    _check_settings(out, cfg)
    ala = AlanineDipeptide()

    # 1. unbiased MD (Ramachandran, MSM; the start of the explore route)
    md_dir, hot_dir = out / "md", out / "md_train"
    n_md, md_info = _md_stage(ala, md_dir, cfg.unbiased_ns, 300.0, cfg.seed, "unbiased MD", progress, log,
                              n_stages=6)
    if cfg.train_temperature is None:
        return run_explore_route(out, cfg, md_dir, n_md, md_info, progress, log)
    # the route with a training run at train_temperature
    n_hot, _ = _md_stage(ala, hot_dir, cfg.train_ns, cfg.train_temperature, cfg.seed + 1, "training MD", progress, log)
    traj_file, top_file = md_dir / "traj.dcd", md_dir / "topology.pdb"
    hot_file = hot_dir / "traj.dcd"

    # 2. features + training
    spec = alanine_heavy_atom_distances()
    x = load_trajectory_features([traj_file], top_file, spec)[0]
    x_train = load_trajectory_features([hot_file], top_file, spec)[0]
    hot = md.load(str(hot_file), top=str(top_file))  # export's check frames and the latent-space plots
    _train_stage(out / "run", x_train, x.shape[1], spec, hot_file, cfg, progress, log)
    run = load_run(out / "run")

    # 3. export + check, 4. biased run
    _export_stage(out / "exp", run, x_train, hot, log)
    bias_info = _bias_stage(ala, out / "bias", out / "exp", cfg, progress, log)

    # 5. analysis
    log("[5/6] reweighting, transitions, MSM, plots")
    an = out / "analysis"
    an.mkdir(exist_ok=True)
    biased = _reweighting(out / "bias", an, cfg)
    traj = md.load(str(traj_file), top=str(top_file))
    phi_u = md.compute_phi(traj)[1][:, 0]
    psi_u = md.compute_psi(traj)[1][:, 0]
    _plot_latent_space(an / "latent_space.png", phi_u, psi_u, hot, run.transform(x_train), cfg)
    msm = _msm(run, x, an)
    shutil.copy(out / "run" / "loss.png", an / "loss.png")

    # 6. report
    unbiased = {"ns": n_md * 0.002 / 1000.0, "training_ns": n_hot * 0.002 / 1000.0, "info": md_info,
                "core": alanine_basin(phi_u, psi_u)}
    summary = _summary(unbiased, biased, bias_info, msm, cfg)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", _report(summary, md_info, bias_info, cfg))
    log(f"[6/6] wrote {out / 'report.md'} and {out / 'summary.json'}")
    return summary


def _check_settings(out: Path, cfg: DemoSettings) -> None:
    """Create ``out`` and write ``settings.json``; refuse an ``out`` that holds a demo of other settings."""
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / "settings.json"
    if settings_file.is_file() and json.loads(settings_file.read_text()) != json.loads(json.dumps(cfg.__dict__)):
        raise GMVAEInputError(f"{settings_file}: {out} holds a demo made with other settings; use another --out")
    atomic_write_json(settings_file, cfg.__dict__)


def _md_stage(ala: Any, stage: Path, ns: float, temperature: float, seed: int, what: str,
              progress: Optional[Callable], log: Callable[[str], None], n_stages: int = 6) -> tuple[int, dict]:
    """Unbiased MD of ``ns`` ns at ``temperature`` K (2 fs steps) into ``stage`` unless done.

    Returns the number of MD steps and the stage's ``done.json`` (``seconds``,
    ``steps_per_second``, ``platform``).
    """
    n_steps = int(round(ns * 1e6 / 2 / _REPORT_INTERVAL)) * _REPORT_INTERVAL
    if done(stage):
        log(f"[1/{n_stages}] {what}: reusing {stage}")
    else:
        log(f"[1/{n_stages}] {what}: {ns} ns of alanine dipeptide at {temperature:g} K")
        t0 = time.perf_counter()
        res = ala.simulate(n_steps, _REPORT_INTERVAL, fresh(stage), temperature=temperature, seed=seed, progress=progress)
        mark_done(stage, {"seconds": time.perf_counter() - t0, "steps_per_second": res.steps_per_second, "platform": res.platform})
    return n_steps, read_done(stage)


def _train_stage(run_dir: Path, x_train: np.ndarray, n_features: int, spec: Any, hot_file: Path, cfg: DemoSettings,
                 progress: Optional[Callable], log: Callable[[str], None]) -> None:
    """Train the time-lagged GMVAE on the training run's features ``x_train`` into ``run_dir`` unless done."""
    if done(run_dir / "stage"):
        log(f"[2/6] GMVAE: reusing {run_dir}")
        return
    log(f"[2/6] GMVAE: n_clusters={cfg.n_clusters}, latent dimension {cfg.latent_dim}, lag {cfg.lag} frames, on {len(x_train)} frames x {n_features} distances")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    fit(x_train, n_clusters=cfg.n_clusters, latent_dim=cfg.latent_dim, epochs=cfg.epochs, batch_size=500, lr=3e-3, seed=cfg.seed,
        entropy_weight=cfg.entropy_weight, lag=cfg.lag, feature_spec=spec, out=run_dir, sources=[str(hot_file)], progress=progress is not None)
    mark_done(run_dir / "stage", {})


def _export_stage(exp_dir: Path, run: Any, x_train: np.ndarray, hot: Any, log: Callable[[str], None]) -> None:
    """Export ``run`` into ``exp_dir`` and check it (stops the demo on a disagreement) unless done."""
    if done(exp_dir / "stage"):
        log(f"[3/6] export and check: reusing {exp_dir}")
        return
    log("[3/6] export and check (PLUMED and OpenMM patterns)")
    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    export(run, exp_dir, data=x_train, frames=hot)
    report = check_export(exp_dir)
    if not report.passed:
        raise GMVAEInputError(f"{exp_dir}: the exported CV disagrees with the Python model:\n{report.to_text()}")
    mark_done(exp_dir / "stage", {"passed": True})


def _bias_stage(ala: Any, bias_dir: Path, exp_dir: Path, cfg: DemoSettings, progress: Optional[Callable],
                log: Callable[[str], None]) -> dict:
    """Well-tempered metadynamics on the exported CV into ``bias_dir`` unless done; return its ``stage/done.json``."""
    pace = int(round(1000.0 / cfg.timestep_fs))  # one hill per ps
    n_bias = int(round(cfg.biased_ns * 1e6 / cfg.timestep_fs / pace)) * pace
    cv = load_cv(exp_dir)
    sigma = cv.meta["cv_json"]["plumed"]["metad"]["sigma"]
    if done(bias_dir / "stage"):
        log(f"[4/6] metadynamics: reusing {bias_dir}")
    else:
        log(f"[4/6] well-tempered metadynamics on the {cfg.latent_dim}D GMVAE CV: {cfg.biased_ns} ns")
        res = run_metadynamics(
            cv, bias_dir, system=ala.create_system(), topology=ala.topology, positions=ala.positions, n_steps=n_bias,
            sigma=sigma, temperature=300.0, height=1.2, bias_factor=10.0, pace=pace, seed=cfg.seed,
            timestep=cfg.timestep_fs / 1000.0,
            extra_colvar=alanine_backbone_torsions(transform="raw"), progress=progress,
            description={"name": "alanine dipeptide (ACE-ALA-NME), vacuum"},
        )
        mark_done(bias_dir / "stage", {"ns_per_day": res.ns_per_day, "platform": res.platform, "n_hills": res.n_hills,
                                       "kinetic_temperature": res.info["kinetic_temperature_this_invocation"]})
    return read_done(bias_dir / "stage")


def _reweighting(bias_dir: Path, an: Path, cfg: DemoSettings) -> dict:
    """c(t) reweighting of the biased run: dF (C7ax - C7eq) with its error, transitions, the phi/psi FES.

    Writes ``an/fes_phi_psi.dat`` and ``.png``; returns ``df``, ``df_err`` (kJ/mol), ``ns``
    (biased time), ``transitions`` and ``fes``.
    """
    kT = _KB * 300.0
    colvar = read_plumed(bias_dir / "COLVAR")
    hills = Hills.from_file(bias_dir / "HILLS")
    s = np.column_stack([colvar[f"cv.{i}"] for i in range(cfg.latent_dim)])
    logw = ct_log_weights(hills, s, colvar["time"], kT)
    core_b = alanine_basin(colvar["phi"], colvar["psi"])
    df, df_err = _delta_f(core_b, logw, kT)
    biased_ns = float(colvar["time"][-1]) / 1000.0
    trans = count_transitions(core_b)
    fes = ReweightedFES(["phi", "psi"], method="ct", temperature=300.0, bins=[60, 60]).fit(bias_dir / "COLVAR", hills=hills).fetch_model()
    fes.write_dat(an / "fes_phi_psi.dat")
    fes.plot(an / "fes_phi_psi.png")
    return {"df": df, "df_err": df_err, "ns": biased_ns, "transitions": trans, "fes": fes}


def _plot_latent_space(path: Path, phi_u: np.ndarray, psi_u: np.ndarray, hot: Any, emb: dict, cfg: DemoSettings) -> None:
    """The unbiased Ramachandran plot and the latent space of the training frames (by cluster, phi, psi)."""
    phi_h = md.compute_phi(hot)[1][:, 0]
    psi_h = md.compute_psi(hot)[1][:, 0]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.4), layout="constrained")
    axes[0].hist2d(np.degrees(phi_u), np.degrees(psi_u), bins=60, range=[[-180, 180], [-180, 180]], cmap="viridis", cmin=1)
    axes[0].set_title("unbiased run: Ramachandran")
    axes[1].scatter(emb["z"][:, 0], emb["z"][:, 1], c=emb["clusters"], cmap="tab10", s=3, vmin=0, vmax=9)
    axes[1].set_title(f"latent space of the {cfg.train_temperature:g} K frames, by cluster")
    sc2 = axes[2].scatter(emb["z"][:, 0], emb["z"][:, 1], c=np.degrees(phi_h), cmap="twilight", s=3, vmin=-180, vmax=180)
    fig.colorbar(sc2, ax=axes[2], label="phi (deg)")
    axes[2].set_title("the same, coloured by phi")
    sc3 = axes[3].scatter(emb["z"][:, 0], emb["z"][:, 1], c=np.degrees(psi_h), cmap="twilight", s=3, vmin=-180, vmax=180)
    fig.colorbar(sc3, ax=axes[3], label="psi (deg)")
    axes[3].set_title("the same, coloured by psi")
    axes[0].set_xlabel("phi (deg)")
    axes[0].set_ylabel("psi (deg)")
    for a in axes[1:]:
        a.set_xlabel("z0")
        a.set_ylabel("z1")
    save_figure(fig, path)


def _msm(run: Any, x: np.ndarray, an: Path) -> Any:
    """MSM on the GMVAE states of the unbiased run's features ``x``: ``an/its.png``, ``ck.png``, ``msm.json``."""
    dtrajs = gmvae_states(run, [x])
    lags = [1, 2, 5, 10, 20]
    lags = [lag for lag in lags if lag < len(x) // 4] or [1]
    msm = MarkovAnalysis(lags, lagtime=lags[min(2, len(lags) - 1)], dt=_REPORT_INTERVAL * 0.002, time_unit="ps",
                         n_samples=20, n_metastable=2).fit(dtrajs).fetch_model()
    msm.plot_implied_timescales(an / "its.png")
    msm.plot_ck_test(an / "ck.png")
    msm.save(an / "msm.json")
    return msm


def _summary(unbiased: dict, biased: dict, bias_info: dict, msm: Any, cfg: DemoSettings) -> dict:
    """The content of ``summary.json`` (a quantity that could not be computed is None)."""
    fes = biased["fes"]
    phi_min, psi_min, basin_min = fes_minimum(fes)
    md_info, biased_ns, trans = unbiased["info"], biased["ns"], biased["transitions"]
    summary = {
        "route": "train_temperature",
        "check_passed": True,
        "latent_dim": cfg.latent_dim,
        "n_clusters": cfg.n_clusters,
        "unbiased_ns": unbiased["ns"],
        "training_ns": unbiased["training_ns"],
        "training_temperature_K": cfg.train_temperature,
        "biased_ns": biased_ns,
        "ns_per_day_unbiased": md_info["steps_per_second"] * 0.002 * 86400 / 1000.0,
        "ns_per_day_biased": bias_info["ns_per_day"],
        "platform_unbiased": md_info["platform"],
        "platform_biased": bias_info["platform"],
        "transitions_biased": trans,
        "transitions_per_ns_biased": trans / biased_ns,
        "biased_timestep_fs": cfg.timestep_fs,
        "biased_mean_kinetic_temperature_K": (bias_info.get("kinetic_temperature") or {}).get("mean", float("nan")),
        "transitions_per_ns_unbiased": count_transitions(unbiased["core"]) / unbiased["ns"],
        "delta_f_c7ax_minus_c7eq_kjmol": biased["df"],
        "delta_f_c7ax_minus_c7eq_error_kjmol": biased["df_err"],
        "fes_minimum_phi_psi_deg": [phi_min, psi_min],
        "fes_minimum_basin": basin_min,
        "slowest_its_ps": float(msm.slowest_timescale()),
        "msm_lag_ps": float(msm.lagtime * msm.dt) if hasattr(msm, "lagtime") else None,
        "settings": cfg.__dict__,
    }
    # JSON has no NaN: a quantity that could not be computed (e.g. no C7ax frame) is null
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def _report(summary: dict, md_info: dict, bias_info: dict, cfg: DemoSettings) -> str:
    """The text of ``report.md``: the run in one paragraph, the main numbers, the figures."""
    lines = [
        "# gmvae-cv demo: alanine dipeptide",
        "",
        f"Unbiased MD {summary['unbiased_ns']:.2f} ns at 300 K ({summary['ns_per_day_unbiased']:.0f} ns/day, {md_info['platform']}), "
        f"GMVAE n_clusters={cfg.n_clusters}, latent dimension {cfg.latent_dim}, time lag {cfg.lag} ps, trained on {summary['training_ns']:.2f} ns at "
        f"{cfg.train_temperature:g} K, export checked, metadynamics {summary['biased_ns']:.2f} ns on the CV "
        f"({summary['ns_per_day_biased']:.0f} ns/day, {bias_info['platform']}).",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    for key in ("check_passed", "transitions_biased", "transitions_per_ns_biased", "transitions_per_ns_unbiased",
                "biased_mean_kinetic_temperature_K", "delta_f_c7ax_minus_c7eq_kjmol",
                "delta_f_c7ax_minus_c7eq_error_kjmol", "fes_minimum_basin", "slowest_its_ps"):
        v = summary[key]
        lines.append(f"| {key} | {v:.4g} |" if isinstance(v, float) else f"| {key} | {'not computed' if v is None else v} |")
    lines += ["", "![FES](analysis/fes_phi_psi.png)", "", "![latent space](analysis/latent_space.png)", "",
              "![implied timescales](analysis/its.png)", "", "![CK test](analysis/ck.png)", "", "![loss](analysis/loss.png)", ""]
    return "\n".join(lines)
