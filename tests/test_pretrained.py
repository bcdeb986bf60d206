"""W0-relative metrics against dense float64 numpy oracles, planted cases with exact answers, the partial
(top-K) mode's error on a decaying spectrum, bf16 inputs and the aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from weightspace.weights import pretrained as P
from weightspace.model.adapters import Factor


def rand_factor(m=30, n=20, r=4, scale=2.0, seed=0, size=1.0, layer=0, proj="q_proj") -> Factor:
    g = torch.Generator().manual_seed(seed)
    return Factor(torch.randn(r, n, generator=g, dtype=torch.float64) * size,
                  torch.randn(m, r, generator=g, dtype=torch.float64), scale, layer, proj)


def decaying_w0(m, n, seed=0, power=0.8, top=2.0) -> torch.Tensor:
    """Random singular vectors, sigma_i = top * (i + 1)^-power (a power-law decay, as pretrained weights)."""
    g = np.random.default_rng(seed)
    U = np.linalg.qr(g.standard_normal((m, min(m, n))))[0]
    V = np.linalg.qr(g.standard_normal((n, min(m, n))))[0]
    s = top * (np.arange(min(m, n)) + 1.0) ** -power
    return torch.from_numpy(U * s @ V.T)


def dense(f: Factor) -> np.ndarray:
    return (f.scale * f.B.double() @ f.A.double()).numpy()


def gauge(f: Factor, seed=9) -> Factor:
    g = torch.Generator().manual_seed(seed)
    Gm = torch.randn(f.A.shape[0], f.A.shape[0], generator=g, dtype=torch.float64) + 3 * torch.eye(f.A.shape[0])
    return Factor(torch.linalg.solve(Gm, f.A), f.B @ Gm, f.scale, f.layer, f.proj)


def oracle_intruders(W0: np.ndarray, D: np.ndarray, k: int, eps: float) -> tuple[int, float]:
    U0 = np.linalg.svd(W0, full_matrices=False)[0]
    Up, sp, _ = np.linalg.svd(W0 + D, full_matrices=False)
    intr = np.abs(U0.T @ Up[:, :k]).max(0) < eps
    return int(intr.sum()), float((sp[:k][intr] ** 2).sum() / (sp[:k] ** 2).sum())


def oracle_shift(W0: np.ndarray, D: np.ndarray, K: int | None = None) -> float:
    s0, sp = np.linalg.svd(W0, compute_uv=False)[:K], np.linalg.svd(W0 + D, compute_uv=False)[:K]
    return float(np.linalg.norm(sp - s0) / np.linalg.norm(s0))


def test_full_factorisation_is_the_svd():
    W0 = torch.randn(30, 20, dtype=torch.float64)
    spec = P.factorise(W0, None)
    assert spec.full and spec.U.shape == (30, 20) and spec.V.shape == (20, 20)
    assert torch.allclose(spec.U * spec.S @ spec.V.T, W0, atol=1e-12)
    assert torch.allclose(spec.U.T @ W0, spec.S[:, None] * spec.V.T, atol=1e-12)


@pytest.mark.parametrize("shape", [(30, 20), (20, 30)])
def test_subspace_overlap_equals_dense(shape):
    m, n = shape
    W0, f, k = torch.randn(m, n, dtype=torch.float64), rand_factor(m, n, seed=1), 3
    got = P.subspace_overlap(f, P.factorise(W0, None), k)
    D = dense(f)
    U0, _, V0t = np.linalg.svd(W0.numpy())
    U, _, Vt = np.linalg.svd(D)
    want_l = scipy.linalg.subspace_angles(U[:, :k], U0[:, :k])[::-1]  # scipy: descending
    want_r = scipy.linalg.subspace_angles(Vt[:k].T, V0t[:k].T)[::-1]
    assert np.allclose(got["angles_left"].numpy(), want_l, atol=1e-10)
    assert np.allclose(got["angles_right"].numpy(), want_r, atol=1e-10)
    Pl, Pr = U0[:, :k] @ U0[:, :k].T, V0t[:k].T @ V0t[:k]
    assert got["energy_left"] == pytest.approx((Pl @ D).__pow__(2).sum() / (D**2).sum(), rel=1e-10)
    assert got["energy_right"] == pytest.approx((D @ Pr).__pow__(2).sum() / (D**2).sum(), rel=1e-10)


@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (25, 25)])
def test_plus_svd_full_mode_is_the_dense_svd_of_w_plus(shape):
    m, n = shape
    W0, f = torch.randn(m, n, dtype=torch.float64), rand_factor(m, n, seed=2)
    Sc, C, S0 = P.plus_svd(f, P.factorise(W0, None))
    U0 = np.linalg.svd(W0.numpy(), full_matrices=False)[0]
    Up, sp, _ = np.linalg.svd(W0.numpy() + dense(f), full_matrices=False)
    assert np.allclose(Sc[: min(m, n)].numpy(), sp, atol=1e-10)
    assert np.allclose(Sc[min(m, n):].numpy(), 0, atol=1e-10)  # P W+ = W+: no other singular values
    assert np.allclose(S0[: min(m, n)].numpy(), np.linalg.svd(W0.numpy(), compute_uv=False), atol=1e-10)
    assert np.allclose(np.abs(C[:, :5].numpy()), np.abs(U0.T @ Up[:, :5]), atol=1e-8)


def test_spectral_shift_and_stable_rank_equal_dense():
    W0, f = torch.randn(30, 20, dtype=torch.float64), rand_factor(seed=3, size=0.1)
    assert P.spectral_shift(f, P.factorise(W0, None)) == pytest.approx(oracle_shift(W0.numpy(), dense(f)), rel=1e-10)
    s = np.linalg.svd(dense(f), compute_uv=False)
    assert P.stable_rank(f) == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-12)
    # by hand: dW = diag(3, 4, 0) has ||.||_F^2 = 25, ||.||_2^2 = 16
    e = torch.eye(3, dtype=torch.float64)
    B = e[:, :2] * torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert P.stable_rank(Factor(e[:2], B, 1.0, 0, "q")) == 25 / 16


def planted(m=40, n=25, c=10.0, k=3):
    """W0 = U0 diag(s) V0^T, s = (5, 4.9, ..., 0.01 last); dW = c u v_n^T with u orthogonal to col(W0) and v_n
    W0's last right singular vector. Then W+ = sum_{i<n} s_i u0_i v0_i^T + (s_n u0_n + c u) v_n^T is an SVD:
    its top singular value is sqrt(c^2 + s_n^2) with left vector (s_n u0_n + c u) / norm, whose largest |cos|
    with W0's left singular vectors is s_n / sqrt(c^2 + s_n^2) = 0.001; every other top vector is some u0_i.
    Exactly one intruder among the top k, energy share (c^2 + s_n^2) / (c^2 + s_n^2 + s_1^2 + ... + s_{k-1}^2)."""
    g = np.random.default_rng(5)
    Q = np.linalg.qr(g.standard_normal((m, n + 1)))[0]
    U0, u = Q[:, :n], Q[:, n]
    V0 = np.linalg.qr(g.standard_normal((n, n)))[0]
    s = np.concatenate([np.linspace(5, 2, n - 1), [0.01]])
    W0 = torch.from_numpy(U0 * s @ V0.T)
    r = 4  # B's other columns are 0: dW has rank 1
    B = torch.zeros(m, r, dtype=torch.float64)
    B[:, 0] = torch.from_numpy(c * u)
    A = torch.randn(r, n, dtype=torch.float64)
    A[0] = torch.from_numpy(V0[:, -1])
    top = c**2 + s[-1] ** 2
    return W0, Factor(A, B, 1.0, 0, "q_proj"), top / (top + (s[: k - 1] ** 2).sum())


def test_planted_intruder_full_mode():
    W0, f, share = planted()
    got = P.intruders(f, P.factorise(W0, None), k=3, eps=0.5)
    assert got == {"count": 1, "energy_share": pytest.approx(share, rel=1e-12), "certified": 3}
    assert oracle_intruders(W0.numpy(), dense(f), 3, 0.5) == (1, pytest.approx(share, rel=1e-12))
    # a small random delta adds no intruder (its top vectors stay within ~1e-3 of W0's)
    assert P.intruders(rand_factor(40, 25, seed=4, size=1e-4), P.factorise(W0, None), 3, 0.5)["count"] == 0


def test_planted_intruder_partial_mode_is_uncertified():
    """Against W0's top K = 10 the intruder is found (same count and share) but it cannot be certified:
    its mass outside the top K (u is orthogonal to all of W0) leaves the bound sqrt(1 - ||U_K^T u||^2) = 1.
    The share is approximate: P W+ drops s_n u0_n (its singular value is c, not sqrt(c^2 + s_n^2)), and on
    this flat spectrum (5 .. 2) the randomized top K's Ritz values carry errors of order 1e-5."""
    W0, f, share = planted()
    got = P.intruders(f, P.factorise(W0, 10), k=3, eps=0.5)
    assert got["count"] == 1 and got["energy_share"] == pytest.approx(share, rel=1e-4)
    assert got["certified"] == 2  # the two non-intruders


