"""``params.yaml`` -> typed, frozen config objects, validated once, before any compute.

Every key is required (``null`` where a section does not apply); an unknown key, a missing key, a
value of the wrong type or a non-positive learning rate raises ``ParamsError`` with a one-line message
naming the dotted key. Numbers that ``dvc exp run -S`` writes in a form PyYAML reads as strings
(``1e-05``) are accepted as numbers (treeverse/dvc#5971).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Optional

import yaml

from . import methods as _methods
from .validation import ParamsError, require_positive, build

METHODS = _methods.NAMES  # every registered method (methods.py); params.methods picks those trained
SEED_SUFFIX = "_seed"  # "sft_seed": SFT retrained from controls.seed (connectivity pairs may name it)
__all__ = ["ParamsError", "build", "load", "METHODS"]


# ---------------------------------------------------------------- sections
@dataclass(frozen=True)
class Source:
    """One dataset: generated problems, a hub dataset, or a local JSONL file of a known format."""
    kind: Literal["generated", "hub", "jsonl"]
    format: Literal["generated", "gsm8k", "aime", "deepscaler"]
    path: Optional[str]  # hub id or local file; null for generated
    config: Optional[str]  # hub config name (gsm8k: "main")
    split: Optional[str]
    n: Optional[int]  # first n rows (generated: how many); null = all

    def check(self, prefix):
        if (self.kind == "generated") != (self.format == "generated"):
            raise ParamsError(f"{prefix}.format: kind {self.kind!r} cannot read format {self.format!r}")
        if self.kind != "generated" and not self.path:
            raise ParamsError(f"{prefix}.path: required for kind {self.kind!r}")
        if self.kind == "generated" and self.n is None:
            raise ParamsError(f"{prefix}.n: required for generated problems")
        if self.n is not None and self.n <= 0:
            raise ParamsError(f"{prefix}.n: must be positive, got {self.n}")


@dataclass(frozen=True)
class Generator:
    seed: int
    min_ops: int
    max_ops: int
    max_value: int
    n_pretrain: int


@dataclass(frozen=True)
class Prepare:
    train: Source
    eval: dict[str, Source]
    generator: Optional[Generator]  # required when a source is generated

    def check(self, prefix):
        sources = {"train": self.train, **{f"eval.{k}": v for k, v in self.eval.items()}}
        for name, src in sources.items():
            if src.kind == "generated" and self.generator is None:
                raise ParamsError(f"{prefix}.generator: required by generated source {prefix}.{name}")
        if not self.eval:
            raise ParamsError(f"{prefix}.eval: at least one evaluation set")


@dataclass(frozen=True)
class TinyModel:
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    max_positions: int
    seed: int
    steps: int
    batch_size: int
    lr: float
    eval_every: int
    eval_n: int
    min_acc: float
    max_acc: float

    def check(self, prefix):
        require_positive(self, prefix, "vocab_size", "hidden_size", "layers", "heads", "kv_heads", "head_dim",
                  "intermediate_size", "max_positions", "steps", "batch_size", "lr", "eval_every", "eval_n")


@dataclass(frozen=True)
class HubModel:
    model_id: str
    revision: str


@dataclass(frozen=True)
class Base:
    kind: Literal["tiny", "hub"]
    tiny: Optional[TinyModel]
    hub: Optional[HubModel]

    def check(self, prefix):
        if getattr(self, self.kind) is None:
            raise ParamsError(f"{prefix}.{self.kind}: required when kind is {self.kind}")


@dataclass(frozen=True)
class OpenAIEngine:
    base_url: str
    model: str
    api_key_env: str
    concurrency: int
    max_retries: int  # the SDK's own retries (backoff, Retry-After honoured) before a request counts as failed
    timeout_s: float
    price_input_per_mtok: Optional[float] = None  # USD per 1M prompt tokens; null: no cost in metrics
    price_output_per_mtok: Optional[float] = None  # USD per 1M completion tokens


@dataclass(frozen=True)
class Generation:
    """Sampling settings shared by every engine."""
    engine: Literal["hf", "vllm", "openai"]
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int
    seed: int
    openai: Optional[OpenAIEngine]

    def check(self, prefix):
        require_positive(self, prefix, "max_new_tokens", "batch_size", "top_p")
        if self.temperature < 0:
            raise ParamsError(f"{prefix}.temperature: must be >= 0, got {self.temperature}")
        if self.engine == "openai" and self.openai is None:
            raise ParamsError(f"{prefix}.openai: required when engine is openai")


@dataclass(frozen=True)
class Prompt:
    """The user message: ``template.format(question=...)``; shared by pretraining, rollouts and eval."""
    template: str

    def check(self, prefix):
        if "{question}" not in self.template:
            raise ParamsError(f"{prefix}.template: must contain {{question}}")
        try:
            self.template.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise ParamsError(f"{prefix}.template: not a valid format string ({e})") from None

    def render(self, question: str) -> str:
        return self.template.format(question=question)


@dataclass(frozen=True)
class TinyTeacher:
    """The tiny default's teacher: the base pretrained ``steps`` more steps on the same corpus. Its
    strength is ``steps`` (``dvc exp run -S rollouts.teacher.tiny.steps=...`` sweeps it)."""
    steps: int  # pretraining steps beyond the base's (0: the base's weights, a teacher as weak as the student)
    lr: float
    batch_size: int
    seed: int  # batch draws (the base uses base.tiny.seed)
    eval_every: int
    style: Literal["plain", "steps"]  # how its worked solutions are written (problems.restyle); plain = the base's

    def check(self, prefix):
        require_positive(self, prefix, "lr", "batch_size", "eval_every")
        if self.steps < 0:
            raise ParamsError(f"{prefix}.steps: must be >= 0, got {self.steps}")


@dataclass(frozen=True)
class Teacher:
    """The model that writes the rollout table (the paper: DeepSeek-V4-Flash behind an API).

    student: the base samples its own table; tiny: the base pretrained further in the pipeline (needs
    base.kind tiny); hub: a model id (or local folder) for the hf/vllm engines; api: the openai
    engine's model (rollouts.generation.openai)."""
    kind: Literal["student", "tiny", "hub", "api"]
    tiny: Optional[TinyTeacher]
    hub: Optional[HubModel]

    def check(self, prefix):
        if self.kind in ("tiny", "hub") and getattr(self, self.kind) is None:
            raise ParamsError(f"{prefix}.{self.kind}: required when kind is {self.kind}")


