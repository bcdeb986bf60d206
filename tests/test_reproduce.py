"""The reproduction check: seed noise pooled per metric family from the twins, differences judged
against a Bonferroni band, verdicts compared."""

import copy
import math

import pytest
from scipy.stats import norm

from weightspace.weights import noise
from weightspace.report.reproduce import compare, render

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


# ---- calibrated bands -------------------------------------------------------------------------------------

def test_calibrated_band_is_a_student_t_bonferroni_prediction_interval():
    """Draws 1, 2, 3, 4: mean 2.5, sd = sqrt(5/3) = 1.2910; one judged number, alpha 5%: t_3 two-sided 97.5% =
    3.1824 (a t table); band = 3.1824 * sqrt(1 + 1/4) * 1.2910 = 4.593. A number no run moved, one with three
    draws, and a point mass (one value in half of the draws or more) are not judged."""
    stats, skipped = noise.calibrated_bands({"a": [1, 2, 3, 4], "flat": [5, 5, 5, 5], "few": [1, 2, None, float("nan")],
                                             "zeros": [0, 0, 0.1, 0.2], "ties": [1, 1, 2, 3, 4]})
    assert stats["a"]["sd"] == pytest.approx(math.sqrt(5 / 3)) and stats["a"]["mean"] == 2.5
    assert set(skipped) == {"flat", "few", "zeros"} and "fewer than 4" in skipped["few"] and "moved" in skipped["flat"]
    assert "point mass" in skipped["zeros"]
    one, _ = noise.calibrated_bands({"a": [1, 2, 3, 4]})
    assert one["a"]["band"] == pytest.approx(3.1824 * math.sqrt(1.25) * math.sqrt(5 / 3), rel=1e-4)
    assert stats["a"]["band"] > one["a"]["band"]  # Bonferroni over two judged numbers (a, ties)


def calibration_runs(n=6, outlier=None):
    """``n`` runs whose cosines scatter by a few thousandths (deterministic), ``outlier``'s far off."""
    runs = {}
    for i in range(n):
        m = run_metrics(shift=0.004 * ((i * 7) % 5 - 2))
        m["claims"]["profile"] = "tiny"
        if i == outlier:
            m["geometry"]["cosine"]["global"]["sft-rft"] += 1.0
        runs["committed" if i == 0 else f"seed{i}"] = m
    return runs


def test_leave_one_out_checks_each_run_against_the_others():
    cal = noise.calibrate(calibration_runs(), profile="tiny", command="x")
    loo = cal["leave_one_out"]
    assert loo["checks"] == 6 and loo["false_alarms"] == 0 and loo["rate"] == 0.0
    assert "geometry:cosine.global.sft-rft" in cal["numbers"] and "geometry:frobenius.sft" in cal["not_judged"]
    assert cal["stable"] == {"dpo_orthogonal": "holds"}
    bad = noise.calibrate(calibration_runs(outlier=3), profile="tiny", command="x")["leave_one_out"]
    # seed3 held out: intervals from runs that agree, so it fails; held in, its spread widens the interval
    assert bad["per_run"]["seed3"]["numbers_beyond"] == ["geometry:cosine.global.sft-rft"] and bad["false_alarms"] == 1
    flipped = calibration_runs()
    flipped["seed2"]["claims"]["claims"]["dpo_orthogonal"].update(verdict="does not hold", holds=False)
    v = noise.calibrate(flipped, profile="tiny", command="x")
    # 1 of 6 does not hold: 83% is unstable overall; held out, seed2 contradicts the 5 others' stable verdict
    assert v["stable"] == {} and v["leave_one_out"]["per_run"]["seed2"]["flips"] == ["dpo_orthogonal"]
    assert v["leave_one_out"]["false_alarms"] == 1


def test_a_planted_run_is_checked_against_the_replicates_alone():
    """``noise.rerun_check`` (tools/power.py): a new run is judged against intervals and stable claims made from the
    replicates only, so a planted shift fails and cannot widen its own band; a run inside the spread passes."""
    runs = calibration_runs()
    nums = {n: noise.judged_numbers(m) for n, m in runs.items()}
    held = [noise.holds(m) for m in runs.values()]
    honest = run_metrics(shift=0.001)
    r = noise.rerun_check(noise.judged_numbers(honest), noise.verdicts(honest), nums, held)
    assert r == {"numbers_judged": 3, "numbers_beyond": [], "flips": []}  # the three cosines
    planted = run_metrics(shift=0.05)  # every cosine 0.05 off: about 8 replicate sds
    planted["claims"]["claims"]["dpo_orthogonal"].update(verdict="does not hold", holds=False)
    r = noise.rerun_check(noise.judged_numbers(planted), noise.verdicts(planted), nums, held)
    assert r["numbers_beyond"] == [f"geometry:cosine.global.{p}" for p in sorted(PAIRS)]
    assert r["flips"] == ["dpo_orthogonal"]


