"""The ``gmvae-cv`` parser and entry point.

One module per group of verbs (:mod:`.simulate`, :mod:`.features`, :mod:`.train`, :mod:`.deploy`,
:mod:`.bias`, :mod:`.analysis`, :mod:`.demo`), each with ``add(subparsers)`` functions that declare
the options and command functions that turn them into one public API call and print the result.
Nothing heavy (torch, Lightning, mlcolvar, OpenMM, mdtraj, even numpy) is imported before a command
runs, so ``gmvae-cv --help`` and argument errors answer at once (tests/cli/test_cli.py checks it).

Every command runs inside :func:`gmvae_cv._core.quiet.quiet_output`: library noise (mdtraj's
``dcdplugin)`` lines, Lightning's banners) stays off the terminal unless ``-v``, and a command that
writes a run folder appends everything to ``gmvae-cv.log`` there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .._core.errors import GMVAEInputError, SimulationUnstableError
from .._core.quiet import LOG_NAME, quiet_output
from . import analysis, bias, demo, deploy, explore, features, rates, simulate, train

__all__ = ["build_parser", "main"]

# the verbs in the order --help lists them
_VERBS = (simulate.add, features.add, train.add_train, train.add_transform, analysis.add_explain, analysis.add_fes,
          analysis.add_msm, deploy.add_export, deploy.add_check, deploy.add_plumed_input, bias.add, explore.add_explore, rates.add_rates, demo.add)

_VERBOSE_HELP = f"show library output (mdtraj, Lightning, OpenMM) and INFO log records; a run folder's {LOG_NAME} has them anyway"


def _verbose_parent() -> argparse.ArgumentParser:
    """-v also after the verb; SUPPRESS keeps the verb's parser from resetting a -v given before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    return common


class _Verbs(argparse._SubParsersAction):
    """The verbs' parsers, each with -v/--verbose."""

    def add_parser(self, name, **kwargs):
        kwargs["parents"] = [*kwargs.get("parents", ()), _verbose_parent()]
        return super().add_parser(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``gmvae-cv`` argument parser (every verb and option; docs/cli.md is generated from it)."""
    parser = argparse.ArgumentParser(prog="gmvae-cv", description="GMVAE collective variables: learn, export, bias, check.")
    parser.register("action", "parsers", _Verbs)
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _VERBS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gmvae-cv`` console script; returns the exit status.

    0: done; 1: ``check`` found a failing check; 2: bad input (argument errors exit with 2 too,
    from argparse); 3: the simulation became unstable.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    log_dir = getattr(args, "log_dir", None)
    folder = log_dir(args) if log_dir is not None else None
    log_file = Path(folder) / LOG_NAME if folder else None
    with quiet_output(verbose=args.verbose, log_file=log_file, title="gmvae-cv " + " ".join(argv)):
        try:
            return int(args.func(args) or 0)
        except GMVAEInputError as exc:
            print(f"gmvae-cv {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except SimulationUnstableError as exc:
            print(f"gmvae-cv {args.command}: the simulation became unstable: {exc}", file=sys.stderr)
            return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
