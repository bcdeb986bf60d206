"""Stage connectivity: linear mode connectivity in Delta W space. For each pair a-b in params, the
masked-answer CE of W0 + alpha dW_a + (1 - alpha) dW_b on a grid of alpha (``sft_seed``: SFT from
``controls.seed``); barrier = max over alpha
of L(alpha) - [(1 - alpha) L(0) + alpha L(1)] -> ``<metrics>``, ``<plots>/curves.csv``. A pair naming
an online method outside ``methods`` is left out (``Params.connectivity_pairs``). Params: ``connectivity``,
``methods``, ``prompt``, ``threads``."""

from __future__ import annotations

import logging
from pathlib import Path

from ..model.adapters import read_deltas
from ..data.datasets import read_jsonl
from ..generate.merge import Merger
from ..function.function_space import answer_ce, answer_items, barrier
from ..model.models import default_device, load_base
from ..core.tables import write_csv
from .common import parse, set_threads, write_json
from ..core.pairs import Pair, Twin

log = logging.getLogger(__name__)


def delta_file(folder: Path, seeds: Path, name: str) -> Path:
    """``sft`` -> ``<folder>/sft.safetensors``; ``sft_seed`` (SFT from ``controls.seed``) ->
    ``<seeds>/sft.safetensors``."""
    twin = Twin.maybe(name)
    if twin is not None:
        return seeds / f"{twin.method}.safetensors"
    return folder / f"{name}.safetensors"


def main(argv=None) -> None:
    args, params = parse(__doc__, {"base": "base model", "deltas": "folder of <method>.safetensors",
                                   "seed_deltas": "folder of the seed twins' <method>.safetensors",
                                   "data": "folder of evaluation sets", "metrics": "metrics JSON",
                                   "plots": "folder for the curves CSV"}, argv)
    cfg = params.connectivity
    set_threads(params.threads)
    rows = read_jsonl(Path(args.data) / f"{cfg.set}.jsonl")[: cfg.n]
    device, dtype = default_device()
    model, tok = load_base(args.base, dtype=dtype, device=device)
    items = answer_items(tok, [params.prompt.render(r["question"]) for r in rows], [r["answer"] for r in rows])
    pairs = params.connectivity_pairs()
    methods = sorted({m for p in pairs for m in Pair.parse(p)})
    deltas = {m: read_deltas(delta_file(Path(args.deltas), Path(args.seed_deltas), m)) for m in methods}
    merger = Merger(model, list(deltas[methods[0]]))
    alphas = [i / (cfg.points - 1) for i in range(cfg.points)]
    metrics, curves = {"set": cfg.set, "n": len(rows), "base_ce": answer_ce(model, items, tok.pad_token_id,
                                                                             cfg.batch_size)}, {}
    for pair in pairs:
        a, b = Pair.parse(pair)
        curve = []
        for alpha in alphas:
            merger.set([(alpha, deltas[a]), (1 - alpha, deltas[b])])
            curve.append(answer_ce(model, items, tok.pad_token_id, cfg.batch_size))
        metrics[pair] = {"barrier": barrier(alphas, curve), "ce_alpha0": curve[0], "ce_alpha1": curve[-1],
                         "ce_mid": curve[len(curve) // 2], "ce_max": max(curve)}
        curves[pair] = curve
        log.info("%s: CE %s, barrier %.4f", pair, [round(c, 3) for c in curve], metrics[pair]["barrier"])
    merger.reset()
    write_json(args.metrics, metrics)
    write_csv(Path(args.plots) / "curves.csv", {"alpha": alphas, **curves}, "%.8f")  # one CE column per pair


if __name__ == "__main__":
    main()
