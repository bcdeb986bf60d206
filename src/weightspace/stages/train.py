"""Stage train@<method>: one method's LoRA adapter from the shared rollouts, init and row order, and
its seed twin, the same method retrained from ``controls.seed``'s init and row order (its noise floor).

One process trains both (a stage pays its start-up once). Writes, per run: ``<out>/`` (PEFT adapter at
``train.compare_step``; the final one in ``<out>/final`` when later), ``<deltas>`` (its per-module
factors, the only form the geometry reads), ``<metrics>`` and per-step curves under ``<plots>``
(dvclive); the twin's under ``--seed-*``. Then the seed-alignment curve: at every checkpoint step, the
two runs' mean |<u1, u1'>| and |<v1, v1'>| over modules and their global cosine
(``<plots>/seed_alignment.csv``; also in ``<metrics>``), where a method's own direction rises above
its seed noise, or does not. Without the ``--seed-*`` paths it trains the one run. ``--lr-of M`` trains at
method M's peak LR (the LR-matched control). An online method (``methods.Method.online``: TRL's
GRPOTrainer, ``online.fit``) trains the same way from the same inits, its sampling seeded by
``train.seed`` (the twin: ``controls.seed``), its snapshots at its own step count; with ``engine`` vllm each
run trains in a fresh spawned process (``isolated``): TRL's colocated vLLM claims its share of GPU memory
up front and is not released within a process, so the run and its twin never hold two engines in one process.
Runs unchanged under
``accelerate launch``. Params: ``<method>``, ``train``, ``controls.seed``, ``threads`` (and ``<M>.lr`` with
``--lr-of M``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .. import methods
from ..rollouts import load_table
from ..training import TrainingError, fit, snapshot_steps
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)

TWIN = ("seed-init", "seed-out", "seed-deltas", "seed-metrics", "seed-plots")


def seed_alignment(a: Path, b: Path, steps: list[int]) -> list[dict]:
    """Per snapshot step: u1 / v1 alignment (mean over modules), the median over modules of the angle
    between u1 and u1' (degrees) and the global cosine between the two runs' adapters ``a/step_<n>`` and
    ``b/step_<n>``; a step where either adapter has not moved (Delta W = 0, an online run with no reward variance
    yet) is left out."""
    from ..adapters import frobenius, read_adapter
    from ..analysis import analyse

    rows = []
    for s in steps:
        fa, fb = read_adapter(a / f"step_{s}"), read_adapter(b / f"step_{s}")
        if frobenius(fa) == 0 or frobenius(fb) == 0:  # an online run whose groups had no reward variance yet
            log.info("seed alignment: step %d left out, an adapter has not moved from its init (Delta W = 0)", s)
            continue
        m, _ = analyse({"a": fa, "b": fb}, 1, "a")
        rows.append({"step": s, "u1_alignment": m["u1_alignment"]["a-b"], "v1_alignment": m["v1_alignment"]["a-b"],
                     "angle_u1_median": m["angle_top1"]["a-b"]["median"], "cosine": m["cosine"]["global"]["a-b"]})
    return rows


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


def own_process(method: str, mcfg) -> bool:
    """Whether each run of ``method`` trains in its own process: an online method on the vllm engine."""
    return methods.get(method).online and mcfg.engine == "vllm"


def main(argv=None) -> None:
    import argparse

    import pandas as pd

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
    lr = params.method(known.lr_of).lr if known.lr_of else mcfg.lr
    set_threads(params.threads)
    cfg, seeds, train_fn = params.train, (params.train.seed, params.controls.seed), fit
    if methods.get(known.method).online:
        from .. import online

        cfg, train_fn = online.train_cfg(mcfg, params.train), online.fit
    rows = load_table(args.rollouts)
    runs = [(args.init, args.out, args.deltas, args.metrics, args.plots)]
    if None not in twin:
        runs.append(tuple(twin))
    snaps = [Path(out).parent / ".checkpoints" / f"{Path(out).name}-snapshots" for _, out, *_ in runs]
    summaries = []
    for (init, out, deltas, metrics, plots), snap, seed in zip(runs, snaps, seeds):
        kw = {"seed": seed} if train_fn is not fit else {}
        call = (train_fn, known.method, mcfg, lr, cfg, args.base, init, rows, out, deltas, plots)
        kw["snapshot_dir"] = str(snap) if len(runs) == 2 else None
        summary = isolated(params.threads, *call, **kw) if own_process(known.method, mcfg) else call[0](*call[1:], **kw)
        summaries.append(summary)
    if not summaries[0]:
        return  # not the main process
    if len(runs) == 2:
        curve = seed_alignment(*snaps, snapshot_steps(cfg))
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(curve).to_csv(Path(args.plots) / "seed_alignment.csv", index=False)
        at = next((r for r in curve if r["step"] == (cfg.compare_step or cfg.steps)), None)
        if at is None:
            raise TrainingError(f"train@{known.method}: an adapter did not move from its init by the compare step "
                                "(Delta W = 0): no seed alignment to report")
        summaries[0] = {**summaries[0], "seed_alignment": {"compare_step": at, "curve": curve}}
        for snap in snaps:
            shutil.rmtree(snap)
    for (_, _, _, metrics, _), summary in zip(runs, summaries):
        write_json(metrics, {**summary, "lr_of": known.lr_of or known.method})
        log.info("train@%s: %s", known.method, {k: v for k, v in summary.items() if k != "seed_alignment"})


if __name__ == "__main__":
    main()
