"""Run an exported GMVAE CV in ``plumed driver`` and compare it with the Python model.

    python examples/gromacs_plumed/check_with_driver.py                       # the reference export
    python examples/gromacs_plumed/check_with_driver.py --exp EXP --input EXP/plumed.dat \
        --traj md.xtc --top conf.gro                                           # your export, your run

What it does, in a scratch folder (``--workdir``, default a temporary one):

1. Frames: ``--traj``/``--top`` (anything mdtraj reads: a GROMACS ``.xtc``/``.trr`` with a ``.gro`` or
   ``.pdb``), or the export's own ``frames.npy``. With ``--top`` it first checks the atom order: every
   atom the features use must have, at the same index, the residue and atom name recorded in the
   export's feature spec (PLUMED atom number = index + 1). The frames are written as ``traj.dcd``.
2. The PLUMED inputs (default for the reference export: ``plumed_inputs/metad.dat`` then
   ``plumed_inputs/reweight.dat``, which reads the HILLS the first one wrote) are run by
   ``plumed driver`` with one extra line, a ``PRINT`` of the features and of every
   ``PYTORCH_MODEL`` output at every frame.
3. The features PLUMED computed are compared with the feature spec in NumPy
   (``FeatureSpec.compute``) and the CV and cluster probabilities PLUMED printed with the trained
   Python model (``EXP/run``, float64: ``GMVAECV.forward_cv``, ``cluster_probabilities``).

Where the ``PYTORCH_MODEL`` outputs come from (``--mode``):

* ``pytorch``: the real action, in a PLUMED built with libtorch (``scripts/build_plumed_libtorch.sh``;
  found through ``PLUMED_KERNEL`` or given with ``--plumed``). The inputs run unchanged.
* ``standin``: a PLUMED without libtorch (``PYTORCH_MODEL`` is not registered). Each
  ``PYTORCH_MODEL`` line is replaced by a ``READ`` action with the same label and components,
  fed with what the ``.ptc`` file gives in Python (``torch.jit.load``, ``freeze``,
  ``optimize_for_inference``, float32 ``(1, n)``: PLUMED's calling pattern) on the features that
  PLUMED computed in a first pass. Everything else in the inputs (features, METAD, reweighting,
  PRINT) runs in the real kernel; the C++ ``PYTORCH_MODEL`` action itself does not.
* ``auto`` (default): ``pytorch`` if the PLUMED found has libtorch, else ``standin``.

Prints a table and writes ``check_with_driver.json`` in the work folder (``--json`` elsewhere).
Exit status: 0 all agree, 1 a mismatch (or an atom-order mismatch), 2 bad input or a failed
``plumed driver`` run, 3 no usable ``plumed`` command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REF_EXPORT = ROOT / "export" / "alanine_dipeptide"
REF_INPUTS = ROOT / "plumed_inputs"
# tolerances: features are computed in double by PLUMED and by NumPy from the same float32
# positions; the .ptc networks run in float32 (check_export's tolerance for values)
TOL_FEATURES = 1e-5
TOL_MODEL = 2e-5

_PYTORCH_LINE = re.compile(r"^(?P<label>[A-Za-z_][\w-]*):\s*PYTORCH_MODEL\s+(?P<rest>.*)$")


class CheckError(Exception):
    """Bad input or a failed PLUMED run (exit status 2)."""


# ------------------------------------------------------------------ PLUMED
def _plumed_has_libtorch(exe: str) -> bool:
    try:
        res = subprocess.run([exe, "config", "has", "libtorch"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def _plumed_runs(exe: str) -> bool:
    try:
        res = subprocess.run([exe, "info", "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def find_plumed(explicit: str | None = None) -> tuple[str | None, str]:
    """(executable, how it was found); executable None if there is none."""
    if explicit:
        return (explicit, "--plumed") if _plumed_runs(explicit) else (None, f"--plumed {explicit} does not run")
    kernel = os.environ.get("PLUMED_KERNEL")
    if kernel:
        exe = Path(kernel).resolve().parents[1] / "bin" / "plumed"
        if exe.is_file() and _plumed_runs(str(exe)):
            return str(exe), f"next to PLUMED_KERNEL={kernel}"
    cand = Path(sys.executable).with_name("plumed")
    exe = str(cand) if cand.exists() else shutil.which("plumed")
    if exe and _plumed_runs(exe):
        return exe, "next to this Python" if cand.exists() else "on PATH"
    return None, "no working 'plumed' command (next to this Python, on PATH or next to PLUMED_KERNEL)"


def _driver(exe: str, workdir: Path, plumed_file: str, stride: int, timestep: float) -> str:
    cmd = [exe, "driver", "--plumed", plumed_file, "--mf_dcd", "traj.dcd",
           "--trajectory-stride", str(stride), "--timestep", repr(timestep)]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1200)
    if res.returncode != 0:
        tail = (res.stdout[-2000:] + res.stderr[-2000:]).strip()
        raise CheckError(f"plumed driver on {plumed_file} failed (exit {res.returncode}):\n{tail}")
    return res.stdout


def _read_colvar(path: Path) -> dict[str, np.ndarray]:
    first = path.read_text().splitlines()[0].split()
    if first[:2] != ["#!", "FIELDS"]:
        raise CheckError(f"{path}: no '#! FIELDS' header")
    data = np.loadtxt(path, comments="#", ndmin=2)
    return {name: data[:, i] for i, name in enumerate(first[2:])}


def parse_pytorch_lines(text: str) -> list[dict]:
    """The PYTORCH_MODEL actions of an input: label, FILE, ARG list and line number."""
    out = []
    for n, line in enumerate(text.splitlines()):
        m = _PYTORCH_LINE.match(line.split("#", 1)[0].strip())
        if not m:
            continue
        kw = dict(re.findall(r"(\w+)=(\S+)", m.group("rest")))
        if "FILE" not in kw or "ARG" not in kw:
            raise CheckError(f"line {n + 1}: PYTORCH_MODEL without FILE= and ARG= on one line: {line!r}")
        out.append({"label": m.group("label"), "file": kw["FILE"], "args": kw["ARG"].split(","), "line": n})
    return out


def _plumed_pattern(path: Path, x32: np.ndarray) -> np.ndarray:
    """What PYTORCH_MODEL does with a .ptc file (PytorchModel.cpp), in Python."""
    import torch

    m = torch.jit.load(str(path), map_location="cpu")
    m.eval()
    m = torch.jit.optimize_for_inference(torch.jit.freeze(m))
    rows = []
    with torch.no_grad():
        for row in x32:
            rows.append(m(torch.tensor(row, dtype=torch.float32).view(1, -1))[0].numpy().astype(np.float64))
    return np.array(rows)


def _write_read_file(path: Path, label: str, values: np.ndarray, times: np.ndarray) -> None:
    cols = [f"{label}.node-{i}" for i in range(values.shape[1])]
    with open(path, "w") as fh:
        fh.write("#! FIELDS time " + " ".join(cols) + "\n")
        for t, row in zip(times, values):
            fh.write(f"{t:.6f} " + " ".join(f"{v:.10f}" for v in row) + "\n")


# ------------------------------------------------------------------ atom order
def _label(atom) -> str:
    return f"{atom.residue.name}{atom.residue.resSeq}-{atom.name}"


def check_atom_order(spec, topology) -> dict:
    """Compare the atoms a feature spec uses with a topology (mdtraj.Topology).

    Returns a dict: ``n_atoms_topology``, ``n_atoms_spec``, ``checked`` (labelled atoms compared)
    and ``mismatches``, a list of ``{"plumed_atom", "index", "spec", "topology"}``. Raises
    CheckError if the topology has fewer atoms than the spec.
    """
    if topology.n_atoms < spec.n_atoms:
        raise CheckError(
            f"the topology has {topology.n_atoms} atoms, the feature spec was built on {spec.n_atoms}: "
            "it cannot be the same system"
        )
    mismatches = []
    for idx, want in sorted(spec.atom_labels.items()):
        have = _label(topology.atom(idx))
        if have != want:
            mismatches.append({"plumed_atom": idx + 1, "index": idx, "spec": want, "topology": have})
    used = set(int(a) for a in spec.atoms_used)
    unlabelled = sorted(used - set(spec.atom_labels))
    return {
        "n_atoms_topology": topology.n_atoms,
        "n_atoms_spec": spec.n_atoms,
        "checked": len(spec.atom_labels),
        "unlabelled_atoms_used": unlabelled,
        "mismatches": mismatches,
    }


# ------------------------------------------------------------------ main
def _default_inputs(exp: Path) -> list[Path]:
    if exp.resolve() == REF_EXPORT.resolve():
        return [REF_INPUTS / "metad.dat", REF_INPUTS / "reweight.dat"]
    return [exp / "plumed.dat"]


def _load_frames(args, spec):
    """(mdtraj.Trajectory to write for PLUMED, atom check dict or None, description)."""
    import mdtraj as md

    if args.traj:
        if not args.top:
            raise CheckError("--traj needs --top (a .gro or .pdb with the run's atom order)")
        for f in [*args.traj, args.top]:
            if not Path(f).is_file():
                raise CheckError(f"{f}: file not found")
        try:
            top = md.load_topology(args.top)
            traj = md.join([md.load(str(f), top=top, stride=args.stride) for f in args.traj])
        except Exception as exc:  # mdtraj raises many types
            raise CheckError(f"cannot read {args.traj} with topology {args.top} ({exc})") from None
        atoms = check_atom_order(spec, top)
        return traj, atoms, f"{', '.join(args.traj)} ({args.top})"
    frames = np.load(Path(args.exp) / "frames.npy")
    if frames.ndim != 3 or frames.shape[1] != spec.n_atoms:
        raise CheckError(f"{args.exp}/frames.npy has shape {frames.shape}, expected (n, {spec.n_atoms}, 3)")
    top = md.Topology()
    chain = top.add_chain()
    res = top.add_residue("UNK", chain)
    for i in range(spec.n_atoms):
        top.add_atom(f"X{i}", md.element.virtual, res)
    return md.Trajectory(frames[:: args.stride], top), None, f"{args.exp}/frames.npy"


def run_check(args) -> dict:
    import torch

    from gmvae_cv.deploy import read_cv_json
    from gmvae_cv.features import FeatureSpec
    from gmvae_cv.deploy.torchscript import read_marker
    from gmvae_cv.learn.train import load_run

    exp = Path(args.exp)
    info = read_cv_json(exp)
    spec = FeatureSpec.from_dict(info["feature_spec"], source=exp / "cv.json")
    inputs = [Path(p) for p in args.input] if args.input else _default_inputs(exp)
    for p in inputs:
        if not p.is_file():
            raise CheckError(f"{p}: PLUMED input not found")

    exe, found = find_plumed(args.plumed)
    if exe is None:
        return {"skipped": True, "reason": found}
    has_torch = _plumed_has_libtorch(exe)
    mode = args.mode if args.mode != "auto" else ("pytorch" if has_torch else "standin")
    if mode == "pytorch" and not has_torch:
        raise CheckError(f"--mode pytorch: {exe} is built without libtorch (no PYTORCH_MODEL); see scripts/build_plumed_libtorch.sh")

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gmvae_driver_"))
    work.mkdir(parents=True, exist_ok=True)
    traj, atoms, source = _load_frames(args, spec)
    traj.save_dcd(str(work / "traj.dcd"))
    import mdtraj as md

    # the Python side reads the same file PLUMED reads (float32 positions in the DCD)
    back = md.load_dcd(str(work / "traj.dcd"), top=traj.topology)
    if back.n_atoms > spec.n_atoms:  # e.g. solvent after the solute: the spec covers the first atoms
        back = back.atom_slice(np.arange(spec.n_atoms))
    x64 = spec.compute(back)
    n = len(x64)
    times = np.arange(n) * args.steps_per_frame * args.timestep

    model = load_run(exp / "run").model
    import copy

    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        ref = {
            "plumed": m64.forward_cv(torch.tensor(x64)).numpy(),
            "clusters": m64.cluster_probabilities(torch.tensor(x64)).numpy(),
        }

    results = []
    for inp in inputs:
        text = inp.read_text()
        models = parse_pytorch_lines(text)
        if not models:
            raise CheckError(f"{inp}: no PYTORCH_MODEL line")
        lines = text.splitlines()
        args_f = models[0]["args"]
        for mdl in models:
            src = inp.parent / mdl["file"]
            if not src.is_file():
                src = exp / Path(mdl["file"]).name
            if not src.is_file():
                raise CheckError(f"{inp}: {mdl['file']} not found next to it nor in {exp}")
            shutil.copy(src, work / mdl["file"])
            mdl["kind"] = read_marker(work / mdl["file"])["kind"]
        stem = inp.stem
        check_file = f"CHECK_{stem}"
        if mode == "standin":
            # pass 1: the input's own feature lines (everything before the first PYTORCH_MODEL)
            head = lines[: models[0]["line"]]
            feat_in = f"features_{stem}.dat"
            (work / feat_in).write_text("\n".join(head) + f"\nPRINT ARG={','.join(args_f)} FILE=FEATURES_{stem} FMT=%.10f\n")
            _driver(exe, work, feat_in, args.steps_per_frame, args.timestep)
            col = _read_colvar(work / f"FEATURES_{stem}")
            feats = np.stack([col[a] for a in args_f], axis=1)
            for mdl in models:
                vals = _plumed_pattern(work / mdl["file"], feats.astype(np.float32))
                values_file = f"{mdl['label']}_values_{stem}.dat"
                _write_read_file(work / values_file, mdl["label"], vals, times)
                comps = ",".join(f"{mdl['label']}.node-{i}" for i in range(vals.shape[1]))
                lines[mdl["line"]] = f"{mdl['label']}: READ FILE={values_file} VALUES={comps} IGNORE_FORCES  # stand-in for PYTORCH_MODEL"
        labels = [f"{m['label']}.*" for m in models]
        lines.append(f"PRINT ARG={','.join(args_f + labels)} FILE={check_file} FMT=%.10f  # added by check_with_driver.py")
        run_name = f"{stem}.dat" if mode == "pytorch" else f"{stem}.standin.dat"
        (work / run_name).write_text("\n".join(lines) + "\n")
        stdout = _driver(exe, work, run_name, args.steps_per_frame, args.timestep)
        col = _read_colvar(work / check_file)
        got_f = np.stack([col[a] for a in args_f], axis=1)
        row = {"input": str(inp), "ran": run_name, "frames": int(len(got_f))}
        if len(got_f) != n:
            raise CheckError(f"{inp}: PLUMED printed {len(got_f)} frames, expected {n}")
        row["features_max_abs_diff"] = float(np.max(np.abs(got_f - x64)))
        ok = row["features_max_abs_diff"] <= TOL_FEATURES
        for mdl in models:
            r = ref[mdl["kind"]]
            got = np.stack([col[f"{mdl['label']}.node-{i}"] for i in range(r.shape[1])], axis=1)
            key = f"{mdl['label']}_max_abs_diff"
            row[key] = float(np.max(np.abs(got - r)))
            ok &= row[key] <= TOL_MODEL * max(1.0, float(np.abs(r).max()))
        if mode == "pytorch":
            row["libtorch_in_log"] = "LibTorch" in stdout
        row["passed"] = bool(ok)
        results.append(row)

    atoms_ok = atoms is None or not atoms["mismatches"] or args.allow_atom_mismatch
    summary = {
        "skipped": False,
        "mode": mode,
        "plumed": exe,
        "plumed_found": found,
        "exp": str(exp),
        "frames": source,
        "n_frames": n,
        "workdir": str(work),
        "tolerances": {"features": TOL_FEATURES, "model": f"{TOL_MODEL} x max(1, |value|)"},
        "atom_order": atoms,
        "inputs": results,
        "passed": bool(all(r["passed"] for r in results) and atoms_ok),
    }
    return summary


def _print(summary: dict) -> None:
    if summary.get("skipped"):
        print(f"skipped: {summary['reason']}")
        return
    how = ("real PYTORCH_MODEL (libtorch)" if summary["mode"] == "pytorch"
           else "READ stand-in for PYTORCH_MODEL (.ptc evaluated in Python on PLUMED's features)")
    print(f"plumed: {summary['plumed']} ({summary['plumed_found']}); CV values from: {how}")
    print(f"frames: {summary['frames']}, {summary['n_frames']} frames; work folder {summary['workdir']}")
    atoms = summary["atom_order"]
    if atoms is None:
        print("atom order: not checked (no --top; the export's own frames)")
    else:
        extra = atoms["n_atoms_topology"] - atoms["n_atoms_spec"]
        print(f"atom order: {atoms['checked']} labelled atoms compared, {len(atoms['mismatches'])} differ"
              + (f"; the topology has {extra} atoms after the spec's {atoms['n_atoms_spec']} (e.g. solvent)" if extra else ""))
        for mm in atoms["mismatches"]:
            print(f"  PLUMED atom {mm['plumed_atom']} (index {mm['index']}): spec {mm['spec']}, topology {mm['topology']}")
    print(f"{'input':<34} {'features':>11} " + " ".join(f"{k[:-13]:>11}" for k in summary["inputs"][0] if k.endswith("_max_abs_diff") and k != "features_max_abs_diff") + "  result")
    for r in summary["inputs"]:
        diffs = [f"{r[k]:11.2e}" for k in r if k.endswith("_max_abs_diff") and k != "features_max_abs_diff"]
        print(f"{Path(r['input']).name:<34} {r['features_max_abs_diff']:11.2e} " + " ".join(diffs) + ("  ok" if r["passed"] else "  MISMATCH"))
    print("(max abs differences against NumPy features and the float64 Python model)")
    print("PASSED" if summary["passed"] else "FAILED")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default=str(REF_EXPORT), help="export folder (default: export/alanine_dipeptide)")
    ap.add_argument("--input", nargs="+", default=None, metavar="DAT",
                    help="PLUMED inputs, run in order in one folder (default: plumed_inputs/metad.dat "
                    "plumed_inputs/reweight.dat for the reference export, else EXP/plumed.dat)")
    ap.add_argument("--traj", nargs="+", default=None, help="trajectory files (default: EXP/frames.npy)")
    ap.add_argument("--top", default=None, help="topology of --traj (.gro, .pdb); its atom order is checked")
    ap.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame (default 1)")
    ap.add_argument("--steps-per-frame", type=int, default=500,
                    help="MD steps between frames, passed as --trajectory-stride (default 500: one METAD hill per frame)")
    ap.add_argument("--timestep", type=float, default=0.002, help="MD time step in ps (default 0.002)")
    ap.add_argument("--plumed", default=None, help="plumed executable (default: next to PLUMED_KERNEL, next to this Python, or on PATH)")
    ap.add_argument("--mode", choices=["auto", "pytorch", "standin"], default="auto", help="see the module docstring")
    ap.add_argument("--workdir", default=None, help="work folder (default: a new temporary folder, kept)")
    ap.add_argument("--allow-atom-mismatch", action="store_true",
                    help="atom-order differences are reported but do not fail the check (when you have checked that only "
                    "the names differ, e.g. CHARMM vs Amber names that mdtraj does not standardise)")
    ap.add_argument("--json", default=None, help="summary JSON (default: WORKDIR/check_with_driver.json)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from gmvae_cv import GMVAEInputError

    try:
        summary = run_check(args)
    except (CheckError, GMVAEInputError) as exc:
        print(f"check_with_driver: error: {exc}", file=sys.stderr)
        return 2
    _print(summary)
    if summary.get("skipped"):
        return 3
    out = Path(args.json) if args.json else Path(summary["workdir"]) / "check_with_driver.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
