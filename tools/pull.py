"""`dvc pull` that checks the remote first: python tools/pull.py [-r REMOTE] [TARGET ...]

Needs only DVC. Three steps, so a failed pull changes nothing in the workspace:

1. For an http(s) remote, one request to its URL: no answer at all (server down, wrong host) stops here
   with the remote's name and URL. Any HTTP answer, even 404, means the server is up (a static host need
   not list folders).
2. ``dvc fetch``: objects into the cache only. Then every needed object (each file of a folder output
   too) must be in the cache; outputs whose objects the remote lacks are named with the remote, and the
   pull stops (``dvc fetch`` only warns about them).
3. ``dvc checkout``: the fetched objects into the workspace.

Plain ``dvc pull`` does the same work, but reports an unreachable server as "cache files do not exist
neither locally nor on remote", and checks out whatever it did fetch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "dvc"
    return subprocess.run([str(exe) if exe.exists() else "dvc", *args], cwd=cwd, capture_output=True, text=True)


def remote_of(root: Path, name: str | None) -> tuple[str, str]:
    """(name, url) of ``name`` or of the default remote."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        conf = repo.config
        name = name or conf["core"].get("remote")
        if not name:
            raise SystemExit("pull: no remote named and no default remote (dvc remote add -d NAME URL)")
        if name not in conf["remote"]:
            raise SystemExit(f"pull: no remote named {name!r} (dvc remote list)")
        return name, conf["remote"][name]["url"]


def probe(name: str, url: str, timeout: float = 10.0) -> None:
    if not url.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the server answered
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"pull: remote {name!r} ({url}) is unreachable: {getattr(e, 'reason', e)}. "
                         "Nothing was pulled; the workspace is unchanged.")


def absent(root: Path, targets: list[str]) -> list[str]:
    """Outputs of ``targets`` (every stage where none) whose objects are not all in the local cache: the
    output's own object and, for a folder, every file its ``.dir`` listing names."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = ([s for t in targets for s in repo.stage.collect(t)] if targets else list(repo.index.stages))
        cache = repo.cache.local
        out = []
        for stage in stages:
            for o in stage.outs:
                oid = o.hash_info.value if o.hash_info else None
                if not o.use_cache or not oid:
                    continue
                ok = cache.exists(oid)
                if ok and oid.endswith(".dir"):
                    with open(cache.oid_to_path(oid)) as f:
                        ok = all(cache.exists(e["md5"]) for e in json.load(f))
                if not ok:
                    out.append(str(o))
        return sorted(set(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--remote", default=None)
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args(argv)
    root = Path.cwd()
    name, url = remote_of(root, args.remote)
    probe(name, url)
    fetch = dvc("fetch", "-r", name, *args.targets, cwd=root)
    missing = absent(root, args.targets)
    if fetch.returncode or missing:
        print(f"pull: remote {name!r} ({url}) lacks the objects of {len(missing)} output(s): {', '.join(missing)}. "
              f"Nothing was checked out; the workspace is unchanged.\n{fetch.stderr.strip()}", file=sys.stderr)
        return 1
    co = dvc("checkout", *args.targets, cwd=root)
    sys.stdout.write(fetch.stdout + co.stdout)
    if co.returncode:
        print(co.stderr, file=sys.stderr)
    return co.returncode


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    sys.exit(main())
