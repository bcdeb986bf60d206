"""The shared rollout table: K graded completions per prompt, one row each.

Row schema (JSONL, one object per line, in prompt order then sample order):
``row`` (int, table index), ``prompt_id`` (str), ``group`` (int, prompt index), ``prompt`` (the
rendered user message), ``completion`` (str), ``n_tokens`` (int), ``extracted`` (str | null),
``gold`` (str), ``reward`` (0 | 1), ``reward_rule`` (which rule of ``grading.grade`` decided it:
string | math_verify | fallback | no_answer), ``truncated`` (bool), ``model`` (which model wrote the
completion: ``generation.model_identity`` of the teacher; "gold" for gold rows), ``source`` ("model": a sample of the
teacher; "gold": the gold answer written as a completion, ``GOLD_COMPLETION``, added after the samples
of the first ``rollouts.gold_rows`` prompts, graded like any row, ``n_tokens`` 0 as nothing was generated).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import grading
from .datasets import DataError, read_jsonl
from .generation import Completion

COLUMNS = {"row": int, "prompt_id": str, "group": int, "prompt": str, "completion": str, "n_tokens": int,
           "extracted": (str, type(None)), "gold": str, "reward": int, "reward_rule": str, "truncated": bool,
           "model": str, "source": str}
SOURCES = ("model", "gold")
GOLD_COMPLETION = "The final answer is \\boxed{{{answer}}}."


def grade_rows(prompts: list[dict], messages: list[str], completions: list[list[Completion]],
               gold_rows: int = 0, *, model: str) -> list[dict]:
    """Table rows for ``completions[i][j]`` = sample j of prompt i; the first ``gold_rows`` prompts get
    one more row, their gold answer as a completion (``source`` "gold"), which must grade as correct.
    ``model``: the identity of the model that wrote the samples (the ``model`` column)."""
    if gold_rows > len(prompts):
        raise ValueError(f"rollouts.gold_rows: {gold_rows} exceeds the {len(prompts)} training prompts")
    flat = []
    for g, (p, msg, comps) in enumerate(zip(prompts, messages, completions)):
        flat += [(g, p, msg, c, "model") for c in comps]
        if g < gold_rows:
            flat.append((g, p, msg, Completion(GOLD_COMPLETION.format(answer=p["answer"]), 0, False), "gold"))
    verdicts = grading.grade_many([c.text for *_, c, _ in flat], [p["answer"] for _, p, *_ in flat])
    rows = [{"row": i, "prompt_id": p["id"], "group": g, "prompt": msg, "completion": c.text, "n_tokens": c.n_tokens,
             "extracted": v.extracted, "gold": p["answer"], "reward": v.reward, "reward_rule": v.rule,
             "truncated": c.truncated, "model": model if src == "model" else "gold", "source": src}
            for i, ((g, p, msg, c, src), v) in enumerate(zip(flat, verdicts))]
    wrong = [r["row"] for r in rows if r["source"] == "gold" and r["reward"] != 1]
    if wrong:
        raise DataError(f"gold rows {wrong[:5]} grade as wrong against their own gold answer (grader or data bug)")
    return rows


def summarize(rows: list[dict]) -> dict:
    """accuracy, group mix (both right and wrong / all right / all wrong), extraction failures,
    truncations, tokens, and how many rewards each grading rule decided (``reward_rules``; ``fallback``
    counts the rows where math-verify had no verdict and the string rule's 0 stood)."""
    groups: dict[int, list[int]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r["reward"])
    n, ng = len(rows), len(groups)
    rules = Counter(r["reward_rule"] for r in rows)
    model = [r["reward"] for r in rows if r["source"] == "model"]
    return {"rows": n, "groups": ng, "accuracy": sum(r["reward"] for r in rows) / n,
            "gold_rows": n - len(model), "model_accuracy": sum(model) / len(model) if model else None,
            "mixed_group_share": sum(0 < sum(v) < len(v) for v in groups.values()) / ng,
            "all_correct_group_share": sum(sum(v) == len(v) for v in groups.values()) / ng,
            "all_wrong_group_share": sum(sum(v) == 0 for v in groups.values()) / ng,
            "extraction_failures": sum(r["extracted"] is None for r in rows),
            "truncations": sum(r["truncated"] for r in rows), "tokens_generated": sum(r["n_tokens"] for r in rows),
            "reward_rules": {k: rules.get(k, 0) for k in grading.RULES},
            "math_verify_upgrades": sum(r["reward_rule"] == "math_verify" and r["reward"] == 1 for r in rows)}


def load_table(path: str | Path) -> list[dict]:
    """Read and check a rollout table; a missing column, a wrong type, a reward outside {0, 1} or a
    row number out of order raises DataError naming the file and row."""
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        for col, tp in COLUMNS.items():
            if col not in r:
                raise DataError(f"{path}: row {i} has no column {col!r}")
            if not isinstance(r[col], tp) or (tp is int and isinstance(r[col], bool)):
                raise DataError(f"{path}: row {i} column {col!r} has type {type(r[col]).__name__}")
        if r["reward"] not in (0, 1):
            raise DataError(f"{path}: row {i} reward {r['reward']!r} is not 0 or 1")
        if r["source"] not in SOURCES:
            raise DataError(f"{path}: row {i} source {r['source']!r} is not one of {', '.join(SOURCES)}")
        if r["row"] != i:
            raise DataError(f"{path}: row {i} is numbered {r['row']}")
    return rows
