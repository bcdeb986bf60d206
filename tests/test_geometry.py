"""Geometry from LoRA factors against dense float64 recomputation, hand values and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from weightspace.weights import geometry as G
from weightspace.model.adapters import Factor


def rand_factor(m=12, n=9, r=4, scale=2.0, seed=0, rank_A=None) -> Factor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(r, n, generator=g, dtype=torch.float64)
    if rank_A is not None:  # rank-deficient A: rows are combinations of rank_A rows
        A = torch.randn(r, rank_A, generator=g, dtype=torch.float64) @ A[:rank_A]
    B = torch.randn(m, r, generator=g, dtype=torch.float64)
    return Factor(A, B, scale, 0, "q_proj")


def dense(f: Factor) -> torch.Tensor:
    return f.scale * f.B @ f.A


def gauge(f: Factor, seed=9) -> Factor:
    """Same Delta W, other factors: B -> B G, A -> G^-1 A."""
    g = torch.Generator().manual_seed(seed)
    Gm = torch.randn(f.A.shape[0], f.A.shape[0], generator=g, dtype=torch.float64) + 3 * torch.eye(f.A.shape[0])
    return Factor(torch.linalg.solve(Gm, f.A), f.B @ Gm, f.scale, f.layer, f.proj)


def test_inner_norm_cosine_equal_dense():
    fs = [rand_factor(seed=s) for s in range(3)]
    gs = [rand_factor(seed=10 + s, scale=0.5) for s in range(3)]
    for f, g in zip(fs, gs):
        assert G.inner(f, g) == pytest.approx((dense(f) * dense(g)).sum().item(), rel=1e-12, abs=1e-10)
        assert G.sq_norm(f) == pytest.approx(dense(f).pow(2).sum().item(), rel=1e-12)
    flat_f = torch.cat([dense(f).flatten() for f in fs])
    flat_g = torch.cat([dense(g).flatten() for g in gs])
    want = (flat_f @ flat_g / (flat_f.norm() * flat_g.norm())).item()
    assert abs(G.cosine(fs, gs) - want) < 1e-10


def test_global_cosine_is_norm_weighted_not_a_mean():
    # module 1: identical big deltas (cos 1); module 2: tiny orthogonal deltas (cos 0)
    e = torch.eye(2, dtype=torch.float64)
    big = Factor(e[:1], e[:, :1] * 10, 1.0, 0, "q")
    small_a, small_b = Factor(e[:1], e[:, :1] * 0.1, 1.0, 1, "q"), Factor(e[1:], e[:, :1] * 0.1, 1.0, 1, "q")
    c = G.cosine([big, small_a], [big, small_b])
    assert c == pytest.approx(100 / (100 + 0.01))  # not (1 + 0) / 2
    with pytest.raises(ValueError, match="zero delta"):
        G.cosine([Factor(e[:1], 0 * e[:, :1], 1.0, 0, "q")], [big])


def test_thin_svd_is_exact_also_for_rank_deficient_A():
    for f in (rand_factor(), rand_factor(rank_A=2, seed=3)):
        U, S, V = G.thin_svd(f)
        D = dense(f)
        assert torch.allclose(U @ torch.diag(S) @ V.T, D, atol=1e-10)
        assert torch.allclose(S, torch.linalg.svdvals(D)[: len(S)], atol=1e-10)
        assert torch.allclose(U.T @ U, torch.eye(U.shape[1], dtype=torch.float64), atol=1e-12)
    f = rand_factor(rank_A=1, seed=4)
    U, S, _ = G.thin_svd(f)
    assert (S[1:] < 1e-10).all()  # rank 1
    u_dense = torch.linalg.svd(dense(f))[0][:, 0]
    assert abs(abs(U[:, 0] @ u_dense).item() - 1) < 1e-10  # top direction is col(Delta W), not any col(B)


def test_gauge_invariance_of_every_metric():
    f, g = rand_factor(seed=1), rand_factor(seed=2)
    f2, g2 = gauge(f, 5), gauge(g, 6)
    assert G.inner(f2, g2) == pytest.approx(G.inner(f, g), rel=1e-10)
    assert G.cosine([f2], [g2]) == pytest.approx(G.cosine([f], [g]), abs=1e-12)
    U1, S1, _ = G.thin_svd(f)
    U2, S2, _ = G.thin_svd(f2)
    assert torch.allclose(S1, S2, atol=1e-10)
    assert G.effective_rank(S1) == pytest.approx(G.effective_rank(S2), abs=1e-10)
    Ug, _, _ = G.thin_svd(g)
    a = G.principal_angles(U1[:, :3], Ug[:, :3])
    b = G.principal_angles(U2[:, :3], G.thin_svd(g2)[0][:, :3])
    assert torch.allclose(a, b, atol=1e-8)
    assert G.direction_residual_sq(f2, g2) == pytest.approx(G.direction_residual_sq(f, g), rel=1e-9)
    assert G.colspace_residual_sq(f2, Ug) == pytest.approx(G.colspace_residual_sq(f, Ug), rel=1e-9)


def test_identical_adapters_cosine_one_angle_zero():
    f = rand_factor(seed=7)
    U, _, _ = G.thin_svd(f)
    U2, _, _ = G.thin_svd(gauge(f))
    assert G.cosine([f], [gauge(f)]) == pytest.approx(1.0, abs=1e-12)
    assert G.principal_angles(U[:, :3], U2[:, :3]).max().item() < 1e-7
    assert G.direction_residual_sq(f, f) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("t", [1e-9, 1e-4, 0.3, math.pi / 4, 1.2, math.pi / 2])
def test_angle_between_e1_and_its_rotation_is_t(t):
    e = torch.eye(5, dtype=torch.float64)
    u1 = e[:, :1]
    u2 = (math.cos(t) * e[:, 0] + math.sin(t) * e[:, 1])[:, None]
    got = G.principal_angles(u1, u2).item()
    assert got == pytest.approx(t, rel=1e-9, abs=1e-15)  # 1e-9 survives: the sine form, not arccos


def test_agrees_with_scipy_subspace_angles():
    g = np.random.default_rng(0)
    for _ in range(5):
        X = np.linalg.qr(g.standard_normal((30, 6)))[0]
        Y = np.linalg.qr(g.standard_normal((30, 6)))[0]
        ours = G.principal_angles(torch.from_numpy(X), torch.from_numpy(Y)).numpy()
        theirs = scipy.linalg.subspace_angles(X, Y)[::-1]  # scipy: descending
        assert np.allclose(ours, theirs, atol=1e-10)


def test_effective_rank_by_hand():
    assert G.effective_rank(torch.tensor([1.0, 1, 1, 1], dtype=torch.float64)) == pytest.approx(4.0)
    assert G.effective_rank(torch.tensor([3.0, 0, 0], dtype=torch.float64)) == pytest.approx(1.0)
    # p = (2/3, 1/3): exp(-(2/3 ln 2/3 + 1/3 ln 1/3)) = 1.8899...
    assert G.effective_rank(torch.tensor([2.0, 1.0], dtype=torch.float64)) == pytest.approx(1.8898815748423097)


def test_residuals_equal_dense_projections():
    f, ref = rand_factor(seed=11), rand_factor(seed=12)
    F, R = dense(f), dense(ref)
    proj = (F * R).sum() / (R * R).sum() * R
    assert G.direction_residual_sq(f, ref) == pytest.approx((F - proj).pow(2).sum().item(), rel=1e-10)
    U = G.thin_svd(ref)[0]
    P = U @ U.T
    assert G.colspace_residual_sq(f, U) == pytest.approx((F - P @ F).pow(2).sum().item(), rel=1e-10)
    # the two definitions differ: a matrix in the same column space but another direction
    same_cols = Factor(torch.randn(4, 9, dtype=torch.float64), ref.B, 1.0, 0, "q")
    assert G.colspace_residual_sq(same_cols, U) == pytest.approx(0.0, abs=1e-9)
    assert G.direction_residual_sq(same_cols, ref) > 0.1 * G.sq_norm(same_cols)


def test_median_iqr():
    assert G.median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0, 4.0)


def test_stacked_forms_equal_the_per_module_ones():
    """inner / thin_svd / colspace over a Stack of modules of one shape, and principal angles over a batch,
    equal the one-module functions (to rounding)."""
    fs = [rand_factor(seed=s, scale=0.5 + s) for s in range(3)] + [rand_factor(seed=3, rank_A=2)]
    gs = [rand_factor(seed=10 + s) for s in range(3)] + [gauge(fs[3])]
    F, Gs = G.stack(fs), G.stack(gs)
    want = torch.tensor([G.inner(f, g) for f, g in zip(fs, gs)], dtype=torch.float64)
    assert torch.allclose(G.inner_stack(F, Gs), want, rtol=1e-13)
    U, S, V = G.thin_svd_stack(F)
    # a batched and a per-module SVD are two code paths: the library picks its kernel per CPU (MKL, ATen), so they
    # agree to float64 rounding, not bit for bit: singular values to a few ulps of the largest, vectors likewise
    # (their gaps here are O(1))
    eps = torch.finfo(torch.float64).eps
    for i, f in enumerate(fs):
        Ui, Si, Vi = G.thin_svd(f)
        torch.testing.assert_close(S[i], Si, rtol=0, atol=64 * eps * float(Si.max()))
        torch.testing.assert_close(U[i], Ui, rtol=0, atol=1e-13)
        torch.testing.assert_close(V[i], Vi, rtol=0, atol=1e-13)
    Ug = G.thin_svd_stack(Gs)[0]
    want = [G.sq_norm(g) - G.colspace_residual_sq(g, U[i]) for i, g in enumerate(gs)]
    assert torch.allclose(G.colspace_sq_stack(Gs, U), torch.tensor(want, dtype=torch.float64), rtol=1e-12)
    for k in (1, 3):  # module 3 is the same Delta W twice: its angles come from the sine form
        batch = G.principal_angles(U[..., :k], Ug[..., :k])
        assert torch.allclose(batch, torch.stack([G.principal_angles(U[i, :, :k], Ug[i, :, :k]) for i in range(4)]),
                              atol=1e-15)
