"""Stage report: every claim of the paper beside this run's value -> ``<claims>`` (JSON) and a readable
Markdown report ``<out>``: the claims, the between-method geometry with each method's seed band
beside it, the controls (LR-matched run, LR steps), accuracy, how the reward was decided, the RIFT
form and the CKA layer convention, and the figures. Reads metric files only.
Params: ``report``, ``profile``, ``rift.variant``, ``controls``, ``train.steps``, ``methods``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..claims import check, pair
from ..pairs import Pair, combinations
from .common import parse, write_json

log = logging.getLogger(__name__)

SEED_U1_TARGET = 0.9  # the regime's target for every method (the paper measures 0.99)
VERDICTS = ("holds", "does not hold", "undecided", "not measured")


def count(claims: list[dict]) -> dict[str, int]:
    return {v.replace(" ", "_"): sum(c["verdict"] == v for c in claims) for v in VERDICTS}


def claims_table(claims: list[dict]) -> list[str]:
    lines = ["| group | claim | paper | this run | seed twins | verdict |", "|---|---|---|---|---|---|"]
    for c in claims:
        text = c["claim"].replace("|", "\\|")  # a bare | would end the table cell
        value = "—" if c["holds"] is None else f"`{json.dumps(c['this_run'])}`"
        twin = f"`{json.dumps(c['seed_twins'])}`" if "seed_twins" in c else "—"
        lines.append(f"| {c['group']} | {text} | {c['paper']} | {value} | {twin} | **{c['verdict']}** |")
    return lines


def geometry_table(geo: dict, methods: list[str]) -> list[str]:
    """Every between-method number with the two methods' own seed values beside it: a value that is
    no further from "same update" than a method is from itself is within seed noise."""
    seeds, k = geo["seeds"], geo["top_k"]
    lines = ["| pair | cosine | seed cosine (a; b) | top-1 angle | seed top-1 (a; b) | "
             f"top-{k} angle | seed top-{k} (a; b) | u1 | seed u1 (a; b) | noise |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for a, b in combinations(methods):
        cos, ang1 = pair(geo["cosine"]["global"], a, b), pair(geo["angle_top1"], a, b)["median"]
        angk, u1 = pair(geo[f"angle_top{k}"], a, b)["median"], pair(geo["u1_alignment"], a, b)
        sa, sb = seeds[a], seeds[b]
        noise = [name for name, within in (
            ("cosine", cos >= min(sa["cosine"], sb["cosine"])),
            ("top-1", ang1 <= max(sa["angle_top1"]["median"], sb["angle_top1"]["median"])),
            (f"top-{k}", angk <= max(sa[f"angle_top{k}"]["median"], sb[f"angle_top{k}"]["median"])),
            ("u1", u1 >= min(sa["u1_alignment"], sb["u1_alignment"]))) if within]
        lines.append(f"| {a}-{b} | {cos:.3f} | {sa['cosine']:.3f}; {sb['cosine']:.3f} | {ang1:.1f} | "
                     f"{sa['angle_top1']['median']:.1f}; {sb['angle_top1']['median']:.1f} | {angk:.1f} | "
                     f"{sa[f'angle_top{k}']['median']:.1f}; {sb[f'angle_top{k}']['median']:.1f} | {u1:.3f} | "
                     f"{sa['u1_alignment']:.3f}; {sb['u1_alignment']:.3f} | "
                     + (f"within noise ({', '.join(noise)})" if noise else "above noise") + " |")
    return lines


def online_table(geo: dict, methods_run: list[str]) -> list[str]:
    """Each online method against the geometry's reference (SFT) and its offline counterpart: cosine,
    median top-1 / top-k angle and orthogonal fraction (direction form), each beside the same number on the
    seed twins (both methods from ``controls.seed``): |this - twin| is the number's seed band. Empty
    when no online method ran."""
    from .. import registry

    k, ref, twins = geo["top_k"], geo["reference"], geo["seed_twins"]
    lines = []
    for m in methods_run:
        c = registry.get(m).offline
        if c is None or c not in methods_run:
            continue
        lines += ["", f"## Online vs offline: {m} (on-policy samples) against {ref} and {c} (the table)", "",
                  "The same number on the seed twins (every method from `controls.seed`) stands beside each: their "
                  "difference is its seed band.", "",
                  f"| against | cosine | twins | top-1 angle | twins | top-{k} angle | twins | orthogonal fraction | twins |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for x, orth in ((ref, "direction"), (c, "direction_off_offline")):
            vals = []
            for g in (geo, twins):
                vals.append((pair(g["cosine"]["global"], m, x), pair(g["angle_top1"], m, x)["median"],
                             pair(g[f"angle_top{k}"], m, x)["median"], g["orthogonal_fraction"][orth][m]))
            (a, b, d, e), (ta, tb, td, te) = vals
            lines.append(f"| {x} | {a:.3f} | {ta:.3f} | {b:.1f} | {tb:.1f} | {d:.1f} | {td:.1f} | {e:.3f} | {te:.3f} |")
        own = geo["seeds"][m]
        lines.append(f"| its own seed twin | {own['cosine']:.3f} | | {own['angle_top1']['median']:.1f} | | "
                     f"{own[f'angle_top{k}']['median']:.1f} | | {own['orthogonal_fraction']:.3f} | |")
        if own["orthogonal_fraction"] >= geo["orthogonal_fraction"]["direction"][m]:
            lines += ["", f"{m} is at least as orthogonal to its own seed twin as to {ref}: its direction is not above "
                      "its seed noise, so its distance from the others is what two of its seeds show too (the claims "
                      "about it are undecided)."]
    return lines


def policy_line(p: dict) -> str:
    """The teacher output policy of the rollout table (``metrics/rollouts.json`` ``policy``) in one sentence."""
    reasoning = (f"{p['reasoning_kept']} completions carried the teacher's reasoning, kept as a `<think>` block"
                 if p["reasoning"] == "keep" else
                 f"{p['reasoning_dropped']} completions carried the teacher's reasoning, dropped")
    fate = (f"{p['rows_dropped']} of them with reward 1 were dropped from the table" if p["overlong"] == "drop" else
            f"{p['rows_flipped']} of them with reward 1 were counted as failures (reward 0)")
    return (f"- Teacher output: {reasoning} (`rollouts.reasoning: {p['reasoning']}`); {p['rows_cut']} rows were longer "
            f"than `train.max_length={p['max_length']}` student tokens, so training would cut their answer and EOS: "
            f"{fate} (`rollouts.overlong: {p['overlong']}`); a cut row with reward 0 stays as it is.")


# the literature's qualitative expectation of each W0-relative metric (README, "Relative to the pretrained weights")
EXPECT = {
    "energy_left": "The Path Not Taken (arXiv 2511.08567) reports on-policy RLVR updates off W0's principal "
                   "weights and subspaces; this energy share extrapolates that finding to offline losses (chance: "
                   "k / d_out of the energy)",
    "energy_right": "as energy_left, on the input side (chance: k / d_in)",
    "angle_left_top1": "larger where an update avoids W0's principal directions (the same extrapolation); chance "
                       "for a random k-subspace is far from 0",
    "intruders": "LoRA adds singular directions W0 lacks (Shuttleworth et al. 2024); random directions count as "
                 "intruders at this eps in small matrices, so read it with intruder_energy",
    "intruder_energy": "the share of W+'s top-k energy in intruder directions; grows with the update's size",
    "spectral_shift": "grows with ‖dW‖: a small value follows a small update (DPO's LR) before any loss effect",
    "bf16_unchanged": "a threshold on |dW| (half a bf16 step), so it follows the update's size; RL updates of full "
                      "fine-tuning are reported sparse (Mukherjee et al. 2025, on-policy data), and Qwen3-8B keeps "
                      "8.1% of bf16 entries after SFT, 77.2% after RLVR (arXiv 2606.07082); every loss here is "
                      "offline, on the teacher's table",
    "rel_unchanged": "as bf16_unchanged, at PNT's relative tolerance eta",
    "stable_rank": "no stated expectation; ‖dW‖_F² / ‖dW‖_2², at most the LoRA rank",
}


def pretrained_section(geo: dict, methods: list[str], pcfg) -> list[str]:
    """Per W0-relative metric: each method's value and its seed band (|x - x_twin|), and the literature's
    expectation. Not claims of the paper: no verdict counts them."""
    rel, twin = geo.get("pretrained"), geo.get("seed_twins", {}).get("pretrained", {})
    if not rel:
        return []
    lines = ["", "## Relative to the pretrained weights (beyond the paper)", "",
             f"Each method's mean over modules, with its seed band (|value - seed twin's|); k = {pcfg.top_k}, "
             f"intruder threshold eps = {pcfg.eps}, eta = {pcfg.eta}, W0 "
             + ("factorised exactly" if pcfg.partial_rank is None else f"by its top {pcfg.partial_rank} triplets")
             + ". These are not claims of the paper and count in no verdict. Per layer: "
             "`plots/geometry/pretrained_*_per_layer.csv` and the figure below.", "",
             "| metric | " + " | ".join(methods) + " | expectation |", "|---|" + "---|" * (len(methods) + 1)]
    for name, note in EXPECT.items():
        if name not in rel:
            continue
        cells = [f"{rel[name][m]:.3g} ± {abs(rel[name][m] - twin[name][m]):.2g}" if m in twin.get(name, {})
                 else f"{rel[name][m]:.3g}" for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {note} |")
    sa, sat = rel["sign_agreement"]["global"], twin.get("sign_agreement", {}).get("global", {})
    lines += ["", "Sign agreement of two methods' dW (the share of entries, both nonzero, with equal signs, over every "
              "entry: TIES-merging's sign test without its top-20% trimming; 0.5 for independent updates, and every "
              "method here starts from one LoRA A), seed band from the twins: "
              + ", ".join(f"{p} {v:.3f} ± {abs(v - sat[p]):.2g}" if p in sat else f"{p} {v:.3f}" for p, v in sa.items())
              + "."]
    return lines


def markdown(claims: list[dict], metrics: dict, params, figures: Path, out: Path) -> str:
    geo, acc_set = metrics["geometry"], params.report.accuracy_set
    n = count(claims)
    lines = [f"# Claims of the paper against this run (profile: {params.profile})", "",
             f"{n['holds']} of {len(claims)} claims hold, {n['does_not_hold']} do not, {n['undecided']} are undecided "
             f"(the value lies within its seed band of the threshold: the same claim on the seed twins, every method "
             f"retrained from seed {params.controls.seed}, is the column 'seed twins'), {n['not_measured']} were not "
             "measured by this run (the data they need is not configured). Thresholds are declared once in "
             "`src/weightspace/claims.py`; values come from `metrics/*.json`.", ""]
    if params.profile == "tiny":
        lines += [f"This is the tiny default: a small Qwen3 trained in the pipeline, {params.train.steps} LoRA steps "
                  "per method. It exercises every stage; where a claim does not hold here that says nothing about "
                  "Qwen3-4B.", ""]
    if params.profile == "smollm2":
        lines += [f"This is the smollm2 smoke profile: SmolLM2-135M-Instruct (a real pretrained model) through every "
                  f"stage on CPU, {params.train.steps} LoRA steps per method on a handful of rollouts. It shows the "
                  "paper's path runs end to end on a real model; no number here is a result of the paper.", ""]
    lines += claims_table(claims)
    r = metrics["rollouts"]
    rules = r["reward_rules"]
    lines += ["", "## How the numbers were made", "",
              f"- Reward: math-verify's verdict on the last `\\boxed{{}}` answer against the gold (the paper's). "
              f"Of {r['rows']} rollouts, {rules['string']} were decided by the exact normalised match (equal strings), "
              f"{rules['math_verify']} by math-verify ({r['math_verify_upgrades']} of them correct where the string "
              f"match alone said wrong), {rules['fallback']} by the string rule because math-verify had no verdict, "
              f"and {rules['no_answer']} had no closed box (r = 0). Rollout accuracy {r['accuracy']:.3f}, "
              f"mixed groups {r['mixed_group_share']:.3f}."
              + (f" {r['gold_rows']} of the rows are gold answers written as completions, not samples "
                 f"(`rollouts.gold_rows`; `source: gold` in the table); the model's own samples scored "
                 f"{r['model_accuracy']:.3f}." if r["gold_rows"] else ""),
              policy_line(r["policy"]),
              f"- RIFT form: `{params.method('rift').variant}` (`rift.variant`; token = positives -log p, negatives "
              "+lambda p per token; the paper's written sum_i (1 - r_i lambda) l_i is `written`).",
              f"- CKA layers: {metrics['cka']['layer_convention']}; pooling: {metrics['cka']['pooling']}; "
              f"late = layers {metrics['cka']['late_layers']}; n = {metrics['cka']['n']} prompts."]
    lines += ["", "## Geometry with each method's seed band", "",
              f"Each method was also trained from seed {params.controls.seed} (its own LoRA init and row order). "
              "Beside every between-method number stand the same number between each method and its own second "
              "seed. The last column says \"within noise\" and names the metrics on which the two methods are at least "
              "as close to each other as one of them is to its own seed twin (cosine and u1 at least, angles at "
              "most the seed value): there the two methods cannot be told apart from seed noise.", ""]
    lines += geometry_table(geo, list(params.methods))
    lines += online_table(geo, list(params.methods))
    lines += ["", "## Is each method above its seed noise?", "",
              f"Mean |<u1,u1'>| over modules between a method's two seeds at every checkpoint step (the paper: 0.99 "
              f"at step 1000 of 1500). Target: >= {SEED_U1_TARGET} at the compare step. Curves: "
              "`plots/alignment/<method>.csv`.", "",
              "| method | " + " | ".join(f"step {r['step']}" for r in metrics["alignment"][params.methods[0]]) +
              " | at the compare step |", "|---|" + "---|" * (len(metrics["alignment"][params.methods[0]]) + 1)]
    for m in params.methods:
        curve = metrics["alignment"][m]
        last = geo["seeds"][m]["u1_alignment"]
        lines.append(f"| {m} | " + " | ".join(f"{r['u1_alignment']:.3f}" for r in curve)
                     + f" | {last:.3f} ({'reached' if last >= SEED_U1_TARGET else 'below the target'}) |")
    lm = geo["lr_matched"]
    lines += ["", "## Controls: LR", "",
              f"LR-matched run: {lm['method'].upper()} at {lm['lr_of'].upper()}'s peak LR {lm['lr']:g} (own "
              f"{lm['own_lr']:g}). Global cosine to each method: "
              + ", ".join(f"{m} {v['cosine']:.3f}" for m, v in lm["vs"].items())
              + f"; ||dW||_F {lm['vs'][lm['method']]['frobenius'][1]:.4g}.", "",
              "| run | method | LR ratio | cosine to own-LR run | norm ratio | median top-1 angle |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {s['method']} | {s['lr_ratio']:g} | {s['cosine']:.3f} | {s['norm_ratio']:.2f} | "
              f"{s['angle_top1']:.1f} |" for name, s in geo["lr_step"].items()]
    acc = metrics["accuracy"][acc_set]
    models = [k for k in acc if Pair.maybe(k) is None]  # the rest: McNemar's pairs
    lines += ["", f"## Accuracy on `{acc_set}` (greedy pass@1, 95% Wilson interval)", "",
              "| model | accuracy | interval | n |", "|---|---|---|---|"]
    lines += [f"| {m} | {acc[m]['acc']:.3f} | [{acc[m]['lo']:.3f}, {acc[m]['hi']:.3f}] | {acc[m]['n']} |"
              for m in models]
    lines += pretrained_section(geo, list(params.methods), params.geometry.pretrained)
    lines += ["", "## Figures", ""]
    for f in sorted(figures.rglob("*.png")):  # every figure the figures stage drew
        lines.append(f"![{f.relative_to(figures).as_posix()}]({os.path.relpath(f, out.parent)})")
    return "\n".join(lines) + "\n"


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
    out.write_text(markdown(claims, metrics, params, Path(args.figures), out))
    log.info("report: %d claims, %s", len(claims), count(claims))


if __name__ == "__main__":
    main()
