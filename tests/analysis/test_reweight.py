"""Reweighting: PLUMED files, hills and c(t), free-energy surfaces.

Independent answers used here:
- the real PLUMED kernel (``plumed driver`` METAD with CALC_RCT; ``plumed sum_hills``;
  REWEIGHT_BIAS + HISTOGRAM + CONVERT_TO_FES);
- a direct numeric evaluation of c(t) on grid nodes;
- closed forms (a reweighted Gaussian) and the Mueller-Brown potential itself, integrated over
  each bin, for a well-tempered metadynamics run of our own.
"""

from __future__ import annotations

import json
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.cli import main
from gmvae_cv.analysis.fes import KB_KJ_MOL_K, FESEstimator, FreeEnergySurface
from gmvae_cv.analysis.hills import GridSpec, Hills, bias_along_trajectory, ct_series
from gmvae_cv.analysis.plumed_files import PlumedFile, PlumedFileWarning, read_plumed, write_plumed
from gmvae_cv.analysis.reweight import ReweightedFES, ct_log_weights, log_weights_from_weights
from gmvae_cv.systems import MullerBrown
from gmvae_cv.systems.toy_metad import toy_metadynamics

T = 300.0
KT = KB_KJ_MOL_K * T
from plumed_tool import PLUMED, needs_plumed  # noqa: E402


