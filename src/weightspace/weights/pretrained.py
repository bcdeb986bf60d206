"""Where each update sits relative to the pretrained weights W0: per-module functions of (W0, Delta W).

Shapes: W0 (m, n) = (d_out, d_in); Delta W = s B A with A (r, n), B (m, r), never materialised except in
the dense pass (bf16 sparsity), which forms it in row chunks. W0 is factorised ONCE per
module (``factorise`` -> ``Spectrum``) and reused for every adapter. Factors and W0 may be stored in any
float dtype (bf16 included): every metric is computed on their values upcast to float64 (the dense pass:
to ``dtype``), except that bf16 sparsity rounds W0's stored values to bf16 (a bf16 W0 is its own rounding).

Chance levels (``random_like``, ``analyse_relative(chance_for=...)``): each number is computed again, by the same
functions, on a random update of the same shape, rank and Frobenius norm per module (Gaussian A and B), so a
value can be read against what an update with no relation to W0 gives. Intruders are counted against a
threshold per module (``intruder_threshold``): the ``rate`` quantile of a random unit vector's largest |cos|
with W0's singular vectors, so a random direction counts as an intruder with probability ``rate`` at every
shape (a fixed eps would call random directions intruders in small matrices and never in large ones).

Two modes of ``Spectrum`` (K = its rank):
- full (``rank=None``): the exact thin SVD of W0 in float64, K = min(m, n).
- partial (``rank=K``): W0's top-K singular triplets from a randomized range finder in float32
  (Halko, Martinsson & Tropp 2011, Alg. 4.4: ``power_iters`` subspace iterations, ``oversample`` extra
  columns), refined by Rayleigh-Ritz (U^T W0 formed in float32, its SVD in float64), so that
  U^T W0 = diag(S) V^T holds for the returned U to float32 rounding (~1e-7 relative).

W+ = W0 + Delta W is seen through its compression P W+, P the orthogonal projection onto
span(U, B) (U = W0's K left singular vectors): Q = [U, Q_r], Q_r an orthonormal basis of (I - U U^T) B, and
    Q^T W+ = [[diag(S) V^T + s (U^T B) A], [Q_r^T W0 + s (Q_r^T B) A]]      ((K + r') x n)
whose SVD T = U_c S_c V_c^T gives W+'s singular values S_c and left singular vectors Q U_c; their cosines
with U are the first K rows of U_c. In full mode span(U, B) contains col(W+), so P W+ = W+ and this is
exact; in partial mode it is one Rayleigh-Ritz step (singular values are lower bounds, interlacing), and
everything measured against W0's singular vectors is measured against its top K.

Precision: the factors' own spectra (thin SVD), the small (K + r') x n problems and all reductions are
float64; products with W0 (range finder, Q_r^T W0) are float32 in partial mode; the dense pass runs in the
``dtype`` asked for (float64 or float32, see ``dense_sums``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from tqdm import tqdm

from . import geometry as G
from ..model.adapters import Factor, check_same_modules


class Spectrum(NamedTuple):
    """W0 = U diag(S) V^T (+ the part outside the top K in partial mode): U (m, K), S (K,) descending,
    V (n, K), float64, U^T W0 = diag(S) V^T (to float32 rounding in partial mode). W is W0 in the dtype
    of the products with it (float64 in full mode, float32 in partial mode)."""

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor
    W: torch.Tensor
    full: bool


def factorise(W0: torch.Tensor, rank: int | None, oversample: int = 10, power_iters: int = 2,
              seed: int = 0) -> Spectrum:
    """W0's SVD: exact (rank None, float64 LAPACK) or its top ``rank`` triplets (randomized range finder in
    float32 with ``rank + oversample`` columns and ``power_iters`` re-orthonormalised power iterations,
    Gaussian test matrix from ``seed``; then U = orth(range), SVD of U^T W0, top ``rank`` kept)."""
    if W0.ndim != 2:
        raise ValueError(f"W0 must be a matrix, got shape {tuple(W0.shape)}")
    m, n = W0.shape
    if rank is None:
        U, S, Vh = torch.linalg.svd(W0.to(torch.float64), full_matrices=False)
        return Spectrum(U, S, Vh.mT, W0.to(torch.float64), True)
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"partial rank {rank} must lie in 1..min(m, n)={min(m, n)}")
    W = W0.to(torch.float32)
    g = torch.Generator().manual_seed(seed)
    q = min(rank + oversample, min(m, n))
    Y = torch.linalg.qr(W @ torch.randn(n, q, generator=g, dtype=torch.float32))[0]  # (m, q)
    for _ in range(power_iters):
        Y = torch.linalg.qr(W @ torch.linalg.qr(W.mT @ Y)[0])[0]
    Q = torch.linalg.qr(Y.to(torch.float64))[0]  # orthonormal in float64
    Uc, S, Vh = torch.linalg.svd((Q.to(torch.float32).mT @ W).to(torch.float64), full_matrices=False)  # Rayleigh-Ritz
    return Spectrum((Q @ Uc)[:, :rank], S[:rank], Vh[:rank].mT, W, False)


def _f64(f: Factor) -> Factor:
    return Factor(f.A.to(torch.float64), f.B.to(torch.float64), f.scale, f.layer, f.proj)


def _check(f: Factor, spec: Spectrum, k: int | None = None, r_bound: bool = True) -> Factor:
    """f in float64 after checking its shape against W0's and 1 <= k <= K (and k <= r when ``r_bound``)."""
    if (f.B.shape[0], f.A.shape[1]) != tuple(spec.W.shape):
        raise ValueError(f"{f.proj} layer {f.layer}: Delta W is {f.B.shape[0]}x{f.A.shape[1]} but W0 is "
                         f"{spec.W.shape[0]}x{spec.W.shape[1]}")
    top = min(len(spec.S), f.A.shape[0]) if r_bound else len(spec.S)
    if k is not None and not 1 <= k <= top:
        raise ValueError(f"top_k {k} must lie in 1..{top} (K={len(spec.S)}{f', r={f.A.shape[0]}' if r_bound else ''})")
    return _f64(f)


