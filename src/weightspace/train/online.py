"""Online GRPO, the paper's contrast to the offline table: TRL's ``GRPOTrainer`` trains the shared LoRA
init on its own samples of the rollout table's prompts, rewarded by the grader that labels the table.

- Policy: the base plus the LoRA init of ``models/init`` (the same A matrices as every offline method;
  ``init_sha256`` in its metrics proves it), loaded as a trainable ``PeftModel`` and handed to TRL.
- Prompts: one per prompt group of the table, as the same chat message the offline methods train on
  (TRL renders it through the tokenizer's chat template, as ``sequences.prompt_ids`` does).
- Reward: ``grading.grade`` of the completion against the prompt's gold answer (``reward``), the
  function that labelled every row of the table.
- Objective: TRL's GRPO with ``num_generations`` samples per prompt, ``batch_size`` completions per
  optimiser step, ``beta`` (KL to the init; 0 = none, as in the paper), its ``loss_type``. With
  ``num_iterations`` 1 (TRL's default) the clipped ratio is 1 and the gradient is the plain policy
  gradient sum_i A_i grad log pi(y_i), A_i = (r_i - mean_g r) / std_g r (TRL's ``scale_rewards`` "group").
- Shared with the offline runs (``train``): AdamW, weight decay, gradient clipping, linear warmup then
  cosine to 0 (transformers' ``cosine`` schedule, ``training.schedule``),
  micro-batch size, bf16 and gradient checkpointing. Generation: transformers on CPU and by default
  (``engine`` hf); TRL's colocated vLLM (``engine`` vllm, the ``gpu`` extra).
- Repeatable on one machine (engine hf): TRL seeds sampling and the prompt order from ``seed``
  (``train.seed``, the twin's ``controls.seed``). No checkpoints (TRL's are pickles): a killed run
  starts again from step 0 and gives the same adapter.
- Engine vllm (the paper profile; not run by any test here, no GPU): TRL seeds vLLM by process index,
  not by ``seed``, so the run and its twin share vLLM's sampling seed and a rerun is not bit-identical;
  TRL's truncated importance-sampling correction of the vLLM/trainer log-prob mismatch stays on (its
  default: per-sequence ratio, sequences above 3 masked; its ratios go to the curves as
  ``importance_sampling_ratio_*``), so the gradient is the policy gradient reweighted by that ratio; vLLM's context is the
  longest prompt of the table plus ``max_completion_length``, its share of GPU memory
  ``gpu_memory_utilization``. The stage (``stages/train.py``) trains the run and its twin each in its own
  spawned process, so one process never holds two colocated vLLM engines. TRL pushes the policy's weights to
  its engine every step by merging the LoRA into the base weights and unmerging it (``sync_weights``); in bf16
  that moves W0 a little at every cycle, so ``keep_w0`` restores W0's exact bits after every unmerge.
"""

from __future__ import annotations

import logging
import math

from ..data import grading
from ..core.schema import ParamsError
from ..model.sequences import prompt_ids

log = logging.getLogger(__name__)


def completion_text(completion) -> str:
    """The text of a completion as TRL passes it: a string, or (conversational) a list of messages."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def reward(prompts, completions, gold, **_) -> list[float]:
    """r_i = ``grading.grade(completion_i, gold_i).reward`` in {0, 1}: the rollout table's own label."""
    return [float(v.reward) for v in grading.grade_many([completion_text(c) for c in completions], list(gold))]


def prompt_records(rows: list[dict], order: list[int]) -> list[dict]:
    """One record per prompt group, in the order of each group's first row in ``order``: the user message
    (TRL's conversational form), its gold answer and group index."""
    first = {}
    for i in order:
        first.setdefault(rows[i]["group"], rows[i])
    return [{"prompt": [{"role": "user", "content": r["prompt"]}], "gold": r["gold"], "group": g}
            for g, r in first.items()]


def train_cfg(mcfg, cfg):
    """``train`` with the online run's step count (no separate compare step): what the snapshot steps and
    the seed-alignment curve read."""
    return cfg.model_copy(update={"steps": mcfg.steps, "compare_step": None})


