"""Dataset sources -> uniform records ``{"id", "question", "answer"}``.

A source is declared in params (``config.Source``): generated problems, a Hugging Face hub dataset
(``datasets.load_dataset``), or a local JSONL file. Hub and JSONL rows are read through one
``format`` that names the fields:

| format     | question field | gold answer                                         | id field          |
|------------|----------------|-----------------------------------------------------|-------------------|
| gsm8k      | question       | text after ``####`` in ``answer``, commas removed   | (row index)       |
| aime       | problem        | ``answer`` (int or str)                             | id / problem_idx  |
| deepscaler | problem        | ``answer``                                          | (row index)       |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..config import Generator, ParamsError, Source
from .problems import Problem, generate

FIELDS = {"gsm8k": ("question", "answer"), "aime": ("problem", "answer"), "deepscaler": ("problem", "answer")}


class DataError(ValueError):
    """A dataset file or row that cannot be read; the message names the file and the row."""


def gsm8k_gold(answer: str) -> str:
    """GSM8K gold: the text after ``####``, commas removed (``"... #### 1,234"`` -> ``"1234"``)."""
    if "####" not in answer:
        raise DataError(f"GSM8K answer has no '####': {answer[-60:]!r}")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def to_record(row: dict, fmt: str, index: int, where: str) -> dict:
    """One raw row of format ``fmt`` -> ``{"id", "question", "answer"}``."""
    qf, af = FIELDS[fmt]
    for f in (qf, af):
        if f not in row:
            raise DataError(f"{where}: row {index} has no field {f!r} (format {fmt}; fields: {sorted(row)})")
    answer = gsm8k_gold(row[af]) if fmt == "gsm8k" else str(row[af]).strip()
    rid = row.get("id", row.get("problem_idx")) if fmt == "aime" else None
    return {"id": str(rid) if rid is not None else f"{index}", "question": str(row[qf]), "answer": answer}


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; an empty file or a bad line raises DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: empty file")
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write rows as JSONL (sorted keys, so equal data gives equal bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def load_hub(source: Source) -> list[dict]:
    """Rows of a hub dataset (needs network, or a warm HF cache)."""
    import datasets  # heavy; only the hub route needs it

    ds = datasets.load_dataset(source.path, source.config, split=source.split or "train")
    return [dict(r) for r in ds]


def load_source(source: Source, name: str, generated: list[Problem] | None = None) -> list[dict]:
    """Records of one declared source. ``generated`` supplies the problems for kind ``generated``."""
    if source.kind == "generated":
        if generated is None:
            raise ParamsError(f"{name}: generated source but no generator section")
        return [{"id": f"{name}-{i}", "question": p.question, "answer": p.answer} for i, p in enumerate(generated)]
    rows = read_jsonl(source.path) if source.kind == "jsonl" else load_hub(source)
    if source.n is not None:
        rows = rows[: source.n]
    where = f"{name} ({source.path})"
    records = [to_record(r, source.format, i, where) for i, r in enumerate(rows)]
    if source.format != "aime":
        for r in records:
            r["id"] = f"{name}-{r['id']}"
    return records


def generated_splits(gen: Generator, sizes: dict[str, int]) -> dict[str, list[Problem]]:
    """Disjoint generated splits: ``pretrain`` first, then ``sizes`` in order; no question repeats."""
    total = gen.n_pretrain + sum(sizes.values())
    problems = generate(gen.seed, total, gen.min_ops, gen.max_ops, gen.max_value)
    out, start = {"pretrain": problems[: gen.n_pretrain]}, gen.n_pretrain
    for name, n in sizes.items():
        out[name] = problems[start : start + n]
        start += n
    return out
