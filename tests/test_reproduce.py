"""The reproduction check: seed bands from the twins, differences judged against them, verdicts compared."""

import copy

import pytest

from weightspace import noise
from weightspace.reproduce import compare, render


def run_metrics(cos=0.5, twin_cos=0.4, verdict="holds", acc=0.6, barrier=0.01) -> dict:
    geo = {"cosine": {"global": {"sft-dpo": cos}}, "frobenius": {"sft": 2.0, "dpo": 0.2},
           "seeds": {"sft": {"cosine": 0.3}},
           "seed_twins": {"cosine": {"global": {"sft-dpo": twin_cos}}, "frobenius": {"sft": 2.5, "dpo": 0.2}}}
    return {"geometry": geo, "accuracy": {"heldout": {"sft": {"acc": acc, "lo": acc - 0.05, "hi": acc + 0.07, "n": 200}}},
            "connectivity": {"sft-dpo": {"barrier": barrier}},
            "claims": {"claims": {"dpo_orthogonal": {"verdict": verdict, "holds": verdict == "holds"}}}}


def test_bands_are_the_twin_spread_and_the_wilson_half_width():
    b = noise.bands(run_metrics())
    assert b["geometry:cosine.global.sft-dpo"] == pytest.approx(0.1)
    assert b["geometry:frobenius.sft"] == pytest.approx(0.5) and b["geometry:frobenius.dpo"] == 0.0
    assert b["accuracy:heldout.sft.acc"] == pytest.approx(0.06)
    assert not any(k.startswith(("geometry:seeds", "geometry:seed_twins", "connectivity")) for k in b)


def test_same_numbers_reproduce():
    text, ok = render(compare(run_metrics(), run_metrics()), "HEAD")
    assert ok and "REPRODUCED" in text and "verdicts that differ: 0" in text


def test_a_difference_within_the_band_passes_and_one_beyond_it_fails():
    ok_run = run_metrics(cos=0.55, acc=0.65)  # cosine moved 0.05 <= band 0.1; accuracy 0.05 <= 0.06
    assert render(compare(run_metrics(), ok_run), "HEAD")[1]
    # the band is the larger of the two runs': the new run's |0.75 - 0.4| = 0.35 covers the 0.25 move
    text, ok = render(compare(run_metrics(), run_metrics(cos=0.75)), "HEAD")
    assert ok, text
    planted = run_metrics(cos=0.75, twin_cos=0.75)  # the planted edit: band 0 in the new run, old band 0.1
    text, ok = render(compare(run_metrics(), planted), "HEAD")
    assert not ok and "EXCEEDS" in text and "1 number(s) beyond their band" in text
    line = next(x for x in text.splitlines() if x.startswith("geometry:cosine.global.sft-dpo"))
    assert "0.25" in line and "0.1" in line


def test_a_changed_verdict_fails_even_within_bands_and_unbanded_numbers_are_not_judged():
    text, ok = render(compare(run_metrics(), run_metrics(verdict="undecided", barrier=0.5)), "v1")
    assert not ok and "dpo_orthogonal: holds -> undecided" in text and "1 verdict(s) differ" in text
    assert "connectivity:sft-dpo.barrier" not in text  # unbanded: counted, printed only with --all
    text_all, _ = render(compare(run_metrics(), run_metrics(barrier=0.5)), "v1", show_all=True)
    assert "connectivity:sft-dpo.barrier" in text_all and "no band" in text_all


def test_no_claims_is_not_a_reproduction():
    a = run_metrics()
    b = copy.deepcopy(a)
    for m in (a, b):
        del m["claims"]
    assert not render(compare(a, b), "HEAD")[1]
