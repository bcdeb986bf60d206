"""The committed dvc.lock matches the committed code and params: on a fresh copy (no cache, no
outputs) `dvc repro --dry --allow-missing` has nothing to run."""

from conftest import copy_repo, run


def test_committed_lock_is_up_to_date(tmp_path):
    root = copy_repo(tmp_path / "clone")
    assert (root / "dvc.lock").is_file(), "dvc.lock is not committed"
    out = run(["dvc", "repro", "--dry", "--allow-missing"], root, tmp_path).stdout
    assert "Running stage" not in out, out