def test_intruders_equal_dense_on_random_matrices():
    for seed in range(4):
        W0 = decaying_w0(40, 30, seed=seed)
        f = rand_factor(40, 30, r=6, seed=seed, size=0.3)
        got = P.intruders(f, P.factorise(W0, None), k=5, eps=0.6)
        want = oracle_intruders(W0.numpy(), dense(f), 5, 0.6)
        assert (got["count"], got["energy_share"]) == (want[0], pytest.approx(want[1], rel=1e-9, abs=1e-15))
        assert got["certified"] == 5


@pytest.mark.parametrize("size", [0.3, 0.03])
def test_partial_mode_error_on_decaying_spectrum(size):
    """W0 (300 x 200) with sigma_i = 2 (i + 1)^-0.8, a rank-8 delta with ||dW||_F = size ||...||: 0.3 gives
    ||dW||_2 about a third of ||W0||_2, 0.03 ten times less; top K = 40 of W0 (10 oversampled, 2 power
    iterations) against the dense computation. Measured: W0's top-5 singular values to 6e-9 relative, its
    40th to 3e-2 (the randomized tail); angles to 5e-6 rad; energies to 6e-8; W+'s top-5 singular values to
    2e-3 (size 0.3: its 5th vector draws on W0's tail, outside span(U_K, B)); intruder counts equal. The
    top-K spectral shift is off by 4e-3 (size 0.3) and 8e-2 (size 0.03) relative, 1e-3 and 2e-4 absolute:
    W+'s singular values near index K depend on W0's tail, which the compression leaves out, and a small
    shift is of that order (K = 80 halves it)."""
    W0 = decaying_w0(300, 200, seed=7)
    f = rand_factor(300, 200, r=8, seed=8, size=size / (300 * 200) ** 0.5)
    full, part, k = P.factorise(W0, None), P.factorise(W0, 40), 5
    assert torch.allclose(part.S[:k], full.S[:k], rtol=1e-6, atol=0)
    assert torch.allclose(part.S, full.S[:40], rtol=0.05, atol=0)
    of, op = P.subspace_overlap(f, full, k), P.subspace_overlap(f, part, k)
    assert (of["angles_left"] - op["angles_left"]).abs().max() < 1e-4
    assert (of["angles_right"] - op["angles_right"]).abs().max() < 1e-4
    assert abs(of["energy_left"] - op["energy_left"]) < 1e-6 and abs(of["energy_right"] - op["energy_right"]) < 1e-6
    Sf = P.plus_svd(f, full)[0]
    Sp = P.plus_svd(f, part)[0]
    assert ((Sf[:k] - Sp[:k]) / Sf[:k]).abs().max() < 5e-3
    assert (Sp[:40] <= Sf[:40] * (1 + 1e-12)).all()  # Ritz values of a compression: lower bounds
    # the top-K spectral shift against the dense one over the same K values
    shift, want = P.spectral_shift(f, part), oracle_shift(W0.numpy(), dense(f), 40)
    assert shift == pytest.approx(want, rel=0.02 if size == 0.3 else 0.15) and abs(shift - want) < 2e-3
    # dW = 0 with B's directions in P: P W+ = P W0, no shift (comparing with W0's top K alone would show one)
    assert P.spectral_shift(Factor(f.A, f.B, 0.0, 0, "q_proj"), part) < 1e-14
    for eps in (0.3, 0.6, 0.9):
        a, b = P.intruders(f, full, k, eps), P.intruders(f, part, k, eps)
        assert a["count"] == b["count"] and a["energy_share"] == pytest.approx(b["energy_share"], abs=1e-3)
        assert b["certified"] >= k - b["count"]  # every non-intruder is certified


