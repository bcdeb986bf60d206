"""pygit2's BlobIO reader loses a wake-up when the writer's chunk lands between its ``empty()`` and its
``clear()``; ``gitio.patch_blobio`` does not. The interleaving is forced, not waited for: a queue whose
``empty()`` lets the writer put its chunk and set the event just after it looked."""

from __future__ import annotations

import io
import queue
import threading

import pygit2
from pygit2 import blob

from weightspace.core import gitio


class LateWriterQueue(queue.Queue):
    """``empty()`` answers True as seen, then the writer puts its chunk and sets ``ready``; the writer then
    has one more chunk, whose ``put`` waits for the one slot, before it closes (pygit2's writer, in order)."""

    def __init__(self, reader):
        super().__init__(maxsize=1)
        self.reader, self.fired = reader, False

    def fire(self):
        if not self.fired:
            self.fired = True
            self.put(b"late chunk")
            self.reader._ready.set()
            threading.Thread(target=self.rest, daemon=True).start()

    def empty(self):
        seen = super().empty()
        if seen:
            self.fire()  # after the reader looked: what it saw is stale
        return seen

    def get(self, *args, **kwargs):
        self.fire()  # a reader that never asks empty() meets the same writer
        return super().get(*args, **kwargs)

    def rest(self):
        self.put(b", last chunk")
        self.reader._ready.set()
        self.reader._writer_closed.set()
        self.reader._ready.set()


def stream(readinto) -> tuple[bool, bytes]:
    """Read one stream whose writer races the reader, with ``readinto`` as the reader; (hung, data)."""
    r = blob._BlobIO.__new__(blob._BlobIO)
    io.RawIOBase.__init__(r)
    r._ready, r._writer_closed, r._chunk = threading.Event(), threading.Event(), None
    r._queue = LateWriterQueue(r)
    r._ready.set()  # as after the previous chunk
    out = []

    def read():
        buf = bytearray(64)
        while n := readinto(r, buf):
            out.append(bytes(buf[:n]))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(2)
    return t.is_alive(), b"".join(out)


def test_pygit2s_reader_loses_the_wake_up_and_the_patched_one_does_not():
    original = blob._BlobIO.readinto
    hung, _ = stream(original)
    assert hung  # pygit2's own reader: waits for ever on the cleared event
    assert stream(gitio._readinto) == (False, b"late chunk, last chunk")


def test_the_patched_reader_reads_a_real_multi_chunk_blob_whole(tmp_path, monkeypatch):
    repo = pygit2.init_repository(str(tmp_path / "r"))
    data = bytes(range(256)) * 400  # 100 KiB: 13 chunks of the writer's 8 KiB
    oid = repo.create_blob(data)
    monkeypatch.setattr(blob._BlobIO, "readinto", gitio._readinto)
    for chunk in (1, 1000, 8192, 1 << 20):
        with pygit2.BlobIO(repo[oid]) as f:
            got = b""
            while part := f.read(chunk):
                got += part
        assert got == data, chunk


def test_reproduce_reads_revisions_with_the_patched_reader(monkeypatch):
    from conftest import REPO
    from weightspace.report import reproduce

    monkeypatch.setattr(blob._BlobIO, "readinto", blob._BlobIO.readinto)  # pygit2's own; restored afterwards
    assert blob._BlobIO.readinto is not gitio._readinto
    got = reproduce.load("HEAD", str(REPO))
    assert blob._BlobIO.readinto is gitio._readinto and "geometry" in got and "claims" in got
