"""The generation engines' one-engine-per-process interface. vllm: exercised through a stand-in
(``tests/stubs/vllm``) that rejects any keyword vLLM 0.31.0 does not take (``tests/data/vllm_signatures.json``,
read from its source by ``tools/vllm_signatures.py``). hf: one engine serving the base and two adapters gives
exactly the completions of a fresh engine per model, as ``make_engine(..., lora=...)`` built them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO
from test_function_space import tok, trained_adapter  # noqa: F401 (fixture)
from test_training import small_model
from weightspace import config
from weightspace.generate import generation

STUBS = Path(__file__).parent / "stubs"
SIGS = json.loads((Path(__file__).parent / "data" / "vllm_signatures.json").read_text())


@pytest.fixture
def vllm(monkeypatch):
    """The stand-in vllm package, imported fresh, its call record empty."""
    monkeypatch.syspath_prepend(str(STUBS))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    import vllm

    vllm.CALLS.clear()
    yield vllm
    # the stand-in must not outlive the test: TRL would take an imported `vllm` for the real one
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


def vgen(**kw):
    base = dict(engine="vllm", temperature=0.0, top_p=1.0, max_new_tokens=64, batch_size=8, seed=42,
                max_model_len=1024, gpu_memory_utilization=0.85, openai=None)
    return config.Generation(**{**base, **kw})


def hub(tmp_path):
    """A base stage folder naming a hub model (``models.HUB_FILE``)."""
    folder = tmp_path / "base"
    folder.mkdir(exist_ok=True)
    (folder / "hub.json").write_text(json.dumps({"model_id": "Qwen/x", "revision": "abc123"}))
    return str(folder)


def adapter(tmp_path, name, r, targets=("q_proj", "k_proj", "v_proj", "o_proj")):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 2 * r, "target_modules": list(targets)}))
    return str(folder)


def test_signatures_are_vllm_0_31_0_and_hold_what_we_call():
    assert SIGS["vllm_version"] == "0.31.0" and SIGS["commit"] == "db9527a46"
    for key in ("enable_lora", "max_lora_rank", "max_loras", "max_model_len", "gpu_memory_utilization"):
        assert key in SIGS["EngineArgs"]
    assert {"model", "revision", "seed", "trust_remote_code", "gpu_memory_utilization"} <= set(
        SIGS["LLM.__init__"]["params"]) and SIGS["LLM.__init__"]["var_keyword"] == "kwargs"
    assert SIGS["LoRARequest"][:3] == ["lora_name", "lora_int_id", "lora_path"]
    assert tuple(SIGS["MaxLoRARanks"]) == generation.VLLM_LORA_RANKS


def test_stand_in_rejects_what_vllm_would(vllm):
    with pytest.raises(TypeError, match="lora_path"):
        vllm.LLM(model="m", lora_path="x")  # not an LLM or EngineArgs keyword
    with pytest.raises(TypeError, match="max_new_tokens"):
        vllm.SamplingParams(max_new_tokens=3)  # vLLM's name is max_tokens
    from vllm.lora.request import LoRARequest

    with pytest.raises(ValueError, match="id must be > 0"):
        LoRARequest("a", 0, "/p")


def test_one_vllm_engine_serves_base_and_each_adapter_per_request(vllm, tmp_path):
    a, b = adapter(tmp_path, "sft", 16), adapter(tmp_path, "sft_seed", 32)
    engine = generation.make_engine(vgen(temperature=1.0), hub(tmp_path), [a, b])
    out = {x: engine.generate(["q1", "q2"], 2, seed=5, adapter=x) for x in (None, a, b, a)}
    llms = [kw for what, kw in vllm.CALLS if what == "LLM"]
    assert len(llms) == 1  # one engine for the base and both adapters
    assert llms[0] == dict(model="Qwen/x", revision="abc123", seed=42, max_model_len=1024, gpu_memory_utilization=0.85,
                           trust_remote_code=False, enable_lora=True, max_lora_rank=32, max_loras=1,
                           dtype="float32", enforce_eager=True,  # the hf engine's dtype on CPU; eager on CPU
                           enable_chunked_prefill=False)  # CPU: whole prompts (a split one kills a seeded request)
    chats = [kw for what, kw in vllm.CALLS if what == "LLM.chat"]
    loras = [c["lora_request"] for c in chats]
    assert loras[0] is None
    assert [(r.lora_name, r.lora_int_id, r.lora_path) for r in loras[1:]] == [(a, 1, a), (b, 2, b), (a, 1, a)]
    assert chats[0]["messages"] == [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    sp = [kw for what, kw in vllm.CALLS if what == "SamplingParams"][0]
    assert sp == dict(n=2, temperature=1.0, top_p=1.0, max_tokens=64, seed=5)
    # outputs -> Completion: text, generated token count, truncated when vLLM stopped at the length limit
    assert out[None][1] == [generation.Completion("base q2 #0 \\boxed{0}", 3, False),
                            generation.Completion("base q2 #1 \\boxed{1}", 4, True)]
    assert out[b][0][0].text == f"{b} q1 #0 \\boxed{{0}}"


def test_vllm_engine_without_adapters_enables_no_lora(vllm, tmp_path):
    engine = generation.make_engine(vgen(temperature=1.0, top_p=0.95), hub(tmp_path))
    engine.generate(["q"], 1)
    llm = [kw for what, kw in vllm.CALLS if what == "LLM"][0]
    assert "enable_lora" not in llm and "max_lora_rank" not in llm
    with pytest.raises(ValueError, match="without LoRA"):
        engine.generate(["q"], 1, adapter="/some/adapter")


def test_vllm_rank_rounds_up_to_a_rank_vllm_takes(vllm, tmp_path):
    generation.make_engine(vgen(), hub(tmp_path), [adapter(tmp_path, "a", 4)])
    assert [kw for what, kw in vllm.CALLS if what == "LLM"][0]["max_lora_rank"] == 8
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        generation.make_engine(vgen(), hub(tmp_path), [str(tmp_path)])


def test_evaluate_stage_builds_one_vllm_engine_for_a_method_and_its_twin(vllm, tmp_path, monkeypatch):
    from weightspace.stages import evaluate

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["evaluate"]["generation"].update(engine="vllm", max_model_len=512, gpu_memory_utilization=0.5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    data = tmp_path / "data"
    data.mkdir()
    (data / "s.jsonl").write_text("".join(json.dumps({"id": f"i{i}", "question": f"{i}+0?", "answer": "0"}) + "\n"
                                          for i in range(3)))
    a, b = adapter(tmp_path, "sft", 8), adapter(tmp_path, "sft_seed", 8)
    outs = [tmp_path / "out" / "sft", tmp_path / "out" / "seeds" / "sft"]
    evaluate.main(["--params", str(tmp_path / "params.yaml"), "--base", hub(tmp_path), "--adapter", f"{a},{b}",
                   "--data", str(data), "--out", ",".join(map(str, outs))])
    llms = [kw for what, kw in vllm.CALLS if what == "LLM"]
    assert len(llms) == 1 and llms[0]["revision"] == "abc123" and llms[0]["max_model_len"] == 512
    assert llms[0]["gpu_memory_utilization"] == 0.5 and llms[0]["max_lora_rank"] == 8
    loras = [kw["lora_request"] for what, kw in vllm.CALLS if what == "LLM.chat"]
    assert [(r.lora_int_id, r.lora_path) for r in loras] == [(1, a), (2, b)]
    for out, x in zip(outs, (a, b)):
        recs = [json.loads(line) for line in (out / "s.jsonl").read_text().splitlines()]
        assert [r["output"] for r in recs] == [f"{x} {i}+0? #0 \\boxed{{0}}" for i in range(3)]
        assert all(r["correct"] and r["tokens"] == 3 and not r["truncated"] for r in recs)


def hf_gen(**kw):
    base = dict(engine="hf", temperature=0.0, top_p=1.0, max_new_tokens=6, batch_size=2, seed=3, max_model_len=None,
                gpu_memory_utilization=None, openai=None)
    return config.Generation(**{**base, **kw})


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_hf_engine_serving_adapters_in_turn_matches_a_fresh_engine_per_model(tok, tmp_path, monkeypatch, temperature):
    """Per adapter, the former path: a fresh base, the adapter merged by ``Merger``, its own ``HFEngine``."""
    from weightspace.model import models
    from weightspace.model.adapters import read_adapter
    from weightspace.generate.merge import Merger

    monkeypatch.setattr(tok, "padding_side", "left")
    trained_adapter(tok, tmp_path, "a", 1)
    trained_adapter(tok, tmp_path, "b", 2)
    gen = hf_gen(top_p=0.9 if temperature else 1.0, temperature=temperature)
    messages = ["What is 2+3?", "Add 4 and 5.", "7 plus 1"]
    n = 2 if temperature else 1  # greedy: one completion per message

    def fresh(lora):
        model = small_model(tok).eval()
        if lora:
            factors = read_adapter(lora)
            Merger(model, list(factors)).set([(1.0, factors)])
        return generation.HFEngine(model, tok, gen).generate(messages, n, seed=11)

    built = []
    monkeypatch.setattr(models, "load_base", lambda base, dtype, device: built.append(1) or (small_model(tok).eval(), tok))
    engine = generation.make_engine(gen, "unused", [str(tmp_path / "a"), str(tmp_path / "b")])
    for lora in (None, str(tmp_path / "a"), str(tmp_path / "b"), None, str(tmp_path / "a")):
        assert engine.generate(messages, n, seed=11, adapter=lora) == fresh(lora), lora
    assert len(built) == 1
    assert engine.generate(messages, 1, seed=11, adapter=str(tmp_path / "a")) != engine.generate(messages, 1, seed=11)


def test_a_missing_adapter_fails_before_any_model_is_loaded(tmp_path, monkeypatch):
    from weightspace.model import models

    monkeypatch.setattr(models, "load_base", lambda *a, **kw: pytest.fail("the base was loaded"))
    for gen in (hf_gen(), vgen()):
        with pytest.raises(FileNotFoundError, match="adapter_config.json: not found"):
            generation.make_engine(gen, "unused", [str(tmp_path / "gone")])


def test_a_fixed_thinking_switch_reaches_vllm_as_chat_template_kwargs(vllm, tmp_path):
    """base.hub.thinking: false, recorded in hub.json by the base stage, goes to every LLM.chat call (vLLM renders
    with its own copy of the tokenizer, so the switch must travel with the call)."""
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "hub.json").write_text(json.dumps({"model_id": "Qwen/Qwen3-1.7B", "revision": "abc123",
                                                 "chat_template_vars": {"enable_thinking": False}}))
    engine = generation.make_engine(vgen(), str(folder))
    engine.generate(["q1"], 1)
    chats = [kw for what, kw in vllm.CALLS if what == "LLM.chat"]
    assert chats[0]["chat_template_kwargs"] == {"enable_thinking": False}
    vllm.CALLS.clear()
    generation.make_engine(vgen(), hub(tmp_path)).generate(["q1"], 1)
    assert "chat_template_kwargs" not in [kw for what, kw in vllm.CALLS if what == "LLM.chat"][0]


def test_prompt_seed_is_sha256_of_seed_and_id():
    # sha256(b"42:heldout-0") starts 9a9cbbe8: 0x9a9cbbe8 = 2593962984, halved to stay below 2**31
    assert generation.prompt_seed(42, "heldout-0") == 2593962984 >> 1 == 1296981492
    seeds = {generation.prompt_seed(42, f"q{i}") for i in range(1000)}
    assert len(seeds) == 1000 and max(seeds) < 2**31
    assert generation.prompt_seed(43, "heldout-0") != generation.prompt_seed(42, "heldout-0")


def test_vllm_engine_samples_each_prompt_from_its_own_seed(vllm, tmp_path):
    engine = generation.make_engine(vgen(temperature=1.0), hub(tmp_path))
    engine.generate(["q1", "q2"], 2, ids=["a", "b"])
    engine.generate(["q1", "q2"], 2, seed=5)
    chats = [kw for what, kw in vllm.CALLS if what == "LLM.chat"]
    assert [p.seed for p in chats[0]["sampling_params"]] == [generation.prompt_seed(42, "a"),
                                                              generation.prompt_seed(42, "b")]
    assert [p.seed for p in chats[1]["sampling_params"]] == [5, 5]  # no ids: the call's seed for every prompt
    with pytest.raises(ValueError, match="1 prompt ids for 2 messages"):
        engine.generate(["q1", "q2"], 1, ids=["a"])


def test_adapters_vllm_cannot_serve_are_refused_with_their_path_before_the_engine(vllm, tmp_path):
    cases = [(adapter(tmp_path, "huge", 1024), "LoRA rank 1024 exceeds the engine's max_lora_rank 512"),
             (adapter(tmp_path, "embed", 8, ("q_proj", "embed_tokens")),
              r"target modules \['embed_tokens'\] are outside"),
             (adapter(tmp_path, "none", 8, ()), r"target modules \[\] are outside")]
    for folder, why in cases:
        with pytest.raises(ValueError, match=f"vllm engine: {folder}: {why}"):
            generation.make_engine(vgen(), hub(tmp_path), [folder])
    for key, value in (("rank_pattern", {"q_proj": 4}), ("alpha_pattern", {"q_proj": 8}), ("use_dora", True),
                       ("bias", "lora_only")):
        odd = adapter(tmp_path, key, 8)
        cfg = json.loads((Path(odd) / "adapter_config.json").read_text())
        (Path(odd) / "adapter_config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=f"vllm engine: {odd}: {key}=.* is not served by vLLM"):
            generation.make_engine(vgen(), hub(tmp_path), [odd])
    saved = adapter(tmp_path, "saved", 8)
    cfg = json.loads((Path(saved) / "adapter_config.json").read_text())
    (Path(saved) / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": ["lm_head"]}))
    with pytest.raises(ValueError, match="modules_to_save"):
        generation.make_engine(vgen(), hub(tmp_path), [saved])
    assert not vllm.CALLS  # no engine was built
    engine = generation.make_engine(vgen(), hub(tmp_path), [adapter(tmp_path, "small", 8)])
    late = adapter(tmp_path, "late", 32)  # an adapter not named at the build, above the engine's rank
    with pytest.raises(ValueError, match=f"{late}: LoRA rank 32 exceeds the engine's max_lora_rank 8"):
        engine.generate(["q"], 1, adapter=late)
    assert "LLM.chat" not in [what for what, _ in vllm.CALLS]  # refused before any request reached vLLM


def test_vllm_refuses_several_greedy_completions_before_the_request(vllm, tmp_path):
    engine = generation.make_engine(vgen(temperature=0.0), hub(tmp_path))
    with pytest.raises(ValueError, match="2 completions per prompt at temperature 0"):
        engine.generate(["q"], 2)
    assert "LLM.chat" not in [what for what, _ in vllm.CALLS]


def test_hf_engine_stops_at_every_end_of_sequence_id_of_the_generation_config(tok):
    """As vLLM does: the tokenizer's eos and the generation_config's (Qwen3 lists <|im_end|> and <|endoftext|>)."""
    model = small_model(tok)
    other = tok.eos_token_id + 1
    model.generation_config.eos_token_id = [other, tok.eos_token_id]
    engine = generation.HFEngine(model, tok, config.Generation(
        engine="hf", temperature=0.0, top_p=1.0, max_new_tokens=8, batch_size=2, seed=0, max_model_len=None,
        gpu_memory_utilization=None, openai=None))
    assert engine.eos == [tok.eos_token_id, other]
    c = engine._completion([5, 6, other, 7])
    assert (c.n_tokens, c.truncated, c.token_ids) == (3, False, (5, 6, other))
