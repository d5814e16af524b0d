"""Stage 4, metad: biasing the exported CV in OpenMM.

The grid and hill kernels (:mod:`.grid`), the fused bias force (:mod:`.force`), the engine
(:class:`WellTemperedMetadynamics`, used like ``openmm.app.Metadynamics``), walkers across
processes (:mod:`.walkers`), PLUMED-format reporters (:mod:`.reporters`), the restartable run
directory (:func:`run_metadynamics`) and a user's own system (:func:`load_md_system`).
Imports :mod:`gmvae_cv.features` and :mod:`gmvae_cv.deploy`.
"""

from .._core.errors import SimulationUnstableError
from .engine import BiasEdgeWarning, BiasRouteWarning, MetadynamicsParameters, WellTemperedMetadynamics
from .hill import Hill
from .run import BiasRunResult, run_metadynamics
from .user_system import MDSystem, load_md_system

__all__ = [
    "WellTemperedMetadynamics", "MetadynamicsParameters", "Hill", "BiasEdgeWarning", "BiasRouteWarning",
    "SimulationUnstableError", "run_metadynamics", "BiasRunResult", "MDSystem", "load_md_system",
]
