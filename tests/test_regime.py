"""The committed run of the tiny default is in the paper's regime, read from the git-tracked metrics/*.json with no
run (fast tier): a student of middling accuracy, a clearly stronger teacher, a table mostly right with mixed
groups, DPO's small update; and the committed verdicts are what the claims declared in claims.py give on the
committed numbers. The same science on a fresh run of the default: test_science.py (full tier)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from weightspace import config
from weightspace.report.claims import CLAIMS, check

METRICS = REPO / "metrics"
PAPER_SIX = ("sft", "rft", "dft", "rift", "grpo", "dpo")


def load(name: str) -> dict:
    return json.loads((METRICS / f"{name}.json").read_text())


def test_the_committed_metrics_are_the_defaults():
    p = config.load(REPO / "params.yaml")
    assert p.profile == "tiny" and load("claims")["profile"] == "tiny"
    assert set(load("geometry")["frobenius"]) == set(p.methods)
    assert load("rollouts")["rows"] == p.prepare.train.n * p.rollouts.k + p.rollouts.gold_rows


def test_student_teacher_and_table_are_in_the_papers_regime():
    base, teacher, r = load("base"), load("teacher"), load("rollouts")
    assert 0.2 <= base["heldout_acc"] <= 0.5, base["heldout_acc"]
    assert teacher["base_heldout_acc"] == base["heldout_acc"] and teacher["heldout_acc"] >= base["heldout_acc"] + 0.2
    assert r["accuracy"] >= 0.6 and r["mixed_group_share"] >= 0.3, r


def test_dpo_update_is_far_smaller_than_the_others():
    norms = {m: load(f"train/{m}")["delta_frobenius"] for m in PAPER_SIX}
    assert 5 * norms["dpo"] < min(v for m, v in norms.items() if m != "dpo"), norms
    geo = load("geometry")["frobenius"]  # the same norms from the deltas files, summed in another order
    assert geo == pytest.approx({m: norms[m] for m in geo}, rel=1e-12)


def test_committed_verdicts_follow_from_the_committed_numbers():
    """claims.check on the committed metric files (as the report stage reads them) gives the committed verdicts."""
    p = config.load(REPO / "params.yaml")
    metrics = {name: load(name) for name in ("geometry", "accuracy", "connectivity", "cka", "rollouts")}
    metrics["alignment"] = {m: load(f"alignment/{m}")["curve"] for m in p.methods}
    metrics["sets"] = {"accuracy_set": p.report.accuracy_set, "aime_set": p.report.aime_set}
    got = {c["id"]: c["verdict"] for c in check(metrics)}
    committed = load("claims")
    assert got == {k: c["verdict"] for k, c in committed["claims"].items()}
    assert set(got) == {c.id for c in CLAIMS}
    assert sum(committed[k] for k in ("holds", "does_not_hold", "undecided", "not_measured")) == len(CLAIMS)


def test_the_calibration_is_of_the_committed_run_and_its_false_alarm_rate_is_measured():
    """metrics/calibration.json (tools/replicates.py write): made around the committed run (every judged number's
    committed draw equals the committed metrics, so a change that moves the numbers fails here until the
    replicates are rerun), over at least six runs, with the bands, the stable claims and the leave-one-out rate
    recomputed from the draws and verdicts it stores."""
    from weightspace.weights import noise
    from weightspace.report import reproduce

    cal = json.loads((METRICS / "calibration.json").read_text())
    assert cal["profile"] == "tiny" and cal["command"].startswith("python tools/replicates.py queue --seeds")
    assert len(cal["runs"]) >= 6 and cal["runs"][0] == "committed"
    committed = {name: load(name) for name in ("geometry", "accuracy", "connectivity", "cka", "rollouts", "claims")}
    assert reproduce.stale(cal, committed) == []
    values = {k: s["values"] for k, s in cal["numbers"].items()}
    stats, _ = noise.calibrated_bands(values, cal["family_wise_alpha"])
    assert {k: s["band"] for k, s in stats.items()} == pytest.approx({k: s["band"] for k, s in cal["numbers"].items()})
    assert cal["verdicts"]["committed"] == {k: c["verdict"] for k, c in committed["claims"]["claims"].items()}
    loo = cal["leave_one_out"]
    assert loo["checks"] == len(cal["runs"]) and loo["rate"] == loo["false_alarms"] / loo["checks"]
    assert loo["false_alarms"] == sum(bool(r["numbers_beyond"] or r["flips"]) for r in loo["per_run"].values())


def test_the_replicate_file_judges_every_claim_by_the_declared_rule():
    """metrics/replicates.json (tools/replicates.py write): at least six runs, the committed one first with this
    run's claim values; each claim's k, N and verdict recomputed from the values it stores with claims.judge, and
    the counts the report and README state are those verdicts'."""
    from weightspace.report.claims import CLAIMS, RULE, judge

    rep = load("replicates")
    assert len(rep["runs"]) >= 6 and rep["runs"][0]["name"] == "committed" and rep["rule"] == RULE
    committed = load("claims")
    assert committed["counted_over_runs"] == len(rep["runs"])
    for c in CLAIMS:
        r = rep["claims"][c.id]
        assert r["values"][0] == committed["claims"][c.id]["this_run"], c.id
        again = judge(c, r["values"])
        assert (again["k"], again["n"], again["verdict"]) == (r["k"], r["n"], r["verdict"]), c.id
        assert committed["claims"][c.id]["replicates"]["verdict"] == r["verdict"]
    for v in ("holds", "does_not_hold", "undecided", "not_measured"):
        assert committed[v] == rep["counts"][v] == sum(r["verdict"] == v.replace("_", " ") for r in rep["claims"].values())
