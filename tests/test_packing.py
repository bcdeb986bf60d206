"""Sequence packing (``train.packing``, ``sequences.pack``: rows of several sequences, position_ids restarting
at 0 per sequence, no attention_mask) against the loop's right-padding, on a tiny random Qwen3.

Each sequence attends only to itself in both layouts, so the per-token log-probs, hence every method's loss
and every LoRA gradient, agree up to float summation order: to fp32 rounding in fp32, and within bf16's own
error under bf16 autocast (the paper profile's precision). A packing that lets a sequence see the one before
it in its row (position_ids not restarted, or a 2-D attention_mask that switches off transformers' detection
of packed sequences) changes the log-probs of every sequence but the first.
"""

from __future__ import annotations

import pytest
import torch

from conftest import REPO
from weightspace import config
from weightspace import registry
from weightspace.tiny import model as tiny
from weightspace.model.sequences import token_logps
from weightspace.registry.sft import sft_loss
from weightspace.model.sequences import pack, unpack
from weightspace.train.training import (LossFn, collate, encode_rows, reference_logps, select, sequence_logps, train,
                                  unit_items)

OFFLINE = [m for m, e in registry.REGISTRY.items() if not e.online]


def rows_table():
    """8 rows whose completions differ in length (1 to 22 steps), so padding and shared rows both occur."""
    rows = []
    for i in range(8):
        steps = " ".join(f"{j} + {i} = {i + j}." for j in range(3 * i + 1))
        rows.append({"row": i, "group": i // 4, "prompt": f"Ana has {i + 2} cups. How many?",
                     "completion": f"{steps} \\boxed{{{2 * i}}}", "reward": i % 2, "truncated": False})
    return rows


@pytest.fixture(scope="module")
def tok():
    return tiny.train_tokenizer([r["prompt"] + " " + r["completion"] for r in rows_table()] * 5, 300)


@pytest.fixture(scope="module")
def items(tok):
    return list(encode_rows(tok, rows_table(), 256).values())


def lora_model(tok, attn="sdpa"):
    """Tiny Qwen3 (hidden 32, 2 layers) with LoRA whose B is non-zero: at B = 0 every dL/dA is 0."""
    from peft import LoraConfig, get_peft_model

    base = tiny.build_model(len(tok), 32, 2, 2, 1, 16, 64, 256, 0, tok.eos_token_id, tok.pad_token_id)
    base.set_attn_implementation(attn)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return model


def loss_and_grads(model, logps):
    """SFT loss (normalised by completion tokens) and the LoRA gradients; ``logps(model) -> (logp, mask)``."""
    model.zero_grad(set_to_none=True)
    logp, mask = logps(model)
    loss = sft_loss(logp, mask, mask.sum().item())
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("attn, one_row", [("sdpa", False), ("eager", False), ("sdpa", True)])
def test_packed_batch_gives_the_padded_loss_and_lora_gradients(tok, items, attn, one_row):
    """Rows of first-fit-decreasing packing, and (``one_row``, the layout the loop uses for flash_attention_2)
    every sequence in one row."""
    packed = pack(items, tok.pad_token_id, one_row)
    assert packed["input_ids"].shape[0] == 1 if one_row else 1 < packed["input_ids"].shape[0] < len(items)
    assert packed["input_ids"].numel() < collate(items, tok.pad_token_id)["input_ids"].numel()  # fewer slots
    assert packed["completion_mask"].sum() == sum(len(it.completion) for it in items)
    model = lora_model(tok, attn)
    loss_pad, g_pad = loss_and_grads(model, lambda m: sequence_logps(m, collate(items, tok.pad_token_id)))
    loss_pack, g_pack = loss_and_grads(model, lambda m: sequence_logps(m, packed))
    assert loss_pack == pytest.approx(loss_pad, rel=1e-6)
    assert len(g_pad) == 2 * 4 * 2  # A and B of q,k,v,o in 2 layers
    for n, g in g_pad.items():
        assert g.abs().max() > 1e-4, n  # a gradient worth comparing
        torch.testing.assert_close(g_pack[n], g, rtol=1e-5, atol=1e-7, msg=n)


def test_a_wrong_packing_leaks_across_sequences(tok, items):
    packed = pack(items, tok.pad_token_id)
    ids, mask = packed["input_ids"], packed["completion_mask"]
    no_reset = dict(packed, position_ids=torch.arange(ids.shape[1]).expand_as(ids))
    model = lora_model(tok)
    with torch.no_grad():
        padded, _ = sequence_logps(model, collate(items, tok.pad_token_id))
        right, _ = sequence_logps(model, packed)
        wrong_pos, _ = sequence_logps(model, no_reset)  # one long causal sequence per row
        # restarted position_ids, but a 2-D mask: transformers no longer sees the boundaries
        logits = model(input_ids=ids, position_ids=packed["position_ids"], attention_mask=torch.ones_like(ids)).logits
        wrong_mask = unpack(token_logps(logits, ids), packed)
    # the same layout back: every completion token's log-prob where the padded batch has it, to float rounding
    torch.testing.assert_close(right * mask, padded * mask, rtol=0, atol=1e-5)
    for wrong in (wrong_pos, wrong_mask):
        assert ((wrong - right).abs() * mask).max() > 0.05  # nats, on a sequence that sees its row-mate
        loss_right, loss_wrong = sft_loss(right, mask, mask.sum()), sft_loss(wrong, mask, mask.sum())
        assert abs(loss_wrong - loss_right) > 100 * 1e-6 * loss_right  # 100x the tolerance the right packing meets


