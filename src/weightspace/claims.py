"""The paper's claims, each set beside this run's value and checked under a stated threshold.

A claim reads only metric files (``geometry``, ``accuracy``, ``connectivity``, ``cka``); it
returns ``holds`` True/False, or None where this run did not measure it. Thresholds are loose
versions of the paper's numbers (../shared/PAPER.md), stated in each claim's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

FAMILY = ("sft", "rft", "rift")


def _pair(d: dict, a: str, b: str):
    return d.get(f"{a}-{b}", d.get(f"{b}-{a}"))


@dataclass(frozen=True)
class Claim:
    id: str
    group: str  # (i) .. (iv) or "headline"
    text: str  # the claim and its threshold
    paper: str
    measure: Callable[[dict], tuple[object, bool | None]]  # metrics -> (value, holds)


def _cos(m, a, b):
    return _pair(m["geometry"]["cosine"]["global"], a, b)


def _family_cosines(m):
    v = [_cos(m, a, b) for a, b in (("sft", "rft"), ("sft", "rift"), ("rft", "rift"))]
    return [round(x, 3) for x in v], min(v) >= 0.9


def _dft(m):
    v = _cos(m, "sft", "dft")
    return round(v, 3), 0.3 <= v <= 0.8


def _grpo(m):
    v = sum(_cos(m, "grpo", x) for x in FAMILY) / 3
    return round(v, 3), 0.5 <= v <= 0.9


def _dpo_orth(m):
    v = [_cos(m, "dpo", x) for x in FAMILY]
    return [round(x, 3) for x in v], max(abs(x) for x in v) <= 0.15


def _dpo_small(m):
    f = m["geometry"]["frobenius"]
    ratio = min(f[x] for x in f if x != "dpo") / f["dpo"]
    return round(ratio, 2), ratio >= 5


def _angle_order(m):
    order = ("rft", "rift", "grpo", "dft", "dpo")
    med = [_pair(m["geometry"]["angle_top1"], "sft", x)["median"] for x in order]
    return [round(x, 1) for x in med], all(a < b for a, b in zip(med, med[1:]))


def _angle_gap(m):
    a = m["geometry"]["angle_top1"]
    rft, dpo = _pair(a, "sft", "rft")["median"], _pair(a, "sft", "dpo")["median"]
    return [round(rft, 1), round(dpo, 1)], rft <= 15 and dpo >= 30


def _erank(m):
    e = m["geometry"]["effective_rank"]
    return {k: round(v, 2) for k, v in e.items()}, max(e, key=e.get) == "dpo"


def _orth_grpo(m):
    v = m["geometry"]["orthogonal_fraction"]["direction"]["grpo"]
    return round(v, 3), 0.5 <= v <= 0.8


def _u1(m):
    u = m["geometry"]["u1_alignment"]
    fam = min(_pair(u, a, b) for a, b in (("sft", "rft"), ("sft", "rift"), ("rft", "rift")))
    dpo = _pair(u, "sft", "dpo")
    return [round(fam, 3), round(dpo, 3)], fam >= 0.9 and dpo <= 0.3


def _acc_same(m):
    acc = m["accuracy"]
    others = ("sft", "rft", "dft", "rift", "grpo")
    ps = [_pair(acc, a, b)["p_holm"] for i, a in enumerate(others) for b in others[i + 1 :]]
    return round(min(ps), 4), min(ps) >= 0.05


def _acc_dpo(m):
    acc = m["accuracy"]
    others = ("sft", "rft", "dft", "rift", "grpo")
    better = all(acc["dpo"]["acc"] > acc[x]["acc"] for x in others)
    ps = [_pair(acc, "dpo", x)["p_holm"] for x in others]
    return {"dpo": round(acc["dpo"]["acc"], 3), "best_other": round(max(acc[x]["acc"] for x in others), 3),
            "max_p_holm": round(max(ps), 4)}, better and max(ps) < 0.05


def _lmc_grpo(m):
    v = m["connectivity"].get("sft-grpo")
    return (None, None) if v is None else (round(v["barrier"], 4), v["barrier"] < 0.05)


def _lmc_dpo(m):
    v = m["connectivity"].get("rift-dpo")
    return (None, None) if v is None else (round(v["barrier"], 4), v["barrier"] >= 0.25)


def _cka(m):
    d = m["cka"]["debiased"]
    fam = _pair(d, "sft", "rift")["late_mean"]
    grpo = _pair(d, "sft", "grpo")["late_mean"]
    dpo = max(_pair(d, "dpo", "grpo")["late_mean"], _pair(d, "dpo", "dft")["late_mean"])
    return [round(fam, 3), round(grpo, 3), round(dpo, 3)], fam >= 0.99 and grpo <= 0.95 and dpo <= 0.7


def _seeds(m):
    nf = m["geometry"].get("noise_floor")
    if nf is None:
        return None, None
    return [round(nf["cosine"], 3), round(nf["u1_alignment"], 3)], nf["cosine"] <= 0.5 and nf["u1_alignment"] >= 0.9


def _not_measured(m):
    return None, None


CLAIMS = [
    Claim("family_cosine", "(i)", "SFT, RFT and RIFT make one update: all three global cosines >= 0.9",
          "0.977 / 0.967 / 0.969", _family_cosines),
    Claim("family_u1", "(i)", "their top singular directions agree (mean |<u1,u1'>| >= 0.9) while DPO's do not "
          "(SFT-DPO <= 0.3)", "0.97-0.98; DPO 0.11", _u1),
    Claim("dft_cosine", "(ii)", "DFT moves partly elsewhere: cosine SFT-DFT in [0.3, 0.8]", "0.572", _dft),
    Claim("grpo_cosine", "(ii)", "offline GRPO sits near the SFT family: mean cosine to SFT/RFT/RIFT in [0.5, 0.9]",
          "about 0.74", _grpo),
    Claim("grpo_orthogonal", "(ii)", "GRPO's orthogonal fraction off SFT (direction form) in [0.5, 0.8]", "0.67",
          _orth_grpo),
    Claim("dpo_orthogonal", "(iii)", "DPO's update is near-orthogonal to SFT/RFT/RIFT: |cosine| <= 0.15",
          "0.057 to 0.065", _dpo_orth),
    Claim("dpo_small", "(iii)", "DPO's update is much smaller: min other ||dW|| / DPO's ||dW|| >= 5", "about 13",
          _dpo_small),
    Claim("angle_order", "headline", "median top-1 principal angle to SFT rises RFT < RIFT < GRPO < DFT < DPO",
          "6.7 < 8.2 < 18.5 < 26.7 < 54.6 deg", _angle_order),
    Claim("angle_gap", "headline", "top-1 angle SFT-RFT <= 15 deg and SFT-DPO >= 30 deg", "6.7 and 54.6 deg",
          _angle_gap),
    Claim("effective_rank", "headline", "DPO's delta has the highest effective rank", "24.5 vs about 16",
          _erank),
    Claim("accuracy_same", "(iv)", "SFT, RFT, DFT, RIFT and GRPO do not differ in accuracy: every pairwise "
          "McNemar p (Holm) >= 0.05", "p >= 0.15", _acc_same),
    Claim("accuracy_dpo", "(iv)", "DPO is more accurate than each of them, Holm p < 0.05", "93.5% vs 87.3-88.2%, "
          "p < 1e-9", _acc_dpo),
    Claim("lmc_sft_grpo", "headline", "SFT <-> GRPO lie in one basin: barrier < 0.05 nats", "monotone", _lmc_grpo),
    Claim("lmc_rift_dpo", "headline", "RIFT <-> DPO are separated by a barrier >= 0.25 nats",
          "3.82 -> 7.06 -> 8.64 (barrier 0.83)", _lmc_dpo),
    Claim("cka_late", "headline", "late-layer debiased CKA: SFT-RIFT >= 0.99, SFT-GRPO <= 0.95, DPO-GRPO/DFT <= 0.7",
          "> 0.99; about 0.85; about 0.45", _cka),
    Claim("seeds", "headline", "same loss, two seeds: global cosine <= 0.5 while mean |<u1,u1'>| >= 0.9",
          "0.07-0.36; 0.99", _seeds),
    Claim("lr", "headline", "a 10x LR step rotates Delta W (cosine about 0.55) and grows its norm about 3x",
          "0.55; 3x", _not_measured),
]


def check(metrics: dict) -> list[dict]:
    """Every claim against ``metrics`` = {"geometry": ..., "accuracy": <one set>, "connectivity": ..., "cka": ...}."""
    out = []
    for c in CLAIMS:
        value, holds = c.measure(metrics)
        out.append({"id": c.id, "group": c.group, "claim": c.text, "paper": c.paper, "this_run": value,
                    "holds": holds})
    return out
