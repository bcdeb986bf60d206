"""Replicate runs of the default through DVC's experiment queue, and the file the report reads from them.

    python tools/replicates.py queue --seeds 1 2 3 4 5 6 7 8 9 [--jobs 1]
    python tools/replicates.py write

``queue`` queues one experiment per seed S on HEAD, named ``rep-S``:
``dvc exp run --queue -n rep-S -S rollouts.generation.seed=S -S train.seed=S -S controls.seed=S+1000`` (a new
rollout table sampled from the same teacher, and every method and its seed twin trained from new LoRA inits
and row orders), starts DVC's queue with ``--jobs`` workers (``dvc queue start -j N``: a machine with more
cores runs them side by side) and waits for it. The prepared sets, the base and the teacher come back from
DVC's run-cache: shared by every replicate, so the spread leaves out the teacher's and the base's own
training noise. Each experiment runs in its own copy of the repository under ``.dvc/tmp/exps``; ``src`` is
put first on ``PYTHONPATH`` so its stages import that copy's code, not the editable install's working tree.

``write`` takes the committed run (HEAD's baseline commit: seed 42, its metric files as git has them) and
every experiment ``rep-S`` of that baseline (``dvc exp ls``), evaluates every claim on each run's metric
files with this checkout's ``claims.py``, judges each across the runs by ``claims.RULE`` (``claims.judge``),
and writes ``metrics/replicates.json`` (what the report shows) and ``metrics/calibration.json`` (the bands of
``python -m weightspace.report.reproduce``, ``noise.calibrate``). Each run's cost is the time from the previous
experiment commit or ``queue`` start, whichever is later, to its own commit, with one worker (``costs``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
STARTED = Path(".dvc/tmp/replicates-queue.json")  # when ``queue`` started the workers (per repository)
PREFIX = "rep-"
COMMITTED_SEED = 42  # params.yaml's rollouts.generation.seed and train.seed: the committed run


def env() -> dict:
    """This interpreter's scripts (dvc) first on PATH; ``src`` (relative: each experiment's own copy) first
    on PYTHONPATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, ["src", os.environ.get("PYTHONPATH")]))}


def sh(cmd: list[str], repo: Path, capture: bool = False) -> str:
    if not capture:
        print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=repo, env=env(), check=True, text=True, capture_output=capture)
    return r.stdout if capture else ""


def overrides(seed: int) -> list[str]:
    return ["-S", f"rollouts.generation.seed={seed}", "-S", f"train.seed={seed}", "-S", f"controls.seed={seed + 1000}"]


def queue(seeds: list[int], jobs: int, repo: Path) -> None:
    if COMMITTED_SEED in seeds or COMMITTED_SEED in [s + 1000 for s in seeds]:
        raise SystemExit(f"seed {COMMITTED_SEED} is the committed run's")
    if sh(["git", "status", "--porcelain", "--untracked-files=no"], repo, capture=True).strip():
        raise SystemExit("the working tree has uncommitted changes: replicates run on a commit (commit or stash first)")
    have = {name for name, _ in experiments(repo)} | pending(repo)
    todo = [s for s in seeds if f"{PREFIX}{s}" not in have]
    for s in sorted(set(seeds) - set(todo)):
        print(f"{PREFIX}{s}: already done on this baseline", flush=True)
    for s in todo:
        sh(["dvc", "exp", "run", "--queue", "-n", f"{PREFIX}{s}", *overrides(s)], repo)
    if not todo:
        return
    record_start(repo, jobs)
    sh(["dvc", "queue", "start", "-j", str(jobs)], repo)
    while pending(repo):  # the workers run detached: wait until nothing is queued or running
        time.sleep(30)
    print(sh(["dvc", "queue", "status"], repo, capture=True), flush=True)
    done = {name for name, _ in experiments(repo)}
    failed = [f"{PREFIX}{s}" for s in todo if f"{PREFIX}{s}" not in done]
    if failed:
        raise SystemExit(f"{len(failed)} replicate(s) failed ({', '.join(failed)}): dvc queue logs <name> says why")


def pending(repo: Path) -> set[str]:
    """Names of the experiments queued or running in ``repo``'s DVC queue."""
    rows = [line.split() for line in sh(["dvc", "queue", "status"], repo, capture=True).splitlines()]
    return {r[1] for r in rows if len(r) >= 5 and r[-1] in ("Queued", "Running")}


def baseline(repo: Path) -> str:
    return sh(["git", "rev-parse", "HEAD"], repo, capture=True).strip()


def experiments(repo: Path, rev: str | None = None, prefixes: tuple[str, ...] = (PREFIX,),
                every_commit: bool = False) -> list[tuple[str, str]]:
    """(name, commit) of every experiment named ``<prefix>...`` (default: ``rep-S``) on ``rev`` (HEAD), or on
    any commit of the repository with ``every_commit``."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        found = (r.experiments.ls(all_commits=True) if every_commit else
                 r.experiments.ls(rev=[rev or baseline(repo)]))
    return [(name, sha) for runs in found.values() for name, sha in runs if name and name.startswith(prefixes)]


def load(repo: Path, revs: list[str]) -> dict[str, dict[str, dict]]:
    """Each revision's metric files as ``reproduce.load`` keys them (``geometry``, ``train/sft``)."""
    from weightspace.report.reproduce import load as load_rev

    return {rev: load_rev(rev, str(repo)) for rev in revs}


