"""The online history store: earlier applications' hashed keys, looked up and appended as each
application is scored.

`HistoryStore` is the seam: the embedded default is `SQLiteHistoryStore` (one file, WAL mode), and a
store shared by several replicas (Redis, PostgreSQL) implements the same two methods. Only keyed
hashes, times, amounts in cents and application ids are stored.

Concurrency: the scoring service calls the store from its one batch worker thread, so lookups and
appends of one process are serialised; `lookup_and_record` treats a batch in order, each application
seeing those before it in the batch, and commits the batch in one transaction. An application id
already stored is not stored twice (a retry must not inflate velocity).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from features.history import (
    HASHED,
    KEY_NAMES,
    KEYS,
    LINK_KEYS,
    LINK_WINDOW,
    WINDOWS,
    KeyAggregate,
    KeySpec,
    online_history,
)
from features.rings import RING_BOUND, RingBound, RingSize, walk_ring
from features.writelock import Checkpointer, FileWriteLock

# PRAGMA user_version of the file: 2 = keys as 16-byte blobs, 3 = outcomes, 4 = each application's
# identity and link keys (rings)
FORMAT = 4
LinkKey = tuple[int, bytes]  # (index in LINK_KEYS, keyed hash): a link key as the ring walk sees it


class HistoryStoreError(RuntimeError):
    """The history store cannot be used as it is."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS key_events (
    kind     TEXT    NOT NULL,
    key      BLOB    NOT NULL,  -- keyed hash, 16 bytes
    ts       INTEGER NOT NULL,  -- submission time, microseconds since the epoch (UTC)
    identity BLOB,
    email    BLOB,
    cents    INTEGER NOT NULL,
    app      TEXT    NOT NULL,  -- application id
    PRIMARY KEY (kind, key, ts, app)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applications (
    app      TEXT    PRIMARY KEY,
    ts       INTEGER NOT NULL,
    identity BLOB,
    links    BLOB    NOT NULL  -- its link keys: per key, 1 byte (index in LINK_KEYS) + 16-byte hash
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    app      TEXT PRIMARY KEY,
    fraud    INTEGER NOT NULL,  -- 1 confirmed fraud, 0 legitimate
    known_at INTEGER NOT NULL   -- when the outcome was recorded, microseconds since the epoch
) WITHOUT ROWID;
"""


def _blob(hashed: str | None) -> bytes | None:
    """Hex hashes as 16 raw bytes on disk: half the size of the text."""
    return None if hashed is None else bytes.fromhex(hashed)


def _blobs(row: Mapping[str, Any]) -> dict[str, bytes | None]:
    """An application's hashed keys (and identity, email) as they are stored, converted once."""
    return {name: _blob(row[name]) for name in HASHED}


def _link_keys(blobs: Mapping[str, bytes | None]) -> list[LinkKey]:
    return [(i, key) for i, name in enumerate(LINK_KEYS) if (key := blobs[name]) is not None]


def _pack(keys: Sequence[LinkKey]) -> bytes:
    return b"".join(bytes((i,)) + key for i, key in keys)


def _unpack(links: bytes) -> list[LinkKey]:
    return [(links[j], links[j + 1 : j + 17]) for j in range(0, len(links), 17)]


class HistoryStore(Protocol):
    def lookup_and_record(
        self, batch: Sequence[Mapping[str, Any]], *, record: bool = True
    ) -> list[dict[str, float | None]]:
        """History features of each application (rows of `entity_keys` plus `application_id`),
        each seeing only earlier applications; then (if `record`) appends them."""
        ...

    def record_outcomes(self, outcomes: Iterable[tuple[str, bool, int]]) -> int:
        """Records (application id, confirmed fraud, known at µs)."""
        ...

    def close(self) -> None: ...


