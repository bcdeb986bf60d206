"""Seed bands: how far a number moves when only the seed moves, so a difference can be judged.

Every method is trained twice, from ``train.seed`` and from ``controls.seed`` (own LoRA init and row
order, same rollout table). The geometry stage runs the between-method analyses on both sets
(``geometry.json``: the top-level keys and ``seed_twins``). For one number x, |x - x_twin| is one draw
of its seed spread: the claims use it as the number's seed band (``claims.py``).

Comparing two whole runs (``reproduce.py``) needs a calibrated band, since one draw per number is too
noisy (of two exchangeable draws of the same noise, the new one exceeds the old one half the time). So the
seed noise is pooled over each family of numbers (the same metric over every method or pair, e.g.
``cosine.global.*``): sigma_f^2 = mean over the family's numbers of (x - x_twin)^2 / 2, in the reference
run (the revision compared against), so a broken or planted new run cannot widen its own bands.
The difference of two runs has variance 2 sigma^2, and the band is z sqrt(2) sigma_f with z the two-
sided Bonferroni quantile for 5% over every judged number (3.63 for the default's 179). Accuracies
are a family per evaluation set, pooled the same way over the methods' evaluated seed twins
(``accuracy.seed_twins``): the items are fixed, so a rerun's accuracy moves with the model, not with
the items. Only where the twins were not evaluated, sigma = the 95% Wilson half-width / 1.96 (the
item-sampling noise; wider, since it counts the items as drawn anew). Numbers with neither
(connectivity, CKA, timings, the controls) have no band: shown, not judged.
"""

from __future__ import annotations

import math

BANDED = ("frobenius", "effective_rank", "cosine", "angle_top1", "angle_top{k}", "u1_alignment", "v1_alignment",
          "orthogonal_fraction", "orthogonal_fraction_depth")
FAMILY_WIDE = 0.05  # family-wise error rate of the reproduction check (Bonferroni over judged numbers)


def banded_keys(top_k: int) -> tuple[str, ...]:
    return tuple(k.format(k=top_k) for k in BANDED)


def flatten(d, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``a.b.c`` -> value (bools, strings and lists left out)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def geometry_spread(geo: dict) -> dict[str, float]:
    """Flat geometry key -> |x - x_twin|, for every number that has a twin (one draw of its seed spread)."""
    twins = geo.get("seed_twins")
    if twins is None:
        return {}
    main = flatten({k: geo[k] for k in twins if k in geo})
    twin = flatten(twins)
    return {k: abs(v - twin[k]) for k, v in main.items() if k in twin and math.isfinite(v) and math.isfinite(twin[k])}


def family(key: str, names: set[str]) -> str:
    """``cosine.global.sft-rft`` -> ``cosine.global``: the key without the parts naming methods or pairs."""
    return ".".join(p for p in key.split(".") if p not in names and not all(x in names for x in p.split("-")))


def sigmas(runs: list[dict[str, dict]]) -> dict[str, float]:
    """``"<stem>:<flat key>"`` -> sigma, pooled over each geometry family and over ``runs`` (parsed metric
    files by stem); accuracies pooled per set over the methods' twins, or without twins their Wilson
    half-width / 1.96 (the larger of the runs')."""
    sq: dict[str, list[float]] = {}
    keys: dict[str, str] = {}
    out: dict[str, float] = {}
    wilson: dict[str, float] = {}
    for metrics in runs:
        geo = metrics.get("geometry", {})
        names = set(geo.get("frobenius", {}))
        for k, d in geometry_spread(geo).items():
            f = family(k, names)
            sq.setdefault(f, []).append(d * d / 2)
            keys[f"geometry:{k}"] = f
        acc = metrics.get("accuracy", {})
        twins = acc.get("seed_twins", {})
        for s, models in acc.items():
            if s == "seed_twins":
                continue
            for m, v in models.items():
                if not (isinstance(v, dict) and {"acc", "lo", "hi"} <= set(v)):
                    continue
                key = f"accuracy:{s}.{m}.acc"
                wilson[key] = max(wilson.get(key, 0.0), (v["hi"] - v["lo"]) / 2 / 1.96)
                t = twins.get(s, {}).get(m, {}).get("acc")
                if t is not None and m in names:
                    sq.setdefault(f"accuracy:{s}", []).append((v["acc"] - t) ** 2 / 2)
                keys[key] = f"accuracy:{s}"  # the base (no twin) takes its set's pooled sigma
    pooled = {f: math.sqrt(sum(v) / len(v)) for f, v in sq.items()}
    out.update({k: pooled[f] if f in pooled else wilson[k] for k, f in keys.items()})
    return out


def bands(old: dict[str, dict]) -> dict[str, float]:
    """``"<stem>:<flat key>"`` -> the band of a difference to the reference run ``old``: z sqrt(2) sigma,
    sigma from ``old``'s seed twins only (a planted or broken new run cannot widen its own band)."""
    from scipy.stats import norm

    sig = sigmas([old])
    if not sig:
        return {}
    z = norm.isf(FAMILY_WIDE / (2 * len(sig)))
    return {k: z * math.sqrt(2) * s for k, s in sig.items()}