def test_update_sparsity_on_constructed_bf16_values():
    """W0 = 1.0 everywhere (exact in bf16; ulp 2^-7 above 1, 2^-8 below, so W+ keeps bf16 value 1 for
    dW in (-2^-9, 2^-8) = (-0.00195, 0.0039)); dW = s b a^T with b = (1, -1), a = (0.0005, 0.003, 0.005, 0.02):
    row 1: +0.0005, +0.003 unchanged, +0.005, +0.02 changed; row 2: -0.0005 unchanged, the rest changed:
    3 of 8 unchanged in bf16."""
    f = Factor(torch.tensor([[0.0005, 0.003, 0.005, 0.02]], dtype=torch.float64),
               torch.tensor([[1.0], [-1.0]], dtype=torch.float64), 1.0, 0, "q")
    for W0 in (torch.ones(2, 4, dtype=dt) for dt in (torch.float64, torch.float32, torch.bfloat16)):
        for dtype in (torch.float64, torch.float32):
            assert P.bf16_unchanged(W0, [f], dtype) == [3 / 8]
    # W0 = 1.001 is not a bf16 value: both sides are rounded, bf16(W0) = 1. Row 1: 1.0015 -> 1 unchanged,
    # 1.004 crosses the tie 1 + 2^-8 = 1.00390625 -> changed; row 2: 1.0005 -> 1 unchanged, 0.998 is below
    # the tie 1 - 2^-9 = 0.998046875 -> changed: 2 of 8
    assert P.bf16_unchanged(torch.full((2, 4), 1.001, dtype=torch.float64), [f]) == [2 / 8]


