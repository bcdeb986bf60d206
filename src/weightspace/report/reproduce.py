"""Did a reproduction reach the same conclusions? ``python -m weightspace.report.reproduce --against REV``.

Run after ``dvc repro`` on your own machine. Reads the workspace's metric files and those of git
revision ``REV`` through DVC (``Repo.metrics.show``, what ``dvc metrics diff`` reads), then prints:

- every judged number with its band: both values, their difference and the band; ``EXCEEDS`` where
  |difference| > band, ``MISSING`` where a banded number is in one run only, ``NaN`` where either value
  of any number is not finite. The bands come from ``metrics/calibration.json`` where it was made for the
  reference run's profile (``noise.CALIBRATED_DOC``: reruns over rollout-table and LoRA seeds, what
  differs between machines; ``tools/calibrate.py``); for any other profile from the reference run's seed
  twins (``noise.bands``), which share the rollout table and so do not cover its sampling noise;
- every claim whose verdict differs (``metrics/claims.json``: holds / does not hold / undecided /
  not measured). A move to or from "undecided" is within noise and shown, not failed.

Numbers without a band (too few calibration runs, none moved them, timings, the controls) are counted,
not judged (``--all`` prints them). Exit status: 0 when no verdict differs and every banded difference lies within its
band, 1 otherwise, 2 when a run lacks the metric files.

Float rounding differs between CPUs, and sampled rollouts turn a last-bit difference into another
table, so another machine gives other numbers: the promise across machines is the verdicts, and the
numbers within their bands. On one machine with the same ``threads`` the numbers are identical.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import PurePosixPath

from ..weights import noise

WORKSPACE = "workspace"
CALIBRATION = "metrics/calibration.json"


def load(rev: str, root: str = ".") -> dict[str, dict]:
    """Every metric file DVC knows at ``rev`` (or the workspace), parsed, keyed by path without
    ``metrics/`` and ``.json`` (``geometry``, ``train/sft``, ...)."""
    from dvc.repo import Repo

    from ..core.gitio import patch_blobio

    patch_blobio()  # a revision's files are read through pygit2's BlobIO (gitio)
    with Repo(root) as repo:
        res = repo.metrics.show(revs=[rev], hide_workspace=rev != WORKSPACE, on_error="return")
    files = res.get(rev, {}).get("data", {})
    out = {}
    for path, d in files.items():
        if "data" in d:
            p = PurePosixPath(path)
            out[str(p.with_suffix("")).removeprefix("metrics/")] = d["data"]
    return out


def load_calibration(old: dict[str, dict], path: str = CALIBRATION) -> dict | None:
    """The calibration file when it exists and was made for the reference run's profile, else None."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        return None
    cal = json.loads(p.read_text())
    return cal if cal.get("profile") == old.get("claims", {}).get("profile") else None


def compare(old: dict[str, dict], new: dict[str, dict], calibration: dict | None = None) -> dict:
    """Rows of every numeric metric of either run (``file:key``, old, new, diff, band or None, status:
    ok / EXCEEDS / MISSING / NaN / no band) and every claim's two verdicts (``same``: equal, or one of them
    undecided; a claim measured in one run only is not the same). Bands from ``calibration`` (its judged
    numbers) when given, else from the reference run's seed twins (``noise.bands``)."""
    if calibration is not None:
        band = {k: s["band"] for k, s in calibration["numbers"].items()}
    else:
        band = noise.bands(old)
    rows = []
    for stem in sorted(set(old) | set(new)):
        fo, fn = noise.flatten(old.get(stem, {})), noise.flatten(new.get(stem, {}))
        for key in sorted(set(fo) | set(fn)):
            name = f"{stem}:{key}"
            b = band.get(name)
            o, n = fo.get(key), fn.get(key)
            d = n - o if o is not None and n is not None else None
            if o is None or n is None:
                status = "MISSING" if b is not None else "no band"
            elif not (math.isfinite(o) and math.isfinite(n)):
                status = "NaN"
            elif b is None:
                status = "no band"
            else:
                status = "ok" if abs(d) <= b else "EXCEEDS"
            rows.append({"metric": name, "old": o, "new": n, "diff": d, "band": b, "status": status})
    co, cn = old.get("claims", {}).get("claims", {}), new.get("claims", {}).get("claims", {})
    verdicts = []
    for cid in sorted(set(co) | set(cn)):
        vo, vn = co.get(cid, {}).get("verdict", "absent"), cn.get(cid, {}).get("verdict", "absent")
        same = noise.verdicts_agree(vo, vn)
        verdicts.append({"claim": cid, "old": vo, "new": vn, "same": same})
    return {"rows": rows, "verdicts": verdicts, "bands": source(calibration, old)}


