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
    for i, it in enumerate(items):
        n = len(it.prompt) + len(it.completion)
        batch[i, :n] = torch.tensor(it.prompt + it.completion)
        attn[i, :n] = 1
    return {"input_ids": batch, "attention_mask": attn, "completion_mask": completion_mask(items)}


def completion_mask(items: list[Item]) -> torch.Tensor:
    """(B, T-1), T the longest sequence: 1 where the next-token log-prob scores a completion token."""
    T = max(len(it.prompt) + len(it.completion) for it in items)
    comp = torch.zeros((len(items), T - 1))
    for i, it in enumerate(items):
        n, p = len(it.prompt) + len(it.completion), len(it.prompt)
        comp[i, p - 1 : n - 1] = 1  # logp[t] scores token t+1
    return comp


def labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """HF causal-LM labels of a collated batch: the ids on completion tokens, -100 on prompt and padding."""
    out = torch.full_like(batch["input_ids"], -100)
    out[:, 1:] = torch.where(batch["completion_mask"].bool(), batch["input_ids"][:, 1:], -100)
    return out


def pack(items: list[Item], pad_id: int, one_row: bool = False) -> dict[str, torch.Tensor]:
    """The same sequences as ``collate(items)``, packed: laid first-fit-decreasing into rows no longer than the
    longest sequence, ``position_ids`` restarting at 0 per sequence (and in a row's padded tail), no attention
    mask. transformers (>= 5) then finds each sequence's bounds from the position_ids and lets it attend only to
    itself (a block-diagonal causal mask with sdpa/eager), so each sequence's log-probs are those of the padded
    batch up to float summation order, with fewer pad slots computed. ``one_row``: every sequence in a single
    row, which flash_attention_2 needs (transformers runs it varlen from position_ids only at batch size 1; on
    several rows it would let sequences attend across their bounds).

    Returns ids and position_ids (R, C), and, in ``collate``'s padded layout (B, T-1): the completion mask,
    ``index`` (where each next-token log-prob sits in the packed (R, C-1) log-probs, flattened) and ``valid``
    (the positions inside a sequence), which ``unpack`` uses."""
    lengths = [len(it.prompt) + len(it.completion) for it in items]
    T = max(lengths)
    cap = sum(lengths) if one_row else T
    rows: list[list[int]] = []  # item indices per packed row
    room: list[int] = []
    for i in range(len(items)) if one_row else sorted(range(len(items)), key=lambda i: -lengths[i]):  # stable
        for r in range(len(rows)):
            if lengths[i] <= room[r]:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(cap - lengths[i])
    C = max(cap - r for r in room)
    ids = torch.full((len(rows), C), pad_id)
    pos = torch.zeros((len(rows), C), dtype=torch.long)
    index = torch.zeros((len(items), T - 1), dtype=torch.long)
    valid = torch.zeros((len(items), T - 1), dtype=torch.bool)
    for r, members in enumerate(rows):
        o = 0
        for i in members:
            n, it = lengths[i], items[i]
            ids[r, o : o + n] = torch.tensor(it.prompt + it.completion)
            pos[r, o : o + n] = torch.arange(n)
            index[i, : n - 1] = r * (C - 1) + o + torch.arange(n - 1)  # logp[t] scores token t+1, inside the sequence
            valid[i, : n - 1] = True
            o += n
        pos[r, o:] = torch.arange(C - o)
    return {"input_ids": ids, "position_ids": pos, "completion_mask": completion_mask(items), "index": index,
            "valid": valid}


def unpack(packed_logps: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token log-probs of a ``pack``ed batch (R, C-1) laid back into the padded layout (B, T-1) of
    ``collate``: the same value at every position inside a sequence, 0 past its end (where the padded batch
    has log-probs of pad tokens; the completion mask is 0 there in both)."""
    flat = packed_logps.reshape(-1)[batch["index"].to(packed_logps.device)]
    return torch.where(batch["valid"].to(flat.device), flat, torch.zeros((), dtype=flat.dtype, device=flat.device))


BLOCK_ELEMENTS = 2**24  # token_logps works on blocks of positions of at most this many logits (64 MiB in float32)


class _TakenLogProbs(torch.autograd.Function):
    """log p(y) = z_y - logsumexp(z) for each position's taken token y, block by block in float32;
    saves the logits (alive anyway) and the (B, T-1) logsumexp, never a (B, T, V) float32 tensor.
    Backward: d log p(y) / dz = onehot(y) - softmax(z), rebuilt per block from the saved logsumexp."""

    @staticmethod
    def forward(ctx, logits, targets):  # (B, T, V), (B, T-1) -> (B, T-1) float32
        B, T1 = targets.shape
        out = torch.empty(B, T1, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        C = ctx.block = max(1, BLOCK_ELEMENTS // logits.shape[-1])
        for b in range(B):
            for t in range(0, T1, C):
                s = slice(t, min(t + C, T1))  # position p predicts targets[:, p] = input_ids[:, p + 1]
                z = logits[b, s].float()  # (C, V)
                lse[b, s] = torch.logsumexp(z, -1)
                out[b, s] = z.gather(-1, targets[b, s, None]).squeeze(-1) - lse[b, s]
        ctx.save_for_backward(logits, targets, lse)
        return out

    @staticmethod
    def backward(ctx, g):  # g: (B, T-1)
        logits, targets, lse = ctx.saved_tensors
        grad = torch.zeros_like(logits)  # the last position predicts nothing: its gradient is 0
        B, T1 = targets.shape
        for b in range(B):
            for t in range(0, T1, ctx.block):
                s = slice(t, min(t + ctx.block, T1))
                gb = g[b, s, None].float()  # (C, 1)
                d = (logits[b, s].float() - lse[b, s, None]).exp_().mul_(-gb)  # (C, V): -g softmax(z), one block
                d.scatter_add_(-1, targets[b, s, None], gb)  # + g onehot(y)
                grad[b, s] = d.to(grad.dtype)
        return grad, None


def token_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log pi(x_{t+1} | x_<=t) = z_{t, x_{t+1}} - logsumexp_v z_{t, v} for next-token targets, in float32:
    (B, T, V) logits (any float dtype), (B, T) ids -> (B, T-1).

    Equal to ``log_softmax(logits[:, :-1].float())`` gathered at ``input_ids[:, 1:]`` up to float32 rounding,
    values and gradients, without that full-vocabulary float32 copy (20 GB for Qwen3's 151,936 tokens at
    4 x 8k): blocks of ``BLOCK_ELEMENTS // V`` positions at a time. TRL's ``selective_log_softmax`` is not used: for bf16 logits
    it runs ``log_softmax`` in bf16 (log-probs rounded to bf16), and its float32 branch would keep a
    float32 copy of bf16 logits alive for backward."""
    return _TakenLogProbs.apply(logits, input_ids[:, 1:])


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(token log-probs (B, T-1), completion mask (B, T-1)) of ``model`` on a ``collate``d batch, on the
    model's device; on a ``pack``ed batch (``train.packing``) the forward pass runs on the packed rows (position
    ids, no attention mask) and its log-probs come back in the padded layout, so every loss reads the same
    tensors either way."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    if "position_ids" in batch:
        logits = model(input_ids=ids, position_ids=batch["position_ids"].to(device), use_cache=False).logits
        return unpack(token_logps(logits, ids), batch), batch["completion_mask"].to(device)
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device), use_cache=False).logits
    return token_logps(logits, ids), batch["completion_mask"].to(device)
