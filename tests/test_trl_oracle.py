"""TRL as an independent oracle: our DFT and DPO losses equal TRL's on the same fixed batch."""

from __future__ import annotations

import pytest
import torch

from test_training import rows_table, small_model
from weightspace import losses as L
from weightspace import tiny


@pytest.fixture(scope="module")
def tok():
    return tiny.train_tokenizer([r["prompt"] + " " + r["completion"] for r in rows_table()] * 5, 300)


def test_dft_equals_trl_sft_trainer_dft(tok, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model = small_model(tok, seed=3)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                             "completion": [{"role": "assistant", "content": r["completion"]}]} for r in rows_table()[:8]])
    args = SFTConfig(output_dir=str(tmp_path), loss_type="dft", report_to="none", bf16=False,
                     gradient_checkpointing=False, max_length=64, per_device_train_batch_size=4, use_cpu=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    theirs = trainer.compute_loss(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = (batch["labels"][:, 1:] != -100).float()
    ours = L.dft_loss(L.token_logps(logits, batch["input_ids"]), mask, mask.sum())
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    # and DFT is not plain SFT on this batch
    assert abs(L.sft_loss(L.token_logps(logits, batch["input_ids"]), mask, mask.sum()).item() - ours.item()) > 1e-3


def test_dpo_equals_trl_dpo_trainer_sigmoid(tok, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    rows = rows_table()
    pairs = [(rows[4], rows[5]), (rows[6], rows[7]), (rows[14], rows[12])]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": c["prompt"]}],
                             "chosen": [{"role": "assistant", "content": c["completion"]}],
                             "rejected": [{"role": "assistant", "content": r["completion"]}]} for c, r in pairs])
    args = DPOConfig(output_dir=str(tmp_path), beta=0.1, loss_type=["sigmoid"], report_to="none", bf16=False,
                     gradient_checkpointing=False, max_length=64, per_device_train_batch_size=3, use_cpu=True)
    # a fresh adapter from peft_config: TRL's reference is then the base with the adapter disabled
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainer = DPOTrainer(model=small_model(tok, seed=5), args=args, train_dataset=ds, processing_class=tok,
                         peft_config=lora)
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # policy != reference
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    theirs = trainer.compute_loss(model, batch)
    ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"][:, 1:].float()

    def seq(m):
        return (L.token_logps(m(input_ids=ids, attention_mask=attn).logits, ids) * comp).sum(-1)

    pol = seq(model)
    with torch.no_grad(), model.disable_adapter():
        ref = seq(model)
    P = len(pairs)
    ours = L.dpo_loss(pol[:P], pol[P:], ref[:P], ref[P:], beta=0.1).mean()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert abs(ours.item() - 0.693147) > 1e-3  # a non-trivial batch