def grpo_config(mcfg, cfg, lr: float, seed: int, output_dir: str, processes: int = 1, max_prompt_length: int = 0):
    """TRL's ``GRPOConfig`` from the method's section and the shared ``train``; ParamsError before any
    compute when the batch does not split into micro-batches over the processes. ``max_prompt_length``
    (tokens) sizes vLLM's context (engine vllm)."""
    import torch
    from trl import GRPOConfig

    micro = min(cfg.micro_batch_size, mcfg.batch_size)
    if cfg.packing:
        log.warning("train.packing applies to the offline loop; TRL's GRPOTrainer pads")
    if mcfg.batch_size % (micro * processes):
        raise ParamsError(f"grpo_online.batch_size: {mcfg.batch_size} completions do not split into micro-batches of "
                          f"train.micro_batch_size={micro} over {processes} process(es)")
    return GRPOConfig(
        output_dir=output_dir, max_steps=mcfg.steps, learning_rate=lr, lr_scheduler_type="cosine",
        warmup_steps=math.ceil(cfg.warmup_ratio * mcfg.steps), weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.grad_clip, per_device_train_batch_size=micro,
        gradient_accumulation_steps=mcfg.batch_size // (micro * processes), num_generations=mcfg.num_generations,
        max_completion_length=mcfg.max_completion_length, temperature=mcfg.temperature, top_p=mcfg.top_p,
        beta=mcfg.beta, loss_type=mcfg.loss_type, seed=seed, data_seed=seed, bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        use_vllm=mcfg.engine == "vllm", vllm_mode="colocate", use_cpu=not torch.cuda.is_available(),
        vllm_max_model_length=(max_prompt_length + mcfg.max_completion_length) if mcfg.engine == "vllm" else None,
        **({"vllm_gpu_memory_utilization": mcfg.gpu_memory_utilization} if mcfg.engine == "vllm" else {}),
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, dataloader_num_workers=0)


def train(model, tok, mcfg, cfg, lr: float, rows: list[dict], order: list[int], seed: int, work: str,
          on_log=None, on_step=None, reward_fn=reward):
    """Run TRL's GRPOTrainer on the in-memory PEFT ``model`` over the prompts of ``rows`` (``order``: the
    persisted row order); returns (trainer, history), history one dict per step (step, loss, lr, reward,
    completion_length, kl, num_tokens). ``on_log(row)`` after each logged step, ``on_step(step, model)``
    after each optimiser step. ``work``: TRL's output folder (nothing is saved there). ``reward_fn``: TRL's
    reward function, the table's grader (``reward``); a test passes one whose rewards it knows."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOTrainer

    records = prompt_records(rows, order)
    longest = max(len(prompt_ids(tok, r["prompt"][0]["content"])) for r in records) if mcfg.engine == "vllm" else 0
    args = grpo_config(mcfg, cfg, lr, seed, work, world()[0], longest)
    history: list[dict] = []

    class Curves(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if not logs or "reward" not in logs:
                return  # the end-of-training summary
            row = {"step": state.global_step, "loss": logs.get("loss"), "lr": logs.get("learning_rate"),
                   "reward": logs["reward"], "completion_length": logs.get("completions/mean_length"),
                   "kl": logs.get("kl"), "num_tokens": logs.get("num_tokens"),
                   **{k.removeprefix("sampling/"): v for k, v in logs.items() if k.startswith("sampling/")}}
            history.append(row)
            if on_log is not None:
                on_log(row)

        def on_step_end(self, a, state, control, **kw):
            if on_step is not None:
                on_step(state.global_step, trainer.model)

    if mcfg.engine == "vllm":
        keep_w0(model)  # TRL's per-step merge/unmerge into the base weights would drift a bf16 W0
    trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=Dataset.from_list(records),
                          processing_class=tok, callbacks=[Curves()])
    trainer.remove_callback(PrinterCallback)  # the curves go to dvclive, not to stdout
    trainer.train()
    return trainer, history


def keep_w0(model) -> None:
    """After every ``model.unmerge_adapter()``, W0's exact bits again. TRL's colocated vLLM sync merges the LoRA
    into the frozen base weights and unmerges it at every step (``VLLMGeneration._iter_named_params``, on the
    object passed to ``GRPOTrainer`` as its model); in bf16, (W0 + dW) - dW rounds twice and is not W0, so the base
    would drift with every sync and the saved Delta W would be trained against a moved base. W0 is frozen, so one
    copy of every ``base_layer`` weight of the adapted modules, taken at the first merge (where the weights then
    are: the training device), is put back after each unmerge; a restore that does not find every copied weight
    under its name raises. The weights TRL pushes to vLLM are its own merge, untouched. Costs that copy: Qwen3-4B's
    q/k/v/o, 0.94B parameters, 1.9 GB in bf16."""
    import torch

    if not any(".base_layer." in n for n, _ in model.named_parameters()):
        raise ValueError("keep_w0: the model has no LoRA-adapted base weights (base_layer)")
    merge, unmerge, w0 = model.merge_adapter, model.unmerge_adapter, {}

    def merge_after_copy(*args, **kw):
        if not w0:
            w0.update({n: p.detach().clone() for n, p in model.named_parameters() if ".base_layer." in n})
        merge(*args, **kw)

    def exact_unmerge(*args, **kw):
        unmerge(*args, **kw)
        restored = 0
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in w0:
                    p.copy_(w0[n])
                    restored += 1
        if restored != len(w0):
            raise RuntimeError(f"keep_w0: restored {restored} of the {len(w0)} base weights copied at the first merge; "
                               "the model's parameter names changed (a wrapper?), so W0 is no longer guarded")

    model.merge_adapter, model.unmerge_adapter = merge_after_copy, exact_unmerge


def world() -> tuple[int, int]:
    """(processes, this process's rank) as ``accelerate launch`` / torchrun set them, known before any
    process group exists (the batch split is decided before TRL starts one)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
