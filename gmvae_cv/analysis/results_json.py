"""JSON of result files: non-finite floats written as ``null``.

JSON has no NaN or infinity; the result objects (:class:`~gmvae_cv.analysis.fes.FreeEnergySurface`,
:class:`~gmvae_cv.analysis.msm.MarkovAnalysisResult`, :class:`~gmvae_cv.analysis.tram.TRAMResult`)
pass their dictionaries through :func:`nan_to_none` before writing.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["nan_to_none"]


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (in nested dicts, lists, tuples) replaced by ``None``."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj
