"""Stage init: what every method shares -> ``<out>/`` = the LoRA initialisation (a PEFT adapter,
B = 0 so Delta W starts at 0) and ``order.json``, the row order of the rollout table, both from
``train.seed``; and ``<seed_out>/``, the same from ``controls.seed`` (the seed twins, each method's
noise floor). Params: ``train.seed``, ``controls.seed``, ``train.lora``, ``threads``."""

from __future__ import annotations

from pathlib import Path

from ..train.lora_init import make_init
from ..data.rollouts import load_table
from .common import parse, set_threads


def main(argv=None) -> None:
    args, params = parse(__doc__, {"base": "base model folder", "rollouts": "rollout table",
                                   "out": "init from train.seed", "seed_out": "init from controls.seed"}, argv)
    set_threads(params.threads)
    rows = load_table(args.rollouts)
    make_init(args.base, rows, params.train.lora, params.train.seed, Path(args.out))
    make_init(args.base, rows, params.train.lora, params.controls.seed, Path(args.seed_out))


if __name__ == "__main__":
    main()