def subspace_overlap(f: Factor, spec: Spectrum, k: int) -> dict[str, torch.Tensor | float]:
    """Principal angles (radians, ascending, (k,)) between Delta W's and W0's top-k left singular subspaces
    (``angles_left``) and right ones (``angles_right``), via ``geometry.principal_angles``; and the share of
    Delta W's energy inside W0's top-k subspaces:
        energy_left = ||U0k U0k^T dW||_F^2 / ||dW||_F^2 = ||U0k^T U diag(S)||_F^2 / sum S^2,
        energy_right = ||dW V0k V0k^T||_F^2 / ||dW||_F^2 = ||diag(S) V^T V0k||_F^2 / sum S^2,
    with dW = U diag(S) V^T its exact thin SVD from the factors (``geometry.thin_svd``)."""
    f = _check(f, spec, k)
    return _overlap_of(f, *G.thin_svd(f), spec, k)


def _overlap_of(f: Factor, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, spec: Spectrum, k: int) -> dict:
    sq = S.square().sum()
    if sq == 0:
        raise ValueError(f"{f.proj} layer {f.layer}: zero delta has no singular subspace")
    U0, V0 = spec.U[:, :k], spec.V[:, :k]
    return {"angles_left": G.principal_angles(U[:, :k], U0), "angles_right": G.principal_angles(V[:, :k], V0),
            "energy_left": ((U0.mT @ U) * S).square().sum().item() / sq.item(),
            "energy_right": ((V0.mT @ V) * S).square().sum().item() / sq.item()}


