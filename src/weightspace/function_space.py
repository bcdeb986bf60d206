"""What the adapted models do: merged weights, masked-answer cross-entropy, pooled hidden states.

Merging is in Delta W space, exactly: W(alpha) = W0 + alpha dW_a + (1 - alpha) dW_b with each
dW = s B A formed per module; never in factor space (interpolating A and B separately adds the
cross terms alpha(1-alpha)(B_a A_b + B_b A_a) and fakes a barrier).
"""

from __future__ import annotations

import torch

from .adapters import Factor
from .sequences import Item, collate, ids, prompt_ids, sequence_logps


def _input_to_fp32(module, args):
    return (args[0].to(torch.float32), *args[1:])


def _output_to_model_dtype(module, args, out):
    return out.to(module.model_dtype)


class Merger:
    """Writes W(c) = W0 + sum_i c_i dW_i into a base model's target modules, exactly, whatever the base
    dtype; ``reset`` restores W0.

    The sum is formed in float64 and kept in float32: in a bf16 model each target module's weight
    becomes a float32 copy of W0 (bf16 values are exact in float32), its input is cast to float32 and
    its output back to the model's dtype (forward hooks). Written back as bf16(W0 + dW), a delta
    below W0's rounding step would be erased: a DPO-sized rank-32 update on W0 ~ N(0, 0.02^2) loses
    93% of its entries that way. The other modules keep the model's dtype. Not for use under
    ``torch.autocast``, which would cast the float32 matmul back to bf16.
    """

    def __init__(self, model, modules: list[str]):
        self.model = model
        self.w0: dict[str, torch.Tensor] = {}
        for name in modules:
            mod = model.get_submodule(name)
            self.w0[name] = mod.weight.detach().to(torch.float32).clone()  # (d_out, d_in), exact copy of W0
            if mod.weight.dtype != torch.float32:
                mod.model_dtype = mod.weight.dtype
                mod.weight = torch.nn.Parameter(self.w0[name].clone(), requires_grad=False)
                if mod.bias is not None:
                    mod.bias = torch.nn.Parameter(mod.bias.detach().to(torch.float32), requires_grad=False)
                mod.register_forward_pre_hook(_input_to_fp32)
                mod.register_forward_hook(_output_to_model_dtype)

    @torch.no_grad()
    def set(self, terms: list[tuple[float, dict[str, Factor]]]) -> None:
        """W = fp32(W0 + sum_i c_i s_i B_i A_i), the sum in float64, for every target module."""
        for name, w0 in self.w0.items():
            delta = torch.zeros(w0.shape, dtype=torch.float64, device=w0.device)
            for c, factors in terms:
                f = factors[name]
                delta += (c * f.scale) * (f.B.to(w0.device) @ f.A.to(w0.device))  # (d_out, r) @ (r, d_in)
            self.model.get_submodule(name).weight.copy_((w0.to(torch.float64) + delta).to(torch.float32))

    def reset(self) -> None:
        self.set([])


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
    """The residual stream after each decoder block 1..L: L tensors (B, T, d). All are raw block
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
    """Per layer (outputs of blocks 1..L, before the final norm), the mean over each prompt's tokens,
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
