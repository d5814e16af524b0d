"""Markov state models: implied timescales, CK test, PCCA+, MFPTs, TRAM, and what is refused.

Independent answers used here:
- the slowest relaxation time of the four-well dynamics from the eigenvalues of a fine-grid
  Smoluchowski (Fokker-Planck) generator;
- deeptime called directly, and a Markov chain with a known transition matrix;
- exact Boltzmann populations of the four-well potential (TRAM on umbrella windows).
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.cli import main
from gmvae_cv.analysis.msm import BiasedDataError, MarkovAnalysis, TRAMAnalysis, check_dtrajs, gmvae_states
from gmvae_cv.analysis.plumed_files import write_plumed
from gmvae_cv.systems import FourWell, overdamped_langevin
from gmvae_cv.systems.smoluchowski import relaxation_times

STRIDE = 10


@pytest.fixture(scope="module")
def four_well_runs():
    """50 walkers x 20 time units of the four-well dynamics (dt 1e-4, a frame every 10 steps)."""
    fw = FourWell(dt=1e-4)
    rng = np.random.default_rng(1)
    x0 = fw.minima[rng.integers(0, 4, 50)]
    traj = fw.simulate(200_000, n_walkers=50, stride=STRIDE, x0=x0, seed=2)
    return fw, traj


def test_fokker_planck_relaxation_time_is_converged():
    fw = FourWell()
    coarse = relaxation_times(fw, [(-2.6, 2.6)], 1000)
    fine = relaxation_times(fw, [(-2.6, 2.6)], 4000)
    assert np.allclose(coarse, fine, rtol=1e-3)
    assert fine[0] == pytest.approx(6.2166, rel=1e-3)  # regression guard: value of the converged grid


def test_slowest_its_of_exact_basins_matches_fokker_planck(four_well_runs):
    """MSM on the four exact wells vs the generator's slowest relaxation time (within 20%)."""
    fw, traj = four_well_runs
    frame_dt = fw.dt * STRIDE
    t_fp = relaxation_times(fw, [(-2.6, 2.6)], 2000)[0]
    dtrajs = [fw.basin(t) for t in traj]
    res = MarkovAnalysis([10, 50, 100, 200], lagtime=100, dt=frame_dt, time_unit="reduced", n_metastable=2, n_samples=50).fit(dtrajs).fetch_model()
    t_msm = res.slowest_timescale()
    assert abs(t_msm - t_fp) / t_fp < 0.2, (t_msm, t_fp)
    # the timescale grows with the lag towards the exact one (a crisp partition underestimates)
    assert np.all(np.diff(res.timescales[:3, 0]) > 0)
    assert res.timescales_lower[2, 0] < t_msm < res.timescales_upper[2, 0]
    # PCCA+ splits at the central barrier: wells {0, 1} and {2, 3}
    a = res.metastable_assignment
    assert a[0] == a[1] and a[2] == a[3] and a[0] != a[2]
    # stationary distribution against the exact well populations
    x = np.linspace(-2.6, 2.6, 40001)
    w = np.exp(-fw.potential(x) / fw.kT)
    exact = np.array([w[fw.basin(x) == i].sum() for i in range(4)]) / w.sum()
    # about 160 slowest relaxation times (t2 = 6.2) of data: the two halves split to within a few 0.01
    assert np.allclose(res.stationary_distribution, exact, atol=0.07)
    half = 0.5 * (res.stationary_upper - res.stationary_lower)
    assert np.all((exact > res.stationary_lower - half) & (exact < res.stationary_upper + half))


@pytest.mark.slow
def test_slowest_its_of_gmvae_states_matches_fokker_planck(four_well_runs, tmp_path):
    """The same check with states from a trained GMVAE (n_clusters=4, latent_dim=1): minutes of training."""
    from gmvae_cv import fit

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    fw, traj = four_well_runs
    frame_dt = fw.dt * STRIDE
    t_fp = relaxation_times(fw, [(-2.6, 2.6)], 2000)[0]
    train = np.concatenate([t[::20] for t in traj])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = fit(train, n_clusters=4, latent_dim=1, epochs=150, patience=20, batch_size=2048, progress=False, seed=0, out=tmp_path / "run")
    dtrajs = gmvae_states(run, list(traj))
    res = MarkovAnalysis([50, 100, 200, 300], lagtime=300, dt=frame_dt, time_unit="reduced", n_samples=0).fit(dtrajs).fetch_model()
    t_msm = res.slowest_timescale()
    assert abs(t_msm - t_fp) / t_fp < 0.2, (t_msm, t_fp)
    # k-means on the latent z gives states too
    km = gmvae_states(run, list(traj[:5]), method="kmeans", n_clusters=4)
    assert len(km) == 5 and all(d.dtype == np.int32 for d in km)
    # and the command line from the run directory
    np.save(tmp_path / "x0.npy", traj[0])
    np.save(tmp_path / "x1.npy", traj[1])
    rc = main(["msm", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "x0.npy"), str(tmp_path / "x1.npy"), "--lags", "10,50", "--lag", "50", "--dt", str(frame_dt), "--time-unit", "reduced", "--samples", "0", "--out", str(tmp_path / "msm")])
    assert rc == 0 and (tmp_path / "msm" / "states_x0.npy").is_file()


