"""The GPU check: the pipeline's own training step on Qwen3 shapes, measured and checked on one card.

    python tools/gpu_check.py --out benchmarks/gpu_check.json      # CUDA, no network; sized for a 10-minute H200 slot
    python tools/gpu_check.py --dry --out /tmp/gpu_check.json      # CPU, tiny shapes: the same code, in `make test`

For each shape (Qwen3-0.6B, -1.7B and -4B, built from their configs with random weights: no download) it
runs ``training.train``, the loop every ``train@`` stage runs, for SFT, DPO (its pairs and the reference
pass) and offline GRPO, with the profile's LoRA, micro-batch, ``max_length``, bf16 weights under bf16
autocast and gradient checkpointing (``profiles/paper.yaml`` for 4B, ``profiles/qwen3-1.7b.yaml`` for the
two smaller ones). Every sequence is ``max_length`` tokens long, so the peak memory is the profile's worst
case. It records per method: tokens/s over the timed steps (after one warm-up step), MFU and peak memory.

MFU = model FLOP/s / the card's dense bf16 peak, with model FLOPs = 4N per trained token (forward 2N,
backward to the activations 2N; LoRA's frozen base has no weight gradients) + 2N per token of DPO's
reference forward; N = the parameters (tied embedding once). Neither checkpointing's recompute nor the
attention scores are counted, so a higher hardware utilisation hides behind these figures.

Before any run it prints, per shape and method, the estimated peak memory of the profile's training micro-step
on an 80 GB card (``estimate_peak``: a formula, the dry mode's only memory figure; on CUDA the measured peak is
recorded beside it).

Checks, each recorded with its numbers:
- ``rerun_bit_equal``: SFT and DPO at the 0.6B shape trained twice from the same seed give bit-equal LoRA
  weights (deterministic algorithms and ``CUBLAS_WORKSPACE_CONFIG``, as ``stages.common.set_threads`` sets);
- ``bf16_merge_exact``: a DPO-sized rank-32 delta on a 4B q_proj lands exactly in a bf16 model through
  ``merge.Merger`` (while bf16(W0 + dW) would keep almost none of it);
- ``dpo_first_loss_log2``: DPO's first loss is log 2 (policy = reference at the LoRA init).

One JSON file comes out (``--out``); ``benchmarks/gpu_plan.py`` reads it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def carried() -> None:
    """A bare GPU image (torch, transformers, peft, accelerate, safetensors, PyYAML) has no pydantic, which the
    profiles' validation (``weightspace.config``) needs: take it from the bundle carried with the tree
    (``tools/gpu_bundle.py``, ``make gpu-bundle``), or say how to make one, before any compute."""
    import importlib.util

    if importlib.util.find_spec("pydantic") is not None:
        return
    site = ROOT / ".gpu-bundle" / f"cp{sys.version_info.major}{sys.version_info.minor}"
    if not site.is_dir():
        raise SystemExit(f"gpu_check: pydantic is not installed and {site} is missing: run `make gpu-bundle` where "
                         "the package registry is reachable and carry .gpu-bundle with the tree")
    sys.path.append(str(site))

COMMON = dict(vocab_size=151936, head_dim=128, rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=40960)
SHAPES = {  # config.json of Qwen/Qwen3-0.6B, -1.7B, -4B
    "qwen3-0.6b": dict(COMMON, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8),
    "qwen3-1.7b": dict(COMMON, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8),
    "qwen3-4b": dict(COMMON, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8),
}
PROFILE = {"qwen3-0.6b": "qwen3-1.7b.yaml", "qwen3-1.7b": "qwen3-1.7b.yaml", "qwen3-4b": "paper.yaml"}
DRY = dict(vocab_size=512, head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=256,
           hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
METHODS = ("sft", "dpo", "grpo")


CARD_GIB = 80.0  # an 80 GB card (H100, A100 80GB), as the estimate below is set against
CONTEXT_GIB = 1.0  # CUDA context and the allocator's reserve, not counted by the estimate's terms


def estimate_peak(shape: dict, micro: int, length: int, method: str, r: int) -> dict:
    """Estimated peak GPU memory (GiB) of one training micro-step of ``method`` at ``shape`` (bf16 weights, LoRA of
    rank ``r`` on q/k/v/o in fp32 with AdamW, gradient checkpointing per decoder layer, every sequence ``length``
    tokens), by formula, not measured: the GPU check records the measured peak beside it (``peak_memory_gib``).

    S = sequences per micro-batch (``micro``; a DPO unit is a pair: 2 ``micro``), T = ``length``, V vocabulary, H
    hidden, L layers, N parameters (tied embedding once), P LoRA parameters. Bytes:
    - weights 2N; LoRA 16P (fp32 parameter, gradient and AdamW's two moments);
    - checkpoints 2 S T H L (each decoder layer's bf16 input, kept for the recompute);
    - then the larger of: the logits 2 S T V (bf16, kept by ``token_logps`` for its backward) plus their gradient
      2 S T V, alive together at the loss's backward; or one layer recomputed, 4 S T A (its bf16 activations and
      their gradients; A = 2 q + 2 kv + 4 H + 3 I, the q/k/v, attention and o outputs, two norms, gate, up, act,
      down). They are not alive at once: the logits are freed before the layers' backward starts.
    DPO's reference forward runs first and keeps only sequence log-probs, so it adds nothing at the peak. Not
    counted: attention workspaces and the allocator's fragmentation (``CONTEXT_GIB`` holds the CUDA context)."""
    h, v, layers, inter = shape["hidden_size"], shape["vocab_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    q = shape["num_attention_heads"] * shape["head_dim"]
    kv = shape["num_key_value_heads"] * shape["head_dim"]
    n = v * h + layers * (2 * h * q + 2 * h * kv + 3 * h * inter + 2 * h + 2 * shape["head_dim"]) + h
    lora = layers * r * ((h + q) + 2 * (h + kv) + (q + h))
    seqs = micro * (2 if method == "dpo" else 1)
    gib = 2**30
    terms = {"weights": 2 * n / gib, "lora": 16 * lora / gib, "checkpoints": 2 * seqs * length * h * layers / gib,
             "logits": 4 * seqs * length * v / gib,
             "layer_recompute": 4 * seqs * length * (2 * q + 2 * kv + 4 * h + 3 * inter) / gib}
    total = terms["weights"] + terms["lora"] + terms["checkpoints"] + max(terms["logits"], terms["layer_recompute"])
    return {"sequences": seqs, "params": n, "lora_params": lora, "terms_gib": terms, "total_gib": total,
            "margin_gib": CARD_GIB - CONTEXT_GIB - total}


def peak_bf16(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of the named GPU (spec sheets); None when unknown."""
    for key, peak in (("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
                      ("A100", 312e12), ("L40S", 362e12), ("RTX 4090", 165e12), ("A10", 125e12), ("L4", 121e12)):
        if key in name:
            return peak
    return None


def table(n_groups: int, length: int, vocab: int, seed: int):
    """Rows of ``n_groups`` groups of 4 (rewards 1, 0, 1, 0: every group mixed, so DPO has a pair per group
    and GRPO nonzero advantages) and their Items: 64-token prompts, completions to ``length`` in all."""
    import torch

    from weightspace.model.sequences import Item

    g = torch.Generator().manual_seed(seed)
    rows, items = [], {}
    for i in range(4 * n_groups):
        rows.append({"row": i, "group": i // 4, "reward": (i + 1) % 2, "truncated": False})
        ids = torch.randint(0, vocab - 1, (length,), generator=g).tolist()  # vocab - 1: the pad id
        p = min(64, length // 4)
        items[i] = Item(i, tuple(ids[:p]), tuple(ids[p:]))
    return rows, items


def build(shape: dict, lora, device: str, bf16: bool, seed: int):
    """Qwen3 of ``shape`` (random weights, bf16 when ``bf16``) with the profile's LoRA in fp32, as
    ``training.load_policy`` loads a policy."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if bf16 else torch.float32)
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(Qwen3Config(**shape, attn_implementation="sdpa"))
    finally:
        torch.set_default_dtype(default)
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                     use_rslora=lora.use_rslora)
    return get_peft_model(model, cfg)


def run_method(method: str, shape: dict, params, micro: int, length: int, steps: int, device: str, seed: int = 0):
    """``steps`` timed optimiser steps (+1 warm-up) of ``method`` through ``training.train``; returns
    (measurements, LoRA state in fp32 on CPU)."""
    import torch
    from accelerate import Accelerator

    from weightspace import config
    from weightspace import registry
    from weightspace.train import training

    cuda = device == "cuda"
    batch = 2 * micro  # two micro-batches per step: gradient accumulation runs as in the profile
    cfg = config.Train(**{**params.train.model_dump(), "launcher": "python", "steps": steps + 1, "compare_step": None,
                          "batch_size": batch, "micro_batch_size": micro, "max_length": length, "warmup_ratio": 0.0,
                          "checkpoint_every": None, "packing": False, "gradient_checkpointing": True, "bf16": True})
    mcfg = params.method(method)
    n_groups = max(batch * (steps + 1), 4)  # DPO: one pair per group
    rows, items = table(n_groups, length, shape["vocab_size"], seed)
    order = list(range(len(rows)))
    units = training.select(registry.get(method), rows, order, mcfg)
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16")
    model = build(shape, params.train.lora, device, bf16=True, seed=seed)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    n_params = sum(p.numel() for p in model.parameters())
    times, losses = [], []

    def on_step(step, loss, lr):
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter())
        losses.append(loss)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        training.train(model, accelerator, method, units, items, training.LossFn(registry.get(method), mcfg, rows),
                       cfg, mcfg.lr,
                       shape["vocab_size"] - 1, on_step=on_step, reuse_reference=False)
    except torch.OutOfMemoryError:
        del model
        accelerator.free_memory()
        return {"oom": True}, None
    state = {k: v.detach().float().cpu() for k, v in model.named_parameters() if "lora_" in k}
    timed = [u for s in range(1, steps + 1) for u in units[s * batch:(s + 1) * batch]]
    seqs = [it for u in timed for it in training.unit_items(u, items)]
    tokens = sum(len(it.prompt) + len(it.completion) for it in seqs)
    ref_tokens = tokens if registry.get(method).reference else 0
    wall = times[-1] - times[0]
    out = {"oom": False, "params": n_params, "micro_batch": micro, "max_length": length, "timed_steps": steps,
           "sequences_per_step": len(seqs) // steps, "tokens_per_s": tokens / wall, "step_s": wall / steps,
           "model_flop_per_s": (4 * n_params * tokens + 2 * n_params * ref_tokens) / wall,
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
           "first_loss": losses[0], "losses": losses}
    del model
    accelerator.free_memory()
    return out, state


def merge_check(device: str, dry: bool) -> dict:
    """A DPO-sized rank-32 delta (scale 2, B ~ 2e-5 / sqrt(r)) on a bf16 Linear of Qwen3-4B's q_proj shape
    (4096 x 2560; dry: 256 x 160) through ``Merger``: the largest error of the landed delta, and the share
    of entries bf16(W0 + dW) would leave unchanged."""
    import torch

    from weightspace.model.adapters import Factor
    from weightspace.generate.merge import Merger

    g = torch.Generator().manual_seed(0)
    d_out, d_in, r = (256, 160, 32) if dry else (4096, 2560, 32)
    model = torch.nn.Sequential(torch.nn.Linear(d_in, d_out, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(d_out, d_in, generator=g) * 0.02)
    model = model.to(device, torch.bfloat16)
    A = torch.randn(r, d_in, generator=g, dtype=torch.float64) / d_in**0.5
    B = torch.randn(d_out, r, generator=g, dtype=torch.float64) * 2e-5 / r**0.5
    true = 2.0 * B @ A
    w0 = model[0].weight.detach().double().cpu()
    erased = float(((w0 + true).to(torch.bfloat16).double() - w0 == 0).double().mean())
    merger = Merger(model, ["0"])
    merger.set([(1.0, {"0": Factor(A.to(device), B.to(device), 2.0, 0, "q_proj")})])
    err = float((model[0].weight.detach().double().cpu() - w0 - true).abs().max())
    y = model(torch.randn(3, d_in, device=device, dtype=torch.bfloat16))
    return {"ok": err <= 1e-8 and bool(torch.isfinite(y).all()), "max_abs_error": err, "bf16_naive_unchanged_share": erased,
            "shape": [d_out, d_in], "rank": r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny shapes (2 layers, width 64): the code path only")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per method (default: 3 on CUDA, 1 dry)")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args(argv)
    carried()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA initialises (set_threads)
    import torch

    from weightspace import config

    cuda = torch.cuda.is_available() and not args.dry
    if not cuda and not args.dry:
        ap.error("no CUDA device: run with --dry for the CPU code-path check")
    torch.use_deterministic_algorithms(True)
    if args.dry:
        torch.set_num_threads(1)
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    peak = peak_bf16(name) if cuda else None
    steps = args.steps or (3 if cuda else 1)
    t0 = time.perf_counter()
    import peft
    import transformers

    result = {"dry": args.dry, "device": name, "peak_bf16_flop_per_s": peak, "torch": torch.__version__,
              "transformers": transformers.__version__, "peft": peft.__version__, "mfu_counts": (
                  "4N per trained token + 2N per reference token; no recompute, no attention scores"), "shapes": {}}
    result["memory_estimate"] = {"card_gib": CARD_GIB, "context_gib": CONTEXT_GIB, "shapes": {}}
    for shape_name in args.shapes:  # the real shapes at their profiles' micro-batch, whatever runs below
        params = config.load(ROOT / "profiles" / PROFILE[shape_name])
        est = {m: estimate_peak(SHAPES[shape_name], params.train.micro_batch_size, params.train.max_length, m,
                                params.train.lora.r) for m in METHODS}
        result["memory_estimate"]["shapes"][shape_name] = est
        for m, e in est.items():
            print(f"{shape_name} train@{m} ({PROFILE[shape_name]}: {params.train.micro_batch_size} x "
                  f"{params.train.max_length} tokens, {e['sequences']} sequences): estimated peak {e['total_gib']:.1f} "
                  f"GiB, margin {e['margin_gib']:.1f} GiB on an {CARD_GIB:.0f} GiB card", flush=True)
    states = {}
    for shape_name in args.shapes:
        params = config.load(ROOT / "profiles" / PROFILE[shape_name])
        shape = DRY if args.dry else SHAPES[shape_name]
        micro, length = (2, 64) if args.dry else (params.train.micro_batch_size, params.train.max_length)
        entry = {"profile": PROFILE[shape_name], "methods": {}}
        for m in METHODS:
            r, state = run_method(m, shape, params, micro, length, steps, device)
            if peak is not None and not r["oom"]:
                r["mfu"] = r["model_flop_per_s"] / peak
            entry["methods"][m] = r
            if shape_name == args.shapes[0] and m in ("sft", "dpo"):
                states[m] = (state, shape, params, micro, length)
            print(f"{shape_name} {m}: " + ("out of memory" if r["oom"] else
                  f"{r['tokens_per_s']:.0f} tok/s, step {r['step_s']:.2f} s, first loss {r['first_loss']:.6f}"
                  + (f", MFU {r['mfu']:.1%}, peak {r['peak_memory_gib']:.1f} GiB" if cuda else "")), flush=True)
        result["shapes"][shape_name] = entry
    checks = {}
    rerun = {}
    for m, (state, shape, params, micro, length) in states.items():
        if state is None:
            rerun[m] = {"equal": None, "why": "out of memory"}
            continue
        _, again = run_method(m, shape, params, micro, length, steps, device)
        rerun[m] = {"equal": again is not None and all(torch.equal(state[k], again[k]) for k in state),
                    "tensors": len(state)}
    checks["rerun_bit_equal"] = {"ok": all(v["equal"] for v in rerun.values()), "shape": args.shapes[0], **rerun}
    checks["bf16_merge_exact"] = merge_check(device, args.dry)
    firsts = {s: e["methods"]["dpo"].get("first_loss") for s, e in result["shapes"].items()}
    checks["dpo_first_loss_log2"] = {"ok": all(v is not None and abs(v - math.log(2)) <= 1e-6 for v in firsts.values()),
                                     "first_loss": firsts, "log2": math.log(2)}
    result["checks"] = checks
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for k, v in checks.items():
        print(f"{k}: {'ok' if v['ok'] else 'FAILED'}")
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0 if all(v["ok"] for v in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
