"""No-op `dvc repro` of this repository against DVC's own floor for the same number of stages.

The floor: a synthetic repository with the same stage count, each stage one small dep, one small
out and one params key, nothing to do. Prints the median of ``--repeats`` no-op runs of both and the
ratio. Run it in the repository after a full `dvc repro` (so that nothing is stale).
Usage: python benchmarks/dvc_noop.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def noop_seconds(cwd: Path, repeats: int) -> float:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run(["dvc", "repro"], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - t)
        if "Running stage" in out:
            raise SystemExit(f"{cwd}: `dvc repro` ran a stage; run a full `dvc repro` first:\n{out}")
    return statistics.median(times)


def stage_count(cwd: Path) -> int:
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=cwd, capture_output=True, text=True,
                         check=True).stdout
    return len(out.split())


def synthetic(root: Path, n: int) -> Path:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env=env)
    (root / "params.yaml").write_text("".join(f"s{i}:\n  x: {i}\n" for i in range(n)))
    stages = {}
    for i in range(n):
        (root / f"in{i}.txt").write_text(str(i))
        stages[f"s{i}"] = {"cmd": f"cp in{i}.txt out{i}.txt", "deps": [f"in{i}.txt"], "params": [f"s{i}"],
                           "outs": [f"out{i}.txt"]}
    (root / "dvc.yaml").write_text(json.dumps({"stages": stages}))
    subprocess.run(["dvc", "repro", "-q"], cwd=root, check=True, env=env)
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    here = Path.cwd()
    n = stage_count(here)
    ours = noop_seconds(here, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        floor = noop_seconds(synthetic(Path(tmp), n), args.repeats)
    print(f"{n} stages: no-op dvc repro here {ours:.2f} s, DVC's floor (synthetic, {n} trivial stages) {floor:.2f} s")
    print(f"ratio here / floor: {ours / floor:.2f}x")


if __name__ == "__main__":
    main()
