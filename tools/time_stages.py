"""Run `dvc repro` (extra arguments passed on, e.g. -f) and print each stage's wall time and the total.

A stage's time is measured from its "Running stage" line to the next stage's (or the end), so it
includes that stage's Python start-up and DVC's bookkeeping. Usage: python tools/time_stages.py [-f]
"""

from __future__ import annotations

import subprocess
import sys
import time


def main() -> None:
    t0 = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    times: list[tuple[str, float]] = []
    for line in proc.stdout:
        if line.startswith("Running stage"):
            times.append((line.split("'")[1], time.perf_counter()))
    rc = proc.wait()
    end = time.perf_counter()
    for (name, start), (_, nxt) in zip(times, times[1:] + [("", end)]):
        print(f"{name:18s} {nxt - start:6.1f} s")
    print(f"{'total':18s} {end - t0:6.1f} s ({len(times)} stages run, exit {rc})")
    sys.exit(rc)


if __name__ == "__main__":
    main()
