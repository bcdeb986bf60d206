"""Stage train@<method>: one method's LoRA adapter from the shared rollouts, init and row order, and
its seed twin, the same method retrained from ``controls.seed``'s init and row order (its noise floor).

One process trains both (a stage pays its start-up once). Writes, per run: ``<out>/`` (PEFT adapter at
``train.compare_step``; the final one in ``<out>/final`` when later), ``<deltas>`` (its per-module
factors, the only form the geometry reads), ``<metrics>`` and per-step curves under ``<plots>``
(dvclive); the twin's under ``--seed-*``. With the twin, both runs' adapters at every snapshot step
(``training.snapshot_steps``) go to ``<snapshots>/run`` and ``<snapshots>/seed``, and the steps to
``<snapshots>/snapshots.json``: the seed-alignment curve (stage ``alignment``) reads them. Without the
``--seed-*`` and ``--snapshots`` paths it trains the one run. ``--lr-of M`` trains at
method M's peak LR (the LR-matched control). An online method (``registry.Method.online``: TRL's
GRPOTrainer) trains through the same run shell (``train.run.fit``) from the same inits, its sampling seeded by
``train.seed`` (the twin: ``controls.seed``), its snapshots at its own step count. Each run trains in a fresh
spawned process (``isolated``, ``run.own_process``) with ``engine`` vllm (TRL's colocated vLLM claims its share of
GPU memory up front and is not released within a process, so the run and its twin never hold two engines in one
process), and on a GPU with the python launcher (the twin never starts beside the first run's cached memory).
Runs unchanged under ``accelerate launch``. Params: ``<method>``, ``train``, ``controls.seed`` (with the
twin), ``threads`` (and ``<M>.lr`` with ``--lr-of M``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .. import registry
from ..train import run
from ..model.adapters import SNAPSHOT_INDEX, SNAPSHOT_RUNS
from ..data.rollouts import load_table
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)

TWIN = ("seed-init", "seed-out", "seed-deltas", "seed-metrics", "seed-plots", "snapshots")


def _child_init(threads: int, level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s")
    set_threads(threads)


def isolated(threads: int, fn, *args, **kw):
    """``fn(*args, **kw)`` in a fresh spawned process (its own CUDA context and vLLM engine, freed when it
    exits), torch threads and logging set as here; returns its value or raises its exception."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_child_init,
                             initargs=(threads, os.environ.get("LOGLEVEL", "INFO"))) as pool:
        return pool.submit(fn, *args, **kw).result()


def main(argv=None) -> None:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", required=True)
    pre.add_argument("--lr-of", default=None)
    for name in TWIN:
        pre.add_argument(f"--{name}", default=None)
    known, rest = pre.parse_known_args(argv)
    twin = [getattr(known, n.replace("-", "_")) for n in TWIN]
    if None in twin and any(x is not None for x in twin):
        pre.error(f"train@{known.method}: the seed twin needs every one of --{', --'.join(TWIN)}, or none")
    args, params = parse(__doc__, {"base": "base model", "init": "init stage folder", "rollouts": "rollout table",
                                   "out": "adapter folder", "deltas": "deltas file", "metrics": "metrics JSON",
                                   "plots": "curve folder"}, rest)
    mcfg = params.method(known.method)  # unknown method: ParamsError before any compute
    entry = registry.get(known.method)
    lr = params.method(known.lr_of).lr if known.lr_of else mcfg.lr
    set_threads(params.threads)
    rows = load_table(args.rollouts)
    runs = [(args.init, args.out, args.deltas, args.metrics, args.plots)]
    snaps = [None]
    if None not in twin:
        runs.append(tuple(twin[:-1]))
        snaps = [Path(twin[-1]) / r for r in SNAPSHOT_RUNS]
        shutil.rmtree(snaps[0].parent, ignore_errors=True)  # an earlier run's steps never mix with this one's
    summaries = []
    seeds = [params.train.seed] + ([params.controls.seed] if len(runs) == 2 else [])  # the twin's: controls.seed
    for (init, out, deltas, metrics, plots), snap, seed in zip(runs, snaps, seeds):
        call = (run.fit, entry, mcfg, lr, params.train, args.base, init, rows, out, deltas, plots)
        kw = {"seed": seed, "snapshot_dir": None if snap is None else str(snap)}
        own = run.own_process(entry, mcfg, params.train)
        summary = isolated(params.threads, *call, **kw) if own else call[0](*call[1:], **kw)
        summaries.append(summary)
    if not summaries[0]:
        return  # not the main process
    if snaps[0] is not None:
        cfg = run.train_cfg(entry, mcfg, params.train)
        write_json(snaps[0].parent / SNAPSHOT_INDEX, {"steps": run.snapshot_steps(cfg),
                                                         "compare_step": cfg.compare_step or cfg.steps})
    for (_, _, _, metrics, _), summary in zip(runs, summaries):
        write_json(metrics, {**summary, "lr_of": known.lr_of or known.method})
        log.info("train@%s: %s", known.method, summary)


if __name__ == "__main__":
    main()
