"""The method registry: the one place where what a method *is* gets decided (how it trains: ``methods``).

A method = its params section (a ``schema.Section``, the ``params.yaml`` section of the same name), the
rollout rows it trains on, its loss (``losses.BATCH_LOSS[name]``, built on pure functions in ``losses``), whether that loss reads the
reference's log-probs, and what the loss is normalised by. The training loop (``training``), the
params loader (``config``) and every stage read these entries; nothing else compares method names. This
module imports no training code, so a stage that only reads the registry (every stage validates the
params through ``config``) never depends on the training code.

Adding a loss = a pure function in ``losses.py`` with its hand-derived test and its ``BATCH_LOSS``
entry, one ``Method`` entry below, and one section in ``params.yaml`` (and ``profiles/*.yaml``). ``dvc exp run -S 'methods=[...]'``
then trains it and every analysis covers it.

Training units (``Method.units``), in the persisted row order:

- ``all``: every row; ``positive``: rows with reward 1;
- ``pairs``: (chosen, rejected) row pairs of mixed groups (``pairing`` one: the first correct and the
  first incorrect row of the group in the order; all: every combination); pairs follow their group's
  first row;
- ``unpaired``: (row, other) for every row, where ``other`` is the nearest earlier row in the order
  (cyclically) from another prompt group: the row's completion under its own prompt is the training
  sequence, ``other``'s completion under the row's prompt the mismatched sequence of KTO's KL estimate.
- ``prompts``: the prompt groups (an online method samples its own completions of each prompt; its
  trainer, not the table's rows, decides what it trains on).

An online method (``Method.online``) has no loss here: ``online.fit`` trains it with TRL's
``GRPOTrainer`` from the same init, and its adapter enters every analysis like any other.

Normalisers: ``tokens`` = the completion tokens of the training rows of the effective batch (summed over
micro-batches and processes); ``units`` = the number of units (pairs, rows) of the effective batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import model_validator

from .schema import Number, ParamsError, Positive, PositiveInt, Section
from .units import Mismatch


# ---------------------------------------------------------------- params sections
class SFT(Section):
    lr: Positive


class RFT(Section):
    lr: Positive


class DFT(Section):
    lr: Positive


class RIFT(Section):
    lr: Positive
    variant: Literal["token", "sequence", "written"]
    neg_lambda: Number  # lambda >= 0: a wrong row's reward is -lambda

    @model_validator(mode="after")
    def _rules(self):
        if self.neg_lambda < 0:
            raise ValueError(f"neg_lambda: must be >= 0 (the negative reward is -neg_lambda), got {self.neg_lambda}")
        return self


class GRPO(Section):
    lr: Positive
    bias: Number
    std_norm: Literal["none", "group"]
    bias_scope: Literal["all", "all_correct"]


class DPO(Section):
    lr: Positive
    beta: Positive
    pairing: Literal["one", "all"]


class IPO(Section):
    lr: Positive
    tau: Positive  # the IPO regulariser: the loss pulls the length-averaged log-ratio margin to 1/(2 tau)
    pairing: Literal["one", "all"]


class SimPO(Section):
    lr: Positive
    beta: Positive  # reward scale of the length-averaged log-probability
    gamma: Number  # target reward margin
    pairing: Literal["one", "all"]


class GRPOOnline(Section):
    """Online GRPO (TRL's ``GRPOTrainer``): the policy samples its own completions of the table's prompts."""
    lr: Positive
    steps: PositiveInt  # optimiser steps (paper: 600)
    num_generations: PositiveInt  # completions per prompt, one GRPO group (paper: 8)
    batch_size: PositiveInt  # completions per optimiser step: prompts per step x num_generations
    beta: Number  # KL coefficient to the init (paper and TRL's default: 0, no reference)
    temperature: Positive
    top_p: Positive
    max_completion_length: PositiveInt
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"]  # TRL's token aggregation (its default: dapo)
    engine: Literal["hf", "vllm"]  # vllm: TRL's colocated vLLM (the gpu extra)
    # vllm: the share of GPU memory TRL's colocated engine claims beside the training (TRL's default 0.3);
    # null for hf. Its context is the table's longest prompt + max_completion_length (online.grpo_config).
    gpu_memory_utilization: Optional[Number]

    @model_validator(mode="after")
    def _rules(self):
        if (self.engine == "vllm") != (self.gpu_memory_utilization is not None):
            raise ValueError(f"gpu_memory_utilization: required when engine is vllm, null otherwise "
                             f"(engine {self.engine})")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization < 1:
            raise ValueError(f"gpu_memory_utilization: must lie in (0, 1) (the training shares the GPU), got "
                             f"{self.gpu_memory_utilization}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations: a group needs at least 2 completions, got {self.num_generations}")
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size: {self.batch_size} completions is not a whole number of groups of "
                             f"num_generations={self.num_generations}")
        if self.beta < 0 or self.top_p > 1:
            raise ValueError(f"beta must be >= 0 and top_p <= 1 (got beta={self.beta}, top_p={self.top_p})")
        return self


class KTO(Section):
    lr: Positive
    beta: Positive
    desirable_weight: Positive  # lambda_D, on correct rows
    undesirable_weight: Positive  # lambda_U, on wrong rows


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Method:
    name: str
    params: type  # its params.yaml section
    rows: Literal["all", "positive", "pairs", "unpaired", "prompts"]
    reference: bool = False  # the loss reads the reference's (the base's) sequence log-probs
    normaliser: Literal["tokens", "units"] = "tokens"
    min_micro_batch: int = 1  # train.micro_batch_size at least this (KTO: its z0 is a mean over a micro-batch)
    online: bool = False  # trained by ``online.fit`` (TRL's GRPOTrainer on its own samples), not ``training.fit``
    offline: Optional[str] = None  # an online method's offline counterpart (the geometry's second reference)

    def units(self, p, rows: list[dict], order: list[int]) -> list:
        """Training units in the persisted ``order`` (see the module docstring)."""
        if self.rows == "all":
            return list(order)
        if self.rows == "positive":
            return [i for i in order if rows[i]["reward"] == 1]
        if self.rows == "prompts":  # one per prompt group, in the order of each group's first row
            return list(dict.fromkeys(rows[i]["group"] for i in order))
        if self.rows == "unpaired":
            return [Mismatch((i, _other_group(rows, order, k))) for k, i in enumerate(order)]
        by_group: dict[int, list[int]] = {}
        for i in order:
            by_group.setdefault(rows[i]["group"], []).append(i)
        units = []
        for members in by_group.values():  # dict keeps first-seen (persisted) order
            pos = [i for i in members if rows[i]["reward"] == 1]
            neg = [i for i in members if rows[i]["reward"] == 0]
            if pos and neg:
                units += [(pos[0], neg[0])] if p.pairing == "one" else [(a, b) for a in pos for b in neg]
        return units


def _other_group(rows: list[dict], order: list[int], k: int) -> int:
    """The nearest row before position ``k`` of ``order`` (cyclically) whose prompt group differs."""
    g = rows[order[k]]["group"]
    for step in range(1, len(order)):
        j = order[(k - step) % len(order)]
        if rows[j]["group"] != g:
            return j
    raise ParamsError("kto: every rollout row shares one prompt; the KL estimate needs two prompts")


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("sft", SFT, "all"),
    Method("rft", RFT, "positive"),
    Method("dft", DFT, "all"),
    Method("rift", RIFT, "all"),
    Method("grpo", GRPO, "all"),
    Method("dpo", DPO, "pairs", reference=True, normaliser="units"),
    Method("ipo", IPO, "pairs", reference=True, normaliser="units"),
    Method("simpo", SimPO, "pairs", normaliser="units"),
    Method("kto", KTO, "unpaired", reference=True, normaliser="units", min_micro_batch=2),
    Method("grpo_online", GRPOOnline, "prompts", online=True, offline="grpo"),
)}
NAMES = tuple(REGISTRY)


def get(name: str) -> Method:
    """The registry entry of ``name``; ParamsError naming the known methods otherwise."""
    if name not in REGISTRY:
        raise ParamsError(f"method {name!r}: unknown (expected one of {', '.join(NAMES)})")
    return REGISTRY[name]


def run_name(method: str, lr: float) -> str:
    """``dpo_lr5e-06``, ``sft_lr0.0001``: the sweep run of ``method`` at peak LR ``lr``."""
    return f"{method}_lr{lr:g}"


def parse_run_name(name: str) -> tuple[str, float]:
    """(method, lr) of a ``run_name``."""
    m, lr = name.rsplit("_lr", 1)
    return m, float(lr)
