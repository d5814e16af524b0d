"""Check a GROMACS + PLUMED run folder before ``gmx mdrun -plumed`` starts, and run mdrun.

    python -m gmvae_cv.deploy.gromacs_run RUN_DIR [--plumed plumed.dat] [--gmx gmx]

:func:`check_gromacs_run` catches, before GROMACS starts (and before it has written anything),
what otherwise fails deep inside ``mdrun`` or, worse, at its end:

* ``PLUMED_KERNEL`` unset, not a file, or a kernel without libtorch while the input uses
  ``PYTORCH_MODEL`` (a runtime-patched GROMACS would load the kernel it was patched with and
  stop with "unknown action PYTORCH_MODEL" after setting up the whole system);
* a ``FILE=`` of a ``PYTORCH_MODEL`` line missing from the run folder (PLUMED resolves it
  relative to the folder mdrun runs in);
* a GROMACS without PLUMED (``gmx mdrun`` has no ``-plumed`` option).

:func:`run_mdrun` runs ``gmx mdrun -plumed`` after that check and fails (:class:`GromacsRunError`)
on a non-zero exit status and on glibc allocator errors in its output even when the exit status
is 0 (``munmap_chunk(): invalid pointer``, ``free(): invalid pointer``, ``double free``: the
symptom of PLUMED issue #1164 when libtorch, PLUMED and GROMACS disagree on the C++ runtime).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from .._core.errors import GMVAEInputError

__all__ = ["GromacsRunError", "ALLOCATOR_ERRORS", "kernel_has_libtorch", "check_gromacs_run", "is_mpi_build", "run_mdrun"]

ALLOCATOR_ERRORS = (
    "munmap_chunk(): invalid pointer",
    "free(): invalid pointer",
    "double free or corruption",
    "free(): invalid size",
    "corrupted size vs. prev_size",
    "malloc(): corrupted",
    "Segmentation fault",
)
"""Strings in mdrun's output that mean a crash even if the exit status says otherwise."""

_BUILD_HINT = "scripts/build_plumed_libtorch.sh builds one; scripts/build_gromacs_plumed.sh writes env.sh that sets it"


class GromacsRunError(RuntimeError):
    """``gmx mdrun`` failed, or printed an allocator error."""


def kernel_has_libtorch(kernel: str | os.PathLike) -> tuple[bool, str]:
    """Whether loading the PLUMED kernel ``kernel`` loads libtorch (in a child process).

    Returns
    -------
    (bool, str)
        The answer, and a detail for messages (the libtorch library found, or why not).
    """
    code = (
        "import ctypes, sys\n"
        "try:\n"
        "    ctypes.CDLL(sys.argv[1])\n"
        "except OSError as exc:\n"
        "    print('LOADFAIL', exc); sys.exit(0)\n"
        "libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libtorch' in l and l.split()[-1].startswith('/')})\n"
        "print('TORCH' if libs else 'NOTORCH', *libs[:1])\n"
    )
    res = subprocess.run([sys.executable, "-c", code, os.fspath(kernel)], capture_output=True, text=True, timeout=120)
    out = res.stdout.strip()
    if out.startswith("TORCH"):
        return True, out.split(" ", 1)[1] if " " in out else "libtorch"
    if out.startswith("LOADFAIL"):
        return False, f"it does not load ({out[9:]})"
    if out.startswith("NOTORCH"):
        return False, "it is not linked to libtorch (PLUMED configured without --enable-libtorch)"
    return False, f"checking it failed ({(res.stderr or out)[-300:]})"


