"""What the adapted models do: masked-answer cross-entropy and pooled hidden states, on a base model whose
weights ``merge.Merger`` sets to W(alpha) = W0 + alpha dW_a + (1 - alpha) dW_b exactly, in Delta W space
(interpolating A and B separately would add cross terms and fake a barrier).
"""

from __future__ import annotations

import torch

from ..model.sequences import Item, collate, ids, prompt_ids, sequence_logps


def answer_items(tok, prompts: list[str], answers: list[str]) -> list[Item]:
    """Prompt through the chat template, then the gold continuation ``\\boxed{answer}`` right after it."""
    items = []
    for i, (p, a) in enumerate(zip(prompts, answers)):
        items.append(Item(i, tuple(prompt_ids(tok, p)), tuple(ids(tok, f"\\boxed{{{a}}}"))))
    return items


@torch.no_grad()
def answer_ce(model, items: list[Item], pad_id: int, batch: int) -> float:
    """Masked-answer cross-entropy: mean over all answer tokens of -log p(token | prompt, earlier answer tokens)."""

    total, count = 0.0, 0.0
    for i in range(0, len(items), batch):
        lp, mask = sequence_logps(model, collate(items[i : i + batch], pad_id))
        total += -(lp * mask).sum().item()
        count += mask.sum().item()
    return total / count


def block_outputs(model, input_ids, attention_mask) -> list[torch.Tensor]:
    """The residual stream after each decoder block 0..L-1 (0 = the first block): L tensors (B, T, d). All are raw block
    outputs, the last one included (``output_hidden_states`` would give the last one after the
    final norm, a different convention from every other layer)."""
    captured: list[torch.Tensor] = []

    def keep(module, args, out):
        captured.append(out[0] if isinstance(out, tuple) else out)

    hooks = [layer.register_forward_hook(keep) for layer in model.get_decoder().layers]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return captured


@torch.no_grad()
def pooled_hidden_states(model, tok, prompts: list[str], batch: int) -> list[torch.Tensor]:
    """Per layer (outputs of blocks 0..L-1, before the final norm), the mean over each prompt's tokens,
    the first token dropped (BOS / ``<|im_start|>``): a list of L tensors (n, d). Right padding; pads
    are excluded."""
    layers: list[list[torch.Tensor]] = []
    for i in range(0, len(prompts), batch):
        items = [Item(j, tuple(prompt_ids(tok, p)), ()) for j, p in enumerate(prompts[i : i + batch])]
        b = collate(items, tok.pad_token_id)
        device = next(model.parameters()).device
        hs = block_outputs(model, b["input_ids"].to(device), b["attention_mask"].to(device))  # L x (B, T, d)
        keep = b["attention_mask"].clone().to(torch.float64).to(device)
        keep[:, 0] = 0
        for L, h in enumerate(hs):
            pooled = (h.to(torch.float64) * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
            if len(layers) <= L:
                layers.append([])
            layers[L].append(pooled.cpu())
    return [torch.cat(x) for x in layers]


def barrier(alphas: list[float], losses: list[float]) -> float:
    """max_alpha L(alpha) - [(1 - alpha) L(0) + alpha L(1)]; 0 for a curve at or below its chord.
    ``alphas`` ascending from 0 to 1."""
    l0, l1 = losses[0], losses[-1]
    return max(0.0, max(l - ((1 - a) * l0 + a * l1) for a, l in zip(alphas, losses)))
