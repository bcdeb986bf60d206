"""A stand-in for vLLM on CPU (tests only; put on sys.path by the test): ``LLM``, ``SamplingParams`` and
``vllm.lora.request.LoRARequest`` record every call in ``CALLS`` and raise TypeError on any keyword the
pinned vLLM does not take, as read from its source into ``tests/data/vllm_signatures.json``
(``tools/vllm_signatures.py``). ``LLM.chat`` answers each conversation with ``n`` outputs whose text
names the adapter and the sample."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SIGNATURES = json.loads((Path(__file__).parents[2] / "data" / "vllm_signatures.json").read_text())
CALLS: list[tuple[str, dict]] = []  # (what, keywords) in call order


def check(what: str, allowed, kw: dict) -> None:
    bad = sorted(set(kw) - set(allowed))
    if bad:
        raise TypeError(f"{what} got unexpected keyword(s) {bad} (vllm {SIGNATURES['vllm_version']})")


def _bind(what: str, names: list[str], args: tuple, kw: dict, allowed=None) -> dict:
    """Positional args bound to the first parameter names, as Python would; the keywords checked against
    ``allowed`` (default: ``names``)."""
    if len(args) > len(names):
        raise TypeError(f"{what} takes {len(names)} positional arguments, got {len(args)}")
    check(what, names if allowed is None else allowed, kw)
    bound = dict(zip(names, args))
    dup = set(bound) & set(kw)
    if dup:
        raise TypeError(f"{what} got multiple values for {sorted(dup)}")
    return {**bound, **kw}


class SamplingParams:
    def __init__(self, **kw):
        check("SamplingParams", SIGNATURES["SamplingParams"], kw)
        self.__dict__.update(kw)
        CALLS.append(("SamplingParams", kw))


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    outputs: list[CompletionOutput]


class LLM:
    def __init__(self, *args, **kw):
        sig = SIGNATURES["LLM.__init__"]
        # LLM(**kwargs) forwards to EngineArgs: its fields are keywords too
        kw = _bind("LLM", ["model"], args, kw, sig["params"] + SIGNATURES["EngineArgs"])
        if "max_lora_rank" in kw and kw["max_lora_rank"] not in SIGNATURES["MaxLoRARanks"]:
            raise ValueError(f"max_lora_rank {kw['max_lora_rank']} not in {SIGNATURES['MaxLoRARanks']}")
        self.kw = kw
        CALLS.append(("LLM", kw))

    def chat(self, *args, **kw):
        names = SIGNATURES["LLM.chat"]["params"]
        kw = _bind("LLM.chat", names, args, kw)
        CALLS.append(("LLM.chat", kw))
        lora, params = kw.get("lora_request"), kw["sampling_params"]
        if lora is not None and not self.kw.get("enable_lora"):
            raise ValueError("a LoRA request to an engine without enable_lora")
        tag = lora.lora_name if lora is not None else "base"
        if isinstance(params, list) and len(params) != len(kw["messages"]):  # vLLM: one per prompt, or one for all
            raise ValueError(f"{len(params)} sampling params for {len(kw['messages'])} prompts")
        per = params if isinstance(params, list) else [params] * len(kw["messages"])
        return [RequestOutput([CompletionOutput(s, f"{tag} {conv[-1]['content']} #{s} \\boxed{{{s}}}",
                                                list(range(3 + s)), "length" if s == 1 else "stop")
                               for s in range(p.n)]) for conv, p in zip(kw["messages"], per)]
