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
  spawned process, so one process never holds two colocated vLLM engines.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

from . import grading
from .schema import ParamsError
from .sequences import prompt_ids

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
    args = grpo_config(mcfg, cfg, lr, seed, work, _world()[0], longest)
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

    trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=Dataset.from_list(records),
                          processing_class=tok, callbacks=[Curves()])
    trainer.remove_callback(PrinterCallback)  # the curves go to dvclive, not to stdout
    trainer.train()
    return trainer, history


def fit(method: str, mcfg, lr: float, cfg, base: str, init: str, rows: list[dict], out: str,
        deltas: str | None = None, plots: str | None = None, snapshot_dir: str | None = None, *, seed: int) -> dict:
    """Train the online method from the LoRA init ``init`` on the prompts of ``rows`` and write its adapter
    to ``out`` (whole or not at all), its factors to ``deltas``, per-step curves (loss, lr, reward, KL when
    ``beta`` > 0, completion length) to ``plots`` (dvclive) and, if given, the adapter at every snapshot
    step (``training.snapshot_steps(train_cfg(...))``) to ``snapshot_dir/step_<n>``. ``training.fit``'s
    contract, so ``stages/train.py`` treats both alike. Returns the summary (main process; others ``{}``)."""
    from . import adapters
    from .checkpoints import folder_for
    from .training import TrainingError, load_policy, lora_sha256, read_order, save_whole, snapshot_steps, write_factors

    order = read_order(init, rows)
    out_p = Path(out)
    work = folder_for(out_p)
    grpo_config(mcfg, cfg, lr, seed, str(work), _world()[0])  # a batch that does not split: ParamsError before the model loads
    # the base at its training precision, as the offline runs load it (bf16 weights under train.bf16, fp32 LoRA);
    # TRL turns gradient checkpointing on itself (GRPOConfig)
    model, tok = load_policy(base, init, cfg.model_copy(update={"gradient_checkpointing": False}))
    init_sha = lora_sha256(model)  # identical to the offline methods': one shared initialisation
    main = _world()[1] == 0
    live = None
    if plots is not None and main:
        from dvclive import Live

        live = Live(dir=plots, dvcyaml=False, save_dvc_exp=False, report=None)
    snaps = set(snapshot_steps(train_cfg(mcfg, cfg))) if snapshot_dir is not None else set()

    def on_log(row):
        if live is not None:
            for k in ("loss", "lr", "reward", "completion_length") + (("kl",) if mcfg.beta > 0 else ()):
                if row[k] is not None:
                    live.log_metric(k, float(row[k]))
            for k, v in row.items():  # engine vllm: TRL's importance-sampling ratios of the vLLM samples
                if k.startswith("importance_sampling"):
                    live.log_metric(k.replace("/", "_"), float(v))
            live.next_step()

    def on_step(step, m):
        if step in snaps and main:
            save_whole(getattr(m, "module", m), adapters.snapshot_dir(snapshot_dir, step))

    t0 = time.time()
    trainer, history = train(model, tok, mcfg, cfg, lr, rows, order, seed, str(work), on_log, on_step)
    shutil.rmtree(work, ignore_errors=True)
    if not main:
        return {}
    if live is not None:
        live.end()
    losses = [h["loss"] for h in history]
    if len(history) != mcfg.steps or not all(x is not None and math.isfinite(float(x)) for x in losses):
        raise TrainingError(f"method {method}: GRPOTrainer logged {len(history)} of {mcfg.steps} steps, losses "
                            f"{losses[-3:]}: not a finite loss at every step")
    save_whole(getattr(trainer.model, "module", trainer.model), out_p)
    factors = write_factors(out_p, deltas)
    rewards = [h["reward"] for h in history]
    k = max(1, len(rewards) // 10)
    return {"final_loss": history[-1]["loss"], "processes": trainer.args.world_size, "steps": mcfg.steps,
            "tokens": history[-1]["num_tokens"], "units": len(trainer.train_dataset), "resumed_from_step": 0,
            "method": method, "lr": lr, "compare_step": mcfg.steps, "init_sha256": init_sha, "modules": len(factors),
            "delta_frobenius": adapters.frobenius(factors), "seed": seed,
            "reward_first_tenth": sum(rewards[:k]) / k, "reward_last_tenth": sum(rewards[-k:]) / k,
            "completion_length_mean": sum(h["completion_length"] for h in history) / len(history),
            "wall_s": round(time.time() - t0, 2)}


def _world() -> tuple[int, int]:
    """(processes, this process's rank) as ``accelerate launch`` / torchrun set them, known before any
    process group exists (the batch split is decided before TRL starts one)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
