"""Stage geometry: every weight-space analysis over the methods' deltas -> ``<metrics>`` (JSON),
per-layer tables in ``<plots>`` (CSV, for ``dvc plots``) and PNG figures in ``<figures>``.
The noise floor: the same metrics between ``seed_control.method`` and its run from another seed.
Params: ``geometry``, ``methods``, ``seed_control``, ``train.seed``."""

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


def noise_floor(deltas, twin, params) -> tuple[dict, list[dict]]:
    """The geometry between ``seed_control.method`` (seed ``train.seed``) and its reseeded twin."""
    m, k = params.seed_control.method, params.geometry.top_k
    name = f"{m}@s{params.seed_control.seed}"
    pair = f"{m}-{name}"
    nf, tables = analyse({m: deltas[m], name: twin}, k, m)
    out = {"method": m, "seeds": [params.train.seed, params.seed_control.seed], "cosine": nf["cosine"]["global"][pair],
           "angle_top1": nf["angle_top1"][pair], f"angle_top{k}": nf[f"angle_top{k}"][pair],
           "u1_alignment": nf["u1_alignment"][pair], "v1_alignment": nf["v1_alignment"][pair],
           "frobenius": nf["frobenius"][name], "orthogonal_fraction": nf["orthogonal_fraction"]["direction"][name]}
    return out, [{"layer": r["layer"], "noise_floor": r[pair]} for r in tables["cosine_per_layer"]]


def main(argv=None) -> None:
    args, params = parse(__doc__, {"deltas": "folder of <method>.safetensors", "metrics": "metrics JSON",
                                   "seed_control": "deltas of the seed-control run",
                                   "plots": "folder for per-layer CSV tables", "figures": "folder for PNG figures"},
                         argv)
    cfg = params.geometry
    t0 = time.time()
    deltas = {m: read_deltas(Path(args.deltas) / f"{m}.safetensors") for m in params.methods}
    metrics, tables = analyse(deltas, cfg.top_k, cfg.reference)
    metrics["noise_floor"], noise_rows = noise_floor(deltas, read_deltas(args.seed_control), params)
    for row, noise in zip(tables["cosine_per_layer"], noise_rows):
        row["noise_floor"] = noise["noise_floor"]
    metrics["wall_s"] = round(time.time() - t0, 2)
    write_json(args.metrics, metrics)
    for name, rows in tables.items():
        write_csv(Path(args.plots) / f"{name}.csv", rows)
    figures.geometry_figures(args.metrics, args.plots, args.figures, list(params.methods))
    log.info("geometry: %d methods, %d modules, %.2fs", len(deltas), metrics["modules"], metrics["wall_s"])


if __name__ == "__main__":
    main()
