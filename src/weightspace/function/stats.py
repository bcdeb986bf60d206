"""Paired accuracy statistics: Wilson intervals, exact McNemar, Holm correction, problem-level bootstrap."""

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


def bootstrap_mean(values: np.ndarray, samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean over problems (rows of ``values``, each a problem's avg@k),
    resampling problems with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compare_set(records: dict[str, list[dict]], level: float, bootstrap: int, seed: int) -> dict:
    """Metrics of one evaluation set; ``records[model]`` are that model's per-item records."""
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
    for pair, t, ph in zip(pairs, tests, holm([t["p"] for t in tests])):
        out[pair.key] = {**t, "p_holm": ph}
    return out
