"""TRL as an independent oracle: our DFT and DPO losses equal TRL's on the same fixed batch."""

from __future__ import annotations

import pytest
import torch

from test_training import rows_table, small_model
from weightspace import config
from weightspace import losses as L
from weightspace.training import Item, LossFn, collate, reference_logps, sequence_logps
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
    ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    # TRL's tokens, re-entered through the project's own path: Items, pairs interleaved (chosen,
    # rejected), collate, policy log-probs, reference_logps (adapter disabled) and LossFn's pair reshape
    P = len(pairs)
    items = []
    for i in range(2 * P):
        seq = ids[i][attn[i].bool()].tolist()
        start = int(comp[i][attn[i].bool()].nonzero()[0])
        items.append(Item(i, tuple(seq[:start]), tuple(seq[start:])))
    interleaved = [items[k] for j in range(P) for k in (j, P + j)]
    ours_batch = collate(interleaved, tok.pad_token_id)
    with torch.no_grad():
        ref = reference_logps(model, ours_batch)
    logp, mask = sequence_logps(model, ours_batch)
    rows = [{"reward": 0}] * (2 * P)
    ours = LossFn("dpo", config.DPO(lr=1e-3, beta=0.1, pairing="one"), rows)(
        logp, mask, [(2 * j, 2 * j + 1) for j in range(P)], float(P), ref)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert abs(ours.item() - 0.693147) > 1e-3  # a non-trivial batch
