r"""The ``"native"`` bias route: the CV and the tabulated bias as one compiled function behind an
``openmm.PythonForce``, with no TorchScript interpreter in the loop.

Why. The TorchForce routes (:mod:`gmvae_cv.metad.force`) run a graph of 90-160 ATen operations per
step; for a batch of one, each costs its dispatch (about 1-3 us), not its arithmetic, so a CV of
~2 000 multiply-adds costs ~100-500 us per step. Here the same function, read out of the exported
TorchScript module (features, network weights) and the grid geometry, is evaluated by one loop
nest compiled by numba (LLVM) to machine code: energy and forces (hand-written reverse mode) in a
few microseconds, plus the ``PythonForce`` call (a few microseconds).

What is supported (:func:`recipe_from_module`): CV modules built by this package, i.e.
:class:`~gmvae_cv.deploy.torchscript.PositionsCV` (exported GMVAE: features -> ``EncoderMean``),
the random GMVAE stand-in of :func:`~gmvae_cv.deploy.loaders.random_gmvae_cv`, and the features
themselves (:func:`~gmvae_cv.deploy.loaders.feature_cv`); features of every kind (distance, angle,
torsion raw/sin/cos, contact) without the periodic box. Anything else raises :class:`NotNative`
with the reason, and the engine falls back to a TorchForce route with a warning.

Arithmetic is float64 throughout, including the network (the exported TorchScript network computes
in float32, so the CV differs from it by float32 round-off, ~1e-6 relative). The builder checks
energy and forces against the TorchScript module run in float64 (its features module, its network
with float64 weights, :class:`~gmvae_cv.metad.grid.GridBias`, autograd) on probe configurations and
refuses (``GMVAEInputError``, with the largest difference) above 1e-9 relative.

The bias table is read, at every call, from the same float64 array the engine writes at a
deposition (the memory map of :class:`~gmvae_cv.metad.table_file.TableFile`): a new hill costs nothing
here beyond the engine's row update.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import openmm
import copy

from .._core.errors import GMVAEInputError
from .grid_module import GridBias, WallBias, gather_offsets
from .native_recipe import NativeRecipe, NotNative, _numba, numba_available, recipe_from_module
from .splines import HERMITE_BASIS
from .force import VERSION_PARAMETER

__all__ = ["NotNative", "NativeRecipe", "recipe_from_module", "NativeBias", "NativeForceBuilder", "native_builder",
           "numba_available", "PROBE_TOLERANCE"]

PROBE_TOLERANCE = 1e-9
"""Largest accepted difference (relative to max(1, |F|max)) between the native force and the
TorchScript module run in float64, on probe configurations."""

# ------------------------------------------------------------------------------------ the kernel
_KERNEL = None


def _kernel_module():
    """The numba kernel module, imported (with numba and its cached machine code) on first use of the route."""
    from . import _native_kernel

    return _native_kernel


def _kernel():
    """Compile (once per process; numba caches on disk) and return the energy+forces kernel."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _kernel_module().packed
    return _KERNEL