def stale(cal: dict, old: dict[str, dict]) -> list[str]:
    """Judged numbers whose value in the reference run is not the calibration's committed run's: the
    bands were calibrated around another run (recalibrate after a change that moves the numbers)."""
    i = cal["runs"].index("committed")
    ref = noise.judged_numbers(old)
    return [k for k, s in cal["numbers"].items()
            if ref.get(k) is None or not math.isclose(ref[k], s["values"][i], rel_tol=1e-9, abs_tol=1e-12)]


def source(cal: dict | None, old: dict[str, dict]) -> str:
    if cal is None:
        return ("bands: the reference run's seed twins (no calibration for its profile); they share the rollout "
                "table, so a rerun on another machine may exceed them by the table's sampling noise alone")
    loo = cal["leave_one_out"]
    return (f"bands: calibrated over {len(cal['runs'])} runs of profile {cal['profile']} (other rollout-table "
            f"and LoRA seeds; {CALIBRATION}), set for a family-wise false-alarm rate of "
            f"{cal['family_wise_alpha']:.0%}; measured by leave-one-out: {loo['false_alarms']} of {loo['checks']} "
            f"checks failed" + ("" if not (gone := stale(cal, old)) else
                                f"; CAUTION: calibrated around another run ({len(gone)} numbers of the reference "
                                f"differ from it: recalibrate with tools/calibrate.py)"))


FAIL = ("EXCEEDS", "MISSING", "NaN")


def render(result: dict, against: str, show_all: bool = False) -> tuple[str, bool]:
    rows, verdicts = result["rows"], result["verdicts"]
    judged = [r for r in rows if r["band"] is not None or r["status"] in FAIL]
    bad = [r for r in judged if r["status"] in FAIL]
    changed = [v for v in verdicts if not v["same"]]
    moved = [v for v in verdicts if v["same"] and v["old"] != v["new"]]
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    lines = [f"reproduction check: workspace against {against}", result.get("bands", ""), "",
             f"{'metric':58s} {against[:12]:>12s} {'workspace':>12s} {'diff':>10s} {'band':>10s}  status"]
    for r in rows if show_all else judged:
        lines.append(f"{r['metric'][:58]:58s} {fmt(r['old'], '12.5g'):>12s} {fmt(r['new'], '12.5g'):>12s} "
                     f"{fmt(r['diff'], '10.3g'):>10s} {fmt(r['band'], '.4g'):>10s}  {r['status']}")
    lines += ["", f"claims: {len(verdicts)}, verdicts that differ: {len(changed)}, moved to or from undecided: "
                  f"{len(moved)}"]
    lines += [f"  {v['claim']}: {v['old']} -> {v['new']}" for v in changed]
    lines += [f"  {v['claim']}: {v['old']} -> {v['new']} (within noise)" for v in moved]
    lines += [f"numbers within their band: {len(judged) - len(bad)} of {len(judged)}; beyond it, missing or NaN: "
              f"{len(bad)}; without a band (not judged): {len(rows) - len(judged)}"]
    ok = not changed and not bad and bool(verdicts)
    lines.append("REPRODUCED: the same verdicts, every banded number within its band" if ok else
                 "NOT REPRODUCED: " + "; ".join(filter(None, [
                     f"{len(changed)} verdict(s) differ" if changed else "",
                     f"{len(bad)} number(s) beyond their band, missing or NaN" if bad else "",
                     "no claims to compare" if not verdicts else ""])))
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
    text, ok = render(compare(old, new, load_calibration(old)), args.against, args.all)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
