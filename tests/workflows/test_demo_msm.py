"""The demo's MSM of a 300 K run (:func:`gmvae_cv.workflows.demo_explore.state_msm`): on core sets of
k-means states of a GMVAE latent space at a 1 ps lag the slowest process (C7eq <-> C5/beta) is resolved, its
timescale agrees with an MSM on k-means states of (phi, psi) built with deeptime directly (an
independent discretisation of the same frames), the CK test passes and the two PCCA+ sets are C7eq
and C5/beta; the k-means states at a 10 ps lag are not resolved; milestoning on a hand-made example."""

import numpy as np
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.analysis import MarkovAnalysis, gmvae_states, milestone, msm_summary
from gmvae_cv.features import alanine_heavy_atom_distances, load_trajectory_features
from gmvae_cv.learn import fit
from gmvae_cv.systems import AlanineDipeptide
from gmvae_cv.workflows.demo_explore import _phi_psi, state_msm


@pytest.fixture(scope="module")
def run_300k(tmp_path_factory):

    d = tmp_path_factory.mktemp("md300")
    AlanineDipeptide().simulate(1_000_000, 500, d / "md", temperature=300.0, seed=7)
    x = load_trajectory_features([d / "md" / "traj.dcd"], d / "md" / "topology.pdb", alanine_heavy_atom_distances())[0]
    run = fit([x], n_clusters=4, latent_dim=2, epochs=40, batch_size=500, lr=3e-3, seed=0, entropy_weight=2.0, lag=5,
              feature_spec=alanine_heavy_atom_distances(), out=d / "run", progress=False)
    return d, x, run


def _phi_psi_msm_its(phi: np.ndarray, psi: np.ndarray, lag: int) -> float:
    """Slowest ITS (ps) of a reversible MSM on 20 k-means states of (cos, sin) phi/psi, deeptime directly."""
    from deeptime.clustering import KMeans
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    y = np.column_stack([np.cos(phi), np.sin(phi), np.cos(psi), np.sin(psi)])
    d = KMeans(20, fixed_seed=3, max_iter=200).fit(y).fetch_model().transform(y)
    counts = TransitionCountEstimator(lag, "sliding").fit(d).fetch_model().submodel_largest()
    return float(MaximumLikelihoodMSM(reversible=True).fit(counts).fetch_model().timescales(1)[0])


def test_latent_msm_resolves_c7eq_c5_and_agrees_with_a_phi_psi_msm(run_300k, tmp_path):
    d, x, run = run_300k
    phi, psi = _phi_psi(d / "md")
    assert np.all(phi < 0)  # the 300 K run stays at phi < 0
    msm, keys = state_msm(run, x, tmp_path, phi, psi)
    assert keys["msm_lag_ps"] == 1.0 and keys["its_resolved"], keys["its_reason"]
    v, lo, hi = keys["slowest_its_ps"]
    assert lo <= v <= hi and lo > 1.0
    ref = _phi_psi_msm_its(phi, psi, 1)
    assert 1.5 < ref < 8.0  # C7eq <-> C5 in vacuum at 300 K takes a few ps (3.9 ps on 0.1 ps frames, measured)
    assert 0.7 * ref < v < 1.3 * ref, (v, ref)
    assert keys["ck_passed"]
    main = {max(s["basins"], key=s["basins"].get) for s in keys["msm_sets"]}
    assert main == {"C7eq", "C5/beta"}, keys["msm_sets"]
    for f in ("its.png", "ck.png", "msm.json"):
        assert (tmp_path / f).is_file()


def test_the_same_states_at_a_10_ps_lag_are_not_resolved(run_300k):
    d, x, run = run_300k
    dtrajs = gmvae_states(run, [x], method="kmeans", n_clusters=10, seed=1)
    msm = MarkovAnalysis([10, 20, 30], lagtime=10, dt=1.0, time_unit="ps", n_samples=20).fit(dtrajs).fetch_model()
    keys = msm_summary(msm, min_lags=3)
    assert not keys["its_resolved"] and "not above the lag" in keys["its_reason"]


def test_milestoning_keeps_the_last_core_and_refuses_a_trajectory_in_no_core():
    # fine states 0, 1 in core 0, 2 in none, 3 in core 1: the excursion 0 -> 2 -> 0 is no transition
    traj, first = milestone(np.array([2, 2, 0, 2, 0, 1, 2, 3, 2, 3, 2, 1]), [0, 0, -1, 1])
    assert first == 2
    assert traj.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    with pytest.raises(GMVAEInputError, match="no frame lies in a core"):
        milestone(np.array([2, 2]), [0, 0, -1])
    with pytest.raises(GMVAEInputError, match="one entry per state"):
        milestone(np.array([0, 4]), [0, 0, -1])
