"""The reviewer's read-only pull: the remote's files on a static HTTP server (Python's http.server on
127.0.0.1, started and stopped by this test), read through DVC's http remote with no credentials. On the
plumbing run: a push to a folder, which the server then publishes as a static host would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import fresh_clone, run

PULL = [sys.executable, str(Path(__file__).resolve().parents[1] / "tools/pull.py")]
TRACKED = ["data/prepared/train.jsonl", "data/rollouts.jsonl", "models/base/model.safetensors",
           "models/sft/adapter_model.safetensors", "models/dpo/adapter_model.safetensors",
           "models/deltas/grpo.safetensors", "data/evaluations/rift/heldout.jsonl"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticServer:
    """``python -m http.server`` serving ``folder`` on a loopback port; stopped by its process id."""

    def __init__(self, folder: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port),
                                      "--directory", str(folder)], stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"http.server did not open {self.url}: {log.read_text()[-2000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def published(plumbing, tmp_path_factory):
    """The plumbing run pushed (artifacts and run cache) to a folder, that folder served over HTTP:
    (pusher repo, storage folder, server)."""
    root, tmp = plumbing
    d = tmp_path_factory.mktemp("http")
    pusher = d / "pusher"
    shutil.copytree(root, pusher, symlinks=True)
    run(["dvc", "remote", "add", "-f", "-d", "store", str(d / "storage")], pusher, tmp)
    run(["dvc", "push", "--run-cache"], pusher, tmp)
    server = StaticServer(d / "storage", d / "server.log")
    yield pusher, d / "storage", server
    server.stop()


def reviewer(pusher: Path, dst: Path, tmp: Path, url: str) -> Path:
    """A fresh clone with the README's one line for a published remote."""
    repo = fresh_clone(pusher, dst)
    run(["dvc", "remote", "add", "-f", "-d", "public", url], repo, tmp)
    return repo


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".dvc/tmp" not in str(p)
                  and ".dvc/cache" not in str(p))


def test_a_fresh_clone_pulls_byte_identical_artifacts_over_http(plumbing, published, tmp_path):
    root, tmp = plumbing
    pusher, _, server = published
    full = reviewer(pusher, tmp_path / "full", tmp, server.url)
    assert not (full / "models/sft").exists() and not (full / ".dvc/cache").exists()
    run(["dvc", "pull"], full, tmp)
    for f in TRACKED:
        assert (full / f).read_bytes() == (root / f).read_bytes(), f
    assert json.loads(run(["dvc", "status", "--json"], full, tmp).stdout or "{}") == {}

    one = reviewer(pusher, tmp_path / "one", tmp, server.url)
    out = run(PULL + ["train@dpo"], one, tmp).stdout
    assert "models/dpo" in out
    assert (one / "models/dpo/adapter_model.safetensors").read_bytes() == (
        root / "models/dpo/adapter_model.safetensors").read_bytes()
    assert not (one / "models/sft").exists() and not (one / "models/base").exists()

    again = reviewer(pusher, tmp_path / "again", tmp, server.url)
    out = run(["dvc", "repro", "--pull"], again, tmp).stdout
    assert "Running stage" not in out, out  # every stage restored from the remote's run cache
    assert (again / "models/grpo/adapter_model.safetensors").read_bytes() == (
        root / "models/grpo/adapter_model.safetensors").read_bytes()


def test_a_missing_object_is_named_with_the_remote_and_nothing_is_checked_out(plumbing, published, tmp_path):
    root, tmp = plumbing
    pusher, storage, _ = published
    partial = tmp_path / "partial"
    shutil.copytree(storage, partial)
    lock = yaml.safe_load((pusher / "dvc.lock").read_text())
    sha = next(o["md5"] for o in lock["stages"]["train@sft"]["outs"] if o["path"] == "models/deltas/sft.safetensors")
    (partial / "files/md5" / sha[:2] / sha[2:]).unlink()
    server = StaticServer(partial, tmp_path / "partial.log")
    try:
        repo = reviewer(pusher, tmp_path / "repo", tmp, server.url)
        before = listing(repo)
        p = run(PULL, repo, tmp, check=False)
        assert p.returncode == 1
        assert f"remote 'public' ({server.url}) lacks the objects of 1 output(s): models/deltas/sft.safetensors" \
               in p.stderr, p.stderr
        assert listing(repo) == before
    finally:
        server.stop()


def test_a_down_server_is_named_and_leaves_the_workspace_as_it_was(plumbing, published, tmp_path):
    _, tmp = plumbing
    pusher, _, _ = published
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    repo = reviewer(pusher, tmp_path / "repo", tmp, url)
    before = listing(repo)
    p = run(PULL, repo, tmp, check=False)
    assert p.returncode != 0 and f"remote 'public' ({url}) is unreachable" in p.stderr, p.stderr
    assert listing(repo) == before
