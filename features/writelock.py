"""Writers of one SQLite file in several processes (`fraudscore serve --workers N`) take turns on an
advisory lock of the file (flock) before `BEGIN IMMEDIATE`.

SQLite's own wait for a busy file polls: its busy handler sleeps 1, 2, 5, 10, ... up to 100 ms
between tries, so a writer that finds the file locked loses milliseconds after the lock is free.
An flock waits in the kernel and wakes the next writer as soon as the holder lets go. SQLite's
locks are POSIX record locks (fcntl), which Linux keeps apart from flock locks: the two never
interfere. Uncontended, taking the lock is one system call.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileWriteLock:
    """A process-wide turn to write `path` (no lock for ":memory:"). Not a thread lock: callers
    hold their own thread lock around it, as the stores do."""

    def __init__(self, path: Path | str) -> None:
        """Creates `path` empty if it does not exist (as SQLite would: an empty file is an empty
        database), so the lock can be held from a store's first statement on."""
        self._fd = (
            None if str(path) == ":memory:" else os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        )

    def __enter__(self) -> FileWriteLock:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
