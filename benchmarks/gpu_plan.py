"""Throughput of our training loop at the paper profile's shapes, and the GPU-hours plan it implies.

Runs ``weightspace.train.training.train`` (SFT loss, AdamW, clip, schedule: the real loop) on a Qwen3-4B
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

``--plan`` measures nothing: it prints GPU-hours per stage group for every GPU profile, from the GPU check's
JSON (``tools/gpu_check.py``, ``--check``, default ``benchmarks/gpu_check.json``) where it holds a GPU
measurement of the profile's shape, else from an assumed utilisation; each figure says which
(``profile_plan``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from weightspace import config
from weightspace import registry
from weightspace.train import training
from weightspace.model.sequences import pack
from weightspace.train.training import Item, LossFn
from weightspace.core.units import sequences

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
        training.train(model, accelerator, "sft", units, items, LossFn(registry.get("sft"), registry.get("sft").params(lr=1e-5), rows), cfg, 1e-5,
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
    entry = registry.REGISTRY[method]
    seqs = len(sequences(entry.rows))
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


# ---- the per-profile plan (--plan) -------------------------------------------------------------------------

GPU_PROFILES = ("paper.yaml", "qwen3-1.7b.yaml", "llama3.2-3b.yaml")
SHAPE_OF = {"Qwen/Qwen3-4B-Instruct-2507": "qwen3-4b", "Qwen/Qwen3-1.7B": "qwen3-1.7b", "Qwen/Qwen3-0.6B": "qwen3-0.6b",
            "meta-llama/Llama-3.2-3B-Instruct": "llama3.2-3b"}
PARAMS = {"qwen3-0.6b": 0.596e9, "qwen3-1.7b": 1.721e9, "qwen3-4b": 4.022e9, "llama3.2-3b": 3.213e9}  # tied, from configs
PROMPT_TOKENS = 150            # ASSUMED: a DeepScaleR / GSM8K prompt in the chat template
COMPLETION_MEAN = {"paper.yaml": 3000, "qwen3-1.7b.yaml": 1500, "llama3.2-3b.yaml": 3000}  # ASSUMED teacher answer tokens
ANSWER_MEAN = {"gsm8k": 400, "aime26": 4000}  # ASSUMED greedy answer tokens of a non-thinking student
ASSUMED_MFU, ASSUMED_PEAK = 0.35, 989e12   # H100/H200 dense bf16; 4N-MFU of the training loop
ASSUMED_DECODE_TOK_S = {"qwen3-0.6b": 20000.0, "qwen3-1.7b": 12000.0, "qwen3-4b": 6000.0, "llama3.2-3b": 7000.0}  # ASSUMED, per GPU


def lengths(profile: str, max_length: int, n: int, table: Path | None) -> tuple[np.ndarray, str]:
    """Sequence lengths (prompt + completion, cut at ``max_length``): the table's ``n_tokens`` (teacher tokens)
    when given, else Gamma(2) completions of the profile's assumed mean."""
    if table is not None:
        import json

        comp = np.array([json.loads(line)["n_tokens"] for line in table.read_text().splitlines() if line.strip()])
        src = f"measured on {table.name} (teacher tokens)"
    else:
        comp = np.random.default_rng(0).gamma(2.0, COMPLETION_MEAN[profile] / 2, n)
        src = "assumed"
    return np.minimum(PROMPT_TOKENS + comp, max_length), src


def padded(lens: np.ndarray, micro: int) -> float:
    """Token slots per sequence once micro-batches of ``micro`` sequences in table order are right-padded."""
    rng = np.random.default_rng(1)
    x = rng.permutation(lens)
    chunks = [x[i : i + micro] for i in range(0, len(x) - micro + 1, micro)]
    return float(np.mean([c.max() for c in chunks]))


def throughput(check: dict | None, shape: str, method: str) -> tuple[float, str]:
    """Tokens/s of ``method``'s training at ``shape`` on one GPU: the GPU check's measurement where it ran this
    shape on a GPU, else ASSUMED_MFU of ASSUMED_PEAK at 4N per token (DPO: + 2N for the reference forward)."""
    if check and not check.get("dry"):
        r = check.get("shapes", {}).get(shape, {}).get("methods", {}).get("dpo" if method == "dpo" else
                                                                          "grpo" if method == "grpo" else "sft")
        if r and not r.get("oom"):
            return r["tokens_per_s"], f"measured on {check['device']} at max_length"
    flops = (6 if registry.REGISTRY[method].reference else 4) * PARAMS[shape]
    return ASSUMED_MFU * ASSUMED_PEAK / flops, "assumed"


