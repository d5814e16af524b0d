"""Stage 7, workflows: the whole chain as stages in folders with done-markers (:func:`run_demo`).

Also :mod:`.explore` (train, bias, retrain until the stop rule) and :mod:`.rates` (rates by
infrequent metadynamics on Dask); :mod:`.markers` holds the done-marker convention they share.
"""

from .demo import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
