"""Stage init: what every method shares -> ``<out>/`` = the LoRA initialisation (a PEFT adapter,
B = 0 so Delta W starts at 0) and ``order.json``, the row order of the rollout table, both from
``train.seed`` (or ``controls.seed`` with ``--seed-from controls``: the seed twins, each method's
noise floor). Params: ``train.seed``, ``train.lora``, ``threads`` (``controls.seed``)."""

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


def main(argv=None) -> None:
    from peft import get_peft_model

    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--seed-from", choices=("train", "controls"), default="train")
    known, rest = pre.parse_known_args(argv)
    args, params = parse(__doc__, {"base": "base model folder", "rollouts": "rollout table",
                                   "out": "output folder"}, rest)
    cfg = params.train
    seed = cfg.seed if known.seed_from == "train" else params.controls.seed
    set_threads(params.threads)
    rows = load_table(args.rollouts)
    model, _ = load_base(args.base)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, lora_config(cfg.lora))
    n_layers = model.config.num_hidden_layers
    n_modules = sum(1 for n, _ in peft_model.named_modules() if n.endswith(tuple(cfg.lora.target_modules))
                    and hasattr(_, "lora_A"))
    if n_modules != n_layers * len(cfg.lora.target_modules):
        raise RuntimeError(f"init: {n_modules} LoRA modules, expected layers x targets = "
                           f"{n_layers} x {len(cfg.lora.target_modules)}")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    save_adapter(peft_model, out)
    (out / "order.json").write_text(json.dumps(order) + "\n")
    log.info("init (seed %d): %d LoRA modules (%d layers x %d), %d rows ordered", seed, n_modules, n_layers,
             len(cfg.lora.target_modules), len(order))


if __name__ == "__main__":
    main()
