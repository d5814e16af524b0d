"""Systems with known answers: toy potentials and (from the features issue) alanine dipeptide."""

from .toy import SYSTEMS, FourWell, MullerBrown, ToySystem, overdamped_langevin

__all__ = ["FourWell", "MullerBrown", "ToySystem", "overdamped_langevin", "SYSTEMS"]