class SQLiteHistoryStore:
    """SQLite in WAL mode. Commits do not wait for the disk (synchronous=NORMAL: the history is
    rebuilt from the audit trail, not a record of decisions); checkpoints, which do, run on a
    background connection every `checkpoint_seconds`, never on the request path."""

    def __init__(
        self, path: Path | str, *, checkpoint_seconds: float = 1.0, ring_bound: RingBound = RING_BOUND
    ) -> None:
        """`ring_bound` must be the one the model was trained with (`features.rings`); only tests
        change it."""
        self.path = str(path)
        self.ring_bound = ring_bound
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA busy_timeout=10000")  # another process sharing the file
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._writers = FileWriteLock(self.path)  # other processes' writers (serve --workers N)
        with self._writers:  # workers starting together on a new file take turns (as the audit store)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._check_format()
        self._checkpointer: Checkpointer | None = None
        if self.path != ":memory:":
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            # After a checkpoint resets the WAL, cut the file back: it would otherwise keep its
            # largest size (a bulk load's) forever.
            self._db.execute("PRAGMA journal_size_limit=67108864")
            self._checkpointer = Checkpointer(self.path, checkpoint_seconds, name="history-checkpoint")
        self._window_sql = {spec.name: self._aggregate_sql(spec) for spec in KEYS}
        self._windows = {spec.name: spec.windows for spec in KEYS}

    @staticmethod
    def _aggregate_sql(spec: KeySpec) -> str:
        """One statement per key: the window counts, distinct identities and emails and the amount
        over the link window and, where the key has it, the first time it was seen (all history).
        Parameters: ?1 kind, ?2 key, ?3 the application's time."""
        counts = ", ".join(f"COALESCE(SUM(ts >= ?3 - {WINDOWS[w]}), 0)" for w in spec.windows)
        first = (
            ", (SELECT MIN(ts) FROM key_events WHERE kind = ?1 AND key = ?2 AND ts < ?3)"
            if spec.first_seen
            else ", NULL"
        )
        return (
            f"SELECT {counts}, COUNT(DISTINCT identity), COUNT(DISTINCT email), COALESCE(SUM(cents), 0)"
            f"{first} FROM key_events WHERE kind = ?1 AND key = ?2 "
            f"AND ts >= ?3 - {WINDOWS[LINK_WINDOW]} AND ts < ?3"
        )

    def _aggregate(self, kind: str, key: bytes, ts: int) -> KeyAggregate:
        spec_windows = self._windows[kind]
        row = self._db.execute(self._window_sql[kind], (kind, key, ts)).fetchone()
        n = len(spec_windows)
        return KeyAggregate(
            apps=dict(zip(spec_windows, row[:n], strict=True)),
            identities=row[n],
            emails=row[n + 1],
            cents=row[n + 2],
            first_seen_us=row[n + 3],
        )

    def _confirmed(self, blobs: Mapping[str, bytes | None], ts: int) -> dict[str, int | None]:
        """Per link key: earlier applications with the key whose outcome, known before `ts`, was fraud."""
        out: dict[str, int | None] = {}
        for name in LINK_KEYS:
            key = blobs[name]
            if key is None:
                out[name] = None
                continue
            out[name] = self._db.execute(
                "SELECT COUNT(*) FROM key_events e JOIN outcomes o ON o.app = e.app "
                "WHERE e.kind = ?1 AND e.key = ?2 AND e.ts < ?3 AND o.fraud = 1 AND o.known_at < ?3",
                (name, key, ts),
            ).fetchone()[0]
        return out

    def record_outcomes(self, outcomes: Iterable[tuple[str, bool, int]]) -> int:
        """Records (application id, confirmed fraud, known at µs); a later record for the same
        application replaces the earlier one (an officer may correct an outcome)."""
        n = 0
        with self._lock, self._writers:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for app, fraud, known_at in outcomes:
                    self._db.execute(
                        "INSERT OR REPLACE INTO outcomes (app, fraud, known_at) VALUES (?, ?, ?)",
                        (app, int(bool(fraud)), int(known_at)),
                    )
                    n += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n

    def _linked(self, blobs: Mapping[str, bytes | None], ts: int) -> int | None:
        """Distinct other identities sharing a link key with the application in the link window."""
        keys = [(name, blobs[name]) for name in LINK_KEYS if blobs[name] is not None]
        if not keys:
            return None
        match = " OR ".join("(kind = ? AND key = ?)" for _ in keys)
        params: list[Any] = [v for pair in keys for v in pair]
        sql = (
            f"SELECT COUNT(DISTINCT identity) FROM key_events WHERE ({match}) "
            f"AND ts >= ? AND ts < ? AND identity != ?"
        )
        params += [ts - WINDOWS[LINK_WINDOW], ts, blobs["identity"]]
        return int(self._db.execute(sql, params).fetchone()[0])

    def _ring(
        self, blobs: Mapping[str, bytes | None], ts: int, aggregates: Mapping[str, KeyAggregate | None]
    ) -> RingSize | None:
        """The application's ring (`features.rings`): a walk of at most `ring_bound.hops` rounds of
        two indexed queries, none at all when no link key of the application was seen before."""
        keys = _link_keys(blobs)
        if not keys:
            return None
        counts = {}
        for i, key in keys:
            agg = aggregates.get(LINK_KEYS[i])
            if agg is not None:
                counts[(i, key)] = agg.apps[LINK_WINDOW]
        lo, hi = ts - WINDOWS[LINK_WINDOW], ts
        return walk_ring(
            blobs["identity"],
            keys,
            neighbours=lambda todo: self._key_applications(todo, lo, hi),
            links=self._application_links,
            known_counts=counts,
            bound=self.ring_bound,
        )

    def _key_applications(
        self, keys: Sequence[LinkKey], lo: int, hi: int
    ) -> Iterator[tuple[LinkKey, list[str]]]:
        """Per key, the applications of [lo, hi) that carry it: at most `hub + 1` (more would only
        say that the key is a hub). One statement; SQLite runs the arms of UNION ALL in order, so
        each key's rows come together and reading can stop after any key."""
        arms = " UNION ALL ".join(
            f"SELECT {n}, app FROM (SELECT app FROM key_events WHERE kind = :k{n} AND key = :v{n} "
            f"AND ts >= :lo AND ts < :hi LIMIT :lim)"
            for n in range(len(keys))
        )
        params: dict[str, Any] = {"lo": lo, "hi": hi, "lim": self.ring_bound.hub + 1}
        for n, (i, key) in enumerate(keys):
            params[f"k{n}"], params[f"v{n}"] = LINK_KEYS[i], key
        cursor = self._db.execute(arms, params)
        try:
            current, apps = -1, list[str]()
            for n, app in cursor:
                if n != current:
                    if apps:
                        yield keys[current], apps
                    if n < current:
                        raise HistoryStoreError("SQLite returned the arms of UNION ALL out of order")
                    current, apps = n, []
                apps.append(app)
            if apps:
                yield keys[current], apps
        finally:
            cursor.close()  # the walk may stop early, at the cap

    def _application_links(self, apps: Sequence[str]) -> dict[str, tuple[bytes | None, list[LinkKey]]]:
        marks = ", ".join("?" * len(apps))
        rows = self._db.execute(f"SELECT app, identity, links FROM applications WHERE app IN ({marks})", apps)
        return {app: (identity, _unpack(links)) for app, identity, links in rows}

    def lookup_and_record(
        self, batch: Sequence[Mapping[str, Any]], *, record: bool = True
    ) -> list[dict[str, float | None]]:
        out = []
        with self._lock, self._writers:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in batch:
                    ts = int(row["ts"])
                    blobs = _blobs(row)
                    aggregates = {
                        name: None if (key := blobs[name]) is None else self._aggregate(name, key, ts)
                        for name in KEY_NAMES
                    }
                    linked, confirmed = self._linked(blobs, ts), self._confirmed(blobs, ts)
                    ring = self._ring(blobs, ts, aggregates)
                    out.append(online_history(ts, aggregates, linked, confirmed, ring))
                    if record:
                        self._record(row, blobs)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def _record(self, row: Mapping[str, Any], blobs: Mapping[str, bytes | None] | None = None) -> None:
        app, ts = row["application_id"], int(row["ts"])
        blobs = _blobs(row) if blobs is None else blobs
        identity, email, cents = blobs["identity"], blobs["email_key"], int(row["cents"])
        cur = self._db.execute(
            "INSERT OR IGNORE INTO applications (app, ts, identity, links) VALUES (?, ?, ?, ?)",
            (app, ts, identity, _pack(_link_keys(blobs))),
        )
        if cur.rowcount == 0:
            return  # already recorded: a retry
        self._db.executemany(
            "INSERT OR IGNORE INTO key_events (kind, key, ts, identity, email, cents, app) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (name, key, ts, identity, email, cents, app)
                for name in KEY_NAMES
                if (key := blobs[name]) is not None
            ],
        )

    def record_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Appends applications without looking anything up (loading a lender's history)."""
        n = 0
        with self._lock, self._writers:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    self._record(row)
                    n += 1
                self._db.execute("COMMIT")
                if self._checkpointer is not None:
                    # A bulk load is not on the request path: fold it into the database now.
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM applications").fetchone()[0])

    def _check_format(self) -> None:
        """Creates the tables in a new file; refuses a file written in another format, whose keys
        would silently never match."""
        found = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables and found != FORMAT:
            self._db.close()
            self._writers.close()
            raise HistoryStoreError(
                f"history store {self.path} has format {found}, this version reads {FORMAT}: "
                "move it away and reload the history (fraudscore history --data FILE)"
            )
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {FORMAT}")

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._checkpointer is not None:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._writers.close()
