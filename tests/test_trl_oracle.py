"""TRL as an independent oracle: our DFT, DPO, IPO, SimPO and KTO losses equal TRL's on the same fixed
batch (TRL 1.16: SFTTrainer dft, DPOTrainer sigmoid/ipo, experimental CPOTrainer simpo, KTOTrainer)."""

from __future__ import annotations

import math

import pytest
import torch

from test_training import rows_table, small_model
from weightspace.core.units import Mismatch, Preference
from weightspace import registry
from weightspace.model.sequences import token_logps
from weightspace.registry.dft import dft_loss
from weightspace.registry.sft import sft_loss
from weightspace.train.training import Item, LossFn, collate, encode_rows, reference_logps, sequence_logps
from weightspace.tiny import model as tiny


@pytest.fixture(scope="module")
def tok():
    return tiny.train_tokenizer([r["prompt"] + " " + r["completion"] for r in rows_table()] * 5, 300)


def moved_adapter_loss(trainer, seed: int):
    """(model, batch, TRL's loss) on TRL's first batch after a random non-zero LoRA B (policy != reference)."""
    model = trainer.model
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    return model, batch, trainer.compute_loss(model, batch)


def trl_items(batch, prefix: str = "") -> list[Item]:
    """TRL's tokenised sequences (``<prefix>input_ids`` etc.) as the project's Items: prompt, completion."""
    ids, attn = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
    comp = batch[f"{prefix}completion_mask"]
    out = []
    for i in range(len(ids)):
        seq = ids[i][attn[i].bool()].tolist()
        start = int(comp[i][attn[i].bool()].nonzero()[0])
        out.append(Item(i, tuple(seq[:start]), tuple(seq[start:])))
    return out


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
    ours = dft_loss(token_logps(logits, batch["input_ids"]), mask, mask.sum())
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    # and DFT is not plain SFT on this batch
    assert abs(sft_loss(token_logps(logits, batch["input_ids"]), mask, mask.sum()).item() - ours.item()) > 1e-3


@pytest.mark.parametrize("method, loss_type, mcfg", [
    ("dpo", "sigmoid", registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="one")),
    ("ipo", "ipo", registry.get("ipo").params(lr=1e-3, tau=0.1, pairing="one")),  # TRL's beta is IPO's tau
])
def test_pair_losses_equal_trl_dpo_trainer(tok, tmp_path, method, loss_type, mcfg):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    rows = rows_table()
    pairs = [(rows[4], rows[5]), (rows[6], rows[7]), (rows[14], rows[12])]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": c["prompt"]}],
                             "chosen": [{"role": "assistant", "content": c["completion"]}],
                             "rejected": [{"role": "assistant", "content": r["completion"]}]} for c, r in pairs])
    args = DPOConfig(output_dir=str(tmp_path), beta=0.1, loss_type=[loss_type], report_to="none", bf16=False,
                     gradient_checkpointing=False, max_length=64, per_device_train_batch_size=3, use_cpu=True)
    # a fresh adapter from peft_config: TRL's reference is then the base with the adapter disabled
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainer = DPOTrainer(model=small_model(tok, seed=5), args=args, train_dataset=ds, processing_class=tok,
                         peft_config=lora)
    model, batch, theirs = moved_adapter_loss(trainer, seed=0)
    # TRL's tokens, re-entered through the project's own path: Items, pairs interleaved (chosen,
    # rejected), collate, policy log-probs, reference_logps (adapter disabled) and LossFn's pair reshape
    P = len(pairs)
    items = trl_items(batch)
    interleaved = [items[k] for j in range(P) for k in (j, P + j)]
    ours_batch = collate(interleaved, tok.pad_token_id)
    with torch.no_grad():
        ref = reference_logps(model, ours_batch)
    logp, mask = sequence_logps(model, ours_batch)
    rows = [{"reward": 0}] * (2 * P)
    units = [Preference((2 * j, 2 * j + 1)) for j in range(P)]
    ours = LossFn(registry.get(method), mcfg, rows)(logp, mask, units, float(P), ref)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    at_init = {"dpo": math.log(2), "ipo": 1 / (4 * 0.1**2)}[method]  # policy == reference
    assert abs(ours.item() - at_init) > 1e-3  # a non-trivial batch


def test_simpo_equals_trl_cpo_trainer_simpo(tok):
    from types import SimpleNamespace

    from trl.experimental.cpo import CPOTrainer

    rows = rows_table()
    model = small_model(tok, seed=4)
    items = encode_rows(tok, rows, 64)
    units = [Preference((4, 5)), Preference((6, 7)), Preference((14, 12))]
    batch = collate([items[r] for u in units for r in u], tok.pad_token_id)
    logp, mask = sequence_logps(model, batch)
    mcfg = registry.get("simpo").params(lr=1e-3, beta=2.0, gamma=1.0, pairing="one")
    ours = LossFn(registry.get("simpo"), mcfg, rows)(logp, mask, units, float(len(units)))
    # TRL: length-averaged log-probs of the labelled tokens (get_batch_logps, average_log_prob=True) ...
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["input_ids"].clone()
    labels[:, 1:][batch["completion_mask"] == 0] = -100
    labels[:, 0] = -100
    avg = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=True).view(-1, 2)
    # ... into cpo_loss with loss_type simpo (cpo_alpha = 0: no NLL term), mean over pairs
    trl_self = SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=1.0, beta=2.0, label_smoothing=0.0,
                               accelerator=SimpleNamespace(device="cpu"))
    theirs = CPOTrainer.cpo_loss(trl_self, avg[:, 0], avg[:, 1])[0].mean()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert abs(ours.item() - math.log(1 + math.e)) > 1e-3  # not the equal-averages value


def test_kto_equals_trl_kto_trainer(tok, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import KTOConfig, KTOTrainer

    rows = rows_table()
    picked = [rows[4], rows[5], rows[9], rows[14]]  # 2 desirable (reward 1), 2 undesirable, 3 prompts
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                             "completion": [{"role": "assistant", "content": r["completion"]}],
                             "label": bool(r["reward"])} for r in picked])
    args = KTOConfig(output_dir=str(tmp_path), beta=0.1, report_to="none", bf16=False, gradient_checkpointing=False,
                     max_length=64, per_device_train_batch_size=4, use_cpu=True)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainer = KTOTrainer(model=small_model(tok, seed=6), args=args, train_dataset=ds, processing_class=tok,
                         peft_config=lora)
    model, batch, theirs = moved_adapter_loss(trainer, seed=1)
    # TRL's sequences through the project's path: each row then its mismatched (KL) sequence, as the loop
    # lays out a "unpaired" unit; the table rows carry TRL's labels as rewards
    real, kl = trl_items(batch), trl_items(batch, "KL_")
    P = len(real)
    ours_batch = collate([x for j in range(P) for x in (real[j], kl[j])], tok.pad_token_id)
    with torch.no_grad():
        ref = reference_logps(model, ours_batch)
    logp, mask = sequence_logps(model, ours_batch)
    table = [{"reward": int(batch["label"][j // 2]) if j % 2 == 0 else 0} for j in range(2 * P)]
    units = [Mismatch((2 * j, 2 * j + 1)) for j in range(P)]
    ours = LossFn(registry.get("kto"), registry.get("kto").params(lr=1e-3, beta=0.1, desirable_weight=1.0, undesirable_weight=1.0), table)(
        logp, mask, units, float(P), ref)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert abs(ours.item() - 0.5) > 1e-4  # not the policy == reference value
