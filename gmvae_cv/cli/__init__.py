"""The ``gmvae-cv`` command line: one module per group of verbs; each command parses its arguments,
calls one public API function and prints the result. Nothing heavy is imported before a command runs,
so ``gmvae-cv --help`` answers at once."""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
