"""``params.yaml`` -> typed, frozen config objects (pydantic v2 models), validated once, before any
compute.

Every key is required (``null`` where a section does not apply); an unknown key, a missing key, a
value of the wrong type or a non-positive learning rate raises ``ParamsError`` with a one-line message
naming the dotted key (``schema``). Numbers that ``dvc exp run -S`` writes in a form PyYAML reads as
strings (``1e-05``) are accepted as numbers (treeverse/dvc#5971). The sections of the methods come
from the registry (``registry.REGISTRY``): ``Params`` has one field per registered method. This module
holds the sections and the rules that span them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import create_model, model_validator

from . import registry as _methods
from .core.pairs import Pair, method_of
from .core.schema import (Fraction, NonNegative, NonNegativeInt, Number, OpenUnit, ParamsError, Positive, PositiveInt,
                          Section, Share, StrictBool, StrictInt, StrictStr, validate)

METHODS = _methods.NAMES  # every registered method (a module of registry/); params.methods picks those trained
__all__ = ["ParamsError", "load", "from_mapping", "METHODS"]


# ---------------------------------------------------------------- sections
# A rule that spans fields raises ValueError("<field>: <problem>"); schema.validate adds the section's key.
class Source(Section):
    """One dataset: generated problems, a hub dataset, or a local JSONL file of a known format."""
    kind: Literal["generated", "hub", "jsonl"]
    format: Literal["generated", "gsm8k", "aime", "deepscaler"]
    path: Optional[StrictStr]  # hub id or local file; null for generated
    config: Optional[StrictStr]  # hub config name (gsm8k: "main")
    split: Optional[StrictStr]
    n: Optional[PositiveInt]  # first n rows (generated: how many); null = all

    @model_validator(mode="after")
    def _rules(self):
        if (self.kind == "generated") != (self.format == "generated"):
            raise ValueError(f"format: kind {self.kind!r} cannot read format {self.format!r}")
        if self.kind != "generated" and not self.path:
            raise ValueError(f"path: required for kind {self.kind!r}")
        if self.kind == "generated" and self.n is None:
            raise ValueError("n: required for generated problems")
        return self


class Generator(Section):
    seed: StrictInt
    min_ops: StrictInt
    max_ops: StrictInt
    max_value: StrictInt
    n_pretrain: StrictInt


class Prepare(Section):
    train: Source
    eval: dict[str, Source]
    generator: Optional[Generator]  # required when a source is generated

    @model_validator(mode="after")
    def _rules(self):
        sources = {"train": self.train, **{f"eval.{k}": v for k, v in self.eval.items()}}
        for name, src in sources.items():
            if src.kind == "generated" and self.generator is None:
                raise ValueError(f"generator: required by generated source prepare.{name}")
        if not self.eval:
            raise ValueError("eval: at least one evaluation set")
        return self


class TinyModel(Section):
    vocab_size: PositiveInt
    hidden_size: PositiveInt
    layers: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate_size: PositiveInt
    max_positions: PositiveInt
    seed: StrictInt
    steps: PositiveInt
    batch_size: PositiveInt
    lr: Positive
    eval_every: PositiveInt
    eval_n: PositiveInt
    min_acc: Number
    max_acc: Number

    @model_validator(mode="after")
    def _rules(self):
        if not 0 <= self.min_acc <= self.max_acc <= 1:
            raise ValueError(f"min_acc: need 0 <= min_acc <= max_acc <= 1, got {self.min_acc} and {self.max_acc}")
        return self


class HubModel(Section):
    """A pretrained model: hub id (or local folder) and revision. ``thinking``: its chat template's
    ``enable_thinking`` switch (hybrid-thinking models such as Qwen3-0.6B to 8B), fixed for every rendering
    of a prompt for this model (training, evaluation, online sampling, vLLM); null keeps the template's own
    behaviour and is the value for a template without the switch."""
    model_id: StrictStr
    revision: StrictStr
    thinking: Optional[StrictBool]


class Base(Section):
    kind: Literal["tiny", "hub"]
    tiny: Optional[TinyModel]
    hub: Optional[HubModel]

    @model_validator(mode="after")
    def _rules(self):
        if getattr(self, self.kind) is None:
            raise ValueError(f"{self.kind}: required when kind is {self.kind}")
        return self


class OpenAIEngine(Section):
    base_url: StrictStr
    model: StrictStr
    api_key_env: StrictStr
    concurrency: PositiveInt
    max_retries: StrictInt  # the SDK's own retries (backoff, Retry-After honoured) before a request counts as failed
    timeout_s: Positive
    price_input_per_mtok: Optional[Number] = None  # USD per 1M prompt tokens; null: no cost in metrics
    price_output_per_mtok: Optional[Number] = None  # USD per 1M completion tokens


class Generation(Section):
    """Sampling settings shared by every engine; ``max_model_len`` and ``gpu_memory_utilization`` size the
    vllm engine (required for it, null for the others)."""
    engine: Literal["hf", "vllm", "openai"]
    temperature: NonNegative
    top_p: Share
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    seed: StrictInt
    max_model_len: Optional[PositiveInt]  # vllm: context in tokens (prompt + completion); sizes the KV cache
    gpu_memory_utilization: Optional[Share]  # vllm: share of GPU memory the one engine claims
    openai: Optional[OpenAIEngine]

    @model_validator(mode="after")
    def _rules(self):
        if self.engine == "openai" and self.openai is None:
            raise ValueError("openai: required when engine is openai")
        for key in ("max_model_len", "gpu_memory_utilization"):
            if (self.engine == "vllm") != (getattr(self, key) is not None):
                raise ValueError(f"{key}: required when engine is vllm, null otherwise (engine {self.engine})")
        if self.engine == "vllm":
            if self.max_model_len <= self.max_new_tokens:
                raise ValueError(f"max_model_len: {self.max_model_len} leaves no room for a prompt before "
                                 f"max_new_tokens={self.max_new_tokens}")
        return self


class Prompt(Section):
    """The user message: ``template.format(question=...)``; shared by pretraining, rollouts and eval."""
    template: StrictStr

    @model_validator(mode="after")
    def _rules(self):
        try:
            filled = self.template.format(question="\x00")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"template: not a valid format string ({e})") from None
        if "\x00" not in filled:  # "{{question}}" contains the text but formats to a literal
            raise ValueError("template: must contain {question}")
        return self

    def render(self, question: str) -> str:
        return self.template.format(question=question)


class TinyTeacher(Section):
    """The tiny default's teacher: the base pretrained ``steps`` more steps on the same corpus. Its
    strength is ``steps`` (``dvc exp run -S rollouts.teacher.tiny.steps=...`` sweeps it)."""
    steps: NonNegativeInt  # pretraining steps beyond the base's (0: the base's weights, a teacher as weak as the student)
    lr: Positive
    batch_size: PositiveInt
    seed: StrictInt  # batch draws (the base uses base.tiny.seed)
    eval_every: PositiveInt
    style: Literal["plain", "steps"]  # how its worked solutions are written (problems.restyle); plain = the base's


class Teacher(Section):
    """The model that writes the rollout table (the paper: DeepSeek-V4-Flash behind an API).

    student: the base samples its own table; tiny: the base pretrained further in the pipeline (needs
    base.kind tiny); hub: a model id (or local folder) for the hf/vllm engines; api: the openai
    engine's model (rollouts.generation.openai)."""
    kind: Literal["student", "tiny", "hub", "api"]
    tiny: Optional[TinyTeacher]
    hub: Optional[HubModel]

    @model_validator(mode="after")
    def _rules(self):
        if self.kind in ("tiny", "hub") and getattr(self, self.kind) is None:
            raise ValueError(f"{self.kind}: required when kind is {self.kind}")
        return self


