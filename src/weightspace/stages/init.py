"""Stage init: what every method shares -> ``<out>/`` = the LoRA initialisation (a PEFT adapter,
B = 0 so Delta W starts at 0) and ``order.json``, the row order of the rollout table, both from
``train.seed``; and ``<seed_out>/``, the same from ``controls.seed`` (the seed twins, each method's
noise floor). Params: ``train.seed``, ``controls.seed``, ``train.lora``, ``threads``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from ..adapters import save_adapter
from ..models import load_base
from ..rollouts import load_table
from .common import parse, set_threads

log = logging.getLogger(__name__)


def lora_config(lora):
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), use_rslora=lora.use_rslora, bias="none",
                      task_type="CAUSAL_LM")


def make_init(base: str, rows: list[dict], lora, seed: int, out: Path) -> None:
    """LoRA init (PEFT adapter, B = 0) and ``order.json`` (a permutation of the rows), both from ``seed``."""
    from peft import get_peft_model

    model, _ = load_base(base)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, lora_config(lora))
    n_layers = model.config.num_hidden_layers
    n_modules = sum(1 for n, _ in peft_model.named_modules() if n.endswith(tuple(lora.target_modules))
                    and hasattr(_, "lora_A"))
    if n_modules != n_layers * len(lora.target_modules):
        raise RuntimeError(f"init: {n_modules} LoRA modules, expected layers x targets = "
                           f"{n_layers} x {len(lora.target_modules)}")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    if out.exists():
        shutil.rmtree(out)
    save_adapter(peft_model, out)
    (out / "order.json").write_text(json.dumps(order) + "\n")
    log.info("init (seed %d): %d LoRA modules (%d layers x %d), %d rows ordered", seed, n_modules, n_layers,
             len(lora.target_modules), len(order))


def main(argv=None) -> None:
    args, params = parse(__doc__, {"base": "base model folder", "rollouts": "rollout table",
                                   "out": "init from train.seed", "seed_out": "init from controls.seed"}, argv)
    set_threads(params.threads)
    rows = load_table(args.rollouts)
    make_init(args.base, rows, params.train.lora, params.train.seed, Path(args.out))
    make_init(args.base, rows, params.train.lora, params.controls.seed, Path(args.seed_out))


if __name__ == "__main__":
    main()
