"""Stage rollouts: K sampled completions per training prompt, graded -> the shared rollout table.

Teacher: the base model (tiny default), ``rollouts.teacher`` (a hub id, hf/vllm engines) or the
``openai`` engine's model. Params: ``rollouts``, ``prompt``, ``threads``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..datasets import read_jsonl, write_jsonl
from ..generation import make_engine
from ..rollouts import grade_rows, summarize
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"data": "prepare's output folder", "base": "base model folder",
                                   "out": "rollout table (JSONL)", "metrics": "metrics JSON"}, argv)
    cfg = params.rollouts
    set_threads(params.threads)
    prompts = read_jsonl(Path(args.data) / "train.jsonl")
    messages = [params.prompt.render(p["question"]) for p in prompts]
    t0 = time.time()
    engine = make_engine(cfg.generation, args.base, cfg.teacher)
    completions = engine.generate(messages, cfg.k, desc="rollouts")
    rows = grade_rows(prompts, messages, completions)
    write_jsonl(args.out, rows)
    metrics = {**summarize(rows), "k": cfg.k, "wall_s": round(time.time() - t0, 1)}
    write_json(args.metrics, metrics)
    log.info("rollouts: %s", metrics)


if __name__ == "__main__":
    main()
