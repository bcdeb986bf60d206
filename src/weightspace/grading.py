"""Answer extraction and grading: one rule for rollouts, evaluation and every metric.

``extract``: drop ``<think>...</think>`` (and an unclosed ``<think>`` tail), take the LAST
brace-matched ``\\boxed{...}`` (or ``\\fbox{...}``), normalise. ``normalize``: strip ``$``, ``\\$``,
``%``, ``\\%``, commas in numbers, ``\\text{...}`` units, spaces, a trailing period, trailing ``.0``
zeros and leading zeros. Reward = normalised extraction equals normalised gold. math-verify is a
second opinion whose disagreements are counted, never used for the reward.
"""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?</think>", re.S)
_NUM = re.compile(r"^[+-]?\d+(\.\d+)?$")


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
    # a number followed by a word unit ("18dollars") keeps the number
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)[a-zA-Z]+", s)
    if m:
        s = m.group(1)
    if _NUM.match(s):
        sign = "-" if s.startswith("-") else ""
        s = s.lstrip("+-")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        s = s.lstrip("0") or "0"
        s = "0" if s == "0" else sign + s
    return s


def extract(text: str) -> str | None:
    """Normalised final answer of a model output, or None when no closed ``\\boxed{}`` exists."""
    boxed = last_boxed(strip_think(text))
    return None if boxed is None else normalize(boxed)


def is_correct(text: str, gold: str) -> bool:
    """Reward r in {0, 1}: the extracted answer equals the normalised gold answer."""
    got = extract(text)
    return got is not None and got == normalize(gold)


def math_verify_correct(text: str, gold: str) -> bool | None:
    """math-verify's verdict on the same output (None where it cannot parse). Main thread only:
    its timeout uses ``signal.alarm``."""
    from math_verify import parse, verify

    try:
        pred = parse(strip_think(text))
        ref = parse(f"\\boxed{{{gold}}}")
        if not pred or not ref:
            return None
        return bool(verify(ref, pred))
    except Exception:  # noqa: BLE001 -- a second opinion that fails is counted as "no verdict"
        return None