def _pack(floats: dict, ints: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat float64 and int64 arrays plus a header ``(offset, n0, n1)`` per array (floats, then ints)."""
    kernel = _kernel_module()
    fp, hdr_f = _flatten(floats, kernel.FLOATS, np.float64)
    ip, hdr_i = _flatten(ints, kernel.INTS, np.int64)
    hdr = hdr_f + hdr_i
    return fp, ip, np.asarray(hdr, dtype=np.int64)


def _flatten(arrays: dict, names: Sequence[str], dtype: Any) -> tuple[np.ndarray, list[int]]:
    """``arrays[name]`` for each name, as 1D or 2D, concatenated into one contiguous ``dtype`` array, and
    the header entries ``(offset, n0, n1)`` of each (``n1 = 1`` for a 1D array)."""
    hdr, parts, off = [], [], 0
    for name in names:
        a = np.ascontiguousarray(arrays[name], dtype=dtype)
        a2 = a if a.ndim == 2 else a.reshape(-1)
        hdr += [off, a2.shape[0], a2.shape[1] if a2.ndim == 2 else 1]
        parts.append(a2.ravel())
        off += a2.size
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return np.ascontiguousarray(flat), hdr


def _wall_arrays(walls: Any, d: int) -> dict:
    """Per biased axis: the walls' bounds and stiffness (kappa 0 and far bounds on axes without walls)."""
    lo, hi, kappa = np.full(d, -1e300), np.full(d, 1e300), np.zeros(d)
    if walls is not None:
        for a, l, u, k in zip(walls.axes, walls.lower, walls.upper, walls.kappa):
            lo[a], hi[a], kappa[a] = l, u, k
    return {"wall_lo": lo, "wall_hi": hi, "wall_kappa": kappa}


# ------------------------------------------------------------------------------------ the force
class NativeBias:
    """Energy and forces of the bias :math:`V(s(x))` by the native kernel (see the module docstring).

    Parameters
    ----------
    recipe : NativeRecipe
    components : sequence of int
        Biased CV components, in the grid's axis order.
    grid : BiasGrid
        Geometry of the bias.
    table : ndarray, shape ``grid.force_table_shape``
        The float64 array the engine writes the force table into (read at every call, never copied).

    Attributes
    ----------
    info : dict
        Route, the probe check, the network's size (for ``run.json``).
    """

    def __init__(self, recipe: NativeRecipe, components: Sequence[int], grid: Any, table: np.ndarray) -> None:

        if not numba_available():
            raise NotNative("numba is not installed (pip install numba, or the 'fast' extra)")
        self.recipe = recipe
        self.components = np.asarray([int(c) for c in components], dtype=np.int64)
        self.grid = grid
        if table.dtype != np.float64 or tuple(table.shape) != tuple(grid.force_table_shape):
            raise GMVAEInputError(f"the bias table has shape {table.shape} and dtype {table.dtype}, expected "
                                  f"{grid.force_table_shape} float64")
        self.table = table
        spacing = (grid.upper - grid.lower) / np.asarray(grid.bins, dtype=np.float64)
        strides, offsets = gather_offsets(grid.shape)
        r = recipe
        net = r.has_net
        floats = {
            "cr0": r.contact_r0, "cn": r.contact_n, "cm": r.contact_m,
            "w0": r.w0 if net else np.zeros((1, 1)), "b0": r.b0 if net else np.zeros(1),
            "zw": r.chain_z.w, "zb": r.chain_z.b, "yw": r.chain_y.w, "yb": r.chain_y.b,
            "wl": r.wl if net else np.zeros((1, 1)), "bl": r.bl if net else np.zeros(1),
            "mult": r.mult if net else np.ones(1), "hw": r.hw if net else np.zeros((1, 1)), "hb": r.hb if net else np.zeros(1),
            "offset": -grid.lower / spacing, "inv_spacing": 1.0 / spacing, "n_bins": np.asarray(grid.bins, dtype=np.float64),
            "strides": strides, "hermite": HERMITE_BASIS, **_wall_arrays(grid.walls, len(self.components)),
        }
        ints = {
            "dist": r.dist, "angle": r.angle, "torsion": r.torsion, "tmode": r.torsion_mode, "contact": r.contact,
            "dest": r.dest, "zdims": r.chain_z.dims.reshape(-1, 2), "zrelu": r.chain_z.relu,
            "ydims": r.chain_y.dims.reshape(-1, 2), "yrelu": r.chain_y.relu,
            "group": r.group if net else np.zeros(1, dtype=np.int64), "periodic": np.asarray(grid.periodic, dtype=np.int64),
            "offsets": offsets.reshape(-1), "components": self.components, "flags": np.array([int(net)]),
        }
        if net:  # the first layer's distinct rows, and which of them each unit reads
            uniq, rowmap = np.unique(r.w0, axis=0, return_inverse=True)
            floats["w0"], ints["rowmap"] = uniq, rowmap.reshape(-1)
        else:
            ints["rowmap"] = np.zeros(1, dtype=np.int64)
        self._fp, self._ip, self._hdr = _pack(floats, ints)
        self._kernel = _kernel()
        self.forces = np.zeros((r.n_atoms, 3))
        self.cv = np.zeros(r.n_cvs)
        self._alive: list = []  # every force's callable (see force())
        self._pos = np.zeros((r.n_atoms, 3))
        self.info: dict = {"route": "native", "dtype": "float64", "use_box": False, "walls": grid.walls is not None,
                           "kernel": "numba " + _numba_version(),
                           "network_multiply_adds": recipe.multiply_adds(), "cv_module": recipe.source}

    def energy_forces(self, positions: np.ndarray, table: Optional[np.ndarray] = None) -> tuple[float, np.ndarray]:
        """Bias energy (kJ/mol) and forces (kJ/mol/nm, ``(n_atoms, 3)``, a buffer reused by the next
        call) at ``positions`` (nm); ``table`` defaults to the engine's."""
        e = self._kernel(positions, self.table if table is None else table, self._fp, self._ip, self._hdr, self.forces, self.cv)
        return float(e), self.forces

    def cv_values(self, positions: np.ndarray) -> np.ndarray:
        """The CV (all components, float64) at ``positions`` as the kernel computes it."""
        self.energy_forces(np.ascontiguousarray(positions, dtype=np.float64))
        return self.cv.copy()

    def force(self, version_parameter: str):
        """A new ``openmm.PythonForce`` (with the global parameter ``version_parameter``, which the
        engine's ``sync`` sets; the kernel reads the table array directly)."""
        n = self.recipe.n_atoms  # buffers of this force's own (walkers' forces never share them)
        pos, forces, cv = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(self.recipe.n_cvs)
        kernel, table, fp, ip, hdr = self._kernel, self.table, self._fp, self._ip, self._hdr
        get = openmm.State.Positions

        def compute(state):
            state._getVectorAsNumpy(get, pos)
            return kernel(pos, table, fp, ip, hdr, forces, cv), forces

        _init_openmm_numpy_api()
        f = openmm.PythonForce(compute, {version_parameter: 0.0})
        f.setUsesPeriodicBoundaryConditions(False)
        f.setName("gmvae-cv metadynamics bias (native)")
        # a reference of our own to every callable, as a precaution: whether OpenMM's PythonForce holds one
        # is not documented
        self._alive.append((compute, f))
        return f

    # ---------------------------------------------------------------- the check
    def check(self, cv_module: Any, positions: np.ndarray, *, n_probes: int = 4, seed: int = 0) -> dict:
        """Compare energy, forces and CV with the TorchScript module run in float64 (autograd) on
        ``positions`` and ``n_probes`` perturbations of it, with a probe table of hills near the CV.

        Raises
        ------
        GMVAEInputError
            If the largest difference, relative to ``max(1, |F_ref|max)``, exceeds :data:`PROBE_TOLERANCE`.
        """

        ref_cv = _float64_reference(cv_module, self.recipe)
        pos0 = np.ascontiguousarray(positions, dtype=np.float64)
        s0 = ref_cv(torch.as_tensor(pos0)).detach().numpy()
        g = self.grid.copy()
        comps = list(self.components)
        rng = np.random.default_rng(seed)
        width = np.maximum((g.upper - g.lower) / 8.0, 4 * g.spacing)
        for _ in range(4):
            g.add_hill(s0[comps] + rng.normal(0, 0.5, size=len(comps)) * width, width, 1.0, "gaussian")
        table = np.ascontiguousarray(g.force_table())
        gb = GridBias(g.lower, g.upper, g.bins, g.periodic).double()
        wb = WallBias.from_walls(self.grid.walls).double() if self.grid.walls is not None else None
        ttab = torch.as_tensor(table)
        worst = worst_cv = worst_e = 0.0
        for k in range(n_probes + 1):
            p = pos0 if k == 0 else pos0 + 0.005 * rng.standard_normal(pos0.shape)
            q = torch.as_tensor(p).clone().requires_grad_(True)
            s = ref_cv(q)
            e_ref = gb(s[comps], ttab) if wb is None else gb(s[comps], ttab) + wb(s[comps])
            (grad,) = torch.autograd.grad(e_ref, q)
            e, f = self.energy_forces(np.ascontiguousarray(p), table)
            scale = max(1.0, float(grad.abs().max()))
            err_f = float(np.abs(f + grad.numpy()).max()) / scale
            err_e = abs(e - float(e_ref.detach())) / scale
            err_cv = float(np.abs(self.cv - s.detach().numpy()).max()) / max(1.0, float(s.detach().abs().max()))
            worst = max(worst, err_f, err_e, err_cv)
            worst_cv, worst_e = max(worst_cv, err_cv), max(worst_e, err_e)
        out = {"native_vs_torchscript_float64_max_rel_error": worst, "cv_max_rel_error": worst_cv,
               "energy_max_rel_error": worst_e, "probes": n_probes + 1, "tolerance": PROBE_TOLERANCE}
        self.info.update(out)
        if not worst <= PROBE_TOLERANCE:
            raise GMVAEInputError(
                f"the native bias force differs from the TorchScript CV (run in float64) by {worst:.3g} (relative) on "
                f"probe configurations, above {PROBE_TOLERANCE:g}: the CV module computes something the native route does "
                "not read (use route='compiled')")
        return out


class NativeForceBuilder:
    """What the engine holds for the native route (the counterpart of
    :class:`~gmvae_cv.metad.force.BiasForceBuilder`): builds one ``PythonForce`` per walker system,
    checking the kernel against the TorchScript module on the first."""

    use_box = False

    def __init__(self, cv_module: Any, recipe: NativeRecipe, components: Sequence[int], grid: Any, table: np.ndarray) -> None:
        self.cv_module = cv_module
        self.bias = NativeBias(recipe, components, grid, table)
        self.info = self.bias.info
        self._checked = False

    def force(self, positions: np.ndarray, box: Optional[np.ndarray] = None, *, n_probes: int = 4, seed: int = 0):
        """A new ``openmm.PythonForce``; the first call checks the kernel at ``positions`` (nm)."""
        if not self._checked:
            self.bias.check(self.cv_module, positions, n_probes=n_probes, seed=seed)
            self._checked = True
        return self.bias.force(VERSION_PARAMETER)

    def cv_values(self, positions: np.ndarray) -> np.ndarray:
        """The CV at ``positions`` (nm), float64, as the force computes it."""
        return self.bias.cv_values(positions)


def native_builder(cv: Any, components: Sequence[int], grid: Any, table_file: Any, *, dtype: str,
                   use_box: bool) -> tuple[Optional[NativeForceBuilder], str]:
    """The native route's builder for a CV file, or ``(None, why not)``.

    Parameters
    ----------
    cv : CVModel
    components : sequence of int
    grid : BiasGrid
    table_file : TableFile
        The engine's table file; the kernel reads its float64 memory map.
    dtype : str
        The engine's ``dtype`` (the native route computes in float64 only).
    use_box : bool
        Whether the CV needs the periodic box (not supported here).
    """
    if dtype != "float64":
        return None, f"dtype is {dtype!r}, the native route computes in float64"
    if use_box:
        return None, "the CV gets the periodic box, and the native route has no minimum image"
    if not numba_available():
        return None, "numba is not installed (pip install numba, or gmvae-cv's 'fast' extra)"
    try:
        recipe = recipe_from_module(cv.module, cv.n_cvs)
    except NotNative as exc:
        return None, str(exc)
    table = table_file._map.view(np.ndarray)
    return NativeForceBuilder(cv.module, recipe, components, grid, table), ""


def _init_openmm_numpy_api() -> None:
    """Make OpenMM's Python wrapper load the NumPy C API, which its ``PythonForce`` needs.

    OpenMM's wrapper (seen with 8.5.2) sets its pointer to the NumPy C API lazily, the first time a
    Python sequence is converted to a C++ vector of doubles or of ``Vec3`` (``setPositions``,
    ``addParticle(i, [..])``, ...), whereas ``PythonForce``'s call-back (``ComputationWrapper::compute``)
    uses it to check the returned forces without loading it. A process whose first force evaluation
    comes before any such conversion (a run continued from its checkpoint: ``loadCheckpoint`` sets the
    positions, and nothing else passes a sequence) dereferences a null pointer there. Converting a
    one-element list once loads the API (a no-op once loaded).
    """
    openmm.CustomExternalForce("0").addParticle(0, [0.0])


def _numba_version() -> str:
    numba = _numba()
    return "missing" if numba is None else str(numba.__version__)


def _float64_reference(module: Any, recipe: NativeRecipe):
    """``positions (n, 3) float64 -> CV (D,)``: the TorchScript module's own graph in float64."""
    if recipe.source == "PositionsCV":
        feats = module.features
        enc = copy.deepcopy(module.encoder).double()

        def ref(p):
            return enc(feats(p, None).view(1, -1)).view(-1)

        return ref

    def ref(p):
        return module(p, None).to(torch.float64)

    return ref
