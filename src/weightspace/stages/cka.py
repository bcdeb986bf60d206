"""Stage cka: per-layer linear CKA between the hidden states of every pair of models (base and each
adapter merged into it) on the first n prompts of an evaluation set. Tokens are pooled per prompt
(mean over the prompt's tokens after dropping the first, BOS-like ``<|im_start|>``), so the n
examples are prompts. Debiased CKA is the headline, biased beside it -> ``<metrics>`` (last-layer and
late-layer mean per pair), ``<plots>/debiased.csv`` and ``<plots>/biased.csv`` (per layer). Params: ``cka``,
``prompt``, ``threads``."""

from __future__ import annotations

import logging
from pathlib import Path

from ..model.adapters import read_deltas
from ..function.cka import pairwise
from ..data.datasets import read_jsonl
from ..generate.merge import Merger
from ..function.function_space import pooled_hidden_states
from ..model.models import default_device, load_base
from ..core.tables import write_csv
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"base": "base model", "deltas": "folder of <method>.safetensors",
                                   "data": "folder of evaluation sets", "metrics": "metrics JSON",
                                   "plots": "folder for the CSV tables"}, argv)
    cfg = params.cka
    set_threads(params.threads)
    rows = read_jsonl(Path(args.data) / f"{cfg.set}.jsonl")[: cfg.n]
    prompts = [params.prompt.render(r["question"]) for r in rows]
    device, dtype = default_device()
    model, tok = load_base(args.base, dtype=dtype, device=device)
    reps = {"base": pooled_hidden_states(model, tok, prompts, cfg.batch_size)}
    deltas = {m: read_deltas(Path(args.deltas) / f"{m}.safetensors") for m in params.methods}
    merger = Merger(model, list(deltas[params.methods[0]]))
    for m, d in deltas.items():
        merger.set([(1.0, d)])
        reps[m] = pooled_hidden_states(model, tok, prompts, cfg.batch_size)
    merger.reset()
    n_layers = len(reps["base"])
    summary, table = pairwise(reps)
    metrics = {"n": len(rows), "layers": n_layers, **summary,
               "pooling": "mean over prompt tokens, first token dropped",
               "layer_convention": "output of decoder block l = 0..L-1 (residual stream; 0 = the first block, as "
                                   "the geometry's layers), the last one before the final norm"}
    write_json(args.metrics, metrics)
    for kind, cols in table.items():  # wide: layer, then one column per pair
        write_csv(Path(args.plots) / f"{kind}.csv", {"layer": list(range(n_layers)), **cols}, "%.8f")
    log.info("cka (debiased, last layer): %s", {p: round(v["last"], 3) for p, v in metrics["debiased"].items()})


if __name__ == "__main__":
    main()