@dataclass(frozen=True)
class Rollouts:
    teacher: Teacher
    k: int
    # the first n prompts each get one more row after their k samples: the gold answer written as a
    # completion (column ``source`` = "gold"), for a base too weak to be right on its own; 0 = none
    gold_rows: int
    generation: Generation

    def check(self, prefix):
        require_positive(self, prefix, "k")
        if self.gold_rows < 0:
            raise ParamsError(f"{prefix}.gold_rows: must be >= 0, got {self.gold_rows}")


@dataclass(frozen=True)
class Lora:
    """Attention-only LoRA: W0 x + (alpha/r) B A x (alpha/sqrt(r) with rsLoRA)."""
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[Literal["q_proj", "k_proj", "v_proj", "o_proj"], ...]  # attention only
    use_rslora: bool

    def check(self, prefix):
        require_positive(self, prefix, "r", "alpha")
        if not self.target_modules or len(set(self.target_modules)) != len(self.target_modules):
            raise ParamsError(f"{prefix}.target_modules: empty or repeated entries")
        if not 0 <= self.dropout < 1:
            raise ParamsError(f"{prefix}.dropout: must lie in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class Train:
    """Shared by every method: the loss is the only thing that differs between runs."""
    launcher: str  # how dvc.yaml starts the train script: "python" or "accelerate launch ..."
    seed: int
    steps: int
    compare_step: Optional[int]  # adapter compared by the analyses; null = steps
    batch_size: int  # effective batch: rows (pairs for DPO) per optimiser step
    micro_batch_size: int
    warmup_ratio: float
    weight_decay: float
    grad_clip: float
    max_length: int
    bf16: bool
    gradient_checkpointing: bool
    checkpoint_every: Optional[int]  # steps between resumable checkpoints; null = none (a kill restarts at 0)
    lora: Lora

    def check(self, prefix):
        require_positive(self, prefix, "steps", "batch_size", "micro_batch_size", "grad_clip", "max_length")
        if not (self.launcher == "python" or self.launcher.startswith("accelerate launch")):
            raise ParamsError(f"{prefix}.launcher: 'python' or 'accelerate launch ...', got {self.launcher!r}")
        if self.batch_size % self.micro_batch_size:
            raise ParamsError(f"{prefix}.batch_size: {self.batch_size} is not a multiple of micro_batch_size "
                              f"{self.micro_batch_size}")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ParamsError(f"{prefix}.checkpoint_every: must be positive or null, got {self.checkpoint_every}")
        if self.compare_step is not None and not 0 < self.compare_step <= self.steps:
            raise ParamsError(f"{prefix}.compare_step: must lie in 1..steps={self.steps}, got {self.compare_step}")
        if not 0 <= self.warmup_ratio < 1:
            raise ParamsError(f"{prefix}.warmup_ratio: must lie in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class Geometry:
    reference: Literal[METHODS]  # orthogonal fraction is measured off this method (the paper: sft)
    top_k: int  # principal angles between the top-k left singular subspaces (paper: 10 of r=32)

    def check(self, prefix):
        require_positive(self, prefix, "top_k")


@dataclass(frozen=True)
class AvgK:
    """k sampled completions per problem on the named sets, scored as avg@k (the paper's AIME)."""
    k: int
    temperature: float
    top_p: float
    sets: tuple[str, ...]

    def check(self, prefix):
        require_positive(self, prefix, "k", "temperature", "top_p")


@dataclass(frozen=True)
class Evaluate:
    generation: Generation  # greedy: temperature 0
    avg_k: Optional[AvgK]

    def check(self, prefix):
        if self.generation.temperature != 0:
            raise ParamsError(f"{prefix}.generation.temperature: pass@1 is greedy, set 0 (avg_k samples)")


@dataclass(frozen=True)
class Compare:
    level: float  # confidence level of the intervals
    bootstrap: int  # resamples for avg@k intervals
    seed: int

    def check(self, prefix):
        if not 0 < self.level < 1:
            raise ParamsError(f"{prefix}.level: must lie in (0, 1), got {self.level}")
        require_positive(self, prefix, "bootstrap")


@dataclass(frozen=True)
class Connectivity:
    pairs: tuple[str, ...]  # "a-b": merge alpha dW_a + (1 - alpha) dW_b; "sft_seed" is SFT from controls.seed
    points: int  # alpha grid: linspace(0, 1, points)
    set: str  # evaluation set whose gold answers score the merged models
    n: int  # first n problems
    batch_size: int

    def check(self, prefix):
        require_positive(self, prefix, "n", "batch_size")
        if self.points < 3:
            raise ParamsError(f"{prefix}.points: need at least 3 grid points, got {self.points}")
        for i, pair in enumerate(self.pairs):
            parts = pair.split("-")
            if (len(parts) != 2 or parts[0] == parts[1]
                    or any(x.removesuffix(SEED_SUFFIX) not in METHODS for x in parts)):
                raise ParamsError(f"{prefix}.pairs[{i}]: {pair!r} is not 'a-b' with two different methods")


@dataclass(frozen=True)
class CKA:
    set: str
    n: int  # prompts (the paper: 100 GSM8K prompts)
    batch_size: int

    def check(self, prefix):
        require_positive(self, prefix, "batch_size")
        if self.n < 4:
            raise ParamsError(f"{prefix}.n: the debiased estimator needs at least 4 prompts, got {self.n}")


@dataclass(frozen=True)
class LrMatched:
    """``method`` retrained at ``lr_of``'s peak LR (the paper's DPO runs at 1/10 of the others' LR)."""
    method: Literal[METHODS]
    lr_of: Literal[METHODS]


@dataclass(frozen=True)
class Controls:
    """The paper's controls, run by the default pipeline: every method retrained from ``seed`` (its own
    LoRA init and row order: the method's noise floor), the LR-matched run, and an optional LR sweep
    (each method at ``multiplier x`` its own LR; empty = off)."""
    seed: int
    lr_matched: LrMatched
    lr_sweep: tuple[float, ...]

    def check(self, prefix):
        for i, x in enumerate(self.lr_sweep):
            if x <= 0 or x == 1:
                raise ParamsError(f"{prefix}.lr_sweep[{i}]: a multiplier must be positive and not 1, got {x}")
        if len(set(self.lr_sweep)) != len(self.lr_sweep):
            raise ParamsError(f"{prefix}.lr_sweep: repeated multipliers {list(self.lr_sweep)}")
        if self.lr_matched.method == self.lr_matched.lr_of:
            raise ParamsError(f"{prefix}.lr_matched.lr_of: must differ from lr_matched.method")


@dataclass(frozen=True)
class Report:
    accuracy_set: str  # the evaluation set whose accuracy the claims read (paper: gsm8k)
    aime_set: Optional[str]  # the AIME set of the AIME claim (paper: aime26); null = not measured


@dataclass(frozen=True)
class Params:
    profile: str
    threads: int  # torch threads of every stage; results are bit-equal only at equal thread counts
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
    # one section per registered method, keyed by its name (methods.REGISTRY: each entry's params class)
    method_params: Any

    def check(self, prefix):
        if self.controls.seed == self.train.seed:
            raise ParamsError(f"controls.seed: must differ from train.seed={self.train.seed}")
        for key in ("method", "lr_of"):
            if getattr(self.controls.lr_matched, key) not in self.methods:
                raise ParamsError(f"controls.lr_matched.{key}: {getattr(self.controls.lr_matched, key)!r} is not in "
                                  "methods")
        for key in ("accuracy_set", "aime_set"):
            name = getattr(self.report, key)
            if name is not None and name not in self.prepare.eval:
                raise ParamsError(f"report.{key}: {name!r} is not an evaluation set")
        for sec in ("connectivity", "cka"):
            name = getattr(self, sec).set
            if name not in self.prepare.eval:
                raise ParamsError(f"{sec}.set: {name!r} is not an evaluation set in prepare.eval")
        for i, pair in enumerate(self.connectivity.pairs):
            if any(x.removesuffix(SEED_SUFFIX) not in self.methods for x in pair.split("-")):
                raise ParamsError(f"connectivity.pairs[{i}]: {pair!r} uses a method not in methods")
        if self.evaluate.avg_k is not None:
            for name in self.evaluate.avg_k.sets:
                if name not in self.prepare.eval:
                    raise ParamsError(f"evaluate.avg_k.sets: {name!r} is not an evaluation set in prepare.eval")
        if self.geometry.top_k > self.train.lora.r:
            raise ParamsError(f"geometry.top_k: {self.geometry.top_k} exceeds the LoRA rank train.lora.r="
                              f"{self.train.lora.r}")
        if self.geometry.reference not in self.methods:
            raise ParamsError(f"geometry.reference: {self.geometry.reference!r} is not in methods")
        if not self.methods:
            raise ParamsError("methods: empty")
        if len(set(self.methods)) != len(self.methods):
            raise ParamsError(f"methods: duplicate entries in {list(self.methods)}")
        for m in METHODS:
            require_positive(self.method_params[m], m, "lr")
        t, engine = self.rollouts.teacher, self.rollouts.generation.engine
        if (t.kind == "api") != (engine == "openai"):
            raise ParamsError(f"rollouts.teacher.kind: {t.kind!r} does not go with rollouts.generation.engine "
                              f"{engine!r} (the api teacher is the openai engine's model, and only it)")
        if t.kind == "tiny" and self.base.kind != "tiny":
            raise ParamsError("rollouts.teacher.kind: tiny needs base.kind tiny (it continues the base's pretraining)")

    def method(self, name: str):
        """The params section of method ``name``; raises ParamsError for an unknown method."""
        _methods.get(name)
        return self.method_params[name]


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
    """Validate a whole params mapping: every registered method's section with its registry params
    class, the rest with ``Params``."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: expected a mapping, got {type(raw).__name__}")
    if "method_params" in raw:
        raise ParamsError("method_params: unknown key (method sections are top-level keys named after the method)")
    rest, sections = dict(raw), {}
    for name, entry in _methods.REGISTRY.items():
        if name not in rest:
            raise ParamsError(f"{name}: missing key (every registered method has a section)")
        sections[name] = build(entry.params, rest.pop(name), name)
    return build(Params, {**rest, "method_params": MappingProxyType(sections)})
