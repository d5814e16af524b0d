"""Discovery from a stuck run: train a GMVAE, bias its CV, retrain on everything sampled, repeat.

:func:`explore` starts from unbiased frames that know only some states (e.g. 300 K alanine
dipeptide, never phi > 0). Round ``r`` trains a GMVAE on the given frames plus the frames of every
biased run before it, exports and checks it, biases its CV (well-tempered metadynamics in OpenMM,
``method="metad"``) and analyses the biased run. It stops when the stop rule holds or after
``rounds`` biased runs.

Layout of ``DIR``::

    explore.json            format, settings, fingerprints of the system, the frames and the spec
    input/                  features (and phi/psi) of the given frames
    round_NN/run/           the GMVAE of round NN (gmvae_cv.fit)
    round_NN/plan.json      the CV the round biases and whether it continues round NN-1's run
    round_NN/exp/           the export of its GMVAE when it biases it (checked: check.json)
    round_NN/bias/          the biased run (run_metadynamics: COLVAR, HILLS, traj.dcd, checkpoint)
    round_NN/analysis/      analysis.json, frames.npz, features.npy, latent.png, coverage.png
    summary.json, reweighted.npz, delta_f.png

Which CV a round biases (``cv_policy``, ``round_NN/plan.json``). ``"keep"`` (default): round ``r``
biases its own GMVAE's CV, from a fresh bias, until a round's CV crosses between the known states
at least ``keep_min_transitions_per_ns`` times per ns (10 by default); from then on the rounds keep
that CV: the first kept round starts a run of ``keep_method`` on it (OPES_METAD by default:
OPES-explore finds the way, OPES_METAD converges the free energy), the later rounds continue that
run (a copy of the run of round ``r - 1``, run on from its checkpoint with the same bias) while it
goes on crossing that often (the round after the first is continued whatever it crossed: a fresh
bias fills first), so that a CV that crosses keeps crossing and its free-energy estimate, from the
whole run, converges. ``"retrain"``: every round biases its own GMVAE from a fresh bias.

Why, measured (OPES-explore, 1 ns rounds, 4 ns unbiased 300 K starts, ``benchmarks/explore_keep.json``):
with ``"retrain"`` a CV that crossed 38-91 times per ns was replaced by a retrained one that
crossed 1-3 times per ns in the rounds after, and dF did not recover; keeping round 0's CV
whatever it does never reached C7ax in 3 ns (OPES-explore filled the bias on a CV that does not
resolve phi: only retraining on the frontier frames changes that); keeping a CV after 2 crossings
per ns kept weak CVs, and a fresh OPES_METAD run on them crossed 0 times in its first ns.
Crossings are counted on named states (C7eq and C7ax for alanine dipeptide); on a system without
them every round retrains.

A biased run that the heating check stops (:class:`~gmvae_cv.SimulationUnstableError`: a CV too
steep for the time step) ends its round at its last checkpoint: the frames up to there are
analysed and trained on, and the next round trains a new GMVAE instead of keeping that CV
(measured: 2 of 3 seeds of ``benchmarks/explore_keep.json`` met such a CV, at 939 and 1043 K).

Every stage writes ``done.json`` when it has finished; a stage without it is redone (a biased run
continues from its checkpoint), so a killed ``explore`` started again continues with the round and
stage it was in.

Stop rule (after the GMVAE of round ``r`` is trained and before it is biased): no new cluster in the
GMVAEs of rounds ``r - 1`` and ``r``, and the estimate of dF stable within its error for two rounds
(``|dF(r-1) - dF(r-2)|`` and ``|dF(r-2) - dF(r-3)|`` each at most ``stable_sigmas`` times their
combined error, and each of the three errors at most ``max_df_error``, 1 kJ/mol by default: with
OPES-explore and 1 ns rounds, errors of 10-14 kJ/mol made two estimates "agree" after the retrained
CV had lost the transitions, ``benchmarks/explore_opes_walls_1ns.json`` seed 2). A cluster of the GMVAE of round ``r`` is *new* when it holds at least
``min_cluster_fraction`` of the training frames and fewer than ``new_cluster_old_fraction`` of its
frames come from data that the GMVAE of round ``r - 1`` was trained on (so it lives in frames
sampled by the last biased run). The rule reads no phi/psi: it works for any system. dF, transitions
and core sets are computed when the system is alanine dipeptide.

Training frames (``training_weights``). ``"coverage"`` (default): every frame counts once, so the
states a biased run has reached shape the next CV as much as the known ones. ``"reweighted"``:
frames carry their Boltzmann weights at the run temperature (c(t) weights of their biased run,
normalised per run), which gives the newly reached high free-energy regions almost no weight.
Measured (``benchmarks/explore.py``, 3 seeds, round 0 = 0.4 ns on the 300 K GMVAE CV): the frames
beyond the 99th percentile of phi of the unbiased start are 1.0-2.8 % of the biased frames but carry
0.08-0.9 % of their c(t) weight (3-12 times less; Kish effective sample size 24-34 % of the frames),
so a reweighted GMVAE sees the frontier even less than the biased run reached it; coverage is the
default. (Round 1 of seed 0 trained both ways: no C7ax either way, so that test does not separate them.)
"""

from .loop import explore
from .settings import EXPLORE_FORMAT, METHODS, ExploreSettings

__all__ = ["ExploreSettings", "explore", "EXPLORE_FORMAT", "METHODS"]
