"""The real stages, run by `dvc repro` on the tiny default in a temporary copy of the repository.

One run of the whole pipeline (module fixture) feeds every assertion here; each asserts behaviour
(what the artifacts do and satisfy), not only that files exist.
"""

from __future__ import annotations

import json

import pytest

from conftest import copy_repo, run
from weightspace.rollouts import load_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    root = copy_repo(tmp / "repo")
    run(["dvc", "repro"], root, tmp)
    return root, tmp


def test_dvc_status_clean_after_repro(repo):
    root, tmp = repo
    out = run(["dvc", "status"], root, tmp).stdout
    assert "changed" not in out and "modified" not in out, out


def test_base_is_a_small_qwen3_with_mixed_accuracy(repo):
    from safetensors.torch import load_file

    root, _ = repo
    cfg = json.loads((root / "models/base/config.json").read_text())
    assert cfg["architectures"] == ["Qwen3ForCausalLM"] and 4 <= cfg["num_hidden_layers"] <= 8
    weights = load_file(root / "models/base/model.safetensors")
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert sum(k.endswith(f"self_attn.{proj}.weight") for k in weights) == cfg["num_hidden_layers"]
    m = json.loads((root / "metrics/base.json").read_text())
    assert 0.2 <= m["heldout_acc"] <= 0.7


def test_rollout_table_mixes_right_and_wrong(repo):
    root, _ = repo
    rows = load_table(root / "data/rollouts.jsonl")
    m = json.loads((root / "metrics/rollouts.json").read_text())
    assert len(rows) == m["rows"] == 192 * 4
    assert m["accuracy"] == pytest.approx(sum(r["reward"] for r in rows) / len(rows))
    assert 0 < m["mixed_group_share"] < 1
    # every reward agrees with the grader on the stored completion
    from weightspace.grading import is_correct

    assert all(r["reward"] == is_correct(r["completion"], r["gold"]) for r in rows)


def test_rollouts_are_byte_identical_on_rerun(repo):
    root, tmp = repo
    run(["python", "-m", "weightspace.stages.rollouts", "--data", "data/prepared", "--base", "models/base",
         "--out", str(tmp / "again.jsonl"), "--metrics", str(tmp / "again.json")], root, tmp)
    assert (tmp / "again.jsonl").read_bytes() == (root / "data/rollouts.jsonl").read_bytes()
