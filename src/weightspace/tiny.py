"""The tiny default's base model: a byte-level BPE tokenizer and a small Qwen3 trained from scratch.

Same architecture and module names as Qwen3-4B (q_proj, k_proj, v_proj, o_proj in every layer), only
smaller, so every later stage runs the code path of the paper profile.
"""

from __future__ import annotations

import logging
import math

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

log = logging.getLogger(__name__)

# Qwen-style chat markup; the tokenizer's EOS is the end-of-turn marker, as in Qwen3-Instruct.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE on ``texts`` with Qwen's special tokens and chat template; pads on the left."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", padding_side="left",
                                   chat_template=CHAT_TEMPLATE)


def build_model(vocab_size: int, hidden_size: int, layers: int, heads: int, kv_heads: int,
                head_dim: int, intermediate_size: int, max_positions: int, seed: int,
                eos_token_id: int, pad_token_id: int) -> Qwen3ForCausalLM:
    """A freshly initialised Qwen3ForCausalLM of the given shape (float32, tied embeddings)."""
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         intermediate_size=intermediate_size, max_position_embeddings=max_positions,
                         tie_word_embeddings=True, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                         bos_token_id=None, dtype="float32")
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def encode_examples(tok, prompts: list[str], answers: list[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids through the chat template, answer ids + end-of-turn) per example."""
    out = []
    for p, a in zip(prompts, answers):
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        out.append((tok(text, add_special_tokens=False)["input_ids"],
                    tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]))
    return out


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on prompt and padding, so the loss covers answers only."""
    T = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), T), pad_id)
    labels = torch.full((len(pairs), T), -100)
    mask = torch.zeros((len(pairs), T), dtype=torch.long)
    for i, (p, a) in enumerate(pairs):
        n = len(p) + len(a)
        ids[i, :n] = torch.tensor(p + a)
        labels[i, len(p) : n] = torch.tensor(a)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


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
        loss = model(**collate([examples[i] for i in idx], pad_id)).loss
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
