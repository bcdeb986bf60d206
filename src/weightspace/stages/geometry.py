"""Stage geometry: every weight-space analysis over the methods' deltas -> ``<metrics>`` (JSON),
per-layer tables in ``<plots>`` (CSV, for ``dvc plots``) and PNG figures in ``<figures>``.
Params: ``geometry``, ``methods``."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from .. import figures
from ..adapters import read_deltas
from ..analysis import analyse
from .common import parse, write_json

log = logging.getLogger(__name__)


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows([{k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])


def main(argv=None) -> None:
    args, params = parse(__doc__, {"deltas": "folder of <method>.safetensors", "metrics": "metrics JSON",
                                   "plots": "folder for per-layer CSV tables", "figures": "folder for PNG figures"},
                         argv)
    cfg = params.geometry
    t0 = time.time()
    deltas = {m: read_deltas(Path(args.deltas) / f"{m}.safetensors") for m in params.methods}
    metrics, tables = analyse(deltas, cfg.top_k, cfg.reference)
    metrics["wall_s"] = round(time.time() - t0, 2)
    write_json(args.metrics, metrics)
    for name, rows in tables.items():
        write_csv(Path(args.plots) / f"{name}.csv", rows)
    figures.geometry_figures(args.metrics, args.plots, args.figures, list(params.methods))
    log.info("geometry: %d methods, %d modules, %.2fs", len(deltas), metrics["modules"], metrics["wall_s"])


if __name__ == "__main__":
    main()
