"""The shared rollout table: K graded completions per prompt, one row each.

Row schema (JSONL, one object per line, in prompt order then sample order):
``row`` (int, table index), ``prompt_id`` (str), ``group`` (int, prompt index), ``prompt`` (the
rendered user message), ``completion`` (str), ``n_tokens`` (int), ``extracted`` (str | null),
``gold`` (str), ``reward`` (0 | 1), ``reward_rule`` (which rule of ``grading.grade`` decided it:
string | math_verify | fallback | no_answer), ``truncated`` (bool), ``model`` (which model wrote the
completion: ``generation.model_identity`` of the teacher; "gold" for gold rows), ``source`` ("model": a sample of the
teacher; "gold": the gold answer written as a completion, ``GOLD_COMPLETION``, added after the samples
of the first ``rollouts.gold_rows`` prompts, graded like any row, ``n_tokens`` 0 as nothing was generated).

Teacher output policy (``rollouts.reasoning``, ``rollouts.overlong``), applied by the rollouts stage after the
journal (which keeps the teacher's raw text) and before the table is written, so every method trains on one table:
- ``reasoning``: a completion's leading ``<think>...</think>`` block (the openai engine's ``reasoning_content``,
  or a thinking model's own) is kept, or dropped before grading (``split_reasoning``). ``n_tokens`` stays the
  teacher's generated count either way.
- ``overlong``: a row longer than ``train.max_length`` in the student's tokens (chat-templated prompt +
  completion + EOS, as ``training.encode_rows`` counts them) loses its end, its ``\boxed{}`` answer and EOS
  included, when the student trains on it. A reward-1 row so cut is removed (``drop``; the rows are
  renumbered) or counted as a failure (``fail``: reward 0, ``reward_rule`` "overlong"). A cut reward-0 row
  stays as it is (its answer was wrong before the cut). ``apply_overlong``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import grading
from .datasets import DataError, read_jsonl

COLUMNS = {"row": int, "prompt_id": str, "group": int, "prompt": str, "completion": str, "n_tokens": int,
           "extracted": (str, type(None)), "gold": str, "reward": int, "reward_rule": str, "truncated": bool,
           "model": str, "source": str}
SOURCES = ("model", "gold")
OVERLONG_RULE = "overlong"  # reward_rule of a reward-1 row counted as a failure by rollouts.overlong fail
GOLD_COMPLETION = "The final answer is \\boxed{{{answer}}}."



@dataclass(frozen=True)
class Completion:
    """One sampled completion as every engine (``generation``) returns it."""
    text: str
    n_tokens: int  # generated tokens, the end-of-turn token included when emitted
    truncated: bool  # stopped by max_new_tokens, not by end-of-turn
    # the generated token ids (the end-of-turn token included when emitted) where the engine has them (hf,
    # vllm); not journaled, not in the table: the engines' agreement check reads them (tools/vllm_agree.py)
    token_ids: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

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


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, answer) of a completion that opens with a ``<think>...</think>`` block (leading
    whitespace allowed), else (None, text). An unclosed block is all reasoning: ("...", "")."""
    stripped = text.lstrip()
    if not stripped.startswith("<think>"):
        return None, text
    end = stripped.find("</think>")
    if end < 0:
        return stripped[len("<think>"):], ""
    return stripped[len("<think>"):end], stripped[end + len("</think>"):].lstrip()


def apply_reasoning(completions: list[list[Completion]], policy: str) -> tuple[list[list[Completion]], dict]:
    """``policy`` keep: the completions as they are; drop: each one's reasoning block removed. Counts
    the completions that carried reasoning (``reasoning_kept`` / ``reasoning_dropped``)."""
    if policy not in ("keep", "drop"):
        raise ValueError(f"rollouts.reasoning: 'keep' or 'drop', got {policy!r}")
    n, out = 0, []
    for comps in completions:
        row = []
        for c in comps:
            reasoning, answer = split_reasoning(c.text)
            n += reasoning is not None
            row.append(Completion(answer, c.n_tokens, c.truncated) if policy == "drop" and reasoning is not None else c)
        out.append(row)
    return out, {"reasoning_kept": n if policy == "keep" else 0, "reasoning_dropped": n if policy == "drop" else 0}


def student_length(tok, row: dict) -> int:
    """Tokens the student trains on for ``row``: the chat-templated prompt, the completion, and the EOS
    unless the teacher was truncated (``training.encode_rows`` before its cut)."""
    from ..model.sequences import ids, prompt_ids

    return len(prompt_ids(tok, row["prompt"])) + len(ids(tok, row["completion"])) + (0 if row["truncated"] else 1)


def apply_overlong(rows: list[dict], lengths: list[int], max_length: int, policy: str) -> tuple[list[dict], dict]:
    """Rows with ``lengths[i] > max_length`` (the student's tokens) would be cut by training: a reward-1
    one is removed (``drop``, the others renumbered) or given reward 0 (``fail``, ``reward_rule``
    "overlong"); a cut reward-0 row is kept. Raises ValueError naming ``train.max_length`` when every row
    is too long. Counts: ``rows_cut`` (all rows over the limit), ``rows_dropped``, ``rows_flipped``."""
    if policy not in ("drop", "fail"):
        raise ValueError(f"rollouts.overlong: 'drop' or 'fail', got {policy!r}")
    cut = [n > max_length for n in lengths]
    if rows and all(cut):
        raise ValueError(f"rollouts: every one of the {len(rows)} rows is longer than train.max_length={max_length} "
                         f"student tokens (shortest {min(lengths)}): raise train.max_length or lower "
                         "rollouts.generation.max_new_tokens")
    out, dropped, flipped = [], 0, 0
    for r, c in zip(rows, cut):
        if c and r["reward"] == 1:
            if policy == "drop":
                dropped += 1
                continue
            r = {**r, "reward": 0, "reward_rule": OVERLONG_RULE}
            flipped += 1
        out.append({**r, "row": len(out)})
    return out, {"max_length": max_length, "rows_cut": sum(cut), "rows_dropped": dropped, "rows_flipped": flipped}


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
