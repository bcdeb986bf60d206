"""One run shell for every method: ``fit(entry, ...)`` trains a registry entry from the shared LoRA init and
writes its outputs; only the loop differs.

The shell, the same for every method: the persisted row order (``read_order``), the policy loaded from the
shared init at its training precision (``training.load_policy``), the init's hash (``init_sha256``: one
initialisation for all), the dvclive curves, the adapters at the snapshot steps (``snapshot_steps``), the
adapter written whole (a ``.partial`` folder renamed), its factors (``deltas``) and the summary.

The loop that plugs in (``Offline``, ``Online``): what it checks before the model loads, how it trains
(``training.fit_model``, the loop shared by every offline loss, with resumable checkpoints; or TRL's
``GRPOTrainer`` on the policy's own samples, ``online.train``), which curves it logs and what it adds to the
summary. Runs unchanged under ``accelerate launch``: the main process writes, the others return ``{}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import adapters
from . import training
from .training import read_order, save_whole, snapshot_steps, write_factors

if TYPE_CHECKING:
    from .. import config
    from ..registry import Method


def train_cfg(entry: Method, mcfg, cfg: config.Train) -> config.Train:
    """The shared ``train`` section as this method's runs read it: an online run has its own step count and no
    separate compare step (``online.train_cfg``); what the snapshot steps read."""
    if entry.online:
        from . import online

        return online.train_cfg(mcfg, cfg)
    return cfg


def own_process(entry: Method, mcfg, cfg: config.Train, cuda: bool | None = None) -> bool:
    """Whether each run (the run, then its seed twin) trains in a fresh process: an online method on TRL's
    colocated vLLM, which claims its share of GPU memory up front and does not release it within a process; and
    on a GPU (``cuda``, default: one is visible) every run started by the ``python`` launcher, so the twin starts
    on an empty card, not beside the blocks PyTorch's caching allocator kept from the first run (a paper-profile
    DPO run peaks near an 80 GB card's size). Under ``accelerate launch`` the runs stay in the launched ranks."""
    if entry.online and mcfg.engine == "vllm":
        return True
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return cuda and cfg.launcher == "python"


class Offline:
    """The offline loop (``training.fit_model``): its units selected before the model loads, ``accelerate``'s
    processes, resumable checkpoints in ``checkpoint_dir`` (default ``checkpoints.folder_for(out)``), the adapter
    at ``train.compare_step`` (the final one in ``final/`` when later) kept there until the run completes."""

    def __init__(self, entry: Method, mcfg, lr: float, cfg: config.Train, rows: list[dict], out: Path, seed: int,
                 checkpoint_dir: str | None):
        from .checkpoints import folder_for

        self.entry, self.mcfg, self.lr, self.cfg, self.rows, self.out = entry, mcfg, lr, cfg, rows, out
        self.ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else folder_for(out)  # kept across runs
        self.compare = cfg.compare_step or cfg.steps

    def check(self, order: list[int]) -> None:
        """No training units: TrainingError before the model loads; then the processes."""
        import torch
        from accelerate import Accelerator

        training.select(self.entry, self.rows, order, self.mcfg)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                                       mixed_precision="bf16" if self.cfg.bf16 else "no")
        self.main = self.accelerator.is_main_process

    def policy_cfg(self) -> config.Train:
        return self.cfg

    def place(self, model):
        return model.to(self.accelerator.device)

    def run(self, model, tok, order, init_sha: str, log, at_step) -> dict:
        import hashlib
        import json
        import shutil

        from .checkpoints import Checkpoints

        cfg, acc = self.cfg, self.accelerator
        fingerprint = hashlib.sha256(json.dumps([self.entry.name, self.lr, repr(cfg), repr(self.mcfg), init_sha,
                                                 training.rows_sha256(self.rows), acc.num_processes]).encode()).hexdigest()
        self.checkpoints = Checkpoints(self.ckpt_dir, cfg.checkpoint_every, fingerprint)
        for d in (self.out, self.partial):
            if d.exists():
                shutil.rmtree(d)

        def save_at(step, unwrapped):  # into the checkpoint folder, so a resumed run still has it
            if not self.main:
                return
            at_step(step, unwrapped)
            if step in (self.compare, cfg.steps):
                save_whole(unwrapped, self.ckpt_dir / ("compare" if step == self.compare else "final"))

        summary = training.fit_model(model, acc, self.entry, self.mcfg, self.rows, order, cfg, self.lr, tok,
                                     on_step=lambda step, loss, lr_now: log({"loss": loss, "lr": lr_now}),
                                     save_at=save_at, checkpoints=self.checkpoints)
        acc.wait_for_everyone()
        return {**summary, "compare_step": self.compare}

    @property
    def partial(self) -> Path:
        return self.out.with_name(self.out.name + ".partial")

    def write_adapter(self) -> None:
        import shutil

        shutil.copytree(self.ckpt_dir / "compare", self.partial)
        if self.compare != self.cfg.steps:
            shutil.copytree(self.ckpt_dir / "final", self.partial / "final")
        self.partial.rename(self.out)  # the adapter appears whole or not at all

    def done(self) -> None:
        self.checkpoints.clear()  # the run is complete: its adapter is the output now


