"""The report a reader sees, ``metrics/report.md``: a pure renderer. ``render`` fills the template
``report.md.j2`` (beside this module: every sentence of prose) with the claims and the metrics; the functions here
build its tables. Nothing here reads or writes a file: the report stage does."""

from __future__ import annotations

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


def claims_table(claims: list[dict], rep: dict | None) -> list[str]:
    """One row per claim. With replicates: this run's value, the replicate mean with its 95% interval (a rate
    claim: its hold rate with its Clopper-Pearson interval), "k of N" and the verdict under claims.RULE; the single-run verdict stays in claims.json as a diagnostic. Without:
    this run's value, its seed twins' and the single-run verdict."""
    if rep is not None:
        lines = ["| id | claim | paper | this run | mean [95% interval] | holds in | verdict |",
                 "|---|---|---|---|---|---|---|"]
    else:
        lines = ["| id | claim | paper | this run | seed twins | verdict (this run alone) |", "|---|---|---|---|---|---|"]
    for c in claims:
        text = c["claim"].replace("|", "\\|")  # a bare | would end the table cell
        value = "—" if c["holds"] is None else value_text(c["this_run"])
        if rep is not None:
            j = rep["claims"][c["id"]]
            held = "—" if j["n"] == 0 else f"{j['k']} of {j['n']}" + (" (unstable)" if j.get("unstable") else "")
            if j.get("across") == "rate" and j["n"]:
                lo, hi = j["hold_rate_interval"]
                spread = f"hold rate {j['hold_rate']:.2f} [{lo:.2f}, {hi:.2f}]"
            else:
                spread = interval_text(j["mean_interval"])
            lines.append(f"| `{c['id']}` | {text} | {c['paper']} | {value} | {spread} | {held} | **{j['verdict']}** |")
        else:
            twin = value_text(c["seed_twins"]) if "seed_twins" in c else "—"
            lines.append(f"| `{c['id']}` | {text} | {c['paper']} | {value} | {twin} | **{c['verdict']}** |")
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


# what each W0-relative metric measures and what the literature leads one to expect (docs/science.md)
EXPECT = {
    "energy_left": "share of dW's energy in W0's top-k left subspace. The Path Not Taken (arXiv 2511.08567) reports "
                   "on-policy RLVR updates avoiding W0's principal directions (full fine-tuning); every loss here is "
                   "offline LoRA, so this tests an extrapolation",
    "energy_right": "as energy_left, on the input side",
    "angle_left_top1": "smallest principal angle between dW's and W0's top-k left subspaces (degrees)",
    "intruders": "top-k directions of W0 + dW with no singular vector of W0 above the module's threshold "
                 "(Shuttleworth et al. 2024 find LoRA adds such directions); the threshold makes a random direction "
                 "an intruder at rate geometry.pretrained.intruder_rate",
    "intruder_energy": "share of W+'s top-k energy in intruder directions",
    "spectral_shift": "relative change of W0's singular values; grows with ‖dW‖",
    "bf16_unchanged": "entries whose bf16 value dW leaves unchanged: a threshold on each entry's size, so it follows the update's "
                      "size. Mukherjee et al. 2025 report sparse updates from RL on in-distribution data (full "
                      "fine-tuning, DPO among the sparse methods)",
    "stable_rank": "‖dW‖_F² / ‖dW‖_2², at most the LoRA rank",
}


def pretrained_rows(geo: dict, methods: list[str]) -> list[str]:
    """Per W0-relative metric: each method's value beside its chance level (the same metric on a random update of
    the same shape, rank and norm per module, ``pretrained.random_like``), and what it measures. Not claims of
    the paper: no verdict counts them."""
    rel = geo["pretrained"]
    chance = rel.get("chance", {})
    lines = ["| metric | " + " | ".join(methods) + " | what it measures |", "|---|" + "---|" * (len(methods) + 1)]
    for name, note in EXPECT.items():
        if name not in rel:
            continue
        cells = [f"{rel[name][m]:.3g} (chance {chance[name][m]:.3g})" if m in chance.get(name, {})
                 else f"{rel[name][m]:.3g}" for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {note} |")
    return lines


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
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    geo, methods = metrics["geometry"], list(run["methods"])
    lines = lambda rows: "\n".join(rows)  # noqa: E731
    return env.get_template(TEMPLATE.name).render(
        **run, n=rep["counts"] if rep else count(claims), claims=claims, r=metrics["rollouts"], cka=metrics["cka"],
        lm=geo["lr_matched"], seed_u1_target=SEED_U1_TARGET, figures=figures, rep=rep, no_rep=no_rep,
        single=count(claims), claims_table=lines(claims_table(claims, rep)), policy=policy_line(metrics["rollouts"]["policy"]),
        geometry_table=lines(geometry_table(geo, methods)), online=online_table(geo, methods),
        alignment_table=lines(alignment_rows(metrics, methods)), lr_step_rows=lines(lr_step_rows(geo)),
        accuracy_rows=lines(accuracy_rows(metrics["accuracy"][run["accuracy_set"]])),
        pretrained=geo.get("pretrained") and {"rows": lines(pretrained_rows(geo, methods)),
                                              "eps": geo["pretrained"].get("intruder_eps", {})})