def claim_inputs(files: dict[str, dict]) -> dict:
    """What ``claims.check`` reads, from one run's metric files."""
    return {"geometry": files["geometry"], "accuracy": files["accuracy"], "connectivity": files["connectivity"],
            "cka": files["cka"], "sets": {"accuracy_set": files["claims"]["accuracy_set"],
                                          "aime_set": files["claims"].get("aime_set")}}


def summarise(runs: list[dict], files: dict[str, dict[str, dict]]) -> dict:
    """The replicate file: every claim's value in each run (``runs`` order), its judgement across them
    (``claims.judge``), the replicate mean with its interval, and the counts under the rule."""
    from weightspace.report import claims as C
    from weightspace.report.markdown import VERDICTS

    per_run = {r["name"]: claim_inputs(files[r["name"]]) for r in runs}
    out = {}
    for c in C.CLAIMS:
        values = []
        for r in runs:
            try:
                values.append(c.value(per_run[r["name"]]))
            except C.NotMeasured:
                values.append(None)
        j = C.judge(c, values)
        # a rate claim's values are p-values: no interval of their mean (its interval is the hold rate's)
        mean = None if c.across == "rate" else C._r(C.value_interval(values))
        out[c.id] = {**j, "group": c.group, "claim": c.sentence(), "paper": c.paper, "values": C._r(values),
                     "mean_interval": mean}
    counts = {v.replace(" ", "_"): sum(j["verdict"] == v for j in out.values()) for v in VERDICTS}
    counts["unstable"] = sum(bool(j.get("unstable")) for j in out.values())
    return {"claims": out, "counts": counts}


def costs(repo: Path, shas: dict[str, str]) -> dict[str, float | None]:
    """Seconds each experiment took with one worker: from the latest moment before its commit at which the
    worker was busy with it, that is the previous experiment commit on this repository or a ``queue`` start
    (``STARTED``), whichever is later. None when a batch ran with several workers or no start was recorded."""
    starts = started(repo)
    if not starts or any(b["jobs"] != 1 for b in starts):
        return {n: None for n in shas}
    from dvc.repo import Repo

    with Repo(str(repo)) as r:  # every experiment on this repository: the worker ran them one after another
        every = [s for runs in r.experiments.ls(all_commits=True).values() for _, s in runs]
    at = lambda s: int(sh(["git", "log", "-1", "--format=%ct", s], repo, capture=True))  # noqa: E731
    times = sorted(at(s) for s in every)
    bounds = sorted(times + [b["started"] for b in starts])
    out = {}
    for n, s in shas.items():
        t = at(s)
        prev = [b for b in bounds if b < t]
        out[n] = round(t - prev[-1], 1) if prev else None
    return out


def started(repo: Path) -> list[dict]:
    """Every ``queue`` start on this repository: [{started: unix time, jobs}]."""
    p = repo / STARTED
    if not p.is_file():
        return []
    d = json.loads(p.read_text())
    return d if isinstance(d, list) else [d]


def record_start(repo: Path, jobs: int) -> None:
    (repo / STARTED).parent.mkdir(parents=True, exist_ok=True)
    (repo / STARTED).write_text(json.dumps([*started(repo), {"started": time.time(), "jobs": jobs}]) + "\n")


def write(repo: Path, out_dir: Path) -> None:
    from weightspace.report import claims as C
    from weightspace.weights import noise

    base = baseline(repo)
    exps = sorted(experiments(repo, base), key=lambda x: int(x[0].removeprefix(PREFIX)))
    if not exps:
        raise SystemExit(f"no experiment {PREFIX}<seed> on {base[:7]}: run `python tools/replicates.py queue` first")
    files = load(repo, [base, *[sha for _, sha in exps]])
    cost = costs(repo, dict(exps))
    runs = [{"name": "committed", "seed": COMMITTED_SEED, "rev": base}]
    runs += [{"name": n, "seed": int(n.removeprefix(PREFIX)), "rev": sha, "wall_s": cost[n]} for n, sha in exps]
    named = {"committed": files[base], **{n: files[sha] for n, sha in exps}}
    profile = named["committed"]["claims"].get("profile")
    seeds = " ".join(n.removeprefix(PREFIX) for n, _ in exps)
    rep = {"profile": profile, "baseline": base, "command": f"python tools/replicates.py queue --seeds {seeds}",
           "shared": "the prepared sets, the base and the teacher (one pretraining each): the spread covers the "
                     "rollout table's sampling and every adapter's LoRA init and row order, not the teacher's or "
                     "the base's own training noise",
           "rule": C.RULE, "level": C.LEVEL, "runs": runs, **summarise(runs, named)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "replicates.json").write_text(json.dumps(rep, indent=1, sort_keys=True) + "\n")
    # the reproduction check's bands: every run's claims as this checkout's claims.py decides them
    for files_ in named.values():
        files_["claims"] = {**files_["claims"], "claims": {c["id"]: c for c in C.check(claim_inputs(files_))}}
    cal = noise.calibrate(named, profile=profile, command=rep["command"])
    (out_dir / "calibration.json").write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
    print(f"{len(runs)} runs: {rep['counts']}")
    print(noise.calibration_summary(cal))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("queue")
    q.add_argument("--seeds", type=int, nargs="+", required=True)
    q.add_argument("--jobs", type=int, default=1)
    w = sub.add_parser("write")
    w.add_argument("--out", type=Path, default=Path("metrics"))
    for p in (q, w):
        p.add_argument("--repo", type=Path, default=Path("."), help="the repository (default: here)")
    args = ap.parse_args(argv)
    if args.cmd == "queue":
        queue(args.seeds, args.jobs, args.repo.resolve())
    else:
        write(args.repo.resolve(), args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
