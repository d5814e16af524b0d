"""The ``gmvae-cv`` command line: parses arguments and calls the public API, nothing more.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_cmd_<name>(args)``; ``main`` dispatches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ._validation import GMVAEInputError

__all__ = ["main"]

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(add: Callable[[argparse._SubParsersAction], None]) -> Callable:
    _COMMANDS.append(add)
    return add


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# ---------------------------------------------------------------- simulate (toy systems)
@_command
def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a built-in system and write its trajectory")
    p.add_argument("system", choices=["four-well", "muller-brown"], help="the system")
    p.add_argument("--steps", type=int, required=True, help="integration steps per walker")
    p.add_argument("--out", required=True, help="output .npy file (frames x dims); with --walkers > 1, one file per walker: STEM_<i>.npy")
    p.add_argument("--stride", type=int, default=100, help="save every STRIDE steps (default 100)")
    p.add_argument("--walkers", type=int, default=1, help="independent walkers (default 1)")
    p.add_argument("--kT", type=float, default=None, help="thermal energy in the potential's units (default: the system's)")
    p.add_argument("--dt", type=float, default=None, help="time step in reduced units (default: the system's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args) -> int:
    from tqdm import tqdm

    from .systems import SYSTEMS

    kw = {k: v for k, v in (("kT", args.kT), ("dt", args.dt)) if v is not None}
    system = SYSTEMS[args.system](**kw)
    traj = system.simulate(args.steps, n_walkers=args.walkers, stride=args.stride, seed=args.seed, progress=tqdm)
    out = Path(args.out)
    if args.walkers == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{i}{out.suffix or '.npy'}") for i in range(args.walkers)]
    for p, t in zip(paths, traj):
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, t)
        print(f"wrote {p}: {t.shape[0]} frames x {t.shape[1]} dims")
    return 0


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmvae-cv", description="GMVAE collective variables: learn, export, bias, check.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gmvae-cv`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GMVAEInputError as exc:
        print(f"gmvae-cv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
