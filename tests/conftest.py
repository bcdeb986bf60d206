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


def copy_repo(dst: Path, params: str | None = None) -> Path:
    """A fresh git clone-like copy of the tracked files (plus uncommitted edits) in ``dst``; ``params``: a
    profile (``profiles/<name>.yaml``) copied over params.yaml before the commit, as a user switches profile."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    if params is not None:
        shutil.copyfile(dst / params, dst / "params.yaml")
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


def shared_build(tmp_path_factory, name: str, build) -> tuple[Path, Path]:
    """A heavy fixture built once per session, whoever asks first: ``build(folder)`` fills ``folder`` (under a file
    lock; a failed build is recorded and raised to every worker, not retried) and returns the repository inside it.
    Under `pytest -n` each worker then works on its own copy of the folder, so a test that edits the repository or
    runs dvc in it (dvc takes a repository-wide lock) never meets the other worker's. Returns (repo, scratch)."""
    from filelock import FileLock

    shared = shared_dir(tmp_path_factory)
    built, failed, done = shared / name, shared / f"{name}.failed", shared / name / "built"
    with FileLock(shared / f"{name}.lock"):
        if failed.exists():
            raise AssertionError(f"the shared {name} build failed on another worker:\n{failed.read_text()}")
        if not done.exists():
            built.mkdir()
            try:
                repo = build(built)
            except BaseException as e:
                failed.write_text(str(e))
                raise
            done.write_text(str(repo.relative_to(built)))
    rel = done.read_text()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return built / rel, built
    tmp = tmp_path_factory.mktemp(name)
    shutil.copytree(built, tmp / "copy", symlinks=True)
    return tmp / "copy" / rel, tmp / "copy"


@pytest.fixture(scope="session")
def plumbing(tmp_path_factory):
    """One real `dvc repro` of the plumbing profile (profiles/plumbing.yaml: the whole stage graph, small) in a
    fresh copy of the repository, its params.yaml the profile, committed: (repo root, scratch folder). Every
    plumbing test (stale stages, kills and resumes, dvc exp run, remotes, plots, benchmarks) runs on it."""
    def build(folder: Path) -> Path:
        root = copy_repo(folder / "repo", params="profiles/plumbing.yaml")
        run(["dvc", "repro"], root, folder)
        return root

    return shared_build(tmp_path_factory, "plumbing", build)


FLOAT_PATH = {"ATEN_CPU_CAPABILITY": "default"}  # PyTorch's kernels on their generic (non-SIMD) code path


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """One real `dvc repro` of the tiny default (params.yaml as committed) in a fresh copy, on another float
    path than the committed run's (``FLOAT_PATH``: no SIMD, so reductions sum in another order, as on another
    CPU): (repo root, scratch folder). Every science test of the default reads it, and the reproduction check
    compares it with the committed metrics. Slow tier (``SLOW_FIXTURES``)."""
    def build(folder: Path) -> Path:
        root = copy_repo(folder / "repo")
        run(["dvc", "repro"], root, folder, extra_env=FLOAT_PATH)
        return root

    return shared_build(tmp_path_factory, "default", build)


# ---------------------------------------------------------------- tiers and order
# The fast tier (`make test` = `pytest -m "not slow"`) runs every unit and oracle test and the plumbing run; the
# full tier (`make test-all`) adds the tests marked slow: those on a run of the full default or of the SmolLM2
# profile (marked through their fixture, so the unit tests of the same modules stay fast) and the plumbing tests
# that run experiments, queues and servers (marked one by one).
SLOW_FIXTURES = ("default_run", "smoke")  # the full default; the SmolLM2 profile (test_smollm2.py)
BUILDERS = SLOW_FIXTURES + ("plumbing",)  # heavy session fixtures, in the order their builds should start


def pytest_configure(config):
    """Under `pytest -n`, torch's OpenMP threads sleep instead of spinning while they wait
    (OMP_WAIT_POLICY=PASSIVE, inherited by the workers and every stage they start), so two stages on two workers
    share the cores instead of spinning against each other; a value already set is kept."""
    if getattr(config.option, "numprocesses", None):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(config, items):
    """Mark slow every test that uses a fixture of ``SLOW_FIXTURES``. Then the order: one test per heavy fixture
    first (each starts its build at once, on its own worker), the tests that need no heavy fixture next (they
    run while the builds do), the rest of the heavy fixtures' tests last."""
    for item in items:
        if set(SLOW_FIXTURES) & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    first, light, rest = [], [], []
    started = set()
    for item in items:
        heavy = [f for f in BUILDERS if f in item.fixturenames]
        # a plumbing test marked slow is deselected by the fast tier: it cannot be the one that starts the build
        if heavy and heavy[0] not in started and (heavy[0] in SLOW_FIXTURES or not item.get_closest_marker("slow")):
            started.add(heavy[0])
            first.append(item)
        else:
            (rest if heavy else light).append(item)
    first.sort(key=lambda item: next(i for i, f in enumerate(BUILDERS) if f in item.fixturenames))
    items[:] = first + light + rest
