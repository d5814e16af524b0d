"""The statistics of the finished runs of a rates ``DIR``: ``summary.json``, ``ecdf.png``, ``tau_vs_pace.png``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..._core.errors import GMVAEInputError
from ..._core.files import atomic_write_json
from ...analysis import escape_statistics, free_energy_from_rates, rates_agree
from .settings import RUN_FORMAT, InfrequentMetadWarning
from ..._core.figures import _pyplot, save_figure

__all__ = ["summarize_rates"]


def _load_runs(out: Path) -> dict:
    mpath = out / "rates.json"
    if not mpath.is_file():
        raise GMVAEInputError(f"{mpath}: file not found; expected a rates folder (gmvae-cv rates)")
    groups: dict = {}
    for f in sorted((out / "runs").glob("*/pace*/run*/result.json")):
        r = json.loads(f.read_text())
        if r.get("format") != RUN_FORMAT:
            raise GMVAEInputError(f"{f}: 'format' is {r.get('format')!r}, expected {RUN_FORMAT!r}")
        groups.setdefault(r["direction"], {}).setdefault(int(r["pace"]), []).append(r)
    return groups


def _failed_checks(summary: dict, alpha: float) -> list[str]:
    """The checks of infrequent metadynamics that ``summary`` fails, each as a sentence (empty: all pass).

    Per direction and pace: with at least 3 escapes, the KS test against an exponential (p >=
    ``alpha``); every run reached the target; the median bias at the last frame before the
    target is at most 1 kT. Per direction with two or more paces: the pace test (p >= ``alpha``).
    With both directions and a reweighting dF: the two dF intervals overlap.
    """
    failed = []
    for direction, d in summary["directions"].items():
        for pace, e in d["paces"].items():
            if e.get("ks_pvalue") is not None and e["ks_pvalue"] < alpha:
                failed.append(f"{direction}, pace {pace}: the rescaled times are not exponential (KS p = {e['ks_pvalue']:.2g})")
            if e["escaped"] < e["runs"]:
                failed.append(f"{direction}, pace {pace}: {e['runs'] - e['escaped']} of {e['runs']} run(s) did not reach the "
                              "target within max_ps, so tau from the others is too short")
            if e.get("median_bias_at_crossing_kT", 0.0) > 1.0:
                failed.append(f"{direction}, pace {pace}: the median bias at the last frame before the target is "
                              f"{e['median_bias_at_crossing_kT']:.2f} kT: hills land near the transition state")
        if d.get("pace_pvalue") is not None and d["pace_pvalue"] < alpha:
            taus = ", ".join(f"{e['tau_ns'][0]:.3g} ns at pace {p}" for p, e in d["paces"].items() if "tau_ns" in e)
            failed.append(f"{direction}: the rate moves with the deposition pace (p = {d['pace_pvalue']:.2g}; {taus}): "
                          "the bias reaches the transition state or the CV misses a slow degree of freedom")
    if summary.get("delta_f_consistent") is False:
        v, lo, hi = summary["delta_f_from_rates_kjmol"]
        rv, rlo, rhi = summary["delta_f_reweighting_kjmol"]
        failed.append(f"dF from the rates, {v:.2f} ({lo:.2f}-{hi:.2f}) kJ/mol, disagrees with reweighting, "
                      f"{rv:.2f} ({rlo:.2f}-{rhi:.2f})")
    return failed


def summarize_rates(out: str | os.PathLike, *, confidence: float = 0.95, reweighting_df: Optional[Sequence[float]] = None,
                    alpha: float = 0.05) -> dict:
    """Statistics of the finished runs of ``out``; writes ``summary.json``, ``ecdf.png``, ``tau_vs_pace.png``.

    Per direction and pace: :func:`~gmvae_cv.analysis.kinetics.escape_statistics` of the rescaled
    times (ps; ``tau`` also in ns), the median acceleration, the median bias at the crossing in
    kT. Per direction: all paces pooled, and the pace test
    (:func:`~gmvae_cv.analysis.kinetics.rates_agree`). With both directions:
    :math:`F_{to} - F_{from}` from the ratio of the pooled means, next to ``reweighting_df``
    ([value, low, high], kJ/mol) if given. The verdict: ``rates_checks_passed`` is true when
    every check of :func:`_failed_checks` that could run passed (KS and pace tests at p >=
    ``alpha``, every run escaped, no bias at the transition state, the two dF agree);
    ``rates_failed_checks`` says which failed and ``rates_checks_not_run`` which could not run.

    Returns
    -------
    dict
        JSON-ready; keys ``directions`` (per direction: ``paces``, ``pooled``, ``pace_pvalue``),
        ``tau_<from>_to_<to>_ns`` as [value, low, high], ``rates_ks_pvalue`` (the smallest over
        the pooled directions), ``rates_runs``, ``delta_f_from_rates_kjmol``, ``rates_checks_passed``
        (None without escapes), ``rates_failed_checks`` and ``rates_checks_not_run``.
    """
    out = Path(out)
    manifest = json.loads((out / "rates.json").read_text()) if (out / "rates.json").is_file() else None
    groups = _load_runs(out)
    summary: dict = {"format": "gmvae-cv/rates-summary", "confidence": confidence, "directions": {}}
    kT = None
    pooled_times = {}
    n_total = 0
    for direction, by_pace in groups.items():
        d: dict = {"paces": {}}
        all_t = []
        per_pace = []
        for pace, runs in sorted(by_pace.items()):
            esc = [r for r in runs if r["escaped"]]
            kT = runs[0]["kT"]
            n_total += len(esc)
            entry = {"runs": len(runs), "escaped": len(esc)}
            if len(esc) < len(runs):
                warnings.warn(f"{direction}, pace {pace}: {len(runs) - len(esc)} run(s) did not reach the target "
                              f"within max_ps; they are left out (their times are lower bounds)", InfrequentMetadWarning)
            t = np.array([r["rescaled_time_ps"] for r in esc])
            if len(t) >= 3:
                st = escape_statistics(t, confidence=confidence, time_unit="ps").to_dict()
                st["tau_ns"] = [st["tau"] / 1000, st["tau_low"] / 1000, st["tau_high"] / 1000]
                entry.update(st)
                per_pace.append(t)
            if esc:
                vc = np.array([r["bias_at_crossing_kjmol"] for r in esc], dtype=float) / kT
                entry["median_acceleration"] = float(np.median([r["acceleration"] for r in esc]))
                entry["median_bias_at_crossing_kT"] = float(np.median(vc))
                entry["biased_ns_total"] = float(sum(r["biased_time_ps"] for r in esc) / 1000)
                entry["wall_s_total"] = float(sum(r["wall_s"] for r in runs))
                if np.median(vc) > 1.0:
                    warnings.warn(
                        f"{direction}, pace {pace}: the median bias at the last frame before the target is "
                        f"{np.median(vc):.2f} kT: hills land near the transition state, so the rate depends on the "
                        f"pace; deposit more slowly or lower the height", InfrequentMetadWarning)
            d["paces"][str(pace)] = entry
            all_t.append(t)
        t_all = np.concatenate(all_t) if all_t else np.array([])
        if t_all.size >= 3:
            st = escape_statistics(t_all, confidence=confidence, time_unit="ps").to_dict()
            st["tau_ns"] = [st["tau"] / 1000, st["tau_low"] / 1000, st["tau_high"] / 1000]
            d["pooled"] = st
            pooled_times[direction] = t_all
        d["pace_pvalue"] = rates_agree(per_pace) if len(per_pace) >= 2 else None
        summary["directions"][direction] = d
        a, b = direction.split("-", 1)
        if "pooled" in d:
            summary[f"tau_{a.lower()}_to_{b.lower()}_ns"] = d["pooled"]["tau_ns"]
    summary["rates_runs"] = n_total
    ks = [d["pooled"]["ks_pvalue"] for d in summary["directions"].values() if "pooled" in d]
    summary["rates_ks_pvalue"] = min(ks) if ks else None
    if manifest and manifest.get("both_directions"):
        fwd, bwd = f"{manifest['from']}-{manifest['to']}", f"{manifest['to']}-{manifest['from']}"
        if fwd in pooled_times and bwd in pooled_times:
            summary["delta_f_from_rates_kjmol"] = list(free_energy_from_rates(pooled_times[fwd], pooled_times[bwd], kT,
                                                                              confidence=confidence))
            summary["delta_f_definition"] = f"F({manifest['to']}) - F({manifest['from']}) = kT ln(tau_{fwd} / tau_{bwd})"
    if reweighting_df is not None:
        summary["delta_f_reweighting_kjmol"] = [float(x) for x in reweighting_df]
        if "delta_f_from_rates_kjmol" in summary:
            _, lo, hi = summary["delta_f_from_rates_kjmol"]
            rv, rlo, rhi = summary["delta_f_reweighting_kjmol"]
            summary["delta_f_consistent"] = bool(lo <= rhi and rlo <= hi)
    summary["rates_failed_checks"] = _failed_checks(summary, alpha)
    summary["rates_checks_passed"] = None if n_total == 0 else not summary["rates_failed_checks"]
    summary["rates_checks_not_run"] = [f"{dn}: one pace, so no pace test" for dn, d in summary["directions"].items()
                                       if len(d["paces"]) < 2]
    if manifest:
        summary["system"] = manifest["system"]
        summary["cv"] = manifest["cv"]
    atomic_write_json(out / "summary.json", summary)
    _plots(out, groups, summary)
    return summary


def _plots(out: Path, groups: dict, summary: dict) -> None:
    plt = _pyplot()
    dirs = [d for d in summary["directions"] if "pooled" in summary["directions"][d]]
    if not dirs:
        return
    fig, axes = plt.subplots(1, len(dirs), figsize=(4.5 * len(dirs), 3.6), squeeze=False)
    for ax, direction in zip(axes[0], dirs):
        for pace, runs in sorted(groups[direction].items()):
            t = np.sort([r["rescaled_time_ps"] for r in runs if r["escaped"]]) / 1000
            if t.size:
                ax.step(t, np.arange(1, t.size + 1) / t.size, where="post", label=f"pace {pace} (n={t.size})")
        st = summary["directions"][direction]["pooled"]
        tt = np.linspace(0, ax.get_xlim()[1], 200)
        ax.plot(tt, 1 - np.exp(-tt * 1000 / st["tau_ks"]), "k--", label=f"1 - exp(-t/tau), tau = {st['tau_ks'] / 1000:.3g} ns")
        ax.set_xscale("symlog", linthresh=max(float(tt[1]), 1e-6))
        ax.set_xlabel("rescaled escape time t* (ns)")
        ax.set_ylabel("empirical CDF")
        ax.set_title(f"{direction}: KS p = {st['ks_pvalue']:.2f}, median/mean = {st['median_over_mean']:.2f}")
        ax.legend(fontsize=7)
    save_figure(fig, out / "ecdf.png")
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for direction in dirs:
        ps = [(int(p), e) for p, e in summary["directions"][direction]["paces"].items() if "tau_ns" in e]
        if not ps:
            continue
        x = np.array([p for p, _ in ps])
        y = np.array([e["tau_ns"] for _, e in ps])
        ax.errorbar(x, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], marker="o", capsize=3, label=direction)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deposition pace (MD steps)")
    ax.set_ylabel("tau (ns), 95 % interval")
    ax.legend(fontsize=7)
    save_figure(fig, out / "tau_vs_pace.png")