def test_results_equal_deeptime_called_directly():
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MarkovStateModel, MaximumLikelihoodMSM

    P = np.array([[0.97, 0.03, 0.0], [0.02, 0.96, 0.02], [0.0, 0.05, 0.95]])
    d = MarkovStateModel(P).simulate(200_000, seed=7)
    dtrajs = [d[:120_000], d[120_000:]]
    res = MarkovAnalysis([1, 3, 6], lagtime=3, dt=0.5, n_metastable=2, n_samples=0, count_mode="sliding").fit(dtrajs).fetch_model()
    for i, lag in enumerate([1, 3, 6]):
        c = TransitionCountEstimator(lag, "sliding").fit_fetch(dtrajs).submodel_largest()
        m = MaximumLikelihoodMSM(lagtime=lag).fit_fetch(c)
        assert np.allclose(res.timescales[i, :2], m.timescales(2) * 0.5, rtol=1e-10)
        if lag == 3:
            assert np.allclose(res.transition_matrix, m.transition_matrix)
            assert np.allclose(res.stationary_distribution, m.stationary_distribution)
            assert res.mfpt[0, 2] == pytest.approx(m.mfpt(0, 2) * 0.5, rel=1e-10)
            pcca = m.pcca(2)
            assert np.allclose(res.memberships, pcca.memberships)
            ck = m.ck_test([MaximumLikelihoodMSM(lagtime=k * 3).fit_fetch(TransitionCountEstimator(k * 3, "sliding").fit_fetch(dtrajs).submodel_largest()) for k in range(1, 6)], 2)
            assert np.allclose(res.ck_predictions, ck.predictions)
            assert np.allclose(res.ck_estimates, ck.estimates)


def test_known_markov_chain_timescales_and_ck_within_bands(tmp_path):
    from deeptime.markov.msm import MarkovStateModel

    P = np.array([[0.99, 0.01, 0, 0], [0.01, 0.98, 0.01, 0], [0, 0.01, 0.98, 0.01], [0, 0, 0.01, 0.99]])
    true = MarkovStateModel(P)
    d = true.simulate(400_000, seed=3)
    res = MarkovAnalysis([1, 2, 5, 10], lagtime=2, dt=0.1, n_metastable=2, n_samples=100).fit(d).fetch_model()
    t_true = true.timescales(3) * 0.1  # a Markov chain: the same at every lag
    for i in range(len(res.lagtimes)):
        assert np.all(res.timescales_lower[i] <= t_true * 1.02) and np.all(t_true * 0.98 <= res.timescales_upper[i])
    # CK: estimates and predictions agree within the bands
    gap = np.abs(res.ck_estimates - res.ck_predictions)
    band = (res.ck_predictions_upper - res.ck_predictions_lower) + (res.ck_estimates_upper - res.ck_estimates_lower)
    assert np.all(gap <= band + 1e-9)
    assert np.allclose(res.stationary_distribution, 0.25, atol=0.03)
    assert res.mfpt[0, 3] == pytest.approx(true.mfpt(0, 3) * 0.1, rel=0.15)
    res.save(tmp_path / "msm.json")
    saved = json.loads((tmp_path / "msm.json").read_text())
    assert saved["implied_timescales"]["unit"] == "ps" and saved["lagtimes"]["unit"] == "frames"
    res.plot_implied_timescales(tmp_path / "its.png")
    res.plot_ck_test(tmp_path / "ck.png")
    assert (tmp_path / "its.png").stat().st_size > 1000 and (tmp_path / "ck.png").stat().st_size > 1000


# ====================================================================== biased data
H_DW = 4.0  # barrier of the double well, kT


def _double_well_umbrella(n_steps=20_000, seed=11):
    """Umbrella windows on U = 4 kT (x^2 - 1)^2: trajectories, Markov states, bias in every window."""
    centers = np.linspace(-1.2, 1.2, 7)
    kappa = 20.0
    xs, ens = [], []
    for j, c in enumerate(centers):
        def grad(x, c=c):
            return 4 * H_DW * x * (x**2 - 1) + kappa * (x - c)

        out = overdamped_langevin(grad, np.full((2, 1), c), n_steps, 1e-3, 1.0, stride=10, seed=seed + j)
        xs += [o[:, 0] for o in out]
        ens += [j, j]
    edges = np.linspace(-1.6, 1.6, 13)
    dtrajs = [np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2) for x in xs]
    bias = [0.5 * kappa * (x[:, None] - centers[None, :]) ** 2 for x in xs]
    x = np.linspace(-1.6, 1.6, 32001)
    w = np.exp(-H_DW * (x**2 - 1) ** 2)
    exact = np.bincount(np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2), weights=w, minlength=len(edges) - 1)
    return dtrajs, bias, np.array(ens), exact / exact.sum()