class Rollouts(Section):
    teacher: Teacher
    k: PositiveInt
    # the first n prompts each get one more row after their k samples: the gold answer written as a
    # completion (column ``source`` = "gold"), for a base too weak to be right on its own; 0 = none
    gold_rows: NonNegativeInt
    # the teacher's reasoning (a leading <think>...</think> block): kept in the completion, or dropped
    reasoning: Literal["keep", "drop"]
    # a reward-1 row longer than train.max_length in the student's tokens (training would cut its answer):
    # removed from the table (drop) or given reward 0 (fail); rollouts.apply_overlong
    overlong: Literal["drop", "fail"]
    generation: Generation


class Lora(Section):
    """Attention-only LoRA: W0 x + (alpha/r) B A x (alpha/sqrt(r) with rsLoRA)."""
    r: PositiveInt
    alpha: Positive
    dropout: Fraction
    target_modules: tuple[Literal["q_proj", "k_proj", "v_proj", "o_proj"], ...]  # attention only
    use_rslora: StrictBool

    @model_validator(mode="after")
    def _rules(self):
        if not self.target_modules or len(set(self.target_modules)) != len(self.target_modules):
            raise ValueError("target_modules: empty or repeated entries")
        return self


class Train(Section):
    """Shared by every method: the loss is the only thing that differs between runs."""
    launcher: StrictStr  # how dvc.yaml starts the train script: "python" or "accelerate launch ..."
    seed: StrictInt
    steps: PositiveInt
    compare_step: Optional[StrictInt]  # adapter compared by the analyses; null = steps
    batch_size: PositiveInt  # effective batch: rows (pairs for DPO) per optimiser step
    micro_batch_size: PositiveInt
    warmup_ratio: Fraction
    weight_decay: NonNegative
    grad_clip: Positive
    max_length: PositiveInt
    bf16: StrictBool
    gradient_checkpointing: StrictBool
    checkpoint_every: Optional[PositiveInt]  # steps between resumable checkpoints; null = none (a kill restarts at 0)
    lora: Lora
    # pack each micro-batch's sequences into rows (position ids, no padding inside a row) instead of right-padding:
    # the same losses and gradients up to float summation order (tests/test_packing.py), fewer pad tokens computed
    packing: StrictBool = False

    @model_validator(mode="after")
    def _rules(self):
        if not (self.launcher == "python" or self.launcher.startswith("accelerate launch")):
            raise ValueError(f"launcher: 'python' or 'accelerate launch ...', got {self.launcher!r}")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size: {self.batch_size} is not a multiple of micro_batch_size "
                             f"{self.micro_batch_size}")
        if self.compare_step is not None and not 0 < self.compare_step <= self.steps:
            raise ValueError(f"compare_step: must lie in 1..steps={self.steps}, got {self.compare_step}")
        return self


