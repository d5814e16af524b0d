"""Which OpenMM platform and which OpenMM-Torch build a run can use, with messages that name the
package to install or remove.

OpenMM's CUDA platform comes from ``openmm-cuda-13`` (or ``-cuda-12``); a ``TorchForce`` on it needs
the CUDA build of OpenMM-Torch, ``acellera-openmmtorch-cu13`` (or ``-cu12``), which installs the same
``openmmtorch`` module as the CPU build ``acellera-openmmtorch-cpu`` that the default install uses:
only one of them may be installed.
"""

from __future__ import annotations

from importlib import metadata
from typing import Iterable, Optional

from .errors import GMVAEInputError

__all__ = ["OPENMMTORCH_BUILDS", "openmmtorch_builds", "check_openmmtorch_builds", "check_platform_request",
           "GPU_INSTALL_HINT"]

OPENMMTORCH_BUILDS = {
    "acellera-openmmtorch-cpu": "cpu",
    "acellera-openmmtorch-cu13": "cuda",
    "acellera-openmmtorch-cu12": "cuda",
}
"""Distributions that install the ``openmmtorch`` module, and the device they were built for."""

GPU_INSTALL_HINT = ("pip uninstall -y acellera-openmmtorch-cpu && "
                    "pip install 'openmm-cuda-13==8.5.*' 'acellera-openmmtorch-cu13==1.10.*'  "
                    "(or: bash scripts/install_cuda.sh)")


def openmmtorch_builds() -> dict[str, str]:
    """Installed OpenMM-Torch distributions: ``{distribution: "cpu" | "cuda"}``."""
    out = {}
    for name, device in OPENMMTORCH_BUILDS.items():
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        out[name] = device
    return out


def check_openmmtorch_builds(builds: Optional[dict[str, str]] = None) -> Optional[str]:
    """The installed OpenMM-Torch build's device (``"cpu"``, ``"cuda"``, or None when none is installed).

    Raises
    ------
    GMVAEInputError
        When several builds are installed (they overwrite each other's ``openmmtorch`` module and
        plugin libraries), naming the ones to remove.
    """
    builds = openmmtorch_builds() if builds is None else builds
    if len(builds) > 1:
        names = sorted(builds)
        keep = next((n for n in names if builds[n] == "cuda"), names[0])
        remove = [n for n in names if n != keep]
        raise GMVAEInputError(
            f"several OpenMM-Torch builds are installed ({', '.join(names)}); they install the same openmmtorch "
            f"module, so which one loads is undefined. Remove all but one: pip uninstall -y {' '.join(remove)} "
            f"(then pip install --force-reinstall {keep})"
        )
    return next(iter(builds.values()), None)


def check_platform_request(platform: str, available: Iterable[str], *, uses_torch: bool = True,
                           builds: Optional[dict[str, str]] = None) -> str:
    """Check that ``platform`` (``"CUDA"``, ``"CPU"``, ``"Reference"``, ``"OpenCL"``) can run the bias.

    Parameters
    ----------
    platform : str
        The platform asked for.
    available : iterable of str
        OpenMM's platforms in this environment.
    uses_torch : bool
        The run has a ``TorchForce`` (the fused and autograd routes): a GPU platform then needs the
        CUDA build of OpenMM-Torch.

    Returns
    -------
    str
        ``platform``.

    Raises
    ------
    GMVAEInputError
        The platform is missing (naming the package that brings it), or the OpenMM-Torch build
        cannot run on it.
    """
    available = sorted(set(available))
    if platform not in available:
        if platform in ("CUDA", "OpenCL"):
            raise GMVAEInputError(
                f"'platform' is {platform!r}, but OpenMM here has only {available}: no GPU, or OpenMM's {platform} "
                f"platform is not installed. On a machine with an NVIDIA GPU: {GPU_INSTALL_HINT}"
            )
        raise GMVAEInputError(f"'platform' is {platform!r}, expected one of {available}")
    if uses_torch and platform in ("CUDA", "OpenCL"):
        device = check_openmmtorch_builds(builds)
        if device != "cuda":
            raise GMVAEInputError(
                f"'platform' is {platform!r}, but the OpenMM-Torch installed here is "
                f"{'the CPU build (acellera-openmmtorch-cpu)' if device == 'cpu' else 'missing'}: a TorchForce cannot "
                f"run on {platform} with it. Install the CUDA build: {GPU_INSTALL_HINT}"
            )
    return platform
