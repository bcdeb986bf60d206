"""Grading throughput: rows/s of the reward (string fast path + math-verify) in one process against a
process pool, on a table shaped like the paper's (the hand-labelled outputs of
tests/data/grading_cases.jsonl, repeated). Checks both give the same verdicts, and projects the time
for the paper's ~160k-row table. Usage: python benchmarks/grading.py [--rows 4000] [--processes N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from weightspace.data import grading


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--processes", type=int, default=os.cpu_count())
    args = ap.parse_args()
    cases = [json.loads(line) for line in
             (Path(__file__).parents[1] / "tests/data/grading_cases.jsonl").read_text().splitlines()]
    table = [cases[i % len(cases)] for i in range(args.rows)]
    texts, golds = [c["output"] for c in table], [c["gold"] for c in table]
    grading.grade(texts[0], golds[0])  # import math-verify outside the timing
    t = time.perf_counter()
    one = grading.grade_many(texts, golds, processes=1)
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    pool = grading.grade_many(texts, golds, processes=args.processes, chunksize=max(1, args.rows // (8 * args.processes)),
                              min_pool=1)
    t_pool = time.perf_counter() - t
    if one != pool:
        raise SystemExit("the pool's verdicts differ from one process's")
    rules = grading.rule_counts(one)
    print(f"{args.rows} rows, rules {rules}")
    print(f"one process: {args.rows / t_one:,.0f} rows/s; pool of {args.processes}: {args.rows / t_pool:,.0f} rows/s")
    print(f"ratio pool / one process: {t_one / t_pool:.2f}x; 160k rows: {160_000 / (args.rows / t_pool) / 60:.1f} min "
          f"with the pool")


if __name__ == "__main__":
    main()
