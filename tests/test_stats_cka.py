import numpy as np
import pytest
import torch

from weightspace.function import cka as C
from weightspace.function import stats as S


def test_wilson_by_hand():
    # k=8, n=10, z=1.959964: c = (0.8 + 0.19207)/1.38415 = 0.716743, h = z*sqrt(0.016 + 0.009604)/1.38415 = 0.226558
    lo, hi = S.wilson(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert S.wilson(0, 20)[0] == 0.0 and S.wilson(20, 20)[1] == pytest.approx(1.0)


def test_mcnemar_exact_by_hand():
    # n10 = 1, n01 = 5: p = 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64 = 0.21875
    a = [True, False, False, False, False, False, True, True]
    b = [False] + [True] * 7
    r = S.mcnemar_exact(a, b)
    assert (r["n10"], r["n01"]) == (1, 5)
    assert r["p"] == pytest.approx(14 / 64)
    assert S.mcnemar_exact([True, False], [True, False])["p"] == 1.0
    with pytest.raises(ValueError, match="unpaired"):
        S.mcnemar_exact([True], [True, False])


def test_holm_not_holm_sidak():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max-accumulate 0.06
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Holm-Sidak would give 1 - (1 - 0.005)^4 = 0.0199 for the smallest
    assert S.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_wilson_equals_scipy_to_rounding():
    # scipy's binomtest(...).proportion_ci(method="wilson") is the independent implementation; ours
    # is kept because the two differ in the last bit (~2e-16) and swapping would move committed metrics
    from scipy.stats import binomtest

    for n in (10, 200, 1319):
        for k in range(0, n + 1, max(1, n // 50)):
            ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
            assert S.wilson(k, n, 0.95) == pytest.approx((ci.low, ci.high), abs=1e-12), (k, n)


def test_bootstrap_interval_agrees_with_scipy_within_monte_carlo_error():
    # scipy.stats.bootstrap (percentile method) draws other resamples: the two intervals agree to the
    # Monte Carlo error of 4000 resamples (about 0.003 here), far below the interval's width (~0.1)
    from scipy.stats import bootstrap

    v = (np.arange(200) % 7) / 6.0
    lo, hi = S.bootstrap_mean(v, 4000, seed=0)
    ci = bootstrap((v,), np.mean, n_resamples=4000, method="percentile", random_state=0).confidence_interval
    assert abs(lo - ci.low) < 0.01 and abs(hi - ci.high) < 0.01
    assert hi - lo > 0.05


def test_bootstrap_interval_contains_mean_and_is_deterministic():
    v = np.array([0, 0.25, 0.5, 1.0, 1.0, 0.75, 0.0, 0.5])
    a, b = S.bootstrap_mean(v, 2000, seed=1), S.bootstrap_mean(v, 2000, seed=1)
    assert a == b and a[0] < v.mean() < a[1]


@pytest.fixture
def feats():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 20, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(20, 15, generator=g, dtype=torch.float64) + 0.5 * torch.randn(60, 15, generator=g,
                                                                                       dtype=torch.float64)
    return X, Y


@pytest.mark.parametrize("debiased", [True, False])
def test_cka_self_is_one_and_invariances(feats, debiased):
    X, Y = feats
    assert C.cka(X, X, debiased) == pytest.approx(1.0, abs=1e-12)
    Q = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))[0]
    base = C.cka(X, Y, debiased)
    assert C.cka(X @ Q, Y, debiased) == pytest.approx(base, abs=1e-10)  # orthogonal transform
    assert C.cka(3.7 * X, 0.2 * Y, debiased) == pytest.approx(base, abs=1e-10)  # isotropic scaling
    assert 0.3 < base < 1


def test_gram_and_feature_forms_agree(feats):
    X, Y = feats
    assert C.cka(X, Y, debiased=False) == pytest.approx(C.cka_features(X, Y), abs=1e-12)


def test_independent_wide_features_biased_high_debiased_near_zero():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 2560, generator=g, dtype=torch.float64)
    Y = torch.randn(64, 2560, generator=g, dtype=torch.float64)
    assert C.cka(X, Y, debiased=False) > 0.95  # the trap the issue names
    assert abs(C.cka(X, Y, debiased=True)) < 0.02


def test_cka_errors():
    with pytest.raises(ValueError, match="X has 5 examples, Y has 4"):
        C.cka(torch.zeros(5, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n >= 4"):
        C.cka(torch.randn(3, 2), torch.randn(3, 2))
