"""An append-only journal of generation results, so a long teacher run survives being killed.

Every unit of work (one generate call of the hf / vllm engine over a chunk of prompts, or one request
of the openai engine) is appended as one JSON line the moment it finishes, keyed by a hash of
everything that decides its completions: the engine, the model's identity, temperature, top_p,
max new tokens, the seed of the call, the number of samples and the rendered prompts with their ids.
A re-run reads the journal, reuses every unit whose key it finds, and sends only the rest; a changed
generation param changes every key, so a stale completion is never reused.

Lines are flushed at once and fsync'd every ``sync_every`` lines and at close. A torn last line (the
process killed mid-write) is detected (not valid JSON, or no newline at its end) and dropped with a
warning, never parsed into a wrong row; the file is cut back to its last whole line before new lines
are appended. Failed units are recorded (``ok: false``) for the report but never reused.

The journal lives outside the stage's outputs (``data/journal/``, ignored by git and DVC), because
DVC deletes a stage's outputs before it re-runs it. Delete the folder to start from nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def unit_key(**fields) -> str:
    """sha256 of the canonical JSON of ``fields`` (everything that decides a unit's completions)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


class Journal:
    """``done[key]`` holds every unit that finished (``ok: true``) in this or an earlier run."""

    def __init__(self, path: str | Path, sync_every: int = 16):
        self.path, self.sync_every = Path(path), sync_every
        self.done: dict[str, dict] = {}
        self.failed: dict[str, dict] = {}
        self.torn = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        good_bytes = 0
        if self.path.exists():
            data = self.path.read_bytes()
            for line in data.splitlines(keepends=True):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no newline at the end")
                    entry = json.loads(line)
                    if not isinstance(entry, dict) or "key" not in entry or "ok" not in entry:
                        raise ValueError("not a journal entry")
                except ValueError as e:
                    self.torn += 1
                    log.warning("%s: dropped a torn line at byte %d (%s); its unit will be generated again",
                                self.path, good_bytes, e)
                    break  # only the last line can be torn; nothing after it is trusted
                good_bytes += len(line)
                (self.done if entry["ok"] else self.failed)[entry["key"]] = entry
            for k in self.done:
                self.failed.pop(k, None)
            if good_bytes != len(data):
                with open(self.path, "r+b") as f:
                    f.truncate(good_bytes)
        self._f = open(self.path, "ab")
        self._pending = 0

    def add(self, key: str, ok: bool, **fields) -> None:
        """Append one finished (or failed) unit; flushed now, fsync'd every ``sync_every`` lines."""
        entry = {"key": key, "ok": ok, **fields}
        self._f.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
        self._f.flush()
        (self.done if ok else self.failed)[key] = entry
        if ok:
            self.failed.pop(key, None)
        self._pending += 1
        if self._pending >= self.sync_every:
            self.sync()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._pending = 0

    def close(self) -> None:
        self.sync()
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JournalIncomplete(RuntimeError):
    """Some units are still missing after a run (failed requests); a re-run sends only those."""


def _pack(c) -> list:
    return [c.text, c.n_tokens, c.truncated]


def generate(engine, messages: list[str], prompt_ids: list[str], k: int, identity: str, journal: Journal):
    """``k`` completions of every message through ``engine``, journaled (module docstring).

    Units: one request per (prompt, sample) for an engine with ``run_jobs`` (openai; sample s is sent
    with seed ``prompt_seed(gen.seed, prompt id) + s``), else one ``generate`` call per chunk of
    ``gen.batch_size`` prompts, with seed ``gen.seed + chunk index`` and the prompts' ids (vllm samples each
    prompt from its own ``prompt_seed``; hf draws the whole chunk from the chunk's seed). Returns (completions[i][s], stats); raises
    JournalIncomplete naming how many units failed and the first error when any is missing."""
    from ..data.rollouts import Completion
    from .generation import prompt_seed

    g = engine.gen
    common = dict(engine=g.engine, model=identity, temperature=g.temperature, top_p=g.top_p,
                  max_new_tokens=g.max_new_tokens)
    units: dict[str, list[tuple[int, int]]] = {}  # key -> the (prompt, sample) slots it fills
    if hasattr(engine, "run_jobs"):
        todo = []
        for i, (m, pid) in enumerate(zip(messages, prompt_ids)):
            for s in range(k):
                seed = prompt_seed(g.seed, pid) + s
                key = unit_key(**common, seed=seed, message=m, prompt_id=pid, sample=s)
                units[key] = [(i, s)]
                if key not in journal.done:
                    todo.append((key, m, seed))
        reused = len(units) - len(todo)
        failed = engine.run_jobs(todo, lambda key, c, usage: journal.add(key, True, completions=[_pack(c)],
                                                                         usage=usage))
        for key, err in failed:
            journal.add(key, False, error=err)
        stats = dict(engine.stats)
    else:
        reused = 0
        for ci, start in enumerate(range(0, len(messages), g.batch_size)):
            chunk, ids = messages[start : start + g.batch_size], prompt_ids[start : start + g.batch_size]
            key = unit_key(**common, seed=g.seed + ci, k=k, messages=chunk, prompt_ids=ids)
            units[key] = [(start + j, s) for j in range(len(chunk)) for s in range(k)]
            if key in journal.done:
                reused += 1
                continue
            outs = engine.generate(chunk, k, desc=f"chunk {ci}", seed=g.seed + ci, ids=ids)
            journal.add(key, True, completions=[_pack(c) for o in outs for c in o])
        stats = {}
    journal.sync()
    missing = [key for key in units if key not in journal.done]
    if missing:
        first = next((journal.failed[key]["error"] for key in missing if key in journal.failed), "none recorded")
        raise JournalIncomplete(f"rollouts: {len(missing)} of {len(units)} units failed or are missing (first error: "
                                f"{first}); the {len(units) - len(missing)} done are kept in {journal.path}: "
                                "run `dvc repro` again to send only the missing ones")
    out: list[list] = [[None] * k for _ in messages]
    prompt_tokens = completion_tokens = 0
    for key, slots in units.items():
        entry = journal.done[key]
        for (i, s), (text, n_tokens, truncated) in zip(slots, entry["completions"]):
            out[i][s] = Completion(text, n_tokens, truncated)
        usage = entry.get("usage") or {}
        prompt_tokens += usage.get("prompt_tokens", 0)
        completion_tokens += usage.get("completion_tokens", 0)
    stats.update(units=len(units), reused_from_journal=reused, generated=len(units) - reused,
                 torn_lines_dropped=journal.torn)
    if "http_attempts" in stats:
        stats["retries"] = stats["http_attempts"] - stats["requests_ok"] - stats["requests_failed"]
        stats.update(table_prompt_tokens=prompt_tokens, table_completion_tokens=completion_tokens)
    return out, stats
