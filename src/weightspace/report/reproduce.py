"""Did a reproduction reach the same conclusions? ``python -m weightspace.report.reproduce --against REV``.

Run after ``dvc repro`` on your own machine. Reads the workspace's metric files and those of git
revision ``REV`` through DVC (``Repo.metrics.show``, what ``dvc metrics diff`` reads), then prints:

- every judged number with its band: the reference value, the workspace's, their difference and the band;
  ``EXCEEDS`` where |difference| > band, ``MISSING`` where a banded number is in one run only, ``NaN`` where
  either value of any number is not finite. With ``metrics/calibration.json`` made for the reference run's
  profile (``tools/replicates.py``: replicate runs over rollout-table and LoRA seeds, what differs between
  machines), the reference is each number's replicate mean and the band its prediction interval
  (``noise.CALIBRATED_DOC``); for any other profile the reference run's value with a band from its seed twins
  (``noise.bands``), which share the rollout table and so do not cover its sampling noise;
- every claim whose verdict differs (``metrics/claims.json``: holds / does not hold / undecided / not
  measured). With the calibration, a claim is judged against the verdict it keeps across the replicates when
  it is stable, and not judged when unstable (its hold rate strictly between 10% and 90%); a move to or from
  "undecided" is within noise and shown, not failed.

The replicates share the base and the teacher: when the checked run's ``models/base`` or ``models/teacher``
(their hashes in ``dvc.lock``) differ from the reference's, as on a CPU that rounds otherwise, a ``CAUTION``
line says that the bands do not cover that difference.

Numbers without a band (not in ``noise.JUDGED``, too few replicates, a point mass, timings) are counted, not
judged (``--all`` prints them). Exit status: 0 when no judged verdict differs and every banded number lies
within its band, 1 otherwise, 2 when a run lacks the metric files.

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


def compare(old: dict[str, dict], new: dict[str, dict], calibration: dict | None = None,
            alpha: float | None = None) -> dict:
    """Rows of every numeric metric of either run (``file:key``, ref, new, diff, band or None, status:
    ok / EXCEEDS / MISSING / NaN / no band) and every claim's verdicts (``same``).

    With ``calibration`` (the replicates' file, ``noise.calibrate``): a judged number's ref is its replicate
    mean and its band the prediction interval's half-width (``noise.CALIBRATED_DOC``; at ``alpha`` when given,
    else the file's); a claim is judged against the verdict it keeps across the replicates when it is stable
    (``same``: the new verdict agrees with it), and not judged when unstable. Without: ref is ``old``'s value,
    the band comes from ``old``'s seed twins (``noise.bands``) and each claim's two verdicts must agree."""
    if calibration is not None:
        values = {k: s["values"] for k, s in calibration["numbers"].items()}
        a = calibration["family_wise_alpha"] if alpha is None else alpha
        stats, _ = noise.calibrated_bands(values, a)
        band = {k: s["band"] for k, s in stats.items()}
        ref = {k: s["mean"] for k, s in stats.items()}
    else:
        band, ref = noise.bands(old), {}
    rows = []
    for stem in sorted(set(old) | set(new)):
        fo, fn = noise.flatten(old.get(stem, {})), noise.flatten(new.get(stem, {}))
        for key in sorted(set(fo) | set(fn)):
            name = f"{stem}:{key}"
            b = band.get(name)
            o, n = ref.get(name, fo.get(key)), fn.get(key)
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
    stable = calibration.get("stable") if calibration is not None else None
    verdicts = []
    for cid in sorted(set(co) | set(cn)):
        vo, vn = co.get(cid, {}).get("verdict", "absent"), cn.get(cid, {}).get("verdict", "absent")
        if stable is None:
            verdicts.append({"claim": cid, "old": vo, "new": vn, "same": noise.verdicts_agree(vo, vn)})
        elif cid in stable:
            verdicts.append({"claim": cid, "old": f"{stable[cid]} (stable)", "new": vn,
                             "same": noise.verdicts_agree(stable[cid], vn)})
        else:
            verdicts.append({"claim": cid, "old": f"{vo} (unstable: not judged)", "new": vn, "same": True})
    return {"rows": rows, "verdicts": verdicts, "bands": source(calibration, old, alpha),
            "ref": f"mean of {len(calibration['runs'])}" if calibration is not None else None}


def stale(cal: dict, old: dict[str, dict]) -> list[str]:
    """Judged numbers whose value in the reference run is not the calibration's committed run's: the
    bands were made around another run (rerun the replicates after a change that moves the numbers)."""
    i = cal["runs"].index("committed")
    ref = noise.judged_numbers(old)
    return [k for k, s in cal["numbers"].items()
            if ref.get(k) is None or not math.isclose(ref[k], s["values"][i], rel_tol=1e-9, abs_tol=1e-12)]


def source(cal: dict | None, old: dict[str, dict], alpha: float | None = None) -> str:
    if cal is None:
        return ("bands: the reference run's seed twins (no replicates for its profile); they share the rollout "
                "table, so a rerun on another machine may exceed them by the table's sampling noise alone")
    loo = cal["leave_one_out"]
    a = cal["family_wise_alpha"] if alpha is None else alpha
    return (f"bands: prediction intervals from {len(cal['runs'])} replicate runs of profile {cal['profile']} (other "
            f"rollout-table and LoRA seeds; {CALIBRATION}) for a family-wise false-alarm rate of {a:.0%}; "
            f"{len(cal['stable'])} stable claims judged; leave-one-out at {cal['family_wise_alpha']:.0%}: "
            f"{loo['false_alarms']} of {loo['checks']} honest reruns failed"
            + ("" if not (gone := stale(cal, old)) else
               f"; CAUTION: made around another run ({len(gone)} numbers of the reference differ from it: rerun "
               f"tools/replicates.py)"))


SHARED = ("models/base", "models/teacher")  # what every replicate shares (tools/replicates.py)


def lock_outs(rev: str, root: str = ".") -> dict[str, str]:
    """path -> md5 of every stage output in ``dvc.lock`` at git revision ``rev`` (or the workspace's file)."""
    import subprocess
    from pathlib import Path

    import yaml

    if rev == WORKSPACE:
        p = Path(root) / "dvc.lock"
        text = p.read_text() if p.is_file() else ""
    else:
        from dvc.scm import SCM, resolve_rev

        sha = resolve_rev(SCM(root), rev)  # as DVC resolves a revision: a sha, a branch, or an experiment's name
        r = subprocess.run(["git", "show", f"{sha}:dvc.lock"], cwd=root, capture_output=True, text=True)
        text = r.stdout if r.returncode == 0 else ""
    stages = (yaml.safe_load(text) or {}).get("stages", {})
    return {o["path"]: o.get("md5") for st in stages.values() for o in st.get("outs", [])}


def shared_differ(against: str, run: str, root: str = ".") -> list[str]:
    """Which of ``SHARED`` differ between the two runs' ``dvc.lock`` (absent in either counts as differing)."""
    a, b = lock_outs(against, root), lock_outs(run, root)
    return [p for p in SHARED if a.get(p) is None or a.get(p) != b.get(p)]


FAIL = ("EXCEEDS", "MISSING", "NaN")


def render(result: dict, against: str, show_all: bool = False, run: str = WORKSPACE) -> tuple[str, bool]:
    rows, verdicts = result["rows"], result["verdicts"]
    judged = [r for r in rows if r["band"] is not None or r["status"] in FAIL]
    bad = [r for r in judged if r["status"] in FAIL]
    changed = [v for v in verdicts if not v["same"]]
    moved = [v for v in verdicts if v["same"] and v["old"].split(" (")[0] != v["new"]]
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    ref = result.get("ref") or against
    lines = [f"reproduction check: {run} against {against}", result.get("bands", ""), "",
             f"{'metric':58s} {ref[:12]:>12s} {run[:12]:>12s} {'diff':>10s} {'band':>10s}  status"]
    for r in rows if show_all else judged:
        lines.append(f"{r['metric'][:58]:58s} {fmt(r['old'], '12.5g'):>12s} {fmt(r['new'], '12.5g'):>12s} "
                     f"{fmt(r['diff'], '10.3g'):>10s} {fmt(r['band'], '.4g'):>10s}  {r['status']}")
    lines += ["", f"claims: {len(verdicts)}, verdicts that differ: {len(changed)}, moved to or from undecided: "
                  f"{len(moved)}"]
    lines += [f"  {v['claim']}: {v['old']} -> {v['new']}" for v in changed]
    lines += [f"  {v['claim']}: {v['old']} -> {v['new']} (within noise)" for v in moved
              if "unstable" not in v["old"]]
    unstable = [v for v in verdicts if "unstable" in v["old"]]
    if unstable:
        lines.append(f"unstable across the replicates, not judged: {', '.join(v['claim'] for v in unstable)}")
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
    ap.add_argument("--run", default=WORKSPACE,
                    help="the run to check: the workspace (default) or a git revision / experiment commit")
    ap.add_argument("--alpha", type=float, default=None,
                    help="family-wise false-alarm rate of the bands (default: the calibration file's, 5%%)")
    args = ap.parse_args(argv)
    old, new = load(args.against), load(args.run)
    for name, files in ((args.against, old), (args.run, new)):
        missing = [f for f in ("claims", "geometry") if f not in files]
        if missing:
            print(f"reproduce: {name} has no metrics/{missing[0]}.json (run dvc repro, or check the revision)",
                  file=sys.stderr)
            return 2
    cal = load_calibration(old)
    text, ok = render(compare(old, new, cal, args.alpha), args.against, args.all, args.run)
    if cal is not None and (differ := shared_differ(args.against, args.run)):
        print(f"CAUTION: {' and '.join(differ)} of {args.run} differ from {args.against}'s, which every replicate "
              f"shares: the bands leave out the spread a retrained base or teacher adds (another CPU's bits "
              f"retrain them), so a number beyond its band may be that and not a change")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