def _run_plumed(args: list[str], cwd: Path) -> None:
    res = subprocess.run([PLUMED, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError(f"plumed {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")


def _dummy_xyz(path: Path, n: int) -> None:
    # one atom per frame: plumed driver needs a trajectory to step through (with --noatoms the
    # HISTOGRAM action crashes in PLUMED 2.11)
    path.write_text("1\n1 1 1\nX 0 0 0\n" * n)


# ====================================================================== PLUMED kernel runs
@pytest.fixture(scope="module")
def plumed_metad(tmp_path_factory):
    """PLUMED's own well-tempered METAD over a fixed 2-CV trajectory (x; periodic phi)."""
    if PLUMED is None:
        pytest.skip("the PLUMED command-line tool is not on PATH")
    d = tmp_path_factory.mktemp("plumed_metad")
    rng = np.random.default_rng(3)
    n = 3000
    x = np.zeros(n)
    p = np.zeros(n)
    for i in range(1, n):
        x[i] = x[i - 1] + rng.normal(0, 0.15)
        if abs(x[i]) > 5:
            x[i] = np.sign(x[i]) * 10 - x[i]
        p[i] = p[i - 1] + rng.normal(0, 0.2)
    p = (p + np.pi) % (2 * np.pi) - np.pi
    write_plumed(d / "traj.colvar", ["time", "x", "phi"], np.c_[np.arange(n) * 0.5, x, p], sets={"min_phi": "-pi", "max_phi": "pi"})
    _dummy_xyz(d / "t.xyz", n)
    (d / "metad.dat").write_text(
        "x: READ FILE=traj.colvar VALUES=x IGNORE_TIME IGNORE_FORCES\n"
        "phi: READ FILE=traj.colvar VALUES=phi IGNORE_TIME IGNORE_FORCES\n"
        "metad: METAD ARG=x,phi SIGMA=0.3,0.4 HEIGHT=1.2 PACE=10 BIASFACTOR=6 TEMP=300 "
        "GRID_MIN=-6,-pi GRID_MAX=6,pi GRID_BIN=240,100 CALC_RCT RCT_USTRIDE=1 FILE=HILLS\n"
        "PRINT ARG=x,phi,metad.bias,metad.rct,metad.rbias STRIDE=1 FILE=COLVAR FMT=%.10f\n"
    )
    _run_plumed(["driver", "--ixyz", "t.xyz", "--plumed", "metad.dat", "--timestep", "0.5"], d)
    return d


@needs_plumed
def test_hills_sum_matches_plumed_sum_hills(plumed_metad):
    d = plumed_metad
    _run_plumed(["sum_hills", "--hills", "HILLS", "--min", "-6,-pi", "--max", "6,pi", "--bin", "60,40", "--outfile", "fes_sh.dat"], d)
    ref = np.loadtxt(d / "fes_sh.dat")
    hills = Hills.from_file(d / "HILLS")
    assert hills.cv_names == ("x", "phi")
    assert hills.biasfactor == 6.0
    assert hills.periodic[0] is None and np.allclose(hills.periodic[1], (-np.pi, np.pi))
    # deposited heights: the first hill is the full HEIGHT (the file holds HEIGHT * 6/5)
    assert hills.heights[0] == pytest.approx(1.2, rel=1e-9)
    ours = hills.free_energy(ref[:, :2])
    assert np.max(np.abs(ours - ref[:, 2])) < 1e-6


@needs_plumed
def test_bias_and_ct_match_plumed_metad(plumed_metad):
    d = plumed_metad
    col = read_plumed(d / "COLVAR")
    hills = Hills.from_file(d / "HILLS")
    s = np.c_[col["x"], col["phi"]]
    exact = hills.bias_at_times(s, col["time"])
    plumed_grid = GridSpec((-6.0, -np.pi), (6.0, np.pi), (240, 100), (False, True))
    v, c = bias_along_trajectory(hills, s, col["time"], kT=KT, ct=True, ct_grid=plumed_grid)
    scale = hills.heights.max()
    # PLUMED's bias is interpolated from its grid: agreement to grid precision
    assert np.max(np.abs(exact - col["metad.bias"])) < 2e-3 * scale
    assert np.max(np.abs(v - exact)) < 2e-3 * scale
    # rbias = V(s,t) - c(t) with c from the hills before the frame
    assert np.max(np.abs((v - c) - col["metad.rbias"])) < 3e-3 * scale
    assert np.max(np.abs(c)) > 1.0  # c(t) is not trivially 0
    lw = ct_log_weights(hills, s, col["time"], KT, ct_grid=plumed_grid)
    assert np.allclose(lw, col["metad.rbias"] / KT, atol=3e-3 * scale / KT)


@needs_plumed
def test_fes_matches_plumed_reweight_histogram(plumed_metad):
    """The same COLVAR through PLUMED's REWEIGHT_BIAS + HISTOGRAM + CONVERT_TO_FES and through ours."""
    d = plumed_metad
    n = len(read_plumed(d / "COLVAR"))
    _dummy_xyz(d / "t2.xyz", n)
    (d / "fes.dat").write_text(
        "x: READ FILE=COLVAR VALUES=x IGNORE_TIME IGNORE_FORCES\n"
        "phi: READ FILE=COLVAR VALUES=phi IGNORE_TIME IGNORE_FORCES\n"
        "rb: READ FILE=COLVAR VALUES=metad.rbias IGNORE_TIME IGNORE_FORCES\n"
        "rw: REWEIGHT_BIAS TEMP=300 ARG=rb.rbias\n"
        # NORMALIZATION=true: with the default (ndata) PLUMED 2.11 ignores LOGWEIGHTS
        "h2: HISTOGRAM ARG=x,phi GRID_MIN=-5,-pi GRID_MAX=5,pi GRID_BIN=20,16 KERNEL=DISCRETE LOGWEIGHTS=rw NORMALIZATION=true\n"
        "f2: CONVERT_TO_FES ARG=h2 TEMP=300\n"
        "DUMPGRID ARG=f2 FILE=fes2.dat FMT=%.10f\n"
        "h1: HISTOGRAM ARG=phi GRID_MIN=-pi GRID_MAX=pi GRID_BIN=30 KERNEL=DISCRETE LOGWEIGHTS=rw NORMALIZATION=true\n"
        "f1: CONVERT_TO_FES ARG=h1 TEMP=300\n"
        "DUMPGRID ARG=f1 FILE=fes1.dat FMT=%.10f\n"
    )
    _run_plumed(["driver", "--ixyz", "t2.xyz", "--plumed", "fes.dat", "--timestep", "0.5"], d)
    # PLUMED's DISCRETE kernel puts a frame on the nearest grid node, and ACCUMULATE skips
    # step 0: our bins are centred on its nodes, and we start after the first frame (tmin).
    hx, hp = 10.0 / 20, 2 * np.pi / 16
    ranges2 = [(-5 - hx / 2, 5 + hx / 2), (-np.pi - hp / 2, np.pi - hp / 2)]
    ref2 = np.loadtxt(d / "fes2.dat")[:, 2].reshape(16, 21).T  # PLUMED: first variable fastest
    hp1 = 2 * np.pi / 30
    ref1 = np.loadtxt(d / "fes1.dat")[:, 1]

    def compare(ours, ref, tol):
        both = np.isfinite(ref) & np.isfinite(ours)
        assert (np.isfinite(ref) == np.isfinite(ours)).all()
        diff = ours[both] - ref[both]
        assert np.max(np.abs(diff - diff.mean())) < tol

    for method, kw, tol in [
        ("bias", {"bias_column": "metad.rbias"}, 1e-5),
        ("ct", {"hills": d / "HILLS", "ct_grid": GridSpec((-6.0, -np.pi), (6.0, np.pi), (240, 100), (False, True))}, 5e-3),
    ]:
        hills = kw.pop("hills", None)
        fes2 = ReweightedFES(["x", "phi"], method=method, temperature=T, bins=[21, 16], ranges=ranges2, periodic=[False, True], tmin=0.25, **kw).fit(d / "COLVAR", hills=hills).fetch_model()
        compare(fes2.free_energy, ref2, tol)
        fes1 = ReweightedFES(["phi"], method=method, temperature=T, bins=30, ranges=[(-np.pi - hp1 / 2, np.pi - hp1 / 2)], periodic=[True], tmin=0.25, **kw).fit(d / "COLVAR", hills=hills).fetch_model()
        compare(fes1.free_energy, ref1, tol)


# ====================================================================== c(t) numerics
def test_ct_matches_direct_numeric_evaluation():
    rng = np.random.default_rng(0)
    m = 60
    g = 7.0
    hills = Hills(
        time=np.arange(1, m + 1) * 2.0,
        centers=np.c_[rng.normal(0, 1, m), rng.uniform(-np.pi, np.pi, m)],
        sigmas=np.tile([0.35, 0.5], (m, 1)),
        heights=1.5 * np.exp(-np.arange(m) / 40.0),
        cv_names=("a", "b"),
        biasfactor=g,
        periodic=(None, (-np.pi, np.pi)),
    )
    kT = 2.5
    grid = GridSpec((-4.0, -np.pi), (4.0, np.pi), (80, 60), (False, True))
    ks, cs = ct_series(hills, kT, grid=grid)
    assert list(ks) == list(range(m + 1))
    nodes = np.stack(np.meshgrid(grid.nodes(0), grid.nodes(1), indexing="ij"), axis=-1).reshape(-1, 2)
    from scipy.special import logsumexp

    for k in (0, 1, 7, 30, m):
        v = hills.bias(nodes, n_hills=k)  # exact sum of the first k hills at every node
        direct = kT * (logsumexp(g / (g - 1) * v / kT) - logsumexp(v / (g - 1) / kT))
        assert cs[k] == pytest.approx(direct, abs=1e-9)
    # and frames between depositions use c after the hills before them
    times = np.array([0.5, 2.0, 2.1, 9.99, 10.0, 10.01, 500.0])
    s = np.zeros((len(times), 2))
    _, c = bias_along_trajectory(hills, s, times, kT=kT, ct=True, ct_grid=grid)
    assert np.allclose(c, cs[[0, 0, 1, 4, 4, 5, m]])


def test_bias_grid_interpolation_matches_exact_sum_periodic():
    rng = np.random.default_rng(1)
    m = 200
    hills = Hills(
        time=np.arange(m, dtype=float),
        centers=rng.uniform(-np.pi, np.pi, (m, 1)),
        sigmas=np.full((m, 1), 0.3),
        heights=np.full(m, 1.0),
        cv_names=("phi",),
        biasfactor=None,
        periodic=((-np.pi, np.pi),),
    )
    s = rng.uniform(-np.pi, np.pi, (5000, 1))
    t = np.sort(rng.uniform(0, m, 5000))
    v, _ = bias_along_trajectory(hills, s, t)
    exact = hills.bias_at_times(s, t)
    assert np.max(np.abs(v - exact)) < 2e-3
    # the bias is periodic: phi and phi + 2 pi agree
    assert np.allclose(hills.bias(s), hills.bias(s + 2 * np.pi), atol=1e-12)


# ====================================================================== analytic answers
def test_opes_and_bias_weights_recover_a_known_distribution(tmp_path):
    """Frames from N(0, 1) with bias V = kT x^2 (1/2 - 1/(2*4)): reweighted F = kT x^2 / 8."""
    rng = np.random.default_rng(5)
    n = 400_000
    x = rng.normal(0, 1, n)
    kT = 1.3
    v = kT * x**2 * (0.5 - 1 / 8)
    write_plumed(tmp_path / "COLVAR", ["time", "x", "opes.bias"], np.c_[np.arange(n) * 1.0, x, v], sets={"kT": kT})
    fes = ReweightedFES(["x"], method="opes", bins=30, ranges=[(-3, 3)]).fit(tmp_path / "COLVAR").fetch_model()
    assert fes.kT == pytest.approx(kT)  # read from '#! SET kT'
    c = fes.centers[0]
    exact = kT * c**2 / 8
    ok = fes.counts > 200
    diff = fes.free_energy[ok] - exact[ok]
    assert np.max(np.abs(diff - diff.mean())) < 0.1 * kT
    # block errors are of the size of the actual deviations
    assert np.median(fes.error[ok]) < 0.1 * kT
    # the same column through method "bias"
    fes_b = ReweightedFES(["x"], method="bias", bias_column="opes.bias", kT=kT, bins=30, ranges=[(-3, 3)]).fit(tmp_path / "COLVAR").fetch_model()
    assert np.allclose(fes_b.free_energy, fes.free_energy, equal_nan=True)


def test_walls_bias_column_is_part_of_every_frames_bias(tmp_path):
    """A COLVAR with walls.bias (the walls that keep a CV inside its bias grid): the weights are
    exp(beta (V + W)), so the split of one total bias into opes.bias + walls.bias reweights as the
    total; include_walls=False (or method 'none') leaves W out; files of one run must agree."""
    rng = np.random.default_rng(7)
    n = 100_000
    x = rng.normal(0, 1, n)
    kT = 1.3
    total = kT * x**2 * (0.5 - 1 / 8)
    walls = 50.0 * np.maximum(0.0, np.abs(x) - 1.5) ** 2  # zero inside the bounds
    assert 0 < np.mean(walls > 0) < 0.2
    t = np.arange(n) * 1.0
    write_plumed(tmp_path / "split", ["time", "x", "opes.bias", "walls.bias"], np.c_[t, x, total - walls, walls], sets={"kT": kT})
    write_plumed(tmp_path / "total", ["time", "x", "opes.bias"], np.c_[t, x, total], sets={"kT": kT})
    write_plumed(tmp_path / "no_walls", ["time", "x", "opes.bias"], np.c_[t, x, total - walls], sets={"kT": kT})
    kw = dict(bins=30, ranges=[(-3, 3)])

    def fit(path, **more):
        est = ReweightedFES(["x"], **{"method": "opes", **kw, **more}).fit(tmp_path / path)
        return est.fetch_model()

    with_walls, reference = fit("split"), fit("total")
    assert np.allclose(with_walls.free_energy, reference.free_energy, equal_nan=True, atol=1e-9)
    c = reference.centers[0]
    ok = reference.counts > 200
    diff = reference.free_energy[ok] - kT * c[ok] ** 2 / 8
    assert np.max(np.abs(diff - diff.mean())) < 0.15 * kT
    assert with_walls.info["walls_column"] == "walls.bias" and reference.info["walls_column"] is None
    without = fit("split", include_walls=False)
    assert np.allclose(without.free_energy, fit("no_walls").free_energy, equal_nan=True, atol=1e-9)
    assert not np.allclose(without.free_energy[ok], with_walls.free_energy[ok], atol=0.05 * kT)
    # method 'bias' adds the walls too; 'none' (unbiased frames) does not
    by_column = fit("split", method="bias", bias_column="opes.bias")
    assert np.allclose(by_column.free_energy, reference.free_energy, equal_nan=True, atol=1e-9)
    assert fit("split", method="none").info["walls_column"] is None
    with pytest.raises(GMVAEInputError, match="has no 'walls.bias' field and other COLVAR files of the run have one"):
        ReweightedFES(["x"], method="opes", **kw).fit([tmp_path / "split", tmp_path / "total"])


@pytest.fixture(scope="module")
def mueller_brown_metad(tmp_path_factory):
    """Our own well-tempered metadynamics on Mueller-Brown, biasing x and y, 32 walkers."""
    mb = MullerBrown()
    grid = GridSpec((-3.0, -1.5), (2.0, 3.5), (313, 313), (False, False))
    run = toy_metadynamics(mb, 40_000, sigma=[0.08, 0.08], cv_dims=(0, 1), height=1.0, pace=100, biasfactor=5.0, n_walkers=32, stride=20, grid=grid, seed=2)
    d = tmp_path_factory.mktemp("mb_metad")
    paths = run.write(d)
    return mb, run, paths


def _bin_averaged_free_energy(mb, edges, variables, sub=8):
    """F of each bin from the potential: -kT log of the bin average of exp(-V/kT).

    A 1D surface integrates the other coordinate over a wide range.
    """
    kT = mb.kT
    if len(edges) == 1:
        e = edges[0]
        other = np.linspace(-1.5, 3.0, 901) if variables[0] == "x" else np.linspace(-2.5, 1.5, 801)
        along = e[:-1, None] + (np.arange(sub) + 0.5) / sub * np.diff(e)[:, None]
        A = np.broadcast_to(along[:, :, None], along.shape + other.shape)
        O = np.broadcast_to(other, A.shape)
        pts = np.c_[A.ravel(), O.ravel()] if variables[0] == "x" else np.c_[O.ravel(), A.ravel()]
        v = mb.potential(pts).reshape(len(e) - 1, -1)
    else:
        ex, ey = edges
        xs = ex[:-1, None] + (np.arange(sub) + 0.5) / sub * np.diff(ex)[:, None]
        ys = ey[:-1, None] + (np.arange(sub) + 0.5) / sub * np.diff(ey)[:, None]
        X = np.broadcast_to(xs[:, None, :, None], (len(ex) - 1, len(ey) - 1, sub, sub))
        Y = np.broadcast_to(ys[None, :, None, :], X.shape)
        v = mb.potential(np.c_[X.ravel(), Y.ravel()]).reshape(len(ex) - 1, len(ey) - 1, -1)
    vmin = v.min()
    f = -kT * np.log(np.mean(np.exp(-(v - vmin) / kT), axis=-1))
    return f - f.min()


def test_metadynamics_on_mueller_brown_reweights_to_the_potential(mueller_brown_metad):
    mb, run, paths = mueller_brown_metad
    kT = mb.kT
    # the bias recorded during the run is what the hills sum to (consistency of the run files)
    hills = Hills.from_file(paths["hills"])
    col = read_plumed(paths["colvar"][5])
    v, _ = bias_along_trajectory(hills, np.c_[col["x"], col["y"]], col["time"])
    assert np.max(np.abs(v - col["metad.bias"])) < 1e-2
    cases = [
        (["x"], 26, [(-1.5, 1.1)], {}),
        (["y"], 28, [(-0.4, 2.4)], {}),
        (["x", "y"], [26, 28], [(-1.5, 1.1), (-0.4, 2.4)], {}),
        (["x"], 26, [(-1.5, 1.1)], {"method": "final", "tmin": run.times[-1] / 2}),
    ]
    for cv, bins, ranges, kw in cases:
        kw = {"method": "ct", **kw}
        fes = ReweightedFES(cv, bins=bins, ranges=ranges, **kw).fit(paths["colvar"], hills=paths["hills"]).fetch_model()
        assert fes.kT == kT  # from '#! SET kT' in the run's files
        exact = _bin_averaged_free_energy(mb, fes.edges, cv)
        populated = (fes.counts >= 50) & (exact < 6 * kT)
        assert populated.sum() >= (20 if len(cv) == 1 else 90)
        diff = (fes.free_energy - exact)[populated]
        w = 1.0 / fes.error[populated] ** 2
        diff = diff - np.average(diff, weights=w)
        print(cv, kw, "max |F - exact| =", round(float(np.max(np.abs(diff)) / kT), 3), "kT over", int(populated.sum()), "bins")
        assert np.max(np.abs(diff)) < 0.5 * kT, (cv, kw, np.max(np.abs(diff)) / kT)


# ====================================================================== FES model and estimator
def test_fes_estimator_streaming_equals_one_shot_and_json_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50_000, 2))
    lw = rng.normal(0, 2, 50_000) + 500.0  # large log-weights must not overflow
    one = FESEstimator([20, 10], [(-3, 3), (-np.pi, np.pi)], kT=1.0, periodic=[False, True], n_blocks=5).fit(x, lw).fetch_model()
    est = FESEstimator([20, 10], [(-3, 3), (-np.pi, np.pi)], kT=1.0, periodic=[False, True], n_blocks=5)
    est._reset()
    for i in range(0, 50_000, 7_000):
        est.partial_fit(x[i : i + 7_000], lw[i : i + 7_000], block_length=10_000)
    two = est.fetch_model()
    assert np.allclose(one.free_energy, two.free_energy, equal_nan=True)
    assert np.allclose(one.error, two.error, equal_nan=True)
    # periodic wrapping: y + 2 pi lands in the same bins
    three = FESEstimator([20, 10], [(-3, 3), (-np.pi, np.pi)], kT=1.0, periodic=[False, True]).fit(x + [0, 2 * np.pi], lw).fetch_model()
    assert np.allclose(one.free_energy, three.free_energy, equal_nan=True)
    one.save(tmp_path / "fes.json")
    back = FreeEnergySurface.load(tmp_path / "fes.json")
    assert np.allclose(back.free_energy, one.free_energy, equal_nan=True)
    assert json.loads((tmp_path / "fes.json").read_text())["free_energy"]["unit"] == "energy (units of the given kT)"
    one.write_dat(tmp_path / "fes.dat")
    table = PlumedFile(tmp_path / "fes.dat", time_field=None)
    assert table.fields == ["s0", "s1", "free_energy", "error"]
    assert len(table.read()) == 200


