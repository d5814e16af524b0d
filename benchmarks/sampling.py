"""Sampling: a GMVAE CV against phi/psi for well-tempered metadynamics of alanine dipeptide.

Both runs use this project's engine (``gmvae_cv.metad.run.run_metadynamics``) with the same height,
pace, bias factor, temperature, seed and simulated time; only the CV (and its sigmas and grid)
differ. Reported per CV:

- C7eq <-> C7ax transitions per ns (changes of core set, :func:`gmvae_cv.systems.alanine_basin`,
  so barrier recrossings do not count);
- the basin free-energy difference F(C7ax) - F(C7eq) in kJ/mol after the fixed time, from the
  COLVAR frames reweighted with :math:`e^{\\beta (V - c(t))}` (``metad.rbias``; the first 10 %
  discarded); for phi/psi also from the final bias on the grid, :math:`F = -\\gamma/(\\gamma-1) V`.

The GMVAE CV is ``--cv EXP`` (an exported ``model_openmm.pt`` or EXP directory) or, by default,
trained here: an unbiased run at ``--train-temperature`` (both basins visited), 25 heavy-atom
distances, ``gmvae_cv.fit`` (k = 4, latent dimension 2), and the trained encoder mean wrapped as a
positions -> CV TorchScript file (features scripted, network weights copied into plain torch). Sigmas of the GMVAE CV are
the standard deviations of its components over the C7eq frames of the training run (for phi/psi
0.35 rad, the usual choice, close to their C7eq fluctuation). Usage::

    python benchmarks/sampling.py --out benchmarks/sampling.json [--ns 2] [--cv EXP] [--timestep FS] [--quick]

With ``--cv EXP`` (an export directory) the sigmas default to the export's METAD choice
(``cv.json``). ``--timestep`` applies to both runs (hills every ps unless ``--pace``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmvae_cv.metad.run import run_metadynamics  # noqa: E402
from gmvae_cv.deploy.loaders import feature_cv, load_cv, save_cv_module  # noqa: E402
from gmvae_cv.features import alanine_backbone_torsions, alanine_heavy_atom_distances  # noqa: E402
from gmvae_cv.systems import AlanineDipeptide, alanine_basin  # noqa: E402
from gmvae_cv._core.versions import machine_info  # noqa: E402

KB = 0.008314462618  # kJ/mol/K


class _PositionsCV(torch.nn.Module):
    """FeatureModule -> the trained encoder mean, positions in nm -> (D,), in plain torch (scriptable).

    The weights are copied from :class:`gmvae_cv.learn.model.GMVAECV` (its mlcolvar blocks are Lightning
    modules, which TorchScript can neither script nor trace); the copy is checked against
    ``forward_cv`` on the training data.
    """

    def __init__(self, features, model) -> None:
        super().__init__()
        self.features = features
        sd = {k: v.detach().double() for k, v in model.state_dict().items()}
        self.register_buffer("mean", sd["norm_in.mean"])
        self.register_buffer("range", sd["norm_in.range"])
        qy = [m for m in model.qy.modules() if isinstance(m, torch.nn.Linear)]
        if len(qy) != 2 or model.qz.hidden is not None:
            raise SystemExit("this benchmark copies GMVAEs with one hidden layer in q(y|x) and q(z|x,y)")
        self.register_buffer("qy_w1", qy[0].weight.detach().double())
        self.register_buffer("qy_b1", qy[0].bias.detach().double())
        self.register_buffer("qy_w2", qy[1].weight.detach().double())
        self.register_buffer("qy_b2", qy[1].bias.detach().double())
        with torch.no_grad():
            hy = model.qz.in_y(model.qz.y_embed(model.qz.eye)).double()
        self.register_buffer("qz_hy", hy)
        self.register_buffer("qz_w1", sd["qz.in_x.weight"])
        self.register_buffer("qz_b1", sd["qz.in_x.bias"])
        self.register_buffer("qz_wm", sd["qz.head.mean.weight"])
        self.register_buffer("qz_bm", sd["qz.head.mean.bias"])

    def encoder_mean(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.mean) / self.range
        logits = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(h, self.qy_w1, self.qy_b1)), self.qy_w2, self.qy_b2)
        q = torch.softmax(logits, dim=-1)
        a = torch.relu(torch.nn.functional.linear(h, self.qz_w1, self.qz_b1).unsqueeze(-2) + self.qz_hy)
        z = torch.nn.functional.linear(a, self.qz_wm, self.qz_bm)
        return (q.unsqueeze(-1) * z).sum(-2)

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.features(positions, box).to(torch.float64)
        return self.encoder_mean(x).to(positions.dtype)


def train_gmvae_cv(work: Path, args) -> tuple:
    """Unbiased high-temperature run -> features -> GMVAE -> CV file; returns (path, sigmas, info)."""
    import mdtraj

    from gmvae_cv import fit

    ala = AlanineDipeptide()
    steps = int(round(args.train_ns * 1e6 / 2.0))
    stride = 250
    steps -= steps % stride
    run = ala.simulate(steps, stride, work / "train_md", temperature=args.train_temperature, seed=args.seed, platform="Reference")
    traj = mdtraj.load_dcd(str(run.trajectory), top=ala.mdtraj_topology)
    spec = alanine_heavy_atom_distances()
    x = spec.compute(traj, dtype=np.float32)
    torsions = alanine_backbone_torsions(transform="raw").compute(traj)
    labels = alanine_basin(torsions[:, 0], torsions[:, 1])
    gm = fit(x, n_clusters=4, latent_dim=2, epochs=args.train_epochs, patience=20, seed=args.seed, progress=False, feature_spec=spec)
    model = gm.model.eval()
    with torch.no_grad():
        z = model.forward_cv(torch.as_tensor(x)).numpy().astype(np.float64)
    wrapper = _PositionsCV(spec.torch_module(), model)
    with torch.no_grad():
        copy_err = float((wrapper.encoder_mean(torch.as_tensor(x, dtype=torch.float64)) - torch.as_tensor(z)).abs().max())
    if copy_err > 1e-4:
        raise SystemExit(f"the copied encoder differs from GMVAECV.forward_cv by {copy_err}")
    module = torch.jit.script(wrapper)
    rng = [[float(z[:, i].min()), float(z[:, i].max())] for i in range(z.shape[1])]
    path = save_cv_module(module, work / "gmvae_openmm.pt", n_atoms=22, n_cvs=2, feature_spec=spec,
                          extra={"K": 4, "cv_range": rng, "trained_here": True})
    eq = labels == 0
    sigmas = [float(np.std(z[eq, i])) for i in range(2)] if eq.sum() > 10 else [0.1 * (r[1] - r[0]) for r in rng]
    info = {"train_ns": args.train_ns, "train_temperature_K": args.train_temperature, "frames": int(len(x)),
            "frames_C7eq": int(eq.sum()), "frames_C7ax": int((labels == 1).sum()), "epochs": args.train_epochs,
            "cv_range": rng, "copy_vs_forward_cv_max_abs": copy_err,
            "final_val_loss": gm.history.get("valid_loss", [None])[-1] if gm.history else None}
    return path, sigmas, info


def analyse(out: Path, temperature: float, bias_factor: float, phi_psi_grid: bool) -> dict:
    """Transitions per ns and basin free-energy differences from a run directory."""
    with open(out / "COLVAR") as fh:
        fields = fh.readline().split()[2:]
    data = np.loadtxt(out / "COLVAR", comments="#")
    col = {f: i for i, f in enumerate(fields)}
    t = data[:, col["time"]]
    labels = alanine_basin(data[:, col["phi"]], data[:, col["psi"]])
    core = labels[labels >= 0]
    transitions = int(np.count_nonzero(core[1:] != core[:-1]))
    ns = (t[-1] - t[0]) / 1000.0 if len(t) > 1 else float("nan")
    kt = KB * temperature
    keep = t >= t[0] + 0.1 * (t[-1] - t[0])
    logw = data[keep, col["metad.rbias"]] / kt
    lab = labels[keep]
    res = {"simulated_ns": ns, "transitions": transitions, "transitions_per_ns": transitions / ns if ns > 0 else None,
           "fraction_frames": {"C7eq": float(np.mean(labels == 0)), "C7ax": float(np.mean(labels == 1))}}
    if (lab == 0).any() and (lab == 1).any():
        m = logw.max()
        w_eq = np.exp(logw[lab == 0] - m).sum()
        w_ax = np.exp(logw[lab == 1] - m).sum()
        res["dF_C7ax_minus_C7eq_reweighted_kJmol"] = float(-kt * math.log(w_ax / w_eq))
    else:
        res["dF_C7ax_minus_C7eq_reweighted_kJmol"] = None
    if phi_psi_grid:
        grid = np.loadtxt(out / "bias_grid.dat", comments="#")
        phi, psi, v = grid[:, 0], grid[:, 1], grid[:, 2]
        f = -bias_factor / (bias_factor - 1.0) * v
        gl = alanine_basin(phi, psi)
        m = (-f / kt).max()
        p_eq = np.exp(-f[gl == 0] / kt - m).sum()
        p_ax = np.exp(-f[gl == 1] / kt - m).sum()
        res["dF_C7ax_minus_C7eq_final_bias_kJmol"] = float(-kt * math.log(p_ax / p_eq)) if p_ax > 0 else None
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("sampling.json")))
    ap.add_argument("--cv", default=None, help="an exported GMVAE CV (EXP directory or model_openmm.pt); default: train one here")
    ap.add_argument("--sigma", type=float, nargs=2, default=None, help="sigmas of the GMVAE CV (default: C7eq std of the training run)")
    ap.add_argument("--ns", type=float, default=2.0, help="simulated time per CV, ns")
    ap.add_argument("--height", type=float, default=1.2)
    ap.add_argument("--pace", type=int, default=None, help="steps between hills (default: 1 ps)")
    ap.add_argument("--timestep", type=float, default=2.0, help="time step of both biased runs, fs (default 2)")
    ap.add_argument("--bias-factor", type=float, default=10.0)
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-ns", type=float, default=2.0)
    ap.add_argument("--train-temperature", type=float, default=800.0)
    ap.add_argument("--train-epochs", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="0.2 ns runs, short training (a smoke test)")
    ap.add_argument("--keep", default=None, help="keep the run directories there")
    args = ap.parse_args(argv)
    if args.quick:
        args.ns, args.train_ns, args.train_epochs = 0.2, 0.4, 10
    torch.manual_seed(args.seed)
    t0 = time.time()
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    work = Path(tmp.name if tmp else args.keep)
    work.mkdir(parents=True, exist_ok=True)
    ala = AlanineDipeptide()
    if args.pace is None:
        args.pace = int(round(1000.0 / args.timestep))
    n_steps = int(round(args.ns * 1e6 / args.timestep))
    n_steps -= n_steps % args.pace
    common = dict(system=ala.create_system(), topology=ala.topology, positions=ala.positions, n_steps=n_steps,
                  temperature=args.temperature, height=args.height, bias_factor=args.bias_factor, pace=args.pace,
                  seed=args.seed, traj_stride=0, colvar_stride=int(round(200.0 / args.timestep)), timestep=args.timestep / 1000.0, extra_colvar=alanine_backbone_torsions(transform="raw"))
    result = {"benchmark": "sampling", "settings": {k: v for k, v in vars(args).items()},
              "machine": {**machine_info(), "cpus": os.cpu_count()}}
    if args.cv is None:
        cv_path, sigmas, train_info = train_gmvae_cv(work, args)
        result["gmvae_training"] = train_info
    else:
        cv_path, sigmas = Path(args.cv), None
    gmvae = load_cv(cv_path)
    if args.sigma is not None:
        sigmas = list(args.sigma)
    elif sigmas is None and "cv_json" in gmvae.meta:
        sigmas = list(gmvae.meta["cv_json"]["plumed"]["metad"]["sigma"])  # the export's METAD choice
    if sigmas is None:
        raise SystemExit("give --sigma for an external CV")
    runs = {}
    res = run_metadynamics(feature_cv(alanine_backbone_torsions(transform="raw")), work / "phipsi", sigma=[0.35, 0.35], **common)
    runs["phi_psi"] = {"sigma": [0.35, 0.35], "platform": res.platform, "ns_per_day": res.ns_per_day,
                       **analyse(work / "phipsi", args.temperature, args.bias_factor, True)}
    res = run_metadynamics(gmvae, work / "gmvae", sigma=sigmas, **common)
    runs["gmvae"] = {"sigma": sigmas, "platform": res.platform, "ns_per_day": res.ns_per_day,
                     "grid": {k: res.info["params"]["metadynamics"][k] for k in ("grid_min", "grid_max", "grid_bin")},
                     "edge_events": res.info["warnings"]["edge_events"],
                     "colvar_rows_outside_grid": res.info["warnings"]["colvar_rows_outside_grid"],
                     **analyse(work / "gmvae", args.temperature, args.bias_factor, False)}
    result["runs"] = runs
    g, p = runs["gmvae"], runs["phi_psi"]
    result["comparison"] = {
        "transitions_per_ns_gmvae_over_phipsi": (g["transitions_per_ns"] / p["transitions_per_ns"]) if p["transitions_per_ns"] else None,
        "dF_reweighted_gmvae_minus_phipsi_kJmol": (g["dF_C7ax_minus_C7eq_reweighted_kJmol"] - p["dF_C7ax_minus_C7eq_reweighted_kJmol"])
        if None not in (g["dF_C7ax_minus_C7eq_reweighted_kJmol"], p["dF_C7ax_minus_C7eq_reweighted_kJmol"]) else None,
    }
    result["wall_s"] = time.time() - t0
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"runs": runs, "comparison": result["comparison"]}, indent=1))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
