import json
from pathlib import Path

import pytest

from weightspace.data import grading

# (model output, gold, expected extraction, expected reward)
CASES = [
    # tiny model outputs, verbatim
    ("Ben starts with 10. 10 * 2 = 20. 20 - 1 = 19. 19 - 2 = 17. 17 * 2 = 34. \\boxed{34}", "34", "34", 1),
    ("Ben starts with 15. 15 * 2 = 30. 30 - 1 = 25. 25 - 2 = 21. 21 * 2 = 30. \\boxed{32}", "34", "32", 0),
    ("Ivo starts with 17. 17 - 2 = 15. 15 + 4 = 19. \\boxed{1", "19", None, 0),  # truncated mid-box
    # instruct-model styles
    ("<think>Maybe \\boxed{17}? No, recount.</think>The answer is \\boxed{18}.", "18", "18", 1),
    ("<think>long reasoning cut off by max_tokens \\boxed{5}", "5", None, 0),  # unclosed think: no answer
    ("So she pays \\boxed{\\$18.00}.", "18", "18", 1),
    ("Total: \\boxed{1,234}", "1234", "1234", 1),
    ("\\boxed{50\\%}", "50", "50", 1),
    ("\\boxed{007}", "7", "7", 1),
    ("\\boxed{3.50}", "3.5", "3.5", 1),
    ("\\boxed{12.0}", "12", "12", 1),
    ("\\boxed{0}", "0", "0", 1),
    ("\\boxed{-4}", "-4", "-4", 1),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "\\frac{1}{2}", 1),  # nested braces
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", "\\frac{3}{4}", 1),
    ("First \\boxed{10}, then corrected: \\boxed{12}", "12", "12", 1),  # two boxes: the last counts
    ("First \\boxed{12}, then corrected: \\boxed{10}", "12", "10", 0),
    ("The answer is 42.", "42", None, 0),  # no box
    ("\\boxed{18 \\text{ dollars}}", "18", "18", 1),
    ("\\boxed{ 25 }", "25", "25", 1),
    ("\\fbox{9}", "9", "9", 1),
    ("\\boxed{}", "3", "", 0),
    ("$\\boxed{72}$", "72", "72", 1),
]


@pytest.mark.parametrize("text, gold, extracted, reward", CASES)
def test_extract_and_grade(text, gold, extracted, reward):
    assert grading.extract(text) == extracted
    assert grading.is_correct(text, gold) == bool(reward)


@pytest.mark.parametrize("raw, norm", [("0.5", "0.5"), ("00.50", "0.5"), ("-007.10", "-7.1"), ("$1,000", "1000"), ("1,000.50", "1000.5"), ("0.0", "0"), ("-0", "0"),
                                       ("+5", "5"), ("12.", "12"), ("\\$5", "5"), ("10%", "10")])
def test_normalize(raw, norm):
    assert grading.normalize(raw) == norm


# (output, gold, expected reward, expected rule): which rule of grading.grade decides, by hand
RULE_CASES = [
    ("\\boxed{18}", "18", 1, "string"),  # equal strings: math-verify is not asked
    ("\\boxed{\\$18.00}", "18", 1, "string"),
    ("so \\boxed{\\frac{1}{2}}", "0.5", 1, "math_verify"),  # 1/2 = 0.5: the string rule alone said 0
    ("\\boxed{x=3}", "3", 1, "math_verify"),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", 1, "math_verify"),
    ("\\boxed{3}", "4", 0, "math_verify"),
    ("\\boxed{1.414}", "\\sqrt{2}", 0, "math_verify"),  # an approximation is not the number
    ("\\boxed{}", "3", 0, "fallback"),  # math-verify parses nothing from an empty box: no verdict
    ("The answer is 42.", "42", 0, "no_answer"),
    # letters after a number are not a unit unless listed: the string rule must not say equal here
    ("\\boxed{3x}", "3", 0, "math_verify"),
    ("\\boxed{2a}", "2b", 0, "math_verify"),
    ("\\boxed{10e}", "10", 0, "math_verify"),
    ("\\boxed{18 dollars}", "18", 1, "string"),
]


@pytest.mark.parametrize("text, gold, reward, rule", RULE_CASES)
def test_grade_names_the_rule_that_decided(text, gold, reward, rule):
    v = grading.grade(text, gold)
    assert (v.reward, v.rule) == (reward, rule)


def test_grade_many_in_a_process_pool_equals_one_process():
    texts = [t for t, *_ in RULE_CASES] * 40
    golds = [g for _, g, *_ in RULE_CASES] * 40
    one = grading.grade_many(texts, golds, processes=1)
    pool = grading.grade_many(texts, golds, processes=2, chunksize=16, min_pool=1)
    assert one == pool and [v.reward for v in one[: len(RULE_CASES)]] == [c[2] for c in RULE_CASES]
    counts = grading.rule_counts(one)
    assert counts == {"string": 120, "math_verify": 320, "fallback": 40, "no_answer": 40}
    with pytest.raises(ValueError, match="2 outputs but 1 gold"):
        grading.grade_many(["a", "b"], ["1"])


def test_gsm8k_gold():
    from weightspace.data.datasets import gsm8k_gold

    assert gsm8k_gold("She pays 3*4=<<3*4=12>>12.\n#### 1,212") == "1212"


# 68 realistic outputs (instruct-model chains of thought, GSM8K, AIME, DeepScaleR/MATH-style LaTeX),
# each verdict derived by hand with the reason in its "why" field: tests/data/grading_cases.jsonl.
TABLE = [json.loads(line) for line in (Path(__file__).parent / "data/grading_cases.jsonl").read_text().splitlines()]
# Where math-verify itself is wrong, the reward follows math-verify (the paper's reward), not the person:
MATH_VERIFY_MISSES = {50: "0.\\overline{3} = 1/3, but math-verify reads the repeating decimal as 0"}


@pytest.mark.parametrize("i", range(len(TABLE)))
def test_reward_on_hand_labelled_outputs(i):
    case = TABLE[i]
    v = grading.grade(case["output"], case["gold"])
    boxed = grading.last_boxed(grading.strip_think(case["output"]))
    if v.rule == "math_verify":  # the reward is math-verify's verdict, and that is what was decided
        assert v.reward == grading.math_verify_equal(boxed, case["gold"])
    if i in MATH_VERIFY_MISSES:
        assert v.reward != case["correct"], f"math-verify now handles case {i}: drop it from MATH_VERIFY_MISSES"
    else:
        assert v.reward == case["correct"], (case["why"], v)


def test_hand_labelled_table_is_large_and_balanced():
    assert len(TABLE) >= 40
    assert 0.3 <= sum(c["correct"] for c in TABLE) / len(TABLE) <= 0.7
    rules = grading.rule_counts([grading.grade(c["output"], c["gold"]) for c in TABLE])
    assert rules["math_verify"] >= 20 and rules["string"] >= 10 and rules["no_answer"] >= 2, rules
