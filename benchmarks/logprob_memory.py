"""Peak memory of one DPO micro-batch at Qwen3's vocabulary: ``sequences.token_logps`` against the
full-vocabulary float32 log_softmax it replaces (kept here as the baseline).

One micro-batch = one (chosen, rejected) pair of ``--length`` tokens through a random Qwen3 with
Qwen3's 151,936-token vocabulary but a small body (hidden 64, 2 layers, tied embeddings: the logits
dominate), LoRA r=8 on q,k,v,o: the reference pass (adapter off, no grad), the policy pass, the DPO loss
and backward, as ``training.train`` runs them, on CPU in float32 (``--bf16``: under bf16 autocast, where
the baseline also makes a float32 copy of the bf16 logits). Each path runs in a fresh subprocess; its
figure is the process's peak RSS (``ru_maxrss``) minus its RSS just before the micro-batch (imports, model
and batch already built), so only what the micro-batch allocates counts. Both paths compute the same loss
(printed): ``tests/test_losses.py`` checks values and gradients.

Usage: python benchmarks/logprob_memory.py [--length 512] [--bf16]

Measured (2-core CPU, 2 x 512 tokens): fp32 1802 vs 1337 MiB (1.35x; the logits and
their gradient, 594 MiB each, remain); bf16 autocast 1820 vs 865 MiB (2.10x).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys

import torch

VOCAB = 151936  # Qwen3's vocabulary (Qwen/Qwen3-4B config.json)


def full_vocab_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The baseline: a full (B, T-1, V) float32 log_softmax, then the taken tokens gathered."""
    return torch.gather(logits[:, :-1].float().log_softmax(-1), 2, input_ids[:, 1:, None]).squeeze(-1)


def rss_kib() -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))


def one_path(path: str, length: int, bf16: bool) -> dict:
    """Peak KiB of one DPO micro-batch with ``path`` ("new": ``token_logps``; "old": the baseline)."""
    from peft import LoraConfig, get_peft_model

    from weightspace.model import sequences as S
    from weightspace.registry.dpo import dpo_loss
    from weightspace.tiny import model as tiny
    from weightspace.train.training import Item, collate, reference_logps, sequence_logps

    if path == "old":
        S.token_logps = full_vocab_logps
    torch.set_num_threads(2)
    base = tiny.build_model(VOCAB, 64, 2, 2, 1, 32, 128, length, 0, 1, 0)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(2, VOCAB, (length,), generator=g).tolist() for _ in range(2)]
    batch = collate([Item(i, tuple(s[:16]), tuple(s[16:])) for i, s in enumerate(seqs)], 0)  # chosen, rejected
    model.train()
    before = rss_kib()
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        ref = reference_logps(model, batch)
        logp, mask = sequence_logps(model, batch)
    pol = (logp * mask).sum(-1)
    loss = dpo_loss(pol[:1], pol[1:], ref[:1], ref[1:], beta=0.1).sum()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"path": path, "peak_kib": peak - before, "loss": loss.item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=512, help="tokens per sequence")
    ap.add_argument("--bf16", action="store_true", help="under bf16 autocast")
    ap.add_argument("--path", choices=["old", "new"], help=argparse.SUPPRESS)  # one subprocess's path
    args = ap.parse_args()
    if args.path:
        print(json.dumps(one_path(args.path, args.length, args.bf16)))
        return
    out = {}
    for path in ("old", "new"):
        cmd = [sys.executable, __file__, "--path", path, "--length", str(args.length)] + (["--bf16"] if args.bf16 else [])
        out[path] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    logits_mib = 2 * args.length * VOCAB * (2 if args.bf16 else 4) / 2**20
    print(f"DPO micro-batch: 2 x {args.length} tokens, vocabulary {VOCAB}, {'bf16 autocast' if args.bf16 else 'fp32'}; "
          f"one (B, T, V) logits tensor = {logits_mib:.0f} MiB")
    for path, name in (("old", "full-vocabulary log_softmax"), ("new", "token_logps")):
        print(f"  {name:28s} peak {out[path]['peak_kib'] / 1024:8.0f} MiB   loss {out[path]['loss']:.6f}")
    print(f"ratio old / new: {out['old']['peak_kib'] / out['new']['peak_kib']:.2f}x")


if __name__ == "__main__":
    main()
