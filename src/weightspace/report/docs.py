"""Numbers in the README and docs/ that come from metrics/: generated blocks, never typed by hand.

A block in a Markdown file is the text between ``<!-- generated: NAME -->`` and ``<!-- /generated -->``;
``BLOCKS[NAME]`` renders it from the metric files. ``python -m weightspace.report.docs`` rewrites every block
in place; ``--check`` exits 1 naming each block that differs from what the metrics give
(``tests/test_docs.py`` runs it). Outside the blocks, every decimal number of the prose must come from a metric,
benchmark, params file or the paper at the precision written (``untraced_numbers``): a figure typed by hand
that no source gives fails the same check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

FILES = ("README.md", "docs/reproduce.md", "docs/science.md", "docs/experiments.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)

# the paper's findings a reader asks about first, in order: the README names the first three that hold and
# the first three that do not (declared here, not chosen from the verdicts)
HEADLINE = ("family_cosine", "dpo_orthogonal", "dpo_small", "angle_order", "grpo_cosine", "dft_cosine",
            "lmc_rift_dpo", "cka_family", "accuracy_same", "accuracy_dpo_margin", "frobenius_range",
            "effective_rank_dpo", "cka_dpo", "grpo_orthogonal")


def _load(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / f"{name}.json").read_text())


def results(root: Path) -> str:
    """The README's results paragraph: the counts under claims.RULE across the replicates and the first
    three findings of ``HEADLINE`` that hold and that do not."""
    rep = _load(root, "replicates")
    n, c = len(rep["runs"]), rep["counts"]
    total = len(rep["claims"])

    def named(verdict: str) -> str:
        ids = [i for i in HEADLINE if rep["claims"][i]["verdict"] == verdict][:3]
        return "; ".join(f"`{i}` ({rep['claims'][i]['claim']}: {rep['claims'][i]['k']} of "
                         f"{rep['claims'][i]['n']})" for i in ids) or "none"

    return (f"Across {n} runs of the tiny default (the committed run and {n - 1} reruns with other rollout-table "
            f"and LoRA seeds, `metrics/replicates.json`), **{c['holds']} of {total} claims hold, "
            f"{c['does_not_hold']} do not, {c['undecided']} are undecided and {c['not_measured']} are not "
            f"measured** by this profile, under the rule declared in `src/weightspace/report/claims.py`; "
            f"{c['unstable']} claims are unstable (they hold in some runs and not in others). Among the paper's "
            f"main findings, these hold: {named('holds')}. These do not: {named('does not hold')}. Undecided (the "
            f"runs' interval straddles the threshold): {named('undecided')}. Every claim "
            f"with its interval and its \"holds in k of N\": `metrics/report.md`. The tiny model says nothing "
            f"about Qwen3-4B; it shows which findings the pipeline reproduces at this scale.\n")


def calibration(root: Path) -> str:
    """docs/reproduce.md: what the committed calibration judges and its measured false-alarm rate."""
    from scipy.stats import t as student_t

    cal = _load(root, "calibration")
    n, m = len(cal["runs"]), len(cal["numbers"])
    a = cal["family_wise_alpha"]
    mult = float(student_t.isf(a / (2 * m), n - 1)) * (1 + 1 / n) ** 0.5 if m else float("nan")
    reasons: dict[str, int] = {}
    for why in cal["not_judged"].values():
        reasons[why] = reasons.get(why, 0) + 1
    loo = cal["leave_one_out"]
    failed = {k: v for k, v in loo["per_run"].items() if v["numbers_beyond"] or v["flips"]}
    lines = [f"The committed calibration: {n} runs (`{cal['command']}`), {m} numbers judged, "
             f"{len(cal['not_judged'])} not judged ("
             + "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) + f"), {len(cal['stable'])} stable claims "
             f"judged. Band of a number at a {a:.0%} family-wise rate: {mult:.2f} standard deviations.",
             "",
             f"Leave-one-out (each run checked against the prediction intervals and stable claims of the other "
             f"{n - 1}): {loo['false_alarms']} of {loo['checks']} honest reruns failed."]
    for name, v in failed.items():
        lines.append(f"- {name}: " + "; ".join(filter(None, [
            f"{len(v['numbers_beyond'])} number(s) outside their interval ({', '.join(v['numbers_beyond'][:3])})"
            if v["numbers_beyond"] else "",
            f"stable claim(s) flipped: {', '.join(v['flips'])}" if v["flips"] else ""])))
    return "\n".join(lines) + "\n"


def power(root: Path) -> str:
    """docs/reproduce.md: the planted changes the check must catch, the learning-rate sweep and the honest
    reruns' false-alarm rate (``metrics/power.json``, ``tools/power.py``)."""
    pw = _load(root, "power")
    honest = pw["honest"]["leave_one_out"]
    lo, hi = honest["rate_interval"]
    lines = [f"Each planted run against the other {pw['replicates'] - 1} replicates (all but the one sharing its "
             f"seeds), at a {pw['level']:.0%} family-wise rate (`python tools/power.py write`):", "",
             "| planted change | seeds | numbers beyond their band | stable claims flipped | check says |",
             "|---|---|---|---|---|"]
    for pid, r in pw["planted"].items():
        top = sorted(r["numbers_beyond"], key=lambda b: -abs(b["value"] - b["mean"]) / b["band"]
                     if b["value"] is not None else 0)[:2]
        shown = "; ".join(f"`{b['number']}` {b['value']:.4g} (mean {b['mean']:.4g} +- {b['band']:.3g})"
                          for b in top if b["value"] is not None)
        lines.append(f"| {r['change']} | {r['seed']} | {len(r['numbers_beyond'])}" + (f": {shown}" if shown else "")
                     + " | " + (", ".join(f"{c} (now {r['flipped_to'][c]})" for c in r["flips"]) or "none") + " | "
                     + ("NOT REPRODUCED" if r["detected"] else "**REPRODUCED (missed)**") + " |")
    missed = {pid: r for pid, r in pw["planted"].items() if not r["detected"]}
    if missed:
        lines += ["", "Why a change is missed: it moves no judged number beyond the replicates' spread. Against the "
                      "replicate with the same seeds (a paired view the check cannot use, since a new run has no "
                      "twin), the judged number it moved most:", ""]
        for pid, r in missed.items():
            top = r["moved_from_same_seeds"][0]
            near = r["nearest_to_band"][0]
            lines.append(f"- {r['change']}: `{top['number']}` {top['same_seeds']:.4g} -> {top['value']:.4g}, "
                         f"{top['in_sds']:.2f} replicate standard deviations; the number nearest its band's edge, "
                         f"`{near['number']}`, used {near['of_band']:.0%} of its band.")
    sw = pw.get("sweep")
    if sw:
        lines += ["", f"{sw['method'].upper()}'s learning rate times a multiplier, rerun at each replicate's seeds "
                      f"(detected: the check says NOT REPRODUCED):", "",
                  "| multiplier | detected | 95% interval of the rate |", "|---|---|---|"]
        for m, r in sw["multipliers"].items():
            lines.append(f"| x{m} | {r['k']} of {r['n']} | [{r['rate_interval'][0]:.2f}, {r['rate_interval'][1]:.2f}] |")
        best = sw["smallest_detected"]
        # multipliers below the answer (or any, without one) with too few reruns to count either way
        short = [f"x{m} ({r['k']} of {r['n']}" + (", stopped: its misses already rule out the target)"
                                                  if r["n"] - r["k"] > round((1 - sw["target"]) * 10) else ")")
                 for m, r in sw["multipliers"].items() if r["n"] < 10 and (best is None or float(m) < best)]
        lines += ["", f"Smallest multiplier detected in at least {sw['target']:.0%} of 10 or more reruns: "
                      + (f"x{best:g}" if best is not None else "none" if not short else "not established")
                      + (f"; fewer than 10 reruns of {', '.join(short)}." if short else ".")]
    lines += ["", f"Honest reruns (leave-one-out over the replicates): {honest['false_alarms']} of {honest['checks']} "
                  f"failed (95% interval of the rate [{lo:.2f}, {hi:.2f}])."]
    return "\n".join(lines) + "\n"


