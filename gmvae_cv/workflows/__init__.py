"""Stage 7, workflows: the whole chain as stages in folders with done-markers (:func:`run_demo`)."""

from .demo import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
