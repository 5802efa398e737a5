"""Files that several processes may write at once: a lock held across processes and an
atomic write. Used by the weight cache (``pipelines/ncnn.py``), the engine's learned costs and
the run folders of ``pipelines/report.py``.

The lock is POSIX ``flock`` (Linux, macOS); elsewhere (Windows) :func:`locked` only serialises
the threads of one process, and the atomic write still never shows a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

if sys.platform != "win32":
    import fcntl

_THREADS = threading.Lock()  # where there is no flock: the threads of this process at least


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file, created when absent, or a folder) until
    the block ends; another process (or thread) locking the same path waits. A lock file is
    never removed: removing it would let two processes lock two different files.

    Raises OSError when the lock file cannot be created (folder missing or not writable).
    """
    if sys.platform == "win32":  # pragma: no cover - no flock (and no Windows) here
        with _THREADS:
            yield
        return
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases its flock


def write_atomic(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file of a unique name in the same folder
    and ``os.replace``: a reader sees the old file or the whole new one, never a part, and
    concurrent writers never share a temporary. ``sync``: flush the data to the disk before
    the rename. The temporary is removed on failure.

    Raises OSError (folder not writable, disk full: ``errno.ENOSPC``).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and caches are meant to be shared
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
