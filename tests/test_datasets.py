import json

import pytest

from conftest import shared_data
from weightspace import config
from weightspace.data import problems
from weightspace.data.datasets import DataError, generated_splits, load_source, read_jsonl


def src(kind="jsonl", fmt="gsm8k", path=None, n=None):
    return config.Source(kind=kind, format=fmt, path=str(path) if path else None, config=None, split=None, n=n)


def test_gsm8k_files_through_the_local_route():
    d = shared_data()
    test = load_source(src(path=d / "gsm8k_test.jsonl"), "gsm8k")
    train = load_source(src(path=d / "gsm8k_train.jsonl", n=100), "gsm8k_train")
    assert len(test) == 1319 and len(train) == 100
    assert test[0]["id"] == "gsm8k-0"
    assert all(r["answer"] and "," not in r["answer"] and "####" not in r["answer"] for r in test)
    # first test item of GSM8K: Janet's ducks, gold 18
    assert "Janet" in test[0]["question"] and test[0]["answer"] == "18"


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_aime_files_through_the_local_route(year):
    rows = load_source(src(fmt="aime", path=shared_data() / f"aime_{year}.jsonl"), f"aime{year}")
    assert len(rows) == 30
    assert rows[0]["id"] == f"aime_{year}_I_1"
    assert all(r["answer"].isdigit() and 0 <= int(r["answer"]) <= 999 for r in rows)


def test_loader_takes_any_file_of_the_format(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"problem": "1+1?", "answer": 2, "problem_idx": 7}) + "\n")
    assert load_source(src(fmt="aime", path=f), "x") == [{"id": "7", "question": "1+1?", "answer": "2"}]
    f.write_text(json.dumps({"problem": "2+2?", "answer": "4", "solution": "..."}) + "\n")
    assert load_source(src(fmt="deepscaler", path=f), "ds") == [{"id": "ds-0", "question": "2+2?", "answer": "4"}]


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("\n\n", "empty file"),
    ('{"question": "q", "answer": "#### 1"}\n{"question": \n', r":2: not valid JSON"),
    ('{"question": "q"}\n', "has no field 'answer'"),
    ('{"question": "q", "answer": "no marker"}\n', "no '####'"),
    ("[1, 2]\n", "expected a JSON object"),
])
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        load_source(src(path=f), "bad")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "none.jsonl")


def test_generated_problems_are_deterministic_and_splits_disjoint():
    gen = config.Generator(seed=3, min_ops=2, max_ops=4, max_value=40, n_pretrain=500)
    a = generated_splits(gen, {"train": 50, "eval/x": 60})
    b = generated_splits(gen, {"train": 50, "eval/x": 60})
    assert a == b
    qs = [set(p.question for p in a[k]) for k in ("pretrain", "train", "eval/x")]
    assert [len(q) for q in qs] == [500, 50, 60]
    assert not (qs[0] & qs[1]) and not (qs[0] & qs[2]) and not (qs[1] & qs[2])


def test_generated_solution_is_a_correct_worked_chain():
    for i in range(300):
        p = problems.make_problem(11, i, 2, 4, 40)
        steps = p.solution.split(". ")[1:-1]  # "a op b = c" equations
        assert 2 <= len(steps) <= 4
        value = int(p.solution.split(". ")[0].rsplit(" ", 1)[1])
        for eq in steps:
            lhs, rhs = eq.rstrip(".").split(" = ")
            x, op, y = lhs.split()
            assert int(x) == value
            value = {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y), "/": int(x) // int(y)}[op]
            assert value == int(rhs) and 0 <= value <= 40
        assert p.solution.endswith(f"\\boxed{{{p.answer}}}") and int(p.answer) == value


def test_generator_rejects_bad_ranges():
    with pytest.raises(ValueError, match="min_ops"):
        problems.generate(1, 5, 3, 2, 40)


def test_teacher_style_keeps_every_equation_and_the_answer():
    from weightspace.data.grading import grade
    from weightspace.data.problems import make_problem, restyle

    for i in range(50):
        p = make_problem(42, i, 2, 4, 40)
        s = restyle(p.solution, "steps")
        assert restyle(p.solution, "plain") == p.solution
        eqs = [e for e in p.solution.split(". ")[1:-1]]
        assert s.startswith("Start: ") and s.endswith(f"Answer: \\boxed{{{p.answer}}}")
        assert "; ".join(eqs) in s and grade(s, p.answer).reward == 1
        assert abs(len(s) - len(p.solution)) < 20  # about as long: it fits the same max_new_tokens
    p = make_problem(42, 3, 2, 4, 40)
    assert restyle(p.solution, "steps") == "Start: 2. 2 / 2 = 1; 1 * 2 = 2; 2 + 3 = 5; 5 - 3 = 2. Answer: \\boxed{2}"
    with pytest.raises(ValueError, match="unknown style"):
        restyle(p.solution, "fancy")
    with pytest.raises(ValueError, match="not a generated worked solution"):
        restyle("just text \\boxed{2}", "steps")
