"""``gmvae-cv demo``: the main job on alanine dipeptide (MD, GMVAE, export and check,
metadynamics, FES, MSM, report), then its summary for a person: numbers to their precision, with
units."""

from __future__ import annotations

import math
from typing import Any, Optional

from .._core.errors import GMVAEInputError


def add(sub) -> None:
    p = sub.add_parser("demo", help="the main job on alanine dipeptide: MD, GMVAE, export+check, metadynamics, FES, MSM, report")
    p.add_argument("--out", default="gmvae_demo", help="output folder (finished stages there are reused; default gmvae_demo)")
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 cores)")
    p.add_argument("--train-temperature", type=float, default=None,
                   help="temperature of the unbiased run that trains the GMVAE, K (default 700: at 300 K it never sees C7ax)")
    p.set_defaults(func=run, log_dir=lambda a: a.out)


def run(args) -> int:
    if args.train_temperature is not None and args.train_temperature <= 0:
        raise GMVAEInputError(f"'--train-temperature' is {args.train_temperature}, expected a temperature > 0 in K")
    import dataclasses

    from tqdm import tqdm

    import lightning.pytorch  # noqa: F401  (imported here so that its loggers are routed before training)

    from .._core.quiet import route_library_loggers
    from ..workflows import DemoSettings, run_demo

    route_library_loggers()

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.train_temperature is not None:
        settings = dataclasses.replace(settings, train_temperature=args.train_temperature)
    summary = run_demo(args.out, settings=settings, progress=tqdm, log=print)
    print(format_summary(summary))
    return 0


def _num(value: Optional[float], fmt: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not computed"
    return f"{value:{fmt}}" + (f" {unit}" if unit else "")


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
    ...     "slowest_its_ps": 1234.5, "msm_lag_ps": 5.0}))
    export check (PLUMED and OpenMM patterns): passed
    C7eq <-> C7ax transitions, biased:         5 in 1 ns (5.0 per ns; unbiased 0.0 per ns)
    F(C7ax) - F(C7eq), reweighted:             3.1 +- 0.5 kJ/mol
    slowest implied timescale (MSM):           1.23e+03 ps at lag 5 ps
    """
    df, err = summary.get("delta_f_c7ax_minus_c7eq_kjmol"), summary.get("delta_f_c7ax_minus_c7eq_error_kjmol")
    df_text = _num(df, ".1f") + (f" +- {_num(err, '.1f')}" if err is not None else "") + (" kJ/mol" if df is not None else "")
    its = _num(summary.get("slowest_its_ps"), ".3g", "ps")
    lag = summary.get("msm_lag_ps")
    rows = [
        ("export check (PLUMED and OpenMM patterns)", "passed" if summary.get("check_passed") else "FAILED"),
        ("C7eq <-> C7ax transitions, biased",
         f"{summary.get('transitions_biased')} in {_num(summary.get('biased_ns'), 'g', 'ns')} "
         f"({_num(summary.get('transitions_per_ns_biased'), '.1f')} per ns; "
         f"unbiased {_num(summary.get('transitions_per_ns_unbiased'), '.1f')} per ns)"),
        ("F(C7ax) - F(C7eq), reweighted", df_text),
        ("slowest implied timescale (MSM)", its + (f" at lag {lag:g} ps" if lag is not None else "")),
    ]
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)
