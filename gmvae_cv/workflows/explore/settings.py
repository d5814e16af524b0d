"""The sizes and parameters of :func:`~gmvae_cv.workflows.explore.explore` (:class:`ExploreSettings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..._core.checks import check_int, check_positive
from ..._core.errors import GMVAEInputError

__all__ = ["ExploreSettings", "EXPLORE_FORMAT", "METHODS", "CV_POLICIES", "ALANINE", "KB"]

EXPLORE_FORMAT = "gmvae-cv/explore"
METHODS = ("metad", "opes", "opes-explore")
"""Bias methods of :func:`explore` (well-tempered metadynamics, OPES_METAD, OPES_METAD_EXPLORE)."""
CV_POLICIES = ("keep", "retrain")
"""What a round does with the CV in use (:class:`ExploreSettings`, ``cv_policy``)."""
KB = 0.008314462618  # kJ/mol/K
ALANINE = "alanine-dipeptide"
_INT_MINIMA = {"rounds": 1, "walkers": 1, "seed": 0, "n_clusters": 2, "latent_dim": 1, "lag": 0, "epochs": 1, "n_blocks": 2}
"""The integer fields and their smallest allowed values."""
_POSITIVE = ("ns_per_round", "temperature", "timestep_fs", "height", "frame_ps", "stable_sigmas", "barrier", "max_df_error",
             "keep_min_transitions_per_ns")
"""The fields that must be > 0."""


@dataclass
class ExploreSettings:
    """Sizes and parameters of :func:`explore` (all saved in ``explore.json``).

    Parameters
    ----------
    rounds : int
        Round budget: biased runs at most (>= 1).
    ns_per_round : float
        Simulated time of each biased run, ns (per walker).
    method : {'metad', 'opes', 'opes-explore'}
        Bias method (:func:`gmvae_cv.run_metadynamics` with that ``method``). Metadynamics frames
        are reweighted with :math:`\\beta (V - c(t))` from the hills, OPES frames with
        :math:`\\beta V` (``opes.bias`` of the COLVAR).
    walkers : int
        Walkers sharing one bias in each round.
    seed : int
        Seeds training (``seed + round``) and the biased runs (``seed + 1000 round``).
    n_clusters, latent_dim, lag, entropy_weight, epochs : int, int, int, float, int
        GMVAE (as the demo: 4 clusters, 2 components, a 5-frame time lag, entropy weight 2).
    training_weights : {'coverage', 'reweighted'}
        See the module docstring.
    cv_policy : {'keep', 'retrain'}
        ``'keep'`` (default): once the CV in use crosses between the known states
        (``keep_min_transitions_per_ns`` in its last round), later rounds continue its biased run
        (same CV, same bias, longer run) instead of biasing their own GMVAE; until then each round
        biases its own. ``'retrain'``: every round biases its own GMVAE from a fresh bias. See the
        module docstring.
    keep_min_transitions_per_ns : float
        With ``cv_policy='keep'``: the crossings (C7eq <-> C7ax for alanine dipeptide) per ns of a
        round that make its CV the one kept (and that a kept run must go on making). Systems
        without named states never keep a CV.
    keep_method : {'metad', 'opes', 'opes-explore'} or None
        With ``cv_policy='keep'``: the method of the kept CV's run. ``'opes'`` (default): the first
        kept round starts OPES_METAD on that CV (a fresh bias) and the later ones continue it:
        OPES-explore finds the way, OPES_METAD converges the free energy (its bias tends to the
        free energy, so the weights of late frames stop changing). Its first round fills the bias
        and is not judged by its crossings. None: ``method``, the kept run continued as it is.
    temperature : float
        K, of the biased runs and of the free energies.
    timestep_fs : float
        Time step of the biased runs, fs. Hills every ps and trajectory frames every ps whatever it is.
    height, bias_factor : float
        Well-tempered metadynamics: initial hill height (kJ/mol) and bias factor.
    barrier : float
        OPES: the barrier to overcome, kJ/mol (``BARRIER``).
    walls : bool
        Walls that keep the biased CV inside its grid (:mod:`gmvae_cv.metad.walls`: default bounds
        4 sigma inside the grid edges, stiffness 2 kT / sigma^2); their energy is part of the
        frames' log-weights.
    frame_ps : float
        Spacing of the given unbiased frames, ps (the lag counts frames; the biased runs write
        frames at this spacing too). Read from the ``simulation.json`` beside the trajectory when
        there is one.
    discard_fraction : float
        Leading fraction of each biased run left out of its dF estimate.
    n_blocks : int
        Blocks of the jackknife error of dF.
    min_cluster_fraction, new_cluster_old_fraction, stable_sigmas : float
        Stop rule, see the module docstring.
    max_df_error : float
        Largest error (kJ/mol) of each of the three dF estimates the stop rule compares.

    Examples
    --------
    >>> cfg = ExploreSettings(rounds=4, ns_per_round=1.0).validate()
    >>> cfg.pace, cfg.steps_per_round
    (500, 500000)
    """

    rounds: int = 6
    ns_per_round: float = 2.0
    method: str = "metad"
    walkers: int = 1
    seed: int = 0
    n_clusters: int = 4
    latent_dim: int = 2
    lag: int = 5
    entropy_weight: float = 2.0
    epochs: int = 150
    training_weights: str = "coverage"
    cv_policy: str = "keep"
    keep_min_transitions_per_ns: float = 10.0
    keep_method: Optional[str] = "opes"
    temperature: float = 300.0
    timestep_fs: float = 2.0
    height: float = 1.2
    bias_factor: float = 10.0
    barrier: float = 40.0
    walls: bool = True
    frame_ps: float = 1.0
    discard_fraction: float = 0.1
    n_blocks: int = 10
    min_cluster_fraction: float = 0.02
    new_cluster_old_fraction: float = 0.1
    stable_sigmas: float = 2.0
    max_df_error: float = 1.0

    def validate(self) -> "ExploreSettings":
        """Check every field; raise :class:`GMVAEInputError` naming it."""
        for name, minimum in _INT_MINIMA.items():
            check_int(getattr(self, name), name, minimum=minimum)
        for name in _POSITIVE:
            check_positive(getattr(self, name), name)
        if self.method not in METHODS:
            raise GMVAEInputError(f"'method' is {self.method!r}, expected one of {list(METHODS)}")
        if not self.bias_factor > 1:
            raise GMVAEInputError(f"'bias_factor' is {self.bias_factor}, expected > 1")
        if not isinstance(self.walls, bool):
            raise GMVAEInputError(f"'walls' is {self.walls!r}, expected True or False")
        if self.keep_method is not None and self.keep_method not in METHODS:
            raise GMVAEInputError(f"'keep_method' is {self.keep_method!r}, expected one of {list(METHODS)} or None")
        if self.cv_policy not in CV_POLICIES:
            raise GMVAEInputError(f"'cv_policy' is {self.cv_policy!r}, expected one of {list(CV_POLICIES)}")
        if self.training_weights not in ("coverage", "reweighted"):
            raise GMVAEInputError(f"'training_weights' is {self.training_weights!r}, expected 'coverage' or 'reweighted'")
        for name in ("discard_fraction", "min_cluster_fraction", "new_cluster_old_fraction"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise GMVAEInputError(f"'{name}' is {getattr(self, name)}, expected 0 <= {name} < 1")
        if (1000.0 / self.timestep_fs) % 1 or (self.frame_ps * 1000.0 / self.timestep_fs) % 1:
            raise GMVAEInputError(f"'timestep_fs' is {self.timestep_fs}: 1 ps and frame_ps = {self.frame_ps} ps must be whole numbers of steps")
        return self

    @property
    def pace(self) -> int:
        """Steps between hills (1 ps)."""
        return int(round(1000.0 / self.timestep_fs))

    @property
    def steps_per_round(self) -> int:
        """MD steps of each biased run (per walker): ``ns_per_round`` rounded to whole hill paces."""
        return int(round(self.ns_per_round * 1e6 / self.timestep_fs / self.pace)) * self.pace