def teacher_sweep(root: Path) -> str:
    """docs/experiments.md: the teacher-strength sweep's rows (``plots/teacher_sweep/sweep.csv``, written by
    ``tools/teacher_sweep.py`` from the sweep's experiments) and what they show, beside the student's accuracy."""
    import csv

    with open(root / "plots/teacher_sweep/sweep.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["teacher_steps"]))
    base = _load(root, "base")
    lines = ["| teacher steps | teacher greedy | rollouts correct | mixed groups | SFT-RFT cosine | SFT seed cosine | "
             "DPO pairs |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['teacher_steps']} | {_pct(float(r['teacher_greedy_acc']))} | "
                     f"{_pct(float(r['rollout_accuracy']))} | {_pct(float(r['mixed_group_share']))} | "
                     f"{float(r['sft_rft_cosine']):.3f} | {float(r['sft_seed_cosine']):.3f} | {r['dpo_pairs']} |")
    weakest = rows[0]
    return ("\n".join(lines) + f"\n\nThe row named `workspace` in the CSV is the committed default. At the weakest "
            f"teacher ({weakest['teacher_steps']} steps) the table is {_pct(float(weakest['rollout_accuracy']))} "
            f"correct and SFT-RFT still agree at {float(weakest['sft_rft_cosine']):.3f}; the teacher's greedy accuracy "
            f"there, {_pct(float(weakest['teacher_greedy_acc']))}, is "
            f"{'below' if float(weakest['teacher_greedy_acc']) < base['heldout_acc'] else 'at or above'} the "
            f"student's {_pct(base['heldout_acc'])} (the teacher writes in a style of its own, which a short run "
            f"has not yet learnt well). "
            f"{len(rows)} points, one seed each: a trend, not a fit.\n")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def tiny_numbers(root: Path) -> str:
    """docs/science.md: the committed run's numbers, each read from its metric file."""
    from ..core.pairs import lookup

    base, teacher, r = _load(root, "base"), _load(root, "teacher"), _load(root, "rollouts")
    geo, acc, conn, cka = (_load(root, n) for n in ("geometry", "accuracy", "connectivity", "cka"))
    rep = _load(root, "replicates")
    six = [m for m in ("sft", "rft", "dft", "rift", "grpo", "dpo") if m in geo["frobenius"]]
    up = lambda m: m.upper()  # noqa: E731
    cos = lambda a, b: lookup(geo["cosine"]["global"], a, b)  # noqa: E731
    fro = geo["frobenius"]
    five = [m for m in six if m != "dpo"]
    h = acc[_load(root, "claims")["accuracy_set"]]
    seeds = geo["seeds"]
    lm = geo["lr_step"].get("lr_matched")
    barriers = {k: v["barrier"] for k, v in conn.items() if isinstance(v, dict) and "barrier" in v}
    late = [v["late_mean"] for v in cka["biased"].values()]
    lines = [
        f"- student base: {_pct(base['heldout_acc'])} greedy accuracy on {base['heldout_n']} rollout prompts it never "
        f"trained on; {base['params']:,} parameters, vocabulary {base['vocab_size']}. Teacher: "
        f"{_pct(teacher['heldout_acc'])}. Rollouts from the teacher: {r['rows']} rows, {_pct(r['accuracy'])} correct, "
        f"{_pct(r['mixed_group_share'])} of groups mixed ({_pct(r['all_correct_group_share'])} all right, "
        f"{_pct(r['all_wrong_group_share'])} all wrong); {r['reward_rules']['string']} rewards decided by the string "
        f"match, {r['reward_rules']['math_verify']} by math-verify.",
        "- ||Delta W||_F: " + ", ".join(f"{up(m)} {fro[m]:.3f}" for m in six)
        + f" (smallest non-DPO / DPO {min(fro[m] for m in five) / fro['dpo']:.2f}; the paper about 13).",
        f"- global cosine: SFT-RFT {cos('sft', 'rft'):.3f}, SFT-RIFT {cos('sft', 'rift'):.3f}, RFT-RIFT "
        f"{cos('rft', 'rift'):.3f} (paper 0.977 / 0.967 / 0.969), SFT-DFT {cos('sft', 'dft'):.3f} (0.572), SFT-GRPO "
        f"{cos('sft', 'grpo'):.3f} (about 0.74), SFT-DPO {cos('sft', 'dpo'):.3f} (0.057)."
        + (f" LR-matched DPO: {lm['norm_ratio']:.1f}x the norm, cosine {lm['cosine']:.2f} with DPO at its own LR "
           f"(paper: about 3x and 0.55)." if lm else ""),
        f"- seeds: the same method from two seeds has cosine {min(v['cosine'] for v in seeds.values()):.2f}-"
        f"{max(v['cosine'] for v in seeds.values()):.2f} (paper 0.07-0.36) and mean |<u1,u1'>| "
        + ", ".join(f"{up(m)} {seeds[m]['u1_alignment']:.3f}" for m in six) + " (paper 0.99).",
        f"- held-out pass@1 (n = {h['base']['n']}): " + ", ".join(f"{'base' if m == 'base' else up(m)} "
                                                                  f"{h[m]['acc']:.3f}" for m in ("base", *six)) + ".",
        "- mode connectivity barriers (masked-answer CE, nats): " + ", ".join(
            f"{k} {v:.3g}" for k, v in barriers.items()) + f" (paper: RIFT-DPO 0.83). Late-layer biased linear CKA "
        f"(layers {cka['late_layers']}) {min(late):.4g}-{max(late):.5g}.",
        f"- claims across {len(rep['runs'])} replicate runs: {rep['counts']['holds']} hold, "
        f"{rep['counts']['does_not_hold']} do not, {rep['counts']['undecided']} undecided, "
        f"{rep['counts']['not_measured']} not measured ({rep['counts']['unstable']} unstable); per claim: "
        "`metrics/report.md`.",
    ]
    return "\n".join(lines) + "\n"


BLOCKS = {"results": results, "calibration": calibration, "tiny_numbers": tiny_numbers, "power": power,
          "teacher_sweep": teacher_sweep}


# a decimal number in prose: not part of a word, a version (3.2.1), a path or an identifier
NUMBER = re.compile(r"(?<![\w.\-/])(\d+\.\d+)(%?)(?![\w\-/]|\.\d)")
NOT_A_FIGURE = re.compile(r"(Python|arXiv|version|Qwen|Llama|SmolLM\d?)[\s-]*$")  # names and versions, not results
PROSE_FILES = ("README.md", "docs/*.md")
REPLICATE_FILES = ("replicates.json", "calibration.json", "power.json")
COMMAND_TABLE = re.compile(r"<!-- python [^>]*-->\n(\|.*\n)+")  # a command's printed table, tested against it


def _source_values(root: Path) -> tuple[set[float], set[str]]:
    """Every number a figure in prose may come from: each numeric leaf of the committed run's ``metrics/**/*.json``
    (not the replicates' files: their numbers reach prose through generated blocks only), each number written in
    ``benchmarks/README.md``, ``params.yaml`` and ``profiles/*.yaml``, and the paper's numbers as ``claims.py``
    declares them (values, thresholds and reasons)."""
    from .claims import CLAIMS

    values: set[float] = set()
    texts: set[str] = set()

    def leaves(x):
        if isinstance(x, dict):
            for v in x.values():
                leaves(v)
        elif isinstance(x, list):
            for v in x:
                leaves(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            values.add(float(x))

    for f in sorted((root / "metrics").rglob("*.json")):
        if f.relative_to(root / "metrics").as_posix() not in REPLICATE_FILES:
            leaves(json.loads(f.read_text()))
    prose = [root / "benchmarks/README.md", root / "params.yaml", *sorted((root / "profiles").glob("*.yaml"))]
    for f in prose:
        texts.update(re.findall(r"\d+\.\d+", f.read_text()))
    for c in CLAIMS:
        texts.update(re.findall(r"\d+\.\d+", f"{c.paper} {c.threshold} {c.why}"))
    return values, texts


def _prose(text: str) -> str:
    """``text`` without what is not prose a reader takes as a result: generated blocks (checked by
    ``update``), a table a command prints after its ``<!-- python ... -->`` line (its test compares them), fenced
    code, inline code, links' targets and HTML comments."""
    text = COMMAND_TABLE.sub("", BLOCK.sub("", text))
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def untraced_numbers(root: Path) -> list[str]:
    """Every decimal number in the README's and docs/'s prose (``_prose``) that no source (``_source_values``)
    gives at the precision written: x with d decimals is traced when some source value rounds to x at d decimals
    (a percentage: 100 times the value), or the sources write x as it is. Returns ``file: number (context)``."""
    values, texts = _source_values(root)
    rounded: dict[int, set[float]] = {}
    bad = []
    for pattern in PROSE_FILES:
        for f in sorted(root.glob(pattern)):
            text = _prose(f.read_text())
            for mt in NUMBER.finditer(text):
                num, pct = mt.group(1), mt.group(2)
                if NOT_A_FIGURE.search(text[max(0, mt.start() - 12):mt.start()]):
                    continue
                d = len(num.split(".")[1])
                if d not in rounded:
                    rounded[d] = {round(v, d) for v in values} | {round(100 * v, d) for v in values}
                if num in texts or round(float(num), d) in rounded[d]:
                    continue
                ctx = " ".join(text[max(0, mt.start() - 40):mt.end() + 20].split())
                bad.append(f"{f.relative_to(root)}: {num}{pct} ({ctx})")
    return bad


def update(root: Path, write: bool) -> list[str]:
    """Every generated block of ``FILES`` under ``root`` rendered anew; with ``write`` the files are rewritten.
    Returns ``file: block`` for each block whose text differed."""
    stale = []
    for f in FILES:
        path = root / f
        text = path.read_text()

        def fill(mt: re.Match) -> str:
            name = mt.group("name")
            if name not in BLOCKS:
                raise ValueError(f"{f}: unknown generated block {name!r} (known: {sorted(BLOCKS)})")
            body = BLOCKS[name](root)
            if body != mt.group("body"):
                stale.append(f"{f}: {name}")
            return mt.group(1) + body + mt.group(4)

        new = BLOCK.sub(fill, text)
        if write and new != text:
            path.write_text(new)
    return stale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block is out of date")
    ap.add_argument("--root", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    stale = update(args.root, write=not args.check)
    for s in stale:
        print(("out of date: " if args.check else "rewrote: ") + s)
    untraced = untraced_numbers(args.root)
    for u in untraced:
        print(f"a number in prose no metric, benchmark, params file or paper value gives: {u}")
    return 1 if (stale and args.check) or untraced else 0


if __name__ == "__main__":
    sys.exit(main())
