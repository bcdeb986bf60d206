"""Geometry at Qwen3-4B scale: six random rank-32 adapters on 36 layers x (q, k, v, o).

Shapes (d_out x d_in): q 4096x2560, k and v 1024x2560, o 2560x4096. Prints (1) the wall time of the
whole analysis (all 15 pairs, every metric) with ``analysis.analyse`` against the previous
implementation (``analyse_reference`` below: per-module loops, cosines and inner products recomputed
per pair and per layer, every principal angle with its sine form), their ratio and the largest
|difference| over every numeric output; (2) factored vs dense time on a sample of modules, where
dense = materialise both Delta W in float64 + full-size SVDs + the same cosine / angles, as a ratio
measured in this run.
Usage: python benchmarks/geometry_scale.py [--layers 36] [--rank 32] [--sample 4] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch

from weightspace.weights import geometry as G
from weightspace.model.adapters import Factor, check_same_modules
from weightspace.weights.analysis import analyse

SHAPES = {"q_proj": (4096, 2560), "k_proj": (1024, 2560), "v_proj": (1024, 2560), "o_proj": (2560, 4096)}
METHODS = ("sft", "rft", "dft", "rift", "grpo", "dpo")


def _principal_angles_reference(U1: torch.Tensor, U2: torch.Tensor) -> torch.Tensor:
    """The previous ``geometry.principal_angles``: the sine form always computed."""
    M = U1.T @ U2
    cos = torch.linalg.svdvals(M).clamp(max=1.0)
    sin = torch.linalg.svdvals(U2 - U1 @ M).flip(0).clamp(max=1.0)
    return torch.where(cos**2 < 0.5, torch.arccos(cos), torch.arcsin(sin))


def analyse_reference(deltas: dict[str, dict[str, Factor]], top_k: int,
                      reference: str) -> tuple[dict, dict[str, list[dict]]]:
    """The previous ``analysis.analyse`` (with the previous ``principal_angles``), kept as this benchmark's
    and the tests' baseline."""
    check_same_modules(deltas)
    methods = list(deltas)
    if reference not in deltas:
        raise ValueError(f"geometry.reference: {reference!r} is not among the methods {methods}")
    modules = list(deltas[methods[0]])
    r = min(f.A.shape[0] for f in deltas[methods[0]].values())
    if not 1 <= top_k <= r:
        raise ValueError(f"geometry.top_k: {top_k} must lie in 1..r={r}")
    layers = sorted({deltas[methods[0]][mod].layer for mod in modules})
    by_layer = {L: [mod for mod in modules if deltas[methods[0]][mod].layer == L] for L in layers}
    svd = {m: {mod: G.thin_svd(f) for mod, f in deltas[m].items()} for m in methods}
    sq = {m: {mod: G.sq_norm(f) for mod, f in deltas[m].items()} for m in methods}

    metrics: dict = {"frobenius": {}, "effective_rank": {}, "cosine": {"global": {}}, "angle_top1": {},
                     f"angle_top{top_k}": {}, "u1_alignment": {}, "v1_alignment": {},
                     "orthogonal_fraction": {"direction": {}, "colspace": {}, "global_projection": {}}}
    for m in methods:
        metrics["frobenius"][m] = math.sqrt(sum(sq[m].values()))
        metrics["effective_rank"][m] = sum(G.effective_rank(svd[m][mod][1]) for mod in modules) / len(modules)

    cos_rows = [{"layer": L} for L in layers]
    for a, b in itertools.combinations(methods, 2):
        pair = f"{a}-{b}"
        fa, fb = [deltas[a][mod] for mod in modules], [deltas[b][mod] for mod in modules]
        metrics["cosine"]["global"][pair] = G.cosine(fa, fb)
        for row, L in zip(cos_rows, layers):
            row[pair] = G.cosine([deltas[a][mod] for mod in by_layer[L]], [deltas[b][mod] for mod in by_layer[L]])
        top1, topk, u1, v1 = [], [], [], []
        for mod in modules:
            (Ua, _, Va), (Ub, _, Vb) = svd[a][mod], svd[b][mod]
            ang = _principal_angles_reference(Ua[:, :top_k], Ub[:, :top_k])
            top1.append(math.degrees(ang[0].item()))
            topk.append(math.degrees(ang[-1].item()))
            u1.append(abs((Ua[:, 0] @ Ub[:, 0]).item()))
            v1.append(abs((Va[:, 0] @ Vb[:, 0]).item()))
        for key, vals in (("angle_top1", top1), (f"angle_top{top_k}", topk)):
            med, q25, q75 = G.median_iqr(vals)
            metrics[key][pair] = {"median": med, "q25": q25, "q75": q75}
        metrics["u1_alignment"][pair] = sum(u1) / len(u1)
        metrics["v1_alignment"][pair] = sum(v1) / len(v1)

    orth_rows = [{"layer": L} for L in layers]
    ref = deltas[reference]
    for m in methods:
        if m == reference:
            continue
        res_dir = {mod: max(G.direction_residual_sq(deltas[m][mod], ref[mod]), 0.0) for mod in modules}
        res_col = {}
        for mod in modules:
            U, S, _ = svd[reference][mod]
            U = U[:, S > S[0] * 1e-12]  # basis of col(dW_ref)
            res_col[mod] = max(G.colspace_residual_sq(deltas[m][mod], U), 0.0)
        for name, res in (("direction", res_dir), ("colspace", res_col)):
            metrics["orthogonal_fraction"][name][m] = math.sqrt(sum(res.values()) / sum(sq[m].values()))
        cos = metrics["cosine"]["global"].get(f"{reference}-{m}", metrics["cosine"]["global"].get(f"{m}-{reference}"))
        metrics["orthogonal_fraction"]["global_projection"][m] = math.sqrt(max(0.0, 1.0 - cos**2))
        for row, L in zip(orth_rows, layers):
            row[m] = math.sqrt(sum(res_dir[mod] for mod in by_layer[L]) / sum(sq[m][mod] for mod in by_layer[L]))
            row[f"{m}_colspace"] = math.sqrt(sum(res_col[mod] for mod in by_layer[L])
                                             / sum(sq[m][mod] for mod in by_layer[L]))
    metrics["modules"], metrics["top_k"], metrics["reference"] = len(modules), top_k, reference
    return metrics, {"cosine_per_layer": cos_rows, "orthogonal_fraction_per_layer": orth_rows}


