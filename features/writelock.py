"""Writers of one SQLite file in several processes (`fraudscore serve --workers N`) take turns on an
advisory lock of the file (flock) before `BEGIN IMMEDIATE`; `Checkpointer` keeps a file's WAL
checkpoints off their commits.

SQLite's own wait for a busy file polls: its busy handler sleeps 1, 2, 5, 10, ... up to 100 ms
between tries, so a writer that finds the file locked loses milliseconds after the lock is free.
An flock waits in the kernel and wakes the next writer as soon as the holder lets go. SQLite's
locks are POSIX record locks (fcntl), which Linux keeps apart from flock locks: the two never
interfere. Uncontended, taking the lock is one system call.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
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


class Checkpointer:
    """Checkpoints a WAL-mode SQLite file from a background thread on its own connection, every
    `every` seconds, so that no commit on the request path pays for one. SQLite's automatic
    checkpoint runs inside the commit that crosses its size (1,000 pages): it copies the WAL into
    the database and flushes the database file, and measured on the 2-core machine that put commits
    of a few decisions at 60-110 ms instead of about 2. The connection that writes must turn the
    automatic one off (`PRAGMA wal_autocheckpoint=0`); PASSIVE never waits for a writer or a reader,
    and what it cannot copy now waits for the next round. Durability is the commit's (the WAL is
    flushed when it commits), not the checkpoint's."""

    def __init__(self, path: Path | str, every: float = 1.0, *, name: str = "sqlite-checkpoint") -> None:
        self.path = str(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), name=name, daemon=True)
        self._thread.start()

    def _loop(self, every: float) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(every):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError:  # busy: another process's checkpoint; next round
                    continue
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
