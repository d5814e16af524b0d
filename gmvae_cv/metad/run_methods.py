"""What each bias method adds to the generic restartable run of :mod:`gmvae_cv.metad.run`.

A method object builds the engine from the run settings, names what the run deposits (``HILLS`` or
``KERNELS``) and writes it, puts the bias into and takes it out of the checkpoint, and writes the
final grids (``bias_grid.dat``, ``fes.dat``). :func:`run_method` returns the one for a method name.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from .._core.errors import GMVAEInputError
from .._core.files import atomic_write_text
from ..deploy import CVModel
from .engine import WellTemperedMetadynamics
from .kernels_file import KernelsWriter, epsilon_of
from .opes import OPESBias
from .reporters import HillsWriter
from .rundir import TABLE
from .settings import RunSettings

__all__ = ["MetadRunMethod", "OPESRunMethod", "run_method"]


def run_method(name: str) -> "MetadRunMethod | OPESRunMethod":
    """The method object of ``name`` (``"metad"``; ``"opes"`` or ``"opes-explore"``, which differ in
    their settings only)."""
    return MetadRunMethod() if name == "metad" else OPESRunMethod()


class MetadRunMethod:
    """What a run of well-tempered metadynamics adds to the generic run of :mod:`gmvae_cv.metad.run`:
    the engine, HILLS, the checkpoint arrays and the final grids."""

    deposits = "HILLS"
    record_key = "metadynamics"

    def engine(self, cv: CVModel, settings: RunSettings, out: Path, shared: bool) -> WellTemperedMetadynamics:
        b, md, wk = settings.bias, settings.md, settings.walkers
        if b.sigma is None:
            raise GMVAEInputError("'sigma' is missing: give one hill width per biased component, in CV units")
        meta = WellTemperedMetadynamics(
            cv, temperature=md.temperature, height=b.height, sigma=b.sigma, bias_factor=b.bias_factor, pace=b.pace,
            components=b.components, grid_min=b.grid_min, grid_max=b.grid_max, grid_bin=b.grid_bin, kernel=b.kernel,
            walls=b.walls, wall_margin=b.wall_margin, wall_kappa=b.wall_kappa, route=md.route, dtype=md.dtype, table_path=out / TABLE, heating_limit=md.heating_limit,
            walkers_dir=wk.walkers_dir, walker_id=wk.walker_id, walkers_stride=wk.walkers_stride,
            walker_info={"run": str(out.resolve())} if shared else None,
        )
        meta._auto_exchange = False  # exchanges happen at checkpoints (the run does them)
        return meta

    @staticmethod
    def record(meta: WellTemperedMetadynamics) -> dict:
        return meta.params.to_dict()

    @staticmethod
    def writer(meta: WellTemperedMetadynamics, path: Path, names: list, periodic: list, resume_size: Optional[int]):
        p = meta.params
        return HillsWriter(path, names, p.bias_factor, p.kernel, periodic, resume_size=resume_size)

    @staticmethod
    def set_callback(meta: WellTemperedMetadynamics, fn: Any) -> None:
        meta.on_hill = fn

    @staticmethod
    def checkpoint(meta: WellTemperedMetadynamics) -> tuple[dict, dict]:
        """Arrays and JSON entries of the bias for the checkpoint."""
        state = meta.state_dict()
        info = {"n_hills": len(meta.hills), "bias_version": int(meta.version), "edge_events": meta.edge_events[-100:]}
        if "walkers" in state:
            info["shared_walkers"] = state["walkers"]
        return {"grid_values": state["grid_values"], "hills": state["hills"]}, info

    @staticmethod
    def restore(meta: WellTemperedMetadynamics, arrays: dict, info: dict, path: Path) -> None:
        state = {"grid_values": arrays["grid_values"], "hills": arrays["hills"], "version": info["bias_version"]}
        if meta.walkers is not None:
            if "shared_walkers" not in info:
                raise GMVAEInputError(f"{path}: the checkpoint has no record of the hills read from other walkers")
            state["walkers"] = info["shared_walkers"]
        meta.load_state_dict(state, source=str(path))
        meta.edge_events = list(info.get("edge_events", []))

    @staticmethod
    def count(meta: WellTemperedMetadynamics) -> int:
        return len(meta.hills)

    @staticmethod
    def write_outputs(out: Path, meta: WellTemperedMetadynamics, names: list) -> None:
        g = meta.params.bias_factor
        header = {"bias_factor": g, "temperature_K": meta.params.temperature, "n_hills": len(meta.hills),
                  "kernel": meta.params.kernel, "units": "kJ/mol"}
        atomic_write_text(out / "bias_grid.dat", meta.grid.to_plumed_text(names, "metad.bias", header=header))
        fes = meta.grid.copy()
        fes.values = meta.free_energy()
        atomic_write_text(out / "fes.dat", fes.to_plumed_text(names, "file.free", header=header))

    @staticmethod
    def shared_info(meta: WellTemperedMetadynamics) -> Optional[dict]:
        if meta.walkers is None:
            return None
        return {"dir": str(meta.walkers.dir), "walker_id": meta.walker_id, "stride_hills": meta.walkers_stride,
                "own_hills": len(meta._own_hills), "published": meta.walkers.published,
                "hills_read": {k: v[1] for k, v in meta.walkers.state()["read"].items()}}

    @staticmethod
    def edge_events(meta: WellTemperedMetadynamics) -> list:
        return meta.edge_events


class OPESRunMethod:
    """What an OPES run adds to the generic run of :mod:`gmvae_cv.metad.run`: the engine, KERNELS,
    the checkpoint arrays and the final grids."""

    deposits = "KERNELS"
    record_key = "opes"

    def engine(self, cv: CVModel, settings: Any, out: Any, shared: bool) -> OPESBias:
        b, md = settings.bias, settings.md
        if shared:
            raise GMVAEInputError(f"'walkers_dir' is given with method {b.method!r}: OPES walkers share one bias within one "
                                  "process here ('walkers' = N); walkers in separate processes need method 'metad'")
        if b.sigma is None:
            raise GMVAEInputError("'sigma' is missing: give one initial kernel width per biased component, in CV units")
        return OPESBias(cv, temperature=md.temperature, barrier=b.barrier, pace=b.pace, sigma=b.sigma, explore=b.explore,
                        components=b.components, grid_min=b.grid_min, grid_max=b.grid_max, grid_bin=b.grid_bin,
                        compression_threshold=b.compression_threshold, walls=b.walls, wall_margin=b.wall_margin,
                        wall_kappa=b.wall_kappa, route=md.route, dtype=md.dtype,
                        table_path=out / TABLE, heating_limit=md.heating_limit)

    @staticmethod
    def record(opes: OPESBias) -> dict:
        d = asdict(opes.params)
        d.update(method=opes.params.method, temperature=opes.temperature, bias_factor=opes.bias_factor,
                 epsilon=_epsilon(opes), units={"temperature": "K", "barrier": "kJ/mol", "sigma": "CV units",
                                               "pace": "steps", "grid": "CV units", "wall_margin": "CV units",
                                               "wall_kappa": "kJ/mol/CV-unit^2"})
        return d

    @staticmethod
    def writer(opes: OPESBias, path: Any, names: list, periodic: list, resume_size: Optional[int]):
        p = opes.params
        return KernelsWriter(path, names, periodic, bias_factor=opes.bias_factor, epsilon=_epsilon(opes),
                             compression_threshold=p.compression_threshold, explore=p.explore, cv_sha256=opes.cv.sha256,
                             resume_size=resume_size)

    @staticmethod
    def set_callback(opes: OPESBias, fn: Callable) -> None:
        opes.on_kernel = fn

    @staticmethod
    def checkpoint(opes: OPESBias) -> tuple[dict, dict]:
        return opes.state_dict(), {"n_hills": opes.n_deposited, "n_kernels": opes.n_kernels(),
                                   "bias_version": int(opes.version)}

    @staticmethod
    def restore(opes: OPESBias, arrays: dict, info: dict, path: Any) -> None:
        opes.load_state_dict(arrays, source=str(path))

    @staticmethod
    def count(opes: OPESBias) -> int:
        return opes.n_deposited

    @staticmethod
    def write_outputs(out: Any, opes: OPESBias, names: list) -> None:
        header = {"barrier": opes.params.barrier, "bias_factor": opes.bias_factor, "temperature_K": opes.temperature,
                  "n_kernels": opes.n_kernels(), "explore": str(opes.params.explore).lower(), "units": "kJ/mol"}
        bias = opes.grid.copy()
        bias.values = opes.bias_on_grid()
        atomic_write_text(out / "bias_grid.dat", bias.to_plumed_text(names, "opes.bias", header=header))
        if opes.n_kernels():
            fes = opes.grid.copy()
            fes.values = opes.free_energy()
            atomic_write_text(out / "fes.dat", fes.to_plumed_text(names, "file.free", header=header))

    @staticmethod
    def shared_info(opes: OPESBias) -> None:
        return None

    @staticmethod
    def edge_events(opes: OPESBias) -> list:
        return []


def _epsilon(opes: OPESBias) -> float:
    return epsilon_of(opes.params.barrier, opes.bias_factor, opes.kT, opes.params.explore)
