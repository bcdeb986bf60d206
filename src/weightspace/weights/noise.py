"""Seed bands: how far a number moves when only the seed moves, so a difference can be judged.

Every method is trained twice, from ``train.seed`` and from ``controls.seed`` (own LoRA init and row
order, same rollout table). The geometry stage runs the between-method analyses on both sets
(``geometry.json``: the top-level keys and ``seed_twins``). For one number x, |x - x_twin| is one draw
of its seed spread: the single-run claim check uses it as a diagnostic band (``claims.py``).

Comparing two whole runs (``reproduce.py``) uses the replicate runs' prediction intervals where the profile
has replicates (``CALIBRATED_DOC`` below). Without them it falls back to seed-twin bands: one draw per number
is too noisy (of two exchangeable draws of the same noise, the new one exceeds the old one half the time), so
the seed noise is pooled over each family of numbers (the same metric over every method or pair, e.g.
``cosine.global.*``): sigma_f^2 = mean over the family's numbers of (x - x_twin)^2 / 2, in the reference
run (the revision compared against), so a broken or planted new run cannot widen its own bands.
The difference of two runs has variance 2 sigma^2, and the band is z sqrt(2) sigma_f with z the two-
sided Bonferroni quantile for 5% over every judged number. Accuracies are a family per evaluation set, pooled
the same way over the methods' evaluated seed twins (``accuracy.seed_twins``): the items are fixed, so a
rerun's accuracy moves with the model, not with the items. Only where the twins were not evaluated, sigma =
the 95% Wilson half-width / 1.96 (the item-sampling noise; wider, since it counts the items as drawn anew).
Numbers with neither (connectivity, CKA, timings, the controls) have no band: shown, not judged. These bands
share the rollout table and do not cover its sampling noise.
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


# ---- bands calibrated on replicate runs (tools/replicates.py) -------------------------------------------

CALIBRATED_DOC = """Calibrated bands: prediction intervals from the replicate runs (``tools/replicates.py``).

What differs between machines is the rollout table (float bits change the sampled completions) and, from
it, every trained adapter. The replicates rerun the default with other rollout-sampling and LoRA seeds (the
prepared sets, base and teacher shared), so each judged number m has N draws: the committed run and the
reruns. A new honest run is one more draw, so its value lies, with probability 1 - alpha / M, in the
prediction interval

    mean_m +- band_m,   band_m = t_{N - 1}.isf(alpha / (2 M)) * sqrt(1 + 1/N) * s_m

with mean_m and s_m the mean and sample standard deviation of m's draws (no pooling across numbers: their
spreads differ several-fold within one family), Student's t for the uncertainty of s_m, and Bonferroni over
the M judged numbers for a family-wise false-alarm rate alpha (5%; ``--alpha``).

