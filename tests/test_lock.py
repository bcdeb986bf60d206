"""The committed dvc.lock matches the committed code and params: on a fresh copy (no cache, no
outputs) `dvc status` reports only missing data, never a changed command, parameter or git-tracked
dependency. (`dvc repro --dry --allow-missing` cannot say this since the aggregate stages depend on
whole folders of other stages' outputs, `models/deltas` and `data/evaluations`: DVC cannot hash a
missing folder from the lock, so it would re-run them.)"""

import json
import subprocess

from conftest import copy_repo, run


def stale_entries(root, tmp) -> list[str]:
    """What `dvc status` finds changed in git-tracked inputs (code, params) or commands."""
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, check=True, capture_output=True,
                                 text=True).stdout.split())
    status = json.loads(run(["dvc", "status", "--json"], root, tmp).stdout or "{}")
    stale = []
    for stage, entries in status.items():
        for e in entries:
            if isinstance(e, str):  # "changed command", "always changed"
                stale.append(f"{stage}: {e}")
            elif "changed deps" in e:
                stale += [f"{stage}: {path} {what}" for path, what in e["changed deps"].items() if path in tracked]
    return stale


def test_committed_lock_is_up_to_date(tmp_path):
    root = copy_repo(tmp_path / "clone")
    assert (root / "dvc.lock").is_file(), "dvc.lock is not committed"
    assert stale_entries(root, tmp_path) == []
    # and the check can fail: an edited stage script and an edited param are both reported
    script = root / "src/weightspace/stages/cka.py"
    script.write_text(script.read_text() + "\n# edited\n")
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("  n: 64 ", "  n: 32 ", 1))
    stale = stale_entries(root, tmp_path)
    assert any("cka: src/weightspace/stages/cka.py" in s for s in stale), stale
    assert any(s.startswith("cka: params.yaml") for s in stale), stale