class Online:
    """Online GRPO (``online.train``: TRL's GRPOTrainer sampling from ``seed``): the batch split checked before the
    model loads, no checkpoints (TRL's are pickles: a killed run starts again from step 0), the adapter at the
    last step, the reward and completion-length curves and their summary."""

    def __init__(self, entry: Method, mcfg, lr: float, cfg: config.Train, rows: list[dict], out: Path, seed: int,
                 checkpoint_dir: str | None):
        from . import online

        self.entry, self.mcfg, self.lr, self.rows, self.out, self.seed = entry, mcfg, lr, rows, out, seed
        self.cfg = online.train_cfg(mcfg, cfg)

    def check(self, order: list[int]) -> None:
        from . import online
        from .checkpoints import folder_for

        self.work = folder_for(self.out)  # TRL's output folder; nothing is saved there
        # a batch that does not split: ParamsError before the model loads
        online.grpo_config(self.mcfg, self.cfg, self.lr, self.seed, str(self.work), online.world()[0])
        self.main = online.world()[1] == 0

    def policy_cfg(self) -> config.Train:
        # the base at its training precision, as the offline runs load it (bf16 weights under train.bf16, fp32
        # LoRA); TRL turns gradient checkpointing on itself (GRPOConfig)
        return self.cfg.model_copy(update={"gradient_checkpointing": False})

    def place(self, model):
        return model

    def run(self, model, tok, order, init_sha: str, log, at_step) -> dict:
        import math
        import shutil

        from . import online

        keys = ("loss", "lr", "reward", "completion_length") + (("kl",) if self.mcfg.beta > 0 else ())

        def on_log(row):
            log({**{k: float(row[k]) for k in keys if row[k] is not None},
                 # engine vllm: TRL's importance-sampling ratios of the vLLM samples
                 **{k.replace("/", "_"): float(v) for k, v in row.items() if k.startswith("importance_sampling")}})

        def on_step(step, m):
            if self.main:
                at_step(step, getattr(m, "module", m))

        self.trainer, history = online.train(model, tok, self.mcfg, self.cfg, self.lr, self.rows, order, self.seed,
                                             str(self.work), on_log, on_step)
        shutil.rmtree(self.work, ignore_errors=True)
        losses = [h["loss"] for h in history]
        if self.main and (len(history) != self.mcfg.steps or
                          not all(x is not None and math.isfinite(float(x)) for x in losses)):
            raise training.TrainingError(f"method {self.entry.name}: GRPOTrainer logged {len(history)} of "
                                         f"{self.mcfg.steps} steps, losses {losses[-3:]}: not a finite loss at every step")
        rewards = [h["reward"] for h in history] or [0.0]
        k = max(1, len(rewards) // 10)
        return {"final_loss": history[-1]["loss"] if history else None, "processes": self.trainer.args.world_size,
                "steps": self.mcfg.steps, "tokens": history[-1]["num_tokens"] if history else None,
                "units": len(self.trainer.train_dataset), "resumed_from_step": 0, "compare_step": self.mcfg.steps,
                "seed": self.seed, "reward_first_tenth": sum(rewards[:k]) / k, "reward_last_tenth": sum(rewards[-k:]) / k,
                "completion_length_mean": sum(h["completion_length"] for h in history) / max(1, len(history))}

    def write_adapter(self) -> None:
        save_whole(getattr(self.trainer.model, "module", self.trainer.model), self.out)

    def done(self) -> None:
        pass


def fit(entry: Method, mcfg, lr: float, cfg: config.Train, base: str, init: str, rows: list[dict], out: str,
        deltas: str | None = None, plots: str | None = None, *, seed: int, snapshot_dir: str | None = None,
        checkpoint_dir: str | None = None) -> dict:
    """Train method ``entry`` (params ``mcfg``, peak LR ``lr``, the shared ``train`` section ``cfg``) from the LoRA
    init and row order in ``init`` on the rollout ``rows``: its adapter to ``out`` (whole or not at all), its
    per-module factors to ``deltas`` (``adapters.write_deltas``), dvclive curves to ``plots``, the adapter at each of
    ``snapshot_steps(train_cfg(...))`` to ``snapshot_dir/step_<n>`` (kept: the caller reads them; a resumed run
    keeps those already written). ``seed``: an online run's sampling seed (an offline run's randomness is all in
    ``init``). Returns the run's summary (the main process; under ``accelerate launch`` the others ``{}``)."""
    from .training import lora_sha256, load_policy

    out_p = Path(out)
    loop = (Online if entry.online else Offline)(entry, mcfg, lr, cfg, rows, out_p, seed, checkpoint_dir)
    order = read_order(init, rows)
    loop.check(order)
    model, tok = load_policy(base, init, loop.policy_cfg())
    model = loop.place(model)
    init_sha = lora_sha256(model)  # identical across methods, offline and online: one shared initialisation
    live = None
    if plots is not None and loop.main:
        from dvclive import Live

        live = Live(dir=plots, dvcyaml=False, save_dvc_exp=False, report=None)

    def log(metrics: dict) -> None:
        if live is not None:
            for k, v in metrics.items():
                live.log_metric(k, v)
            live.next_step()

    snaps = set(snapshot_steps(train_cfg(entry, mcfg, cfg))) if snapshot_dir is not None else set()

    def at_step(step: int, unwrapped) -> None:
        if step in snaps:
            save_whole(unwrapped, adapters.snapshot_dir(snapshot_dir, step))

    t0 = time.time()
    summary = loop.run(model, tok, order, init_sha, log, at_step)
    if not loop.main:
        return {}
    loop.write_adapter()
    if live is not None:
        live.end()
    factors = write_factors(out_p, deltas)
    loop.done()
    return {**summary, "method": entry.name, "lr": lr, "init_sha256": init_sha, "modules": len(factors),
            "delta_frobenius": adapters.frobenius(factors), "wall_s": round(time.time() - t0, 2)}
