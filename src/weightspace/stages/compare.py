"""Stage compare: accuracy with intervals per model and set, exact McNemar for every pair of models
with Holm correction per set, a paired TOST within ``compare.margin`` per pair, avg@k with a problem-level bootstrap -> ``<metrics>`` (keys like
``heldout.dpo.acc``, ``heldout.sft-dpo.p_holm``) and ``<plots>/<set>.csv``. With
``--twins`` (not ``none``), the same per set again under ``seed_twins``, each method replaced by its
seed twin where ``<twins>/<model>/`` exists (the base has none and stays): the claims' seed bands.
The models: the base and every method of ``methods``. Params: ``compare``, ``methods``."""

from __future__ import annotations

import logging
from pathlib import Path

from ..function import stats
from ..data.datasets import read_jsonl
from ..core.pairs import Pair
from ..core.tables import write_csv
from .common import parse, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"evals": "folder of <model>/<set>.jsonl",
                                   "twins": "folder of the seed twins' <model>/<set>.jsonl, or 'none'",
                                   "metrics": "metrics JSON", "plots": "folder for CSV tables"}, argv)
    cfg = params.compare
    models = ["base", *params.methods]
    sets = sorted(p.stem for p in (Path(args.evals) / models[0]).glob("*.jsonl"))
    metrics = {}
    for s in sets:
        metrics[s] = stats.compare_set({m: read_jsonl(Path(args.evals) / m / f"{s}.jsonl") for m in models}, cfg.level,
                                 cfg.bootstrap, cfg.seed, cfg.margin)
        write_csv(Path(args.plots) / f"{s}.csv", [{"model": m, **{k: metrics[s][m][k] for k in ("acc", "lo", "hi")}}
                                                  for m in models], "%.6f")
        different = [p for p, v in metrics[s].items() if Pair.maybe(p) is not None and v["p_holm"] < 0.05]
        log.info("%s: %s; differ after Holm: %s", s, {m: round(metrics[s][m]["acc"], 3) for m in models},
                 different or "none")
    if args.twins != "none":
        tw = Path(args.twins)
        metrics["seed_twins"] = {
            s: stats.compare_set({m: read_jsonl((tw if (tw / m).is_dir() else Path(args.evals)) / m / f"{s}.jsonl")
                            for m in models}, cfg.level, cfg.bootstrap, cfg.seed, cfg.margin) for s in sets}
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
