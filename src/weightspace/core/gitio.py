"""Reading files at git revisions through DVC without pygit2's lost wake-up.

DVC reads a revision's ``dvc.lock``, ``dvc.yaml`` and metric files through scmrepo, which streams each
blob with pygit2's ``BlobIO``: a writer thread puts 8 KiB chunks into a one-slot queue and sets an
event; the reader (``_BlobIO.readinto``, every pygit2 release up to 1.21.0) waits for the event, finds
the queue empty, and clears the event. When the writer puts a chunk and sets the event between the
reader's ``empty()`` and its ``clear()``, the wake-up is lost: the reader waits for ever and the writer
blocks on its next ``put``. A file of three chunks or more can hang (this repository's ``dvc.lock`` is
17), rarely, more often on a loaded machine. ``patch_blobio`` replaces ``readinto`` in this process by
one that blocks on the queue itself (``get`` with a short timeout), which loses no chunk and no
wake-up; the ``dvc`` command line, another process, keeps pygit2's own."""

from __future__ import annotations

import queue


def _readinto(self, b, /) -> int:
    while self._chunk is None:
        try:
            chunk = self._queue.get(timeout=0.05)
        except queue.Empty:
            if self._writer_closed.is_set() and self._queue.empty():
                return 0  # EOF: the writer has closed and put its last chunk, which was read
            continue
        if chunk:
            self._chunk = chunk
    n = min(len(self._chunk), len(b))
    b[:n] = self._chunk[:n]
    self._chunk = self._chunk[n:] or None
    return n


def patch_blobio() -> None:
    """Make pygit2's ``BlobIO`` reads in this process immune to the lost wake-up (module docstring)."""
    from pygit2 import blob

    blob._BlobIO.readinto = _readinto
