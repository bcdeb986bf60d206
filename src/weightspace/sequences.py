"""Sequences: a prompt through the chat template, a completion after it, and right-padded batches.
Shared by the training loop, the tiny pretraining, the function-space analyses and generation, so a
prompt is encoded one way everywhere."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Item:
    """One sequence: prompt ids + completion ids (the completion may be empty)."""
    row: int
    prompt: tuple[int, ...]
    completion: tuple[int, ...]


def chat_text(tok, user: str) -> str:
    """The user message through the tokenizer's chat template, the assistant turn opened."""
    return tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)


def ids(tok, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (the template writes its own)."""
    return tok(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tok, user: str) -> list[int]:
    """Token ids of the user message through the chat template."""
    return ids(tok, chat_text(tok, user))


def collate(items: list[Item], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids (B, T), attention mask (B, T), completion mask aligned with next-token log-probs (B, T-1)."""
    T = max(len(it.prompt) + len(it.completion) for it in items)
    batch = torch.full((len(items), T), pad_id)
    attn = torch.zeros((len(items), T), dtype=torch.long)
    comp = torch.zeros((len(items), T - 1))
    for i, it in enumerate(items):
        n, p = len(it.prompt) + len(it.completion), len(it.prompt)
        batch[i, :n] = torch.tensor(it.prompt + it.completion)
        attn[i, :n] = 1
        comp[i, p - 1 : n - 1] = 1  # logp[t] scores token t+1
    return {"input_ids": batch, "attention_mask": attn, "completion_mask": comp}


def labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """HF causal-LM labels of a collated batch: the ids on completion tokens, -100 on prompt and padding."""
    out = torch.full_like(batch["input_ids"], -100)
    out[:, 1:] = torch.where(batch["completion_mask"].bool(), batch["input_ids"][:, 1:], -100)
    return out
