"""Per-call latency of ``model_plumed.ptc`` under PLUMED's calling pattern, against a bare MLP.

    python benchmarks/export_speed.py [--exp EXP] [--out result.json] [--calls 2000] [--repeats 7]
                                      [--plumed-frames 20000]

PLUMED's ``PYTORCH_MODEL`` (src/pytorch/PytorchModel.cpp) loads a file with ``torch.jit.load``,
``freeze`` and ``optimize_for_inference`` once, then at every MD step builds a float32 ``(1, n)``
tensor from the argument values, sets ``requires_grad``, calls ``forward``, and takes one
``torch.autograd.grad`` per output (``retain_graph=True``), copying values and gradients out.
This script replays that step in Python for

* ``gmvae``: the exported CV (``model_plumed.ptc`` of ``--exp``, default a GMVAE with the
  reference export's widths: 25 features, q(y|x) [32], q(z|x,y) [16], K=4, D=2, built and
  exported here with random weights and a set normalisation);
* ``bare_mlp``: a plain ``Linear-ReLU-Linear-ReLU-Linear`` network with the encoder's widths,
  ``n -> qy_hidden -> qz_hidden -> D`` (25 -> 32 -> 16 -> 2), no normalisation, scripted, saved and
  loaded the same way.

Both go through the same harness, interleaved (gmvae block, mlp block, ...) so that machine
load affects them alike; the result is the median over ``--repeats`` blocks of ``--calls``
calls, and the ratio of the medians (goal: <= 1.2). One intra-op thread (as PLUMED runs a
batch-1 model on one MPI rank). Python adds the same per-call overhead to both, which pulls
this ratio towards 1.

The C++ measurement: when ``PLUMED_KERNEL`` points at a PLUMED built with libtorch (see
scripts/build_plumed_libtorch.sh), both files are also loaded by the real ``PYTORCH_MODEL`` in
``plumed driver`` (``DEBUG DETAILED_TIMERS``, ``OMP_NUM_THREADS=1``, features computed by PLUMED
from ``--plumed-frames`` positions, each model loaded twice, interleaved) and the per-action
timers give the C++ ratio (``plumed_cpp``), the number the goal is really about.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gmvae_cv._core.versions import machine_info  # noqa: E402


class BareMLP(torch.nn.Module):
    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.nn = torch.nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nn(x)


def plumed_load(path: Path) -> torch.jit.ScriptModule:
    m = torch.jit.load(str(path), map_location="cpu")
    m.eval()
    return torch.jit.optimize_for_inference(torch.jit.freeze(m))


def plumed_step(model: torch.jit.ScriptModule, values: list[float], n_in: int, n_out: int) -> tuple[list[float], list[list[float]]]:
    """One PYTORCH_MODEL::calculate(): values and per-output gradients as Python lists."""
    x = torch.tensor(values, dtype=torch.float32).view(1, n_in)
    x.requires_grad_(True)
    out = model(x)
    ones = torch.ones(1, 1)
    grads = []
    for j in range(n_out):
        g = torch.autograd.grad([out[:, j : j + 1]], [x], grad_outputs=[ones], retain_graph=True, create_graph=False)[0]
        grads.append(g.view(-1).tolist())
    return out.detach().view(-1).tolist(), grads


def time_block(model, inputs: np.ndarray, n_out: int, calls: int) -> float:
    n_in = inputs.shape[1]
    rows = [list(map(float, r)) for r in inputs]
    t0 = time.perf_counter()
    for c in range(calls):
        plumed_step(model, rows[c % len(rows)], n_in, n_out)
    return (time.perf_counter() - t0) / calls


def time_block_tensors(model, inputs: np.ndarray, n_out: int, calls: int) -> float:
    """The same step without the list <-> tensor copies (closer to what C++ pays per call)."""
    xs = [torch.tensor(r).view(1, -1) for r in inputs]
    ones = torch.ones(1, 1)
    t0 = time.perf_counter()
    for c in range(calls):
        x = xs[c % len(xs)].detach().requires_grad_(True)
        out = model(x)
        for j in range(n_out):
            torch.autograd.grad([out[:, j : j + 1]], [x], grad_outputs=[ones], retain_graph=True)
    return (time.perf_counter() - t0) / calls


def build_gmvae_export(tmp: Path) -> tuple[Path, dict]:
    from gmvae_cv.learn.model import GMVAECV
    from gmvae_cv.deploy.torchscript import EncoderMean, save_scripted

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = GMVAECV(25, 2, 4).eval()
    model.norm_in.set_custom(torch.rand(25, generator=gen) * 0.3 + 0.3, torch.rand(25, generator=gen) * 0.05 + 0.02)
    path = tmp / "model_plumed.ptc"
    save_scripted(EncoderMean(model), path, {"kind": "plumed"})
    return path, {"n_features": 25, "D": 2, "K": 4, "qy_layers": [32], "qz_layers": [16], "source": "built here (random weights)"}


def _plumed_with_libtorch() -> tuple[str | None, str]:
    kernel = os.environ.get("PLUMED_KERNEL")
    if not kernel or not Path(kernel).is_file():
        return None, "PLUMED_KERNEL is not set to a kernel file"
    exe = Path(kernel).resolve().parents[1] / "bin" / "plumed"
    if not exe.is_file():
        return None, f"no plumed executable next to PLUMED_KERNEL ({exe})"
    if subprocess.run([str(exe), "config", "has", "libtorch"], capture_output=True).returncode != 0:
        return None, f"{kernel} has no libtorch"
    return str(exe), ""


def plumed_cpp(tmp: Path, files: dict[str, Path], spec, frames: np.ndarray, n_frames: int) -> dict:
    """Per-call time of each model in PLUMED's PYTORCH_MODEL (C++), from DETAILED_TIMERS."""
    exe, why = _plumed_with_libtorch()
    if exe is None:
        return {"skipped": why}
    lines, args = spec.plumed_input()
    a = ",".join(args)
    labels = [f"{name}_{i}" for i in range(2) for name in files]  # gmvae_0, mlp_0, gmvae_1, mlp_1
    text = "\n".join(lines) + "\nDEBUG DETAILED_TIMERS\n"
    text += "".join(f"{lab}: PYTORCH_MODEL FILE={files[lab.rsplit('_', 1)[0]]} ARG={a}\n" for lab in labels)
    text += "bv: BIASVALUE ARG=" + ",".join(f"{lab}.node-0" for lab in labels) + "\n"
    (tmp / "bench.dat").write_text(text)
    with open(tmp / "bench.xyz", "w") as fh:
        for i in range(n_frames):
            x = frames[i % len(frames)]
            fh.write(f"{len(x)}\n0 0 0 0 0 0 0 0 0\n" + "".join(f"X {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in x))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([exe, "driver", "--plumed", "bench.dat", "--ixyz", "bench.xyz"], cwd=tmp, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        return {"skipped": "plumed driver failed: " + res.stdout[-500:] + res.stderr[-500:]}
    timers = {}
    for line in res.stdout.splitlines():
        m = re.match(r"PLUMED: 4A +\d+ (\S+) +(\d+) +(\S+) +(\S+) +(\S+) +(\S+)", line)
        if m and m.group(1) in labels:
            timers[m.group(1)] = {"calls": int(m.group(2)), "avg_us": float(m.group(4)) * 1e6, "min_us": float(m.group(5)) * 1e6}
    avg = {n: float(np.mean([timers[f"{n}_{i}"]["avg_us"] for i in range(2)])) for n in files}
    mins = {n: float(np.min([timers[f"{n}_{i}"]["min_us"] for i in range(2)])) for n in files}
    return {
        "kernel": os.environ.get("PLUMED_KERNEL"),
        "frames": n_frames,
        "omp_num_threads": 1,
        "timers": timers,
        "us_per_call_avg": avg,
        "us_per_call_min": mins,
        "ratio_avg": avg["gmvae"] / avg["bare_mlp"],
        "ratio_min": mins["gmvae"] / mins["bare_mlp"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", default=None, help="an export directory (default: a GMVAE with the reference widths)")
    parser.add_argument("--out", default=None, help="write the JSON result here (default: stdout only)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed block (default 2000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per model (default 7)")
    parser.add_argument("--plumed-frames", type=int, default=20000, help="frames for the C++ (plumed driver) timing")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from gmvae_cv.features import FeatureSpec, alanine_heavy_atom_distances

        if args.exp:
            from gmvae_cv.deploy import read_cv_json

            info = read_cv_json(args.exp)
            spec = FeatureSpec.from_dict(info["feature_spec"])
            frames = np.load(Path(args.exp) / info["check_frames"]["positions"])
            gmvae_path = (Path(args.exp) / "model_plumed.ptc").resolve()
            cfg = info["training"]["config"]
            shape = {"n_features": info["n_features"], "D": info["latent_dim"], "K": info["n_clusters"],
                     "qy_layers": cfg["qy_layers"], "qz_layers": cfg["qz_layers"], "source": str(args.exp)}
        else:
            from gmvae_cv.systems import AlanineDipeptide

            gmvae_path, shape = build_gmvae_export(tmp)
            spec = alanine_heavy_atom_distances()
            base = AlanineDipeptide().positions
            frames = base[None] + 0.01 * np.random.default_rng(0).standard_normal((64, *base.shape))
        widths = [shape["n_features"], *shape["qy_layers"], *shape["qz_layers"], shape["D"]]
        torch.manual_seed(1)
        mlp_path = tmp / "bare_mlp.ptc"
        torch.jit.save(torch.jit.script(BareMLP(widths).eval()), str(mlp_path))

        gmvae = plumed_load(gmvae_path)
        mlp = plumed_load(mlp_path)
        rng = np.random.default_rng(0)
        inputs = (0.3 + 0.3 * rng.random((256, shape["n_features"]))).astype(np.float32)
        d = shape["D"]
        for model in (gmvae, mlp):  # warm-up (profiling executor specialises on the first calls)
            time_block(model, inputs, d, 200)
        t_g, t_m, tt_g, tt_m = [], [], [], []
        for _ in range(args.repeats):
            t_g.append(time_block(gmvae, inputs, d, args.calls))
            t_m.append(time_block(mlp, inputs, d, args.calls))
            tt_g.append(time_block_tensors(gmvae, inputs, d, args.calls))
            tt_m.append(time_block_tensors(mlp, inputs, d, args.calls))
        # the forward pass alone, for reference
        x = torch.tensor(inputs[:1])
        f_g, f_m = [], []
        with torch.no_grad():
            for _ in range(args.repeats):
                for model, acc in ((gmvae, f_g), (mlp, f_m)):
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        model(x)
                    acc.append((time.perf_counter() - t0) / args.calls)

        cpp = plumed_cpp(tmp, {"gmvae": gmvae_path, "bare_mlp": mlp_path}, spec, frames, args.plumed_frames)

    med_g, med_m = float(np.median(t_g)), float(np.median(t_m))
    result = {
        "benchmark": "export_speed",
        "pattern": "PLUMED PYTORCH_MODEL: jit.load + freeze + optimize_for_inference; per call float32 (1, n) "
        "with requires_grad, forward, one autograd.grad per output (retain_graph)",
        "gmvae": shape,
        "bare_mlp_widths": widths,
        "calls_per_block": args.calls,
        "blocks": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "us_per_call": {"gmvae": med_g * 1e6, "bare_mlp": med_m * 1e6},
        "us_per_call_blocks": {"gmvae": [t * 1e6 for t in t_g], "bare_mlp": [t * 1e6 for t in t_m]},
        "us_per_call_tensors_only": {"gmvae": float(np.median(tt_g)) * 1e6, "bare_mlp": float(np.median(tt_m)) * 1e6},
        "ratio_tensors_only": float(np.median(tt_g)) / float(np.median(tt_m)),
        "us_per_forward_no_grad": {"gmvae": float(np.median(f_g)) * 1e6, "bare_mlp": float(np.median(f_m)) * 1e6},
        "ratio": med_g / med_m,
        "ratio_forward_no_grad": float(np.median(f_g)) / float(np.median(f_m)),
        "plumed_cpp": cpp,
        "goal_ratio": 1.2,
        "goal_met": med_g / med_m <= 1.2,
        "goal_met_plumed_cpp": (cpp["ratio_avg"] <= 1.2) if "ratio_avg" in cpp else None,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "machine": machine_info(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