def test_update_sparsity_ties_round_to_even():
    """W+ exactly halfway between two bf16 values goes to the one with an even last significand bit:
    1 + 2^-8 -> 1 (even): unchanged from W0 = 1; from W0 = 1 + 2^-7 (odd), +2^-8 -> 1 + 2^-6 and -2^-8 -> 1:
    both changed. Same as torch's own rounding of W+."""
    h = 2.0**-8
    W0 = torch.tensor([[1.0, 1 + 2 * h, 1 + 2 * h]], dtype=torch.bfloat16)
    D = torch.tensor([[h, h, -h]], dtype=torch.float64)
    assert ((W0.double() + D).to(torch.bfloat16) == W0).tolist() == [[True, False, False]]
    f = Factor(D, torch.ones(1, 1, dtype=torch.float64), 1.0, 0, "q")
    for dtype in (torch.float64, torch.float32):
        assert P.bf16_unchanged(W0, [f], dtype) == [1 / 3]


def test_update_sparsity_equals_rounding_w_plus():
    """Random W0 ~ N(0, 0.02^2) in float32 and deltas of three sizes: the counts equal rounding W+ computed in
    float64 and comparing, for one adapter alone and for several at once, in one chunk and in row chunks."""
    g = torch.Generator().manual_seed(0)
    W0 = (torch.randn(64, 48, generator=g) * 0.02).to(torch.float32)
    for size in (1e-5, 1e-4, 1e-3):
        f = rand_factor(64, 48, r=4, seed=int(1 / size), size=size)
        D = torch.from_numpy(dense(f))
        Wp = W0.double() + D
        want_bf16 = (Wp.to(torch.bfloat16) == W0.to(torch.bfloat16)).double().mean().item()
        assert 0 < want_bf16 < 1 or size == 1e-5
        for dtype in (torch.float64, torch.float32):
            assert P.bf16_unchanged(W0, [f], dtype) == [want_bf16]
            assert P.bf16_unchanged(W0, [f, f], dtype, chunk=48 * 5) == [want_bf16, want_bf16]


def test_random_like_has_the_norm_shape_and_rank_and_chance_energy_k_over_m():
    """random_like(f): same shape, rank and ||dW||_F (dense check); its left singular subspace is uniformly
    random, so its energy share in any fixed k-dim subspace has mean k/m (E ||P_k u||^2 = k/m for a uniform unit
    u): over 200 seeds on a 40x30 W0, k = 4, the mean energy_left lies within 4 standard errors of 0.1."""
    f = rand_factor(40, 30, r=4, seed=3, size=0.3)
    spec = P.factorise(decaying_w0(40, 30, seed=5), None)
    x = [P.subspace_overlap(P.random_like(f, seed=s), spec, 4)["energy_left"] for s in range(200)]
    g = P.random_like(f, seed=7)
    assert g.A.shape == f.A.shape and g.B.shape == f.B.shape and np.linalg.matrix_rank(dense(g)) == 4
    assert np.linalg.norm(dense(g)) == pytest.approx(np.linalg.norm(dense(f)), rel=1e-12)
    assert abs(np.mean(x) - 4 / 40) < 4 * np.std(x) / np.sqrt(len(x)), np.mean(x)
    assert not torch.equal(P.random_like(f, seed=8).A, g.A) and torch.equal(P.random_like(f, seed=7).A, g.A)


