"""WAL checkpoints run in the background, never inside a commit: the audit store's commits append to
the WAL only (measured: a commit that ran SQLite's automatic checkpoint took 60-110 ms instead of
about 2), and a background connection folds the WAL into the database file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from features.writelock import Checkpointer
from scoring.audit import AuditStore
from tests.scoring.test_audit import SECRET, record


def _fill(path: Path, rows: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?)", [(bytes(4000),) for _ in range(rows)])
    db.execute("COMMIT")
    return db


def _until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_checkpointer_folds_the_wal_into_the_database(tmp_path: Path):
    path = tmp_path / "f.sqlite"
    db = _fill(path, 2000)  # about 8 MB, 2,000 pages: past SQLite's automatic threshold
    assert path.stat().st_size < 100_000  # nothing checkpointed by the commit itself
    checkpointer = Checkpointer(path, every=0.05)
    try:
        assert _until(lambda: path.stat().st_size > 8_000_000)
    finally:
        checkpointer.stop()
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2000
    db.close()


def test_audit_commits_leave_checkpoints_to_the_background(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    with AuditStore(path, secret=SECRET) as store:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        empty = path.stat().st_size
        for i in range(50):
            store.record(record(f"A-{i}", minutes=i))
        # The background connection folds the WAL into the file while the store stays open.
        assert _until(lambda: path.stat().st_size > empty + 50 * 500)
        assert store.get("A-49") is not None
    with AuditStore(path, secret=SECRET) as again:
        assert [again.get(f"A-{i}") is not None for i in range(50)] == [True] * 50
