"""The report a reader sees, ``metrics/report.md``: a pure renderer. ``render`` fills the template
``report.md.j2`` (beside this module: every sentence of prose) with the claims and the metrics; the functions here
build its tables. Nothing here reads or writes a file: the report stage does."""

from __future__ import annotations

import re
from pathlib import Path

from .. import registry
from ..core.pairs import Pair, combinations
from .claims import pair

TEMPLATE = Path(__file__).with_name("report.md.j2")

SEED_U1_TARGET = 0.9  # the regime's target for every method (the paper measures 0.99)
VERDICTS = ("holds", "does not hold", "undecided", "not measured")


def count(claims: list[dict], key: str = "verdict") -> dict[str, int]:
    return {v.replace(" ", "_"): sum(c[key] == v for c in claims) for v in VERDICTS}


def replicates_for(rep: dict | None, claims: list[dict], profile: str) -> tuple[dict | None, str]:
    """The replicate file (``tools/replicates.py write``) when it covers this run: made for this profile, and
    every claim's value in its committed run equal to this run's (to the 4 decimals both are stored at);
    else (None, why not)."""
    if rep is None:
        return None, "no replicate file (metrics/replicates.json; tools/replicates.py)"
    if rep.get("profile") != profile:
        return None, f"the replicate file was made for profile {rep.get('profile')!r}, not {profile!r}"
    i = [r["name"] for r in rep["runs"]].index("committed")
    moved = [c["id"] for c in claims if c["id"] in rep["claims"]
             and rep["claims"][c["id"]]["values"][i] != c["this_run"]]
    missing = [c["id"] for c in claims if c["id"] not in rep["claims"]]
    if moved or missing:
        return None, (f"the replicate file's committed run is not this run ({len(moved)} claim values differ, e.g. "
                      f"{(moved or missing)[0]}; {len(missing)} claims missing): rerun tools/replicates.py")
    return rep, ""


def _num(x) -> str:
    return f"{x:.3g}" if abs(x) < 1e3 else f"{x:.0f}"


def interval_text(mi) -> str:
    """(mean, lo, hi) -> "mean [lo, hi]"; lists and dicts of those, elementwise."""
    one = lambda t: f"{_num(t[0])} [{_num(t[1])}, {_num(t[2])}]"  # noqa: E731
    if mi is None:
        return "—"
    if isinstance(mi, dict):
        return "; ".join(f"{k}: {one(v)}" for k, v in mi.items())
    if mi and isinstance(mi[0], (list, tuple)):
        return "; ".join(one(v) for v in mi)
    return one(mi)