Which numbers are judged (declared here, not chosen on the outcomes): each method's ||dW||_F and mean effective
rank, the global cosine of every pair, the rollout table's accuracy and mix, each model's accuracy per
evaluation set, and the late-layer debiased CKA of every pair: the numbers a changed loss, learning rate,
scale, teacher or template moves first, and few enough that the Bonferroni quantile stays moderate. Not
judged: a number with fewer than ``MIN_RUNS`` finite draws, one no replicate moved (s_m = 0), and a point
mass (one value in at least half of the draws, e.g. a zero barrier): a t interval assumes a continuous
spread. Claims: a claim whose replicate hold rate lies strictly between 10% and 90% is unstable and its
verdict is not judged; a stable one fails the check when the new run's verdict contradicts it (holds against
does not hold; "undecided" agrees with either).
"""

MIN_RUNS = 4
STABLE = (0.1, 0.9)  # a hold rate strictly between these: unstable (claims.STABLE)
JUDGED = {  # stem -> key patterns (fnmatch) of the numbers the calibrated check judges
    "geometry": ("frobenius.*", "effective_rank.*", "cosine.global.*"),
    "rollouts": ("accuracy", "mixed_group_share", "all_correct_group_share", "all_wrong_group_share"),
    "accuracy": ("*.acc",),
    "cka": ("debiased.*.late_mean",),
}


def judged_numbers(metrics: dict[str, dict]) -> dict[str, float]:
    """``"<stem>:<flat key>"`` -> value for every number the calibrated check judges (``JUDGED``); never the
    seed twins or timings."""
    from fnmatch import fnmatch

    out = {}
    for stem, patterns in JUDGED.items():
        for k, v in flatten(metrics.get(stem, {})).items():
            if not k.startswith("seed_twins") and any(fnmatch(k, p) for p in patterns):
                out[f"{stem}:{k}"] = v
    return out


def verdicts(metrics: dict[str, dict]) -> dict[str, str]:
    return {c: d.get("verdict", "absent") for c, d in metrics.get("claims", {}).get("claims", {}).items()}


def calibrated_bands(values: dict[str, list], alpha: float = FAMILY_WIDE) -> tuple[dict[str, dict], dict[str, str]]:
    """``values``: number -> its draws over the replicate runs (None or NaN where a run lacks it).
    Returns (judged: number -> {n, mean, sd, band}, not_judged: number -> reason); the band formula and the
    rules for what is not judged are in ``CALIBRATED_DOC``."""
    from collections import Counter

    from scipy.stats import t as student_t

    stats, skipped = {}, {}
    for k, vs in values.items():
        xs = [float(v) for v in vs if v is not None and math.isfinite(v)]
        if len(xs) < MIN_RUNS:
            skipped[k] = f"{len(xs)} finite run(s), fewer than {MIN_RUNS}"
            continue
        if max(xs) == min(xs):
            skipped[k] = "no replicate moved it"
            continue
        if 2 * Counter(xs).most_common(1)[0][1] >= len(xs):
            skipped[k] = "a point mass: one value in at least half of the runs"
            continue
        mean = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
        stats[k] = {"n": len(xs), "mean": mean, "sd": sd}
    m = len(stats)
    for s in stats.values():
        s["band"] = float(student_t.isf(alpha / (2 * m), s["n"] - 1)) * math.sqrt(1 + 1 / s["n"]) * s["sd"]
    return stats, skipped


def holds(metrics: dict[str, dict]) -> dict[str, bool | None]:
    return {c: d.get("holds") for c, d in metrics.get("claims", {}).get("claims", {}).items()}


def stable_claims(runs: list[dict[str, bool | None]]) -> dict[str, str]:
    """Claim -> the verdict it keeps across ``runs`` (each run's plain decisions, ``holds``), for claims whose
    hold rate over the runs that measured them lies at or outside ``STABLE`` (as ``claims.judge`` counts
    "k of N"); unstable and never-measured claims are left out."""
    out = {}
    for c in sorted(set().union(*runs)):
        decided = [r[c] for r in runs if r.get(c) is not None]
        if not decided:
            continue
        rate = sum(decided) / len(decided)
        if rate >= STABLE[1]:
            out[c] = "holds"
        elif rate <= STABLE[0]:
            out[c] = "does not hold"
    return out


def verdicts_agree(a: str, b: str) -> bool:
    """Two verdicts of one claim agree when equal, or when one is "undecided" and neither is missing."""
    return a == b or ("undecided" in (a, b) and not {a, b} & {"absent", "not measured"})


def check(new: dict[str, float], bands: dict[str, dict]) -> list[str]:
    """The judged numbers of ``new`` outside their prediction interval mean +- band (missing or NaN counts
    as outside)."""
    bad = []
    for k, s in bands.items():
        n = new.get(k)
        if n is None or not math.isfinite(n) or abs(n - s["mean"]) > s["band"]:
            bad.append(k)
    return bad


def flips(stable: dict[str, str], new: dict[str, str]) -> list[str]:
    """Stable claims whose verdict in ``new`` contradicts the one they keep."""
    return [c for c, v in stable.items() if not verdicts_agree(v, new.get(c, "absent"))]


def rerun_check(new_nums: dict[str, float], new_verdicts: dict[str, str], runs_nums: dict[str, dict[str, float]],
                runs_holds: list[dict[str, bool | None]], alpha: float = FAMILY_WIDE) -> dict:
    """One new run (its ``judged_numbers`` and ``verdicts``) checked as ``reproduce`` checks it, against
    prediction intervals and stable claims made from the replicate runs ``runs_nums`` / ``runs_holds`` only:
    {numbers_judged, numbers_beyond, flips}; the run fails the check when either list is non-empty."""
    names = list(runs_nums)
    keys = sorted(set().union(*runs_nums.values()))
    b, _ = calibrated_bands({k: [runs_nums[n].get(k) for n in names] for k in keys}, alpha)
    return {"numbers_judged": len(b), "numbers_beyond": check(new_nums, b),
            "flips": flips(stable_claims(runs_holds), new_verdicts)}


def calibrate(runs: dict[str, dict[str, dict]], profile: str, command: str, alpha: float = FAMILY_WIDE) -> dict:
    """The calibration file from ``runs`` (name -> parsed metric files; ``committed`` is the reference run):
    every judged number's draws, mean, spread and band, the claims' verdicts per run and the stable ones, and
    the leave-one-out false-alarm rate: each run checked as a new run against intervals and stable claims
    made from the others (an honest rerun, as ``reproduce`` checks one); the share that fails is the
    false-alarm rate the rule gives in practice at this N."""
    names = list(runs)
    nums = {n: judged_numbers(m) for n, m in runs.items()}
    verd = {n: verdicts(m) for n, m in runs.items()}
    held_by = {n: holds(m) for n, m in runs.items()}
    keys = sorted(set().union(*nums.values()))
    values = {k: [nums[n].get(k) for n in names] for k in keys}
    stats, skipped = calibrated_bands(values, alpha)
    per_run, alarms = {}, 0
    for held in names:
        rest = [n for n in names if n != held]
        per_run[held] = rerun_check(nums[held], verd[held], {n: nums[n] for n in rest},
                                    [held_by[n] for n in rest], alpha)
        alarms += bool(per_run[held]["numbers_beyond"] or per_run[held]["flips"])
    return {
        "profile": profile, "command": command, "runs": names, "family_wise_alpha": alpha,
        "method": CALIBRATED_DOC,
        "numbers": {k: {**stats[k], "values": values[k]} for k in stats},
        "not_judged": skipped,
        "verdicts": verd,
        "stable": stable_claims(list(held_by.values())),
        "leave_one_out": {"checks": len(names), "false_alarms": alarms, "rate": alarms / len(names),
                          "per_run": per_run},
    }


def calibration_summary(cal: dict) -> str:
    loo = cal["leave_one_out"]
    return (f"calibration of profile {cal['profile']}: {len(cal['runs'])} runs, {len(cal['numbers'])} numbers judged, "
            f"{len(cal['not_judged'])} not judged, {len(cal['stable'])} stable claims; bands for a family-wise "
            f"false-alarm rate of {cal['family_wise_alpha']:.0%}; leave-one-out: {loo['false_alarms']} of "
            f"{loo['checks']} honest reruns failed")
