"""Paired accuracy statistics: Wilson intervals, exact McNemar, Holm correction, a paired equivalence test
(TOST) and its sample size, problem-level bootstrap."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest, norm
from ..core.pairs import combinations


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n: (c - h, c + h) with z = Phi^-1((1 + level) / 2),
    c = (p + z^2/2n) / (1 + z^2/n), h = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)."""
    if n <= 0:
        raise ValueError("wilson: n must be positive")
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def mcnemar_exact(a: list[bool], b: list[bool]) -> dict:
    """Exact McNemar test on paired outcomes: discordant counts n10 = #(a right, b wrong),
    n01 = #(a wrong, b right); two-sided p = binomial test of min(n10, n01) in n10 + n01 at 1/2
    (= statsmodels mcnemar(exact=True)); p = 1 when there are no discordant pairs."""
    if len(a) != len(b):
        raise ValueError(f"mcnemar: unpaired outcomes ({len(a)} vs {len(b)} items)")
    n10 = sum(x and not y for x, y in zip(a, b))
    n01 = sum(y and not x for x, y in zip(a, b))
    p = 1.0 if n10 + n01 == 0 else binomtest(min(n10, n01), n10 + n01, 0.5).pvalue
    return {"n10": n10, "n01": n01, "p": float(p)}


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (NOT Holm-Sidak): sort ascending p_(1..m),
    p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)); returned in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def tost_paired(n10: int, n01: int, n: int, margin: float) -> dict:
    """Paired two one-sided tests (TOST) of |acc_a - acc_b| < margin on the same n items.

    d = (n10 - n01) / n, se = sqrt(((n10 + n01) / n - d^2) / n) (the discordant pairs carry all of a paired
    difference's variance; Wald), p = max(1 - Phi((d + margin) / se), 1 - Phi((margin - d) / se)):
    equivalence at level a when p < a, i.e. when the (1 - 2a) interval d +- z_{1-a} se lies inside
    (-margin, margin). se = 0 (no discordant item): p = 0 when |d| < margin, else 1.
    Returns {"diff": d, "se": se, "p": p}."""
    if n <= 0 or min(n10, n01) < 0 or n10 + n01 > n:
        raise ValueError(f"tost_paired: impossible counts n10={n10}, n01={n01}, n={n}")
    if not margin > 0:
        raise ValueError(f"tost_paired: margin must be positive, got {margin}")
    d = (n10 - n01) / n
    se = math.sqrt(max((n10 + n01) / n - d * d, 0.0) / n)
    if se == 0:
        return {"diff": d, "se": 0.0, "p": 0.0 if abs(d) < margin else 1.0}
    p = max(norm.sf((d + margin) / se), norm.sf((margin - d) / se))
    return {"diff": d, "se": se, "p": float(p)}


def tost_sample_size(margin: float, discordance: float, alpha: float = 0.05, power: float = 0.9) -> int:
    """Items for a paired TOST at level ``alpha`` to show equivalence within ``margin`` with probability
    ``power`` when the true difference is 0 and a share ``discordance`` of items is discordant:
    n = (z_{1-alpha} + z_{1-(1-power)/2})^2 discordance / margin^2 (each one-sided test needs power
    1 - (1 - power)/2; Var(d) = discordance / n at d = 0), rounded up.

    The tiny default's held-out set (``prepare.eval.heldout.n``) is sized with it, declared before any
    run at that size: margin 0.05 (``compare.margin``), discordance 0.2 (a bound on the share of items two
    of the family's methods answer differently at the tiny model's accuracy of about 0.2-0.3), alpha 0.05,
    power 0.9: n = 866, rounded up to 1000 (``tests/test_function_space.py`` checks the params)."""
    if not (0 < margin and 0 < discordance <= 1 and 0 < alpha < 0.5 and 0 < power < 1):
        raise ValueError("tost_sample_size: need margin > 0, 0 < discordance <= 1, 0 < alpha < 0.5, 0 < power < 1")
    z = norm.ppf(1 - alpha) + norm.ppf(1 - (1 - power) / 2)
    return math.ceil(z * z * discordance / margin**2)


def bootstrap_mean(values: np.ndarray, samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean over problems (rows of ``values``, each a problem's avg@k),
    resampling problems with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compare_set(records: dict[str, list[dict]], level: float, bootstrap: int, seed: int, margin: float) -> dict:
    """Metrics of one evaluation set; ``records[model]`` are that model's per-item records. Per model: accuracy
    with its Wilson interval; per pair a-b: exact McNemar (n10, n01, p), its Holm-adjusted p over every
    pair of the set (p_holm), and the paired TOST within ``margin`` (diff = acc_a - acc_b, se, tost_p)."""
    models = list(records)
    ids = [r["id"] for r in records[models[0]]]
    for m in models:
        if [r["id"] for r in records[m]] != ids:
            raise ValueError(f"compare: {m} was evaluated on other items than {models[0]}; results are not paired")
    out: dict = {}
    for m in models:
        correct = [bool(r["correct"]) for r in records[m]]
        lo, hi = wilson(sum(correct), len(correct), level)
        out[m] = {"acc": sum(correct) / len(correct), "lo": lo, "hi": hi, "n": len(correct)}
        if "samples_correct" in records[m][0]:
            avg = np.array([np.mean(r["samples_correct"]) for r in records[m]])
            blo, bhi = bootstrap_mean(avg, bootstrap, seed, level)
            out[m].update({"avg_k": float(avg.mean()), "avg_k_lo": blo, "avg_k_hi": bhi})
    pairs = combinations(models)
    tests = [mcnemar_exact([bool(r["correct"]) for r in records[a]], [bool(r["correct"]) for r in records[b]])
             for a, b in pairs]
    n = len(ids)
    for pair, t, ph in zip(pairs, tests, holm([t["p"] for t in tests])):
        e = tost_paired(t["n10"], t["n01"], n, margin)
        out[pair.key] = {**t, "p_holm": ph, "diff": e["diff"], "se": e["se"], "tost_p": e["p"]}
    return out
