"""The online history store: earlier applications' hashed keys, looked up and appended as each
application is scored.

`HistoryStore` is the seam: the embedded default is `SQLiteHistoryStore`, and a store shared by
replicas on several machines (Redis, PostgreSQL) implements the same methods. Only keyed hashes,
times, amounts in cents and application ids are stored.

`SQLiteHistoryStore` answers from memory and writes a log. Lookups go to a `HistoryIndex`
(`features.history_index`) built from the log when the store opens; the durable copy is two
append-only tables in one SQLite file (WAL mode): one row per application (its time, amount,
identity, email and packed keys) and one per outcome. Appending a row to a table keyed by an
increasing sequence writes the file's last pages, not a dozen scattered index pages, so commits and
checkpoints write little. Several processes sharing the file (`serve --workers N`) take turns to
write (`FileWriteLock`), and each first reads the rows the others appended since its last turn.

Concurrency: the scoring service calls the store from its one batch worker thread, so lookups and
appends of one process are serialised; `lookup_and_record` treats a batch in order, each application
seeing those before it in the batch, and commits the batch in one transaction. An application id
already stored is not stored twice (a retry must not inflate velocity).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from features.history import HASHED, KEY_NAMES
from features.history_index import HistoryIndex, LogRow, pack_keys
from features.rings import RING_BOUND, RingBound
from features.writelock import Checkpointer, FileWriteLock

# PRAGMA user_version of the file: 2 = keys as 16-byte blobs, 3 = outcomes, 4 = each application's
# identity and link keys (rings), 5 = append-only logs read into memory (4 is converted on opening)
FORMAT = 5


class HistoryStoreError(RuntimeError):
    """The history store cannot be used as it is."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    seq      INTEGER PRIMARY KEY,  -- order of appending: what another process has read up to
    app      TEXT    NOT NULL,     -- application id
    ts       INTEGER NOT NULL,     -- submission time, microseconds since the epoch (UTC)
    cents    INTEGER NOT NULL,
    identity BLOB,                 -- keyed hashes, 16 bytes
    email    BLOB,
    keys     BLOB    NOT NULL      -- per key: 1 byte (index in KEY_NAMES) + 16-byte keyed hash
);
CREATE TABLE IF NOT EXISTS outcomes (
    seq      INTEGER PRIMARY KEY,
    app      TEXT    NOT NULL,
    fraud    INTEGER NOT NULL,     -- 1 confirmed fraud, 0 legitimate (a later row replaces an earlier)
    known_at INTEGER NOT NULL      -- when the outcome was recorded, microseconds since the epoch
);
"""
APPEND = "INSERT INTO applications (app, ts, cents, identity, email, keys) VALUES (?, ?, ?, ?, ?, ?)"


def _create_tables(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit a transaction in progress first.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _blob(hashed: str | None) -> bytes | None:
    """Hex hashes as 16 raw bytes: half the size of the text."""
    return None if hashed is None else bytes.fromhex(hashed)


def _blobs(row: Mapping[str, Any]) -> dict[str, bytes | None]:
    """An application's hashed keys (and identity, email) as they are stored, converted once."""
    return {name: _blob(row[name]) for name in HASHED}


