"""Stage report: every claim of the paper beside this run's value -> ``<claims>`` (JSON) and a readable
Markdown report ``<out>`` (``report.markdown.render``: the claims, the between-method geometry with each method's
seed band beside it, the controls, accuracy, how the reward was decided, the RIFT form, the CKA layer convention,
and the figures) and ``<beyond>``, the W0-relative metrics beside their chance levels (beyond the paper; linked
from the report). Reads metric files only. With ``--replicates`` (``tools/replicates.py write``) covering this run,
the counts and each claim's verdict are the replicates' (``claims.RULE``); this run's own verdict stays beside
them as a diagnostic.
Params: ``report``, ``profile``, ``rift.variant``, ``controls``, ``train.steps``, ``methods``, ``compare.margin``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..report.claims import check
from ..report.markdown import BEYOND, count, render, render_beyond, replicates_for
from .common import parse, write_json

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, params = parse(__doc__, {"metrics_dir": "folder of metric files", "figures": "figures folder",
                                   "claims": "claims JSON", "out": "Markdown report",
                                   "beyond": "Markdown of the beyond-the-paper metrics, linked from the report",
                                   "replicates": "replicate file (tools/replicates.py), or 'none'"}, argv)
    if Path(args.beyond) != Path(args.out).with_name(BEYOND.name):
        raise ValueError(f"--beyond: the report links {BEYOND.name} beside it ({Path(args.out).with_name(BEYOND.name)}), "
                         f"not {args.beyond}")
    d = Path(args.metrics_dir)
    load = lambda name: json.loads((d / f"{name}.json").read_text())  # noqa: E731
    metrics = {name: load(name) for name in ("geometry", "accuracy", "connectivity", "cka", "rollouts")}
    metrics["alignment"] = {m: load(f"alignment/{m}")["curve"] for m in params.methods}
    sets = sorted(k for k in metrics["accuracy"] if k != "seed_twins")  # seed_twins: per set again, for the bands
    if params.report.accuracy_set not in sets:
        raise ValueError(f"report.accuracy_set: {params.report.accuracy_set!r} not in metrics/accuracy.json ({sets})")
    metrics["sets"] = {"accuracy_set": params.report.accuracy_set, "aime_set": params.report.aime_set}
    claims = check(metrics)
    path = Path(args.replicates)
    rep, no_rep = replicates_for(json.loads(path.read_text()) if args.replicates != "none" and path.is_file()
                                 else None, claims, params.profile)
    if rep is not None:
        for c in claims:
            j = rep["claims"][c["id"]]
            c["replicates"] = {k: j.get(k) for k in ("k", "n", "verdict", "unstable", "mean_interval")}
    counts = ({k: rep["counts"][k] for k in count(claims)} if rep else count(claims))
    write_json(args.claims, {"profile": params.profile, "accuracy_set": params.report.accuracy_set,
                             "aime_set": params.report.aime_set, "rift_variant": params.method('rift').variant,
                             **counts, "counted_over_runs": len(rep["runs"]) if rep else 1,
                             "counted_by": "replicates (claims.RULE)" if rep else f"this run alone: {no_rep}",
                             "single_run": count(claims), "claims": {c["id"]: c for c in claims}})
    out = Path(args.out)
    figures = [(f.relative_to(args.figures).as_posix(), os.path.relpath(f, out.parent))
               for f in sorted(Path(args.figures).rglob("*.png"))]  # every figure the figures stage drew
    run = {"profile": params.profile, "methods": list(params.methods), "controls_seed": params.controls.seed,
           "train_steps": params.train.steps, "accuracy_set": params.report.accuracy_set,
           "rift_variant": params.method("rift").variant, "pcfg": params.geometry.pretrained,
           "margin": params.compare.margin}
    beyond = render_beyond(metrics, run)
    Path(args.beyond).write_text(beyond if beyond is not None else
                                 "# Beyond the paper\n\nThis run's geometry has no W0-relative metrics.\n")
    out.write_text(render(claims, metrics, run, figures, rep, no_rep))
    log.info("report: %d claims, %s over %d run(s)", len(claims), counts, len(rep["runs"]) if rep else 1)


if __name__ == "__main__":
    main()
