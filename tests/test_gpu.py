"""The paper path's precision defects, checked on a CUDA GPU in bf16 (skipped where there is none;
CI has none). The CPU tests cover the same properties under CPU bf16 autocast."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the paper profile's device)")


def test_bf16_merge_of_a_4b_shaped_dpo_delta_is_exact_on_cuda():
    from weightspace.model.adapters import Factor
    from weightspace.generate.merge import Merger

    g = torch.Generator().manual_seed(0)
    d_out, d_in, r = 4096, 2560, 32  # Qwen3-4B q_proj, LoRA rank 32
    model = torch.nn.Sequential(torch.nn.Linear(d_in, d_out, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(d_out, d_in, generator=g) * 0.02)
    model = model.to("cuda", torch.bfloat16)
    A = torch.randn(r, d_in, generator=g, dtype=torch.float64) / d_in**0.5
    B = torch.randn(d_out, r, generator=g, dtype=torch.float64) * 2e-5 / r**0.5
    f = {"0": Factor(A, B, 2.0, 0, "q_proj")}
    true = 2.0 * B @ A
    w0 = model[0].weight.detach().double().cpu()
    naive = ((w0 + true).to(torch.bfloat16).double() - w0)
    assert (naive == 0).double().mean() > 0.8  # what bf16(W0 + dW) would keep: almost nothing
    merger = Merger(model, ["0"])
    merger.set([(1.0, f)])
    landed = model[0].weight.detach().double().cpu() - w0
    assert (landed - true).abs().max() <= 1e-8
    x = torch.randn(3, d_in, device="cuda", dtype=torch.bfloat16)
    y = model(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def test_first_dpo_step_under_cuda_bf16_autocast_is_log2():
    from accelerate import Accelerator

    from test_training import peft_model, rows_table, train_cfg
    from weightspace import registry
    from weightspace.tiny import model as tiny
    from weightspace.train.training import LossFn, encode_rows, select, train

    tok = tiny.train_tokenizer([r["prompt"] + " " + r["completion"] for r in rows_table()] * 5, 300)
    rows = rows_table()
    logged = []
    accelerator = Accelerator(mixed_precision="bf16")
    assert accelerator.device.type == "cuda"
    model = peft_model(tok).to(accelerator.device)
    units = select(registry.get("dpo"), rows, list(range(16)), registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="all"))
    train(model, accelerator, "dpo", units, encode_rows(tok, rows, 64),
          LossFn(registry.get("dpo"), registry.get("dpo").params(lr=1e-3, beta=0.1, pairing="all"), rows),
          train_cfg(steps=1, batch_size=4, micro_batch_size=2), 1e-3, tok.pad_token_id,
          on_step=lambda s, loss, lr: logged.append(loss))
    assert logged[0] == pytest.approx(math.log(2), abs=1e-6)
