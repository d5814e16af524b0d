"""Speed of the analysis layer: reweighting, COLVAR streaming, MSMs. Writes JSON; ratios in one run.

Measured (each case against a reference run in the same process, so ratios are comparable across
machines):

- ``reweight_hist2d``: log-weights from a bias column + a 2D weighted histogram with 5-block
  errors (:class:`gmvae_cv.analysis.fes.FESEstimator`) on N frames, frames/s; reference: the same weights
  through ``numpy.histogram2d`` (no blocks).
- ``ct_weights``: Tiwary-Parrinello weights from hills on the grid path
  (:func:`gmvae_cv.analysis.reweight.ct_log_weights`) against the exact hill sum on a subset, frames/s.
- ``colvar_stream``: reading a COLVAR file in chunks: MB/s and the peak of traced memory for a
  file and for one twice its size (flat memory: ratio ~1).
- ``msm_its_ck``: implied timescales (Bayesian, 100 samples) over 6 lags + CK test on N frames
  with :class:`gmvae_cv.analysis.msm.MarkovAnalysis`, against the same estimates made by calling deeptime
  directly; overhead ratio.

Usage::

    python benchmarks/analysis_speed.py [--frames 10000000] [--out benchmarks/analysis_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gmvae_cv.analysis.fes import FESEstimator  # noqa: E402
from gmvae_cv.analysis.hills import Hills  # noqa: E402
from gmvae_cv.analysis.msm import MarkovAnalysis  # noqa: E402
from gmvae_cv.analysis.plumed_files import PlumedFile, write_plumed  # noqa: E402
from gmvae_cv.analysis.reweight import ct_log_weights  # noqa: E402
from gmvae_cv._core.versions import machine_info  # noqa: E402


def _best(f, repeat=3):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_reweight(n: int, rng) -> dict:
    x = rng.normal(size=(n, 2))
    bias = rng.normal(0, 5, n)
    kT = 2.494

    def ours():
        lw = bias / kT
        return FESEstimator([100, 100], [(-4, 4), (-4, 4)], kT=kT, n_blocks=5).fit(x, lw).fetch_model()

    def reference():
        w = np.exp((bias - bias.max()) / kT)
        h, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=100, range=[(-4, 4), (-4, 4)], weights=w)
        return h

    t_ours, fes = _best(ours)
    t_ref, h = _best(reference)
    p_ref = h / h.sum()
    return {
        "frames": n,
        "seconds": t_ours,
        "frames_per_s": n / t_ours,
        "reference_numpy_histogram2d_seconds": t_ref,
        "ratio_to_reference": t_ours / t_ref,
        "max_abs_probability_difference": float(np.max(np.abs(fes.probability - p_ref))),
        "target_frames_per_s": 1e7,
    }


def bench_ct(n: int, n_hills: int, rng) -> dict:
    t_h = np.arange(1, n_hills + 1, dtype=float)
    hills = Hills(
        time=t_h,
        centers=np.c_[rng.normal(0, 1, n_hills), rng.uniform(-np.pi, np.pi, n_hills)],
        sigmas=np.tile([0.3, 0.35], (n_hills, 1)),
        heights=1.2 * np.exp(-t_h / n_hills),
        cv_names=("s", "phi"),
        biasfactor=8.0,
        periodic=(None, (-np.pi, np.pi)),
    )
    times = np.sort(rng.uniform(0, n_hills + 1, n))
    s = np.c_[rng.normal(0, 1, n), rng.uniform(-np.pi, np.pi, n)]
    t_grid, lw = _best(lambda: ct_log_weights(hills, s, times, 2.494), repeat=1)
    m = min(n, 20_000)
    t_exact, v_exact = _best(lambda: hills.bias_at_times(s[:m], times[:m]), repeat=1)
    from gmvae_cv.analysis.hills import bias_along_trajectory

    v_grid, _ = bias_along_trajectory(hills, s[:m], times[:m])
    return {
        "frames": n,
        "hills": n_hills,
        "grid_seconds": t_grid,
        "grid_frames_per_s": n / t_grid,
        "exact_frames_per_s": m / t_exact,
        "speedup_grid_over_exact": (n / t_grid) / (m / t_exact),
        "max_abs_bias_difference_grid_vs_exact": float(np.max(np.abs(v_grid - v_exact))),
    }


def bench_colvar(rows: int, rng, tmp: Path) -> dict:
    out = {}
    for k, r in (("1x", rows), ("2x", 2 * rows)):
        p = tmp / f"COLVAR_{k}"
        data = np.c_[np.arange(r) * 0.002, rng.normal(size=(r, 4))]
        write_plumed(p, ["time", "phi", "psi", "cv", "metad.bias"], data, fmt="%.6f")
        size = p.stat().st_size
        pf = PlumedFile(p)
        t = time.perf_counter()
        n = sum(len(c) for c in pf.iter_chunks(["phi", "psi", "metad.bias"], chunk_bytes=1 << 23))
        dt = time.perf_counter() - t
        tracemalloc.start()
        for _ in pf.iter_chunks(["phi", "psi", "metad.bias"], chunk_bytes=1 << 23):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[k] = {"rows": n, "file_MB": size / 1e6, "seconds": dt, "MB_per_s": size / 1e6 / dt, "rows_per_s": n / dt, "peak_traced_MB": peak / 1e6}
        p.unlink()
    out["peak_memory_ratio_2x_over_1x"] = out["2x"]["peak_traced_MB"] / out["1x"]["peak_traced_MB"]
    out["file_size_ratio"] = out["2x"]["file_MB"] / out["1x"]["file_MB"]
    return out


def bench_msm(n: int) -> dict:
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import BayesianMSM, MarkovStateModel, MaximumLikelihoodMSM

    P = np.array([[0.99, 0.01, 0, 0], [0.01, 0.98, 0.01, 0], [0, 0.01, 0.98, 0.01], [0, 0, 0.01, 0.99]])
    d = MarkovStateModel(P).simulate(n, seed=1)
    lags = [1, 2, 5, 10, 20, 50]
    lag = 10
    n_samples = 100

    def ours():
        return MarkovAnalysis(lags, lagtime=lag, dt=0.1, n_metastable=2, ck_multiples=5, n_samples=n_samples).fit(d).fetch_model()

    def direct():
        posts, mls = {}, {}
        for l in sorted(set(lags) | {lag * k for k in range(1, 6)}):
            c = TransitionCountEstimator(l, "sliding-effective").fit_fetch(d).submodel_largest()
            mls[l] = MaximumLikelihoodMSM(lagtime=l).fit_fetch(c)
            posts[l] = BayesianMSM(n_samples=n_samples, lagtime=l).fit_fetch(c)
        its = [(mls[l].timescales(3), np.array([s.timescales(3) for s in posts[l].samples])) for l in lags]
        ck = posts[lag].ck_test([posts[lag * k] for k in range(1, 6)], 2, err_est=True)
        return its, ck

    t_ours, res = _best(ours, repeat=2)
    t_direct, _ = _best(direct, repeat=2)
    return {
        "frames": n,
        "lags": lags,
        "model_lag": lag,
        "bayesian_samples": n_samples,
        "seconds": t_ours,
        "deeptime_direct_seconds": t_direct,
        "overhead_ratio": t_ours / t_direct,
        "target_seconds": 10.0,
        "target_overhead_ratio": 1.2,
        "slowest_timescale": res.slowest_timescale(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--colvar-rows", type=int, default=2_000_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "analysis_speed.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    result = {
        "machine": {**machine_info(), "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    import deeptime

    result["machine"]["deeptime"] = deeptime.__version__
    print("reweighting + 2D histogram ...", flush=True)
    result["reweight_hist2d"] = bench_reweight(args.frames, rng)
    print(json.dumps(result["reweight_hist2d"], indent=1), flush=True)
    print("c(t) weights ...", flush=True)
    result["ct_weights"] = bench_ct(min(args.frames, 2_000_000), 20_000, rng)
    print(json.dumps(result["ct_weights"], indent=1), flush=True)
    print("COLVAR streaming ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result["colvar_stream"] = bench_colvar(args.colvar_rows, rng, Path(tmp))
    print(json.dumps(result["colvar_stream"], indent=1), flush=True)
    print("MSM: ITS + CK ...", flush=True)
    result["msm_its_ck"] = bench_msm(args.frames)
    print(json.dumps(result["msm_its_ck"], indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
