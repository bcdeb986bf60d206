"""The teacher output policy of the rollout table (``rollouts.reasoning``, ``rollouts.overlong``): reasoning
blocks kept or dropped, reward-1 rows that training would cut (longer than ``train.max_length`` student
tokens) dropped or counted as failures, a table that is all too long an error naming the limit; and the
rollouts stage against a fake OpenAI server that answers with ``reasoning_content``."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO
from test_journal import slow_server, student  # noqa: F401 (fixture)
from test_openai_engine import FakeChat
from weightspace.generate.generation import Completion
from weightspace.data.rollouts import apply_overlong, apply_reasoning, load_table, split_reasoning, student_length

SPLITS = [  # (completion, reasoning, answer)
    ("<think>a+b</think>The answer is \\boxed{3}.", "a+b", "The answer is \\boxed{3}."),
    ("  <think>x</think>\n\\boxed{1}", "x", "\\boxed{1}"),
    ("\\boxed{2} <think>late</think>", None, "\\boxed{2} <think>late</think>"),  # not leading: not reasoning
    ("<think>never closed \\boxed{4}", "never closed \\boxed{4}", ""),
    ("plain \\boxed{5}", None, "plain \\boxed{5}"),
]


@pytest.mark.parametrize("text,reasoning,answer", SPLITS)
def test_split_reasoning(text, reasoning, answer):
    assert split_reasoning(text) == (reasoning, answer)


def test_reasoning_keep_changes_nothing_and_drop_removes_the_block_only():
    comps = [[Completion(t, 9, False) for t, *_ in SPLITS]]
    kept, counts = apply_reasoning(comps, "keep")
    assert kept == comps and counts == {"reasoning_kept": 3, "reasoning_dropped": 0}
    dropped, counts = apply_reasoning(comps, "drop")
    assert [c.text for c in dropped[0]] == [a for *_, a in SPLITS]
    assert all(c.n_tokens == 9 for c in dropped[0]) and counts == {"reasoning_kept": 0, "reasoning_dropped": 3}


def rows(rewards):
    return [{"row": i, "group": i // 2, "reward": r, "reward_rule": "string"} for i, r in enumerate(rewards)]


def test_overlong_drop_removes_cut_positives_and_renumbers():
    # lengths 10, 30, 30, 10 at max_length 20: rows 1 (reward 1) and 2 (reward 0) are cut
    out, counts = apply_overlong(rows([0, 1, 0, 1]), [10, 30, 30, 10], 20, "drop")
    assert [(r["row"], r["group"], r["reward"]) for r in out] == [(0, 0, 0), (1, 1, 0), (2, 1, 1)]
    assert counts == {"max_length": 20, "rows_cut": 2, "rows_dropped": 1, "rows_flipped": 0}


def test_overlong_fail_gives_cut_positives_reward_0():
    out, counts = apply_overlong(rows([0, 1, 0, 1]), [10, 30, 30, 20], 20, "fail")  # 20 fits exactly
    assert [(r["row"], r["reward"], r["reward_rule"]) for r in out] == [
        (0, 0, "string"), (1, 0, "overlong"), (2, 0, "string"), (3, 1, "string")]
    assert counts == {"max_length": 20, "rows_cut": 2, "rows_dropped": 0, "rows_flipped": 1}


def test_a_table_all_over_the_limit_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"train\.max_length=20 .*shortest 21"):
        apply_overlong(rows([1, 0]), [21, 40], 20, "drop")
    with pytest.raises(ValueError, match="rollouts.overlong"):
        apply_overlong(rows([1]), [1], 20, "keep")


def test_student_length_is_what_training_encodes_before_its_cut(tmp_path):
    from weightspace.model.models import load_tokenizer
    from weightspace.train.training import encode_rows

    tok = load_tokenizer(student(tmp_path))
    table = [{"row": 0, "prompt": "What is 3+3?", "completion": "The answer is \\boxed{6}.", "truncated": False},
             {"row": 1, "prompt": "What is 4+4?", "completion": "The answer is 8 and", "truncated": True}]
    items = encode_rows(tok, table, 10_000)
    assert [student_length(tok, r) for r in table] == [len(it.prompt) + len(it.completion) for it in items.values()]
    n = student_length(tok, table[0])
    cut = encode_rows(tok, table[:1], n - 1)[0]
    assert len(cut.prompt) + len(cut.completion) == n - 1  # one token over: training cuts the EOS


@pytest.mark.parametrize("reasoning,overlong", [("keep", "fail"), ("drop", "drop")])
def test_rollouts_stage_applies_the_policy_and_counts_it(slow_server, tmp_path, monkeypatch, reasoning, overlong):
    """The fake teacher answers ``hmm`` as reasoning and ``\\boxed{len(question)}``; gold = len(question), so
    every row is right. Questions 0-3 are short, 4-5 long enough that the student's tokens exceed the limit."""
    from weightspace.stages import rollouts as stage

    questions = [f"What is {i}+{i}?" for i in range(4)] + [f"What is {' + '.join(['7'] * 60)}?" for _ in range(2)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data/train.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": q, "answer": str(len(q))})
                                                      + "\n" for i, q in enumerate(questions)))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["rollouts"].update(teacher={"kind": "api", "tiny": None, "hub": None}, k=2, reasoning=reasoning,
                           overlong=overlong)
    raw["rollouts"]["generation"].update(engine="openai", openai={
        "base_url": slow_server, "model": "teacher", "api_key_env": "TEST_TEACHER_KEY", "concurrency": 2,
        "max_retries": 0, "timeout_s": 10, "price_input_per_mtok": None, "price_output_per_mtok": None})
    raw["prompt"]["template"] = "{question}"
    raw["train"]["max_length"] = 100
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    out, metrics = tmp_path / "t.jsonl", tmp_path / "m.json"
    argv = ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "data"), "--teacher", str(tmp_path),
            "--base", str(student(tmp_path)), "--out", str(out), "--metrics", str(metrics),
            "--journal", str(tmp_path / "j.jsonl")]
    stage.main(argv)
    table, policy = load_table(out), json.loads(metrics.read_text())["policy"]
    assert all(r["completion"].startswith("<think>hmm</think>") == (reasoning == "keep") for r in table)
    assert policy["rows_cut"] == 4 and policy["max_length"] == 100
    assert policy[f"reasoning_{'kept' if reasoning == 'keep' else 'dropped'}"] == 12
    if overlong == "fail":
        assert len(table) == 12 and policy["rows_flipped"] == 4
        assert [r["reward"] for r in table] == [1] * 8 + [0] * 4 and table[-1]["reward_rule"] == "overlong"
    else:
        assert len(table) == 8 and policy["rows_dropped"] == 4 and all(r["reward"] == 1 for r in table)
    raw["train"]["max_length"] = 5  # shorter than any prompt: every row over the limit
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"every one of the 12 rows is longer than train\.max_length=5"):
        stage.main(argv)
    assert FakeChat.seen  # the server was asked (the second run reused the journal)
