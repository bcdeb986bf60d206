"""The paper's weight-space analyses over a set of adapters, built on ``geometry``'s exact primitives.

Input: ``deltas[method][module] = Factor``. Output: nested metrics (``dvc metrics`` flattens them to
keys like ``cosine.global.sft-rft``) and per-layer tables for ``dvc plots``.

Every per-module quantity is computed once (``per_module``, batched over modules of one shape) and
then aggregated in module order.

Orthogonal fraction of method m off the reference (SFT), two definitions:
- direction (the paper's): per module ||dW_m - P dW_m|| / ||dW_m||, P the projection onto the
  1-D span of the MATRIX dW_sft; globally and per layer aggregated as
  sqrt(sum residual^2 / sum ||dW_m||^2).
- global projection: sqrt(1 - cos^2) with the global cosine, i.e. the whole flattened dW_m projected
  on the whole dW_sft (one direction for all modules); never smaller than the direction form.
- column space: the same with P = U U^T, U an orthonormal basis of col(dW_sft): the part of dW_m
  whose output directions SFT's update does not use. It is never larger than the direction form.
"""

from __future__ import annotations

import logging
import math

from . import geometry as G
from ..model.adapters import Factor, check_same_modules
from ..core.pairs import Pair, combinations, lookup

log = logging.getLogger(__name__)

# modules per batch (benchmarks/geometry_scale.py): whole shape groups, 36 to 72 modules at Qwen3-4B scale,
# ran ~30% slower than batches of 12 on one thread (larger fresh allocations); batches of 1 to 12 ran alike
BATCH = 12


def analyse(deltas: dict[str, dict[str, Factor]], top_k: int, reference: str) -> tuple[dict, dict[str, list[dict]]]:
    """All analyses; returns (metrics, tables). Pairs follow the order of ``deltas``."""
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
    v = per_module(deltas, top_k, reference)
    sq, inner = v["sq"], v["inner"]

    def cosine(a: str, b: str, mods: list[str]) -> float:
        return G.cosine_of_sums(sum(inner[a, b][mod] for mod in mods), sum(sq[a][mod] for mod in mods),
                                sum(sq[b][mod] for mod in mods))

    metrics: dict = {"frobenius": {}, "effective_rank": {}, "cosine": {"global": {}}, "angle_top1": {},
                     f"angle_top{top_k}": {}, "u1_alignment": {}, "v1_alignment": {},
                     "orthogonal_fraction": {"direction": {}, "colspace": {}, "global_projection": {}}}
    for m in methods:
        metrics["frobenius"][m] = math.sqrt(sum(sq[m][mod] for mod in modules))
        metrics["effective_rank"][m] = sum(v["effective_rank"][m][mod] for mod in modules) / len(modules)

    cos_rows = [{"layer": L} for L in layers]
    for a, b in combinations(methods):
        pair = Pair(a, b).key
        metrics["cosine"]["global"][pair] = cosine(a, b, modules)
        for row, L in zip(cos_rows, layers):
            row[pair] = cosine(a, b, by_layer[L])
        for key in ("angle_top1", f"angle_top{top_k}"):
            med, q25, q75 = G.median_iqr([v[key][a, b][mod] for mod in modules])
            metrics[key][pair] = {"median": med, "q25": q25, "q75": q75}
        for key in ("u1_alignment", "v1_alignment"):
            metrics[key][pair] = sum(v[key][a, b][mod] for mod in modules) / len(modules)

    orth_rows = [{"layer": L} for L in layers]
    for m in methods:
        if m == reference:
            continue
        res_dir = {mod: max(sq[m][mod] - inner[m, reference][mod] ** 2 / sq[reference][mod], 0.0) for mod in modules}
        res_col = {mod: max(sq[m][mod] - v["colspace_sq"][m][mod], 0.0) for mod in modules}
        for name, res in (("direction", res_dir), ("colspace", res_col)):
            metrics["orthogonal_fraction"][name][m] = math.sqrt(sum(res.values()) / sum(sq[m][mod] for mod in modules))
        cos = lookup(metrics["cosine"]["global"], reference, m)
        metrics["orthogonal_fraction"]["global_projection"][m] = math.sqrt(max(0.0, 1.0 - cos**2))
        for row, L in zip(orth_rows, layers):
            row[m] = math.sqrt(sum(res_dir[mod] for mod in by_layer[L]) / sum(sq[m][mod] for mod in by_layer[L]))
            row[f"{m}_colspace"] = math.sqrt(sum(res_col[mod] for mod in by_layer[L])
                                             / sum(sq[m][mod] for mod in by_layer[L]))
    metrics["modules"], metrics["top_k"], metrics["reference"] = len(modules), top_k, reference
    return metrics, {"cosine_per_layer": cos_rows, "orthogonal_fraction_per_layer": orth_rows}


