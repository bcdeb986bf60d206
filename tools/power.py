"""The reproduction check's power: planted changes it must catch, through DVC's experiment queue.

    python tools/power.py queue [--sweep] [--jobs 1]
    python tools/power.py write

``queue`` queues, on HEAD, one experiment per planted change in ``PLANTED`` (the committed run's seeds, one
setting changed), named ``plant-<id>``; with ``--sweep``, also ``SWEEP``: one method's learning rate times each
multiplier, rerun at every replicate's seeds (``lr-<method>-x<m>-s<S>``, the seeds of
``metrics/replicates.json``). Runs the committed ``power.json`` already holds are not queued again. Unchanged
stages come back from DVC's run-cache, so a change to one method reruns only that method's stages and those
after them. HEAD's run must be the replicates' baseline run (the same data and model hashes and judged numbers,
``same_pipeline``): a planted run then differs from a replicate only by its change.

``write`` checks every such experiment as ``python -m weightspace.report.reproduce`` checks a new run
(``noise.rerun_check``: numbers against their prediction intervals, stable claims against their verdicts),
with the intervals and stable claims made from the replicate runs **other than the one with the planted
run's seeds**, as committed in ``calibration.json`` and ``replicates.json`` (the planted run shares that
run's rollout table or LoRA inits, so it is left out, as the leave-one-out check leaves out the run it checks),
at the family-wise level ``noise.FAMILY_WIDE``. It writes
``metrics/power.json``: each planted change's verdict, the numbers beyond their band (value, mean, band) and
the flipped claims; each multiplier's detection count "k of n" with its 95% Clopper-Pearson interval; the
smallest multiplier detected in at least ``TARGET`` of the reruns; and the honest reruns' false-alarm rate
(the leave-one-out of ``metrics/calibration.json``). Every planted change and the sweep's grid are declared
here, before any of them ran.
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

PLANT = "plant-"
# id -> (what changes, dvc exp run -S overrides); the default's values in params.yaml: sft.lr 1e-4,
# dpo.beta 0.1, train.lora.alpha 64, rift.variant token, the teacher's 400 pretraining steps, "{question}"
PLANTED = {
    "sft-lr-x1.5": ("SFT's learning rate x1.5", ["sft.lr=1.5e-4"]),
    "sft-lr-x2": ("SFT's learning rate x2", ["sft.lr=2.0e-4"]),
    "dpo-beta-x2": ("dpo.beta x2", ["dpo.beta=0.2"]),
    "lora-alpha-x2": ("LoRA alpha x2 (every adapter's scale alpha/r doubled)", ["train.lora.alpha=128"]),
    "rift-sequence": ("RIFT's other variant (sequence-level instead of token-level)", ["rift.variant=sequence"]),
    "teacher-steps-x0.75": ("the teacher's pretraining steps -25% (400 -> 300)", ["rollouts.teacher.tiny.steps=300"]),
    "template-newline": ("one token added to the prompt template (a newline after the question)",
                         ["prompt.template='{question}\n'"]),
}
# The sweep's grid, and the order it is run in (declared before any sweep run): x1.5 at all ten replicate seeds
# first; if the check detects it in at least 9 of 10, x1.25 next (stopped once two misses make 9 of 10
# impossible), else x2. The smallest multiplier detected in at least TARGET of ten or more reruns is the answer.
SWEEP = {"method": "sft", "lr": 1.0e-4, "multipliers": [1.25, 1.5, 2.0]}
TARGET = 0.9  # a multiplier counts as detected when at least this share of its reruns fail the check


def sweep_name(m: float, seed: int) -> str:
    return f"lr-{SWEEP['method']}-x{m:g}-s{seed}"


def sweep_overrides(m: float, seed: int) -> list[str]:
    lr = ["-S", f"{SWEEP['method']}.lr={m * SWEEP['lr']:.6g}"]
    return lr if seed == R.COMMITTED_SEED else R.overrides(seed) + lr


def queue(repo: Path, sweep: bool, jobs: int, multipliers: list[float] | None, seeds: list[int] | None) -> None:
    if R.sh(["git", "status", "--porcelain", "--untracked-files=no"], repo, capture=True).strip():
        raise SystemExit("the working tree has uncommitted changes: planted runs start from a commit")
    same_pipeline(repo)
    have = {name for name, _ in experiments(repo)} | R.pending(repo) | judged(repo / "metrics")
    reps = [r["seed"] for r in json.loads((repo / "metrics/replicates.json").read_text())["runs"]
            if r["seed"] != R.COMMITTED_SEED]
    todo = [(f"{PLANT}{i}", [a for o in ov for a in ("-S", o)]) for i, (_, ov) in PLANTED.items()]
    if sweep:  # seed by seed, so each seed's rollout table is sampled once and its other runs take it from the run-cache
        todo += [(sweep_name(m, s), sweep_overrides(m, s)) for s in seeds or [R.COMMITTED_SEED, *reps]
                 for m in multipliers or SWEEP["multipliers"]]
    todo = [(n, o) for n, o in todo if n not in have]
    for n, o in todo:
        R.sh(["dvc", "exp", "run", "--queue", "-n", n, *o], repo)
    if todo:
        R.record_start(repo, jobs)
        R.sh(["dvc", "queue", "start", "-j", str(jobs)], repo)


def same_pipeline(repo: Path) -> None:
    """Refuses to queue when HEAD's committed run is not the replicates' baseline run: every data and model
    output in ``dvc.lock`` must have the baseline's hash and every judged number its committed value in
    ``calibration.json`` (code may differ where it changes neither)."""
    from weightspace.report.reproduce import load, lock_outs, stale

    base = json.loads((repo / "metrics/replicates.json").read_text())["baseline"]
    was, now = lock_outs(base, str(repo)), lock_outs("HEAD", str(repo))
    moved = sorted(p for p in set(was) | set(now) if p.startswith(("data/", "models/")) and was.get(p) != now.get(p))
    moved += stale(json.loads((repo / "metrics/calibration.json").read_text()), load("HEAD", str(repo)))
    if moved:
        raise SystemExit(f"HEAD's run differs from the replicates' baseline {base[:7]} in {len(moved)} outputs or "
                         f"judged numbers ({', '.join(moved[:3])}): rerun the replicates on HEAD first")


def committed(out_dir: Path) -> dict:
    """The committed ``power.json`` when it was judged against the replicates now in ``out_dir`` (same baseline
    and level), else an empty one: runs judged against other replicates are judged again."""
    from weightspace.weights import noise

    p = out_dir / "power.json"
    empty = {"planted": {}, "sweep": None}
    if not p.is_file():
        return empty
    d = json.loads(p.read_text())
    rep = json.loads((out_dir / "replicates.json").read_text())
    return d if (d.get("baseline"), d.get("level")) == (rep["baseline"], noise.FAMILY_WIDE) else empty


def judged(out_dir: Path) -> set[str]:
    """Names of the planted and sweep runs the committed ``power.json`` already holds."""
    d = committed(out_dir)
    sweep = (d.get("sweep") or {}).get("multipliers", {})
    return {f"{PLANT}{pid}" for pid in d["planted"]} | {
        sweep_name(float(m), int(s)) for m, r in sweep.items() for s in r["runs"]}


def experiments(repo: Path) -> list[tuple[str, str]]:
    """(name, commit) of every planted and sweep experiment in the repository, on any commit (``queue`` checked
    that its commit's run was the replicates' baseline run)."""
    return R.experiments(repo, prefixes=(PLANT, "lr-"), every_commit=True)


def seed_of(name: str) -> int:
    return int(name.rsplit("-s", 1)[1]) if name.startswith("lr-") else R.COMMITTED_SEED


def checked(files: dict[str, dict]) -> dict[str, dict]:
    """A run's metric files with its claims decided by this checkout's ``claims.py``."""
    from weightspace.report import claims as C

    return {**files, "claims": {**files["claims"], "claims": {c["id"]: c for c in C.check(R.claim_inputs(files))}}}


def clopper_pearson(k: int, n: int) -> list[float]:
    """The 95% Clopper-Pearson interval of a detection rate k/n (``claims.rate_interval``), rounded."""
    from weightspace.report.claims import rate_interval

    return [round(x, 4) for x in rate_interval(k, n)]


def replicate_runs(out_dir: Path) -> tuple[dict[str, int], dict[str, dict[str, float]], dict[str, dict]]:
    """The replicate runs as committed: (name -> seed, name -> judged numbers, name -> each claim's plain
    decision ``holds``), read from ``calibration.json`` (every judged number's value per run) and
    ``replicates.json`` (every claim's value per run, decided again by ``Claim.decide``), so planted runs can be
    checked on any later commit without the replicates' experiment refs, which live in one repository only."""
    from weightspace.report import claims as C

    cal = json.loads((out_dir / "calibration.json").read_text())
    rep = json.loads((out_dir / "replicates.json").read_text())
    order = [r["name"] for r in rep["runs"]]
    if order != cal["runs"]:
        raise SystemExit(f"calibration.json's runs {cal['runs']} are not replicates.json's {order}: rerun "
                         "`python tools/replicates.py write`")
    seeds = {r["name"]: r["seed"] for r in rep["runs"]}
    nums = {n: {k: s["values"][i] for k, s in cal["numbers"].items() if s["values"][i] is not None}
            for i, n in enumerate(order)}
    held: dict[str, dict] = {n: {} for n in order}
    for c in C.CLAIMS:
        values = rep["claims"][c.id]["values"]
        for n, v in zip(order, values):
            held[n][c.id] = None if v is None else bool(c.decide(v))
        k = sum(bool(held[n][c.id]) for n in order)
        if k != rep["claims"][c.id]["k"]:
            raise SystemExit(f"{c.id}: decided again from replicates.json's values (rounded to 4 digits) it holds "
                             f"in {k} runs, the file says {rep['claims'][c.id]['k']}: the claims changed since it was "
                             f"written, or a value lies within rounding of its threshold")
    return seeds, nums, held


def write(repo: Path, out_dir: Path) -> None:
    """Checks every planted and sweep experiment on HEAD and writes ``power.json``. A run already in the
    committed ``power.json`` whose experiment is not in this repository (experiment refs are local) keeps
    its entry, so the file grows over sittings and machines of the same float path."""
    from weightspace.weights import noise

    seeds_of, nums, held = replicate_runs(out_dir)
    planted = sorted(experiments(repo))
    before = committed(out_dir)
    if not planted and not before["planted"] and not before["sweep"]:
        raise SystemExit("no planted experiment here and none committed: run `python tools/power.py queue` first")
    files = R.load(repo, [s for _, s in planted])

    def judge(name: str, sha: str) -> dict:
        f = checked(files[sha])
        seed = seed_of(name)
        rest = [n for n, s in seeds_of.items() if s != seed]
        r = noise.rerun_check(noise.judged_numbers(f), noise.verdicts(f), {n: nums[n] for n in rest},
                              [held[n] for n in rest])
        keys = sorted(set().union(*(nums[n] for n in rest)))
        stats, _ = noise.calibrated_bands({k: [nums[n].get(k) for n in rest] for k in keys})
        new = noise.judged_numbers(f)
        beyond = [{"number": k, "value": new.get(k), "mean": round(stats[k]["mean"], 6),
                   "band": round(stats[k]["band"], 6)} for k in r["numbers_beyond"]]
        # how close the run came: its three numbers nearest their band's edge (|value - mean| / band), and the
        # three that moved most from the replicate with the same seeds, in that number's replicate sds (a paired
        # view the check does not use: it shows whether the change moved anything at all)
        twin = next((n for n, s_ in seeds_of.items() if s_ == seed), None)
        if twin is None:
            raise SystemExit(f"{name}: seed {seed} is no replicate's (replicates.json): its run has no same-seed twin")
        ratio = {k: abs(new[k] - st["mean"]) / st["band"] for k, st in stats.items() if new.get(k) is not None}
        paired = {k: abs(new[k] - nums[twin][k]) / st["sd"] for k, st in stats.items()
                  if new.get(k) is not None and nums[twin].get(k) is not None and st["sd"] > 0}
        nearest = [{"number": k, "value": round(new[k], 6), "mean": round(stats[k]["mean"], 6),
                    "band": round(stats[k]["band"], 6), "of_band": round(ratio[k], 3)}
                   for k in sorted(ratio, key=ratio.get, reverse=True)[:3]]
        moved = [{"number": k, "value": round(new[k], 6), "same_seeds": round(nums[twin][k], 6),
                  "in_sds": round(paired[k], 2)} for k in sorted(paired, key=paired.get, reverse=True)[:3]]
        return {"seed": seed, "replicates": len(rest), "numbers_judged": r["numbers_judged"],
                "numbers_beyond": beyond, "flips": r["flips"], "detected": bool(r["numbers_beyond"] or r["flips"]),
                "flipped_to": {c: noise.verdicts(f).get(c, "absent") for c in r["flips"]},
                "nearest_to_band": nearest, "moved_from_same_seeds": moved, "commit": sha}

    rep = json.loads((out_dir / "replicates.json").read_text())
    out = {"baseline": rep["baseline"], "level": noise.FAMILY_WIDE, "replicates": len(seeds_of),
           "rule": "each planted run checked as reproduce checks a new run, against prediction intervals and "
                   "stable claims from the replicates other than the one with its seeds",
           "planted": dict(before["planted"]), "sweep": None}
    shas = dict(planted)
    cost = R.costs(repo, shas)
    for pid, (what, ov) in PLANTED.items():
        if f"{PLANT}{pid}" in shas:
            out["planted"][pid] = {"change": what, "overrides": ov, "wall_s": cost[f"{PLANT}{pid}"],
                                   **judge(f"{PLANT}{pid}", shas[f"{PLANT}{pid}"])}
    rows = {}
    old_rows = (before.get("sweep") or {}).get("multipliers", {})
    for m in SWEEP["multipliers"]:
        runs = dict(old_rows.get(f"{m:g}", {}).get("runs", {}))
        for n, s in planted:
            if n.startswith(f"lr-{SWEEP['method']}-x{m:g}-s"):
                r = judge(n, s)
                runs[str(r["seed"])] = {"detected": r["detected"], "numbers_beyond": len(r["numbers_beyond"]),
                                        "flips": len(r["flips"]), "wall_s": cost[n], "commit": s}
        if runs:
            k = sum(r["detected"] for r in runs.values())
            rows[f"{m:g}"] = {"k": k, "n": len(runs), "rate_interval": clopper_pearson(k, len(runs)), "runs": runs}
    if rows:
        hit = [float(m) for m, r in rows.items() if r["n"] >= 10 and r["k"] / r["n"] >= TARGET]
        out["sweep"] = {"method": SWEEP["method"], "lr": SWEEP["lr"], "target": TARGET, "multipliers": rows,
                        "smallest_detected": min(hit) if hit else None}
    cal = json.loads((out_dir / "calibration.json").read_text())
    loo = cal["leave_one_out"]
    out["honest"] = {"leave_one_out": {"checks": loo["checks"], "false_alarms": loo["false_alarms"],
                                       "rate_interval": clopper_pearson(loo["false_alarms"], loo["checks"])}}
    (out_dir / "power.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    for pid, r in out["planted"].items():
        print(f"{pid:22s} {'detected' if r['detected'] else 'NOT detected':13s} beyond {len(r['numbers_beyond'])}, "
              f"flips {len(r['flips'])}")
    for m, r in rows.items():
        print(f"{SWEEP['method']}.lr x{m}: detected in {r['k']} of {r['n']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("queue")
    q.add_argument("--sweep", action="store_true", help="also the learning-rate sweep over the replicates' seeds")
    q.add_argument("--multipliers", type=float, nargs="+", help="only these of SWEEP's multipliers")
    q.add_argument("--seeds", type=int, nargs="+", help="only these seeds of the sweep")
    q.add_argument("--jobs", type=int, default=1)
    w = sub.add_parser("write")
    w.add_argument("--out", type=Path, default=Path("metrics"))
    for p in (q, w):
        p.add_argument("--repo", type=Path, default=Path("."), help="the repository (default: here)")
    args = ap.parse_args(argv)
    if args.cmd == "queue":
        queue(args.repo.resolve(), args.sweep, args.jobs, args.multipliers, args.seeds)
    else:
        write(args.repo.resolve(), args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