def leaves(x, path: str = ""):
    """(path, value) of every leaf of nested dicts, lists and tuples."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, x


def max_difference(new, old) -> float:
    """max |new - old| over every numeric leaf; the structures and the other leaves must be equal."""
    a, b = dict(leaves(new)), dict(leaves(old))
    if list(a) != list(b):
        raise AssertionError(f"different outputs: {sorted(set(a) ^ set(b))[:5]}")
    if any(not isinstance(v, (int, float)) and v != b[k] for k, v in a.items()):
        raise AssertionError("different non-numeric outputs")
    return max(abs(v - b[k]) for k, v in a.items() if isinstance(v, (int, float)))


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
    ap.add_argument("--repeats", type=int, default=1, help="whole-analysis runs of each implementation (best kept)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    deltas = {m: random_adapter(args.layers, args.rank, seed=i) for i, m in enumerate(METHODS)}
    first = {m: dict(itertools.islice(d.items(), 4)) for m, d in deltas.items()}
    analyse(first, top_k=args.top_k, reference="sft")  # warm-up: one-time library set-up timed in neither
    analyse_reference(first, top_k=args.top_k, reference="sft")
    times: dict[str, list[float]] = {"new": [], "previous": []}
    out = {}
    for _ in range(args.repeats):  # alternated, so that load from other processes hits both alike
        for name, f in (("new", analyse), ("previous", analyse_reference)):
            t = time.perf_counter()
            out[name] = f(deltas, top_k=args.top_k, reference="sft")
            times[name].append(time.perf_counter() - t)
    new, old = out["new"], out["previous"]
    whole, whole_old = min(times["new"]), min(times["previous"])
    metrics = new[0]
    print(f"whole analysis: {len(METHODS)} adapters x {metrics['modules']} modules, 15 pairs: {whole:.2f}s "
          f"(previous implementation {whole_old:.2f}s; ratio {whole_old / whole:.1f}x; "
          f"max |difference| {max_difference(new, old):.1e})")
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
