"""The openai engine against a small OpenAI-compatible server on 127.0.0.1 started by the test."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from weightspace import config
from weightspace.generate.generation import OpenAIEngine, prompt_seed


class FakeChat(BaseHTTPRequestHandler):
    fail_first = 0  # answer this many requests with 503 / 429 before serving
    fail_rate = 0.0  # then answer this share of requests with 500, at random (seeded)
    retry_after_ms = None  # header sent with the 429s
    reasoning_field = "reasoning_content"  # DeepSeek's API; vLLM's server (0.31.0) names it "reasoning"
    delay = 0.02  # seconds per request
    rng = None
    lock = threading.Lock()
    seen: list = []
    active = 0
    max_active = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.seen.append((self.headers.get("Authorization"), body))
            cls.active += 1
            cls.max_active = max(cls.max_active, cls.active)
            fail = cls.fail_first > 0 or (cls.fail_rate > 0 and cls.rng.random() < cls.fail_rate)
            cls.fail_first -= 1
        # a request counts as active until its answer is ready, not until the bytes are sent: the client may send
        # its next request as soon as it reads them, before this thread would have decremented
        try:
            threading.Event().wait(cls.delay)
        finally:
            with cls.lock:
                cls.active -= 1
        if fail:
            self.send_response(503 if len(cls.seen) % 2 and cls.retry_after_ms is None else 429)
            if cls.retry_after_ms is not None:
                self.send_header("retry-after-ms", str(cls.retry_after_ms))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "busy"}}')
            return
        question = body["messages"][0]["content"]
        text = f"Working on '{question}' (seed {body['seed']}). \\boxed{{{len(question)}}}"
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text, cls.reasoning_field: "hmm"}}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    import random

    FakeChat.seen, FakeChat.fail_first, FakeChat.max_active = [], 0, 0
    FakeChat.fail_rate, FakeChat.retry_after_ms, FakeChat.rng = 0.0, None, random.Random(0)
    FakeChat.reasoning_field = "reasoning_content"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def gen(url, retries=3, concurrency=3):
    o = config.OpenAIEngine(base_url=url, model="teacher", api_key_env="TEST_TEACHER_KEY", concurrency=concurrency,
                            max_retries=retries, timeout_s=10)
    return config.Generation(engine="openai", temperature=0.6, top_p=0.95, max_new_tokens=50, batch_size=8, seed=42,
                             max_model_len=None, gpu_memory_utilization=None, openai=o)


def test_completions_and_request_fields(server, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    out = OpenAIEngine(gen(server)).generate(["What is 2+2?", "Hi"], n=3)
    assert [len(o) for o in out] == [3, 3]
    c = out[0][0]
    assert c.text.startswith("<think>hmm</think>Working on 'What is 2+2?' (seed ") and c.text.endswith("\\boxed{12}")
    assert c.n_tokens == 7 and c.truncated is False
    auth, body = FakeChat.seen[0]
    assert auth == "Bearer sk-test"
    assert body["model"] == "teacher" and body["max_tokens"] == 50 and body["temperature"] == 0.6
    assert sorted(b["seed"] for _, b in FakeChat.seen) == [42, 42, 43, 43, 44, 44]  # no ids: seed + sample
    assert FakeChat.max_active <= 3


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_read_under_either_name_and_seeds_follow_the_prompt_ids(server, monkeypatch, field):
    """DeepSeek's API and vLLM's server name the reasoning differently; with ids, each prompt has its own seeds."""
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    FakeChat.reasoning_field = field
    out = OpenAIEngine(gen(server)).generate(["What is 2+2?", "Hi"], n=2, ids=["a", "b"])
    assert out[0][0].text.startswith("<think>hmm</think>Working on")
    want = {(q, prompt_seed(42, i) + s) for q, i in (("What is 2+2?", "a"), ("Hi", "b")) for s in range(2)}
    assert {(b["messages"][0]["content"], b["seed"]) for _, b in FakeChat.seen} == want


def test_retries_with_backoff_then_succeeds(server, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    FakeChat.fail_first = 2
    engine = OpenAIEngine(gen(server, retries=3, concurrency=1))
    out = engine.generate(["q"], n=1)
    assert out[0][0].text.endswith("\\boxed{1}")
    assert len(FakeChat.seen) == 3
    assert engine.stats["http_attempts"] == 3 and engine.stats["requests_ok"] == 1


def test_429_retry_after_is_honoured(server, monkeypatch):
    import time

    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    FakeChat.fail_first, FakeChat.retry_after_ms = 1, 1500
    t = time.perf_counter()
    OpenAIEngine(gen(server, retries=2, concurrency=1)).generate(["q"], n=1)
    # the SDK's own first backoff is at most 0.5 s; the server asked for 1.5 s
    assert time.perf_counter() - t >= 1.5 and len(FakeChat.seen) == 2


def test_a_failed_request_costs_that_request_not_the_run(server, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    FakeChat.fail_first = 3  # the first job sent fails 3 times: 1 try + 2 retries
    engine = OpenAIEngine(gen(server, retries=2, concurrency=1))
    done = {}
    failed = engine.run_jobs([("a", "q1", 1), ("b", "q2", 2), ("c", "q3", 3)], lambda k, c, u: done.setdefault(k, c))
    assert [k for k, _ in failed] == ["a"] and failed[0][1].split(":")[0] in ("InternalServerError", "RateLimitError")
    assert set(done) == {"b", "c"} and engine.stats["requests_failed"] == 1 and engine.stats["requests_ok"] == 2
    FakeChat.fail_first = 10
    with pytest.raises(RuntimeError, match="1 of 1 requests failed after 2 retries"):
        engine.generate(["q"], n=1)


def test_missing_key_named(monkeypatch):
    monkeypatch.delenv("TEST_TEACHER_KEY", raising=False)
    with pytest.raises(RuntimeError, match="TEST_TEACHER_KEY"):
        OpenAIEngine(gen("http://127.0.0.1:9/v1"))
