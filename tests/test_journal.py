"""The teacher journal: a killed or failed rollout run, re-run, sends only what is missing and writes
the same table as an uninterrupted run; a changed generation param reuses nothing; a torn last line
is dropped."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer

import pytest
import yaml

from conftest import REPO, env
from test_openai_engine import FakeChat
from weightspace import config
from weightspace.generate.generation import Completion, prompt_seed
from weightspace.generate.journal import Journal, JournalIncomplete, generate


class FakeEngine:
    """Deterministic stand-in for the hf engine: a completion is a function of (message, seed, sample)."""

    def __init__(self, gen, fail_after=None):
        self.gen, self.calls, self.fail_after = gen, [], fail_after

    def generate(self, messages, n, desc="", seed=None, ids=None):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append(list(messages))
        return [[Completion(f"{m} s{seed}.{s} \\boxed{{{len(m)}}}", 3, False) for s in range(n)] for m in messages]


def hf_gen(**kw):
    base = dict(engine="hf", temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=2, seed=7, max_model_len=None,
                gpu_memory_utilization=None, openai=None)
    return config.Generation(**{**base, **kw})


MESSAGES = [f"question {i}" for i in range(7)]
IDS = [f"p{i}" for i in range(7)]


def test_killed_run_resumes_with_only_the_missing_calls(tmp_path):
    with Journal(tmp_path / "full.jsonl") as j:
        full, _ = generate(FakeEngine(hf_gen()), MESSAGES, IDS, 3, "m", j)
    engine = FakeEngine(hf_gen(), fail_after=2)  # killed after 2 of the 4 chunks
    with pytest.raises(KeyboardInterrupt), Journal(tmp_path / "j.jsonl") as j:
        generate(engine, MESSAGES, IDS, 3, "m", j)
    again = FakeEngine(hf_gen())
    with Journal(tmp_path / "j.jsonl") as j:
        out, stats = generate(again, MESSAGES, IDS, 3, "m", j)
    assert again.calls == [MESSAGES[4:6], MESSAGES[6:]]  # only the chunks not journaled
    assert out == full and stats["reused_from_journal"] == 2 and stats["generated"] == 2


def test_a_changed_generation_param_reuses_nothing(tmp_path):
    with Journal(tmp_path / "j.jsonl") as j:
        generate(FakeEngine(hf_gen()), MESSAGES, IDS, 3, "m", j)
    for changed in (hf_gen(temperature=0.7), hf_gen(seed=8), hf_gen(max_new_tokens=9)):
        engine = FakeEngine(changed)
        with Journal(tmp_path / "j.jsonl") as j:
            generate(engine, MESSAGES, IDS, 3, "m", j)
        assert len(engine.calls) == 4, changed
    engine = FakeEngine(hf_gen())
    with Journal(tmp_path / "j.jsonl") as j:
        generate(engine, MESSAGES, IDS, 3, "another model", j)
    assert len(engine.calls) == 4


def test_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.add("a", True, completions=[["x", 1, False]])
        j.add("b", True, completions=[["y", 1, False]])
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"key": "c", "ok": true, "completions": [["z", 1')  # killed mid-write
    with caplog.at_level(logging.WARNING), Journal(path) as j:
        assert set(j.done) == {"a", "b"} and j.torn == 1
        j.add("d", True, completions=[["w", 1, False]])
    assert "torn line" in caplog.text
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["key"] == "d"  # the torn bytes were cut, not parsed


def test_failed_units_fail_the_run_with_a_count_and_are_retried_alone(tmp_path):
    class Flaky(FakeEngine):
        run = 0

        def __init__(self, gen):
            super().__init__(gen)
            self.stats = {"requests_ok": 0, "requests_failed": 0, "http_attempts": 0}

        def run_jobs(self, jobs, on_done, desc=""):
            failed = []
            for key, message, seed in jobs:
                self.calls.append((message, seed))
                if Flaky.run == 0 and message == "question 1" and seed == prompt_seed(7, "p1") + 1:
                    failed.append((key, "InternalServerError: boom"))
                else:
                    on_done(key, Completion(f"{message} {seed}", 2, False), {"prompt_tokens": 4, "completion_tokens": 2})
            return failed

    gen = hf_gen(engine="openai", openai=config.OpenAIEngine(base_url="http://127.0.0.1:1/v1", model="m",
                                                             api_key_env="KEY", concurrency=1, max_retries=0,
                                                             timeout_s=1.0))
    with Journal(tmp_path / "j.jsonl") as j, pytest.raises(JournalIncomplete, match="1 of 21 units .* boom"):
        generate(Flaky(gen), MESSAGES, IDS, 3, "api", j)
    Flaky.run = 1
    engine = Flaky(gen)
    with Journal(tmp_path / "j.jsonl") as j:
        out, stats = generate(engine, MESSAGES, IDS, 3, "api", j)
    seed = prompt_seed(7, "p1") + 1  # sample 1 of prompt p1, under gen.seed 7
    assert engine.calls == [("question 1", seed)] and out[1][1].text == f"question 1 {seed}"
    assert stats["table_prompt_tokens"] == 21 * 4


@pytest.fixture
def slow_server():
    import random

    FakeChat.seen, FakeChat.fail_first, FakeChat.max_active = [], 0, 0
    FakeChat.fail_rate, FakeChat.retry_after_ms, FakeChat.rng = 0.0, None, random.Random(0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def student(tmp):
    """A tiny student folder (model + tokenizer with a chat template): the rollouts stage counts its tokens."""
    from test_training import small_model
    from weightspace.tiny import model as tiny

    folder = tmp / "student"
    if not (folder / "config.json").is_file():
        tok = tiny.train_tokenizer([f"What is {i}+{i}? The answer is {2 * i}." for i in range(50)], 300)
        small_model(tok).save_pretrained(folder)
        tok.save_pretrained(folder)
    return folder


def rollouts_cmd(tmp, params, journal, out):
    return ["python", "-m", "weightspace.stages.rollouts", "--params", str(params), "--data", str(tmp / "data"),
            "--teacher", str(tmp / "no-teacher"), "--base", str(student(tmp)), "--out", str(out), "--metrics", str(out) + ".metrics.json",
            "--journal", str(journal)]


def test_teacher_run_killed_at_half_with_failing_requests_resumes_exactly(slow_server, tmp_path, monkeypatch):
    """The stage against a local OpenAI-compatible server that fails 10% of requests at random: SIGKILL
    at about half, re-run; the re-run sends exactly the missing requests and the table equals an
    uninterrupted run's."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/train.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i}+{i}?",
                                                                   "answer": str(2 * i)}) + "\n" for i in range(16)))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["rollouts"]["teacher"] = {"kind": "api", "tiny": None, "hub": None}
    raw["rollouts"]["generation"].update(engine="openai", openai={
        "base_url": slow_server, "model": "teacher", "api_key_env": "TEST_TEACHER_KEY", "concurrency": 2,
        "max_retries": 4, "timeout_s": 10, "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    e = {**env(tmp_path, REPO), "TEST_TEACHER_KEY": "sk-test"}

    def jobs_seen():
        return {(b["messages"][0]["content"], b["seed"]) for _, b in FakeChat.seen}

    subprocess.run(rollouts_cmd(tmp_path, params, tmp_path / "ref.journal", tmp_path / "ref.jsonl"), env=e,
                   check=True, capture_output=True)
    assert len(jobs_seen()) == 64
    FakeChat.seen, FakeChat.fail_rate = [], 0.1
    monkeypatch.setattr(FakeChat, "delay", 0.1, raising=False)
    journal = tmp_path / "j.jsonl"
    p = subprocess.Popen(rollouts_cmd(tmp_path, params, journal, tmp_path / "t.jsonl"), env=e,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (journal.exists() and journal.read_text().count("\n") >= 32):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = {json.loads(line)["key"] for line in journal.read_text().splitlines()
            if line.endswith("}") and json.loads(line)["ok"]}
    assert 32 <= len(done) < 64 and not (tmp_path / "t.jsonl").exists()
    FakeChat.seen = []
    for _ in range(3):  # a request that fails all its retries fails the run; a re-run sends only it
        r = subprocess.run(rollouts_cmd(tmp_path, params, journal, tmp_path / "t.jsonl"), env=e, capture_output=True,
                           text=True)
        if r.returncode == 0:
            break
        assert "units failed or are missing" in r.stderr
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(jobs_seen()) == 64 - len(done)  # exactly the missing requests (retries aside)
    assert (tmp_path / "t.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    m = json.loads((tmp_path / "t.jsonl.metrics.json").read_text())["generation"]
    assert m["units"] == 64 and m["table_completion_tokens"] == 64 * 7
    assert m["cost_usd"] == pytest.approx((64 * 5 * 1.0 + 64 * 7 * 2.0) / 1e6)
