"""The W0-relative analysis (``pretrained.analyse_relative``) at Qwen3-4B scale: 13 random rank-32 adapters
(6 methods, their 6 seed twins, one control) on 36 layers x (q, k, v, o).

Shapes (d_out x d_in): q 4096x2560, k and v 1024x2560, o 2560x4096. W0 per module, stored in bf16 as a GPU
base is: N(0, 0.02^2) entries plus a rank-128 spike with singular-value scale 20 (i + 1)^-0.8 on random
directions (a Marchenko-Pastur bulk of spectral norm ~2.3 under a decaying top). Adapters: float64
factors, A ~ N(0, 1/d_in), B ~ N(0, 3e-4^2), scale 2, so ||dW||_F ~ 0.1-0.2 per module (the paper's
SFT ~2.8 over 144 modules) against ||W0||_F ~ 30-65.
Prints (1) the wall time of the whole analysis in partial mode (top-K of W0, dense pass in float32), with the
chance levels of the six methods (one random update of the same shape, rank and norm per method and module);
(2) on ``--sample`` modules (smallest first) with the first ``--sample-adapters`` adapters: the exact
full mode (float64 SVDs of W0 and of each W+; dense pass in float64) against the partial mode, both timed
in this run, as a ratio, and the largest |difference| of each metric; (3) where the partial mode's time
goes on those modules (factorisation / per-adapter spectra / dense pass).
Measured figures: benchmarks/README.md.
Usage: python benchmarks/w0_scale.py [--layers 36] [--adapters 13] [--sample 4] [--partial-rank 64] [--threads 2] [--intruder-rate 0.05]
Smoke run: --layers 1 --adapters 3 --sample 1 --sample-adapters 1
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from weightspace.weights import pretrained as P
from weightspace.model.adapters import Factor

SHAPES = {"q_proj": (4096, 2560), "k_proj": (1024, 2560), "v_proj": (1024, 2560), "o_proj": (2560, 4096)}
METHODS = ("sft", "rft", "dft", "rift", "grpo", "dpo")
NAMES = [*METHODS, *(f"{m}_seed123" for m in METHODS), "control"]


def random_w0(m: int, n: int, seed: int, spike_rank: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, generator=g) * 0.02
    s = 20 * (torch.arange(spike_rank) + 1.0) ** -0.8
    W += (torch.randn(m, spike_rank, generator=g) / m**0.5 * s) @ (torch.randn(spike_rank, n, generator=g) / n**0.5)
    return W.to(torch.bfloat16)


def random_adapter(layers: int, r: int, seed: int) -> dict[str, Factor]:
    g = torch.Generator().manual_seed(1000 + seed)
    out = {}
    for L in range(layers):
        for p, (m, n) in SHAPES.items():
            A = torch.randn(r, n, generator=g, dtype=torch.float64) / n**0.5
            B = torch.randn(m, r, generator=g, dtype=torch.float64) * 3e-4
            out[f"model.layers.{L}.self_attn.{p}"] = Factor(A, B, 2.0, L, p)
    return out


def module_metrics(W0: torch.Tensor, fs: list[Factor], rank: int | None, k: int, eps: float,
                   dtype: torch.dtype) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Every metric of ``analyse_relative`` at one module for the adapters fs (intruders at one given eps, so
    that both modes count against the same threshold), and the time of each part."""
    t = time.perf_counter()
    spec = P.factorise(W0, rank)
    times = {"factorise": time.perf_counter() - t}
    t = time.perf_counter()
    out: dict[str, list[float]] = {}
    for f in fs:
        ov = P.subspace_overlap(f, spec, k)
        intr = P.intruders(f, spec, k, eps)
        vals = {"angle_left_top1": ov["angles_left"][0], f"angle_left_top{k}": ov["angles_left"][-1],
                "angle_right_top1": ov["angles_right"][0], f"angle_right_top{k}": ov["angles_right"][-1]}
        vals = {key: math.degrees(x.item()) for key, x in vals.items()}
        vals.update(energy_left=ov["energy_left"], energy_right=ov["energy_right"], intruders=intr["count"],
                    intruder_energy=intr["energy_share"], spectral_shift=P.spectral_shift(f, spec))
        for key, x in vals.items():
            out.setdefault(key, []).append(x)
    times["spectra"] = time.perf_counter() - t
    t = time.perf_counter()
    out["bf16_unchanged"] = P.bf16_unchanged(W0, fs, dtype)
    times["dense"] = time.perf_counter() - t
    return out, times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--adapters", type=int, default=13)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--intruder-rate", type=float, default=0.05)
    ap.add_argument("--partial-rank", type=int, default=64, help="K: W0's top singular triplets kept")
    ap.add_argument("--sample", type=int, default=4, help="modules compared with the exact full mode")
    ap.add_argument("--sample-adapters", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t = time.perf_counter()
    names = NAMES[: args.adapters]
    deltas = {m: random_adapter(args.layers, args.rank, i) for i, m in enumerate(names)}
    modules = list(deltas[names[0]])
    weights = {mod: random_w0(*SHAPES[mod.rsplit(".", 1)[-1]], seed=i) for i, mod in enumerate(modules)}
    print(f"set-up (random W0 and adapters, not timed below): {time.perf_counter() - t:.1f}s")
    # chance levels for the six methods, not for their twins or the control: what the geometry stage asks for
    kw = dict(top_k=args.top_k, intruder_rate=args.intruder_rate, partial_rank=args.partial_rank,
              dense_dtype=torch.float32, chance_for=[m for m in names if m in METHODS])
    first = {mod: weights[mod] for mod in modules[1:2]}  # warm-up on one k_proj: library set-up timed nowhere
    P.analyse_relative({m: {mod: d[mod] for mod in first} for m, d in deltas.items()}, first, **kw)

    t = time.perf_counter()
    metrics, _ = P.analyse_relative(deltas, weights, **kw)
    whole = time.perf_counter() - t
    print(f"whole analysis: {len(names)} adapters x {metrics['modules']} modules, K={args.partial_rank}, "
          f"top_k={args.top_k}, chance levels for {len(kw['chance_for'])}: {whole:.1f}s (target 180 s)")
    for key in ("angle_left_top1", "energy_left", "intruders", "intruders_certified", "spectral_shift",
                "stable_rank", "bf16_unchanged"):
        vals, chance = list(metrics[key].values()), list(metrics["chance"][key].values())
        print(f"  {key}: {min(vals):.4g} .. {max(vals):.4g} over adapters; chance {min(chance):.4g} .. "
              f"{max(chance):.4g}")
    print("  intruder eps per projection: " + ", ".join(f"{p} {e:.3f}" for p, e in metrics["intruder_eps"].items()))

    order = {"k_proj": 0, "v_proj": 1, "q_proj": 2, "o_proj": 3}
    sample = sorted(modules[:4], key=lambda mod: order[mod.rsplit(".", 1)[-1]])[: args.sample]
    if not sample:
        return
    fa = names[: args.sample_adapters]
    errs: dict[str, float] = {}
    t_full = t_part = 0.0
    parts = {"factorise": 0.0, "spectra": 0.0, "dense": 0.0}
    for mod in sample:
        fs = [deltas[m][mod] for m in fa]
        eps = P.intruder_threshold(P.factorise(weights[mod], None), args.intruder_rate)
        full, tf = module_metrics(weights[mod], fs, None, args.top_k, eps, torch.float64)
        part, tp = module_metrics(weights[mod], fs, args.partial_rank, args.top_k, eps, torch.float32)
        # the partial shift is over the top K: compare with the dense shift over the same K values
        s0 = torch.linalg.svdvals(weights[mod].double())[: args.partial_rank]
        sp = torch.stack([torch.linalg.svdvals(weights[mod].double() + f.scale * f.B @ f.A)[: args.partial_rank]
                          for f in fs])
        full["spectral_shift"] = ((sp - s0).norm(dim=-1) / s0.norm()).tolist()
        t_full, t_part = t_full + sum(tf.values()), t_part + sum(tp.values())
        for key in tp:
            parts[key] += tp[key]
        for key in full:
            errs[key] = max([errs.get(key, 0.0)] + [abs(a - b) for a, b in zip(full[key], part[key])])
    print(f"sample: {len(sample)} modules ({', '.join(s.rsplit('.', 1)[-1] for s in sample)}) x {len(fa)} adapters: "
          f"full (exact, float64) {t_full:.1f}s, partial (K={args.partial_rank}, dense pass float32) {t_part:.2f}s; "
          f"ratio full / partial {t_full / t_part:.0f}x")
    print("  partial mode's time: " + ", ".join(f"{k} {v / t_part:.0%}" for k, v in parts.items()))
    print("  max |full - partial| (angles in degrees; the shift against the dense top-K shift): "
          + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))


if __name__ == "__main__":
    main()
