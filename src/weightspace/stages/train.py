"""Stage train@<method>: one LoRA adapter from the shared rollouts, init and row order.

Writes ``<out>/`` (PEFT adapter at ``train.compare_step``; the final one in ``<out>/final`` when
later), ``<deltas>`` (its per-module factors, the only form the geometry reads), ``<metrics>`` and
per-step curves under ``<plots>`` (dvclive). ``--lr-of M`` trains at method M's peak LR instead of
its own (the LR-matched control). Runs unchanged under ``accelerate launch``.
Params: ``<method>``, ``train``, ``threads`` (and ``<M>.lr`` with ``--lr-of M``)."""

from __future__ import annotations

import logging

from ..rollouts import load_table
from ..training import fit
from .common import parse, set_threads, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", required=True)
    pre.add_argument("--lr-of", default=None)
    known, rest = pre.parse_known_args(argv)
    args, params = parse(__doc__, {"base": "base model", "init": "init stage folder", "rollouts": "rollout table",
                                   "out": "adapter folder", "deltas": "deltas file", "metrics": "metrics JSON",
                                   "plots": "curve folder"}, rest)
    mcfg = params.method(known.method)  # unknown method: ParamsError before any compute
    lr = params.method(known.lr_of).lr if known.lr_of else mcfg.lr
    set_threads(params.threads)
    rows = load_table(args.rollouts)
    summary = fit(known.method, mcfg, lr, params.train, args.base, args.init, rows, args.out, args.deltas, args.plots)
    if summary:
        write_json(args.metrics, {**summary, "lr_of": known.lr_of or known.method})
        log.info("train@%s: %s", known.method, summary)


if __name__ == "__main__":
    main()
