"""Stage geometry: every weight-space analysis over the methods' deltas -> ``<metrics>`` (JSON),
per-layer tables in ``<plots>`` (CSV, for ``dvc plots`` and the figures stage).

Beside the between-method analyses (``analysis.analyse``):
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

from .. import noise
from ..adapters import read_deltas
from ..analysis import analyse
from ..config import SEED_SUFFIX as SEED
from ..pairs import Pair
from ..pretrained import analyse_relative, load_w0
from ..registry import parse_run_name
from ..tables import write_csv
from .common import parse, write_json

log = logging.getLogger(__name__)


def pair(fa, fb, top_k: int) -> tuple[dict, list[float]]:
    """The pair metrics of two adapters a, b: global cosine, median top-1 / top-k angles (with IQR),
    u1 / v1 alignment, both norms, b's orthogonal fraction off a; and the per-layer cosine."""
    m, tables = analyse({"a": fa, "b": fb}, top_k, "a")
    return ({"cosine": m["cosine"]["global"]["a-b"], "angle_top1": m["angle_top1"]["a-b"],
             f"angle_top{top_k}": m[f"angle_top{top_k}"]["a-b"], "u1_alignment": m["u1_alignment"]["a-b"],
             "v1_alignment": m["v1_alignment"]["a-b"], "frobenius": [m["frobenius"]["a"], m["frobenius"]["b"]],
             "orthogonal_fraction": m["orthogonal_fraction"]["direction"]["b"]},
            [r["a-b"] for r in tables["cosine_per_layer"]])


def controls(deltas: dict, seeds: dict, lr_matched, sweep: dict, params) -> tuple[dict, dict[str, list[float]]]:
    """``seeds``, ``lr_matched`` and ``lr_step`` metrics (module docstring) and per-layer seed cosines."""
    k, c = params.geometry.top_k, params.controls
    out: dict = {"seeds": {}, "lr_step": {}}
    per_layer = {}
    for m in params.methods:
        out["seeds"][m], per_layer[m] = pair(deltas[m], seeds[m], k)
        out["seeds"][m]["seeds"] = [params.train.seed, c.seed]
    lm, of = c.lr_matched.method, c.lr_matched.lr_of
    lr = {m: params.method(m).lr for m in (lm, of)}
    out["lr_matched"] = {"method": lm, "lr_of": of, "lr": lr[of], "own_lr": lr[lm],
                         "vs": {m: pair(deltas[m], lr_matched, k)[0] for m in params.methods}}
    steps = {"lr_matched": (lm, lr[of] / lr[lm], lr_matched)}
    steps.update({name: (m, mult, d) for name, (m, mult, d) in sweep.items()})
    for name, (m, ratio, d) in steps.items():
        p, _ = pair(deltas[m], d, k)
        out["lr_step"][name] = {"method": m, "lr_ratio": ratio, "cosine": p["cosine"],
                                "norm_ratio": p["frobenius"][1] / p["frobenius"][0],
                                "angle_top1": p["angle_top1"]["median"]}
    return out, per_layer


def off_counterpart(deltas: dict, top_k: int) -> dict[str, float]:
    """Each online method's orthogonal fraction (direction form, global) off its offline counterpart
    (``registry.Method.offline``), where both were trained: the second reference beside ``geometry.reference``."""
    from .. import registry

    out = {}
    for m in deltas:
        c = registry.get(m).offline
        if c is not None and c in deltas:
            out[m] = analyse({c: deltas[c], m: deltas[m]}, top_k, c)[0]["orthogonal_fraction"]["direction"][m]
    return out


def depth_profile(rows: list[dict]) -> dict:
    """Per method, the mean per-layer orthogonal fraction over the middle third of the layers and over
    the last 5/36 of them (the paper: GRPO 0.55 in mid layers, 0.79-0.86 in the last five of 36)."""
    n = len(rows)
    mid, late = rows[n // 3 : max(n // 3 + 1, 2 * n // 3)], rows[n - max(1, round(5 * n / 36)) :]
    methods = [k for k in rows[0] if k != "layer" and not k.endswith("_colspace")]
    return {m: {"mid": sum(r[m] for r in mid) / len(mid), "late": sum(r[m] for r in late) / len(late),
                "mid_layers": [r["layer"] for r in mid], "late_layers": [r["layer"] for r in late]} for m in methods}


def relative(deltas: dict, seeds: dict, base: str, pcfg) -> tuple[dict, dict, dict]:
    """``analyse_relative`` over every method and its seed twin at once (W0 factorised once per module):
    (the methods' metrics, the twins' method-keyed metrics keyed by method, the methods' per-layer tables)."""
    both = {**deltas, **{f"{m}{SEED}": seeds[m] for m in seeds}}
    weights = load_w0(base, list(next(iter(deltas.values()))))
    m, tables = analyse_relative(both, weights, pcfg.top_k, pcfg.eps, pcfg.eta, pcfg.partial_rank)
    main, twin = {}, {}
    for name, v in m.items():
        if not isinstance(v, dict):
            main[name] = v
        elif set(v) == {"global"}:  # pairs
            main[name] = {"global": {p: x for p, x in v["global"].items() if SEED not in p}}
            twin[name] = {"global": {p.replace(SEED, ""): x for p, x in v["global"].items()
                                     if all(q.endswith(SEED) for q in Pair.parse(p))}}
        else:
            main[name] = {k: x for k, x in v.items() if k in deltas}
            twin[name] = {k.removesuffix(SEED): x for k, x in v.items() if k.endswith(SEED)}
    keep = lambda row: {k: x for k, x in row.items() if k == "layer" or (SEED not in k)}  # noqa: E731
    return main, twin, {k: [keep(r) for r in rows] for k, rows in tables.items()}


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
    extra, seed_layers = controls(deltas, seeds, read_deltas(args.lr_matched), sweep, params)
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
    rel, rel_twin, rel_tables = relative(deltas, seeds, args.base, cfg.pretrained)
    metrics["pretrained"], metrics["seed_twins"]["pretrained"] = rel, rel_twin
    tables.update({f"pretrained_{k}": rows for k, rows in rel_tables.items()})
    for i, row in enumerate(tables["cosine_per_layer"]):
        row["noise_floor"] = seed_layers[cfg.reference][i]
        row.update({Pair(m, m + SEED).key: seed_layers[m][i] for m in params.methods})
    metrics["wall_s"] = round(time.time() - t0, 2)
    write_json(args.metrics, metrics)
    for name, rows in tables.items():
        write_csv(Path(args.plots) / f"{name}.csv", rows, "%.10g")
    log.info("geometry: %d methods (+ seeds, controls, %d sweep runs), %d modules, %.2fs", len(deltas), len(sweep),
             metrics["modules"], metrics["wall_s"])


if __name__ == "__main__":
    main()
