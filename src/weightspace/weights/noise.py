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
from ..core.pairs import Pair

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
    return ".".join(p for p in key.split(".")
                    if p not in names and not ((q := Pair.maybe(p)) is not None and set(q) <= names))


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


# ---- bands calibrated on reruns (tools/calibrate.py) ----------------------------------------------------

CALIBRATED_DOC = """Calibrated bands: the default rerun over rollout-table and LoRA seeds (``tools/calibrate.py``).

What differs between machines is the rollout table (float bits change the sampled completions) and, from
it, every trained adapter. So the default is rerun K - 1 times with other rollout-sampling and LoRA seeds
(the prepared sets, base and teacher unchanged) and, with the committed run, each judged number m has K
draws. Its band for the difference of two runs (the reference and a rerun, both draws) is

    band_m = t_{K_m - 1}.isf(alpha / (2 M)) * sqrt(2) * s_m

with s_m the sample standard deviation of m over its K_m finite draws (no pooling across numbers: their
spreads differ several-fold within one family), Student's t for the uncertainty of s_m from few runs,
and Bonferroni over the M judged numbers for a family-wise false-alarm rate alpha = 5%. A number with
fewer than ``MIN_RUNS`` finite draws, or that no calibration run moved (s_m = 0: the base and teacher are
not retrained), is not judged. The base's own float path is not varied: the other-float-path test checks
that the bands cover it anyway.
"""

MIN_RUNS = 4
JUDGED = {  # stem -> key patterns (fnmatch) of the numbers the calibrated check judges
    "rollouts": ("accuracy", "mixed_group_share", "all_correct_group_share", "all_wrong_group_share"),
    "accuracy": ("*.acc",),
    "connectivity": ("*.barrier", "*.ce_mid"),
    "cka": ("debiased.*.late_mean",),
}


def judged_numbers(metrics: dict[str, dict]) -> dict[str, float]:
    """``"<stem>:<flat key>"`` -> value for every number the calibrated check judges: the geometry's
    seed-banded families (``banded_keys``), each evaluation set's accuracies, the rollout table's mix,
    connectivity barriers and midpoints, and debiased CKA; never the seed twins or timings."""
    from fnmatch import fnmatch

    out = {}
    geo = metrics.get("geometry", {})
    top = banded_keys(int(geo.get("top_k", 10)))
    out.update({f"geometry:{k}": v for k, v in flatten({k: geo[k] for k in top if k in geo}).items()})
    for stem, patterns in JUDGED.items():
        for k, v in flatten(metrics.get(stem, {})).items():
            if not k.startswith("seed_twins") and any(fnmatch(k, p) for p in patterns):
                out[f"{stem}:{k}"] = v
    return out


def verdicts(metrics: dict[str, dict]) -> dict[str, str]:
    return {c: d.get("verdict", "absent") for c, d in metrics.get("claims", {}).get("claims", {}).items()}


def calibrated_bands(values: dict[str, list], alpha: float = FAMILY_WIDE) -> tuple[dict[str, dict], dict[str, str]]:
    """``values``: number -> its draws over the calibration runs (None or NaN where a run lacks it).
    Returns (judged: number -> {n, sd, band}, not_judged: number -> reason); the band formula is in
    ``CALIBRATED_DOC``."""
    from scipy.stats import t as student_t

    stats, skipped = {}, {}
    for k, vs in values.items():
        xs = [float(v) for v in vs if v is not None and math.isfinite(v)]
        if len(xs) < MIN_RUNS:
            skipped[k] = f"{len(xs)} finite run(s), fewer than {MIN_RUNS}"
            continue
        if max(xs) == min(xs):
            skipped[k] = "no calibration run moved it"
            continue
        mean = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
        stats[k] = {"n": len(xs), "sd": sd}
    m = len(stats)
    for s in stats.values():
        s["band"] = float(student_t.isf(alpha / (2 * m), s["n"] - 1)) * math.sqrt(2) * s["sd"]
    return stats, skipped


def verdicts_agree(a: str, b: str) -> bool:
    """Two verdicts of one claim agree when equal, or when one is "undecided" and neither is missing."""
    return a == b or ("undecided" in (a, b) and not {a, b} & {"absent", "not measured"})


def check(ref: dict[str, float], new: dict[str, float], bands: dict[str, dict]) -> list[str]:
    """The judged numbers of ``new`` beyond their band around ``ref`` (missing or NaN counts as beyond)."""
    bad = []
    for k, s in bands.items():
        o, n = ref.get(k), new.get(k)
        if o is None or n is None or not (math.isfinite(o) and math.isfinite(n)) or abs(n - o) > s["band"]:
            bad.append(k)
    return bad


def calibrate(runs: dict[str, dict[str, dict]], profile: str, command: str, alpha: float = FAMILY_WIDE) -> dict:
    """The calibration file from ``runs`` (name -> parsed metric files; ``committed`` is the reference
    run): every judged number's draws, spread and band, the claims' verdicts per run, and the
    leave-one-out false-alarm rate: for each run j, bands from the other runs, then j checked against each
    other run as reference (numbers and verdicts, as ``reproduce`` checks them); the share of those checks
    that fail is the false-alarm rate the bands give in practice."""
    names = list(runs)
    nums = {n: judged_numbers(m) for n, m in runs.items()}
    verd = {n: verdicts(m) for n, m in runs.items()}
    keys = sorted(set().union(*nums.values()))
    values = {k: [nums[n].get(k) for n in names] for k in keys}
    stats, skipped = calibrated_bands(values, alpha)
    checks, alarms, beyond, judged_total, per_run = 0, 0, 0, 0, {}
    for j, held in enumerate(names):
        rest = [i for i in range(len(names)) if i != j]
        b, _ = calibrated_bands({k: [v[i] for i in rest] for k, v in values.items()}, alpha)
        fails = 0
        for i in rest:
            ref = names[i]
            bad = check(nums[ref], nums[held], b)
            flips = [c for c in set(verd[ref]) | set(verd[held])
                     if not verdicts_agree(verd[ref].get(c, "absent"), verd[held].get(c, "absent"))]
            checks += 1
            judged_total += len(b)
            beyond += len(bad)
            fails += bool(bad or flips)
        alarms += fails
        per_run[held] = {"checks": len(rest), "false_alarms": fails}
    return {
        "profile": profile, "command": command, "runs": names, "family_wise_alpha": alpha,
        "method": CALIBRATED_DOC,
        "numbers": {k: {**stats[k], "values": values[k]} for k in stats},
        "not_judged": skipped,
        "verdicts": verd,
        "leave_one_out": {"checks": checks, "false_alarms": alarms, "rate": alarms / checks if checks else None,
                          "numbers_checked": judged_total, "numbers_beyond": beyond, "per_run": per_run},
    }


def calibration_summary(cal: dict) -> str:
    loo = cal["leave_one_out"]
    return (f"calibration of profile {cal['profile']}: {len(cal['runs'])} runs, {len(cal['numbers'])} numbers judged, "
            f"{len(cal['not_judged'])} not judged; bands set for a family-wise false-alarm rate of "
            f"{cal['family_wise_alpha']:.0%}; leave-one-out: {loo['false_alarms']} of {loo['checks']} checks "
            f"failed ({loo['numbers_beyond']} of {loo['numbers_checked']} numbers beyond their band)")
