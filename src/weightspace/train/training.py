"""One training loop for every method: the loss is the only thing that differs.

Shared by all methods: the LoRA initialisation (``models/init``, made once from the seed), the row
order (a permutation of the rollout table made once from the seed and persisted; RFT filters it,
DPO orders its pairs by it), the optimiser (AdamW), the schedule (linear warmup + cosine), weight
decay, gradient clipping, the effective batch, the step count and the token normaliser (``registry._batch``).
Runs unchanged under ``accelerate launch`` (DDP): each process takes its slice of every effective
batch; the normaliser counts the tokens of the whole effective batch, and the loss is multiplied by
the process count because DDP averages gradients.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

import torch

from ..registry._batch import Batch
# Item, collate and sequence_logps: the loop's types and forward pass (tests import them from here)
from ..model.sequences import Item, collate, ids, pack, prompt_ids, sequence_logps, unpack  # noqa: F401
from ..core.units import Mismatch, Preference, sequences

if TYPE_CHECKING:
    from .. import config
    from ..registry import Method

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A method that cannot train (no rows, non-finite loss); the message names method and cause."""


def encode_rows(tok, rows: list[dict], max_length: int) -> dict[int, Item]:
    """Token ids of every table row, cut to ``max_length`` (the completion's end is cut first)."""
    items = {}
    for r in rows:
        p = prompt_ids(tok, r["prompt"])
        c = ids(tok, r["completion"]) + ([] if r["truncated"] else [tok.eos_token_id])
        c = c[: max(1, max_length - len(p))]
        items[r["row"]] = Item(r["row"], tuple(p), tuple(c))
    return items


def select(entry: Method, rows: list[dict], order: list[int], mcfg) -> list:
    """Training units of the method ``entry`` (params ``mcfg``) in the persisted order (``Method.units``):
    row ids, (chosen, rejected) pairs, or (row, mismatched row) for unpaired preferences."""
    units = entry.units(mcfg, rows, order)
    if not units:
        what = {"positive": "correct rollouts", "pairs": "mixed groups (both right and wrong)"}.get(entry.rows, "rows")
        raise TrainingError(f"method {entry.name}: 0 training units: no {what} among {len(rows)} rollout rows")
    return units


@torch.no_grad()
def reference_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sequence log-probs sum_t log pi_ref(y_t | x, y_<t) (B,) of the reference, the base (the PEFT
    ``model`` with its adapter disabled), on the SAME collated batch as the policy pass. Called inside
    the policy's ``autocast``, it runs at the policy's precision on the policy's shapes, so at the shared
    init (B = 0) reference == policy to the bit and the first DPO loss is exactly log 2 (an fp32
    reference beside a bf16 policy was off by 5e-4 nats on the tiny model)."""
    with model.disable_adapter():
        lp, mask = sequence_logps(model, batch)
    return (lp * mask).sum(-1)


def rows_sha256(rows: list[dict]) -> str:
    """Hash of the rollout table's content (canonical JSON of every row)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def lora_sha256(model) -> str:
    """Hash of every LoRA parameter (name and bytes, sorted by name): equal hashes = equal init."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted((n, p) for n, p in model.named_parameters() if "lora_" in n):
        h.update(name.replace(".default", "").encode())
        h.update(p.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def schedule(opt, cfg: config.Train):
    """The LR schedule of every run, offline and online: transformers' ``cosine`` (the one TRL's trainers
    build from ``lr_scheduler_type="cosine"``): the LR rises linearly from 0 over
    ``ceil(warmup_ratio * steps)`` steps, then falls to 0 at ``steps`` along a half cosine."""
    from transformers import get_scheduler

    return get_scheduler("cosine", opt, num_warmup_steps=math.ceil(cfg.warmup_ratio * cfg.steps),
                         num_training_steps=cfg.steps)


class LossFn:
    """The method's loss on one micro-batch (``Method.loss``, its registry module); everything else is shared.
    ``needs_reference``: the loop passes the reference's sequence log-probs of the same micro-batch."""

    def __init__(self, entry: Method, mcfg, rows: list[dict]):
        if entry.loss is None:
            raise ValueError(f"{entry.name}: has no micro-batch loss (an online method trains through train.run.Online)")
        self.entry, self.mcfg = entry, mcfg
        self.needs_reference = self.entry.reference
        self.reward = torch.tensor([float(r["reward"]) for r in rows])
        self.loss = entry.loss
        self.table = entry.table(mcfg, rows) if entry.table else {}

    def normaliser(self, batch: list, items: dict[int, Item]) -> float:
        """The effective batch's normaliser: its units, or the completion tokens of its rows."""
        if self.entry.normaliser == "units":
            return float(len(batch))
        return float(sum(len(items[u].completion) for u in batch))

    def __call__(self, logp, mask, unit_rows: list, normaliser: float, ref_seq: torch.Tensor | None = None):
        flat = [r for u in unit_rows for r in (u if isinstance(u, tuple) else (u,))]
        batch = Batch(logp, mask, torch.tensor(flat), self.reward, self.table, ref_seq, normaliser,
                        sequences(self.entry.rows))
        return self.loss(self.mcfg, batch)


