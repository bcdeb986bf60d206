"""Stage report: every claim of the paper beside this run's value -> ``<claims>`` (JSON) and a readable
Markdown report ``<out>`` (``report.markdown.render``: the claims, the between-method geometry with each method's
seed band beside it, the controls, accuracy, how the reward was decided, the RIFT form, the CKA layer convention,
and the figures). Reads metric files only.
Params: ``report``, ``profile``, ``rift.variant``, ``controls``, ``train.steps``, ``methods``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..report.claims import check
from ..report.markdown import count, render
from .common import parse, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"metrics_dir": "folder of metric files", "figures": "figures folder",
                                   "claims": "claims JSON", "out": "Markdown report"}, argv)
    d = Path(args.metrics_dir)
    load = lambda name: json.loads((d / f"{name}.json").read_text())  # noqa: E731
    metrics = {name: load(name) for name in ("geometry", "accuracy", "connectivity", "cka", "rollouts")}
    metrics["alignment"] = {m: load(f"alignment/{m}")["curve"] for m in params.methods}
    sets = sorted(k for k in metrics["accuracy"] if k != "seed_twins")  # seed_twins: per set again, for the bands
    if params.report.accuracy_set not in sets:
        raise ValueError(f"report.accuracy_set: {params.report.accuracy_set!r} not in metrics/accuracy.json ({sets})")
    metrics["sets"] = {"accuracy_set": params.report.accuracy_set, "aime_set": params.report.aime_set}
    claims = check(metrics)
    write_json(args.claims, {"profile": params.profile, "accuracy_set": params.report.accuracy_set,
                             "aime_set": params.report.aime_set, "rift_variant": params.method('rift').variant,
                             **count(claims),
                             "claims": {c["id"]: c for c in claims}})
    out = Path(args.out)
    figures = [(f.relative_to(args.figures).as_posix(), os.path.relpath(f, out.parent))
               for f in sorted(Path(args.figures).rglob("*.png"))]  # every figure the figures stage drew
    run = {"profile": params.profile, "methods": list(params.methods), "controls_seed": params.controls.seed,
           "train_steps": params.train.steps, "accuracy_set": params.report.accuracy_set,
           "rift_variant": params.method("rift").variant, "pcfg": params.geometry.pretrained}
    out.write_text(render(claims, metrics, run, figures))
    log.info("report: %d claims, %s", len(claims), count(claims))


if __name__ == "__main__":
    main()