# ====================================================================== bad input
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_colvar_without_fields_header_or_column(tmp_path):
    p = _write(tmp_path / "COLVAR", "0 1.0\n1 2.0\n")
    with pytest.raises(GMVAEInputError, match=r"COLVAR:1: data before any '#! FIELDS' header"):
        PlumedFile(p)
    q = _write(tmp_path / "C2", "#! FIELDS time psi\n0 1.0\n")
    with pytest.raises(GMVAEInputError, match=r"C2:1: no field 'phi' in '#! FIELDS time psi'"):
        ReweightedFES(["phi"], method="none", kT=1.0).fit(q)


def test_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    p = _write(tmp_path / "COLVAR", "#! FIELDS time x\n# a comment\n0 1.0\n1 2.0\n2 3.0\n3")
    with pytest.warns(PlumedFileWarning, match=r"COLVAR:6: truncated line dropped"):
        data = PlumedFile(p).read()
    assert data.tolist() == [[0, 1], [1, 2], [2, 3]]
    h = _write(tmp_path / "HILLS", "#! FIELDS time x sigma_x height biasf\n1 0.0 0.2 1.2 6\n2 0.5 0.2 1.1 6\n3 0.7 0.2")
    with pytest.warns(PlumedFileWarning, match=r"HILLS:4: truncated line dropped"):
        hills = Hills.from_file(h)
    assert hills.n_hills == 2 and hills.heights[0] == pytest.approx(1.0)
    # a short line in the middle is an error that names the line
    q = _write(tmp_path / "BAD", "#! FIELDS time x\n0 1.0\n1\n2 3.0\n")
    with pytest.raises(GMVAEInputError, match=r"BAD:3: expected 2 numbers"):
        PlumedFile(q).read()