class Pretrained(Section):
    """Each delta against the pretrained weights W0 (``pretrained.analyse_relative``; beyond the paper)."""
    top_k: PositiveInt  # W0's and dW's top-k singular subspaces; intruders among W0 + dW's top-k
    intruder_rate: OpenUnit  # per module, the |cos| threshold below which a random direction is an intruder this often
    partial_rank: Optional[PositiveInt]  # null: W0's exact SVD; K: its top-K triplets, randomized (large models)


class Geometry(Section):
    reference: Literal[METHODS]  # orthogonal fraction is measured off this method (the paper: sft)
    top_k: PositiveInt  # principal angles between the top-k left singular subspaces (paper: 10 of r=32)
    pretrained: Pretrained


class AvgK(Section):
    """k sampled completions per problem on the named sets, scored as avg@k (the paper's AIME)."""
    k: PositiveInt
    temperature: Positive
    top_p: Positive
    sets: tuple[StrictStr, ...]


class Evaluate(Section):
    generation: Generation  # greedy: temperature 0
    avg_k: Optional[AvgK]

    @model_validator(mode="after")
    def _rules(self):
        if self.generation.temperature != 0:
            raise ValueError("generation.temperature: pass@1 is greedy, set 0 (avg_k samples)")
        return self


class Compare(Section):
    level: OpenUnit  # confidence level of the intervals
    bootstrap: PositiveInt  # resamples for avg@k intervals
    seed: StrictInt
    margin: OpenUnit  # equivalence margin of the paired TOST (accuracy difference, absolute): "same accuracy"


class Connectivity(Section):
    pairs: tuple[StrictStr, ...]  # "a-b": merge alpha dW_a + (1 - alpha) dW_b; "sft_seed" is SFT from controls.seed
    points: StrictInt  # alpha grid: linspace(0, 1, points)
    set: StrictStr  # evaluation set whose gold answers score the merged models
    n: PositiveInt  # first n problems
    batch_size: PositiveInt

    @model_validator(mode="after")
    def _rules(self):
        if self.points < 3:
            raise ValueError(f"points: need at least 3 grid points, got {self.points}")
        for i, pair in enumerate(self.pairs):
            parts = Pair.maybe(pair)
            if (parts is None or parts.a == parts.b
                    or any(method_of(x) not in METHODS for x in parts)):
                raise ValueError(f"pairs[{i}]: {pair!r} is not 'a-b' with two different methods")
        return self


class CKA(Section):
    set: StrictStr
    n: StrictInt  # prompts (the paper: 100 GSM8K prompts)
    batch_size: PositiveInt

    @model_validator(mode="after")
    def _rules(self):
        if self.n < 4:
            raise ValueError(f"n: the debiased estimator needs at least 4 prompts, got {self.n}")
        return self


class LrMatched(Section):
    """``method`` retrained at ``lr_of``'s peak LR (the paper's DPO runs at 1/10 of the others' LR)."""
    method: Literal[METHODS]
    lr_of: Literal[METHODS]


class Controls(Section):
    """The paper's controls, run by the default pipeline: every method retrained from ``seed`` (its own
    LoRA init and row order: the method's noise floor), the LR-matched run, and an optional LR sweep
    (every method retrained at each absolute peak LR of ``lr_sweep`` other than its own; empty = off)."""
    seed: StrictInt
    lr_matched: LrMatched
    lr_sweep: tuple[Positive, ...]

    @model_validator(mode="after")
    def _rules(self):
        if len(set(self.lr_sweep)) != len(self.lr_sweep):
            raise ValueError(f"lr_sweep: repeated learning rates {list(self.lr_sweep)}")
        if self.lr_matched.method == self.lr_matched.lr_of:
            raise ValueError("lr_matched.lr_of: must differ from lr_matched.method")
        return self


