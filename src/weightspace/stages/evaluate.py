"""Stage evaluate@<model>: greedy pass@1 (and optional avg@k samples) of the base or one adapter on
every evaluation set -> ``<out>/<set>.jsonl``, one record per item: id, output, extracted, gold,
correct, tokens, truncated (and ``samples_correct`` for avg@k). ``--adapter`` and ``--out`` may each
name several, comma-separated and paired in order (a method and its seed twin, in one process, by one
engine: vllm serves each adapter per request, hf merges each in turn into one base).
Params: ``evaluate``, ``prompt``, ``threads``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..data import grading
from ..data.datasets import read_jsonl, write_jsonl
from ..generate.generation import make_engine
from .common import parse, set_threads

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"base": "base model", "adapter": "PEFT adapter folder(s), or 'none' for the base",
                                   "data": "folder of <set>.jsonl evaluation sets", "out": "output folder(s)"}, argv)
    adapters, outs = args.adapter.split(","), args.out.split(",")
    if len(adapters) != len(outs):
        raise ValueError(f"evaluate: {len(adapters)} adapters ({args.adapter}) but {len(outs)} output folders "
                         f"({args.out}); they pair in order")
    set_threads(params.threads)
    sets = {p.stem: read_jsonl(p) for p in sorted(Path(args.data).glob("*.jsonl"))}
    if not sets:
        raise FileNotFoundError(f"{args.data}: no evaluation sets (*.jsonl)")
    adapters = [None if a == "none" else a for a in adapters]
    engine = make_engine(params.evaluate.generation, args.base, [a for a in adapters if a is not None])
    for adapter, out in zip(adapters, outs):  # one engine serves them all, one adapter per call
        evaluate(params, engine, adapter, sets, Path(out))


def evaluate(params, engine, lora: str | None, sets: dict[str, list[dict]], out: Path) -> None:
    """Every set's records of the engine's base + ``lora`` (None: the base) -> ``<out>/<set>.jsonl``."""
    cfg = params.evaluate
    if out.exists():
        shutil.rmtree(out)
    for name, rows in sets.items():
        messages = [params.prompt.render(r["question"]) for r in rows]
        greedy = [c[0] for c in engine.generate(messages, 1, desc=f"eval {name}", adapter=lora)]
        verdicts = grading.grade_many([c.text for c in greedy], [r["answer"] for r in rows])
        records = [{"id": r["id"], "output": c.text, "extracted": v.extracted, "gold": r["answer"],
                    "correct": bool(v.reward), "reward_rule": v.rule, "tokens": c.n_tokens,
                    "truncated": c.truncated} for r, c, v in zip(rows, greedy, verdicts)]
        if cfg.avg_k is not None and name in cfg.avg_k.sets:
            engine.gen = cfg.generation.model_copy(update={"temperature": cfg.avg_k.temperature,
                                                             "top_p": cfg.avg_k.top_p})
            samples = engine.generate(messages, cfg.avg_k.k, desc=f"avg@k {name}", adapter=lora,
                                      ids=[r["id"] for r in rows])
            engine.gen = cfg.generation
            for rec, r, cs in zip(records, rows, samples):
                rec["samples_correct"] = [bool(v.reward) for v in
                                          grading.grade_many([c.text for c in cs], [r["answer"]] * len(cs))]
        write_jsonl(out / f"{name}.jsonl", records)
        log.info("evaluate %s on %s: pass@1 %.3f (n=%d)", lora or "base", name,
                 sum(r["correct"] for r in records) / len(records), len(records))


if __name__ == "__main__":
    main()
