"""Stage report: every claim of the paper beside this run's value -> ``<claims>`` (JSON) and a readable
Markdown report ``<out>`` with the figures linked in. Reads metric files only.
Params: ``report``, ``profile``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..claims import check
from .common import parse, write_json

log = logging.getLogger(__name__)

FIGURES = ["geometry/cosine_matrix.png", "geometry/angle_top1_matrix.png", "geometry/cosine_per_layer.png",
           "geometry/orthogonal_fraction_per_layer.png", "connectivity/connectivity.png", "cka/cka_per_layer.png"]


def verdict(holds) -> str:
    return {True: "holds", False: "does not hold", None: "not measured"}[holds]


def markdown(claims: list[dict], profile: str, acc_set: str, acc: dict, noise: dict | None, figures: Path,
             out: Path) -> str:
    n_hold = sum(c["holds"] is True for c in claims)
    n_fail = sum(c["holds"] is False for c in claims)
    lines = [f"# Claims of the paper against this run (profile: {profile})", "",
             f"{n_hold} of {len(claims)} claims hold, {n_fail} do not, {len(claims) - n_hold - n_fail} were not "
             "measured by this pipeline run. Thresholds are stated in each claim; values come from `metrics/*.json`.",
             ""]
    if profile == "tiny":
        lines += ["This is the tiny default: a 0.85M-parameter model trained here for a few minutes, 40 LoRA steps "
                  "per method on a few hundred rollouts. It exercises every stage; it is not expected to reproduce "
                  "the paper's numbers, and where a claim does not hold here that says nothing about Qwen3-4B.", ""]
    lines += ["| group | claim | paper | this run | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        claim = c["claim"].replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| {c['group']} | {claim} | {c['paper']} | `{json.dumps(c['this_run'])}` | "
                     f"**{verdict(c['holds'])}** |")
    if noise is not None:
        k = [key for key in noise if key.startswith("angle_top") and key != "angle_top1"][0]
        lines += ["", f"**Noise floor.** {noise['method'].upper()} trained from seed {noise['seeds'][1]} instead of "
                  f"{noise['seeds'][0]} (its own LoRA init and row order), same data and loss: global cosine "
                  f"{noise['cosine']:.3f}, median top-1 angle {noise['angle_top1']['median']:.1f} deg, median "
                  f"{k.replace('angle_top', 'top-')} angle {noise[k]['median']:.1f} deg, mean |<u1,u1'>| "
                  f"{noise['u1_alignment']:.3f}. Between-method values inside this range are within seed noise."]
    models = [k for k in acc if "-" not in k]
    lines += ["", f"## Accuracy on `{acc_set}` (greedy pass@1, 95% Wilson interval)", "",
              "| model | accuracy | interval | n |", "|---|---|---|---|"]
    lines += [f"| {m} | {acc[m]['acc']:.3f} | [{acc[m]['lo']:.3f}, {acc[m]['hi']:.3f}] | {acc[m]['n']} |"
              for m in models]
    lines += ["", "## Figures", ""]
    for f in FIGURES:
        p = figures / f
        if p.is_file():
            lines.append(f"![{f}]({os.path.relpath(p, out.parent)})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args, params = parse(__doc__, {"metrics_dir": "folder of metric files", "figures": "figures folder",
                                   "claims": "claims JSON", "out": "Markdown report"}, argv)
    d = Path(args.metrics_dir)
    load = lambda name: json.loads((d / f"{name}.json").read_text())  # noqa: E731
    accuracy = load("accuracy")
    acc_set = params.report.accuracy_set
    if acc_set not in accuracy:
        raise ValueError(f"report.accuracy_set: {acc_set!r} not in metrics/accuracy.json ({sorted(accuracy)})")
    metrics = {"geometry": load("geometry"), "accuracy": accuracy[acc_set], "connectivity": load("connectivity"),
               "cka": load("cka")}
    claims = check(metrics)
    write_json(args.claims, {"profile": params.profile, "accuracy_set": acc_set,
                             "holds": sum(c["holds"] is True for c in claims),
                             "does_not_hold": sum(c["holds"] is False for c in claims),
                             "claims": {c["id"]: c for c in claims}})
    out = Path(args.out)
    out.write_text(markdown(claims, params.profile, acc_set, accuracy[acc_set], metrics["geometry"].get("noise_floor"),
                            Path(args.figures), out))
    log.info("report: %d claims, %d hold", len(claims), sum(c["holds"] is True for c in claims))


if __name__ == "__main__":
    main()