class Report(Section):
    accuracy_set: StrictStr  # the evaluation set whose accuracy the claims read (paper: gsm8k)
    aime_set: Optional[StrictStr]  # the AIME set of the AIME claim (paper: aime26); null = not measured


class _Params(Section):
    """Every section but the methods'; ``Params`` adds one field per registered method."""
    profile: StrictStr
    threads: PositiveInt  # torch threads of every stage; results are bit-equal only at equal thread counts
    methods: tuple[Literal[METHODS], ...]
    prompt: Prompt
    prepare: Prepare
    base: Base
    rollouts: Rollouts
    train: Train
    geometry: Geometry
    evaluate: Evaluate
    compare: Compare
    connectivity: Connectivity
    cka: CKA
    report: Report
    controls: Controls

    @model_validator(mode="after")
    def _rules(self):
        """The rules across sections; messages carry the whole dotted key."""
        if not self.methods:
            raise ValueError("methods: empty")
        for name in self.methods:
            need = _methods.REGISTRY[name].min_micro_batch
            if self.train.micro_batch_size < need:
                raise ValueError(f"train.micro_batch_size: {name} needs at least {need} sequences per micro-batch "
                                 f"(its reference point is estimated over one), got {self.train.micro_batch_size}")
        if self.controls.seed == self.train.seed:
            raise ValueError(f"controls.seed: must differ from train.seed={self.train.seed}")
        for key in ("method", "lr_of"):
            if getattr(self.controls.lr_matched, key) not in self.methods:
                raise ValueError(f"controls.lr_matched.{key}: {getattr(self.controls.lr_matched, key)!r} is not in "
                                 "methods")
        for key in ("accuracy_set", "aime_set"):
            name = getattr(self.report, key)
            if name is not None and name not in self.prepare.eval:
                raise ValueError(f"report.{key}: {name!r} is not an evaluation set")
        for sec in ("connectivity", "cka"):
            name = getattr(self, sec).set
            if name not in self.prepare.eval:
                raise ValueError(f"{sec}.set: {name!r} is not an evaluation set in prepare.eval")
        for i, pair in enumerate(self.connectivity.pairs):
            if any(method_of(x) not in self.methods and not _methods.opt_in(method_of(x))
                   for x in Pair.parse(pair)):
                raise ValueError(f"connectivity.pairs[{i}]: {pair!r} uses a method not in methods")
        if self.evaluate.avg_k is not None:
            for name in self.evaluate.avg_k.sets:
                if name not in self.prepare.eval:
                    raise ValueError(f"evaluate.avg_k.sets: {name!r} is not an evaluation set in prepare.eval")
        if self.geometry.top_k > self.train.lora.r:
            raise ValueError(f"geometry.top_k: {self.geometry.top_k} exceeds the LoRA rank train.lora.r="
                             f"{self.train.lora.r}")
        if self.geometry.reference not in self.methods:
            raise ValueError(f"geometry.reference: {self.geometry.reference!r} is not in methods")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: duplicate entries in {list(self.methods)}")
        t, engine = self.rollouts.teacher, self.rollouts.generation.engine
        if (t.kind == "api") != (engine == "openai"):
            raise ValueError(f"rollouts.teacher.kind: {t.kind!r} does not go with rollouts.generation.engine "
                             f"{engine!r} (the api teacher is the openai engine's model, and only it)")
        if t.kind == "tiny" and self.base.kind != "tiny":
            raise ValueError("rollouts.teacher.kind: tiny needs base.kind tiny (it continues the base's pretraining)")
        return self

    def connectivity_pairs(self) -> tuple[str, ...]:
        """``connectivity.pairs`` whose methods are trained: a pair naming an online method (opt-in, e.g.
        ``grpo_online-grpo``) runs only when that method is in ``methods``."""
        return tuple(p for p in self.connectivity.pairs
                     if all(method_of(x) in self.methods for x in Pair.parse(p)))

    def method(self, name: str):
        """The params section of method ``name``; raises ParamsError for an unknown method."""
        if name not in _methods.REGISTRY:
            raise ParamsError(f"method {name!r}: unknown (expected one of {', '.join(METHODS)})")
        return getattr(self, name)


# one required section per registered method, typed by the registry entry's params class
Params = create_model("Params", __base__=_Params, __doc__="The whole params file.",
                      **{name: (entry.params, ...) for name, entry in _methods.REGISTRY.items()})


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raises ParamsError naming the first bad key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({e})") from None
    return from_mapping(raw)


def from_mapping(raw) -> Params:
    """Validate a whole params mapping (as ``yaml.safe_load`` gives it)."""
    return validate(Params, raw)
