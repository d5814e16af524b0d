"""The parameters of :func:`~gmvae_cv.workflows.rates.run_rates` (:class:`RateSettings`), its names and formats."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..._core.checks import check_int, check_positive
from ..._core.errors import GMVAEInputError

__all__ = ["RateSettings", "InfrequentMetadWarning", "RATES_FORMAT", "RUN_FORMAT", "SYSTEMS", "STATES", "CLUSTER_COMMIT", "KB",
           "TORSION_CVS", "torsion_cv"]

RATES_FORMAT = "gmvae-cv/rates"
RUN_FORMAT = "gmvae-cv/rate-run"
SYSTEMS = ("alanine-dipeptide", "double-well")
KB = 0.008314462618  # kJ/mol/K
STATES = {"alanine-dipeptide": ("C7eq", "C7ax"), "double-well": ("left", "right")}
"""The named states of each system (besides ``cluster:<i>``)."""
TORSION_CVS = {"phi-psi": ("phi", "psi"), "phi": ("phi",), "psi": ("psi",)}
"""The alanine CVs given by name instead of an export: the backbone torsions biased (rad). ``psi``
alone is the textbook poor CV of the C7eq <-> C7ax flip (it misses the slow phi rotation): its
escape times are the check that the KS test can fail."""
CLUSTER_COMMIT = 0.9
"""A frame lies in state ``cluster:<i>`` when its q(y=i|x) is at least this."""


def torsion_cv(name: str):
    """The CV of ``name`` (a key of :data:`TORSION_CVS`): the backbone torsions as a feature CV (rad)."""
    from ...deploy import feature_cv
    from ...features import FeatureSpec, alanine_backbone_torsions

    spec = alanine_backbone_torsions(transform="raw")
    return feature_cv(FeatureSpec([f for f in spec.features if f.name in TORSION_CVS[name]], spec.n_atoms,
                                  periodic=spec.periodic, description=f"{name} of alanine dipeptide (rad)"))


class InfrequentMetadWarning(UserWarning):
    """The runs break an assumption of infrequent metadynamics (bias at the transition state)."""


@dataclass
class RateSettings:
    """Parameters of the infrequent-metadynamics runs (alanine: ps, kJ/mol, K; toy: reduced units).

    Attributes
    ----------
    paces : tuple of int
        Deposition paces to run (MD steps); the rate must not depend on them.
    height : float
        Initial hill height, kJ/mol.
    sigma : tuple of float, optional
        Hill widths in CV units (default: the METAD sigma of the export; 0.35 rad for phi/psi).
    bias_factor : float
    temperature : float
        K.
    timestep : float
        ps.
    friction : float
        1/ps.
    chunk : int
        Steps between state checks and bias samples (the rescaled time is a sum over chunks with
        the bias at each chunk's end).
    max_ps : float
        A run that has not reached the target by then stops unescaped (a lower bound, recorded and
        left out of the statistics with a warning).
    components : tuple of int, optional
        Biased CV components (default all, at most 3).
    platform : str
        OpenMM platform of each run.
    barrier : float
        ``double-well`` only: the barrier ``h`` in kT (times there are reduced units, not ps).
    """

    paces: tuple = (500,)
    height: float = 1.0
    sigma: Optional[tuple] = None
    bias_factor: float = 10.0
    temperature: float = 300.0
    timestep: float = 0.002
    friction: float = 1.0
    chunk: int = 100
    max_ps: float = 20000.0
    components: Optional[tuple] = None
    platform: str = "Reference"
    barrier: float = 8.0

    def check(self) -> "RateSettings":
        """A checked copy (paces, sigma and components as tuples); raise :class:`GMVAEInputError` naming a bad field."""
        paces = tuple(check_int(p, "paces", minimum=1) for p in (self.paces if np.ndim(self.paces) else [self.paces]))
        if not paces:
            raise GMVAEInputError("'paces' is empty, expected at least one deposition pace in MD steps")
        check_positive(self.height, "height")
        if not self.bias_factor > 1:
            raise GMVAEInputError(f"'bias_factor' is {self.bias_factor}, expected > 1")
        check_positive(self.temperature, "temperature")
        check_positive(self.timestep, "timestep")
        check_int(self.chunk, "chunk", minimum=1)
        check_positive(self.max_ps, "max_ps")
        sigma = None if self.sigma is None else tuple(float(s) for s in np.atleast_1d(self.sigma))
        comps = None if self.components is None else tuple(int(c) for c in np.atleast_1d(self.components))
        return RateSettings(**{**asdict(self), "paces": paces, "sigma": sigma, "components": comps})
