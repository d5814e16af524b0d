"""Lazy public names for a package's ``__init__`` (PEP 562): a name is imported on first use, so
that importing the package (and ``gmvae-cv --help``) pulls in no torch, Lightning or OpenMM."""

from __future__ import annotations

import importlib
from typing import Callable, Mapping, MutableMapping

__all__ = ["lazy_names"]


def lazy_names(package: str, names: Mapping[str, str], namespace: MutableMapping) -> tuple[Callable, Callable]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping
        Public name -> module holding it: relative to ``package`` (``"metad"``), or absolute when it
        starts with ``"gmvae_cv."``.
    namespace : mapping
        The package's ``globals()``; a name once imported is cached there.
    """

    def __getattr__(name: str):
        try:
            where = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = where if where.startswith("gmvae_cv.") else f"{package}.{where}"
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
