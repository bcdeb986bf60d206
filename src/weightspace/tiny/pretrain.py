"""Pretraining the tiny default's student and teacher (``model.tiny`` builds them): full-parameter next-token
training on worked solutions, with the held-out greedy accuracy that gates the student."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from .. import config
from ..model.sequences import Item, collate, ids, labels, prompt_ids
from .model import build_model, train_tokenizer

log = logging.getLogger(__name__)


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def encode_examples(tok, prompts: list[str], answers: list[str]) -> list[Item]:
    """Per example: the prompt through the chat template, the answer + end-of-turn as its completion."""
    return [Item(i, tuple(prompt_ids(tok, p)), tuple(ids(tok, a) + [tok.eos_token_id]))
            for i, (p, a) in enumerate(zip(prompts, answers))]


def pretrain(model, examples, steps: int, batch_size: int, lr: float, seed: int, pad_id: int,
             evaluate=None, eval_every: int = 0) -> list[dict]:
    """Full-parameter next-token training on worked solutions (AdamW, 5% warmup + cosine, clip 1.0).

    Batches are drawn with replacement from a generator seeded by ``seed``. Every ``eval_every``
    steps ``evaluate()`` returns greedy accuracy, for the curve only: the run always takes ``steps``
    steps and ends with the schedule at 0. (An early stop at an accuracy threshold made the model
    depend on where a last-bit difference put the threshold crossing: another CPU stopped 50 steps
    later and gave another student.) Returns the curve: one dict per evaluation.
    """
    from tqdm import tqdm

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(seed)
    curve, warmup = [], max(1, steps // 20)
    model.train()
    bar = tqdm(range(steps), desc="pretrain", leave=False)
    for step in bar:
        idx = torch.randint(0, len(examples), (batch_size,), generator=g).tolist()
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, warmup, lr)
        batch = collate([examples[i] for i in idx], pad_id)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels(batch)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if evaluate is not None and eval_every and (step + 1) % eval_every == 0:
            acc = evaluate()
            model.train()
            curve.append({"step": step + 1, "loss": loss.item(), "acc": acc})
            log.info("pretrain step %d: loss %.4f, greedy acc %.3f", step + 1, loss.item(), acc)
    model.eval()
    return curve


def greedy_accuracy(engine, prompt: config.Prompt, rows: list[dict]) -> float:
    """Share of ``rows`` whose greedy completion the reward grades correct."""
    from ..data import grading

    outs = engine.generate([prompt.render(r["question"]) for r in rows], n=1, desc="eval")
    return sum(grading.is_correct(o[0].text, r["answer"]) for o, r in zip(outs, rows)) / len(rows)


def greedy_engine(model, tok, max_new_tokens: int, n: int, seed: int):
    """The hf engine decoding greedily, all ``n`` held-out prompts in one batch."""
    from ..generate.generation import HFEngine

    gen = config.Generation(engine="hf", temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens,
                            batch_size=n, seed=seed, max_model_len=None, gpu_memory_utilization=None,
                            openai=None)
    return HFEngine(model, tok, gen)


def build_tiny(cfg: config.TinyModel, prompt: config.Prompt, max_new_tokens: int, data: Path, out: Path) -> dict:
    """The tiny student: a BPE tokenizer trained on the pretraining corpus (``<data>/pretrain.jsonl``), a
    small Qwen3 from the config, pretrained ``cfg.steps`` steps on the worked solutions, written to ``out``.
    Fails when its greedy accuracy on the first ``eval_n`` rollout prompts ends outside [min_acc, max_acc]."""
    from ..data.datasets import read_jsonl

    corpus = read_jsonl(data / "pretrain.jsonl")
    heldout = read_jsonl(data / "train.jsonl")[: cfg.eval_n]
    t0 = time.time()
    tok = train_tokenizer([prompt.render(r["question"]) + " " + r["solution"] for r in corpus], cfg.vocab_size)
    model = build_model(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim,
                        cfg.intermediate_size, cfg.max_positions, cfg.seed, tok.eos_token_id, tok.pad_token_id)
    examples = encode_examples(tok, [prompt.render(r["question"]) for r in corpus], [r["solution"] for r in corpus])
    engine = greedy_engine(model, tok, max_new_tokens, len(heldout), cfg.seed)
    curve = pretrain(model, examples, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, tok.pad_token_id,
                     evaluate=lambda: greedy_accuracy(engine, prompt, heldout), eval_every=cfg.eval_every)
    acc = curve[-1]["acc"] if curve and curve[-1]["step"] == cfg.steps else greedy_accuracy(engine, prompt, heldout)
    if not cfg.min_acc <= acc <= cfg.max_acc:
        raise RuntimeError(f"base: held-out greedy accuracy {acc:.3f} outside [base.tiny.min_acc, max_acc] = "
                           f"[{cfg.min_acc}, {cfg.max_acc}]; change base.tiny.steps / lr")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"kind": "tiny", "params": sum(p.numel() for p in model.parameters()), "vocab_size": len(tok),
            "layers": cfg.layers, "heldout_acc": acc, "heldout_n": len(heldout), "steps": cfg.steps, "curve": curve,
            "wall_s": round(time.time() - t0, 1)}


def build_tiny_teacher(cfg: config.TinyTeacher, base_cfg: config.TinyModel, prompt: config.Prompt,
                       max_new_tokens: int, data: Path, base: Path, out: Path) -> dict:
    """The tiny teacher: the base pretrained ``cfg.steps`` more steps (its own warmup + cosine schedule
    and batch draws) on the same problems, their solutions written in its ``style``, written to ``out``."""
    from ..data import problems
    from ..data.datasets import read_jsonl
    from ..model.models import load_base

    t0 = time.time()
    model, tok = load_base(base)
    corpus = read_jsonl(data / "pretrain.jsonl")
    heldout = read_jsonl(data / "train.jsonl")[: base_cfg.eval_n]  # the base's held-out prompts
    engine = greedy_engine(model, tok, max_new_tokens, len(heldout), cfg.seed)
    examples = encode_examples(tok, [prompt.render(r["question"]) for r in corpus],
                               [problems.restyle(r["solution"], cfg.style) for r in corpus])
    curve = [{"step": 0, "loss": None, "acc": greedy_accuracy(engine, prompt, heldout)}]
    if cfg.steps:
        curve += pretrain(model, examples, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, tok.pad_token_id,
                          evaluate=lambda: greedy_accuracy(engine, prompt, heldout), eval_every=cfg.eval_every)
        if curve[-1]["step"] != cfg.steps:
            curve.append({"step": cfg.steps, "loss": None, "acc": greedy_accuracy(engine, prompt, heldout)})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"kind": "tiny", "steps": cfg.steps, "heldout_acc": curve[-1]["acc"], "base_heldout_acc": curve[0]["acc"],
            "heldout_n": len(heldout), "curve": curve, "wall_s": round(time.time() - t0, 1)}
