"""Thermal energy: the Boltzmann constant and kT from a temperature or given directly.

Every analysis estimator takes exactly one of ``temperature`` (K, energies in kJ/mol) and ``kT``
(energy units); :func:`resolve_kT` is that rule, in one place.
"""

from __future__ import annotations

import math
from typing import Optional

from .._core.checks import check_positive
from .._core.errors import GMVAEInputError

__all__ = ["KB_KJ_MOL_K", "resolve_kT"]

KB_KJ_MOL_K = 0.0083144626
"""Boltzmann constant in kJ/mol/K."""


def resolve_kT(temperature: Optional[float] = None, kT: Optional[float] = None, *, source: str = "") -> tuple[float, Optional[float]]:
    """Thermal energy from exactly one of ``temperature`` (K, energies in kJ/mol) or ``kT``.

    Returns
    -------
    kT : float
        Energy units (kJ/mol when from a temperature).
    temperature : float or None
        K, if given.

    Raises
    ------
    GMVAEInputError
        If neither or both are given: there is no default temperature.
    """
    where = f"{source}: " if source else ""
    if temperature is None and kT is None:
        raise GMVAEInputError(
            f"{where}no temperature: give the temperature (K) or kT (energy units) of the run; there is no default"
        )
    if temperature is not None and kT is not None:
        t_kt = KB_KJ_MOL_K * float(temperature)
        if not math.isclose(t_kt, float(kT), rel_tol=1e-6):
            raise GMVAEInputError(f"{where}temperature {temperature} K (kT {t_kt:.6g} kJ/mol) and kT {kT} disagree; give one")
    if temperature is not None:
        t = check_positive(temperature, "temperature")
        return KB_KJ_MOL_K * t, t
    return check_positive(kT, "kT"), None
