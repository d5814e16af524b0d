"""The summary of an explore ``DIR``: one entry per round, the totals, and the reweighted frames of the last round."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import io

from ..._core.files import atomic_write_bytes, atomic_write_json
from ..markers import read_done
from .inputs import System
from .plots import plot_delta_f
from .settings import KB, ExploreSettings
from .state import json_safe, read_json
from ...analysis import delta_f_phi

__all__ = ["round_entry", "write_summary", "npz_bytes"]


def round_entry(rd: Path, r: int) -> dict:
    """The entry of round ``r`` in ``summary.json``: its stages' times and its analysis."""
    a = read_json(rd / "analysis" / "analysis.json")
    run_d, exp_d, bias_d = (read_done(rd / s) for s in ("run_stage", "exp_stage", "bias_stage"))
    entry = {
        "round": r,
        "biased_ns": a["biased_ns"],
        "cv_round": a.get("cv_round", r),
        "method": a.get("method"),
        "continues": a.get("continues"),
        "run_ns": a.get("run_ns", a["biased_ns"]),
        "unstable": a.get("unstable"),
        "analysed_until_ps": a.get("analysed_until_ps"),
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


def write_summary(out: Path, rounds: list[dict], stop_reason: Optional[str], cfg: ExploreSettings, sysm: System) -> dict:
    """Write ``summary.json`` (and, for alanine dipeptide, ``reweighted.npz`` and ``delta_f.png``); return its content."""
    kT = KB * cfg.temperature
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
        atomic_write_bytes(out / "reweighted.npz", npz_bytes(phi=fr["phi"][keep], psi=fr["psi"][keep], logw=fr["logw"][keep]))
        check = delta_f_phi(fr["phi"][keep], fr["logw"][keep], kT, n_blocks=cfg.n_blocks)
        summary["final"] = {
            "round": last["round"],
            "delta_f_phi_pos_minus_neg_kjmol": check.to_list(),
            "delta_f_c7ax_minus_c7eq_kjmol": last["delta_f_c7ax_minus_c7eq_kjmol"],
            "transitions_per_ns": last["transitions_per_ns"],
            "reached_c7ax": any((q.get("transitions") or 0) > 0 for q in rounds),
        }
        summary["reweighted"] = str((out / "reweighted.npz").resolve())
        summary["reweighted_note"] = ("frames of the last round's biased run, all of it when it continued earlier rounds' (first "
                                      f"{cfg.discard_fraction:g} left out); phi, psi in rad; logw = beta (V - c(t)); "
                                      "dF = -kT ln(sum w[phi>0] / sum w[phi<0]), kT = 2.494 kJ/mol at 300 K")
        if (last.get("method") or cfg.method) != "metad":
            summary["reweighted_note"] = summary["reweighted_note"].replace("beta (V - c(t))", "beta V (OPES bias)")
        if cfg.walls:
            summary["reweighted_note"] = summary["reweighted_note"].replace("; dF", " + beta W (walls.bias); dF", 1)
        plot_delta_f(out, rounds)
    summary = json_safe(summary)
    atomic_write_json(out / "summary.json", summary)
    return summary


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """The bytes of an ``.npz`` file holding ``arrays`` (to be written atomically)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
