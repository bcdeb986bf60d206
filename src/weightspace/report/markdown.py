"""The report a reader sees, ``metrics/report.md``: a pure renderer. ``render`` fills the template
``report.md.j2`` (beside this module: every sentence of prose) with the claims and the metrics; the functions here
build its tables. Nothing here reads or writes a file: the report stage does."""

from __future__ import annotations

import json
from pathlib import Path

from .. import registry
from ..core.pairs import Pair, combinations
from .claims import pair

TEMPLATE = Path(__file__).with_name("report.md.j2")

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


def online_table(geo: dict, methods_run: list[str]) -> list[dict]:
    """Each online method against the geometry's reference (SFT) and its offline counterpart: cosine, median
    top-1 / top-k angle and orthogonal fraction (direction form), each beside the same number on the seed twins
    (both methods from ``controls.seed``): |this - twin| is the number's seed band. One entry per online method
    whose counterpart ran: its name, the reference, the counterpart, the table's rows, and whether it is at least
    as orthogonal to its own seed twin as to the reference (``noise``)."""
    k, ref, twins = geo["top_k"], geo["reference"], geo["seed_twins"]
    out = []
    for m in methods_run:
        c = registry.get(m).offline
        if c is None or c not in methods_run:
            continue
        rows = [f"| against | cosine | twins | top-1 angle | twins | top-{k} angle | twins | orthogonal fraction | "
                "twins |", "|---|---|---|---|---|---|---|---|---|"]
        for x, orth in ((ref, "direction"), (c, "direction_off_offline")):
            vals = []
            for g in (geo, twins):
                vals.append((pair(g["cosine"]["global"], m, x), pair(g["angle_top1"], m, x)["median"],
                             pair(g[f"angle_top{k}"], m, x)["median"], g["orthogonal_fraction"][orth][m]))
            (a, b, d, e), (ta, tb, td, te) = vals
            rows.append(f"| {x} | {a:.3f} | {ta:.3f} | {b:.1f} | {tb:.1f} | {d:.1f} | {td:.1f} | {e:.3f} | {te:.3f} |")
        own = geo["seeds"][m]
        rows.append(f"| its own seed twin | {own['cosine']:.3f} | | {own['angle_top1']['median']:.1f} | | "
                    f"{own[f'angle_top{k}']['median']:.1f} | | {own['orthogonal_fraction']:.3f} | |")
        out.append({"method": m, "ref": ref, "counterpart": c, "rows": "\n".join(rows),
                    "noise": own["orthogonal_fraction"] >= geo["orthogonal_fraction"]["direction"][m]})
    return out


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


# the literature's qualitative expectation of each W0-relative metric (docs/science.md)
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


def pretrained_rows(geo: dict, methods: list[str]) -> list[str]:
    """Per W0-relative metric: each method's value and its seed band (|x - x_twin|), and the literature's
    expectation. Not claims of the paper: no verdict counts them."""
    rel, twin = geo["pretrained"], geo.get("seed_twins", {}).get("pretrained", {})
    lines = ["| metric | " + " | ".join(methods) + " | expectation |", "|---|" + "---|" * (len(methods) + 1)]
    for name, note in EXPECT.items():
        if name not in rel:
            continue
        cells = [f"{rel[name][m]:.3g} ± {abs(rel[name][m] - twin[name][m]):.2g}" if m in twin.get(name, {})
                 else f"{rel[name][m]:.3g}" for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {note} |")
    return lines


def sign_agreement(geo: dict) -> str:
    sa, sat = geo["pretrained"]["sign_agreement"]["global"], geo.get("seed_twins", {}).get("pretrained", {}).get(
        "sign_agreement", {}).get("global", {})
    return ", ".join(f"{p} {v:.3f} ± {abs(v - sat[p]):.2g}" if p in sat else f"{p} {v:.3f}" for p, v in sa.items())


def alignment_rows(metrics: dict, methods: list[str]) -> list[str]:
    first = metrics["alignment"][methods[0]]
    lines = ["| method | " + " | ".join(f"step {r['step']}" for r in first) + " | at the compare step |",
             "|---|" + "---|" * (len(first) + 1)]
    for m in methods:
        last = metrics["geometry"]["seeds"][m]["u1_alignment"]
        lines.append(f"| {m} | " + " | ".join(f"{r['u1_alignment']:.3f}" for r in metrics["alignment"][m])
                     + f" | {last:.3f} ({'reached' if last >= SEED_U1_TARGET else 'below the target'}) |")
    return lines


def lr_step_rows(geo: dict) -> list[str]:
    return [f"| {name} | {s['method']} | {s['lr_ratio']:g} | {s['cosine']:.3f} | {s['norm_ratio']:.2f} | "
            f"{s['angle_top1']:.1f} |" for name, s in geo["lr_step"].items()]


def accuracy_rows(acc: dict) -> list[str]:
    models = [k for k in acc if Pair.maybe(k) is None]  # the rest: McNemar's pairs
    return [f"| {m} | {acc[m]['acc']:.3f} | [{acc[m]['lo']:.3f}, {acc[m]['hi']:.3f}] | {acc[m]['n']} |"
            for m in models]


def render(claims: list[dict], metrics: dict, run: dict, figures: list[str]) -> str:
    """The report. ``metrics``: geometry, accuracy, connectivity, cka, rollouts (their files' contents) and
    ``alignment`` (method -> its curve); ``run``: what the params say of this run (profile, methods, controls_seed,
    train_steps, accuracy_set, rift_variant, pcfg: the ``geometry.pretrained`` section); ``figures``: (each
    figure's path in the figures folder, its path relative to the report)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    geo, methods = metrics["geometry"], list(run["methods"])
    lines = lambda rows: "\n".join(rows)  # noqa: E731
    return env.get_template(TEMPLATE.name).render(
        **run, n=count(claims), claims=claims, r=metrics["rollouts"], cka=metrics["cka"], lm=geo["lr_matched"],
        seed_u1_target=SEED_U1_TARGET, figures=figures,
        claims_table=lines(claims_table(claims)), policy=policy_line(metrics["rollouts"]["policy"]),
        geometry_table=lines(geometry_table(geo, methods)), online=online_table(geo, methods),
        alignment_table=lines(alignment_rows(metrics, methods)), lr_step_rows=lines(lr_step_rows(geo)),
        accuracy_rows=lines(accuracy_rows(metrics["accuracy"][run["accuracy_set"]])),
        pretrained=geo.get("pretrained") and {"rows": lines(pretrained_rows(geo, methods)), "sign": sign_agreement(geo)})
