"""The bias bound to OpenMM: the shared table file, the fused TorchForce in each walker's system,
and the version parameter that tells the contexts to re-read the table.

:class:`ForceBinding` is what every engine built on the fused force shares
(:class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics` fills the table from its hills,
:class:`~gmvae_cv.metad.opes.OPESBias` from the OPES bias on the grid). It knows nothing of how the
node values come about: it writes :meth:`~gmvae_cv.metad.grid.BiasGrid.force_table` (all of it, or
the rows a deposition changed) and counts the writes in :attr:`version`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from openmm import unit
import shutil

from .._core.checks import check_array
from .._core.errors import GMVAEInputError
from ..deploy import CVModel
from .force import ROUTES, VERSION_PARAMETER, BiasForceBuilder
from .table_file import TableFile
from .grid import BiasGrid
from .native import native_builder

__all__ = ["ForceBinding", "BiasRouteWarning", "positions_nm"]


class BiasRouteWarning(UserWarning):
    """The bias force uses another route than the one requested (and why)."""


class ForceBinding:
    """The table file and the bias forces of one grid, in every walker's system.

    Parameters
    ----------
    cv : CVModel
    components : sequence of int
        Biased CV components, in the grid's axis order.
    grid : BiasGrid
        The bias whose :meth:`~gmvae_cv.metad.grid.BiasGrid.force_table` the forces read.
    route : {'auto', 'native', 'compiled', 'autograd'}
        See :class:`~gmvae_cv.metad.engine.WellTemperedMetadynamics`.
    dtype : {'float64', 'float32'}
    table_path : path, optional
        Default a private temporary file, removed with this object.

    Attributes
    ----------
    version : int
        Increases at every write of the table; contexts follow through :meth:`sync`.
    force_groups : dict
        ``id(system) -> force group`` of the bias force in each system given to :meth:`add_force`.
    """

    def __init__(self, cv: CVModel, components: Sequence[int], grid: BiasGrid, *, route: str = "auto",
                 dtype: str = "float64", table_path: Optional[str | os.PathLike] = None) -> None:
        if route not in ("auto", "native") + ROUTES:
            raise GMVAEInputError(f"'route' is {route!r}, expected one of auto, native, {', '.join(ROUTES)}")
        self.cv = cv
        self.components = tuple(int(c) for c in components)
        self.grid = grid
        self.route = route
        self.dtype = dtype
        self.builder: Optional[BiasForceBuilder] = None
        self.force_groups: dict[int, int] = {}
        self.version = 0
        if table_path is None:
            tmpdir = tempfile.mkdtemp(prefix="gmvae-cv-bias-")
            table_path = Path(tmpdir) / "bias_table.f64"
            self._cleanup = weakref.finalize(self, _remove_tree, tmpdir)
        self.table_path = Path(table_path)
        self._table = TableFile(self.table_path, grid.force_table_shape)
        self._table_revision = -1  # grid revision the file was last written for
        self.write()

    # ------------------------------------------------------------------ the table
    def write(self) -> None:
        """Write the grid's whole force table; :attr:`version` increases."""
        self._table.write(self.grid.force_table())
        self._table_revision = self.grid.revision
        self.version += 1

    def update(self, change: Callable[[], Sequence[Any]]) -> None:
        """Run ``change()``, which edits the grid and returns the node regions it changed (what
        :meth:`~gmvae_cv.metad.grid.BiasGrid.add_hill` returns), and write only those rows (the
        whole table if the grid changed in another way since the file was last written);
        :attr:`version` increases."""
        stale = self.grid.revision != self._table_revision
        self.grid.force_table()  # cached, so that add_hill updates it locally
        regions = change()
        table = self.grid.force_table()
        if stale:
            self._table.write(table)
        else:
            for region in regions:
                self._table.write_region(table, self.grid.shape, region)
        self._table_revision = self.grid.revision
        self.version += 1

    def refresh(self) -> None:
        """Recompute the whole table from the node values (as a restart does) and write it."""
        self.grid.touch()
        self.write()

    def sync(self, contexts: Sequence[Any]) -> None:
        """Make each context's bias force use the current table."""
        for ctx in contexts:
            if ctx.getParameter(VERSION_PARAMETER) != self.version:
                ctx.setParameter(VERSION_PARAMETER, float(self.version))

    # ------------------------------------------------------------------ the forces
    @property
    def use_box(self) -> bool:
        """Whether the forces pass the periodic box to the CV (known once :meth:`add_force` ran)."""
        return self.builder is not None and self.builder.use_box

    @property
    def info(self) -> dict:
        """How the force was built (route, dtype, compiled graph check), once :meth:`add_force` ran."""
        return dict(self.builder.info) if self.builder is not None else {}

    def add_force(self, system: Any, positions: Any, box: Any = None, *, topology: Any = None,
                  use_box: Optional[bool] = None, force_group: Optional[int] = None, check_inside=None):
        """Add the bias force to ``system``; see :meth:`WellTemperedMetadynamics.add_force
        <gmvae_cv.metad.engine.WellTemperedMetadynamics.add_force>` for the parameters.
        ``check_inside(s, where=...)`` is called with the CV at ``positions``."""
        self.cv.check_system(system.getNumParticles())
        pos = positions_nm(positions, "positions")
        if pos.shape != (self.cv.n_atoms, 3):
            raise GMVAEInputError(f"'positions' has shape {pos.shape}, expected ({self.cv.n_atoms}, 3) in nm")
        use_box, box_reason = self._decide_box(system, topology, use_box)
        bx = None
        if use_box:
            bx = positions_nm(box, "box") if box is not None else np.array(
                [v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()], dtype=np.float64)
        s0 = self.cv(pos, bx)
        if check_inside is not None:
            check_inside(s0, where="the starting configuration")
        self._ensure_builder(use_box, box_reason)
        force = self.builder.force(pos, bx)
        if force_group is None:
            used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
            free = sorted(set(range(32)) - used)
            if not free:
                raise GMVAEInputError("the system uses all 32 force groups; none is left for the bias force")
            force_group = free[-1]
        force.setForceGroup(int(force_group))
        system.addForce(force)
        self.force_groups[id(system)] = int(force_group)
        return force

    def _decide_box(self, system: Any, topology: Any, use_box: Optional[bool]) -> tuple[bool, str]:
        periodic_system = system.usesPeriodicBoundaryConditions()
        box_reason = "given"
        if use_box is None:
            if not periodic_system:
                use_box, box_reason = False, "system not periodic"
            elif topology is not None and _one_molecule(topology, self.cv.atom_indices):
                use_box, box_reason = False, "the CV's atoms are one molecule, which OpenMM keeps whole"
            else:
                use_box, box_reason = True, "periodic system, CV atoms not known to be one molecule"
        if use_box and not periodic_system:
            raise GMVAEInputError("'use_box' is true but the system has no periodic boundary conditions")
        return bool(use_box), box_reason

    def _ensure_builder(self, use_box: bool, box_reason: str) -> None:
        if self.builder is None:
            route, why_not = self.route, None
            if route in ("auto", "native"):
                self.builder, why_not = native_builder(self.cv, self.components, self.grid, self._table,
                                                       dtype=self.dtype, use_box=use_box)
                if self.builder is None:
                    if self.route == "native":  # asked for by name: say why not ('auto' records it in info)
                        route = "autograd" if use_box else "compiled"
                        warnings.warn(f"the native bias route does not apply ({why_not}): using route='{route}'",
                                      BiasRouteWarning, stacklevel=4)
                    else:  # 'auto': the compiled route (which a CV given the box turns into autograd, below)
                        route = "compiled"
                else:
                    self.builder.info["use_box_reason"] = box_reason
                    self.builder.info["route_requested"] = self.route
                    return
            if use_box and route == "compiled":
                warnings.warn(
                    "the CV gets the periodic box, and its minimum-image code branches on the box values, which the "
                    "compiled route cannot trace: using route='autograd' (pass a topology in which the CV atoms form one "
                    "molecule, or use_box=False, to keep the compiled route)", BiasRouteWarning, stacklevel=4)
                route = "autograd"
            self.builder = BiasForceBuilder(self.cv.module, self.components, self.grid, self.table_path,
                                            route=route, dtype=self.dtype, use_box=use_box)
            self.builder.info["use_box_reason"] = box_reason
            self.builder.info["route_requested"] = self.route
            if why_not:
                self.builder.info["native_route_not_used"] = why_not
        elif self.builder.use_box != use_box:
            raise GMVAEInputError("all walker systems must agree on periodic boundary conditions")

    # ------------------------------------------------------------------ the CV the forces see
    def cv_values(self, context: Any) -> np.ndarray:
        """All CV components of a context's current positions, shape ``(D,)``."""
        state = context.getState(getPositions=True)
        return self.cv_of_state(state, state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))

    def cv_of_state(self, state: Any, pos: np.ndarray) -> np.ndarray:
        """The CV at ``pos`` (nm, from ``state``), with the state's box where the force uses one."""
        if self.builder is not None and hasattr(self.builder, "cv_values"):
            return self.builder.cv_values(pos)  # the native route: the CV its force computes (float64)
        box = None
        if self.use_box:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
        return self.cv(pos, box)


def positions_nm(value: Any, name: str) -> np.ndarray:
    """Positions or box vectors in nm, from an array, a Quantity, or a list of Vec3 Quantities."""
    if hasattr(value, "value_in_unit"):
        value = value.value_in_unit(unit.nanometer)
    rows = [v.value_in_unit(unit.nanometer) if hasattr(v, "value_in_unit") else v for v in value]
    try:
        arr = np.array([[float(x) for x in r] for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        raise GMVAEInputError(f"'{name}' is not an array of 3-vectors in nm") from None
    return check_array(arr, name, ndim=2)


def _one_molecule(topology: Any, atoms: Optional[np.ndarray]) -> bool:
    """Whether ``atoms`` (all atoms if None) lie in one bonded molecule of an OpenMM topology."""
    if atoms is None or len(atoms) == 0:
        return False
    parent = list(range(topology.getNumAtoms()))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for bond in topology.bonds():
        a, b = find(bond[0].index), find(bond[1].index)
        if a != b:
            parent[a] = b
    return len({find(int(i)) for i in atoms}) == 1


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
