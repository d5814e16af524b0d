"""Training speed of GMVAECV against peers, measured in the same run (JSON out, ratios).

Peers, on the same data and widths:
- mlcolvar's ``VariationalAutoEncoderCV`` (encoder [n, 32], decoder [128, n]): goal GMVAE/VAE <= 1.5;
- the GMVAE with a Python loop over the k components (the reference code's structure, written
  here with the same modules): goal loop/batched >= k/2 for k=5.

Time per optimisation step (forward, backward, Adam) on batches of 5000 frames, median of
repeats, after warm-up. Usage: ``python benchmarks/train_speed.py [--out benchmarks/train_speed.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from gmvae_cv import GMVAECV
from gmvae_cv.loss import log_normal


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


def time_steps(step, n_warm: int, n_rep: int) -> float:
    for _ in range(n_warm):
        step()
    times = []
    for _ in range(n_rep):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/train_speed.json")
    ap.add_argument("--n-features", type=int, default=25)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    from mlcolvar.cvs import VariationalAutoEncoderCV

    torch.manual_seed(0)
    n, b, k = args.n_features, args.batch, args.k
    x = torch.randn(b, n)
    gm = GMVAECV(n, 2, k)
    gm.norm_in.set_custom(torch.zeros(n), torch.ones(n))
    vae = VariationalAutoEncoderCV(2, [n, 32], [128, n])
    vae.norm_in.set_custom(torch.zeros(n), torch.ones(n))

    def stepper(model, loss_fn):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()

        return step

    batch = {"data": x}
    t_gm = time_steps(stepper(gm, lambda: gm.loss_terms(batch)["loss"]), 5, args.reps)
    t_loop = time_steps(stepper(gm, lambda: loop_loss(gm, x)), 5, args.reps)

    def vae_loss():
        mean, logvar, xh = vae.encode_decode(x)
        return vae.loss_fn(x, xh, mean, logvar, vae.beta)

    t_vae = time_steps(stepper(vae, vae_loss), 5, args.reps)
    result = {
        "benchmark": "train_speed",
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "setup": {"n_features": n, "batch": b, "k": k, "latent_dim": 2, "widths": "qy[32] qz[16] pz[16] px[128]; VAE enc[32] dec[128]"},
        "seconds_per_step": {"gmvae_batched": t_gm, "gmvae_loop": t_loop, "mlcolvar_vae": t_vae},
        "ratios": {
            "gmvae_over_vae": t_gm / t_vae,
            "loop_over_batched": t_loop / t_gm,
        },
        "goals": {"gmvae_over_vae": "<= 1.5", "loop_over_batched": f">= {k / 2}"},
    }
    result["goals_met"] = {
        "gmvae_over_vae": result["ratios"]["gmvae_over_vae"] <= 1.5,
        "loop_over_batched": result["ratios"]["loop_over_batched"] >= k / 2,
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
