"""Linear CKA between two representations of the same n examples: X (n, p), Y (n, q).

biased (Kornblith et al. 2019): CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X^T, L = Y Y^T,
HSIC(K, L) = tr(K H L H) / (n-1)^2 with H the centring matrix; in feature space, with centred X, Y:
||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F). Reads high for unrelated features when p, q are large
relative to n (about 0.98 at n=64, p=2560).
debiased (Song et al. 2012 unbiased HSIC, as Nguyen et al. 2021): with K~, L~ = K, L with zero diagonal,
HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3));
about 0 for independent features. Both are computed in float64.
"""

from __future__ import annotations

import torch
from ..core.pairs import Pair, combinations


def _gram(X: torch.Tensor) -> torch.Tensor:
    X = X.to(torch.float64)
    return X @ X.T


def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    H = torch.eye(n, dtype=K.dtype) - 1.0 / n
    return torch.trace(K @ H @ L @ H) / (n - 1) ** 2


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    if n < 4:
        raise ValueError(f"debiased CKA needs n >= 4 examples, got {n}")
    K = K - torch.diag(torch.diag(K))
    L = L - torch.diag(torch.diag(L))
    one = torch.ones(n, dtype=K.dtype)
    t = torch.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (one @ K @ L @ one)
    return t / (n * (n - 3))


def cka(X: torch.Tensor, Y: torch.Tensor, debiased: bool = True) -> float:
    """Linear CKA of X (n, p) and Y (n, q) through Gram matrices; see the module docstring."""
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"cka: X has {X.shape[0]} examples, Y has {Y.shape[0]}")
    K, L = _gram(X), _gram(Y)
    h = hsic_unbiased if debiased else hsic_biased
    return (h(K, L) / torch.sqrt(h(K, K) * h(L, L))).item()


def cka_features(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Biased linear CKA in feature space: ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)."""
    X = X.to(torch.float64) - X.to(torch.float64).mean(0)
    Y = Y.to(torch.float64) - Y.to(torch.float64).mean(0)
    return (torch.linalg.norm(Y.T @ X) ** 2 / (torch.linalg.norm(X.T @ X) * torch.linalg.norm(Y.T @ Y))).item()


def late_layers(n_layers: int) -> list[int]:
    """0-based indices of the late layers: the paper's "from layer 25" of 36, scaled to ``n_layers``."""
    return list(range(max(1, round(25 * n_layers / 36)) - 1, n_layers))


def pairwise(reps: dict[str, list]) -> tuple[dict, dict[str, dict[str, list[float]]]]:
    """Per-layer CKA between every pair of models (``reps[model][layer]``: (n, d) pooled states), debiased
    and biased. Returns ({"late_layers": 0-based, "debiased"/"biased": {pair: {"last", "late_mean"}}},
    {"debiased"/"biased": {pair: per-layer values}})."""

    models = list(reps)
    n_layers = len(reps[models[0]])
    late = late_layers(n_layers)
    summary: dict = {"late_layers": list(late), "debiased": {}, "biased": {}}
    table: dict[str, dict[str, list[float]]] = {"debiased": {}, "biased": {}}
    for a, b in combinations(models):
        pair = Pair(a, b).key
        deb = [cka(reps[a][L], reps[b][L], debiased=True) for L in range(n_layers)]
        bia = [cka(reps[a][L], reps[b][L], debiased=False) for L in range(n_layers)]
        summary["debiased"][pair] = {"last": deb[-1], "late_mean": sum(deb[L] for L in late) / len(late)}
        summary["biased"][pair] = {"last": bia[-1], "late_mean": sum(bia[L] for L in late) / len(late)}
        table["debiased"][pair], table["biased"][pair] = deb, bia
    return summary, table
