"""Stage geometry: every weight-space analysis over the methods' deltas -> ``<metrics>`` (JSON),
per-layer tables in ``<plots>`` (CSV, for ``dvc plots`` and the figures stage).

Beside the between-method analyses (``analysis.analyse``), from ``controls``:
- ``seeds``: per method, the same metrics between its run from ``train.seed`` and its run from
  ``controls.seed`` (own LoRA init and row order): that method's noise floor. ``noise_floor`` repeats
  the reference method's, for the per-layer plot.
- ``seed_twins``: the between-method metrics again, on the seed twins (every method from
  ``controls.seed``): ``noise.bands`` turns the two into each number's seed band.
- ``lr_matched``: ``controls.lr_matched.method`` retrained at ``lr_of``'s LR, against every method.
- ``lr_step``: each run at another LR against the same method at its own LR: the LR ratio, the
  global cosine and the norm ratio ||dW_new|| / ||dW_own|| (the paper: a 10x step gives cosine
  about 0.55 and about 3x the norm).
- ``orthogonal_fraction.direction_off_offline`` (only when an online method ran): each online method's
  orthogonal fraction off its offline counterpart (online GRPO off offline GRPO), on both seed sets.
- ``pretrained`` (beyond the paper): each delta against the base's weights W0 (``pretrained.analyse_relative``,
  params ``geometry.pretrained``; W0 factorised once per module for every run), per method and, in
  ``plots/geometry/pretrained_*_per_layer.csv``, per layer; ``seed_twins.pretrained`` the same on the twins.
Params: ``geometry``, ``methods``, ``controls``, ``train.seed``, the LRs of ``controls.lr_matched``'s two
methods."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..weights import noise
from ..model.adapters import read_deltas
from ..model.models import load_w0
from ..weights.analysis import analyse
from ..weights.controls import controls, depth_profile, off_counterpart, relative
from ..core.pairs import Pair, Twin
from ..registry import parse_run_name
from ..core.tables import write_csv
from .common import parse, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"base": "the base model folder (or the base stage's hub.json folder)",
                                   "deltas": "folder of <method>.safetensors",
                                   "seed_deltas": "folder of the seed twins' <method>.safetensors",
                                   "lr_matched": "the LR-matched control's deltas file",
                                   "lr_sweep": "folder of the lr_sweep@<method> folders", "metrics": "metrics JSON",
                                   "plots": "folder for per-layer CSV tables"},
                         argv)
    cfg = params.geometry
    t0 = time.time()
    d = Path(args.deltas)
    deltas = {m: read_deltas(d / f"{m}.safetensors") for m in params.methods}
    metrics, tables = analyse(deltas, cfg.top_k, cfg.reference)
    seeds = {m: read_deltas(Path(args.seed_deltas) / f"{m}.safetensors") for m in params.methods}
    sweep = {}
    for f in sorted(Path(args.lr_sweep).glob("*/*.safetensors")):  # <lr_sweep>/<method>/<method>_lr<lr>
        m, lr = parse_run_name(f.stem)
        if m in params.methods:
            sweep[f.stem] = (m, lr / params.method(m).lr, read_deltas(f))
    matched = (params.controls.lr_matched.method, params.controls.lr_matched.lr_of)
    extra, seed_layers = controls(deltas, seeds, read_deltas(args.lr_matched), sweep, cfg.top_k,
                                  (params.train.seed, params.controls.seed), matched,
                                  {m: params.method(m).lr for m in matched})
    metrics.update(extra)
    metrics["noise_floor"] = {"method": cfg.reference, **metrics["seeds"][cfg.reference]}
    metrics["orthogonal_fraction_depth"] = depth_profile(tables["orthogonal_fraction_per_layer"])
    twins, twin_tables = analyse(seeds, cfg.top_k, cfg.reference)
    twins["orthogonal_fraction_depth"] = depth_profile(twin_tables["orthogonal_fraction_per_layer"])
    for run, ds in ((metrics, deltas), (twins, seeds)):
        off = off_counterpart(ds, cfg.top_k)
        if off:
            run["orthogonal_fraction"]["direction_off_offline"] = off
    metrics["seed_twins"] = {k: twins[k] for k in noise.banded_keys(cfg.top_k)}
    weights = load_w0(args.base, list(next(iter(deltas.values()))))
    rel, rel_twin, rel_tables = relative(deltas, seeds, weights, cfg.pretrained)
    metrics["pretrained"], metrics["seed_twins"]["pretrained"] = rel, rel_twin
    tables.update({f"pretrained_{k}": rows for k, rows in rel_tables.items()})
    for i, row in enumerate(tables["cosine_per_layer"]):
        row["noise_floor"] = seed_layers[cfg.reference][i]
        row.update({Pair(m, Twin(m).name).key: seed_layers[m][i] for m in params.methods})
    metrics["wall_s"] = round(time.time() - t0, 2)
    write_json(args.metrics, metrics)
    for name, rows in tables.items():
        write_csv(Path(args.plots) / f"{name}.csv", rows, "%.10g")
    log.info("geometry: %d methods (+ seeds, controls, %d sweep runs), %d modules, %.2fs", len(deltas), len(sweep),
             metrics["modules"], metrics["wall_s"])


if __name__ == "__main__":
    main()
