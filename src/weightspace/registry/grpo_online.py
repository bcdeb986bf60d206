"""Online GRPO: TRL's GRPOTrainer on the policy's own samples of the table's prompts (``train.run.Online``); no loss
here, its trainer's own. Its offline counterpart, the geometry's second reference: ``grpo``."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import model_validator

from ..core.schema import NonNegative, OpenUnit, Positive, PositiveInt, Section, Share
from ._entry import Method


class GRPOOnline(Section):
    """Online GRPO (TRL's ``GRPOTrainer``): the policy samples its own completions of the table's prompts."""
    lr: Positive
    steps: PositiveInt  # optimiser steps (paper: 600)
    num_generations: PositiveInt  # completions per prompt, one GRPO group (paper: 8)
    batch_size: PositiveInt  # completions per optimiser step: prompts per step x num_generations
    beta: NonNegative  # KL coefficient to the init (paper and TRL's default: 0, no reference)
    temperature: Positive
    top_p: Share
    max_completion_length: PositiveInt
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"]  # TRL's token aggregation (its default: dapo)
    engine: Literal["hf", "vllm"]  # vllm: TRL's colocated vLLM (the gpu extra)
    # vllm: the share of GPU memory TRL's colocated engine claims beside the training (TRL's default 0.3);
    # null for hf. Its context is the table's longest prompt + max_completion_length (online.grpo_config).
    gpu_memory_utilization: Optional[OpenUnit]

    @model_validator(mode="after")
    def _rules(self):
        if (self.engine == "vllm") != (self.gpu_memory_utilization is not None):
            raise ValueError(f"gpu_memory_utilization: required when engine is vllm, null otherwise "
                             f"(engine {self.engine})")
        if self.num_generations < 2:
            raise ValueError(f"num_generations: a group needs at least 2 completions, got {self.num_generations}")
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size: {self.batch_size} completions is not a whole number of groups of "
                             f"num_generations={self.num_generations}")
        return self


METHOD = Method("grpo_online", GRPOOnline, "prompts", online=True, offline="grpo")
