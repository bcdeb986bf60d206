"""Answer extraction and grading: one rule for rollouts, evaluation and every metric.

The reward is the paper's: r = 1 when math-verify verifies the extracted answer against the gold.

``extract``: drop ``<think>...</think>`` (and an unclosed ``<think>`` tail), take the LAST
brace-matched ``\\boxed{...}`` (or ``\\fbox{...}``). No closed box: r = 0 (rule ``no_answer``).
``grade`` then decides, in this order:

1. ``string``: the normalised answer equals the normalised gold (``normalize``: strip ``$``, ``\\$``,
   ``%``, ``\\%``, commas in numbers, ``\\text{...}`` wrappers, a unit word from ``UNITS`` after a
   number, spaces, a trailing period, trailing ``.0`` zeros and leading zeros). Equal strings are
   equal answers, so math-verify is not asked.
2. ``math_verify``: otherwise math-verify's verdict on the boxed content, ``verify(parse($gold$),
   parse($answer$))``: ``0.5`` = ``\\frac{1}{2}``, ``x=3`` = ``3``, ``\\sqrt{8}`` = ``2\\sqrt{2}``,
   reordered sets, ``90^\\circ`` = ``90`` (inside ``$...$`` it reads ``50\\%`` as 50; inside
   ``\\boxed{}`` it does not).
3. ``fallback``: math-verify has no verdict (it parses nothing, raises, or times out): the string
   rule's 0 stands. These rows are counted in ``metrics/rollouts.json`` (``reward_rules``).

math-verify's timeouts use ``signal.alarm``: call ``grade`` from a main thread; ``grade_many``
spreads a large table over processes (each one's main thread), never threads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_THINK = re.compile(r"<think>.*?</think>", re.S)
_NUM = re.compile(r"^[+-]?\d+(\.\d+)?$")
RULES = ("string", "math_verify", "fallback", "no_answer")
# unit words that GSM8K-style answers carry after the number ("18 dollars"); never a single letter
UNITS = frozenset("""dollar dollars cent cents euro euros pound pounds hour hours minute minutes second seconds
day days week weeks month months year years mile miles meter meters metre metres cm mm km kg gram grams feet
foot inch inches liter liters litre litres gallon gallons degree degrees percent people students apples""".split())


def strip_think(text: str) -> str:
    """Remove closed ``<think>`` blocks; an unclosed one removes everything after it."""
    text = _THINK.sub("", text)
    cut = text.find("<think>")
    return text if cut < 0 else text[:cut]


def last_boxed(text: str) -> str | None:
    """Content of the last brace-matched ``\\boxed{...}`` / ``\\fbox{...}``; None if none closes."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start : i - 1]
    return None


def normalize(ans: str) -> str:
    """Canonical string for an answer: ``\\$18.00`` -> ``18``, ``1,234`` -> ``1234``, ``007`` -> ``7``."""
    s = ans.strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|,|!|;|\s)", "", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = s.strip().rstrip(".").strip()
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"\s+", "", s)
    # a number followed by a unit word ("18dollars") keeps the number; any other letters stay, so
    # "3x" or "2a" never equal "3" or "2" here (math-verify decides them)
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)([a-zA-Z]+)", s)
    if m and m.group(2).lower() in UNITS:
        s = m.group(1)
    if _NUM.match(s):
        sign = "-" if s.startswith("-") else ""
        s = s.lstrip("+-")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        whole, dot, frac = s.partition(".")
        s = (whole.lstrip("0") or "0") + dot + frac  # 007 -> 7, 0.5 stays 0.5
        s = "0" if s == "0" else sign + s
    return s


@dataclass(frozen=True)
class Verdict:
    """The grade of one output: reward r in {0, 1}, the rule that decided it (one of ``RULES``) and
    the normalised extracted answer (None without a closed box)."""
    reward: int
    rule: str
    extracted: str | None


def extract(text: str) -> str | None:
    """Normalised final answer of a model output, or None when no closed ``\\boxed{}`` exists."""
    boxed = last_boxed(strip_think(text))
    return None if boxed is None else normalize(boxed)


def math_verify_equal(answer: str, gold: str, timeout_s: int = 5) -> bool | None:
    """math-verify's verdict on a boxed ``answer`` against ``gold`` (both LaTeX or plain), None where it
    has none: either side parses to nothing, it raises, or it times out. Main thread only."""
    from math_verify import parse, verify

    try:
        ref = parse(f"${gold}$", parsing_timeout=timeout_s)
        pred = parse(f"${answer}$", parsing_timeout=timeout_s)
        if not ref or not pred:
            return None
        return bool(verify(ref, pred, timeout_seconds=timeout_s))
    except Exception:  # noqa: BLE001 -- counted as rule "fallback" by grade(), never silent
        return None


def grade(text: str, gold: str) -> Verdict:
    """The reward of ``text`` against ``gold`` and the rule that decided it (module docstring)."""
    boxed = last_boxed(strip_think(text))
    if boxed is None:
        return Verdict(0, "no_answer", None)
    got = normalize(boxed)
    if got == normalize(gold):
        return Verdict(1, "string", got)
    verdict = math_verify_equal(boxed, gold)
    if verdict is None:
        return Verdict(0, "fallback", got)
    return Verdict(int(verdict), "math_verify", got)


def is_correct(text: str, gold: str) -> bool:
    """Reward r in {0, 1} as a bool: ``grade(text, gold).reward``."""
    return bool(grade(text, gold).reward)


def _grade_pair(pair: tuple[str, str]) -> Verdict:
    return grade(*pair)


def grade_many(texts: list[str], golds: list[str], processes: int | None = None, chunksize: int = 256,
               min_pool: int = 4096) -> list[Verdict]:
    """``grade`` over a table, in order. Tables of at least ``min_pool`` rows are spread over a process
    pool of ``processes`` workers (default: every core; math-verify's ``signal.alarm`` timeouts need
    each worker's main thread, so never threads); smaller ones are graded in this process."""
    import os

    if len(texts) != len(golds):
        raise ValueError(f"grade_many: {len(texts)} outputs but {len(golds)} gold answers")
    pairs = list(zip(texts, golds))
    processes = processes or os.cpu_count() or 1
    if processes <= 1 or len(pairs) < min_pool:
        return [grade(t, g) for t, g in pairs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as pool:
        return list(pool.map(_grade_pair, pairs, chunksize=chunksize))


def rule_counts(verdicts: list[Verdict]) -> dict[str, int]:
    """How many rewards each rule decided, every rule present (0 where unused)."""
    c = Counter(v.rule for v in verdicts)
    return {r: c.get(r, 0) for r in RULES}
