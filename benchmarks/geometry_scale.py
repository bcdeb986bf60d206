"""Geometry at Qwen3-4B scale: six random rank-32 adapters on 36 layers x (q, k, v, o).

Shapes (d_out x d_in): q 4096x2560, k and v 1024x2560, o 2560x4096. Prints (1) the wall time of the
whole analysis (all 15 pairs, every metric), (2) factored vs dense time on a sample of modules, where
dense = materialise both Delta W in float64 + full-size SVDs + the same cosine / angles, as a ratio
measured in this run.
Usage: python benchmarks/geometry_scale.py [--layers 36] [--rank 32] [--sample 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from weightspace import geometry as G
from weightspace.adapters import Factor
from weightspace.analysis import analyse

SHAPES = {"q_proj": (4096, 2560), "k_proj": (1024, 2560), "v_proj": (1024, 2560), "o_proj": (2560, 4096)}
METHODS = ("sft", "rft", "dft", "rift", "grpo", "dpo")


def random_adapter(layers: int, r: int, seed: int) -> dict[str, Factor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for L in range(layers):
        for p, (m, n) in SHAPES.items():
            A = torch.randn(r, n, generator=g, dtype=torch.float64) / n**0.5
            B = torch.randn(m, r, generator=g, dtype=torch.float64) * 1e-3
            out[f"model.layers.{L}.self_attn.{p}"] = Factor(A, B, 2.0, L, p)
    return out


def pair_factored(f: Factor, g: Factor, k: int) -> tuple[float, float]:
    Uf, _, _ = G.thin_svd(f)
    Ug, _, _ = G.thin_svd(g)
    return G.cosine([f], [g]), G.principal_angles(Uf[:, :k], Ug[:, :k])[0].item()


def pair_dense(f: Factor, g: Factor, k: int) -> tuple[float, float]:
    F, H = (f.scale * f.B @ f.A).numpy(), (g.scale * g.B @ g.A).numpy()
    cos = float((F * H).sum() / np.sqrt((F * F).sum() * (H * H).sum()))
    Uf = np.linalg.svd(F, full_matrices=False)[0][:, :k]
    Uh = np.linalg.svd(H, full_matrices=False)[0][:, :k]
    return cos, float(np.arccos(np.clip(np.linalg.svd(Uf.T @ Uh, compute_uv=False)[0], -1, 1)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--sample", type=int, default=4, help="modules timed densely (one per projection type)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    deltas = {m: random_adapter(args.layers, args.rank, seed=i) for i, m in enumerate(METHODS)}
    t = time.perf_counter()
    metrics, _ = analyse(deltas, top_k=args.top_k, reference="sft")
    whole = time.perf_counter() - t
    print(f"whole analysis: {len(METHODS)} adapters x {metrics['modules']} modules, 15 pairs: {whole:.2f}s")
    print(f"  (chance level) median top-1 angle sft-rft: {metrics['angle_top1']['sft-rft']['median']:.1f} deg")

    names = list(deltas["sft"])[: args.sample]
    t = time.perf_counter()
    fac = [pair_factored(deltas["sft"][n], deltas["dpo"][n], args.top_k) for n in names]
    t_fac = time.perf_counter() - t
    t = time.perf_counter()
    den = [pair_dense(deltas["sft"][n], deltas["dpo"][n], args.top_k) for n in names]
    t_den = time.perf_counter() - t
    err = max(max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(fac, den))
    print(f"sample of {len(names)} modules, one pair: factored {t_fac * 1e3:.1f} ms, dense {t_den * 1e3:.0f} ms "
          f"(max |difference| {err:.1e})")
    print(f"ratio dense / factored: {t_den / t_fac:.0f}x")


if __name__ == "__main__":
    main()