def profile_plan(path: Path, check: dict | None, table: Path | None = None) -> dict:
    """GPU-hours per stage group of one profile (all its GPUs together):

    - train: every method and its seed twin, the LR-matched control, the LR sweep (``controls``): steps x
      batch x units' sequences x padded tokens per sequence / tokens/s;
    - evaluate: greedy answers of every trained model and the base on every set, plus avg@k, at an ASSUMED
      vLLM decode rate;
    - connectivity + CKA: forward passes (2N per token) at the assumed utilisation;
    - online GRPO (when in ``methods``): its steps' completions generated at the decode rate and trained.
    The rollouts come from the teacher API: no GPU."""
    p = config.load(path)
    shape = SHAPE_OF[p.base.hub.model_id]
    N = PARAMS[shape]
    t = p.train
    lens, len_src = lengths(path.name, t.max_length, 20000, table)
    slots = padded(lens, t.micro_batch_size)
    out = {"profile": p.profile, "shape": shape, "gpus": int(t.launcher.split("--num_processes")[-1].split()[0])
           if "--num_processes" in t.launcher else 1, "mean_tokens": float(lens.mean()), "padded_tokens": slots,
           "lengths": len_src, "groups": {}}
    train_h, srcs = 0.0, set()
    offline = [m for m in p.methods if not registry.REGISTRY[m].online]
    runs = {m: 2 for m in offline}
    runs[p.controls.lr_matched.method] = runs.get(p.controls.lr_matched.method, 0) + 1
    sweep = {m: sum(1 for lr in p.controls.lr_sweep if lr != p.method(m).lr) for m in offline}
    sweep_h = 0.0
    for m in offline:
        tok_s, src = throughput(check, shape, m)
        srcs.add(src)
        seqs = len(sequences(registry.REGISTRY[m].rows))
        h = t.steps * t.batch_size * seqs * slots / tok_s / 3600
        train_h += runs.get(m, 0) * h
        sweep_h += sweep[m] * h
    src = " + ".join(sorted(srcs))
    out["groups"]["train (methods, seed twins, LR-matched)"] = (train_h, f"{src}; lengths {len_src}")
    if sweep_h:
        out["groups"]["LR sweep"] = (sweep_h, f"{src}; lengths {len_src}")
    models = 2 * len(offline) + 2 + sum(sweep.values())  # twins, base, LR-matched, the sweep's runs
    gen_tokens = sum(models * (s.n or {"gsm8k": 1319, "aime26": 30}.get(name, 500)) * ANSWER_MEAN.get(name, 400)
                     for name, s in p.prepare.eval.items())
    if p.evaluate.avg_k is not None:
        gen_tokens += sum(models * p.evaluate.avg_k.k * 30 * ANSWER_MEAN.get(name, 400) for name in p.evaluate.avg_k.sets)
    out["groups"]["evaluate"] = (gen_tokens / ASSUMED_DECODE_TOK_S[shape] / 3600, "assumed decode rate and answer lengths")
    fwd = len(p.connectivity.pairs) * p.connectivity.points * p.connectivity.n * (PROMPT_TOKENS + 20)
    fwd += (len(offline) + 1) * p.cka.n * (PROMPT_TOKENS + ANSWER_MEAN.get(p.cka.set, 400))
    out["groups"]["connectivity + CKA"] = (fwd * 2 * N / (ASSUMED_MFU * ASSUMED_PEAK) / 3600, "assumed")
    g = p.grpo_online
    online = g.steps * g.batch_size * (COMPLETION_MEAN[path.name] / ASSUMED_DECODE_TOK_S[shape]
                                       + (PROMPT_TOKENS + COMPLETION_MEAN[path.name]) * 4 * N / (ASSUMED_MFU * ASSUMED_PEAK))
    out["groups"]["online GRPO (opt-in)"] = (online / 3600, "assumed")
    return out


def print_plans(check_path: Path, table: Path | None) -> None:
    """One markdown table: GPU-hours per stage group and profile, each marked (m) measured by the GPU check
    or (a) assumed; the assumptions below it."""
    import json

    check = json.loads(check_path.read_text()) if check_path.is_file() else None
    used = check if check and not check.get("dry") else None
    print(f"GPU check: {check_path.name + ' (' + check['device'] + ')' if used else 'none on a GPU'}; "
          "(m) = throughput measured by tools/gpu_check.py, (a) = assumed")
    cols = ["train (methods, seed twins, LR-matched)", "LR sweep", "evaluate", "connectivity + CKA", "online GRPO (opt-in)"]
    print("| profile | GPUs | train | LR sweep | evaluate | connectivity + CKA | default graph | online GRPO (opt-in) |")
    print("|---|---|---|---|---|---|---|---|")
    here = Path(__file__).resolve().parents[1] / "profiles"
    notes = []
    for name in GPU_PROFILES:
        r = profile_plan(here / name, used, table)
        gr = r["groups"]
        cell = {k: (f"{gr[k][0]:.1f} ({'m' if gr[k][1].startswith('measured') else 'a'})" if k in gr else "off")
                for k in cols}
        total = sum(gr[k][0] for k in cols[:4] if k in gr)
        print(f"| {r['profile']} ({r['shape']}) | {r['gpus']} | {cell[cols[0]]} | {cell[cols[1]]} | {cell[cols[2]]} | "
              f"{cell[cols[3]]} | {total:.0f} | {cell[cols[4]]} |")
        notes.append(f"{r['profile']}: mean sequence {r['mean_tokens']:.0f} tokens ({r['lengths']}), "
                     f"{r['padded_tokens']:.0f} token slots after right-padding micro-batches")
    print("GPU-hours of all of a profile's GPUs together. Assumed: training at "
          f"{ASSUMED_MFU:.0%} 4N-MFU of {ASSUMED_PEAK / 1e12:.0f} TFLOP/s (DPO 6N: its reference forward), prompts of "
          f"{PROMPT_TOKENS} tokens, completions Gamma(2) of mean {COMPLETION_MEAN}, vLLM decode tokens/s per GPU "
          f"{ASSUMED_DECODE_TOK_S}, greedy answers of {ANSWER_MEAN} tokens. " + "; ".join(notes) + ".")


def main() -> None:
    import sys

    if "--plan" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--plan", action="store_true")
        ap.add_argument("--check", type=Path, default=Path(__file__).resolve().parent / "gpu_check.json")
        ap.add_argument("--table", type=Path, default=None, help="a rollouts.jsonl whose n_tokens give the lengths")
        a = ap.parse_args()
        print_plans(a.check, a.table)
        return
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
