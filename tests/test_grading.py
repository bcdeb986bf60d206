import pytest

from weightspace import grading

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


@pytest.mark.parametrize("raw, norm", [("$1,000", "1000"), ("1,000.50", "1000.5"), ("0.0", "0"), ("-0", "0"),
                                       ("+5", "5"), ("12.", "12"), ("\\$5", "5"), ("10%", "10")])
def test_normalize(raw, norm):
    assert grading.normalize(raw) == norm


def test_math_verify_second_opinion():
    assert grading.math_verify_correct("so \\boxed{\\frac{1}{2}}", "0.5") is True
    assert grading.math_verify_correct("\\boxed{3}", "4") is False
    # the grader and math-verify disagree here: counted, not used
    assert grading.is_correct("\\boxed{\\frac{1}{2}}", "0.5") is False


def test_gsm8k_gold():
    from weightspace.datasets import gsm8k_gold

    assert gsm8k_gold("She pays 3*4=<<3*4=12>>12.\n#### 1,212") == "1212"