def test_reproduce_reads_calibrated_bands_and_flags_a_stale_calibration():
    from weightspace.report.reproduce import compare, render

    runs = calibration_runs()
    cal = noise.calibrate(runs, profile="tiny", command="x")
    ref = runs["committed"]
    text, ok = render(compare(ref, runs["seed4"], cal), "HEAD")
    assert ok and "prediction intervals from 6 replicate runs" in text and "CAUTION" not in text, text
    num = cal["numbers"]["geometry:cosine.global.sft-dpo"]
    planted = copy.deepcopy(ref)
    planted["geometry"]["cosine"]["global"]["sft-dpo"] = num["mean"] + 1.01 * num["band"]
    text, ok = render(compare(ref, planted, cal), "HEAD")
    assert not ok and "EXCEEDS" in text
    # numbers the calibration does not judge are not judged, even where seed twins would band them
    planted = copy.deepcopy(ref)
    planted["geometry"]["frobenius"]["dpo"] = 5.0
    assert render(compare(ref, planted, cal), "HEAD")[1]
    text, _ = render(compare(runs["seed1"], runs["seed1"], cal), "HEAD")
    assert "CAUTION: made around another run" in text


def test_calibrated_check_judges_stable_claims_and_leaves_unstable_ones():
    """A stable claim (holds in every replicate) that does not hold in the new run fails the check; once one
    replicate does not hold either (5 of 6: unstable), the same new run passes, the claim listed as not judged."""
    runs = calibration_runs()
    new = copy.deepcopy(runs["seed4"])
    new["claims"]["claims"]["dpo_orthogonal"].update(verdict="does not hold", holds=False)
    text, ok = render(compare(runs["committed"], new, noise.calibrate(runs, profile="tiny", command="x")), "HEAD")
    assert not ok and "dpo_orthogonal: holds (stable) -> does not hold" in text, text
    runs["seed2"]["claims"]["claims"]["dpo_orthogonal"].update(verdict="does not hold", holds=False)
    text, ok = render(compare(runs["committed"], new, noise.calibrate(runs, profile="tiny", command="x")), "HEAD")
    assert ok and "unstable across the replicates, not judged: dpo_orthogonal" in text, text


def lock(base: str, teacher: str) -> str:
    return (f"schema: '2.0'\nstages:\n  base:\n    cmd: x\n    outs:\n    - path: models/base\n      md5: {base}.dir\n"
            f"  teacher:\n    cmd: y\n    outs:\n    - path: models/teacher\n      md5: {teacher}.dir\n")


def test_reproduce_names_a_base_or_teacher_the_replicates_do_not_share(tmp_path):
    """``shared_differ`` reads ``dvc.lock`` at a git revision and in the workspace: the same hashes give nothing,
    a retrained teacher (other bits) is named, and a revision without dvc.lock counts as differing."""
    import subprocess

    from weightspace.report.reproduce import shared_differ

    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "empty")
    (tmp_path / "dvc.lock").write_text(lock("aaa", "bbb"))
    git("add", "dvc.lock")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "run")
    assert shared_differ("HEAD", "workspace", str(tmp_path)) == []
    (tmp_path / "dvc.lock").write_text(lock("aaa", "ccc"))
    assert shared_differ("HEAD", "workspace", str(tmp_path)) == ["models/teacher"]
    assert shared_differ("HEAD~1", "workspace", str(tmp_path)) == ["models/base", "models/teacher"]


def test_power_reads_the_committed_replicates_as_the_leave_one_out_saw_them(tmp_path):
    """tools/power.py judges planted runs against the replicates as committed (``calibration.json``'s numbers,
    ``replicates.json``'s claim values decided again): checking each replicate against the others with them
    gives the committed leave-one-out result run by run, and a claim count that no longer matches is refused."""
    import json
    import shutil
    import sys
    from pathlib import Path

    metrics = Path(__file__).resolve().parents[1] / "metrics"
    sys.path.insert(0, str(metrics.parent / "tools"))
    import power

    seeds, nums, held = power.replicate_runs(metrics)
    cal = json.loads((metrics / "calibration.json").read_text())
    assert list(seeds) == cal["runs"] and len(seeds) >= 10
    for n in seeds:
        rest = [m for m in seeds if m != n]
        r = noise.rerun_check(nums[n], cal["verdicts"][n], {m: nums[m] for m in rest}, [held[m] for m in rest],
                              cal["family_wise_alpha"])
        want = cal["leave_one_out"]["per_run"][n]
        assert (r["numbers_beyond"], r["flips"]) == (want["numbers_beyond"], want["flips"]), n
    shutil.copy(metrics / "calibration.json", tmp_path)
    rep = json.loads((metrics / "replicates.json").read_text())
    rep["claims"]["dpo_orthogonal"]["k"] += 1
    (tmp_path / "replicates.json").write_text(json.dumps(rep))
    with pytest.raises(SystemExit, match="dpo_orthogonal"):
        power.replicate_runs(tmp_path)
