"""Stage prepare: training prompts and evaluation sets -> ``<out>/train.jsonl``, ``<out>/eval/<name>.jsonl``
and, when a generator is configured, the tiny base's pretraining corpus ``<out>/pretrain.jsonl``.
Params: ``prepare``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..data.datasets import generated_splits, load_source, write_jsonl
from .common import parse

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"out": "output folder"}, argv)
    cfg = params.prepare
    sources = {"train": cfg.train, **{f"eval/{k}": v for k, v in cfg.eval.items()}}
    generated = {}
    if cfg.generator is not None:
        sizes = {name: src.n for name, src in sources.items() if src.kind == "generated"}
        generated = generated_splits(cfg.generator, sizes)
    tables = {name: load_source(src, name.split("/")[-1], generated.get(name)) for name, src in sources.items()}
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    for name, rows in tables.items():
        write_jsonl(out / f"{name}.jsonl", rows)
        log.info("%s: %d rows", name, len(rows))
    if cfg.generator is not None:
        write_jsonl(out / "pretrain.jsonl", [{"question": p.question, "solution": p.solution, "answer": p.answer}
                                             for p in generated["pretrain"]])


if __name__ == "__main__":
    main()