def per_module(deltas: dict[str, dict[str, Factor]], top_k: int, reference: str) -> dict[str, dict]:
    """Every per-module quantity the analyses aggregate, each computed once: ``v[name][key][module]``
    with key a method (sq = ||Delta W||_F^2, effective_rank, colspace_sq = ||U_ref U_ref^T Delta W||_F^2
    for m != reference) or a pair (a, b), both orders (inner, angle_top1 / angle_top{k} in degrees,
    u1 / v1_alignment = |<u1_a, u1_b>|, |<v1_a, v1_b>|).

    Modules with the same factor shapes in every method are stacked, in batches of ``BATCH``, and go
    through batched linear algebra together: one thin SVD per (method, module), one inner product per
    (pair, module). sq is sum sigma^2 of that SVD; only the top_k singular vectors are formed, all r
    for the reference (its column space)."""
    methods = list(deltas)
    v: dict[str, dict] = {k: {} for k in ("sq", "effective_rank", "colspace_sq", "inner", "angle_top1",
                                          f"angle_top{top_k}", "u1_alignment", "v1_alignment")}
    groups: dict[tuple, list[str]] = {}
    for mod in deltas[methods[0]]:
        groups.setdefault(tuple((deltas[m][mod].A.shape, deltas[m][mod].B.shape) for m in methods), []).append(mod)

    for names in [g[i:i + BATCH] for g in groups.values() for i in range(0, len(g), BATCH)]:
        def put(name: str, key, vals: list[float]) -> None:  # this batch's values, by module; pairs both ways
            v[name].setdefault(key, {}).update(zip(names, vals))
            if isinstance(key, tuple):
                v[name][key[::-1]] = v[name][key]

        st = {m: G.stack([deltas[m][mod] for mod in names]) for m in methods}
        svd = {m: G.thin_svd_stack(st[m], None if m == reference else top_k) for m in methods}  # U, S, V
        for m in methods:
            put("sq", m, svd[m][1].square().sum(-1).tolist())  # ||Delta W||_F^2 = sum sigma^2
            put("effective_rank", m, [G.effective_rank(S) for S in svd[m][1]])
        for a, b in combinations(methods):
            (Ua, _, Va), (Ub, _, Vb) = svd[a], svd[b]
            put("inner", (a, b), G.inner_stack(st[a], st[b]).tolist())
            ang = G.principal_angles(Ua[..., :top_k], Ub[..., :top_k])  # (N, k)
            put("angle_top1", (a, b), [math.degrees(x) for x in ang[:, 0].tolist()])
            put(f"angle_top{top_k}", (a, b), [math.degrees(x) for x in ang[:, -1].tolist()])
            put("u1_alignment", (a, b), (Ua[..., 0] * Ub[..., 0]).sum(-1).abs().tolist())
            put("v1_alignment", (a, b), (Va[..., 0] * Vb[..., 0]).sum(-1).abs().tolist())
        U, S, _ = svd[reference]
        U = U * (S > S[:, :1] * 1e-12)[:, None, :]  # basis of col(dW_ref), null directions zeroed
        for m in methods:
            if m != reference:
                put("colspace_sq", m, G.colspace_sq_stack(st[m], U).tolist())
    return v


def seed_alignment(snapshots) -> list[dict]:
    """The seed-alignment curve of two runs of one method from ``snapshots``: (step, the run's factors, its seed
    twin's factors) in step order (``adapters.snapshot_pairs`` reads them one step at a time). Per step, the
    mean |<u1, u1'>| and |<v1, v1'>| over modules, the median over modules of the angle between u1 and u1'
    (degrees) and the global cosine. A step where either adapter has not moved from its init (Delta W = 0: an
    online run with no reward variance yet) is left out."""
    from ..model.adapters import frobenius

    rows = []
    for s, fa, fb in snapshots:
        if frobenius(fa) == 0 or frobenius(fb) == 0:
            log.info("seed alignment: step %d left out, an adapter has not moved from its init (Delta W = 0)", s)
            continue
        m, _ = analyse({"a": fa, "b": fb}, 1, "a")
        rows.append({"step": s, "u1_alignment": m["u1_alignment"]["a-b"], "v1_alignment": m["v1_alignment"]["a-b"],
                     "angle_u1_median": m["angle_top1"]["a-b"]["median"], "cosine": m["cosine"]["global"]["a-b"]})
    return rows
