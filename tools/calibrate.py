"""Calibrate the reproduction check's bands: rerun the default over other rollout-table and LoRA seeds.

    python tools/calibrate.py run --seeds 1 2 3 4 5 --work ../calibration-runs
    python tools/calibrate.py write --work ../calibration-runs --out metrics/calibration.json

``run`` clones this repository once per seed into ``--work`` at one commit (HEAD at the first run; the
commit of the runs already there after that), shares this repository's DVC cache
(so the prepared sets, base and teacher come back from DVC's run-cache and are not retrained), and runs
``dvc exp run -S rollouts.generation.seed=S -S train.seed=S -S controls.seed=S+1000`` there: a new rollout
table sampled from the same teacher, and every method (and its seed twin) trained from new LoRA inits and
row orders. Each run's metric files are kept under ``<work>/runs/seed<S>/``; a seed already there is skipped.

``write`` takes the committed run (this workspace's metric files, which must be HEAD's) and every kept run,
and writes the calibration file that ``python -m weightspace.report.reproduce`` reads (``noise.calibrate``): each
judged number's values over the runs, its spread, its band, and the leave-one-out false-alarm rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def sh(cmd: list[str], cwd: Path) -> None:
    """Run ``cmd`` in ``cwd`` with this interpreter's scripts (dvc) first on PATH and ``cwd/src`` first on
    PYTHONPATH: the stages of a clone import the clone's code, not the editable install's working tree."""
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(cwd / "src")}
    subprocess.run(cmd, cwd=cwd, check=True, env=env)


def pinned_commit(work: Path) -> str:
    """The commit every run of this calibration uses: that of the runs already in ``work``, else HEAD."""
    made = {json.loads(p.read_text())["commit"] for p in (work / "runs").glob("seed*/run.json")}
    if len(made) > 1:
        raise SystemExit(f"{work}: runs of several commits {sorted(made)}; start a new --work folder")
    if made:
        return made.pop()
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def run_seed(seed: int, work: Path) -> None:
    out = work / "runs" / f"seed{seed}"
    if (out / "metrics" / "claims.json").exists():
        print(f"seed {seed}: kept from an earlier call", flush=True)
        return
    clone = work / "clones" / f"seed{seed}"
    shutil.rmtree(clone, ignore_errors=True)
    sh(["git", "clone", "-q", str(ROOT), str(clone)], work)
    sh(["git", "checkout", "-q", pinned_commit(work)], clone)
    sh(["dvc", "cache", "dir", "--local", str(ROOT / ".dvc" / "cache")], clone)
    t0 = time.perf_counter()
    sh(["dvc", "exp", "run", "-S", f"rollouts.generation.seed={seed}", "-S", f"train.seed={seed}",
        "-S", f"controls.seed={seed + 1000}"], clone)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(clone / "metrics", out / "metrics")
    (out / "run.json").write_text(json.dumps({"seed": seed, "commit": subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout.strip(),
        "wall_s": round(time.perf_counter() - t0, 1)}) + "\n")
    shutil.rmtree(clone)
    print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)


def read_metrics(folder: Path) -> dict[str, dict]:
    """Metric files under ``folder`` keyed as ``reproduce.load`` keys them (``geometry``, ``train/sft``)."""
    return {str(p.relative_to(folder).with_suffix("")): json.loads(p.read_text())
            for p in sorted(folder.rglob("*.json")) if p.name != "calibration.json"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", required=True)
    r.add_argument("--work", type=Path, required=True)
    w = sub.add_parser("write")
    w.add_argument("--work", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        if 1042 in [s + 1000 for s in args.seeds] or 42 in args.seeds:
            ap.error("seed 42 is the committed run's")
        args.work.mkdir(parents=True, exist_ok=True)
        for s in args.seeds:
            run_seed(s, args.work.resolve())
        return 0
    from weightspace.weights import noise

    runs = {"committed": read_metrics(ROOT / "metrics")}
    for d in sorted((args.work / "runs").iterdir()):
        runs[d.name] = read_metrics(d / "metrics")
    profile = runs["committed"]["claims"].get("profile")
    cal = noise.calibrate(runs, profile=profile, command="python tools/calibrate.py run --seeds "
                          + " ".join(d.removeprefix("seed") for d in runs if d != "committed"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
    print(noise.calibration_summary(cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
