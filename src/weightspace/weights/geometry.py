"""Weight-space geometry of LoRA deltas, exactly, from the factors: Delta W = s B A never materialised.

Shapes: A (r, n), B (m, r), s a scalar; Delta W is (m, n). Everything is float64 and invariant to
the LoRA gauge B -> B G, A -> G^-1 A (G invertible r x r): only products B A enter.
The ``*_stack`` forms compute the same formulas for N modules of one shape at once (a ``Stack``),
as batched linear algebra; ``principal_angles`` takes leading batch dimensions as it is.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..model.adapters import Factor


def inner(f: Factor, g: Factor) -> float:
    """<Delta W_f, Delta W_g>_F = s_f s_g trace((B_f^T B_g)(A_g A_f^T)); r x r products only."""
    return f.scale * g.scale * torch.trace((f.B.T @ g.B) @ (g.A @ f.A.T)).item()


def sq_norm(f: Factor) -> float:
    """||Delta W||_F^2 = s^2 trace((B^T B)(A A^T))."""
    return inner(f, f)


def cosine(fs: list[Factor], gs: list[Factor]) -> float:
    """Cosine of two deltas over a set of modules, flattened together (norm-weighted, not a mean of
    per-module cosines): sum_m <F_m, G_m> / sqrt(sum_m ||F_m||^2 * sum_m ||G_m||^2)."""
    return cosine_of_sums(sum(inner(f, g) for f, g in zip(fs, gs)), sum(sq_norm(f) for f in fs),
                          sum(sq_norm(g) for g in gs))


def cosine_of_sums(num: float, sq_f: float, sq_g: float) -> float:
    """sum_m <F_m, G_m> / sqrt(sum_m ||F_m||^2 * sum_m ||G_m||^2), from the three sums."""
    den = math.sqrt(sq_f * sq_g)
    if den == 0:
        raise ValueError("cosine of a zero delta is undefined")
    return num / den


def thin_svd(f: Factor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact thin SVD of Delta W = s B A: (U (m, r), S (r,) descending, V (n, r)).

    B = Q_b R_b, A^T = Q_a R_a (QR), so Delta W = Q_b (s R_b R_a^T) Q_a^T; the SVD of the r x r core,
    C = U_c S V_c^T, gives U = Q_b U_c, V = Q_a V_c. Q_a and Q_b are orthonormal even when A or B is
    rank-deficient (then some S are 0 and col(Delta W) is a strict subspace of col(B))."""
    Qb, Rb = torch.linalg.qr(f.B)  # (m, r), (r, r)
    Qa, Ra = torch.linalg.qr(f.A.T)  # (n, r), (r, r)
    Uc, S, Vch = torch.linalg.svd(f.scale * Rb @ Ra.T)
    return Qb @ Uc, S, Qa @ Vch.T


def principal_angles(U1: torch.Tensor, U2: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between span(U1) and span(U2), both (..., m, k) orthonormal
    -> (..., k); leading dimensions are a batch.

    cos theta_i = sigma_i(U1^T U2); small angles (cos^2 >= 1/2) come from the sine form,
    sin theta_i = sigma(U2 - U1 U1^T U2), where arccos loses them (Knyazev & Argentati 2002; as
    scipy.linalg.subspace_angles, which returns them in DEscending order). The sine form is computed
    only when some angle needs it."""
    M = U1.mT @ U2
    cos = torch.linalg.svdvals(M).clamp(max=1.0)  # descending -> angles ascending
    small = cos**2 >= 0.5
    if not small.any():
        return torch.arccos(cos)
    sin = torch.linalg.svdvals(U2 - U1 @ M).flip(-1).clamp(max=1.0)  # ascending
    return torch.where(small, torch.arcsin(sin), torch.arccos(cos))


def effective_rank(S: torch.Tensor) -> float:
    """exp(H(p)), p_i = sigma_i / sum_j sigma_j, H the Shannon entropy (0 log 0 = 0) (Roy & Vetterli 2007)."""
    p = S[S > 0] / S.sum()
    return math.exp(-(p * p.log()).sum().item())


def direction_residual_sq(f: Factor, ref: Factor) -> float:
    """||Delta W_f - P Delta W_f||_F^2 with P the projection onto the 1-D span of the MATRIX Delta W_ref:
    ||F||^2 - <F, R>^2 / ||R||^2. (Per module: orthogonal fraction = sqrt(this / ||F||^2) = sin of the
    angle between the two matrices.)"""
    return sq_norm(f) - inner(f, ref) ** 2 / sq_norm(ref)


def colspace_residual_sq(f: Factor, U_ref: torch.Tensor) -> float:
    """||(I - U U^T) Delta W_f||_F^2 with U an orthonormal basis of col(Delta W_ref) (its nonzero left
    singular vectors): the part of Delta W_f outside the column (output) space of the reference.
    = ||F||^2 - s^2 trace((U^T B)^T (U^T B) (A A^T))."""
    C = U_ref.T @ f.B  # (k, r)
    return sq_norm(f) - f.scale**2 * torch.trace((C.T @ C) @ (f.A @ f.A.T)).item()


class Stack(NamedTuple):
    """N modules of one shape, stacked: A (N, r, n), B (N, m, r), scale (N, 1, 1)."""

    A: torch.Tensor
    B: torch.Tensor
    scale: torch.Tensor


def stack(fs: list[Factor]) -> Stack:
    """The factors of modules that share (r, n) and (m, r), as one ``Stack``."""
    return Stack(torch.stack([f.A for f in fs]), torch.stack([f.B for f in fs]),
                 torch.tensor([f.scale for f in fs], dtype=torch.float64).view(-1, 1, 1))


def _trace(X: torch.Tensor) -> torch.Tensor:
    return X.diagonal(dim1=-2, dim2=-1).sum(-1)


def inner_stack(f: Stack, g: Stack) -> torch.Tensor:
    """``inner`` of each module of f with the same module of g: (N,)."""
    return (f.scale * g.scale).view(-1) * _trace((f.B.mT @ g.B) @ (g.A @ f.A.mT))


def thin_svd_stack(f: Stack, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``thin_svd`` of each module: U (N, m, k), S (N, r) descending, V (N, n, k); only the top k singular
    vectors are formed (all r when k is None)."""
    Qb, Rb = torch.linalg.qr(f.B)  # (N, m, r), (N, r, r)
    Qa, Ra = torch.linalg.qr(f.A.mT)  # (N, n, r), (N, r, r)
    Uc, S, Vch = torch.linalg.svd(f.scale * Rb @ Ra.mT)
    # Q comes column-major from LAPACK: U^T = Uc^T Q^T reads it row by row (several times faster than Q Uc)
    return (Uc[..., :k].mT @ Qb.mT).mT, S, (Vch[..., :k, :] @ Qa.mT).mT


def colspace_sq_stack(f: Stack, U_ref: torch.Tensor) -> torch.Tensor:
    """||U U^T Delta W_f||_F^2 = s^2 trace((U^T B)^T (U^T B) (A A^T)) per module: (N,), U_ref (N, m, k) with
    orthonormal or zero columns (zero columns drop out). ``colspace_residual_sq`` = sq_norm - this."""
    C = U_ref.mT @ f.B  # (N, k, r)
    return f.scale.view(-1) ** 2 * _trace((C.mT @ C) @ (f.A @ f.A.mT))


def median_iqr(values: list[float]) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile), linear interpolation as numpy's default."""
    t = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.5, 0.25, 0.75], dtype=torch.float64))
    return q[0].item(), q[1].item(), q[2].item()
