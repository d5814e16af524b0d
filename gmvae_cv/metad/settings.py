"""The settings of a biased run, grouped by what they are about.

:func:`~gmvae_cv.metad.run.run_metadynamics` and :func:`~gmvae_cv.metad.run.run_opes` take one
:class:`RunSettings` (or the same values as keywords, which :meth:`RunSettings.from_keywords`
sorts into the groups):

- :class:`MetadynamicsSettings` or :class:`~gmvae_cv.metad.opes.OPESParameters`: the bias;
- :class:`MDSettings`: the dynamics (thermostat, integrator, walkers, seed, platform, force);
- :class:`OutputSettings`: strides of the files, checkpoints, extra COLVAR columns;
- :class:`WalkerSettings`: walkers in other processes sharing a directory.

Units: temperature K, timestep ps, friction 1/ps, energies kJ/mol, CV values in the CV's units.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .._core.errors import GMVAEInputError
from .opes import OPESParameters

__all__ = ["MetadynamicsSettings", "MDSettings", "OutputSettings", "WalkerSettings", "RunSettings"]


@dataclass
class MetadynamicsSettings:
    """Well-tempered metadynamics (see :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`).

    Attributes
    ----------
    sigma : sequence of float
        Hill widths, CV units, one per biased component.
    height : float
        Initial hill height, kJ/mol.
    bias_factor : float
        :math:`\\gamma > 1`.
    pace : int
        Steps between hills.
    components, grid_min, grid_max, grid_bin
        The biased components and their grid (defaults as in :func:`~gmvae_cv.metad.parameters.biased_variables`).
    kernel : {'stretched-gaussian', 'gaussian'}
    walls : bool
        Walls on the non-periodic biased components (:mod:`gmvae_cv.metad.walls`), default on.
    wall_margin, wall_kappa : sequence of float, optional
        Per biased component: the walls' bounds inside the grid edges (CV units, default 4 sigma)
        and stiffness (kJ/mol/CV-unit^2, default 2 kT / sigma^2).
    """

    sigma: Optional[Sequence[float]] = None
    height: Any = 1.2
    bias_factor: float = 10.0
    pace: int = 500
    components: Optional[Sequence[int]] = None
    grid_min: Optional[Sequence[float]] = None
    grid_max: Optional[Sequence[float]] = None
    grid_bin: Optional[Sequence[int]] = None
    kernel: str = "stretched-gaussian"
    walls: bool = True
    wall_margin: Optional[Sequence[float]] = None
    wall_kappa: Optional[Sequence[float]] = None

    method = "metad"


@dataclass
class MDSettings:
    """The biased dynamics.

    Attributes
    ----------
    temperature : float or Quantity
        K (thermostat and bias).
    timestep : float or Quantity
        ps (``LangevinMiddleIntegrator``).
    friction : float or Quantity
        1/ps.
    walkers : int
        Walkers sharing one bias in this process, in lock-step.
    seed : int
        Seeds velocities and Langevin noise (walker ``w`` uses a seed derived from ``seed`` and ``w``).
    platform : str, optional
        Default: the faster of Reference and CPU for this biased system, measured.
    cpu_threads : int, optional
        ``Threads`` property of the CPU platform.
    torch_threads : int
        ``torch.set_num_threads`` during the run.
    route : {'auto', 'native', 'compiled', 'autograd'}
        How the bias force is evaluated (see :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`;
        ``'auto'``: the native kernel where it applies, else the TorchForce route).
    dtype : {'float64', 'float32'}
        Arithmetic inside the force.
    heating_limit : float, 'auto' or None
        See :class:`~gmvae_cv.metad.stability.StabilityMonitor`.
    """

    temperature: Any = 300.0
    timestep: Any = 0.002
    friction: Any = 1.0
    walkers: int = 1
    seed: int = 0
    platform: Optional[str] = None
    cpu_threads: Optional[int] = None
    torch_threads: int = 1
    route: str = "auto"
    dtype: str = "float64"
    heating_limit: Optional[float | str] = "auto"


@dataclass
class OutputSettings:
    """What the run writes, and how often.

    Attributes
    ----------
    colvar_stride : int, optional
        Steps between COLVAR rows (default ``pace // 5`` or 1).
    traj_stride : int, optional
        Steps between trajectory frames (default ``pace``; 0 for no trajectory).
    checkpoint_interval : int, optional
        Steps between checkpoints, a multiple of ``pace`` (default about 10000 steps).
    extra_colvar : FeatureSpec, optional
        More COLVAR columns (e.g. phi, psi).
    description : dict, optional
        Free-form description of the system for ``run.json``.
    overwrite : bool
        Replace a run in the directory that has other parameters.
    progress : callable, optional
        tqdm-like class: ``progress(total=n_steps, initial=done, unit="step")``.
    """

    colvar_stride: Optional[int] = None
    traj_stride: Optional[int] = None
    checkpoint_interval: Optional[int] = None
    extra_colvar: Any = None
    description: Optional[dict] = None
    overwrite: bool = False
    progress: Optional[Callable] = None


@dataclass
class WalkerSettings:
    """Walkers in other processes sharing one bias through a directory.

    Attributes
    ----------
    walkers_dir : path, optional
    walker_id : int, optional
        This walker's id (unique; it also seeds the walker's velocities and noise).
    walkers_stride : int
        Own depositions between exchanges (each exchange is a checkpoint).
    """

    walkers_dir: Optional[str | os.PathLike] = None
    walker_id: Optional[int] = None
    walkers_stride: int = 10


def _bias_classes() -> dict:
    return {"metad": MetadynamicsSettings, "opes": OPESParameters, "opes-explore": OPESParameters}


@dataclass
class RunSettings:
    """Everything :func:`~gmvae_cv.metad.run.run_metadynamics` needs besides the CV, the system and the directory.

    Attributes
    ----------
    bias : MetadynamicsSettings or OPESParameters
    md : MDSettings
    output : OutputSettings
    walkers : WalkerSettings

    Examples
    --------
    >>> s = RunSettings.from_keywords(sigma=[0.35, 0.35], pace=100, seed=3, colvar_stride=10)
    >>> s.bias.pace, s.md.seed, s.output.colvar_stride
    (100, 3, 10)
    """

    bias: Any = field(default_factory=MetadynamicsSettings)
    md: MDSettings = field(default_factory=MDSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    walkers: WalkerSettings = field(default_factory=WalkerSettings)

    @property
    def method(self) -> str:
        """``"metad"``, ``"opes"`` or ``"opes-explore"``."""
        return self.bias.method

    @classmethod
    def from_keywords(cls, method: str = "metad", base: Optional["RunSettings"] = None, **keywords: Any) -> "RunSettings":
        """Sort keyword arguments into the groups (starting from ``base``, or the defaults).

        Parameters
        ----------
        method : {'metad', 'opes', 'opes-explore'}
        base : RunSettings, optional
        **keywords
            Any field of the groups. A keyword that belongs to no group, or to the bias of
            another method (``bias_factor`` with ``method='opes'``), is a :class:`GMVAEInputError`
            naming it.
        """
        classes = _bias_classes()
        if method not in classes:
            raise GMVAEInputError(f"'method' is {method!r}, expected one of {', '.join(classes)}")
        bias_cls = classes[method]
        if base is not None and base.method != method and not (
                base.method.startswith("opes") and method.startswith("opes")):
            raise GMVAEInputError(f"'method' is {method!r} but the settings' bias is for {base.method!r}")
        if base is None:
            base = cls(bias=bias_cls())
        groups = {"bias": base.bias, "md": base.md, "output": base.output, "walkers": base.walkers}
        names = {g: {f.name for f in dataclasses.fields(obj)} for g, obj in groups.items()}
        updates: dict = {g: {} for g in groups}
        for key, value in keywords.items():
            where = [g for g in groups if key in names[g]]
            if not where:
                raise GMVAEInputError(_unknown(key, method, classes))
            updates[where[0]][key] = value
        if method != "metad":
            updates["bias"].setdefault("explore", method == "opes-explore")
        return cls(**{g: dataclasses.replace(obj, **updates[g]) for g, obj in groups.items()})


def _unknown(key: str, method: str, classes: dict) -> str:
    others = [m for m, c in classes.items() if m != method and key in {f.name for f in dataclasses.fields(c)}]
    if others:
        return (f"'{key}' is a parameter of method {others[0]!r}, not of {method!r} "
                f"(give the parameters of {method!r}, or method={others[0]!r})")
    return f"unexpected keyword argument '{key}'"
