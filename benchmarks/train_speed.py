"""Training speed of GMVAECV against peers, measured in the same run (JSON out, ratios).

Peers, on the same data and widths:
- mlcolvar's ``VariationalAutoEncoderCV`` (encoder [n, 32], decoder [128, n]): goal GMVAE/VAE <= 1.5;
- the GMVAE with a Python loop over the k components (the reference code's structure, written
  here with the same modules): goal loop/batched >= k/2 for k=5.

Time per optimisation step (forward, backward, Adam), median of interleaved repeats after
warm-up, for several batch sizes. Usage: ``python benchmarks/train_speed.py [--out benchmarks/train_speed.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from gmvae_cv import GMVAECV
from gmvae_cv.learn.loss import log_normal
from gmvae_cv._core.versions import machine_info  # noqa: E402


def loop_loss(model: GMVAECV, x: torch.Tensor) -> torch.Tensor:
    """The same loss with one pass per component (the reference code's structure)."""
    k = model.n_clusters
    xn = model.norm_in(x)
    qy = torch.softmax(model.qy(xn), -1)
    qz = model.qz
    hx = qz.in_x(xn)
    total = 0.0
    for i in range(k):
        y = torch.zeros(x.shape[0], k)
        y[:, i] = 1.0
        h = torch.relu(hx + qz.in_y(qz.y_embed(y)))
        zm, zv = qz.head(h)
        z = zm + torch.sqrt(zv) * torch.randn_like(zm)
        pm, pv = model.pz.head(model.pz.nn(y))
        xm, xv = model.px(z)
        li = -log_normal(xn, xm, xv) + log_normal(z, zm, zv) - log_normal(z, pm, pv) + math.log(k)
        total = total + qy[:, i] * li
    nent = torch.sum(qy * torch.log(qy + 1e-30), -1)
    return (total + model.loss_fn.entropy_weight * nent).mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/train_speed.json")
    ap.add_argument("--n-features", type=int, default=25)
    ap.add_argument("--batches", default="256,1000,5000", help="batch sizes, comma-separated")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (recorded)")
    args = ap.parse_args()
    from mlcolvar.cvs import VariationalAutoEncoderCV

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, k = args.n_features, args.k
    gm = GMVAECV(n, 2, k)
    gm.norm_in.set_custom(torch.zeros(n), torch.ones(n))
    vae = VariationalAutoEncoderCV(2, [n, 32], [128, n])
    vae.norm_in.set_custom(torch.zeros(n), torch.ones(n))
    opts = {"gmvae_batched": torch.optim.Adam(gm.parameters()), "gmvae_loop": torch.optim.Adam(gm.parameters()),
            "mlcolvar_vae": torch.optim.Adam(vae.parameters())}
    rows = []
    for b in [int(v) for v in args.batches.split(",")]:
        x = torch.randn(b, n)
        losses = {
            "gmvae_batched": lambda: gm.loss_terms({"data": x})["loss"],
            "gmvae_loop": lambda: loop_loss(gm, x),
                "mlcolvar_vae": lambda: _vae_loss(vae, x),
        }
        times: dict[str, list] = {name: [] for name in losses}
        for rep in range(args.reps + 2):  # interleaved, first two rounds are warm-up
            for name, loss_fn in losses.items():
                t = time.perf_counter()
                opts[name].zero_grad()
                loss_fn().backward()
                opts[name].step()
                if rep >= 2:
                    times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append({
            "batch": b,
            "seconds_per_step": med,
            "gmvae_over_vae": med["gmvae_batched"] / med["mlcolvar_vae"],
            "loop_over_batched": med["gmvae_loop"] / med["gmvae_batched"],
        })
    result = {
        "benchmark": "train_speed",
        "command": "python benchmarks/train_speed.py",
        "machine": {**machine_info(), "torch_threads": args.threads},
        "setup": {"n_features": n, "k": k, "latent_dim": 2, "widths": "qy[32] qz[16] pz[16] px[128]; VAE enc[32] dec[128]",
                  "timing": "median over interleaved repeats of one Adam step (forward, backward, update)"},
        "rows": rows,
        "goals": {"gmvae_over_vae": "<= 1.5", "loop_over_batched": f">= {k / 2}"},
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))


def _vae_loss(vae, x: torch.Tensor) -> torch.Tensor:
    mean, logvar, xh = vae.encode_decode(x)
    return vae.loss_fn(x, xh, mean, logvar, vae.beta)


if __name__ == "__main__":
    main()
