"""Weight-space geometry of LoRA deltas, exactly, from the factors: Delta W = s B A never materialised.

Shapes: A (r, n), B (m, r), s a scalar; Delta W is (m, n). Everything is float64 and invariant to
the LoRA gauge B -> B G, A -> G^-1 A (G invertible r x r): only products B A enter.
"""

from __future__ import annotations

import math

import torch

from .adapters import Factor


def inner(f: Factor, g: Factor) -> float:
    """<Delta W_f, Delta W_g>_F = s_f s_g trace((B_f^T B_g)(A_g A_f^T)); r x r products only."""
    return f.scale * g.scale * torch.trace((f.B.T @ g.B) @ (g.A @ f.A.T)).item()


def sq_norm(f: Factor) -> float:
    """||Delta W||_F^2 = s^2 trace((B^T B)(A A^T))."""
    return inner(f, f)


def cosine(fs: list[Factor], gs: list[Factor]) -> float:
    """Cosine of two deltas over a set of modules, flattened together (norm-weighted, not a mean of
    per-module cosines): sum_m <F_m, G_m> / sqrt(sum_m ||F_m||^2 * sum_m ||G_m||^2)."""
    num = sum(inner(f, g) for f, g in zip(fs, gs))
    den = math.sqrt(sum(sq_norm(f) for f in fs) * sum(sq_norm(g) for g in gs))
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
    """Principal angles (radians, ascending) between span(U1) and span(U2), both (m, k) orthonormal.

    cos theta_i = sigma_i(U1^T U2); small angles come from the sine form, sin theta_i = sigma(U2 - U1 U1^T U2),
    where arccos loses them (Knyazev & Argentati 2002; as scipy.linalg.subspace_angles, which returns
    them in DEscending order)."""
    M = U1.T @ U2
    cos = torch.linalg.svdvals(M).clamp(max=1.0)  # descending -> angles ascending
    sin = torch.linalg.svdvals(U2 - U1 @ M).flip(0).clamp(max=1.0)  # ascending
    return torch.where(cos**2 < 0.5, torch.arccos(cos), torch.arcsin(sin))


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


def median_iqr(values: list[float]) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile), linear interpolation as numpy's default."""
    t = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.5, 0.25, 0.75], dtype=torch.float64))
    return q[0].item(), q[1].item(), q[2].item()