def method_loss_and_grads(model, tok, method: str, packed: bool, bf16: bool):
    """The loop's first micro-batch (4 units) of ``method`` with its params.yaml section: its loss (reference
    included) and LoRA gradients, the batch right-padded or packed, in fp32 or under bf16 autocast."""
    import contextlib

    rows = rows_table()
    by_row = encode_rows(tok, rows, 256)
    mcfg = config.load(REPO / "params.yaml").method(method)
    chunk = select(registry.get(method), rows, [0, 7, 1, 6, 2, 5, 3, 4], mcfg)[:4]  # short and long rows share the micro-batch
    loss_fn = LossFn(registry.get(method), mcfg, rows)
    flat = [it for u in chunk for it in unit_items(u, by_row)]
    batch = (pack if packed else collate)(flat, tok.pad_token_id)
    assert not packed or batch["input_ids"].shape[0] < len(flat)  # a row really holds several sequences
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        ref = reference_logps(model, batch) if loss_fn.needs_reference else None
        logp, mask = sequence_logps(model, batch)
    loss = loss_fn(logp, mask, chunk, loss_fn.normaliser(chunk, by_row), ref)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for n, p in model.named_parameters() if "lora_" in n])


@pytest.mark.parametrize("method", OFFLINE)
def test_every_offline_loss_and_its_gradients_are_the_same_packed(tok, method):
    """Each method's loss reads per-row log-probs (RFT/RIFT/GRPO weight rows, DPO/IPO/SimPO/KTO sum per
    sequence): packing gives the padded loss and gradients to fp32 rounding; under bf16 autocast it moves them
    no more than bf16 itself moves the padded ones away from fp32 (the gradient, a long vector: twice that
    distance; the loss, one number: twice that distance plus one bf16 rounding step of it, 2^-8 relative)."""
    model = lora_model(tok)
    pad32, pack32, pad16, pack16 = (method_loss_and_grads(model, tok, method, packed, bf16)
                                    for packed, bf16 in ((False, False), (True, False), (False, True), (True, True)))
    assert pad32[1].abs().max() > 1e-4  # a gradient worth comparing
    assert pack32[0] == pytest.approx(pad32[0], rel=1e-5, abs=1e-7)
    torch.testing.assert_close(pack32[1], pad32[1], rtol=1e-4, atol=1e-6)
    bf16_error = (pad16[1] - pad32[1]).norm()
    assert bf16_error > 0  # bf16 really ran
    assert (pack16[1] - pad16[1]).norm() <= 2 * bf16_error, ((pack16[1] - pad16[1]).norm(), bf16_error)
    assert abs(pack16[0] - pad16[0]) <= 2 * abs(pad16[0] - pad32[0]) + 2**-8 * abs(pad32[0]) + 1e-6


def padded_mask(items, tok):
    return collate(items, tok.pad_token_id)["completion_mask"].bool()


def test_the_packed_loop_trains_the_padded_loops_adapter(tok, items):
    """``train.packing: true``: the same SFT steps give the padded loop's adapter to fp32 rounding."""
    from accelerate import Accelerator

    rows = rows_table()
    lora = config.Lora(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                       use_rslora=False)
    by_row, order = {it.row: it for it in items}, [0, 7, 1, 6, 2, 5, 3, 4]  # short and long share micro-batches
    assert pack([by_row[i] for i in order[:4]], tok.pad_token_id)["input_ids"].shape[0] < 4
    out = {}
    for packing in (False, True):
        cfg = config.Train(launcher="python", seed=0, steps=2, compare_step=None, batch_size=8, micro_batch_size=4,
                           warmup_ratio=0.0, weight_decay=0.01, grad_clip=1.0, max_length=256, bf16=False,
                           gradient_checkpointing=False, checkpoint_every=None, packing=packing, lora=lora)
        model = lora_model(tok)
        train(model, Accelerator(cpu=True), "sft", order, by_row, LossFn(registry.get("sft"), registry.get("sft").params(lr=1e-2), rows),
              cfg, 1e-2, tok.pad_token_id)
        out[packing] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    for n, p in out[False].items():
        torch.testing.assert_close(out[True][n], p, rtol=1e-5, atol=1e-6, msg=n)