def unit_items(unit, items: dict[int, Item]) -> list[Item]:
    """The sequences of a unit in ``units.sequences`` order: a row; a pair's chosen and rejected rows; or a
    ``Mismatch``'s row and the other row's completion under the row's prompt."""
    if isinstance(unit, Mismatch):
        i, j = unit
        # no longer than the longer of the two real sequences (each within train.max_length)
        room = max(len(items[i].prompt) + len(items[i].completion), len(items[j].prompt) + len(items[j].completion))
        return [items[i], Item(i, items[i].prompt, items[j].completion[: max(1, room - len(items[i].prompt))])]
    if isinstance(unit, Preference):
        return [items[r] for r in unit]
    if isinstance(unit, int):
        return [items[unit]]
    raise TypeError(f"not a training unit (units.py): {unit!r}")


def train(model, accelerator, method: str, units: list, items: dict[int, Item], loss_fn: LossFn,
          cfg: config.Train, lr: float, pad_id: int, on_step=None, save_at=None, checkpoints=None,
          reuse_reference: bool = True) -> dict:
    """Run ``cfg.steps`` optimiser steps of ``method``; returns summary numbers.

    Step s trains on units [s*B, (s+1)*B) of the persisted order, wrapping around (epochs repeat the
    order). ``on_step(step, loss, lr)`` logs; ``save_at(step, model)`` is called after each step (for
    the compare step's adapter). ``checkpoints`` (``checkpoints.Checkpoints``): resume from its latest
    checkpoint (the logged history is replayed through ``on_step``) and write one when due.
    ``reuse_reference``: the reference log-probs of a micro-batch seen before are taken from memory
    (the same bits: same units, shapes and precision) instead of a second forward pass."""
    world, rank = accelerator.num_processes, accelerator.process_index
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = schedule(opt, cfg)
    start, history = checkpoints.restore(model, opt, sched) if checkpoints is not None else (0, [])
    raw_opt = opt
    model, opt = accelerator.prepare(model, opt)
    unwrapped = accelerator.unwrap_model(model)
    one_row = str(getattr(unwrapped.config, "_attn_implementation", "")).startswith("flash")  # see sequences.pack
    model.train()
    B, micro, t0, loss_total = cfg.batch_size, cfg.micro_batch_size, time.time(), float("nan")
    for step, loss_h, lr_h in history:
        loss_total = loss_h
        if on_step is not None:
            on_step(step, loss_h, lr_h)
    tokens = sum(len(it.completion) for step in range(start) for j in range(B)
                 for it in unit_items(units[(step * B + j) % len(units)], items))
    # the reference's log-probs of a micro-batch depend only on its units (the adapter is off): computed
    # once per distinct micro-batch, in the same autocast and shapes, so a cached value is the same bits
    ref_cache: dict[tuple, torch.Tensor] = {}
    for step in range(start, cfg.steps):
        batch = [units[(step * B + j) % len(units)] for j in range(B)]
        normaliser = loss_fn.normaliser(batch, items)
        tokens += sum(len(it.completion) for u in batch for it in unit_items(u, items))
        mine = batch[rank::world]
        chunks = [mine[i : i + micro] for i in range(0, len(mine), micro)]
        loss_sum = torch.zeros((), device=accelerator.device)
        for c, chunk in enumerate(chunks):
            flat = [it for u in chunk for it in unit_items(u, items)]
            ctx = accelerator.no_sync(model) if c < len(chunks) - 1 else contextlib.nullcontext()
            with ctx:
                batch_t = pack(flat, pad_id, one_row) if cfg.packing else collate(flat, pad_id)
                with accelerator.autocast():  # reference and policy: one batch, one precision
                    ref = None
                    if loss_fn.needs_reference:
                        ref = ref_cache.get(tuple(chunk)) if reuse_reference else None
                        if ref is None:
                            ref = ref_cache[tuple(chunk)] = reference_logps(unwrapped, batch_t)
                    logp, mask = sequence_logps(model, batch_t)
                loss = loss_fn(logp, mask, chunk, normaliser, ref)
                accelerator.backward(loss * world)
            loss_sum += loss.detach()
        loss_total = accelerator.reduce(loss_sum, reduction="sum").item()
        if not math.isfinite(loss_total):
            raise TrainingError(f"method {method}: non-finite loss {loss_total} at step {step + 1}")
        accelerator.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        history.append([step + 1, loss_total, sched.get_last_lr()[0]])
        if on_step is not None:
            on_step(step + 1, loss_total, sched.get_last_lr()[0])
        if save_at is not None:
            save_at(step + 1, unwrapped)
        if checkpoints is not None and accelerator.is_main_process and checkpoints.due(step + 1, cfg.steps):
            checkpoints.save(step + 1, unwrapped, raw_opt, sched, history)
    return {"final_loss": loss_total, "processes": world, "steps": cfg.steps, "tokens": tokens, "units": len(units),
            "resumed_from_step": start, "wall_s": round(time.time() - t0, 2)}


