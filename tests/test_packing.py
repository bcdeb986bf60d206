"""Sequence packing as ``benchmarks/gpu_plan.py`` does it (rows of several sequences, position_ids
restarting at 0 per sequence, no attention_mask) against the loop's right-padding, on a tiny random
Qwen3 in fp32.

Each sequence attends only to itself in both layouts, so the per-token log-probs, hence the SFT loss
and every LoRA gradient, agree up to float summation order. A packing that lets a sequence see the
one before it in its row (position_ids not restarted, or a 2-D attention_mask that switches off
transformers' detection of packed sequences) changes the log-probs of every sequence but the first.
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest
import torch

from weightspace import config, methods, tiny
from weightspace.losses import sft_loss
from weightspace.training import LossFn, collate, encode_rows, sequence_logps, train

_spec = importlib.util.spec_from_file_location("gpu_plan", Path(__file__).parents[1] / "benchmarks" / "gpu_plan.py")
gpu_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_plan)


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


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_gives_the_padded_loss_and_lora_gradients(tok, items, attn):
    packed = gpu_plan.pack(items, tok.pad_token_id)
    assert packed["input_ids"].shape[0] < len(items)  # some row really holds several sequences
    assert packed["completion_mask"].sum() == sum(len(it.completion) for it in items)
    model = lora_model(tok, attn)
    loss_pad, g_pad = loss_and_grads(model, lambda m: sequence_logps(m, collate(items, tok.pad_token_id)))
    loss_pack, g_pack = loss_and_grads(model, lambda m: gpu_plan.packed_logps(m, packed))
    assert loss_pack == pytest.approx(loss_pad, rel=1e-6)
    assert len(g_pad) == 2 * 4 * 2  # A and B of q,k,v,o in 2 layers
    for n, g in g_pad.items():
        assert g.abs().max() > 1e-4, n  # a gradient worth comparing
        torch.testing.assert_close(g_pack[n], g, rtol=1e-5, atol=1e-7, msg=n)


def test_a_wrong_packing_leaks_across_sequences(tok, items):
    packed = gpu_plan.pack(items, tok.pad_token_id)
    ids, mask = packed["input_ids"], packed["completion_mask"]
    no_reset = dict(packed, position_ids=torch.arange(ids.shape[1]).expand_as(ids))
    model = lora_model(tok)
    with torch.no_grad():
        padded, _ = sequence_logps(model, collate(items, tok.pad_token_id))
        right, _ = gpu_plan.packed_logps(model, packed)
        wrong_pos, _ = gpu_plan.packed_logps(model, no_reset)  # one long causal sequence per row
        # restarted position_ids, but a 2-D mask: transformers no longer sees the boundaries
        logits = model(input_ids=ids, position_ids=packed["position_ids"], attention_mask=torch.ones_like(ids)).logits
        wrong_mask = gpu_plan.token_logps(logits, ids)
    # the same completion tokens in both layouts: their log-probs, sorted, agree to float rounding
    assert torch.allclose(right[mask.bool()].sort().values, padded[padded_mask(items, tok)].sort().values, atol=1e-5)
    for wrong in (wrong_pos, wrong_mask):
        assert ((wrong - right).abs() * mask).max() > 0.05  # nats, on a sequence that sees its row-mate
        loss_right, loss_wrong = sft_loss(right, mask, mask.sum()), sft_loss(wrong, mask, mask.sum())
        assert abs(loss_wrong - loss_right) > 100 * 1e-6 * loss_right  # 100x the tolerance the right packing meets


def padded_mask(items, tok):
    return collate(items, tok.pad_token_id)["completion_mask"].bool()


def test_the_packed_loop_trains_the_padded_loops_adapter(tok, items):
    # train() with collate/sequence_logps swapped by gpu_plan.packing(): same SFT steps, same adapter
    from accelerate import Accelerator

    rows = rows_table()
    lora = config.Lora(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                       use_rslora=False)
    cfg = config.Train(launcher="python", seed=0, steps=2, compare_step=None, batch_size=8, micro_batch_size=4,
                       warmup_ratio=0.0, weight_decay=0.01, grad_clip=1.0, max_length=256, bf16=False,
                       gradient_checkpointing=False, checkpoint_every=None, lora=lora)
    by_row, order = {it.row: it for it in items}, [0, 7, 1, 6, 2, 5, 3, 4]  # short and long share micro-batches
    assert gpu_plan.pack([by_row[i] for i in order[:4]], tok.pad_token_id)["input_ids"].shape[0] < 4
    out = {}
    for name in ("padded", "packed"):
        model = lora_model(tok)
        with gpu_plan.packing() if name == "packed" else contextlib.nullcontext():
            train(model, Accelerator(cpu=True), "sft", order, by_row, LossFn("sft", methods.SFT(lr=1e-2), rows),
                  cfg, 1e-2, tok.pad_token_id)
        out[name] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    assert collate is gpu_plan.training.collate  # the swap is undone
    for n, p in out["padded"].items():
        torch.testing.assert_close(out["packed"][n], p, rtol=1e-5, atol=1e-6, msg=n)
