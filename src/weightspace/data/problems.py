"""Generated multi-step arithmetic word problems: the tiny default's prompts and worked solutions.

A problem is a short story about one person's stock of one item, changed by 2-4 operations
(+, -, x2/x3, halve). The worked solution writes one equation per step and ends in
``\\boxed{N}``. Values stay in [0, ``max_value``] so a small vocabulary holds every number, and the
number of steps varies, so a small model gets some problems right and some wrong.
Every problem is a pure function of ``(seed, index)``: same seed, same problems, in any order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ("Ana", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
ITEMS = ("apples", "pens", "coins", "books", "cards", "shells", "stamps", "marbles", "cups", "eggs")


@dataclass(frozen=True)
class Problem:
    question: str
    solution: str  # worked chain of thought ending in \boxed{answer}
    answer: str


def _step(rng: random.Random, x: int, name: str, max_value: int) -> tuple[str, str, int]:
    """One operation on the running value x -> (sentence, equation, new value)."""
    choices = []
    if x + 1 <= max_value:
        choices.append("add")
    if x >= 2:
        choices.append("sub")
    if 2 * x <= max_value and x >= 1:
        choices.append("mul")
    if x >= 2 and x % 2 == 0:
        choices.append("half")
    op = rng.choice(choices)
    if op == "add":
        b = rng.randint(1, min(9, max_value - x))
        verb = rng.choice(("buys", "finds", "gets"))
        return f"{name} {verb} {b} more.", f"{x} + {b} = {x + b}.", x + b
    if op == "sub":
        b = rng.randint(1, min(9, x - 1))
        verb = rng.choice(("gives away", "loses", "sells"))
        return f"{name} {verb} {b}.", f"{x} - {b} = {x - b}.", x - b
    if op == "mul":
        m = 3 if 3 * x <= max_value and rng.random() < 0.3 else 2
        word = {2: "doubles", 3: "triples"}[m]
        return f"Then the number {word}.", f"{x} * {m} = {x * m}.", x * m
    return "Then half of them are given away.", f"{x} / 2 = {x // 2}.", x // 2


def make_problem(seed: int, index: int, min_ops: int, max_ops: int, max_value: int) -> Problem:
    """The ``index``-th problem of stream ``seed``; deterministic and independent of other indices."""
    rng = random.Random(f"{seed}:{index}")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    x = rng.randint(2, min(20, max_value))
    sentences = [f"{name} has {x} {item}."]
    work = [f"{name} starts with {x}."]
    for _ in range(rng.randint(min_ops, max_ops)):
        sentence, equation, x = _step(rng, x, name, max_value)
        sentences.append(sentence)
        work.append(equation)
    sentences.append(f"How many {item} does {name} have now?")
    work.append(f"\\boxed{{{x}}}")
    return Problem(" ".join(sentences), " ".join(work), str(x))


def generate(seed: int, n: int, min_ops: int, max_ops: int, max_value: int, exclude: set[str] | None = None,
             start: int = 0) -> list[Problem]:
    """``n`` distinct problems (by question text) from stream ``seed``, skipping questions in ``exclude``."""
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}")
    seen = set(exclude or ())
    out: list[Problem] = []
    index = start
    while len(out) < n:
        p = make_problem(seed, index, min_ops, max_ops, max_value)
        index += 1
        if index - start > 50 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct problems (max_value={max_value} too small?)")
        if p.question in seen:
            continue
        seen.add(p.question)
        out.append(p)
    return out


STYLES = ("plain", "steps")


def restyle(solution: str, style: str) -> str:
    """A worked solution of ``make_problem`` rewritten in another writing style, same equations and answer.

    plain: unchanged ("Ben starts with 10. 10 * 2 = 20. 20 - 1 = 19. \\boxed{19}"). steps: the tiny
    teacher's own style, as a real teacher writes unlike its student, about as long
    ("Start: 10. 10 * 2 = 20; 20 - 1 = 19. Answer: \\boxed{19}")."""
    if style == "plain":
        return solution
    if style != "steps":
        raise ValueError(f"unknown style {style!r} (expected one of {', '.join(STYLES)})")
    parts = solution.split(". ")
    if len(parts) < 3 or not parts[-1].startswith("\\boxed{") or " starts with " not in parts[0]:
        raise ValueError(f"not a generated worked solution: {solution!r}")
    start, *eqs = parts[:-1]
    boxed = parts[-1]
    return f"Start: {start.split(' starts with ')[1]}. {'; '.join(eqs)}. Answer: {boxed}"