def _plumed_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, logical line) of a PLUMED input: comments dropped, ``...`` blocks joined."""
    out, block, start = [], None, 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if block is not None:
            if line == "..." or line.startswith("... "):
                out.append((start, block))
                block = None
            else:
                block += " " + line
        elif line.endswith("..."):
            block, start = line[:-3].strip(), n
        else:
            out.append((n, line))
    if block is not None:
        out.append((start, block))
    return out


def check_gromacs_run(
    run_dir: str | os.PathLike,
    plumed_input: str = "plumed.dat",
    *,
    gmx: Optional[str] = None,
    kernel: Optional[str] = None,
) -> dict:
    """Check a run folder for ``gmx mdrun -plumed plumed_input`` (see the module docstring).

    Parameters
    ----------
    run_dir : path
        The folder mdrun will run in.
    plumed_input : str
        The PLUMED input, relative to ``run_dir``.
    gmx : str, optional
        The ``gmx`` command (default ``$GMX``, else ``gmx`` on PATH); checked for ``-plumed``.
    kernel : str, optional
        The PLUMED kernel (default ``$PLUMED_KERNEL``).

    Returns
    -------
    dict
        ``gmx``, ``kernel``, ``libtorch`` (the library the kernel loads or None), ``models``
        (the ``.ptc`` files the input loads).

    Raises
    ------
    GMVAEInputError
        Every problem found, each naming ``PLUMED_KERNEL``, the missing file or the GROMACS
        command, and what to do (separated by ``|``).
    """
    run_dir = Path(run_dir)
    inp = run_dir / plumed_input
    if not inp.is_file():
        raise GMVAEInputError(f"{inp}: file not found (the PLUMED input for gmx mdrun -plumed {plumed_input})")
    lines = _plumed_lines(inp)
    models = []
    for n, line in lines:
        if re.search(r"(^|:\s*|\s)PYTORCH_MODEL(\s|$)", line):
            m = re.search(r"\bFILE=(\S+)", line)
            if m is None:
                raise GMVAEInputError(f"{inp}: line {n}: PYTORCH_MODEL without FILE=")
            models.append((n, m.group(1)))
    problems = []
    for n, f in models:
        if not (run_dir / f).is_file():
            problems.append(
                f"{run_dir / f}: file not found; {inp.name} line {n} loads it (PYTORCH_MODEL FILE={f}), and PLUMED "
                f"resolves FILE= relative to the folder mdrun runs in: copy it from the export "
                f"(gmvae-cv plumed-input EXP --top conf.gro --out {run_dir} writes the inputs and copies the .ptc files)"
            )
    kernel = kernel if kernel is not None else os.environ.get("PLUMED_KERNEL")
    libtorch = None
    if models:
        if not kernel:
            problems.append(
                f"PLUMED_KERNEL is not set, and {inp.name} uses PYTORCH_MODEL: a runtime-patched GROMACS would load "
                f"the PLUMED it was patched with, which may lack libtorch. export PLUMED_KERNEL=/path/to/libplumedKernel.so "
                f"of a PLUMED built with libtorch ({_BUILD_HINT})"
            )
        elif not Path(kernel).is_file():
            problems.append(f"PLUMED_KERNEL={kernel}: file not found (expected a libplumedKernel.so; {_BUILD_HINT})")
        else:
            ok, detail = kernel_has_libtorch(kernel)
            if ok:
                libtorch = detail
            else:
                problems.append(
                    f"PLUMED_KERNEL={kernel}: {detail}, so PYTORCH_MODEL ({inp.name} line {models[0][0]}) is unknown to it. "
                    f"Point PLUMED_KERNEL at a PLUMED built with libtorch ({_BUILD_HINT})"
                )
    gmx = gmx or os.environ.get("GMX") or shutil.which("gmx") or shutil.which("gmx_mpi")
    if not gmx:
        problems.append("no GROMACS: GMX is not set and there is no gmx on PATH (source external/gromacs-plumed/env.sh)")
    else:
        try:
            res = subprocess.run([gmx, "-quiet", "mdrun", "-h"], capture_output=True, text=True, timeout=120)
            if res.returncode != 0 or "-plumed" not in res.stdout + res.stderr:
                problems.append(
                    f"GMX={gmx}: 'gmx mdrun' has no -plumed option, this GROMACS is not patched with PLUMED "
                    f"(scripts/build_gromacs_plumed.sh builds one; or GROMACS >= 2025 with its own PLUMED interface)"
                )
        except OSError as exc:
            problems.append(f"GMX={gmx}: cannot run it ({exc})")
    if problems:
        raise GMVAEInputError(f"{run_dir}: not ready for gmx mdrun -plumed {plumed_input}: " + " | ".join(problems))
    return {"gmx": gmx, "kernel": kernel, "libtorch": libtorch, "models": [f for _, f in models]}


def is_mpi_build(gmx: str) -> bool:
    """Whether ``gmx`` was built with a real MPI library (``gmx_mpi``), not thread-MPI.

    Read from ``gmx -version`` (``MPI library: MPI``); such a build refuses ``-ntmpi``.
    """
    try:
        res = subprocess.run([gmx, "-quiet", "-version"], capture_output=True, text=True, timeout=120)
    except OSError:
        return False
    m = re.search(r"^MPI library:\s*(\S+)", res.stdout + res.stderr, re.M)
    return bool(m) and m.group(1).lower() != "thread_mpi" and m.group(1).lower() != "none"


def run_mdrun(
    run_dir: str | os.PathLike,
    tpr: str = "run.tpr",
    plumed_input: Optional[str] = "plumed.dat",
    *,
    gmx: Optional[str] = None,
    ntomp: int = 1,
    deffnm: str = "md",
    extra: Sequence[str] = (),
    timeout: float = 3600,
) -> subprocess.CompletedProcess:
    """``gmx mdrun -s tpr -deffnm deffnm -ntmpi 1 -ntomp N [-plumed plumed_input]`` in ``run_dir``.

    ``-ntmpi 1``: PLUMED does not work across thread-MPI ranks (left out for an MPI build,
    :func:`is_mpi_build`, which runs one rank without ``mpirun``). ``plumed_input=None`` runs without
    PLUMED. Raises :class:`GMVAEInputError` from :func:`check_gromacs_run` and
    :class:`GromacsRunError` if mdrun fails or prints an allocator error (:data:`ALLOCATOR_ERRORS`).
    """
    run_dir = Path(run_dir)
    if plumed_input is not None:
        gmx = check_gromacs_run(run_dir, plumed_input, gmx=gmx)["gmx"]
    else:
        gmx = gmx or os.environ.get("GMX") or shutil.which("gmx")
        if not gmx:
            raise GMVAEInputError("no GROMACS: GMX is not set and there is no gmx on PATH")
    ranks = [] if is_mpi_build(gmx) else ["-ntmpi", "1"]
    cmd = [gmx, "-quiet", "mdrun", "-s", tpr, "-deffnm", deffnm, *ranks, "-ntomp", str(int(ntomp)), *extra]
    if plumed_input is not None:
        cmd += ["-plumed", plumed_input]
    env = dict(os.environ, OMP_NUM_THREADS=str(int(ntomp)))
    res = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, timeout=timeout, env=env)
    out = res.stdout + res.stderr
    bad = [e for e in ALLOCATOR_ERRORS if e in out]
    if res.returncode != 0 or bad:
        why = f"printed {bad}" if bad else f"exit status {res.returncode}"
        raise GromacsRunError(f"{' '.join(cmd)} (in {run_dir}) {why}:\n{out[-4000:]}")
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gmvae_cv.deploy.gromacs_run", description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--plumed", default="plumed.dat", help="PLUMED input in RUN_DIR (default plumed.dat)")
    ap.add_argument("--gmx", default=None, help="gmx command (default $GMX, else gmx on PATH)")
    args = ap.parse_args(argv)
    try:
        info = check_gromacs_run(args.run_dir, args.plumed, gmx=args.gmx)
    except GMVAEInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ok: {info['gmx']} has -plumed; PLUMED_KERNEL={info['kernel']} (libtorch: {info['libtorch']}); "
          f"models in {args.run_dir}: {', '.join(info['models']) or 'none'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
