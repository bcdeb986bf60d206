"""The GPU profiles beyond the paper's: one GPU (Qwen3-1.7B, thinking off) and the paper's Llama-3.2-3B
replication. Each renders its prompt through a chat template of its model's format, offline, with a tokenizer
built here and loaded the way the pipeline loads a hub base (``models.record_hub`` on the local-path route,
then ``models.load_tokenizer``)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from conftest import REPO
from weightspace import config
from weightspace.model.models import load_tokenizer, record_hub
from weightspace.model.sequences import chat_text

# Qwen3's hybrid-thinking template, reduced to one user turn and the generation prompt (the part a prompt of
# this pipeline renders): the empty think block when enable_thinking is false, as in Qwen3-0.6B..8B.
QWEN3 = ("{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
         "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
         "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
         "{%- endif %}")
# Llama 3's header format for one user turn (the Instruct template also writes a dated system turn)
LLAMA3 = ("{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n'"
          " + message.content + '<|eot_id|>' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


def local_model(folder, template: str, eos: str, bos: str | None = None):
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, eos: 1, **({bos: 2} if bos else {})}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=bos, chat_template=template
                            ).save_pretrained(folder)
    return folder


def rendered(profile: str, template: str, eos: str, tmp_path, bos: str | None = None) -> tuple[str, config.Params]:
    p = config.load(REPO / "profiles" / profile)
    folder = local_model(tmp_path / "model", template, eos, bos)
    hub = config.HubModel(model_id=str(folder), revision="local", thinking=p.base.hub.thinking)
    record_hub(hub, tmp_path / "base")
    return chat_text(load_tokenizer(tmp_path / "base"), p.prompt.render("What is 2 + 3?")), p


def test_one_gpu_profile_renders_qwen3_with_thinking_off(tmp_path):
    text, p = rendered("qwen3-1.7b.yaml", QWEN3, "<|im_end|>", tmp_path)
    assert p.base.hub.model_id == "Qwen/Qwen3-1.7B" and p.base.hub.thinking is False
    assert text == ("<|im_start|>user\nWhat is 2 + 3?\nPlease reason step by step, and put your final answer within "
                    "\\boxed{}.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    tok = load_tokenizer(tmp_path / "base")  # a caller asking for thinking (TRL passes its kwargs) cannot turn it on
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True,
                                   enable_thinking=True).endswith("<think>\n\n</think>\n\n")
    t = p.train  # one card: micro-batch 2 x 4096 tokens, bf16, checkpointing; the paper's 2/3 compare point
    assert (t.micro_batch_size, t.max_length, t.bf16, t.gradient_checkpointing) == (2, 4096, True, True)
    assert t.compare_step / t.steps == pytest.approx(1000 / 1500) and t.launcher.endswith("--num_processes 1")
    assert p.evaluate.generation.max_model_len >= p.evaluate.generation.max_new_tokens + 1024


def test_llama_profile_is_the_paper_protocol_with_another_student(tmp_path):
    text, p = rendered("llama3.2-3b.yaml", LLAMA3, "<|eot_id|>", tmp_path, bos="<|begin_of_text|>")
    assert p.base.hub.model_id == "meta-llama/Llama-3.2-3B-Instruct" and p.base.hub.thinking is None
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 3?\nPlease reason step by "
                    "step, and put your final answer within \\boxed{}.<|eot_id|><|start_header_id|>assistant"
                    "<|end_header_id|>\n\n")
    paper = config.load(REPO / "profiles/paper.yaml").model_dump()
    mine = p.model_dump()
    differ = {k for k in paper if paper[k] != mine[k]}
    assert differ == {"profile", "base"}, differ


def test_a_thinking_switch_on_a_template_without_one_is_refused(tmp_path):
    folder = local_model(tmp_path / "model", LLAMA3, "<|eot_id|>", bos="<|begin_of_text|>")
    record_hub(config.HubModel(model_id=str(folder), revision="local", thinking=False), tmp_path / "base")
    with pytest.raises(ValueError, match="no enable_thinking variable"):
        load_tokenizer(tmp_path / "base")