def _log_row(row: Mapping[str, Any], ts: int, blobs: Mapping[str, bytes | None]) -> LogRow:
    app, cents = row["application_id"], int(row["cents"])
    return (app, ts, cents, blobs["identity"], blobs["email_key"], pack_keys(blobs))


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
    """Lookups from memory, appends to a log in SQLite (WAL mode). Commits do not wait for the disk
    (synchronous=NORMAL: the history is rebuilt from the audit trail, not a record of decisions);
    checkpoints, which do, run on a background connection every `checkpoint_seconds`, never on the
    request path. Opening reads the whole log (seconds for a few hundred thousand applications)."""

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
        self._index = HistoryIndex(ring_bound)
        self._read_apps = self._read_outcomes = 0  # the last seq of each log read into the index
        with self._lock:
            self._catch_up()

    def _catch_up(self) -> None:
        """Reads into the index what was appended to the logs since the last read (by another
        process, or everything when the store opens)."""
        rows = self._db.execute(
            "SELECT seq, app, ts, cents, identity, email, keys FROM applications WHERE seq > ? ORDER BY seq",
            (self._read_apps,),
        )

        def read() -> Iterator[LogRow]:
            for seq, *row in rows:
                self._read_apps = seq
                yield tuple(row)  # the columns of LogRow, in its order

        if self._read_apps == 0:  # the whole log: a key's lists are put in time order once, at the end
            self._index.extend(read())
        else:
            # Another worker's latest appends: each goes into its place in a key's list, since
            # sorting the whole list again (extend) costs its length per catch-up, and workers'
            # appends interleave out of time order by a few milliseconds (with 2 workers at 500/s,
            # the re-sorting was 12% of the samples; bench/results/profile-2w-500-gil.md).
            for row in read():
                self._index.add(row)
        outcomes = self._db.execute(
            "SELECT seq, app, fraud, known_at FROM outcomes WHERE seq > ? ORDER BY seq",
            (self._read_outcomes,),
        )
        for seq, app, fraud, known_at in outcomes:
            self._index.set_outcome(app, bool(fraud), known_at)
            self._read_outcomes = seq

    def record_outcomes(self, outcomes: Iterable[tuple[str, bool, int]]) -> int:
        """Records (application id, confirmed fraud, known at µs); a later record for the same
        application replaces the earlier one (an officer may correct an outcome)."""
        with self._lock, self._writers:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._catch_up()
                cur = self._db.executemany(
                    "INSERT INTO outcomes (app, fraud, known_at) VALUES (?, ?, ?)",
                    ((app, int(bool(fraud)), int(known_at)) for app, fraud, known_at in outcomes),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._catch_up()  # this process's own rows, in the order they were appended
        return cur.rowcount

    def lookup_and_record(
        self, batch: Sequence[Mapping[str, Any]], *, record: bool = True
    ) -> list[dict[str, float | None]]:
        if not record:
            with self._lock:
                self._catch_up()
                return [self._index.features(int(row["ts"]), _blobs(row)) for row in batch]
        out = []
        with self._appending() as appended:
            for row in batch:
                ts, blobs = int(row["ts"]), _blobs(row)
                out.append(self._index.features(ts, blobs))
                entry = _log_row(row, ts, blobs)
                if self._index.add(entry):
                    appended.append(entry)
        return out

    @contextmanager
    def _appending(self) -> Iterator[list[LogRow]]:
        """One write transaction: it first reads what the others appended, then the caller adds
        applications to the index and to the list yielded, which is appended to the log and
        committed. On any failure the index and the position read up to are as they were before."""
        with self._lock, self._writers:
            self._db.execute("BEGIN IMMEDIATE")
            size = read = None
            try:
                self._catch_up()
                self._index.settle()  # all it holds is committed: keys carried once into a run
                size, read = len(self._index), self._read_apps
                appended: list[LogRow] = []
                yield appended
                self._append(appended)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                    self._db.execute("ROLLBACK")
                if size is not None and read is not None:
                    self._index.truncate(size)
                    self._read_apps = read  # the numbers of rolled-back rows will be used again
                raise

    def _append(self, rows: Sequence[LogRow]) -> None:
        """Appends rows the index has taken; they take the next numbers of the log, which this
        process has read up to (it holds the write lock)."""
        if not rows:
            return
        cur = self._db.executemany(APPEND, rows)
        assert cur.rowcount == len(rows)
        self._read_apps = self._db.execute("SELECT MAX(seq) FROM applications").fetchone()[0]

    def record_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Appends applications without looking anything up (loading a lender's history)."""
        with self._appending() as appended:
            for row in rows:
                entry = _log_row(row, int(row["ts"]), _blobs(row))
                if self._index.add(entry):
                    appended.append(entry)
        if self._checkpointer is not None:
            with self._lock:  # a bulk load is not on the request path: fold it into the database now
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(appended)

    def count(self) -> int:
        with self._lock:
            self._catch_up()
            return len(self._index)

    def _check_format(self) -> None:
        """Creates the tables in a new file and converts format 4; refuses a file written in
        another format, whose keys would silently never match."""
        found = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables and found == 4:
            self._convert_from_4()
            return
        if tables and found != FORMAT:
            self._db.close()
            self._writers.close()
            raise HistoryStoreError(
                f"history store {self.path} has format {found}, this version reads {FORMAT}: "
                "move it away and reload the history (fraudscore history --data FILE)"
            )
        _create_tables(self._db)
        self._db.execute(f"PRAGMA user_version = {FORMAT}")

    def _convert_from_4(self) -> None:
        """Format 4 kept one row per key of each application, indexed by key, and looked features
        up in SQL. Its rows become the logs of format 5 in one transaction (applications in time
        order), then the file is compacted."""
        kinds = {name: i for i, name in enumerate(KEY_NAMES)}
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            keys: dict[str, list[bytes]] = defaultdict(list)
            cents_email: dict[str, tuple[int, bytes | None]] = {}
            events = db.execute("SELECT app, kind, key, email, cents FROM key_events")
            for app, kind, key, email, cents in events:
                keys[app].append(bytes((kinds[kind],)) + key)
                cents_email[app] = (cents, email)
            db.execute("ALTER TABLE applications RENAME TO applications_4")
            db.execute("ALTER TABLE outcomes RENAME TO outcomes_4")
            _create_tables(db)
            rows = []
            old = db.execute("SELECT app, ts, identity FROM applications_4 ORDER BY ts, app")
            for app, ts, identity in old:
                cents, email = cents_email.get(app, (0, None))  # an application without keys has none
                rows.append((app, ts, cents, identity, email, b"".join(sorted(keys.get(app, ())))))
            db.executemany(APPEND, rows)
            db.execute(
                "INSERT INTO outcomes (app, fraud, known_at) SELECT app, fraud, known_at FROM outcomes_4"
            )
            for table in ("key_events", "applications_4", "outcomes_4"):
                db.execute(f"DROP TABLE {table}")
            db.execute(f"PRAGMA user_version = {FORMAT}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if self.path != ":memory:":
            db.execute("VACUUM")  # the dropped index pages back to the file system

    def close(self) -> None:
        self._index.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._checkpointer is not None:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._writers.close()
