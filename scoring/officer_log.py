"""What officers saw and did on the review page, in a tamper-evident log: one SQLite file, one row
per action, each row's `mac` an HMAC-SHA256 (under a key derived from the service's secret) of its
sequence number, its content and the previous row's mac. Editing a row breaks its mac; deleting or
reordering rows breaks the chain at the first row whose `prev` no longer matches; a forger without
the key cannot recompute the chain. `verify` names the first broken row (`fraudscore audit verify`).

What it cannot see on its own: the last rows cut off the end leave a shorter chain that verifies.
`verify` reports the count and head mac so an operator can compare them with a copy kept elsewhere
(the operations guide says how).

Rows hold no applicant data: the officer's user name, the action, the application id and small
details (filters used, outcome recorded); never names, numbers or texts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

FORMAT: Final = 1
GENESIS: Final = "0" * 64
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS actions (
    seq     INTEGER PRIMARY KEY,
    at_us   INTEGER NOT NULL,
    officer TEXT    NOT NULL,
    role    TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    detail  TEXT    NOT NULL,  -- JSON object
    prev    TEXT    NOT NULL,
    mac     TEXT    NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Action:
    seq: int
    at: dt.datetime
    officer: str
    role: str
    action: str
    target: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Verification:
    rows: int
    head: str
    broken_at: int | None  # the seq of the first row that fails, None when the chain holds
    problem: str

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _mac(key: bytes, seq: int, at_us: int, fields: tuple[str, ...], prev: str) -> str:
    text = json.dumps([seq, at_us, *fields, prev], ensure_ascii=False, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


class OfficerLog:
    def __init__(self, path: Path | str, *, secret: bytes) -> None:
        if not secret:
            raise ValueError("the officer log's secret must not be empty")
        self.path = str(path)
        self._key = hmac.new(secret, b"fraudscore-officer-log", hashlib.sha256).digest()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        found = self._db.execute("PRAGMA user_version").fetchone()[0]
        if found not in (0, FORMAT):
            self._db.close()
            raise ValueError(f"officer log {self.path} has format {found}; this version reads {FORMAT}")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {FORMAT}")

    def append(
        self,
        officer: str,
        role: str,
        action: str,
        target: str = "",
        detail: Mapping[str, Any] | None = None,
        *,
        at: dt.datetime | None = None,
    ) -> int:
        """Appends one action (committed before returning); returns its sequence number."""
        at_us = int((at or dt.datetime.now(dt.UTC)).timestamp() * 1_000_000)
        fields = (officer, role, action, target, json.dumps(detail or {}, sort_keys=True, ensure_ascii=False))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                last = self._db.execute("SELECT seq, mac FROM actions ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
                self._db.execute(
                    "INSERT INTO actions (seq, at_us, officer, role, action, target, detail, prev, mac) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, at_us, *fields, prev, _mac(self._key, seq, at_us, fields, prev)),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return int(seq)

    def recent(self, limit: int = 100, *, target: str | None = None) -> list[Action]:
        sql = "SELECT seq, at_us, officer, role, action, target, detail FROM actions"
        params: list[Any] = []
        if target is not None:
            sql += " WHERE target = ?"
            params.append(target)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
        return [
            Action(
                seq,
                dt.datetime.fromtimestamp(at_us / 1_000_000, dt.UTC),
                officer,
                role,
                action,
                target,
                json.loads(detail),
            )
            for seq, at_us, officer, role, action, target, detail in rows
        ]

    def verify(self) -> Verification:
        """Walks the chain in storage order (rowid), so reordered rows are seen as such."""
        prev, expected_seq, rows = GENESIS, 1, 0
        with self._lock:
            cursor = self._db.execute(
                "SELECT seq, at_us, officer, role, action, target, detail, prev, mac "
                "FROM actions ORDER BY rowid"
            )
            for seq, at_us, officer, role, action, target, detail, stored_prev, mac in cursor:
                rows += 1
                if seq != expected_seq:
                    problem = f"expected record {expected_seq} here, found {seq} (deleted or reordered)"
                    return Verification(rows, prev, min(seq, expected_seq), problem)
                if stored_prev != prev:
                    return Verification(rows, prev, seq, "does not follow the record before it")
                fields = (officer, role, action, target, detail)
                if not hmac.compare_digest(mac, _mac(self._key, seq, at_us, fields, stored_prev)):
                    return Verification(rows, prev, seq, "its content does not match its MAC (edited)")
                prev, expected_seq = mac, expected_seq + 1
        return Verification(rows, prev, None, "")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> OfficerLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
