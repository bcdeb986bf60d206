"""Did a reproduction reach the same conclusions? ``python -m weightspace.reproduce --against REV``.

Run after ``dvc repro`` on your own machine. Reads the workspace's metric files and those of git
revision ``REV`` through DVC (``Repo.metrics.show``, what ``dvc metrics diff`` reads), then prints:

- every numeric metric with a seed band (``noise.py``): both values, their difference and the band
  (the larger of the two runs' bands); ``EXCEEDS`` where |difference| > band;
- every claim whose verdict differs (``metrics/claims.json``: holds / does not hold / undecided /
  not measured).

Metrics without a band (connectivity, CKA, timings, the controls) are counted, not judged (``--all``
prints them). Exit status: 0 when every verdict is the same and every banded difference lies within
its band, 1 otherwise, 2 when a run lacks the metric files.

Float rounding differs between CPUs, and sampled rollouts turn a last-bit difference into another
table, so another machine gives other numbers: the promise across machines is the verdicts, and the
numbers within their bands. On one machine with the same ``threads`` the numbers are identical.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import PurePosixPath

from . import noise

WORKSPACE = "workspace"


def load(rev: str, root: str = ".") -> dict[str, dict]:
    """Every metric file DVC knows at ``rev`` (or the workspace), parsed, keyed by path without
    ``metrics/`` and ``.json`` (``geometry``, ``train/sft``, ...)."""
    from dvc.repo import Repo

    with Repo(root) as repo:
        res = repo.metrics.show(revs=[rev], hide_workspace=rev != WORKSPACE, on_error="return")
    files = res.get(rev, {}).get("data", {})
    out = {}
    for path, d in files.items():
        if "data" in d:
            p = PurePosixPath(path)
            out[str(p.with_suffix("")).removeprefix("metrics/")] = d["data"]
    return out


def compare(old: dict[str, dict], new: dict[str, dict]) -> dict:
    """Rows of every common numeric metric (``file:key``, old, new, diff, band or None, status) and the
    claims whose verdict differs."""
    b_old, b_new = noise.bands(old), noise.bands(new)
    rows = []
    for stem in sorted(set(old) & set(new)):
        fo, fn = noise.flatten(old[stem]), noise.flatten(new[stem])
        for key in sorted(set(fo) & set(fn)):
            name = f"{stem}:{key}"
            bands = [b for b in (b_old.get(name), b_new.get(name)) if b is not None]
            band = max(bands) if bands else None
            d = fn[key] - fo[key]
            if band is None:
                status = "no band"
            else:
                status = "ok" if math.isfinite(d) and abs(d) <= band else "EXCEEDS"
            rows.append({"metric": name, "old": fo[key], "new": fn[key], "diff": d, "band": band, "status": status})
    co, cn = old.get("claims", {}).get("claims", {}), new.get("claims", {}).get("claims", {})
    verdicts = []
    for cid in sorted(set(co) | set(cn)):
        vo, vn = co.get(cid, {}).get("verdict", "absent"), cn.get(cid, {}).get("verdict", "absent")
        verdicts.append({"claim": cid, "old": vo, "new": vn, "same": vo == vn})
    return {"rows": rows, "verdicts": verdicts}


def render(result: dict, against: str, show_all: bool = False) -> tuple[str, bool]:
    rows, verdicts = result["rows"], result["verdicts"]
    banded = [r for r in rows if r["band"] is not None]
    exceed = [r for r in banded if r["status"] == "EXCEEDS"]
    changed = [v for v in verdicts if not v["same"]]
    lines = [f"reproduction check: workspace against {against}", "",
             f"{'metric':58s} {against[:12]:>12s} {'workspace':>12s} {'diff':>10s} {'band':>10s}  status"]
    for r in rows if show_all else banded:
        band = "-" if r["band"] is None else f"{r['band']:.4g}"
        lines.append(f"{r['metric'][:58]:58s} {r['old']:12.5g} {r['new']:12.5g} {r['diff']:10.3g} {band:>10s}  "
                     f"{r['status']}")
    lines += ["", f"claims: {len(verdicts)}, verdicts that differ: {len(changed)}"]
    lines += [f"  {v['claim']}: {v['old']} -> {v['new']}" for v in changed]
    lines += [f"metrics within their seed band: {len(banded) - len(exceed)} of {len(banded)}; beyond it: {len(exceed)}; "
              f"without a band (not judged): {len(rows) - len(banded)}"]
    ok = not changed and not exceed and bool(verdicts)
    lines.append("REPRODUCED: same verdicts, every banded number within its band" if ok else
                 "NOT REPRODUCED: " + ("; ".join(filter(None, [
                     f"{len(changed)} verdict(s) differ" if changed else "",
                     f"{len(exceed)} number(s) beyond their band" if exceed else "",
                     "no claims to compare" if not verdicts else ""]))))
    return "\n".join(lines), ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="git revision of the reference run (e.g. HEAD, a tag, a sha)")
    ap.add_argument("--all", action="store_true", help="also print the metrics without a band")
    args = ap.parse_args(argv)
    old, new = load(args.against), load(WORKSPACE)
    for name, files in ((args.against, old), (WORKSPACE, new)):
        missing = [f for f in ("claims", "geometry") if f not in files]
        if missing:
            print(f"reproduce: {name} has no metrics/{missing[0]}.json (run dvc repro, or check the revision)",
                  file=sys.stderr)
            return 2
    text, ok = render(compare(old, new), args.against, args.all)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
