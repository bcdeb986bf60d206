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


def shared_dir(tmp_path_factory) -> Path:
    """The session's folder shared by every pytest-xdist worker (each worker's own base temp sits below it);
    without xdist, the session's base temp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """One real `dvc repro` of the tiny default in a fresh copy of the repository, shared by the
    pipeline and remote tests: (repo root, scratch folder).

    It is built once per session by whichever worker asks first (a file lock; a failed build is recorded and
    raised to every worker, not retried). Under `pytest -n` each worker then gets its own copy of the built
    repository, so a test that edits it or runs dvc in it (dvc takes a repository-wide lock) never meets
    another worker's; without xdist the tests use the build itself, as before."""
    from filelock import FileLock

    shared = shared_dir(tmp_path_factory)
    built, failed = shared / "pipeline", shared / "pipeline.failed"
    with FileLock(shared / "pipeline.lock"):
        if failed.exists():
            raise AssertionError(f"the shared pipeline run failed on another worker:\n{failed.read_text()}")
        if not (built / "built").exists():
            built.mkdir()
            try:
                run(["dvc", "repro"], copy_repo(built / "repo"), built)
            except BaseException as e:
                failed.write_text(str(e))
                raise
            (built / "built").touch()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return built / "repo", built
    tmp = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(built / "repo", tmp / "repo", symlinks=True)
    return tmp / "repo", tmp


# ---------------------------------------------------------------- `pytest -n` (make test): what runs where, and when
# The heaviest units first (longest-processing-time first: the scheduler hands the next unit to whichever worker is
# free, so the long ones must not come last). The first test builds the shared pipeline (`repo`, 447 s), so that run
# starts at once while the other worker runs the SmolLM2 module (its fixture 630 s); seconds measured serially with
# `PYTEST_ADDOPTS=--durations=0 make test` on 2 cores. Units not named here follow in file order.
FIRST = (
    "tests/test_pipeline.py::test_dvc_status_clean_after_repro",
    "tests/test_smollm2.py",
    "tests/test_pipeline.py::test_another_float_path_keeps_every_conclusion",  # 577 s
    "tests/test_pipeline.py::test_lr_control_and_queued_grid_as_the_readme_says",  # 396 s
    "tests/test_pipeline.py::test_online_grpo_with_one_command_as_the_readme_says_and_a_killed_run_reruns_to_the_same_bytes",
    "tests/test_pipeline.py::test_nine_methods_with_one_command_as_the_readme_says",  # 211 s
    "tests/test_remote_s3.py",  # 60 s
)
# modules split into one unit per test (no module-scoped fixture); every other module is one unit on one worker,
# so a module fixture (the SmolLM2 run, the S3 server) is built once
PER_TEST = ("tests/test_pipeline.py",)


def pytest_configure(config):
    """Under `pytest -n`, torch's OpenMP threads sleep instead of spinning while they wait
    (OMP_WAIT_POLICY=PASSIVE, inherited by the workers and every stage they start): two 2-thread trainings
    at once then take 22 s instead of 52 s on 2 cores (one alone: 15-19 s, 20 s passive; the same bytes).
    Set before the workers start, so before any of them imports torch; a value already set is kept."""
    if getattr(config.option, "numprocesses", None):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _unit(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    return nodeid if module in PER_TEST else module


def _rank(nodeid: str) -> int:
    """Place in FIRST of the test (any parametrisation) or its module; len(FIRST) if neither is named."""
    for key in (nodeid.split("[")[0], nodeid.split("::")[0]):
        if key in FIRST:
            return FIRST.index(key)
    return len(FIRST)


def pytest_collection_modifyitems(config, items):
    """The units of FIRST at the front, in that order; the rest keep their order (a module stays together)."""
    items.sort(key=lambda item: _rank(item.nodeid))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
def pytest_xdist_make_scheduler(config, log):
    """xdist's LoadScope scheduling with our units (``_unit``) in collection order. (`--dist loadgroup` cannot
    do this here: with pytest 9.2 its ``xdist_group`` marks are ignored, and both workers built the pipeline.)"""
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            """A worker starts a test only once it holds the next one, so a unit is also handed out while the
            worker still runs another. Behind a unit of FIRST it gets the first unit not in FIRST (a light one),
            so two heavy units never queue on one worker while the other has nothing heavy to do."""
            busy = any(scope in FIRST and not all(done.values())
                       for scope, done in self.assigned_work.get(node, {}).items())
            light = next((scope for scope in self.workqueue if scope not in FIRST), None) if busy else None
            if light is not None:
                self.workqueue.move_to_end(light, last=False)
            super()._assign_work_unit(node)

    config.option.loadscopereorder = False  # keep the collection order: heaviest first
    return Units(config, log)
