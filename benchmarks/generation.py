"""Batched vs batch-1 generation throughput of the tiny base (HF engine, KV cache, left padding).

Prints tokens/s of both and their ratio, measured in the same run on the same prompts.
Usage: python benchmarks/generation.py [--base models/base] [--prompts 64] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from weightspace import config
from weightspace.generation import HFEngine
from weightspace.models import load_base


def run(engine: HFEngine, messages: list[str]) -> tuple[int, float]:
    t = time.perf_counter()
    out = engine.generate(messages, n=1)
    return sum(c[0].n_tokens for c in out), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="models/base")
    ap.add_argument("--data", default="data/prepared/train.jsonl")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_base(args.base)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()][: args.prompts]
    messages = [r["question"] for r in rows]

    def engine(batch: int) -> HFEngine:
        gen = config.Generation(engine="hf", temperature=0.0, top_p=1.0, max_new_tokens=64, batch_size=batch,
                                seed=0, openai=None)
        return HFEngine(model, tok, gen)

    run(engine(args.batch), messages[:8])  # warm-up
    n1, t1 = run(engine(1), messages)
    nb, tb = run(engine(args.batch), messages)
    print(f"batch 1:  {n1} tokens in {t1:.2f}s = {n1 / t1:.0f} tok/s")
    print(f"batch {args.batch}: {nb} tokens in {tb:.2f}s = {nb / tb:.0f} tok/s")
    print(f"ratio batched / batch-1: {(nb / tb) / (n1 / t1):.1f}x")


if __name__ == "__main__":
    main()
