"""``gmvae-cv demo``: the main job on alanine dipeptide (a stuck 300 K run, explore: GMVAE, export
and check, OPES-explore, retrain; FES, MSM, report), then its summary for a person: numbers to
their precision, with units."""

from __future__ import annotations

import math
from typing import Any, Optional

from .._core.errors import GMVAEInputError


def add(sub) -> None:
    p = sub.add_parser("demo", help="the main job on alanine dipeptide: from a stuck 300 K run, explore (GMVAE, export+check, "
                       "OPES-explore, retrain) to C7ax, FES, MSM, report")
    p.add_argument("--out", default="gmvae_demo", help="output folder (finished stages there are reused; default gmvae_demo)")
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 cores)")
    p.add_argument("--train-temperature", type=float, default=None,
                   help="instead of explore: train the GMVAE on an unbiased run at this temperature, K (e.g. 700, where "
                        "the dipeptide crosses to C7ax), then well-tempered metadynamics on its CV")
    p.set_defaults(func=run, log_dir=lambda a: a.out)


def run(args) -> int:
    if args.train_temperature is not None and args.train_temperature <= 0:
        raise GMVAEInputError(f"'--train-temperature' is {args.train_temperature}, expected a temperature > 0 in K")
    from tqdm import tqdm

    import lightning.pytorch  # noqa: F401  (imported here so that its loggers are routed before training)

    from .._core.quiet import route_library_loggers
    from ..workflows import DemoSettings, run_demo

    route_library_loggers()

    t = args.train_temperature
    settings = DemoSettings.quick(t) if args.quick else DemoSettings(train_temperature=t)
    summary = run_demo(args.out, settings=settings, progress=tqdm, log=print)
    print(format_summary(summary))
    return 0


def _num(value: Optional[float], fmt: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not computed"
    return f"{value:{fmt}}" + (f" {unit}" if unit else "")


def _tau_text(summary: dict, key: str, direction: str) -> str:
    """``tau (low-high) ns`` of a rates key, or why it is missing (no run reached the target)."""
    tau = summary.get(key)
    if tau:
        return f"{tau[0]:.3g} ({tau[1]:.3g}-{tau[2]:.3g}) ns"
    escaped = (summary.get("rates_escaped") or {}).get(direction, 0)
    return f"not computed ({escaped} run(s) reached the target within {_num(summary.get('settings', {}).get('rate_max_ns'), 'g', 'ns')})"


def _its_text(summary: dict[str, Any]) -> str:
    """The slowest implied timescale as 'value (low-high) ps at lag L ps, resolved' (or why not)."""
    its, lag = summary.get("slowest_its_ps"), summary.get("msm_lag_ps")
    if isinstance(its, (list, tuple)):
        text = _num(its[0], ".3g") + (f" ({_num(its[1], '.3g')}-{_num(its[2], '.3g')})" if its[0] is not None else "") + " ps"
    else:
        text = _num(its, ".3g", "ps")
    if lag is not None:
        text += f" at lag {lag:g} ps"
    if summary.get("its_resolved") is not None:
        text += ", resolved" if summary["its_resolved"] else ", NOT resolved"
    if summary.get("ck_passed") is not None:
        text += "; CK test " + ("passed" if summary["ck_passed"] else "FAILED")
    return text


def format_summary(summary: dict[str, Any]) -> str:
    """The demo's result in a few lines: what was checked, the transitions the bias drove, the
    free-energy difference with its error, the slowest timescale.

    Parameters
    ----------
    summary : dict
        The content of ``summary.json`` (:func:`gmvae_cv.workflows.run_demo`).

    Returns
    -------
    str

    Examples
    --------
    >>> print(format_summary({"check_passed": True, "transitions_biased": 5, "biased_ns": 1.0,
    ...     "transitions_per_ns_biased": 5.0, "transitions_per_ns_unbiased": 0.0,
    ...     "delta_f_c7ax_minus_c7eq_kjmol": 3.14159, "delta_f_c7ax_minus_c7eq_error_kjmol": 0.5,
    ...     "slowest_its_ps": [1234.5, 1000.0, 1500.0], "msm_lag_ps": 5.0, "its_resolved": True, "ck_passed": True}))
    export check (PLUMED and OpenMM patterns): passed
    C7eq <-> C7ax transitions, biased:         5 in 1 ns (5.0 per ns; unbiased 0.0 per ns)
    F(C7ax) - F(C7eq), reweighted:             3.1 +- 0.5 kJ/mol
    slowest implied timescale (MSM):           1.23e+03 (1e+03-1.5e+03) ps at lag 5 ps, resolved; CK test passed
    """
    df, err = summary.get("delta_f_c7ax_minus_c7eq_kjmol"), summary.get("delta_f_c7ax_minus_c7eq_error_kjmol")
    df_text = _num(df, ".1f") + (f" +- {_num(err, '.1f')}" if err is not None else "") + (" kJ/mol" if df is not None else "")
    explore = summary.get("route") == "explore"
    rows = [("export check (PLUMED and OpenMM patterns)", "passed" if summary.get("check_passed") else "FAILED")]
    if explore:
        rows.append(("explore from the 300 K run",
                     f"{summary.get('n_rounds')} round(s), {_num(summary.get('biased_ns'), 'g', 'ns')} biased; first C7eq -> C7ax "
                     f"after {_num(summary.get('first_transition_ns'), '.2f', 'ns')}"))
    last_ns = (summary.get("rounds") or [{}])[-1].get("biased_ns") if explore else summary.get("biased_ns")
    rows += [
        ("C7eq <-> C7ax transitions, " + ("last round" if explore else "biased"),
         f"{summary.get('transitions_biased')} in {_num(last_ns, 'g', 'ns')} "
         f"({_num(summary.get('transitions_per_ns_biased'), '.1f')} per ns; "
         f"unbiased {_num(summary.get('transitions_per_ns_unbiased'), '.1f')} per ns)"),
    ]
    if explore:
        d = summary.get("delta_f_phi_pos_minus_neg_kjmol") or [None, None]
        rows.append(("F(phi > 0) - F(phi < 0), reweighted",
                     _num(d[0], ".1f") + (f" +- {_num(d[1], '.1f')}" if d[1] is not None else "") + (" kJ/mol" if d[0] is not None else "")))
    rows += [
        ("F(C7ax) - F(C7eq), reweighted", df_text),
        ("slowest implied timescale (MSM)", _its_text(summary)),
    ]
    if "rates_runs" in summary:
        rows += [(f"tau {a} -> {b} (infrequent metad)", _tau_text(summary, f"tau_{a.lower()}_to_{b.lower()}_ns", f"{a}-{b}"))
                 for a, b in (("C7eq", "C7ax"), ("C7ax", "C7eq"))]
        d = summary.get("delta_f_from_rates_kjmol")
        if d:
            rows.append(("F(C7ax) - F(C7eq), from the rates",
                         f"{d[0]:.1f} ({d[1]:.1f}-{d[2]:.1f}) kJ/mol; KS p = {_num(summary.get('rates_ks_pvalue'), '.2f')}"))
        if summary.get("rates_checks_passed") is not None:
            failed = summary.get("rates_failed_checks") or []
            rows.append(("rates checks (KS, pace, dF)", "passed" if not failed else
                         f"FAILED ({len(failed)}): " + "; ".join(failed)))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)
