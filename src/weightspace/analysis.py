"""The paper's weight-space analyses over a set of adapters, built on ``geometry``'s exact primitives.

Input: ``deltas[method][module] = Factor``. Output: nested metrics (``dvc metrics`` flattens them to
keys like ``cosine.global.sft-rft``) and per-layer tables for ``dvc plots``.

Orthogonal fraction of method m off the reference (SFT), two definitions:
- direction (the paper's): per module ||dW_m - P dW_m|| / ||dW_m||, P the projection onto the
  1-D span of the MATRIX dW_sft; globally and per layer aggregated as
  sqrt(sum residual^2 / sum ||dW_m||^2).
- column space: the same with P = U U^T, U an orthonormal basis of col(dW_sft): the part of dW_m
  whose output directions SFT's update does not use. It is never larger than the direction form.
"""

from __future__ import annotations

import itertools
import logging
import math

from . import geometry as G
from .adapters import Factor, check_same_modules

log = logging.getLogger(__name__)


def _deg(x: float) -> float:
    return math.degrees(x)


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
    svd = {m: {mod: G.thin_svd(f) for mod, f in deltas[m].items()} for m in methods}
    sq = {m: {mod: G.sq_norm(f) for mod, f in deltas[m].items()} for m in methods}

    metrics: dict = {"frobenius": {}, "effective_rank": {}, "cosine": {"global": {}}, "angle_top1": {},
                     f"angle_top{top_k}": {}, "u1_alignment": {}, "v1_alignment": {},
                     "orthogonal_fraction": {"direction": {}, "colspace": {}}}
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
            ang = G.principal_angles(Ua[:, :top_k], Ub[:, :top_k])
            top1.append(_deg(ang[0].item()))
            topk.append(_deg(ang[-1].item()))
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
        for row, L in zip(orth_rows, layers):
            row[m] = math.sqrt(sum(res_dir[mod] for mod in by_layer[L]) / sum(sq[m][mod] for mod in by_layer[L]))
            row[f"{m}_colspace"] = math.sqrt(sum(res_col[mod] for mod in by_layer[L])
                                             / sum(sq[m][mod] for mod in by_layer[L]))
    metrics["modules"], metrics["top_k"], metrics["reference"] = len(modules), top_k, reference
    return metrics, {"cosine_per_layer": cos_rows, "orthogonal_fraction_per_layer": orth_rows}
