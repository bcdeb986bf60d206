"""Shared test helpers: repository paths, the ../shared data gate, a temporary copy of the repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent


def shared_data() -> Path:
    """../shared/data, or skip (a user's own clone); under CI=true its absence is a failure."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATA} is missing on CI")
        pytest.skip(f"{SHARED_DATA} not found: reference data sits beside the repo only in the project workplace")
    return SHARED_DATA


def env(tmp: Path, cwd: Path | None = None) -> dict:
    """Environment for subprocesses: the venv first on PATH, the copy's own ``src`` first on
    PYTHONPATH (not the editable install's), DVC state kept inside ``tmp``."""
    e = dict(os.environ)
    if cwd is not None and (cwd / "src").is_dir():
        e["PYTHONPATH"] = f"{cwd / 'src'}{os.pathsep}{e.get('PYTHONPATH', '')}"
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e['PATH']}"
    e["DVC_SITE_CACHE_DIR"] = str(tmp / ".dvc-site-cache")
    e["TQDM_DISABLE"] = "1"
    e["DVC_NO_ANALYTICS"] = "1"
    return e


def copy_repo(dst: Path) -> Path:
    """A fresh git clone-like copy of the tracked files (plus uncommitted edits) in ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)  # like a clone: dvclive needs a commit
    return dst


def fresh_clone(src: Path, dst: Path) -> Path:
    """What a reviewer has after `git clone` of ``src``: its git-visible files and dvc.lock, committed;
    no DVC cache, no outputs."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=src, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        if (src / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / f, dst / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=dst, check=True)
    return dst


def run(cmd: list[str], cwd: Path, tmp: Path, check: bool = True, extra_env: dict | None = None
        ) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env={**env(tmp, cwd), **(extra_env or {})}, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def trl_prompt_ids(tok, prompts: list) -> list[list[int]]:
    """Token ids of ``prompts`` as TRL's GRPOTrainer makes them (its own ``_tokenize_prompts``, on a stand-in
    for the trainer that has only what that method reads)."""
    from types import SimpleNamespace

    from trl import GRPOTrainer

    stub = SimpleNamespace(processing_class=tok, _is_vlm=False, environment_factories=None, tools=None,
                           chat_template=None, chat_template_kwargs={})
    return [list(x) for x in GRPOTrainer._tokenize_prompts(stub, prompts)[0]]


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """One real `dvc repro` of the tiny default in a fresh copy of the repository, shared by the
    pipeline and remote tests: (repo root, scratch folder)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    root = copy_repo(tmp / "repo")
    run(["dvc", "repro"], root, tmp)
    return root, tmp

