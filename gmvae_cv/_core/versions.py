"""What a result was made with: package versions and the machine, recorded in every run's JSON."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from .. import __version__

__all__ = ["versions", "machine_info"]

_DISTRIBUTIONS = {
    # key in the JSON -> distribution names to try (the first installed one wins)
    "gmvae_cv": ("gmvae-cv",),
    "numpy": ("numpy",),
    "torch": ("torch",),
    "openmm": ("openmm",),
    "openmmtorch": ("acellera-openmmtorch-cpu", "acellera-openmmtorch-cu13", "acellera-openmmtorch-cu12", "openmmtorch"),
    "lightning": ("lightning",),
    "mlcolvar": ("mlcolvar",),
    "mdtraj": ("mdtraj",),
    "deeptime": ("deeptime",),
}


_MODULES = {"numpy": "numpy", "torch": "torch", "openmm": "openmm", "lightning": "lightning",
            "mlcolvar": "mlcolvar", "mdtraj": "mdtraj", "deeptime": "deeptime"}


def _version(key: str, names: tuple[str, ...]) -> str | None:
    module = sys.modules.get(_MODULES.get(key, ""))
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return module.__version__  # an imported module knows its build (e.g. torch's +cu130)
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions(*packages: str) -> dict[str, str]:
    """Versions of gmvae-cv, Python, numpy and the named packages, read from the installed metadata.

    Nothing is imported, so this is cheap and never fails on a package that is missing (it is left
    out).

    Parameters
    ----------
    *packages : str
        Keys of the packages to add, e.g. ``"torch"``, ``"openmm"``, ``"openmmtorch"``.

    Returns
    -------
    dict
        ``{"gmvae_cv": ..., "python": ..., "numpy": ..., <package>: ..., "machine": ...}``.

    Examples
    --------
    >>> sorted(versions("torch"))[:3]
    ['gmvae_cv', 'machine', 'numpy']
    """
    out = {"gmvae_cv": __version__, "python": platform.python_version()}
    for key in ("numpy", *packages):
        v = _version(key, _DISTRIBUTIONS.get(key, (key,)))
        if v is not None:
            out[key] = v
    out["machine"] = platform.platform()
    return out


def machine_info() -> dict:
    """The CPU this ran on (model name, core count, instruction-set flags that matter for speed).

    For benchmark JSON files: absolute timings mean nothing without the machine.
    """
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "cpu_model" not in info:
            info["cpu_model"] = value.strip()
        elif key == "flags" and "cpu_flags" not in info:
            flags = set(value.split())
            info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx")))
    return info
