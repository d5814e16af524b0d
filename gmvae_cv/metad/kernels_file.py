"""The ``KERNELS`` file of an OPES run, in PLUMED's format.

``#! FIELDS time <cv>... sigma_<cv>... height logweight``, one row per deposited kernel (before
compression, as PLUMED's ``OPES_METAD FILE=``), with ``#! SET action OPES_METAD_kernels`` (or
``OPES_METAD_EXPLORE_kernels``), ``biasfactor``, ``epsilon``, ``compression_threshold``,
``min_<cv>``/``max_<cv>`` for periodic CVs, and ``cv_sha256``, the CV file the kernels belong to.
``height`` is :math:`e^{\\log w}\\prod_i \\sigma_{0,i}/\\sigma_i` (PLUMED's normalisation), time ps.

A run continued from a checkpoint reopens its ``KERNELS`` cut back to the checkpointed size, after
checking that the file's header is the one this run writes: a ``KERNELS`` file of another CV (other
fields, or another ``cv_sha256``) is refused, naming the field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from .._core.errors import GMVAEInputError
from .reporters import PlumedTableWriter, pi_text

__all__ = ["KernelsWriter", "read_kernels_header"]


def read_kernels_header(path: str | os.PathLike) -> tuple[list[str], dict]:
    """``(fields, sets)`` of a PLUMED ``KERNELS`` file (the ``#! FIELDS`` and ``#! SET`` lines at its top)."""
    p = Path(path)
    fields: list[str] = []
    sets: dict = {}
    try:
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                if not line.startswith("#!"):
                    break
                words = line.split()
                if len(words) >= 2 and words[1] == "FIELDS":
                    fields = words[2:]
                elif len(words) >= 4 and words[1] == "SET":
                    sets[words[2]] = " ".join(words[3:])
    except (OSError, UnicodeDecodeError) as exc:
        raise GMVAEInputError(f"{p}: cannot read as a KERNELS file ({exc})") from None
    if not fields:
        raise GMVAEInputError(f"{p}: no '#! FIELDS' line; not a PLUMED KERNELS file")
    return fields, sets


class KernelsWriter:
    """Writes one walker's deposited OPES kernels as PLUMED ``KERNELS``.

    Parameters
    ----------
    path : path
    names : sequence of str
        Names of the biased CV components (``cv.0`` ...).
    periodic : sequence of (min, max) or None
    bias_factor, epsilon : float
        OPES's :math:`\\gamma` and :math:`\\epsilon`.
    compression_threshold : float
    explore : bool
    cv_sha256 : str
    resume_size : int, optional
        Reopen the file cut back to this size (its header is checked first).
    """

    def __init__(self, path: str | os.PathLike, names: Sequence[str], periodic: Sequence[Optional[tuple]], *,
                 bias_factor: float, epsilon: float, compression_threshold: float, explore: bool, cv_sha256: str,
                 resume_size: Optional[int] = None) -> None:
        self.names = list(names)
        fields = ["time", *self.names, *[f"sigma_{n}" for n in self.names], "height", "logweight"]
        sets = {"action": "OPES_METAD_EXPLORE_kernels" if explore else "OPES_METAD_kernels",
                "biasfactor": repr(float(bias_factor)), "epsilon": repr(float(epsilon)),
                "kernel_cutoff": "inf", "compression_threshold": repr(float(compression_threshold))}
        for n, p in zip(self.names, periodic):
            if p is not None:
                sets[f"min_{n}"] = pi_text(p[0])
                sets[f"max_{n}"] = pi_text(p[1])
        sets["cv_sha256"] = cv_sha256
        if resume_size is not None:
            _check_header(Path(path), fields, sets)
        self.table = PlumedTableWriter(path, fields, sets, fmt="%.17g", resume_size=resume_size)

    def __call__(self, kernel: Any) -> None:
        self.table.write([kernel.time, *kernel.center, *kernel.sigma, kernel.height, kernel.logweight])

    def commit(self) -> int:
        return self.table.commit()

    def close(self) -> None:
        self.table.close()


def _check_header(path: Path, fields: list, sets: dict) -> None:
    """Refuse a KERNELS file whose header is not the one this run writes (another CV, another bias)."""
    have_fields, have_sets = read_kernels_header(path)
    if have_fields != fields:
        raise GMVAEInputError(f"{path}: '#! FIELDS' is '{' '.join(have_fields)}', expected '{' '.join(fields)}' "
                              "(a KERNELS file of another CV); cannot continue the run with it")
    for key in ("cv_sha256", "action", "biasfactor", "epsilon", *[k for k in sets if k.startswith(("min_", "max_"))]):
        if have_sets.get(key) != sets[key]:
            what = "another CV file" if key == "cv_sha256" else "another OPES bias"
            raise GMVAEInputError(f"{path}: '#! SET {key}' is {have_sets.get(key)!r}, expected {sets[key]!r} "
                                  f"(a KERNELS file of {what}); cannot continue the run with it")


def epsilon_of(barrier: float, bias_factor: float, kT: float, explore: bool) -> float:
    """OPES's :math:`\\epsilon = e^{-\\Delta E/\\text{prefactor}}` (prefactor :math:`(1-1/\\gamma)k_BT`,
    times :math:`\\gamma` when exploring), as ``openmm-opes`` and PLUMED define it."""
    prefactor = (1.0 - 1.0 / bias_factor) * kT * (bias_factor if explore else 1.0)
    return math.exp(-barrier / prefactor)
