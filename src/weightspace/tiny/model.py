"""The tiny default's base model: a byte-level BPE tokenizer and a small Qwen3 (its pretraining:
``train.pretrain``).

Same architecture and module names as Qwen3-4B (q_proj, k_proj, v_proj, o_proj in every layer), only
smaller, so every later stage runs the code path of the paper profile.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM


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
