"""The reproduction check: seed noise pooled per metric family from the twins, differences judged
against a Bonferroni band, verdicts compared."""

import copy
import math

import pytest
from scipy.stats import norm

from weightspace import noise
from weightspace.reproduce import compare, render

PAIRS = ("sft-rft", "sft-dpo", "rft-dpo")


def run_metrics(shift=0.0, verdict="holds", acc=0.6, barrier=0.01, twin_gap=(0.1, -0.1, 0.1)) -> dict:
    """Three pairs' cosines, their twins ``twin_gap`` away; norms with twins; one accuracy; a barrier."""
    cos = {p: 0.5 + 0.1 * i + shift for i, p in enumerate(PAIRS)}
    geo = {"cosine": {"global": cos}, "frobenius": {"sft": 2.0, "rft": 2.1, "dpo": 0.2},
           "seeds": {"sft": {"cosine": 0.3}},
           "seed_twins": {"cosine": {"global": {p: cos[p] + g for p, g in zip(PAIRS, twin_gap)}},
                          "frobenius": {"sft": 2.0, "rft": 2.1, "dpo": 0.2}}}
    return {"geometry": geo, "accuracy": {"heldout": {"sft": {"acc": acc, "lo": acc - 0.05, "hi": acc + 0.07, "n": 200}}},
            "connectivity": {"sft-dpo": {"barrier": barrier}},
            "claims": {"claims": {"dpo_orthogonal": {"verdict": verdict, "holds": verdict == "holds"}}}}


def test_family_and_pooled_sigma():
    assert noise.family("cosine.global.sft-rft", {"sft", "rft"}) == "cosine.global"
    assert noise.family("angle_top1.sft-rft.median", {"sft", "rft"}) == "angle_top1.median"
    assert noise.family("orthogonal_fraction_depth.grpo.late", {"grpo"}) == "orthogonal_fraction_depth.late"
    sig = noise.sigmas([run_metrics()])
    # every cosine is 0.1 from its twin: sigma^2 = 0.1^2 / 2
    assert sig["geometry:cosine.global.sft-dpo"] == pytest.approx(0.1 / math.sqrt(2))
    assert sig["geometry:frobenius.sft"] == 0.0
    assert sig["accuracy:heldout.sft.acc"] == pytest.approx(0.06 / 1.96)
    assert not any(k.startswith(("geometry:seeds", "geometry:seed_twins", "connectivity")) for k in sig)



def test_accuracy_sigma_pooled_over_the_evaluated_twins():
    """With ``accuracy.seed_twins`` the accuracies are one family per set: sft 0.60 vs twin 0.58, rft 0.50
    vs 0.54 -> sigma^2 = (0.02^2 + 0.04^2) / 2 / 2 = 0.0005; the base (no twin) takes the same sigma. The
    items are fixed, so this is far below the Wilson sigma (0.06 / 1.96 = 0.031)."""
    m = run_metrics()
    h = m["accuracy"]["heldout"]
    h["rft"] = {"acc": 0.5, "lo": 0.43, "hi": 0.57, "n": 200}
    h["base"] = {"acc": 0.4, "lo": 0.33, "hi": 0.47, "n": 200}
    h["sft-rft"] = {"p": 0.01, "n01": 5, "n10": 25}  # a pair's entry: not an accuracy, no band
    m["accuracy"]["seed_twins"] = {"heldout": {"sft": {"acc": 0.58, "lo": 0, "hi": 1}, "rft": {"acc": 0.54, "lo": 0, "hi": 1},
                                               "base": {"acc": 0.4, "lo": 0.33, "hi": 0.47}}}
    sig = noise.sigmas([m])
    for model in ("sft", "rft", "base"):
        assert sig[f"accuracy:heldout.{model}.acc"] == pytest.approx(math.sqrt(0.0005))
    assert not any(k.startswith("accuracy:seed_twins") or "sft-rft" in k and k.startswith("accuracy") for k in sig)

def test_band_is_bonferroni_z_times_sqrt2_sigma():
    b = noise.bands(run_metrics())
    z = norm.isf(0.05 / (2 * 7))  # 3 cosines, 3 norms, 1 accuracy
    assert b["geometry:cosine.global.sft-rft"] == pytest.approx(z * math.sqrt(2) * 0.1 / math.sqrt(2))
    assert b["accuracy:heldout.sft.acc"] == pytest.approx(z * math.sqrt(2) * 0.06 / 1.96)


def test_same_numbers_reproduce():
    text, ok = render(compare(run_metrics(), run_metrics()), "HEAD")
    assert ok and "REPRODUCED" in text and "verdicts that differ: 0" in text


def test_a_difference_within_the_band_passes_and_a_planted_one_fails():
    # band of a cosine: z (3.2) * 0.1 = 0.32
    assert render(compare(run_metrics(), run_metrics(shift=0.2, acc=0.65)), "HEAD")[1]
    text, ok = render(compare(run_metrics(), run_metrics(shift=0.5)), "HEAD")
    assert not ok and "EXCEEDS" in text and "beyond it, missing or NaN: 3" in text
    line = next(x for x in text.splitlines() if x.startswith("geometry:cosine.global.sft-dpo"))
    assert "0.5" in line and "EXCEEDS" in line
    # the norms have no seed spread in the reference run (band 0): a planted norm is beyond it, whatever
    # spread the planted run itself shows
    planted = run_metrics()
    planted["geometry"]["frobenius"]["dpo"] = 0.25
    text, ok = render(compare(run_metrics(), planted), "HEAD")
    assert not ok and "geometry:frobenius.dpo" in text


def test_missing_and_nan_numbers_fail():
    gone = run_metrics()
    del gone["accuracy"]
    text, ok = render(compare(run_metrics(), gone), "HEAD")
    assert not ok and "MISSING" in text
    nan = run_metrics()
    nan["geometry"]["cosine"]["global"]["sft-rft"] = float("nan")
    text, ok = render(compare(run_metrics(), nan), "HEAD")
    assert not ok and "NaN" in text


def test_verdicts_holds_to_does_not_hold_fails_moves_to_undecided_do_not():
    text, ok = render(compare(run_metrics(), run_metrics(verdict="does not hold", barrier=0.5)), "v1")
    assert not ok and "dpo_orthogonal: holds -> does not hold" in text and "1 verdict(s) differ" in text
    assert "connectivity:sft-dpo.barrier" not in text  # unbanded: counted, printed only with --all
    text, ok = render(compare(run_metrics(), run_metrics(verdict="undecided")), "v1")
    assert ok and "dpo_orthogonal: holds -> undecided (within noise)" in text
    text, ok = render(compare(run_metrics(), run_metrics(verdict="not measured")), "v1")
    assert not ok
    text_all, _ = render(compare(run_metrics(), run_metrics(barrier=0.5)), "v1", show_all=True)
    assert "connectivity:sft-dpo.barrier" in text_all and "no band" in text_all


def test_no_claims_is_not_a_reproduction():
    a = run_metrics()
    b = copy.deepcopy(a)
    for m in (a, b):
        del m["claims"]
    assert not render(compare(a, b), "HEAD")[1]
