"""Explore from a stuck 300 K run: does ``gmvae_cv.explore`` reach C7ax, keep crossing, and get dF right?

Three steps, each its own process (so that seeds run side by side and a killed step continues)::

    python benchmarks/explore.py reference --work W --ns 6 --seed 11   # phi/psi metadynamics: the reference dF
    python benchmarks/explore.py seed --work W --seed S [--ns-per-round X] [--rounds N] [--weights coverage|reweighted]
    python benchmarks/explore.py report --work W --out benchmarks/explore.json

``seed``: 4 ns of unbiased 300 K alanine dipeptide (``AlanineDipeptide().simulate``, seed ``S``, the
demo's own start: no frame with phi > 0), then ``gmvae_cv.explore`` from those frames (seed ``S``).
``reference``: well-tempered metadynamics on phi/psi (sigma 0.35 rad, height 1.2 kJ/mol, bias factor 10,
a hill per ps, 2 fs), dF = F(phi > 0) - F(phi < 0) from its c(t)-reweighted frames (first 10 % left out)
with a block-jackknife error (``gmvae_cv.analysis.states``). ``report`` gathers everything into one JSON
with the criteria of issue 13 (last round >= 10 transitions/ns, |dF - reference| <= 1 kJ/mol, biased
total <= 12 ns) checked per seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gmvae_cv._core.versions import machine_info  # noqa: E402

KB = 0.008314462618  # kJ/mol/K


def cmd_reference(args) -> int:
    from gmvae_cv.deploy.loaders import feature_cv
    from gmvae_cv.features import alanine_backbone_torsions
    from gmvae_cv.metad.run import run_metadynamics
    from gmvae_cv.systems import AlanineDipeptide

    out = Path(args.work) / (f"reference_s{args.seed}" if args.method == "metad" else f"phipsi_{args.method}_s{args.seed}")
    ala = AlanineDipeptide()
    tors = alanine_backbone_torsions(transform="raw")
    t0 = time.perf_counter()
    kw = ({"height": 1.2, "bias_factor": 10.0} if args.method == "metad" else {"barrier": 40.0})
    res = run_metadynamics(feature_cv(tors), out, system=ala.create_system(), topology=ala.topology, positions=ala.positions,
                           n_steps=int(round(args.ns * 5e5)), sigma=[0.35, 0.35], temperature=300.0, method=args.method,
                           pace=500, seed=args.seed, timestep=0.002, traj_stride=0, colvar_stride=250,
                           extra_colvar=tors, **kw)
    print(f"{out}: {res.steps} steps, {res.ns_per_day:.0f} ns/day, {time.perf_counter() - t0:.0f} s")
    return 0


def analyse_reference(run_dir: Path, n_blocks: int = 10) -> dict:
    """dF (phi split and core sets) and transitions of a phi/psi metadynamics run (complete or not)."""
    from gmvae_cv.analysis import Hills, ct_log_weights, read_plumed
    from gmvae_cv.analysis.states import count_transitions, delta_f, delta_f_phi
    from gmvae_cv.systems import alanine_basin

    kT = KB * 300.0
    colvar = read_plumed(run_dir / "COLVAR")
    hills = Hills.from_file(run_dir / "HILLS")
    t = np.asarray(colvar["time"], dtype=float)
    n_h = len(hills.time) if hasattr(hills, "time") else None
    # rows beyond the last hill written (a run killed between checkpoints) are left out
    t_max = float(np.max(hills.time)) + 1.0 if n_h else t[-1]
    sel = t <= t_max
    phi, psi = np.asarray(colvar["phi"])[sel], np.asarray(colvar["psi"])[sel]
    s = np.column_stack([phi, psi])
    logw = ct_log_weights(hills, s, t[sel], kT)
    keep = t[sel] >= 0.1 * t[sel][-1]
    d1 = delta_f_phi(phi[keep], logw[keep], kT, n_blocks=n_blocks)
    lab = alanine_basin(phi[keep], psi[keep])
    d2 = delta_f(lab == 0, lab == 1, logw[keep], kT, n_blocks=n_blocks)
    ns = float(t[sel][-1]) / 1000.0
    info = json.loads((run_dir / "run.json").read_text())
    # second estimator: the bias of the last checkpoint, F = -gamma/(gamma - 1) V on the periodic grid
    # (axis 0 phi, axis 1 psi, node 90 = node 0 left out), Boltzmann-summed over phi > 0 and phi < 0
    with np.load(run_dir / "checkpoint.npz") as z:
        v = z["grid_values"][:-1, :-1]
    g = info["params"]["metadynamics"]["bias_factor"]
    f = -g / (g - 1.0) * v
    p = np.exp(-(f - f.min()) / kT).sum(axis=1)  # over psi; p[k] at phi = -pi + k 2 pi / n
    n = len(p)
    half = 0.5 * (p[0] + p[n // 2])  # phi = -pi (= pi) and phi = 0 lie on the split: half to each side
    pos, neg = p[n // 2 + 1:].sum() + half, p[1:n // 2].sum() + half
    df_bias = float(-kT * math.log(pos / neg))
    return {"run": str(run_dir), "simulated_ns": ns, "status": info.get("status"),
            "transitions": count_transitions(alanine_basin(phi, psi)),
            "transitions_per_ns": count_transitions(alanine_basin(phi, psi)) / ns,
            "delta_f_phi_pos_minus_neg_kjmol": d1.to_list(), "delta_f_c7ax_minus_c7eq_kjmol": d2.to_list(),
            "n_frames_used": int(keep.sum()),
            "delta_f_phi_pos_minus_neg_final_bias_kjmol": df_bias,
            "settings": "phi/psi, sigma 0.35 rad, height 1.2 kJ/mol, bias factor 10, pace 500 steps, 2 fs, 300 K"}


def analyse_opes_phipsi(run_dir: Path, ref: float | None, n_blocks: int = 10) -> dict:
    """OPES (or OPES-explore) on phi/psi: dF (OPES weights, walls), transitions, first crossing, against the reference."""
    from gmvae_cv.analysis import read_plumed
    from gmvae_cv.analysis.states import count_transitions, delta_f_phi
    from gmvae_cv.systems import alanine_basin

    kT = KB * 300.0
    c = read_plumed(run_dir / "COLVAR")
    t = np.asarray(c["time"], dtype=float)
    phi, psi = np.asarray(c["phi"]), np.asarray(c["psi"])
    logw = np.asarray(c["opes.bias"]) / kT + (np.asarray(c["walls.bias"]) / kT if "walls.bias" in c.fields else 0.0)
    keep = t >= 0.1 * t[-1]
    d = delta_f_phi(phi[keep], logw[keep], kT, n_blocks=n_blocks).to_list()
    lab = alanine_basin(phi, psi)
    core = np.flatnonzero(lab >= 0)
    hits = core[1:][(lab[core[1:]] == 1) & (lab[core[:-1]] == 0)]
    info = json.loads((run_dir / "run.json").read_text())
    ns = float(t[-1]) / 1000.0
    return {"run": str(run_dir), "simulated_ns": ns, "transitions_per_ns": count_transitions(lab) / ns,
            "first_transition_ns": float(t[hits[0]]) / 1000.0 if len(hits) else None,
            "delta_f_phi_pos_minus_neg_kjmol": d, "abs_error_vs_reference_kjmol": abs(d[0] - ref) if ref is not None and d[0] is not None else None,
            "ns_per_day": (info.get("performance") or {}).get("ns_per_day_per_walker"), "settings": "phi/psi, sigma 0.35 rad, barrier 40 kJ/mol, pace 500, 2 fs, 300 K"}


def cmd_seed(args) -> int:
    from gmvae_cv.systems import AlanineDipeptide
    from gmvae_cv.workflows.explore import explore

    work = Path(args.work)
    md_dir = work / f"unbiased_s{args.seed}"
    if not (md_dir / "simulation.json").is_file():
        t0 = time.perf_counter()
        AlanineDipeptide().simulate(int(round(args.unbiased_ns * 5e5)), 500, md_dir, temperature=300.0, seed=args.seed)
        print(f"unbiased {args.unbiased_ns} ns: {time.perf_counter() - t0:.0f} s", flush=True)
    name = f"explore_s{args.seed}" + ("" if args.weights == "coverage" else f"_{args.weights}")
    extra = {}
    if args.method != "metad":
        name += f"_{args.method}"
        extra["method"] = args.method
    if args.cv_policy != "keep":
        name += f"_{args.cv_policy}"
        extra["cv_policy"] = args.cv_policy
    if args.bias_factor is not None:
        name += f"_bf{args.bias_factor:g}_h{args.height:g}"
        extra.update(bias_factor=args.bias_factor, height=args.height)
    if args.weights == "reweighted" and args.share_round0 and not (work / name).exists():
        # round 0 trains on unbiased frames only, with no weights in either mode: the two explores
        # share it (copied from the coverage explore of this seed, its explore.json told the new mode)
        import shutil

        src = work / f"explore_s{args.seed}"
        if not (src / "round_00" / "analysis" / "done.json").is_file():
            raise SystemExit(f"{src}: round 0 has not finished; run the coverage explore of seed {args.seed} first")
        (work / name).mkdir()
        meta = json.loads((src / "explore.json").read_text())
        meta["settings"]["training_weights"] = "reweighted"
        (work / name / "explore.json").write_text(json.dumps(meta))
        shutil.copytree(src / "input", work / name / "input")
        shutil.copytree(src / "round_00", work / name / "round_00")
    summary = explore(work / name, traj=md_dir / "traj.dcd", top=md_dir / "topology.pdb", seed=args.seed,
                      rounds=args.rounds, ns_per_round=args.ns_per_round, training_weights=args.weights,
                      epochs=args.epochs, log=lambda s: print(s, flush=True), **extra)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rounds", "settings")}, indent=1))
    return 0


def frontier_weights(work: Path, seed: int) -> dict:
    """What reweighting does to the frames that explore the frontier (decides ``training_weights``).

    Frontier frames: round-0 biased frames with phi beyond the 99th percentile of phi in the
    unbiased start. Their share of the frames (what ``coverage`` trains on) against their share of
    the c(t) weight (what ``reweighted`` trains on), and the Kish effective sample size.
    """
    import mdtraj as md

    d, u = work / f"explore_s{seed}" / "round_00", work / f"unbiased_s{seed}"
    lw = np.load(d / "analysis" / "frames.npz")["traj_logw"]
    w = np.exp(lw - lw.max())
    w /= w.sum()
    phi = md.compute_phi(md.load(str(d / "bias" / "traj.dcd"), top=str(u / "topology.pdb")))[1][:, 0]
    phi_u = md.compute_phi(md.load(str(u / "traj.dcd"), top=str(u / "topology.pdb")))[1][:, 0]
    cut = float(np.percentile(phi_u, 99))
    front = phi > cut
    return {"phi_cut_deg": math.degrees(cut), "frontier_fraction_of_frames": float(front.mean()),
            "frontier_fraction_of_weight": float(w[front].sum()), "kish_ess_over_n": float(1 / np.sum(w**2) / len(w))}


def cmd_report(args) -> int:
    import mdtraj as md

    work = Path(args.work)
    refs = sorted(work.glob("reference_s*"))
    ref_runs = [analyse_reference(r) for r in refs if (r / "COLVAR").is_file()]
    vals = [r["delta_f_phi_pos_minus_neg_kjmol"] for r in ref_runs if r["delta_f_phi_pos_minus_neg_kjmol"][1] is not None]
    if vals:  # inverse-variance mean of the reference runs
        w = np.array([1 / v[1] ** 2 for v in vals])
        ref = float(np.sum(w * np.array([v[0] for v in vals])) / w.sum())
        ref_err = float(1 / math.sqrt(w.sum()))
    else:
        ref, ref_err = None, None
    phipsi_opes = [analyse_opes_phipsi(d, ref) for d in sorted(work.glob("phipsi_opes*_s*")) if (d / "COLVAR").is_file()]
    seeds = {}
    for d in sorted([*work.glob("explore_s*"), *work.glob("round0cv_s*")]):
        sfile = d / "summary.json"
        if not sfile.is_file():
            continue
        s = json.loads(sfile.read_text())
        seed = int(s["settings"]["seed"])
        unb = work / f"unbiased_s{seed}"
        tr = md.load(str(unb / "traj.dcd"), top=str(unb / "topology.pdb"))
        phi_u = md.compute_phi(tr)[1][:, 0]
        last = s["rounds"][-1] if s["rounds"] else {}
        final = (s.get("final") or {}).get("delta_f_phi_pos_minus_neg_kjmol") or [None, None]
        entry = {
            "dir": str(d), "training_weights": s["settings"]["training_weights"],
            "unbiased_ns": len(phi_u) * 0.001, "unbiased_frames_phi_positive": int(np.sum(phi_u > 0)),
            "n_rounds": s["n_rounds"], "stop_reason": s["stop_reason"], "biased_ns_total": s["biased_ns_total"],
            "first_transition_ns": s["first_transition_ns"],
            "walltime_s_total": float(sum(q["walltime_s"] for q in s["rounds"])),
            "cv_policy": s["settings"].get("cv_policy", "retrain"),
            "keep_method": s["settings"].get("keep_method"),
            "keep_min_transitions_per_ns": s["settings"].get("keep_min_transitions_per_ns"),
            "per_round": [{k: q.get(k) for k in ("round", "cv_round", "run_ns", "biased_ns", "walltime_s", "ns_per_day", "transitions", "transitions_per_ns",
                                                 "fraction_phi_positive", "delta_f_phi_pos_minus_neg_kjmol",
                                                 "delta_f_c7ax_minus_c7eq_kjmol")}
                          | {"new_clusters": q["clusters"]["new"], "kinetic_temperature_mean_K": (q.get("kinetic_temperature") or {}).get("mean")}
                          for q in s["rounds"]],
            "final_delta_f_phi_pos_minus_neg_kjmol": final,
            "last_round_transitions_per_ns": last.get("transitions_per_ns"),
        }
        if ref is not None and final[0] is not None:
            entry["delta_f_minus_reference_kjmol"] = final[0] - ref
        entry["criteria"] = {
            "reached_c7ax": bool(s["first_transition_ns"] is not None),
            "last_round_ge_10_transitions_per_ns": bool((last.get("transitions_per_ns") or 0) >= 10),
            "delta_f_within_1_kjmol_of_reference": bool(entry.get("delta_f_minus_reference_kjmol") is not None
                                                        and abs(entry["delta_f_minus_reference_kjmol"]) <= 1.0),
            "biased_total_le_12_ns": bool(s["biased_ns_total"] <= 12.0),
        }
        if d.name == f"explore_s{seed}" and (d / "round_00" / "analysis" / "done.json").is_file():
            entry["round0_frontier_weights"] = frontier_weights(work, seed)
        seeds[d.name] = entry
    comparison = {}
    for key, e in seeds.items():
        if key.endswith("_reweighted") and key[: -len("_reweighted")] in seeds:
            cov = seeds[key[: -len("_reweighted")]]
            n = min(len(e["per_round"]), len(cov["per_round"]))
            comparison[key[: -len("_reweighted")]] = {
                "note": "round 0 shared (unbiased frames, no weights in either mode); from round 1 the GMVAE trains on "
                        "all frames counted once (coverage) or with their c(t) weights normalised per run (reweighted)",
                "rounds_compared": n,
                "coverage": [{k: q[k] for k in ("round", "transitions", "fraction_phi_positive", "new_clusters")} for q in cov["per_round"][:n]],
                "reweighted": [{k: q[k] for k in ("round", "transitions", "fraction_phi_positive", "new_clusters")} for q in e["per_round"][:n]],
            }
    result = {
        "benchmark": "explore",
        "side_by_side": side_by_side(seeds, ref, args),
        "training_weights_comparison": comparison,
        "commands": ["python benchmarks/explore.py reference --work W --ns NS --seed 11",
                     "python benchmarks/explore.py seed --work W --seed S --ns-per-round X --rounds N",
                     "python benchmarks/explore.py report --work W --out benchmarks/explore.json"],
        "machine": {**machine_info(), "cpus": os.cpu_count(),
                    "note": args.note},
        "reference": {"delta_f_phi_pos_minus_neg_kjmol": [ref, ref_err], "runs": ref_runs},
        "phi_psi_opes": phipsi_opes,
        "explore": seeds,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1)[:4000])
    return 0


def _per_seed(entries: list[dict], ref: float | None) -> dict:
    """Medians and ranges over seeds of the quantities issue 13 compares."""
    def stats(vals):
        vals = [v for v in vals if v is not None]
        return {"median": float(np.median(vals)), "min": float(min(vals)), "max": float(max(vals)), "n": len(vals)} if vals else None
    final = [e["final_delta_f_phi_pos_minus_neg_kjmol"] for e in entries]
    return {
        "seeds": [e["seed"] for e in entries],
        "reached_c7ax": [e["criteria"]["reached_c7ax"] for e in entries],
        "first_transition_ns": [e["first_transition_ns"] for e in entries],
        "biased_ns_total": [e["biased_ns_total"] for e in entries],
        "last_round_transitions_per_ns": [e["last_round_transitions_per_ns"] for e in entries],
        "final_delta_f_phi_pos_minus_neg_kjmol": final,
        "abs_error_vs_reference_kjmol": stats([abs(f[0] - ref) if (f and f[0] is not None and ref is not None) else None for f in final]),
        "walltime_s_total": [e["walltime_s_total"] for e in entries],
    }


def side_by_side(seeds: dict, ref: float | None, args) -> dict:
    """The routes of issue 13 next to each other: explore with each CV policy and method, the round-0
    CV alone (``round0cv_s*``: an explore whose every round kept round 0's CV), and stored runs
    (``--stored``: earlier benchmark JSONs, e.g. the ``retrain`` policy)."""
    groups: dict[str, list] = {}
    for name, e in seeds.items():
        policy = e["cv_policy"] if e["cv_policy"] != "keep" else (
            f"keep (from {e.get('keep_min_transitions_per_ns') or 2:g} crossings/ns, kept run: {e.get('keep_method') or 'same method'})")
        key = f"explore {policy} {name.split('_', 2)[2] if name.count('_') >= 2 else 'metad'}"
        if name.startswith("round0cv_"):
            key = "round-0 GMVAE CV alone (kept in every round), " + key.rsplit(" ", 1)[1]
        e["seed"] = int(name.split("_")[1][1:])
        groups.setdefault(key, []).append(e)
    out = {k: _per_seed(v, ref) for k, v in groups.items()}
    for path in args.stored or []:
        stored = json.loads(Path(path).read_text())
        for name, e in stored.get("explore", {}).items():
            e = dict(e)
            e["seed"] = int(name.split("_")[1][1:])
            e.setdefault("criteria", {"reached_c7ax": e["first_transition_ns"] is not None})
            pol = e.get("cv_policy", "retrain")
            if pol == "keep":
                pol = f"keep (from {e.get('keep_min_transitions_per_ns') or 2:g} crossings/ns, kept run: {e.get('keep_method') or 'same method'})"
            label = "round-0 GMVAE CV alone (kept in every round)" if name.startswith("round0cv_") else pol
            out.setdefault(f"stored {Path(path).name}: {label} {name.split('_', 2)[2]}", []).append(e)
        for k in [k for k in out if k.startswith(f"stored {Path(path).name}")]:
            if isinstance(out[k], list):
                out[k] = _per_seed(out[k], stored["reference"]["delta_f_phi_pos_minus_neg_kjmol"][0])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("reference")
    p.add_argument("--work", required=True)
    p.add_argument("--ns", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--method", choices=["metad", "opes", "opes-explore"], default="metad",
                   help="metad: the reference; opes/opes-explore: the same CV with OPES (barrier 40 kJ/mol), side by side")
    p.set_defaults(func=cmd_reference)
    p = sub.add_parser("seed")
    p.add_argument("--work", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--unbiased-ns", type=float, default=4.0)
    p.add_argument("--ns-per-round", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--weights", choices=["coverage", "reweighted"], default="coverage")
    p.add_argument("--bias-factor", type=float, default=None, help="metadynamics bias factor (default: explore's, 10)")
    p.add_argument("--height", type=float, default=1.2, help="initial hill height with --bias-factor, kJ/mol")
    p.add_argument("--method", choices=["metad", "opes", "opes-explore"], default="metad")
    p.add_argument("--cv-policy", choices=["keep", "retrain"], default="keep")
    p.add_argument("--share-round0", action="store_true", help="with --weights reweighted: reuse round 0 of the coverage explore")
    p.set_defaults(func=cmd_seed)
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", default=str(Path(__file__).with_name("explore.json")))
    p.add_argument("--note", default="2-core machine shared with other jobs (load average 12-17)")
    p.add_argument("--stored", nargs="*", help="earlier benchmark JSONs to set beside (their 'explore' entries)")
    p.set_defaults(func=cmd_report)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
