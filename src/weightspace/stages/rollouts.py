"""Stage rollouts: K sampled completions per training prompt, graded -> the shared rollout table.

The teacher is the teacher stage's model (``rollouts.teacher``: the tiny default's further-pretrained
base, the student itself, a hub model, or the ``openai`` engine's model); every row records it (``model``). Every finished generate call (hf, vllm) or request (openai) is appended
to ``<journal>`` at once (``journal.py``): a killed or failed run, re-run, sends only what is missing.
Then the teacher output policy (``rollouts.py``): the teacher's reasoning kept or dropped
(``rollouts.reasoning``), and the reward-1 rows longer than ``train.max_length`` in the student's tokens
dropped or counted as failures (``rollouts.overlong``). The length check lives here, not in training, so that
every method trains on one table and its counts sit in ``<metrics>`` beside the table's; it needs the
student's tokenizer and chat template (``--base``). Params: ``rollouts``, ``prompt``, ``threads``,
``train.max_length``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data.datasets import read_jsonl, write_jsonl
from ..generate.generation import make_engine, model_identity
from ..generate.journal import Journal
from ..generate.journal import generate as journaled_generate
from ..model.models import load_tokenizer
from ..data.rollouts import apply_overlong, apply_reasoning, grade_rows, student_length, summarize
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "teacher": "teacher stage folder",
                                   "base": "base stage folder (the student's tokenizer)",
                                   "out": "rollout table (JSONL)", "metrics": "metrics JSON",
                                   "journal": "journal file (kept across runs; not a DVC output)"}, argv)
    cfg = params.rollouts
    set_threads(params.threads)
    prompts = read_jsonl(Path(args.data) / "train.jsonl")
    messages = [params.prompt.render(p["question"]) for p in prompts]
    t0 = time.time()
    tok = load_tokenizer(args.base)  # the student's: the overlong check counts its tokens
    engine = make_engine(cfg.generation, args.teacher)
    identity = model_identity(cfg.generation, args.teacher)
    with Journal(args.journal) as journal:
        completions, stats = journaled_generate(engine, messages, [p["id"] for p in prompts], cfg.k, identity, journal)
    completions, policy = apply_reasoning(completions, cfg.reasoning)
    rows = grade_rows(prompts, messages, completions, cfg.gold_rows, model=identity)
    rows, cut = apply_overlong(rows, [student_length(tok, r) for r in rows], params.train.max_length, cfg.overlong)
    policy = {"reasoning": cfg.reasoning, **policy, "overlong": cfg.overlong, **cut}
    write_jsonl(args.out, rows)
    o = cfg.generation.openai
    if o is not None and o.price_input_per_mtok is not None and o.price_output_per_mtok is not None:
        stats["cost_usd"] = (stats["table_prompt_tokens"] * o.price_input_per_mtok
                             + stats["table_completion_tokens"] * o.price_output_per_mtok) / 1e6
    metrics = {**summarize(rows), "k": cfg.k, "teacher": {"kind": cfg.teacher.kind, "model": identity},
               "policy": policy, "generation": stats,
               "wall_s": round(time.time() - t0, 1)}
    write_json(args.metrics, metrics)
    log.info("rollouts: %s", metrics)


if __name__ == "__main__":
    main()
