"""Seed bands: how far a number moves when only the seed moves, so a difference can be judged.

Every method is trained twice, from ``train.seed`` and from ``controls.seed`` (own LoRA init and row
order, same rollout table). The geometry stage runs the between-method analyses on both sets
(``geometry.json``: the top-level keys and ``seed_twins``). The seed band of a between-method number x
is |x - x_twin|, the same number on the twin set: one draw of its seed spread. Accuracies get the
half-width of their 95% Wilson interval (their sampling noise on a finite set). Numbers with neither
(connectivity, CKA, the controls themselves) have no band: they are shown, not judged.
"""

from __future__ import annotations

import math

BANDED = ("frobenius", "effective_rank", "cosine", "angle_top1", "angle_top{k}", "u1_alignment", "v1_alignment",
          "orthogonal_fraction", "orthogonal_fraction_depth")


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


def geometry_bands(geo: dict) -> dict[str, float]:
    """Flat geometry key -> seed band |x - x_twin|, for every number that has a twin."""
    twins = geo.get("seed_twins")
    if twins is None:
        return {}
    main = flatten({k: geo[k] for k in twins if k in geo})
    twin = flatten(twins)
    return {k: abs(v - twin[k]) for k, v in main.items() if k in twin and math.isfinite(v) and math.isfinite(twin[k])}


def accuracy_bands(acc: dict) -> dict[str, float]:
    """Flat accuracy key ``<set>.<model>.acc`` -> half-width of its 95% Wilson interval."""
    return {f"{s}.{m}.acc": (v["hi"] - v["lo"]) / 2 for s, models in acc.items() for m, v in models.items()
            if isinstance(v, dict) and "acc" in v and "lo" in v}


def bands(metrics: dict[str, dict]) -> dict[str, float]:
    """``{"geometry": ..., "accuracy": ...}`` (parsed metric files by stem) -> ``"<stem>:<flat key>"`` -> band."""
    out = {}
    if "geometry" in metrics:
        out.update({f"geometry:{k}": v for k, v in geometry_bands(metrics["geometry"]).items()})
    if "accuracy" in metrics:
        out.update({f"accuracy:{k}": v for k, v in accuracy_bands(metrics["accuracy"]).items()})
    return out