def value_text(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_num(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "; ".join(_num(x) for x in v)
    return _num(v)


def _repeats(v, earlier: list[tuple[str, object]]) -> str | None:
    """A dict value whose every item an earlier row's dict value already shows: "as `<id>`, without <keys>"
    (a claim over the same numbers with one left out), so a table does not print them twice."""
    if not isinstance(v, dict):
        return None
    for cid, w in earlier:
        if isinstance(w, dict) and len(v) < len(w) and all(k in w and w[k] == x for k, x in v.items()):
            return f"as `{cid}`, without {', '.join(k for k in w if k not in v)}"
    return None


def claims_table(claims: list[dict], rep: dict | None, groups: tuple[str, ...] | None = None,
                 skip: tuple[str, ...] = ()) -> list[str]:
    """One row per claim (those of ``groups`` when given, none of ``skip``): its id, the claim with its threshold,
    the threshold's reason, the paper's value and this run's. With replicates: the replicate mean with its 95%
    interval (a rate claim: its hold rate with its Clopper-Pearson interval), "k of N" and the verdict under
    claims.RULE; the single-run verdict stays in claims.json as a diagnostic. Without: the seed twins' value and
    the single-run verdict. A dict value an earlier row already shows is named, not printed again."""
    if rep is not None:
        lines = ["| id | claim | why this threshold | paper | this run | mean [95% interval] | holds in | verdict |",
                 "|---|---|---|---|---|---|---|---|"]
    else:
        lines = ["| id | claim | why this threshold | paper | this run | seed twins | verdict (this run alone) |",
                 "|---|---|---|---|---|---|---|"]
    shown: list[tuple[str, object]] = []
    for c in claims:
        if (groups is not None and c["group"] not in groups) or c["group"] in skip:
            continue
        text = c["claim"].replace("|", "\\|")  # a bare | would end the table cell
        why = c.get("why", "").replace("|", "\\|")
        again = _repeats(c["this_run"], shown)
        value = "—" if c["holds"] is None else again or value_text(c["this_run"])
        shown.append((c["id"], c["this_run"]))
        if rep is not None:
            j = rep["claims"][c["id"]]
            held = "—" if j["n"] == 0 else f"{j['k']} of {j['n']}" + (" (unstable)" if j.get("unstable") else "")
            if j.get("across") == "rate" and j["n"]:
                lo, hi = j["hold_rate_interval"]
                spread = f"hold rate {j['hold_rate']:.2f} [{lo:.2f}, {hi:.2f}]"
            else:
                spread = interval_text(j["mean_interval"]) if again is None else "as above, same keys"
            lines.append(f"| `{c['id']}` | {text} | {why} | {c['paper']} | {value} | {spread} | {held} | "
                         f"**{j['verdict']}** |")
        else:
            twin = value_text(c["seed_twins"]) if "seed_twins" in c else "—"
            lines.append(f"| `{c['id']}` | {text} | {why} | {c['paper']} | {value} | {twin} | **{c['verdict']}** |")
    return lines


def seed_table(geo: dict, methods: list[str]) -> list[str]:
    """Each method against its own seed twin (``controls.seed``: own LoRA init and row order), once per method:
    the distance two seeds of one loss put between its updates."""
    seeds, k = geo["seeds"], geo["top_k"]
    lines = [f"| method | cosine | median top-1 angle | median top-{k} angle | u1 |", "|---|---|---|---|---|"]
    for m in methods:
        s = seeds[m]
        lines.append(f"| {m} | {s['cosine']:.3f} | {s['angle_top1']['median']:.1f} | "
                     f"{s[f'angle_top{k}']['median']:.1f} | {s['u1_alignment']:.3f} |")
    return lines


def geometry_table(geo: dict, methods: list[str]) -> list[str]:
    """Every between-method number, and the metrics on which the two methods are no further apart than one of
    them is from its own seed twin (``seed_table``): cosine and u1 at least, angles at most the twin's."""
    seeds, k = geo["seeds"], geo["top_k"]
    lines = [f"| pair | cosine | median top-1 angle | median top-{k} angle | u1 | as close as a seed twin on |",
             "|---|---|---|---|---|---|"]
    for a, b in combinations(methods):
        cos, ang1 = pair(geo["cosine"]["global"], a, b), pair(geo["angle_top1"], a, b)["median"]
        angk, u1 = pair(geo[f"angle_top{k}"], a, b)["median"], pair(geo["u1_alignment"], a, b)
        sa, sb = seeds[a], seeds[b]
        close = [name for name, within in (
            ("cosine", cos >= min(sa["cosine"], sb["cosine"])),
            ("top-1", ang1 <= max(sa["angle_top1"]["median"], sb["angle_top1"]["median"])),
            (f"top-{k}", angk <= max(sa[f"angle_top{k}"]["median"], sb[f"angle_top{k}"]["median"])),
            ("u1", u1 >= min(sa["u1_alignment"], sb["u1_alignment"]))) if within]
        lines.append(f"| {a}-{b} | {cos:.3f} | {ang1:.1f} | {angk:.1f} | {u1:.3f} | {', '.join(close) or 'none'} |")
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


# what each W0-relative metric measures, one short cell each (the literature: beyond.md.j2)
EXPECT = {
    "energy_left": "share of dW's energy in W0's top-k left subspace",
    "energy_right": "the same on the input side (right subspace)",
    "angle_left_top1": "smallest principal angle between dW's and W0's top-k left subspaces (degrees)",
    "intruders": "top-k directions of W0 + dW near no singular vector of W0 (per-module threshold)",
    "intruder_energy": "share of (W0 + dW)'s top-k energy in such directions",
    "spectral_shift": "relative change of W0's singular values",
    "bf16_unchanged": "share of entries whose bf16 value dW leaves unchanged",
    "stable_rank": "‖dW‖_F² / ‖dW‖_2² (at most the LoRA rank)",
}


def pretrained_rows(geo: dict, methods: list[str]) -> list[str]:
    """Per W0-relative metric: each method's value beside its chance level (the same metric on a random update of
    the same shape, rank and norm per module, ``pretrained.random_like``), and what it measures. Not claims of
    the paper: no verdict counts them."""
    rel = geo["pretrained"]
    chance = rel.get("chance", {})
    lines = ["| metric | what it measures | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for name, note in EXPECT.items():
        if name not in rel:
            continue
        cells = [f"{rel[name][m]:.3g} ({chance[name][m]:.3g})" if m in chance.get(name, {})
                 else f"{rel[name][m]:.3g}" for m in methods]
        lines.append(f"| {name} | {note} | " + " | ".join(cells) + " |")
    return lines


def _late_base_cka(m: dict) -> tuple[float, float]:
    vals = [v["late_mean"] for k, v in m["cka"]["biased"].items() if k.startswith("base-")]
    return min(vals), max(vals)


def _accuracy_spread(m: dict) -> str:
    """The five non-DPO methods' accuracies on the accuracy set, their widest pair and its TOST p."""
    acc = m["accuracy"][m["sets"]["accuracy_set"]]
    five = [x for x in ("sft", "rft", "dft", "rift", "grpo") if x in acc]
    a, b = min(five, key=lambda x: acc[x]["acc"]), max(five, key=lambda x: acc[x]["acc"])
    p = pair(acc, a, b)
    return (f"the five accuracies span {acc[a]['acc']:.3f} ({a}) to {acc[b]['acc']:.3f} ({b}) on {acc[a]['n']} items; "
            f"that pair's paired TOST p is {p['tost_p']:.3g} (equivalence within compare.margin needs p < 0.05)")


def _curve_ends(m: dict) -> str:
    curves = m["alignment"]
    first = {c[0]["step"] for c in curves.values()}.pop()
    last = {c[-1]["step"] for c in curves.values()}.pop()
    a = sum(c[0]["u1_alignment"] for c in curves.values()) / len(curves)
    b = sum(c[-1]["u1_alignment"] for c in curves.values()) / len(curves)
    return f"{a:.3f} at step {first} and {b:.3f} at step {last} (mean over methods)"


# claim id -> what the metrics show about why it does not hold here (numbers read from them); a claim without an
# entry has no established mechanism in this run
MECHANISMS = {
    "cka_grpo": lambda m: "every adapter leaves the late layers nearly as the base's: biased late-layer CKA of each "
                          "method with the base is {:.5f}-{:.5f}, so no pair of methods can fall far below 1 "
                          "(`cka_dpo` likewise)".format(*_late_base_cka(m)),
    "cka_dpo": lambda m: "as `cka_grpo`: each method's late-layer CKA with the base is {:.5f}-{:.5f}".format(
        *_late_base_cka(m)),
    "accuracy_same": lambda m: _accuracy_spread(m),
    "lmc_rift_dpo": lambda m: (f"DPO's end of the path has a loss of {m['connectivity']['rift-dpo']['ce_alpha0']:.3f} "
                               f"nats against the base's {m['connectivity']['base_ce']:.3f}: DPO's update barely moves "
                               f"the loss, so the path RIFT -> DPO is close to RIFT -> base"),
    "seeds_u1": lambda m: (f"the seeds' u1 agreement over training: {_curve_ends(m)}; the paper reads it at step "
                           f"1000 of 1500, after ten times as many steps"),
    "lr_norm": lambda m: ("‖dW‖ grows nearly in proportion to the LR (" + ", ".join(
        f"{s['norm_ratio']:.2f}x" for s in m["geometry"]["lr_step"].values()) + " for 10x), as each Adam step's size "
        "does"),
}


def not_holding_rows(claims: list[dict], rep: dict, metrics: dict) -> list[str]:
    """One row per claim whose verdict across the replicates is "does not hold": its mean and what the metrics
    show of why, where ``MECHANISMS`` knows it."""
    lines = ["| id | claim | mean [95% interval] | what the metrics show |", "|---|---|---|---|"]
    for c in claims:
        j = rep["claims"][c["id"]]
        if j["verdict"] != "does not hold":
            continue
        spread = (f"hold rate {j['hold_rate']:.2f}" if j.get("across") == "rate"
                  else interval_text(j["mean_interval"]))
        why = MECHANISMS[c["id"]](metrics) if c["id"] in MECHANISMS else "no mechanism established in this run"
        lines.append(f"| `{c['id']}` | {c['claim'].replace('|', chr(92) + '|')} | {spread} | {why} |")
    return lines


def _margin_name(name: str) -> str:
    """``claims.Claim.margins``' name, readable: "[0]t - |x|" (element 0's margin) -> "[0]: t - |x|"."""
    return re.sub(r"^(\[\d+\])(?=[^ ])", r"\1: ", name)


def undecided_rows(claims: list[dict], rep: dict) -> list[str]:
    """One row per claim the replicates leave undecided: each margin whose 95% interval contains 0, with its mean
    and interval (``claims.judge``'s margins), and the hold rate."""
    lines = ["| id | claim | margin(s) straddling 0: mean [95% interval] | holds in |", "|---|---|---|---|"]
    for c in claims:
        j = rep["claims"][c["id"]]
        if j["verdict"] != "undecided":
            continue
        if j.get("across") == "rate":
            lo, hi = j["hold_rate_interval"]
            cell = f"hold rate {j['hold_rate']:.2f} [{lo:.2f}, {hi:.2f}] against 1/2"
        else:
            cell = "; ".join(f"{_margin_name(name)} = {_num(v['mean'])} [{_num(v['interval'][0])}, {_num(v['interval'][1])}]"
                             for name, v in j["margins"].items() if v["interval"][0] <= 0 <= v["interval"][1])
            cell = cell.replace("|", chr(92) + "|")
        lines.append(f"| `{c['id']}` | {c['claim'].replace('|', chr(92) + '|')} | {cell} | {j['k']} of {j['n']} |")
    return lines


# figure file stem (its prefix) -> caption; {set}: the evaluation set of a per-set figure
CAPTIONS = {
    "accuracy_": "Greedy pass@1 of the base and each method on `{set}`, with 95% Wilson intervals.",
    "mcnemar_": "Accuracy of the row's model minus the column's on `{set}` (points; positive: the row is better), "
                "with the raw exact McNemar p of each pair.",
    "cka_per_layer": "Linear CKA (biased, the claims' statistic) of the models' block outputs per layer, one panel "
                     "per pair; after the pairs (orange, dashed): each method against the base.",
    "connectivity": "Masked-answer cross-entropy along the straight path between two adapters' updates "
                    "(W0 + alpha dW_a + (1 - alpha) dW_b); the black line is the base's loss.",
    "angle_top1_matrix": "Median over modules of the smallest principal angle between two methods' top-k left "
                         "singular subspaces (degrees).",
    "cosine_matrix": "Global cosine of two methods' flattened Delta W.",
    "cosine_per_layer": "Cosine of each method's Delta W to the reference method's, per layer; the reference against "
                        "its own seed twin is the noise floor.",
    "orthogonal_fraction_per_layer": "Share of each method's Delta W orthogonal to the reference method's, per layer.",
    "pretrained_per_layer": "Four W0-relative metrics per layer and method (beyond the paper; chance levels in "
                            "`metrics/beyond_paper.md`).",
}


def caption(name: str) -> str:
    stem = Path(name).stem
    for prefix, text in CAPTIONS.items():
        if stem.startswith(prefix):
            return text.format(set=stem.removeprefix(prefix))
    raise KeyError(f"figure {name!r} has no caption (report.markdown.CAPTIONS)")


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


def render(claims: list[dict], metrics: dict, run: dict, figures: list[str], rep: dict | None = None,
           no_rep: str = "") -> str:
    """The report. ``metrics``: geometry, accuracy, connectivity, cka, rollouts (their files' contents) and
    ``alignment`` (method -> its curve); ``run``: what the params say of this run (profile, methods, controls_seed,
    train_steps, accuracy_set, rift_variant, pcfg: the ``geometry.pretrained`` section); ``figures``: (each
    figure's path in the figures folder, its path relative to the report); ``rep``: the replicate file when it
    covers this run (``replicates_for``), else None and ``no_rep`` says why."""
    geo, methods = metrics["geometry"], list(run["methods"])
    lines = lambda rows: "\n".join(rows)  # noqa: E731
    return _env().get_template(TEMPLATE.name).render(
        **run, n=rep["counts"] if rep else count(claims), claims=claims, r=metrics["rollouts"], cka=metrics["cka"],
        lm=geo["lr_matched"], seed_u1_target=SEED_U1_TARGET, rep=rep, no_rep=no_rep,
        figures=[(name, path, caption(name)) for name, path in figures],
        single=count(claims), claims_table=lines(claims_table(claims, rep, skip=("controls",))),
        controls_table=lines(claims_table(claims, rep, groups=("controls",))),
        not_holding=lines(not_holding_rows(claims, rep, metrics)) if rep else "",
        undecided=lines(undecided_rows(claims, rep)) if rep else "",
        policy=policy_line(metrics["rollouts"]["policy"]),
        seed_table=lines(seed_table(geo, methods)), geometry_table=lines(geometry_table(geo, methods)),
        online=online_table(geo, methods),
        alignment_table=lines(alignment_rows(metrics, methods)), lr_step_rows=lines(lr_step_rows(geo)),
        accuracy_rows=lines(accuracy_rows(metrics["accuracy"][run["accuracy_set"]])),
        beyond=BEYOND.name if geo.get("pretrained") else None,
        depth=geo.get("orthogonal_fraction_depth", {}).get("grpo"),
        differs=[{"id": c["id"], "single": c["verdict"], "rep": rep["claims"][c["id"]]["verdict"]} for c in claims
                 if rep and c["verdict"] != rep["claims"][c["id"]]["verdict"]], dpo_base=_dpo_base(metrics["accuracy"][run["accuracy_set"]]))


def _dpo_base(acc: dict) -> dict | None:
    """DPO against the base on the accuracy set, as n10 (the base alone right), n01 (DPO alone right), n, p."""
    p = acc.get("base-dpo")
    if p is None or "dpo" not in acc:
        return None
    return {"n10": p["n10"], "n01": p["n01"], "n": acc["dpo"]["n"], "p": p["p"]}


BEYOND = Path("beyond_paper.md")  # beside the report


def render_beyond(metrics: dict, run: dict) -> str | None:
    """The beyond-the-paper document (each update against the pretrained weights W0, with chance levels), or None
    where the geometry has no W0-relative metrics."""
    geo = metrics["geometry"]
    if not geo.get("pretrained"):
        return None
    return _env().get_template("beyond.md.j2").render(
        pcfg=run["pcfg"], rows="\n".join(pretrained_rows(geo, list(run["methods"]))),
        eps=geo["pretrained"].get("intruder_eps", {}), profile=run["profile"])


def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