def plus_svd(f: Factor, spec: Spectrum) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Singular values S_c (descending) of P W+ (see the module docstring; W+ itself in full mode),
    C = U^T u_i for each of its left singular vectors u_i: (K, len(S_c)) cosines with W0's singular vectors,
    and the singular values S_0 of P W0 (the same projection applied to W0; W0's own in full mode).
    Q_r keeps the directions of (I - U U^T) B (projected out twice) above max(m, n) * eps64 * ||B||_2."""
    return plus_svds([f], spec)[0]


def plus_svds(fs: list[Factor], spec: Spectrum) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``plus_svd`` of each factor against one W0, with the products Q_r^T W0 of every factor in one matrix
    product (W0 is read once for all of them: at 4096 x 2560 the product is bound by that read)."""
    fs = [_check(f, spec) for f in fs]
    U, S, V = spec.U, spec.S, spec.V
    Qrs = []
    for f in fs:
        R = f.B - U @ (U.mT @ f.B)
        R = R - U @ (U.mT @ R)
        Ur, sr, _ = torch.linalg.svd(R, full_matrices=False)
        tol = max(spec.W.shape) * torch.finfo(torch.float64).eps * torch.linalg.matrix_norm(f.B, 2)
        Qrs.append(Ur[:, sr > tol])  # (m, r')
    QW = (torch.cat(Qrs, 1).to(spec.W.dtype).mT @ spec.W).to(torch.float64).split([q.shape[1] for q in Qrs])
    top = S[:, None] * V.mT
    out = []
    for f, Qr, QrW in zip(fs, Qrs, QW):
        T0 = torch.cat([top, QrW])  # Q^T W0
        T = T0 + f.scale * (torch.cat([U, Qr], 1).mT @ f.B) @ f.A  # Q^T W+, (K + r', n)
        # T = Rt^T Q_t^T (QR of T^T): T's left singular vectors and values are those of the small Rt^T
        Uc, Sc, _ = torch.linalg.svd(torch.linalg.qr(T.mT, mode="r")[1].mT, full_matrices=False)
        S0 = torch.linalg.svdvals(torch.linalg.qr(T0.mT, mode="r")[1])
        out.append((Sc, Uc[: len(S)], S0))
    return out


def intruders(f: Factor, spec: Spectrum, k: int, eps: float) -> dict[str, float]:
    """Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of
    Equivalence", arXiv 2410.21228): among the top-k left singular vectors u_1..u_k of W+ = W0 + dW, those
    with max_j |<u_i, u0_j>| < eps over every left singular vector u0_j of W0 (the min(m, n) of its thin
    SVD). Returns
        count = |I|,  energy_share = sum_{i in I} sigma_i(W+)^2 / sum_{i <= k} sigma_i(W+)^2,
        certified = number of the k decisions that hold for W0's full set of singular vectors.
    Partial mode: the max runs over W0's top K; for j > K, |<u, u0_j>| <= sqrt(1 - ||U^T u||^2) (Bessel), so
    a non-intruder (max >= eps) is always certified and an intruder only when that bound is < eps too.
    Full mode: every decision is certified (count is exact). u_i and sigma_i come from ``plus_svd``."""
    _check(f, spec, k, r_bound=False)
    return _intruders_of(*plus_svd(f, spec)[:2], spec, k, eps)


def _intruders_of(Sc: torch.Tensor, C: torch.Tensor, spec: Spectrum, k: int, eps: float) -> dict[str, float]:
    if not 0 < eps <= 1:
        raise ValueError(f"eps {eps} must lie in (0, 1]")
    C, s2 = C[:, :k], Sc[:k].square()
    is_intruder = C.abs().amax(0) < eps  # (k,)
    outside = (1 - C.square().sum(0)).clamp(min=0).sqrt()  # bound on |cos| with the rest
    certified = ~is_intruder | spec.full | (outside < eps)
    return {"count": int(is_intruder.sum()), "energy_share": (s2[is_intruder].sum() / s2.sum()).item(),
            "certified": int(certified.sum())}


def spectral_shift(f: Factor, spec: Spectrum) -> float:
    """||sigma(W0 + dW) - sigma(W0)||_2 / ||sigma(W0)||_2, both sorted descending, over the min(m, n) singular
    values (full mode). Partial mode: ||sigma_K(P W+) - sigma_K(P W0)||_2 / ||sigma_K(P W0)||_2 over the top K,
    P the projection onto span(U, B) of ``plus_svd`` applied to both, so that it is 0 for dW = 0 (P W0 has
    larger singular values than W0's top K alone: P also sees W0's tail along B)."""
    Sc, _, S0 = plus_svd(f, spec)
    return _shift_of(Sc, S0, len(spec.S))


def _shift_of(Sc: torch.Tensor, S0: torch.Tensor, K: int) -> float:
    return (torch.linalg.vector_norm(Sc[:K] - S0[:K]) / torch.linalg.vector_norm(S0[:K])).item()


def stable_rank(f: Factor) -> float:
    """||dW||_F^2 / ||dW||_2^2 = sum sigma_i^2 / sigma_1^2, from the factors' exact singular values."""
    return _stable_rank_of(f, G.thin_svd(_f64(f))[1])


def _stable_rank_of(f: Factor, S: torch.Tensor) -> float:
    if S[0] == 0:
        raise ValueError(f"{f.proj} layer {f.layer}: stable rank of a zero delta is undefined")
    return (S.square().sum() / S[0] ** 2).item()


def _bf16_bounds(W0: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry, the closed interval of dW (in ``dtype``) that leaves bf16(W0 + dW) == bf16(W0): W0 + dW inside
    the rounding cell of b = bf16(W0), between the midpoints to its bf16 neighbours (exact in float32), ends
    included iff b's last significand bit is 0 (ties round to even)."""
    b = W0.to(torch.bfloat16)
    W, bf = W0.to(dtype), b.to(dtype)
    inf = torch.full_like(b, math.inf)
    lo = (bf + torch.nextafter(b, -inf).to(dtype)) / 2 - W
    hi = (bf + torch.nextafter(b, inf).to(dtype)) / 2 - W
    odd = (b.view(torch.int16) & 1).bool()
    lo = torch.where(odd, torch.nextafter(lo, hi), lo)  # open ends: the next value inside
    hi = torch.where(odd, torch.nextafter(hi, lo), hi)
    return lo, hi


def bf16_unchanged(W0: torch.Tensor, fs: list[Factor], dtype: torch.dtype = torch.float64,
                   chunk: int = 2**20) -> list[float]:
    """Per adapter, the share of entries with bf16(W0_ij + dW_ij) == bf16(W0_ij): W0 as given (a bf16 W0 is its
    own rounding), W0 + dW in exact arithmetic rounded once to nearest, ties to even (torch's
    ``.to(torch.bfloat16)`` of a float32 value; of a float64 value torch rounds twice, through float32, and can
    differ at a tie), tested as dW against the cell bounds minus W0 (``_bf16_bounds``). dW = s B A is formed in
    ``dtype`` row chunks of at most ``chunk`` entries (memory O(chunk)); in float32 a decision can differ from
    the float64 one only for entries within ~1e-7 relative of a cell end. A threshold on |dW| at half a bf16
    step of W0: it follows the update's size (read it against its chance level)."""
    m, n = W0.shape
    if any((f.B.shape[0], f.A.shape[1]) != (m, n) for f in fs):
        raise ValueError(f"every Delta W must match W0's shape {m}x{n}")
    if not n <= chunk <= 2**24:
        raise ValueError(f"chunk {chunk} must lie in d_in={n}..2^24 entries")
    rows = chunk // n
    A = [f.A.to(dtype) for f in fs]
    B = [(f.scale * f.B.to(torch.float64)).to(dtype) for f in fs]
    counts = [0] * len(fs)
    for i in range(0, m, rows):
        lo, hi = _bf16_bounds(W0[i:i + rows], dtype)
        D = torch.empty_like(lo)
        for a in range(len(fs)):
            torch.matmul(B[a][i:i + rows], A[a], out=D)
            counts[a] += torch.count_nonzero((D >= lo) & (D <= hi)).item()
    return [c / (m * n) for c in counts]


def random_like(f: Factor, seed: int) -> Factor:
    """A random update of ``f``'s shape and rank with ``f``'s Frobenius norm: A (r, n) and B (m, r) with
    independent N(0, 1) float64 entries from ``seed``, scale s' = ||dW_f||_F / ||B A||_F. Its singular
    subspaces are uniformly distributed, independent of any W0: the chance level of a W0-relative number."""
    g = torch.Generator().manual_seed(seed)
    r, n, m = f.A.shape[0], f.A.shape[1], f.B.shape[0]
    A = torch.randn(r, n, generator=g, dtype=torch.float64)
    B = torch.randn(m, r, generator=g, dtype=torch.float64)
    unit = Factor(A, B, 1.0, f.layer, f.proj)
    return Factor(A, B, math.sqrt(G.sq_norm(_f64(f)) / G.sq_norm(unit)), f.layer, f.proj)


def intruder_threshold(spec: Spectrum, rate: float, draws: int = 512, seed: int = 0) -> float:
    """The ``rate`` quantile of max_j |<x, u0_j>| over ``draws`` random unit vectors x in R^m (Gaussian from
    ``seed``), u0_j W0's left singular vectors (its thin SVD, or its top K in partial mode): the eps below which
    a random direction counts as an intruder with probability ``rate``, for this module's shape and basis."""
    if not 0 < rate < 1:
        raise ValueError(f"intruder rate {rate} must lie in (0, 1)")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(spec.U.shape[0], draws, generator=g, dtype=torch.float64)
    X /= torch.linalg.vector_norm(X, dim=0)
    return torch.quantile((spec.U.mT @ X).abs().amax(0), rate).item()


def analyse_relative(deltas: dict[str, dict[str, Factor]], weights: dict[str, torch.Tensor], top_k: int,
                     intruder_rate: float, partial_rank: int | None = None, dense_dtype: torch.dtype = torch.float64,
                     chunk: int = 2**20, oversample: int = 10, power_iters: int = 2, chance_for=None,
                     seed: int = 0) -> tuple[dict, dict[str, list[dict]]]:
    """The W0-relative analyses over every method and module; returns (metrics, tables) as ``analysis.analyse``.

    ``weights[module]`` is W0 of the module keyed as in the deltas; it is factorised once per module
    (``factorise(W0, partial_rank, oversample, power_iters)``) and reused for every method. Per method,
    the mean over modules (metrics[name][method]) and over each layer's modules (tables[name + "_per_layer"],
    one row per layer, one column per method) of: angle_left_top1 / angle_left_top{k} / angle_right_top1 /
    angle_right_top{k} (degrees) and energy_left / energy_right (``subspace_overlap``), intruders /
    intruder_energy / intruders_certified (``intruders`` at the module's ``intruder_threshold(spec,
    intruder_rate)``), spectral_shift, stable_rank, and bf16_unchanged (``bf16_unchanged``). For each method in
    ``chance_for`` (default: all) the same means again on its random twin (``random_like``, one per module,
    seeded from ``seed``, the module's index and the method's): metrics["chance"][name][method].
    metrics["intruder_eps"][proj]: the thresholds' mean over each projection's modules."""
    check_same_modules(deltas)
    methods = list(deltas)
    chance_for = methods if chance_for is None else [m for m in methods if m in set(chance_for)]
    modules = list(deltas[methods[0]])
    missing = [mod for mod in modules if mod not in weights]
    if missing:
        raise ValueError(f"weights lack W0 of {len(missing)} modules, e.g. {missing[:3]}")
    layers = sorted({deltas[methods[0]][mod].layer for mod in modules})
    by_layer = {L: [mod for mod in modules if deltas[methods[0]][mod].layer == L] for L in layers}
    names = ["angle_left_top1", f"angle_left_top{top_k}", "angle_right_top1", f"angle_right_top{top_k}",
             "energy_left", "energy_right", "intruders", "intruder_energy", "intruders_certified", "spectral_shift",
             "stable_rank", "bf16_unchanged"]
    v: dict[str, dict[str, dict[str, float]]] = {name: {m: {} for m in methods} for name in names}
    c: dict[str, dict[str, dict[str, float]]] = {name: {m: {} for m in chance_for} for name in names}
    eps_of: dict[str, list[float]] = {}

    def measure(f: Factor, spec: Spectrum, eps: float, plus: tuple) -> list[float]:
        f = _check(f, spec, top_k)
        svd = G.thin_svd(f)  # once for the overlap and the stable rank
        ov = _overlap_of(f, *svd, spec, top_k)
        Sc, C, S0 = plus
        intr = _intruders_of(Sc, C, spec, top_k, eps)
        angles = [ov["angles_left"][0], ov["angles_left"][-1], ov["angles_right"][0], ov["angles_right"][-1]]
        return [math.degrees(x.item()) for x in angles] + [
            ov["energy_left"], ov["energy_right"], intr["count"], intr["energy_share"], intr["certified"],
            _shift_of(Sc, S0, len(spec.S)), _stable_rank_of(f, svd[1])]

    for i, mod in enumerate(tqdm(modules, desc="W0-relative", leave=False)):
        spec = factorise(weights[mod], partial_rank, oversample, power_iters)
        eps = intruder_threshold(spec, intruder_rate, seed=seed + i)
        eps_of.setdefault(deltas[methods[0]][mod].proj, []).append(eps)
        rand = {m: random_like(deltas[m][mod], seed=seed + 1000 * (i + 1) + j) for j, m in enumerate(chance_for)}
        every = [(v, m, deltas[m][mod]) for m in methods] + [(c, m, f) for m, f in rand.items()]
        for (target, m, f), plus in zip(every, plus_svds([f for _, _, f in every], spec)):
            for name, x in zip(names, measure(f, spec, eps, plus)):
                target[name][m][mod] = x
        both = [deltas[m][mod] for m in methods] + list(rand.values())
        shares = bf16_unchanged(weights[mod], both, dense_dtype, chunk)
        for m, x in zip([*methods, *[("chance", m) for m in rand]], shares):
            if isinstance(m, tuple):
                c["bf16_unchanged"][m[1]][mod] = x
            else:
                v["bf16_unchanged"][m][mod] = x

    metrics: dict = {name: {m: sum(v[name][m].values()) / len(modules) for m in methods} for name in names}
    tables = {f"{name}_per_layer": [{"layer": L, **{m: sum(v[name][m][mod] for mod in by_layer[L]) / len(by_layer[L])
                                                    for m in methods}} for L in layers] for name in names}
    metrics["chance"] = {name: {m: sum(c[name][m].values()) / len(modules) for m in chance_for} for name in names}
    metrics["intruder_eps"] = {p: sum(e) / len(e) for p, e in eps_of.items()}
    metrics.update(modules=len(modules), top_k=top_k, intruder_rate=intruder_rate, partial_rank=partial_rank)
    return metrics, tables
