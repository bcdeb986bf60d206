"""Stage compare: accuracy with intervals per model and set, exact McNemar for every pair of models
with Holm correction per set, avg@k with a problem-level bootstrap -> ``<metrics>`` (keys like
``heldout.dpo.acc``, ``heldout.sft-dpo.p_holm``) and ``<plots>/<set>.csv``. With
``--twins`` (not ``none``), the same per set again under ``seed_twins``, each method replaced by its
seed twin where ``<twins>/<model>/`` exists (the base has none and stays): the claims' seed bands.
The models: the base and every method of ``methods``. Params: ``compare``, ``methods``."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from .. import stats
from ..datasets import read_jsonl
from ..tables import write_csv
from .common import parse, write_json

log = logging.getLogger(__name__)


def compare_set(records: dict[str, list[dict]], level: float, bootstrap: int, seed: int) -> dict:
    """Metrics of one evaluation set; ``records[model]`` are that model's per-item records."""
    models = list(records)
    ids = [r["id"] for r in records[models[0]]]
    for m in models:
        if [r["id"] for r in records[m]] != ids:
            raise ValueError(f"compare: {m} was evaluated on other items than {models[0]}; results are not paired")
    out: dict = {}
    for m in models:
        correct = [bool(r["correct"]) for r in records[m]]
        lo, hi = stats.wilson(sum(correct), len(correct), level)
        out[m] = {"acc": sum(correct) / len(correct), "lo": lo, "hi": hi, "n": len(correct)}
        if "samples_correct" in records[m][0]:
            avg = np.array([np.mean(r["samples_correct"]) for r in records[m]])
            blo, bhi = stats.bootstrap_mean(avg, bootstrap, seed, level)
            out[m].update({"avg_k": float(avg.mean()), "avg_k_lo": blo, "avg_k_hi": bhi})
    pairs = list(itertools.combinations(models, 2))
    tests = [stats.mcnemar_exact([bool(r["correct"]) for r in records[a]], [bool(r["correct"]) for r in records[b]])
             for a, b in pairs]
    for (a, b), t, ph in zip(pairs, tests, stats.holm([t["p"] for t in tests])):
        out[f"{a}-{b}"] = {**t, "p_holm": ph}
    return out


def main(argv=None) -> None:
    args, params = parse(__doc__, {"evals": "folder of <model>/<set>.jsonl",
                                   "twins": "folder of the seed twins' <model>/<set>.jsonl, or 'none'",
                                   "metrics": "metrics JSON", "plots": "folder for CSV tables"}, argv)
    cfg = params.compare
    models = ["base", *params.methods]
    sets = sorted(p.stem for p in (Path(args.evals) / models[0]).glob("*.jsonl"))
    metrics = {}
    for s in sets:
        metrics[s] = compare_set({m: read_jsonl(Path(args.evals) / m / f"{s}.jsonl") for m in models}, cfg.level,
                                 cfg.bootstrap, cfg.seed)
        write_csv(Path(args.plots) / f"{s}.csv", [{"model": m, **{k: metrics[s][m][k] for k in ("acc", "lo", "hi")}}
                                                  for m in models], "%.6f")
        different = [p for p, v in metrics[s].items() if "-" in p and v["p_holm"] < 0.05]
        log.info("%s: %s; differ after Holm: %s", s, {m: round(metrics[s][m]["acc"], 3) for m in models},
                 different or "none")
    if args.twins != "none":
        tw = Path(args.twins)
        metrics["seed_twins"] = {
            s: compare_set({m: read_jsonl((tw if (tw / m).is_dir() else Path(args.evals)) / m / f"{s}.jsonl")
                            for m in models}, cfg.level, cfg.bootstrap, cfg.seed) for s in sets}
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