def test_intruder_threshold_makes_random_directions_intruders_at_its_rate():
    """The threshold is the rate-quantile of a random unit vector's largest |cos| with W0's left singular vectors:
    fresh random directions (another generator, numpy) fall below it at about that rate, at two shapes whose
    thresholds differ (a fixed eps would not do this)."""
    rng = np.random.default_rng(11)
    eps = {}
    for m, n in ((16, 24), (120, 80)):
        spec = P.factorise(decaying_w0(m, n, seed=m), None)
        eps[m] = P.intruder_threshold(spec, 0.1, draws=4000, seed=1)
        X = rng.standard_normal((m, 4000))
        X /= np.linalg.norm(X, axis=0)
        share = (np.abs(spec.U.numpy().T @ X).max(0) < eps[m]).mean()
        assert share == pytest.approx(0.1, abs=0.02), (m, share)
    assert eps[120] < eps[16] - 0.1
    with pytest.raises(ValueError, match="intruder rate 1.5"):
        P.intruder_threshold(spec, 1.5)


def test_gauge_invariance():
    W0, f = decaying_w0(30, 20), rand_factor(seed=12, size=0.2)
    f2, spec = gauge(f), P.factorise(W0, None)
    a, b = P.subspace_overlap(f, spec, 3), P.subspace_overlap(f2, spec, 3)
    assert torch.allclose(a["angles_left"], b["angles_left"], atol=1e-7)
    assert a["energy_left"] == pytest.approx(b["energy_left"], rel=1e-10)
    i1, i2 = P.intruders(f, spec, 4, 0.5), P.intruders(f2, spec, 4, 0.5)
    assert (i1["count"], i1["certified"]) == (i2["count"], i2["certified"])
    assert i1["energy_share"] == pytest.approx(i2["energy_share"], rel=1e-12)
    assert P.spectral_shift(f, spec) == pytest.approx(P.spectral_shift(f2, spec), rel=1e-10)
    assert P.stable_rank(f) == pytest.approx(P.stable_rank(f2), rel=1e-10)


def deltas_and_weights(methods=3, layers=2, dtype=torch.float64):
    shapes = {"q_proj": (24, 16), "v_proj": (8, 16)}
    weights = {f"model.layers.{L}.self_attn.{p}": decaying_w0(*s, seed=10 * L + i).to(dtype)
               for L in range(layers) for i, (p, s) in enumerate(shapes.items())}
    deltas = {}
    for i in range(methods):
        deltas[f"m{i}"] = {}
        for j, (name, W) in enumerate(weights.items()):
            L, p = int(name.split(".")[2]), name.rsplit(".", 1)[-1]
            f = rand_factor(*W.shape, r=4, seed=100 * i + j, size=0.1, layer=L, proj=p)
            deltas[f"m{i}"][name] = Factor(f.A.to(dtype), f.B.to(dtype), f.scale, L, p)
    return deltas, weights


