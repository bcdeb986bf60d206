"""The documented experiments' numbers, so docs/experiments.md prints what a run measured and nothing typed.

    python tools/experiments.py queue [--repo .]     # dvc exp run --queue -n exp-<name> ... ; dvc queue start -j 1
    python tools/experiments.py write [--repo .]     # metrics/experiments.json

``EXPERIMENTS`` declares each experiment docs/experiments.md shows (its name and ``dvc exp run -S`` overrides: the
paper's six plus IPO, SimPO and KTO; the six plus online GRPO). ``queue`` queues them on HEAD through DVC's
experiment queue; unchanged stages come back from the run-cache. ``write`` reads each experiment's metric files
(``Repo.metrics.show``) and writes the numbers the docs print to ``metrics/experiments.json``, with the baseline
commit and the command; ``python -m weightspace.report.docs`` renders the tables from that file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

import replicates as R  # noqa: E402

PREFIX = "exp-"
EXPERIMENTS = {
    "nine": ["methods=[sft,rft,dft,rift,grpo,dpo,ipo,simpo,kto]"],
    "online": ["methods=[sft,rft,dft,rift,grpo,dpo,grpo_online]"],
}
EXTRA = ("dpo", "ipo", "simpo", "kto")  # the rows of the nine-method table


def queue(repo: Path) -> None:
    have = {n for n, _ in experiments(repo)} | R.pending(repo)
    todo = [n for n in EXPERIMENTS if f"{PREFIX}{n}" not in have]
    for n in todo:
        R.sh(["dvc", "exp", "run", "--queue", "-n", f"{PREFIX}{n}", *[a for o in EXPERIMENTS[n] for a in ("-S", o)]],
             repo)
    if todo:
        R.record_start(repo, 1)
        R.sh(["dvc", "queue", "start", "-j", "1"], repo)


def experiments(repo: Path) -> list[tuple[str, str]]:
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        found = r.experiments.ls(rev=[R.baseline(repo)])
    return [(n, s) for runs in found.values() for n, s in runs if n and n.startswith(PREFIX)]


def _pair(d: dict, a: str, b: str):
    from weightspace.core.pairs import lookup

    return lookup(d, a, b)


def nine(f: dict) -> dict:
    """Per extra method: training units, ||dW||_F, global cosine to SFT, DPO and GRPO, the seeds' mean |<u1,u1'>|,
    held-out accuracy and its seed twin's."""
    g, acc = f["geometry"], f["accuracy"]
    s = f["claims"]["accuracy_set"]
    out = {}
    for m in EXTRA:
        t = f[f"train/{m}"]
        out[m] = {"units": t["units"], "frobenius": g["frobenius"][m],
                  **{f"cosine_{x}": (1.0 if x == m else _pair(g["cosine"]["global"], m, x)) for x in ("sft", "dpo", "grpo")},
                  "seed_u1": g["seeds"][m]["u1_alignment"], "acc": acc[s][m]["acc"],
                  "acc_twin": acc["seed_twins"][s][m]["acc"]}
    return out


def online(f: dict) -> dict:
    """Online GRPO against SFT and offline GRPO (cosine, angles, orthogonal fraction, each beside the seed twins'),
    its norm against SFT's, accuracies and McNemar p, the connectivity ends and barrier, its own seed row, its
    reward at the start and end of training, and its four claims' verdicts in this run."""
    g, acc, conn = f["geometry"], f["accuracy"], f["connectivity"]
    s = f["claims"]["accuracy_set"]
    k, tw, m = g["top_k"], g["seed_twins"], "grpo_online"
    rows = {}
    for x, orth in (("sft", "direction"), ("grpo", "direction_off_offline")):
        rows[x] = {"cosine": _pair(g["cosine"]["global"], m, x), "cosine_twins": _pair(tw["cosine"]["global"], m, x),
                   "angle_top1": _pair(g["angle_top1"], m, x)["median"],
                   "angle_topk": _pair(g[f"angle_top{k}"], m, x)["median"],
                   "orthogonal": g["orthogonal_fraction"][orth][m], "orthogonal_twins": tw["orthogonal_fraction"][orth][m]}
    c = conn.get("grpo_online-grpo", {})
    t = f[f"train/{m}"]
    claims = {cid: v["verdict"] for cid, v in f["claims"]["claims"].items() if cid.startswith("online_")}
    return {"top_k": k, "vs": rows, "frobenius": g["frobenius"][m], "frobenius_sft": g["frobenius"]["sft"],
            "acc": {x: acc[s][x]["acc"] for x in ("base", "grpo", m)},
            "p_base": _pair(acc[s], "base", m)["p"], "p_grpo": _pair(acc[s], "grpo", m)["p"],
            "ce_online": c.get("ce_alpha1"), "ce_grpo": c.get("ce_alpha0"), "barrier": c.get("barrier"),
            "base_ce": conn.get("base_ce"), "seed": {key: g["seeds"][m][key] for key in ("cosine", "u1_alignment",
                                                                                       "orthogonal_fraction")},
            "reward": {key: t[key] for key in t if key.startswith("reward")}, "claims": claims,
            "steps": t["steps"]}


def write(repo: Path, out_dir: Path) -> None:
    exps = dict(experiments(repo))
    missing = [n for n in EXPERIMENTS if f"{PREFIX}{n}" not in exps]
    if missing:
        raise SystemExit(f"no experiment {', '.join(PREFIX + n for n in missing)} on this baseline: run "
                         "`python tools/experiments.py queue` first")
    files = R.load(repo, [exps[f"{PREFIX}{n}"] for n in EXPERIMENTS])
    get = lambda n: files[exps[f"{PREFIX}{n}"]]  # noqa: E731
    out = {"baseline": R.baseline(repo),
           "commands": {n: "dvc exp run " + " ".join(f"-S '{o}'" for o in EXPERIMENTS[n]) for n in EXPERIMENTS},
           "nine": nine(get("nine")), "online": online(get("online"))}
    (out_dir / "experiments.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out_dir / 'experiments.json'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("queue")
    w = sub.add_parser("write")
    w.add_argument("--out", type=Path, default=Path("metrics"))
    for p in (q, w):
        p.add_argument("--repo", type=Path, default=Path("."), help="the repository (default: here)")
    args = ap.parse_args(argv)
    if args.cmd == "queue":
        queue(args.repo.resolve())
    else:
        write(args.repo.resolve(), args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
