"""The demo's rates stage: C7eq <-> C7ax rates by infrequent metadynamics on the CV ``explore`` ended with.

:func:`run_rates_stage` runs :func:`~gmvae_cv.workflows.rates.run_rates` on the export of the CV
that the last ``explore`` round biased (the kept CV when a round crossed often enough), both
directions between the C7eq and C7ax core sets, at two deposition paces, on a local Dask
cluster. A killed demo started again runs only the missing runs (the rates folder's own resume).
The free energy difference the two rates imply is set against the one ``explore`` reweighted,
and the verdict (``rates_checks_passed``) says whether the times are exponential, the rate does
not move with the pace and the two dF agree: a CV good enough to explore and reweight can still
fail there (``docs/benchmarks.md``, "Rates").
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from .rates import InfrequentMetadWarning, RateSettings, run_rates

__all__ = ["run_rates_stage", "RATES_KEYS"]

RATES_KEYS = ("tau_c7eq_to_c7ax_ns", "tau_c7ax_to_c7eq_ns", "rates_ks_pvalue", "rates_runs", "delta_f_from_rates_kjmol",
              "delta_f_consistent", "rates_checks_passed", "rates_failed_checks")
"""The keys of the rates summary that the demo's summary carries."""


def run_rates_stage(out: Path, exp: Path, cfg: Any, reweighting_df: Optional[tuple[float, float]],
                    log: Callable[[str], None]) -> dict:
    """Infrequent metadynamics on ``exp``'s CV into ``out``; return the demo's summary keys.

    Parameters
    ----------
    out : path
        The rates folder (``DEMO/rates``).
    exp : path
        The export whose CV is biased.
    cfg : DemoSettings
        ``rate_runs`` (per direction and pace), ``rate_paces`` (MD steps of 2 fs), ``rate_max_ns``,
        ``rate_workers``, ``seed``.
    reweighting_df : (value, error), optional
        F(C7ax) - F(C7eq) in kJ/mol from ``explore``'s reweighting; its interval is value +- 2 error.
    log : callable

    Returns
    -------
    dict
        :data:`RATES_KEYS` (None where not computed), plus ``rates_paces_ps``, ``rates_escaped``
        (runs that reached the target, per direction), ``rates_warnings`` (the
        :class:`InfrequentMetadWarning` texts), ``walltime_s_rates`` (this call: a resumed stage
        counts only the runs it did), ``rates_dir`` and ``rates_plots`` (the figures written,
        relative to the demo folder).
    """
    settings = RateSettings(paces=tuple(cfg.rate_paces), max_ps=cfg.rate_max_ns * 1000.0, platform="Reference")
    ref = None
    if reweighting_df is not None and None not in reweighting_df:
        v, e = reweighting_df
        ref = (v, v - 2 * e, v + 2 * e)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InfrequentMetadWarning)
        summary = run_rates(exp, out, system="alanine-dipeptide", origin="C7eq", target="C7ax", n_runs=cfg.rate_runs,
                            settings=settings, both_directions=True, seed=cfg.seed, workers=cfg.rate_workers,
                            reweighting_df=ref, log=lambda s: log("      " + s))
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, InfrequentMetadWarning)})
    for n in notes:
        log("      warning: " + n)
    keys = {k: summary.get(k) for k in RATES_KEYS}
    keys["rates_paces_ps"] = [p * settings.timestep for p in cfg.rate_paces]
    keys["rates_escaped"] = {d: sum(e.get("escaped", 0) for e in v["paces"].values()) for d, v in summary["directions"].items()}
    keys["rates_warnings"] = notes
    keys["walltime_s_rates"] = time.perf_counter() - t0
    keys["rates_dir"] = str(out.resolve())
    keys["rates_plots"] = [f"rates/{n}" for n in ("ecdf.png", "tau_vs_pace.png") if (out / n).is_file()]
    return keys
