"""Throughput of our training loop at the paper profile's shapes, and the GPU-hours plan it implies.

Runs ``weightspace.training.train`` (SFT loss, AdamW, clip, schedule: the real loop) on a Qwen3-4B
built from its config with random weights (no download), LoRA r=32 alpha=64 on q,k,v,o_proj, on
synthetic items (random ids; prompt ~``--prompt-mean`` tokens, completion ~ Gamma(2, mean/2) tokens
cut at ``--max-length``). CUDA: bf16 weights, ``Accelerator(mixed_precision="bf16")``, all 36 layers.
CPU: a smoke run on a 2-layer slice (narrow by default, see ``--width``): its numbers are NOT the 4B's.

Measured in one run, each after one warm-up step: right-padding (the loop's ``collate``) with
gradient checkpointing on and off, and packing vs padding with checkpointing on. tokens/s counts
prompt + completion tokens (never padding) per second of whole optimiser steps.

Packing is the loop's own ``train.packing`` (``sequences.pack``): each micro-batch's sequences are laid
first-fit-decreasing into rows no longer than its longest sequence, ``position_ids`` restart at 0 per
sequence and no ``attention_mask`` is passed: transformers >= 5 then finds the sequence boundaries from
the position_ids and builds a block-diagonal causal mask (sdpa, eager); with flash_attention_2 the loop
packs one row, which transformers runs varlen. The log-probs come back in the padded layout, so every method's loss is unchanged
(``tests/test_packing.py``).

Usage: python benchmarks/gpu_plan.py [--steps 3] [--completion-mean 3000] [--micro 4] [--micro-nogc 1] (CPU: --steps 2)
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from weightspace import config, methods, training
from weightspace.sequences import pack
from weightspace.training import Item, LossFn

# Qwen/Qwen3-4B config.json; Qwen3-4B-Instruct-2507 has the same shapes (max_position_embeddings 262144,
# rope_theta 5e6 there: neither changes the cost of a step).
QWEN3_4B = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                rms_norm_eps=1e-6, tie_word_embeddings=True)
NARROW = dict(hidden_size=512, intermediate_size=1920, num_attention_heads=4, num_key_value_heads=1)  # CPU smoke
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
PLAN_STEPS, PLAN_BATCH, METHODS = 1500, 32, ("sft", "rft", "dft", "rift", "grpo", "dpo")
LR_MATCHED = "dpo"  # profiles/paper.yaml controls.lr_matched.method: one more run


def peak_bf16(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of the named GPU (spec sheet); None when unknown."""
    if "H100" in name:
        return 756e12 if "PCIe" in name else 835e12 if "NVL" in name else 989e12
    return 989e12 if "H200" in name else None