def test_restarts_and_times_going_back(tmp_path):
    text = (
        "#! FIELDS time x y\n#! SET min_x -pi\n#! SET max_x pi\n0 1 2\n1 1.5 2.5\n2 1.7 2.7\n3 1.9 2.9\n"
        "#! FIELDS time y x\n#! SET min_x -pi\n#! SET max_x pi\n2 20 10\n3 30 11\n4 40 12\n"
    )
    p = _write(tmp_path / "COLVAR", text)
    with pytest.warns(PlumedFileWarning, match="2 frame"):
        data = PlumedFile(p).read(["time", "x", "y"])
    assert data.tolist() == [[0, 1, 2], [1, 1.5, 2.5], [2, 10, 20], [3, 11, 30], [4, 12, 40]]
    assert PlumedFile(p).periodic_range("x") == pytest.approx((-np.pi, np.pi))
    q = _write(tmp_path / "BACK", "#! FIELDS time x\n0 1\n1 2\n0.5 3\n")
    with pytest.raises(GMVAEInputError, match=r"BACK:4: time goes back from 1 to 0.5 without a restart header"):
        PlumedFile(q).read()


def test_temperature_is_never_assumed(tmp_path):
    p = _write(tmp_path / "COLVAR", "#! FIELDS time x opes.bias\n0 0.1 0\n1 0.2 1\n")
    with pytest.raises(GMVAEInputError, match="no temperature"):
        ReweightedFES(["x"], method="opes", bins=5, ranges=[(0, 1)]).fit(p)
    rc = main(["fes", str(p), "--cv", "x", "--weights", "opes", "--out", str(tmp_path / "f.dat")])
    assert rc == 2
    fes = ReweightedFES(["x"], method="opes", temperature=300, bins=5, ranges=[(0, 1)]).fit(p).fetch_model()
    assert fes.kT == pytest.approx(KB_KJ_MOL_K * 300)


