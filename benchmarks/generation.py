"""Batched vs batch-1 generation throughput of the tiny base (HF engine, KV cache, left padding), and
the project's batched generator against TRL's GRPOTrainer generation (the online GRPO stage's sampler:
``GRPOTrainer._generate``, transformers' ``generate`` on TRL's own prompt batch), both sampling at
temperature 1 on the same prompts in one batch.

Prints tokens/s of each and the ratios, measured in the same run on the same prompts.
Usage: python benchmarks/generation.py [--base models/base] [--prompts 64] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from weightspace import config
from weightspace.generate.generation import HFEngine
from weightspace.model.models import load_base


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
                                seed=0, max_model_len=None, gpu_memory_utilization=None, openai=None)
        return HFEngine(model, tok, gen)

    run(engine(args.batch), messages[:8])  # warm-up
    n1, t1 = run(engine(1), messages)
    nb, tb = run(engine(args.batch), messages)
    print(f"batch 1:  {n1} tokens in {t1:.2f}s = {n1 / t1:.0f} tok/s")
    print(f"batch {args.batch}: {nb} tokens in {tb:.2f}s = {nb / tb:.0f} tok/s")
    print(f"ratio batched / batch-1: {(nb / tb) / (n1 / t1):.1f}x")
    nt, tt = trl_generate(model, tok, messages)
    sampling = config.Generation(engine="hf", temperature=1.0, top_p=1.0, max_new_tokens=64, batch_size=len(messages),
                                 seed=0, max_model_len=None, gpu_memory_utilization=None, openai=None)
    no, to = run(HFEngine(model, tok, sampling), messages)
    print(f"sampling, one batch of {len(messages)}: ours {no} tokens in {to:.2f}s = {no / to:.0f} tok/s; "
          f"TRL GRPOTrainer {nt} tokens in {tt:.2f}s = {nt / tt:.0f} tok/s")
    print(f"ratio ours / TRL (sampling): {(no / to) / (nt / tt):.2f}x")


def trl_generate(model, tok, messages: list[str]) -> tuple[int, float]:
    """Completion tokens and seconds of one ``GRPOTrainer._generate`` call on ``messages`` (conversational
    prompts, as the online stage passes them; temperature 1, top_p 1, at most 64 new tokens)."""
    import tempfile

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    prompts = [[{"role": "user", "content": m}] for m in messages]
    with tempfile.TemporaryDirectory() as d:
        args = GRPOConfig(output_dir=d, per_device_train_batch_size=len(messages), num_generations=2,
                          max_completion_length=64, temperature=1.0, top_p=1.0, use_cpu=True, report_to="none",
                          save_strategy="no", disable_tqdm=True, bf16=False, gradient_checkpointing=False, seed=0)
        trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
                              train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), processing_class=tok)
        trainer.model.eval()
        trainer._generate(prompts[:8])  # warm-up
        t = time.perf_counter()
        out = trainer._generate(prompts)
        seconds = time.perf_counter() - t
    completion_ids = out[1]
    return sum(len(c) for c in completion_ids), seconds


if __name__ == "__main__":
    main()