@pytest.mark.parametrize("partial_rank", [None, 6])
def test_analyse_relative_equals_the_per_module_functions(partial_rank):
    deltas, weights = deltas_and_weights()
    k, rate = 2, 0.3
    metrics, tables = P.analyse_relative(deltas, weights, k, rate, partial_rank=partial_rank, chance_for=["m1"])
    mods = list(weights)
    spec = {mod: P.factorise(weights[mod], partial_rank) for mod in mods}
    eps = {mod: P.intruder_threshold(spec[mod], rate, seed=i) for i, mod in enumerate(mods)}
    rand = {mod: P.random_like(deltas["m1"][mod], seed=1000 * (i + 1)) for i, mod in enumerate(mods)}
    for m, d in (*deltas.items(), ("chance", rand)):
        got = metrics["chance"] if m == "chance" else metrics
        key = "m1" if m == "chance" else m
        ov = [P.subspace_overlap(d[mod], spec[mod], k) for mod in mods]
        intr = [P.intruders(d[mod], spec[mod], k, eps[mod]) for mod in mods]
        sp = [P.bf16_unchanged(weights[mod], [d[mod]])[0] for mod in mods]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        assert got["angle_left_top1"][key] == pytest.approx(mean([math.degrees(o["angles_left"][0]) for o in ov]))
        want = mean([math.degrees(o["angles_right"][-1]) for o in ov])
        assert got[f"angle_right_top{k}"][key] == pytest.approx(want)
        assert got["energy_left"][key] == pytest.approx(mean([o["energy_left"] for o in ov]))
        assert got["intruders"][key] == pytest.approx(mean([x["count"] for x in intr]))
        assert got["intruder_energy"][key] == pytest.approx(mean([x["energy_share"] for x in intr]))
        assert got["intruders_certified"][key] == pytest.approx(mean([x["certified"] for x in intr]))
        assert got["spectral_shift"][key] == pytest.approx(mean([P.spectral_shift(d[x], spec[x]) for x in mods]))
        assert got["stable_rank"][key] == pytest.approx(mean([P.stable_rank(d[x]) for x in mods]))
        assert got["bf16_unchanged"][key] == pytest.approx(mean(sp))
        if m != "chance":
            layer0 = [i for i, mod in enumerate(mods) if ".0." in mod]
            assert tables["energy_right_per_layer"][0][m] == pytest.approx(mean([ov[i]["energy_right"] for i in layer0]))
    assert set(metrics["chance"]["energy_left"]) == {"m1"}
    assert metrics["intruder_eps"] == pytest.approx({p: mean([eps[mod] for mod in mods if mod.endswith(p)])
                                                     for p in ("q_proj", "v_proj")})
    assert [row["layer"] for row in tables["intruders_per_layer"]] == [0, 1]


def test_bf16_inputs_give_the_metrics_of_the_upcast_values():
    """W0 and the factors stored in bf16 (as a GPU base and adapter are): the same metrics as their
    values upcast to float64 (exact), no crash."""
    deltas, weights = deltas_and_weights(methods=2, layers=1, dtype=torch.bfloat16)
    up_d = {m: {mod: Factor(f.A.double(), f.B.double(), f.scale, f.layer, f.proj) for mod, f in d.items()}
            for m, d in deltas.items()}
    up_w = {mod: W.double() for mod, W in weights.items()}
    assert all(f.A.dtype == torch.bfloat16 for d in deltas.values() for f in d.values())
    for rank in (None, 5):
        got = P.analyse_relative(deltas, weights, 2, 0.05, partial_rank=rank)
        want = P.analyse_relative(up_d, up_w, 2, 0.05, partial_rank=rank)
        assert got == want


def test_bad_input_raises():
    W0, f = torch.randn(30, 20, dtype=torch.float64), rand_factor()
    spec = P.factorise(W0, None)
    with pytest.raises(ValueError, match="Delta W is 20x30 but W0 is 30x20"):
        P.subspace_overlap(rand_factor(20, 30), spec, 2)
    with pytest.raises(ValueError, match="top_k 5 must lie in 1..4"):
        P.subspace_overlap(f, spec, 5)
    with pytest.raises(ValueError, match="top_k 7 must lie in 1..6"):
        P.intruders(f, P.factorise(W0, 6), 7, 0.5)
    with pytest.raises(ValueError, match="eps 0 must lie"):
        P.intruders(f, spec, 2, 0)
    with pytest.raises(ValueError, match="partial rank 21"):
        P.factorise(W0, 21)
    with pytest.raises(ValueError, match="chunk 10 must lie"):
        P.bf16_unchanged(W0, [f], chunk=10)
    with pytest.raises(ValueError, match="every Delta W must match"):
        P.bf16_unchanged(W0, [rand_factor(20, 30)])
    with pytest.raises(ValueError, match="zero delta"):
        P.stable_rank(Factor(f.A, 0 * f.B, 1.0, 0, "q"))
    deltas, weights = deltas_and_weights(methods=1, layers=1)
    with pytest.raises(ValueError, match="weights lack W0 of 1 modules"):
        P.analyse_relative(deltas, dict(list(weights.items())[:1]), 2, 0.05)