def test_bad_weights_and_methods():
    with pytest.raises(GMVAEInputError, match=r"'weights' is -1.0 at frame 1"):
        log_weights_from_weights(np.array([1.0, -1.0, 2.0]))
    with pytest.raises(GMVAEInputError, match=r"'weights' is nan at frame 0"):
        log_weights_from_weights(np.array([np.nan, 1.0]))
    with pytest.raises(GMVAEInputError, match="'log_weights' is nan"):
        FESEstimator(5, [(0, 1)], kT=1.0).fit(np.array([0.1, 0.2]), np.array([np.nan, 0.0]))
    with pytest.raises(GMVAEInputError, match="give 'tmin'"):
        ReweightedFES(["x"], method="final", kT=1.0)
    with pytest.raises(GMVAEInputError, match="needs 'bias_column'"):
        ReweightedFES(["x"], method="bias", kT=1.0)


def test_chunked_reading_keeps_memory_flat(tmp_path):
    n = 250_000
    rng = np.random.default_rng(0)
    data = np.c_[np.arange(n) * 0.002, rng.normal(size=(n, 3))]
    p = tmp_path / "COLVAR"
    write_plumed(p, ["time", "a", "b", "c"], data, fmt="%.6f")
    size = p.stat().st_size
    assert size > 9e6
    pf = PlumedFile(p)
    tracemalloc.start()
    total = 0.0
    rows = 0
    for chunk in pf.iter_chunks(["b"], chunk_bytes=1 << 20):
        total += chunk.sum()
        rows += len(chunk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows == n
    assert total == pytest.approx(np.round(data[:, 2], 6).sum(), rel=1e-9, abs=1e-6)
    assert peak < size / 3, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_cli_fes_writes_table_png_json(tmp_path, mueller_brown_metad):
    _, _, paths = mueller_brown_metad
    out = tmp_path / "fes.dat"
    rc = main(["fes", *paths["colvar"][:8], "--cv", "x", "--weights", "ct", "--hills", paths["hills"], "--bins", "20", "--range=-1.5:1.1", "--out", str(out)])
    assert rc == 0
    table = np.loadtxt(out)
    assert table.shape == (20, 3)
    assert np.nanmin(table[:, 1]) == 0.0
    assert (tmp_path / "fes.png").stat().st_size > 1000
    info = json.loads((tmp_path / "fes.json").read_text())
    assert info["info"]["method"] == "ct" and info["kT"]["value"] == 15.0
