"""What every method's training starts from: the LoRA initialisation (a PEFT adapter, B = 0, so Delta W
starts at 0) and the row order of the rollout table, both drawn from one seed (the init stage writes them for
``train.seed`` and for ``controls.seed``)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from ..model.adapters import save_adapter
from ..model.models import load_base

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
