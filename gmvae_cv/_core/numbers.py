"""Numbers as PLUMED writes them (``3.1``, ``-pi``, ``2*pi``, ``pi/2``).

Here rather than in :mod:`gmvae_cv.analysis.plumed_files` so that the command line can parse
``--range=-pi:pi`` without importing the analysis stage (and torch with it).
"""

from __future__ import annotations

import math
import re

from .errors import GMVAEInputError

__all__ = ["parse_plumed_number"]

_PI_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)?(?:[eE][+-]?\d+)?)\s*\*?\s*pi(?:\s*/\s*(\d+\.?\d*))?$")


def parse_plumed_number(text: str, *, where: str = "value") -> float:
    """Parse a number as PLUMED writes it in ``#! SET`` lines: ``3.1``, ``-pi``, ``2*pi``, ``pi/2``.

    Parameters
    ----------
    text : str
        The token.
    where : str
        Used in the error message (e.g. ``"COLVAR: SET min_phi"``).

    Returns
    -------
    float

    Raises
    ------
    GMVAEInputError
        When the token is neither a number nor a multiple of pi.

    Examples
    --------
    >>> parse_plumed_number("-pi")
    -3.141592653589793
    """
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    m = _PI_RE.match(t)
    if m:
        coef = m.group(1)
        c = 1.0 if coef in ("", "+") else -1.0 if coef == "-" else float(coef)
        d = float(m.group(2)) if m.group(2) else 1.0
        return c * math.pi / d
    raise GMVAEInputError(f"{where} is {text!r}, expected a number (or a multiple of pi)")
