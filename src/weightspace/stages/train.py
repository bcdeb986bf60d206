"""Stage train@<method>: one LoRA adapter from the shared rollouts, init and row order.

Writes ``<out>/`` (PEFT adapter at ``train.compare_step``; the final one in ``<out>/final`` when
later), ``<metrics>`` and per-step curves under ``<plots>`` (dvclive). Runs unchanged under
``accelerate launch``. Params: ``<method>``, ``train``, ``threads``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from .. import adapters
from ..models import load_base
from ..rollouts import load_table
from ..training import LossFn, encode_rows, lora_sha256, select, train
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", required=True)
    known, rest = pre.parse_known_args(argv)
    args, params = parse(__doc__, {"base": "base model", "init": "init stage folder", "rollouts": "rollout table",
                                   "out": "adapter folder", "metrics": "metrics JSON", "plots": "curve folder"}, rest)
    method, cfg = known.method, params.train
    mcfg = params.method(method)  # unknown method: ParamsError before any compute
    set_threads(params.threads)
    rows = load_table(args.rollouts)
    order = json.loads((Path(args.init) / "order.json").read_text())
    if sorted(order) != list(range(len(rows))):
        raise RuntimeError(f"{args.init}/order.json is not a permutation of the {len(rows)} rollout rows")
    units = select(method, rows, order, getattr(mcfg, "pairing", "one"))

    import torch
    from accelerate import Accelerator
    from dvclive import Live
    from peft import PeftModel

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="bf16" if cfg.bf16 else "no")
    base, tok = load_base(args.base)
    model = PeftModel.from_pretrained(base, args.init, is_trainable=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.to(accelerator.device)
    init_sha = lora_sha256(model)  # identical across methods: one shared initialisation
    items = encode_rows(tok, rows, cfg.max_length)
    loss_fn = LossFn(method, mcfg, rows)

    out, compare = Path(args.out), cfg.compare_step or cfg.steps
    tmp = out.with_name(out.name + ".partial")
    for d in (out, tmp):
        if d.exists():
            shutil.rmtree(d)
    live = Live(dir=args.plots, dvcyaml=False, save_dvc_exp=False, report=None) if accelerator.is_main_process else None

    def on_step(step, loss, lr):
        if live is not None:
            live.log_metric("loss", loss)
            live.log_metric("lr", lr)
            live.next_step()

    def save_at(step, unwrapped):
        if not accelerator.is_main_process:
            return
        if step == compare:
            adapters.save_adapter(unwrapped, tmp)
        if step == cfg.steps and step != compare:
            adapters.save_adapter(unwrapped, tmp / "final")

    t0 = time.time()
    summary = train(model, accelerator, method, units, items, loss_fn, cfg, mcfg.lr, tok.pad_token_id,
                    on_step=on_step, save_at=save_at)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp.rename(out)  # the adapter appears whole or not at all
        live.end()
        factors = adapters.read_adapter(out)
        write_json(args.metrics, {**summary, "method": method, "lr": mcfg.lr, "compare_step": compare, "init_sha256": init_sha,
                                  "modules": len(factors), "delta_frobenius": adapters.frobenius(factors),
                                  "wall_s": round(time.time() - t0, 2)})
        log.info("train@%s: %s", method, summary)


if __name__ == "__main__":
    main()
