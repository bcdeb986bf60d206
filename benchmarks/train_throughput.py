"""Our training loop vs TRL SFTTrainer on identical SFT work (same tiny base, LoRA, rows, batch, steps).

Both train attention-only LoRA with SFT on the first ``batch * steps`` rollout rows, in the same
order, on the same threads; tokens/s counts prompt + completion tokens of those rows. Prints both
and their ratio, measured in the same run; and our loop again with ``train.packing`` against padded.
Usage: python benchmarks/train_throughput.py [--steps 30] [--batch 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="models/base")
    ap.add_argument("--rollouts", default="data/rollouts.jsonl")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from accelerate import Accelerator
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import SFTConfig, SFTTrainer

    from weightspace import config
    from weightspace import registry
    from weightspace.model.models import load_base
    from weightspace.data.rollouts import load_table
    from weightspace.train.training import LossFn, encode_rows, train

    rows = load_table(args.rollouts)[: args.batch * args.steps]
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets)
    cfg = config.Train(launcher="python", seed=0, steps=args.steps, compare_step=None, batch_size=args.batch,
                       micro_batch_size=args.batch, warmup_ratio=0.05, weight_decay=0.01, grad_clip=1.0, max_length=192,
                       bf16=False, gradient_checkpointing=False, checkpoint_every=None,
                       lora=config.Lora(r=8, alpha=16, dropout=0.0, target_modules=tuple(targets), use_rslora=False))

    def ours_tok_s(packing: bool) -> float:
        base, tok = load_base(args.base)
        items = encode_rows(tok, rows, cfg.max_length)
        torch.manual_seed(0)
        model = get_peft_model(base, lora)
        t = time.perf_counter()
        train(model, Accelerator(cpu=True), "sft", list(range(len(rows))), items,
              LossFn(registry.get("sft"), registry.get("sft").params(lr=1e-3), rows), cfg.model_copy(update={"packing": packing}), 1e-3,
              tok.pad_token_id)
        return n_tokens / (time.perf_counter() - t)

    base, tok = load_base(args.base)
    n_tokens = sum(len(it.prompt) + len(it.completion) for it in encode_rows(tok, rows, cfg.max_length).values())
    ours, packed = ours_tok_s(False), ours_tok_s(True)

    base, tok = load_base(args.base)
    tok.padding_side = "right"
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                             "completion": [{"role": "assistant", "content": r["completion"]}]} for r in rows])
    targs = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=args.steps, per_device_train_batch_size=args.batch,
                      learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01,
                      max_grad_norm=1.0, bf16=False, gradient_checkpointing=False, max_length=192, report_to="none",
                      save_strategy="no", logging_steps=10**6, use_cpu=True, dataloader_num_workers=0,
                      train_sampling_strategy="sequential", disable_tqdm=True, seed=0)
    torch.manual_seed(0)
    trainer = SFTTrainer(model=base, args=targs, train_dataset=ds, processing_class=tok, peft_config=lora)
    t = time.perf_counter()
    trainer.train()
    theirs = n_tokens / (time.perf_counter() - t)
    print(f"rows {len(rows)}, tokens {n_tokens}, steps {args.steps} x batch {args.batch}, threads {args.threads}")
    print(f"ours:            {ours:8.0f} tok/s")
    print(f"TRL SFTTrainer:  {theirs:8.0f} tok/s")
    print(f"ratio ours / TRL: {ours / theirs:.2f}x")
    print(f"ours, train.packing: {packed:8.0f} tok/s; ratio packed / padded: {packed / ours:.2f}x")


if __name__ == "__main__":
    main()