def synthetic_items(n: int, prompt_mean: int, completion_mean: int, max_length: int, vocab: int,
                    seed: int) -> dict[int, Item]:
    """``n`` Items of random ids in [0, vocab-1) (vocab-1 is the pad id): prompt ~ N(mean, mean/5),
    completion ~ Gamma(2, mean/2) (right-skewed like chain-of-thought lengths), cut at ``max_length``."""
    rng = np.random.default_rng(seed)
    items = {}
    for i in range(n):
        p = int(np.clip(rng.normal(prompt_mean, prompt_mean / 5), 4, max_length // 2))
        c = int(np.clip(rng.gamma(2.0, completion_mean / 2), 4, max_length - p))
        ids = rng.integers(0, vocab - 1, p + c).tolist()
        items[i] = Item(i, tuple(ids[:p]), tuple(ids[p:]))
    return items


def pad_waste(chunks: list[list[Item]], pad_id: int, packed: bool) -> float:
    """Fraction of the token slots fed to the model that are padding."""
    real = slots = 0
    for ch in chunks:
        real += sum(len(it.prompt) + len(it.completion) for it in ch)
        slots += pack(ch, pad_id)["input_ids"].numel() if packed else len(ch) * max(
            len(it.prompt) + len(it.completion) for it in ch)
    return 1 - real / slots


def build(args, device: str, shape: dict | None = None):
    """The (sliced) Qwen3-4B with LoRA on ``device``: bf16 base on CUDA, fp32 elsewhere; LoRA fp32."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    shape = shape or dict(QWEN3_4B, num_hidden_layers=args.layers, vocab_size=args.vocab,
                          **(NARROW if args.width == "narrow" else {}))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the training dtype: no fp32 copy of 4B weights
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(Qwen3Config(**shape, attn_implementation=args.attn))
    finally:
        torch.set_default_dtype(default)
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules=list(TARGETS))
    return get_peft_model(model, lora)  # LoRA weights in fp32 (peft's autocast_adapter_dtype)


def measure(args, accelerator, items, rows, micro: int, gc: bool, packed: bool, cuda: bool) -> dict | None:
    """tokens/s of ``args.steps`` optimiser steps after one warm-up step; None on CUDA out-of-memory."""
    B, steps = args.batch, args.steps + 1
    cfg = config.Train(launcher="python", seed=0, steps=steps, compare_step=None, batch_size=B, micro_batch_size=micro,
                       warmup_ratio=0.05, weight_decay=0.01, grad_clip=1.0, max_length=args.max_length, bf16=cuda,
                       gradient_checkpointing=gc, checkpoint_every=None, packing=packed,
                       lora=config.Lora(r=32, alpha=64.0, dropout=0.0, target_modules=TARGETS, use_rslora=False))
    model = build(args, "cuda" if cuda else "cpu")
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    times = []

    def on_step(step, loss, lr):
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    units = list(range(B * steps))
    try:
        training.train(model, accelerator, "sft", units, items, LossFn("sft", methods.SFT(lr=1e-5), rows), cfg, 1e-5,
                       args.vocab - 1, on_step=on_step)
    except torch.OutOfMemoryError:
        return None
    finally:
        del model
        accelerator.free_memory()
    timed = [items[u] for u in units[B:]]
    chunks = [timed[i : i + micro] for i in range(0, len(timed), micro)]
    tokens = sum(len(it.prompt) + len(it.completion) for it in timed)
    return {"tok_s": tokens / (times[-1] - times[0]), "waste": pad_waste(chunks, args.vocab - 1, packed),
            "mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")}


def n_params(args, shape: dict | None = None) -> int:
    """Parameters (tied embedding counted once) + LoRA, counted on the meta device."""
    return sum(p.numel() for p in build(args, "meta", shape).parameters())


def report_run(name: str, r: dict | None, micro: int, N: int, peak: float | None) -> None:
    if r is None:
        print(f"  {name:<26} micro {micro}: CUDA out of memory")
        return
    mfu = "n/a" if peak is None else f"{6 * N * r['tok_s'] / peak:5.1%} (6N) / {4 * N * r['tok_s'] / peak:5.1%} (4N)"
    mem = "" if math.isnan(r["mem_gib"]) else f", peak mem {r['mem_gib']:.1f} GiB"
    print(f"  {name:<26} micro {micro}: {r['tok_s']:9.1f} tok/s, pad waste {r['waste']:5.1%}{mem}, MFU {mfu}")


def vs(label: str, a: str, ra: dict | None, b: str, rb: dict | None) -> None:
    if ra is None or rb is None:
        print(f"{label}: {a} vs {b}: not compared (a run ran out of memory)")
        return
    print(f"{label}: {a} {ra['tok_s']:.1f} tok/s vs {b} {rb['tok_s']:.1f} tok/s, ratio {ra['tok_s'] / rb['tok_s']:.2f}x"
          f" (pad waste {ra['waste']:.1%} vs {rb['waste']:.1%})")


def unit_cost(method: str, gc: bool) -> float:
    """Forward-backward cost of one unit of ``method`` in sequences of an SFT row (the registry): 2 for a
    pair or an unpaired row with its mismatched sequence, times (1 + ref) when it reads the reference."""
    entry = methods.REGISTRY[method]
    seqs = 2 if entry.rows in ("pairs", "unpaired") else 1
    return seqs * (1 + ((1 / 3 if gc else 1 / 2) if entry.reference else 0))


def plan(tok_s: dict[str, tuple[float, bool]], mean_len: float) -> None:
    """Hours of the paper profile per (tokens/s, gc) run: 13 trainings (6 methods, 6 seed twins, LR-matched
    DPO), 25 with the LR sweep [0.1, 10]. DPO's unit is a pair (2 sequences) plus a no-grad reference
    forward: 2N against a LoRA policy step of 4N (6N with gc's recompute)."""
    print(f"hours/run = {PLAN_STEPS} steps x {PLAN_BATCH} seqs x {mean_len:.0f} tokens (mean prompt+completion) "
          "x c / (tok/s) / 3600; c = 1, c_dpo = 2 x (1 + ref) with ref = 1/3 (gc on) or 1/2 (gc off): "
          "estimated, not measured")
    runs = {"13 trainings": {m: 2 + (m == LR_MATCHED) for m in METHODS},
            "+ LR sweep [0.1, 10] = 25": {m: 4 + (m == LR_MATCHED) for m in METHODS}}
    for name, (r, gc) in tok_s.items():
        cost = {m: unit_cost(m, gc) for m in METHODS}
        h = {m: PLAN_STEPS * PLAN_BATCH * mean_len * cost[m] / r / 3600 for m in METHODS}
        per = ", ".join(f"{m} {h[m]:.1f}" for m in METHODS)
        tot = "; ".join(f"{k}: {sum(n[m] * h[m] for m in METHODS):.0f} h" for k, n in runs.items())
        print(f"  {name} ({r:.0f} tok/s): per run {per}; {tot}")


def main() -> None:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3, help="timed optimiser steps per run (after 1 warm-up step)")
    ap.add_argument("--batch", type=int, default=32 if cuda else 8, help="effective batch (sequences)")
    ap.add_argument("--micro", type=int, default=4, help="micro-batch, gc on (profile: 4)")
    ap.add_argument("--micro-nogc", type=int, default=1 if cuda else 4, help="micro-batch, gc off")
    ap.add_argument("--prompt-mean", type=int, default=150 if cuda else 16)
    ap.add_argument("--completion-mean", type=int, default=3000 if cuda else 32)
    ap.add_argument("--max-length", type=int, default=8192 if cuda else 256)
    ap.add_argument("--layers", type=int, default=36 if cuda else 2)
    ap.add_argument("--vocab", type=int, default=151936 if cuda else 4096)
    ap.add_argument("--width", choices=["4b", "narrow"], default="4b" if cuda else "narrow")
    ap.add_argument("--attn", default="sdpa", help="sdpa | eager | flash_attention_2 (needs flash-attn)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (2 oversubscribe a shared 2-core box)")
    ap.add_argument("--assume-mfu", type=float, default=0.35, help="off-GPU only: the assumed 4N-MFU of the plan")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")
    name = torch.cuda.get_device_name() if cuda else "CPU"
    peak = peak_bf16(name) if cuda else None
    N = n_params(args)
    items = synthetic_items(args.batch * (args.steps + 1), args.prompt_mean, args.completion_mean, args.max_length,
                            args.vocab, seed=0)
    rows = [{"row": i, "reward": 1, "group": i // 4} for i in range(len(items))]
    mean_len = float(np.mean([len(it.prompt) + len(it.completion) for it in items.values()]))
    full = args.layers == 36 and args.width == "4b" and args.vocab == 151936
    print(f"device {name}; {'bf16 weights + bf16 autocast' if cuda else 'fp32'}; attn {args.attn}; "
          f"model {'Qwen3-4B' if full else 'SLICE of Qwen3-4B'}: {args.layers} layers, width {args.width}, "
          f"vocab {args.vocab}, N = {N / 1e6:.1f}M params (incl. LoRA r=32 on {','.join(TARGETS)})")
    if not full:
        print("  NOT the 4B model: tok/s, MFU and hours below are for this slice on this device, not a GPU plan")
    print(f"items: prompt ~{args.prompt_mean}, completion ~Gamma(2) mean {args.completion_mean}, "
          f"max {args.max_length}; "
          f"mean prompt+completion {mean_len:.0f} tokens; effective batch {args.batch}, {args.steps} timed steps")
    peak_s = "n/a: CPU or unknown GPU" if peak is None else f"{peak / 1e12:.0f} TFLOP/s bf16 dense"
    print(f"MFU = achieved FLOP/s / peak ({peak_s}):"
          " 6N = the usual fwd+bwd approximation; 4N = what LoRA needs (frozen base: no weight gradients),"
          " the one to read; neither counts gc recompute nor attention scores")
    runs = {"padded, gc on": (args.micro, True, False), "packed, gc on": (args.micro, True, True),
            "padded, gc off": (args.micro_nogc, False, False)}
    if args.micro_nogc != args.micro:
        runs[f"padded, gc on, micro {args.micro_nogc}"] = (args.micro_nogc, True, False)
    res = {}
    for k, (micro, gc, packed) in runs.items():
        res[k] = measure(args, accelerator, items, rows, micro, gc, packed, cuda)
        report_run(k, res[k], micro, N, peak)
    gc_on = f"padded, gc on, micro {args.micro_nogc}" if args.micro_nogc != args.micro else "padded, gc on"
    vs(f"gradient checkpointing (micro {args.micro_nogc})", "off", res["padded, gc off"], "on", res[gc_on])
    vs(f"packing (gc on, micro {args.micro})", "packed", res["packed, gc on"], "right-padded", res["padded, gc on"])
    plan({k: (r["tok_s"], runs[k][1]) for k, r in res.items() if r is not None}, mean_len)
    if not full:  # no GPU measured: what the 4B would take at an ASSUMED utilisation
        N4 = n_params(args, QWEN3_4B)
        L = 150 + 3000
        h = PLAN_STEPS * PLAN_BATCH * L * 4 * N4 / (args.assume_mfu * 989e12) / 3600
        print(f"ASSUMED, not measured: Qwen3-4B (N = {N4 / 1e9:.2f}B), {L} tokens/seq, 4N-MFU {args.assume_mfu:.0%} "
              f"of 989 TFLOP/s: {h:.1f} h per non-DPO run, about {h * (10 + 3 * 2.67):.0f} h for 13 trainings, "
              f"{h * (20 + 5 * 2.67):.0f} h for 25 (c_dpo 2.67)")


if __name__ == "__main__":
    main()