def fit_model(model, accelerator, entry: Method, mcfg, rows: list[dict], order: list[int], cfg: config.Train, lr: float,
              tok, **train_kw) -> dict:
    """Train ``method`` (params ``mcfg``) on an in-memory PEFT ``model``: its units of the table in
    ``order``, the encoded rows, its loss; ``train_kw`` go to ``train``. ``fit`` is this plus files."""
    units = select(entry, rows, order, mcfg)
    return train(model, accelerator, entry.name, units, encode_rows(tok, rows, cfg.max_length),
                 LossFn(entry, mcfg, rows), cfg, lr, tok.pad_token_id, **train_kw)


def snapshot_steps(cfg: config.Train) -> list[int]:
    """The steps whose adapters ``fit(snapshot_dir=...)`` keeps: every ``checkpoint_every``-th, the compare
    step and the last."""
    every = cfg.checkpoint_every or cfg.steps
    return sorted({s for s in range(every, cfg.steps + 1, every)} | {cfg.compare_step or cfg.steps, cfg.steps})


def read_order(init, rows: list[dict]) -> list[int]:
    """The persisted row order ``<init>/order.json``; TrainingError unless it permutes the table's rows."""
    import json
    from pathlib import Path

    order = json.loads((Path(init) / "order.json").read_text())
    if sorted(order) != list(range(len(rows))):
        raise TrainingError(f"{init}/order.json is not a permutation of the {len(rows)} rollout rows")
    return order


def save_whole(model, dest) -> None:
    """The PEFT adapter of ``model`` written to ``<dest>.partial``, then renamed: whole or not at all."""
    import shutil
    from pathlib import Path

    from ..model import adapters

    dest = Path(dest)
    part = dest.with_name(dest.name + ".partial")
    for d in (part, dest):
        if d.exists():
            shutil.rmtree(d)
    adapters.save_adapter(model, part)
    part.rename(dest)


def write_factors(adapter, deltas) -> dict:
    """The factors of the adapter folder ``adapter``; written to ``deltas`` (if given) through a
    ``.partial`` file, so the deltas file too appears whole or not at all."""
    from pathlib import Path

    from ..model import adapters

    factors = adapters.read_adapter(adapter)
    if deltas is not None:
        part = Path(str(deltas) + ".partial")
        adapters.write_deltas(part, factors)
        part.replace(deltas)
    return factors


def load_policy(base: str, init: str, cfg: config.Train):
    """(PEFT model, tokenizer): the base in ``base`` at its training precision, the LoRA init in ``init``
    trainable. ``train.bf16``: bf16 base weights (half of fp32's memory, the precision autocast computes in
    anyway), LoRA parameters in fp32 (PEFT's ``autocast_adapter_dtype=True`` upcasts bf16/fp16 adapters, so
    the fp32 init loads unrounded and AdamW updates fp32 factors). Merges for analysis stay in float64
    (``function_space``)."""
    from peft import PeftModel

    from ..model.models import load_base

    base_model, tok = load_base(base, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    model = PeftModel.from_pretrained(base_model, init, is_trainable=True, autocast_adapter_dtype=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model, tok