def test_biased_frames_are_refused_and_tram_recovers_boltzmann(tmp_path):
    dtrajs, bias, ens, exact = _double_well_umbrella()
    own_bias = [b[:, e] for b, e in zip(bias, ens)]
    # a plain MSM on these frames is refused, with the way out in the message
    with pytest.raises(BiasedDataError, match="TRAM"):
        MarkovAnalysis([1, 5], lagtime=5, n_samples=0).fit(dtrajs, bias=own_bias)
    # TRAM with the (static) bias of every frame in every window
    res = TRAMAnalysis(10, kT=1.0, maxerr=1e-5).fit(dtrajs, bias, ensembles=ens).fetch_model()
    pop = exact > 1e-3
    d = -np.log(res.stationary_distribution[pop]) + np.log(exact[pop])
    assert np.max(np.abs(d - d.mean())) < 0.4  # kT
    # why refuse: the same frames counted as if unbiased are off by more than a kT
    naive = np.bincount(np.concatenate(dtrajs), minlength=len(exact)) / sum(len(t) for t in dtrajs)
    dn = -np.log(naive[pop]) + np.log(exact[pop])
    assert np.max(np.abs(dn - dn.mean())) > 1.0
    res.save(tmp_path / "tram.json")
    assert json.loads((tmp_path / "tram.json").read_text())["n_states"] == len(exact)


@pytest.mark.slow
def test_cli_tram(tmp_path):
    dtrajs, bias, ens, exact = _double_well_umbrella()
    args = ["msm", "--tram", "--lags", "10", "--lag", "10", "--dt", "0.01", "--kT", "1.0", "--out", str(tmp_path / "o")]
    d_files, b_files = [], []
    for i, (d, b) in enumerate(zip(dtrajs, bias)):
        np.save(tmp_path / f"d{i}.npy", d)
        np.save(tmp_path / f"b{i}.npy", b)
        d_files.append(str(tmp_path / f"d{i}.npy"))
        b_files.append(str(tmp_path / f"b{i}.npy"))
    rc = main(args + ["--dtraj", *d_files, "--bias-energies", *b_files, "--ensembles", ",".join(map(str, ens))])
    assert rc == 0
    pi = np.array(json.loads((tmp_path / "o" / "tram.json").read_text())["stationary_distribution"], dtype=float)
    pop = exact > 1e-3
    d = -np.log(pi[pop]) + np.log(exact[pop])
    assert np.max(np.abs(d - d.mean())) < 0.5


def test_cli_refuses_biased_colvar_and_runs_on_unbiased(tmp_path):
    from deeptime.markov.msm import MarkovStateModel

    P = np.array([[0.98, 0.02], [0.03, 0.97]])
    d = MarkovStateModel(P).simulate(20_000, seed=1)
    np.save(tmp_path / "d.npy", d)
    t = np.arange(len(d)) * 0.1
    write_plumed(tmp_path / "COLVAR_biased", ["time", "cv", "metad.bias"], np.c_[t, d, np.linspace(0, 5, len(d))])
    write_plumed(tmp_path / "COLVAR_plain", ["time", "cv"], np.c_[t, d])
    common = ["msm", "--dtraj", str(tmp_path / "d.npy"), "--lags", "1,2,5", "--lag", "2", "--dt-ps", "0.1", "--samples", "20"]
    assert main(common + ["--colvar", str(tmp_path / "COLVAR_biased"), "--out", str(tmp_path / "o1")]) == 2
    assert main(common + ["--colvar", str(tmp_path / "COLVAR_plain"), "--metastable", "2", "--out", str(tmp_path / "o2")]) == 0
    out = json.loads((tmp_path / "o2" / "msm.json").read_text())
    assert out["model_lagtime"]["time"] == pytest.approx(0.2)
    assert (tmp_path / "o2" / "its.png").is_file() and (tmp_path / "o2" / "ck.png").is_file()


# ====================================================================== bad input
def test_dtrajs_must_be_integer_arrays():
    with pytest.raises(GMVAEInputError, match=r"dtrajs\[0\]' has dtype float64|dtrajs\[0\] has dtype float64, expected integer"):
        check_dtrajs([np.array([0.0, 1.0, 1.0])])
    with pytest.raises(GMVAEInputError, match="expected a 1D array"):
        check_dtrajs([np.zeros((5, 2), dtype=int)])
    with pytest.raises(GMVAEInputError, match="negative state -1"):
        check_dtrajs(np.array([0, 1, -1, 2]))
    with pytest.raises(GMVAEInputError, match="dtype bool"):
        check_dtrajs(np.array([True, False]))


def test_lag_longer_than_trajectories():
    d = [np.array([0, 1, 0, 1, 1, 0] * 5), np.array([0, 1, 1, 0] * 3)]
    with pytest.raises(GMVAEInputError, match=r"lag time\(s\) \[40\] frames are not shorter than the longest trajectory \(30 frames\)"):
        MarkovAnalysis([1, 40], lagtime=1, n_samples=0).fit(d)
    with pytest.warns(UserWarning, match="not longer than the largest lag"):
        MarkovAnalysis([1, 15], lagtime=1, n_samples=0).fit(d)
