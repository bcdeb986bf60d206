"""The claim checks hold on the paper's own numbers and fail on numbers that contradict them."""

import copy

from weightspace.claims import CLAIMS, check

M = ("sft", "rft", "dft", "rift", "grpo", "dpo")


def paper_metrics() -> dict:
    """Metric files filled with ../shared/PAPER.md's Qwen3-4B numbers (gaps filled consistently)."""
    cos = {"sft-rft": 0.977, "sft-rift": 0.967, "rft-rift": 0.969, "sft-dft": 0.572, "dft-rift": 0.536,
           "rft-dft": 0.56, "sft-grpo": 0.74, "rft-grpo": 0.74, "rift-grpo": 0.74, "dft-grpo": 0.5,
           "sft-dpo": 0.06, "rft-dpo": 0.057, "rift-dpo": 0.065, "dft-dpo": 0.05, "grpo-dpo": 0.1}
    top1 = {"rft": 6.7, "rift": 8.2, "grpo": 18.5, "dft": 26.7, "dpo": 54.6}
    angles = {f"sft-{m}": {"median": v, "q25": v - 1, "q75": v + 1} for m, v in top1.items()}
    u1 = {"sft-rft": 0.98, "sft-rift": 0.97, "rft-rift": 0.975, "sft-dpo": 0.11}
    geometry = {"cosine": {"global": cos}, "angle_top1": angles, "u1_alignment": u1,
                "frobenius": {"sft": 2.9, "rft": 2.82, "dft": 2.95, "rift": 3.04, "grpo": 2.9, "dpo": 0.22},
                "effective_rank": {"sft": 16, "rft": 16, "dft": 16, "rift": 16, "grpo": 14.8, "dpo": 24.5},
                "orthogonal_fraction": {"direction": {"grpo": 0.67}},
                "noise_floor": {"cosine": 0.2, "u1_alignment": 0.99}}
    acc = {m: {"acc": a} for m, a in zip(M, (0.875, 0.873, 0.878, 0.882, 0.876, 0.935))}
    for i, a in enumerate(M):
        for b in M[i + 1:]:
            acc[f"{a}-{b}"] = {"p_holm": 1e-10 if "dpo" in (a, b) else 0.5}
    connectivity = {"sft-grpo": {"barrier": 0.0}, "rift-dpo": {"barrier": 0.83}}
    cka = {"debiased": {"sft-rift": {"late_mean": 0.995}, "sft-grpo": {"late_mean": 0.85},
                        "grpo-dpo": {"late_mean": 0.45}, "dft-dpo": {"late_mean": 0.45}}}
    return {"geometry": geometry, "accuracy": acc, "connectivity": connectivity, "cka": cka}


def test_every_measurable_claim_holds_on_the_papers_numbers():
    results = check(paper_metrics())
    assert len(results) == len(CLAIMS)
    bad = [r["id"] for r in results if r["holds"] is False]
    assert bad == []
    assert {r["id"] for r in results if r["holds"] is None} == {"lr"}


def test_claims_fail_on_contradicting_numbers():
    m = copy.deepcopy(paper_metrics())
    m["geometry"]["cosine"]["global"]["sft-rft"] = 0.4
    m["geometry"]["cosine"]["global"]["sft-dpo"] = 0.5
    m["geometry"]["frobenius"]["dpo"] = 2.0
    m["accuracy"]["sft-rft"]["p_holm"] = 0.001
    m["connectivity"]["rift-dpo"]["barrier"] = 0.0
    m["geometry"]["noise_floor"]["cosine"] = 0.9
    got = {r["id"]: r["holds"] for r in check(m)}
    for cid in ("family_cosine", "dpo_orthogonal", "dpo_small", "accuracy_same", "lmc_rift_dpo", "seeds"):
        assert got[cid] is False, cid
    assert got["dft_cosine"] is True
