"""Stage 4, metad: biasing the exported CV in OpenMM.

One concept per module:

- :mod:`.kernels`: hill kernels and the grid geometry (shared with the HILLS analysis);
- :mod:`.parameters`: :class:`BiasedVariable` (one per biased component, as OpenMM's
  ``BiasVariable``) and :class:`MetadynamicsParameters`;
- :mod:`.grid`: the bias on a grid, interpolated as OpenMM's tables;
- :mod:`.force`: the fused TorchForce (features, CV and tabulated bias in one pass);
  :mod:`.walls`: the walls that keep the CV inside a non-periodic grid;
- :mod:`.binding`: the table file and the forces in the walkers' systems;
- :mod:`.stability`: non-finite states and heating checks;
- :mod:`.bias_state`: hills on the grid and their checkpoint arrays;
- :mod:`.base`, :mod:`.engine`: the stepping loop and :class:`WellTemperedMetadynamics` (used
  like ``openmm.app.Metadynamics``); :mod:`.opes`: :class:`OPESBias` (OPES_METAD and
  OPES_METAD_EXPLORE, estimator from ``openmm-opes``);
- :mod:`.walkers`: walkers across processes; :mod:`.reporters`: PLUMED-format files;
- :mod:`.run`, :mod:`.rundir`: the restartable run directory (:func:`run_metadynamics`,
  :func:`run_opes`); :mod:`.user_system`: a user's own system (:func:`load_md_system`).

Imports :mod:`gmvae_cv.features` and :mod:`gmvae_cv.deploy`. Names are imported when first used,
so that ``gmvae_cv.metad.kernels`` (what the analysis needs) loads without torch or OpenMM.
"""

from __future__ import annotations

from .._core.lazy import lazy_names as _lazy_names
from typing import TYPE_CHECKING as _TYPE_CHECKING

_NAMES = {
    "WellTemperedMetadynamics": "engine",
    "MetadynamicsParameters": "parameters",
    "BiasedVariable": "parameters",
    "BiasEdgeWarning": "parameters",
    "BiasRouteWarning": "binding",
    "Hill": "hill",
    "HillKernel": "kernels",
    "GridSpec": "kernels",
    "DP2CUTOFF": "kernels",
    "PLUMED_KERNELS": "kernels",
    "wrap_difference": "kernels",
    "SimulationUnstableError": "gmvae_cv._core.errors",
    "run_metadynamics": "run",
    "load_checkpoint_info": "rundir",
    "run_opes": "run",
    "BiasRunResult": "run",
    "RunSettings": "settings",
    "MDSettings": "settings",
    "OutputSettings": "settings",
    "MetadynamicsSettings": "settings",
    "WalkerSettings": "settings",
    "OPESBias": "opes",
    "OPESParameters": "opes",
    "Walls": "walls",
    "WALLS_FIELD": "walls",
    "MDSystem": "user_system",
    "load_md_system": "user_system",
}

__all__ = list(_NAMES)


__getattr__, __dir__ = _lazy_names(__name__, _NAMES, globals())


if _TYPE_CHECKING:  # pragma: no cover
    from .._core.errors import SimulationUnstableError
    from .binding import BiasRouteWarning
    from .engine import WellTemperedMetadynamics
    from .hill import Hill
    from .kernels import GridSpec, HillKernel
    from .opes import OPESBias, OPESParameters
    from .parameters import BiasedVariable, BiasEdgeWarning, MetadynamicsParameters
    from .run import BiasRunResult, run_metadynamics, run_opes
    from .rundir import load_checkpoint_info  # noqa: F401
    from .settings import MDSettings, MetadynamicsSettings, OutputSettings, RunSettings, WalkerSettings
    from .user_system import MDSystem, load_md_system
    from .walls import WALLS_FIELD, Walls
