"""Cost of one point of a mode-connectivity curve against one plain forward pass over the same items.

A point is: merge W0 + alpha dW_a + (1 - alpha) dW_b into the base (``Merger.set``) and one
masked-answer CE pass over the items (``answer_ce``). Tokenising, loading and the deltas are done
once per stage, outside the points. Prints both times, the merge alone, and their ratio (target:
a point within 1.5x of a plain forward pass). Needs the default pipeline's outputs.
Usage: python benchmarks/connectivity.py [--pair sft-dpo] [--n 200] [--batch 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from weightspace import config
from weightspace.model.adapters import read_deltas
from weightspace.data.datasets import read_jsonl
from weightspace.generate.merge import Merger
from weightspace.function.function_space import answer_ce, answer_items
from weightspace.model.models import load_base


def best(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="sft-dpo")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = config.load("params.yaml")
    model, tok = load_base("models/base")
    rows = read_jsonl(Path("data/prepared/eval") / f"{params.connectivity.set}.jsonl")[: args.n]
    items = answer_items(tok, [params.prompt.render(r["question"]) for r in rows], [r["answer"] for r in rows])
    a, b = args.pair.split("-")
    da, db = (read_deltas(f"models/deltas/{m}.safetensors") for m in (a, b))
    merger = Merger(model, list(da))
    plain = best(lambda: answer_ce(model, items, tok.pad_token_id, args.batch), args.repeats)
    merge = best(lambda: merger.set([(0.5, da), (0.5, db)]), args.repeats)

    def point():
        merger.set([(0.3, da), (0.7, db)])
        answer_ce(model, items, tok.pad_token_id, args.batch)

    per_point = best(point, args.repeats)
    merger.reset()
    print(f"{len(items)} items, batch {args.batch}, pair {args.pair}: plain forward pass {plain * 1e3:.1f} ms, "
          f"merge alone {merge * 1e3:.1f} ms, one curve point (merge + forward) {per_point * 1e3:.1f} ms")
    print(f"ratio point / plain forward: {per_point / plain:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
