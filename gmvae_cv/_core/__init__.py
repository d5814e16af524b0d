"""Shared plumbing every stage uses: errors, input checks, atomic file writes, figures.

Nothing here knows about MD, models or biasing; every other subpackage may import from here.
"""
