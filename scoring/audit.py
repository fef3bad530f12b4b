"""The audit store: every scoring decision as it was answered, the outcomes officers record for it
later, the review queue of the officers' page and the labelled rows that retraining reads back.

The embedded default is one SQLite file in WAL mode with `synchronous=FULL`: `record` commits (and
the WAL reaches the disk) before it returns, so a decision acknowledged to a caller survives a crash
or power loss. `record` is also the idempotency check: a retry of an `application_id` with the same
payload digest gets the stored decision back, a different payload is refused. Every field of the
stored application that `features.schema` marks as personal data is a keyed hash or encrypted, as
settings say (`scoring.personal`), so the file holds no personal data in clear.

Concurrency: one connection behind a lock (the service calls from a worker thread); each write is
one `BEGIN IMMEDIATE` transaction, so two processes sharing the file are safe too.

The record itself, and how it is written to the columns and read back: `scoring.audit_record`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from features.schema import CANONICAL_SCHEMA, FIELDS
from features.writelock import Checkpointer, FileWriteLock
from scoring.audit_record import (
    COLUMNS,
    OUTCOMES,
    AuditRecord,
    Outcome,
    OutcomeRecord,
    decode,
    encode,
    from_us,
    to_us,
)
from scoring.errors import IdempotencyConflictError, UnknownApplicationError
from scoring.personal import Mode, PersonalData

__all__ = ["FORMAT", "OUTCOMES", "AuditRecord", "AuditStore", "AuditStoreError", "Outcome", "OutcomeRecord"]

# PRAGMA user_version of the file: 1 = decisions + outcome history
FORMAT: Final = 1


class AuditStoreError(RuntimeError):
    """The audit store cannot be used as it is."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    application_id  TEXT    PRIMARY KEY,
    payload_sha256  TEXT    NOT NULL,
    received_us     INTEGER NOT NULL,  -- microseconds since the epoch (UTC)
    product         TEXT    NOT NULL,
    decision        TEXT    NOT NULL,
    probability     REAL    NOT NULL,
    score           INTEGER NOT NULL,
    model_version   TEXT    NOT NULL,
    text_encoder    TEXT    NOT NULL,
    text_provider   TEXT    NOT NULL,
    degraded        INTEGER NOT NULL,
    degraded_reason TEXT    NOT NULL,
    latency_ms      REAL    NOT NULL,
    reasons         TEXT    NOT NULL,  -- JSON list of objects
    features        TEXT    NOT NULL,  -- JSON object
    application     TEXT    NOT NULL,  -- JSON object, personal fields hashed or encrypted
    latest_outcome  INTEGER REFERENCES outcomes (id)  -- NULL until an officer records one
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    id              INTEGER PRIMARY KEY,
    application_id  TEXT    NOT NULL REFERENCES decisions (application_id),
    outcome         TEXT    NOT NULL CHECK (outcome IN ('CONFIRMED_FRAUD', 'LEGITIMATE', 'UNKNOWN')),
    fraud_type      TEXT    NOT NULL,
    reviewer        TEXT    NOT NULL,
    note            TEXT    NOT NULL,
    at_us           INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS health_probe (at_us INTEGER NOT NULL, pad BLOB);
CREATE INDEX IF NOT EXISTS outcomes_by_application ON outcomes (application_id, at_us, id);
CREATE INDEX IF NOT EXISTS decisions_by_score ON decisions (score DESC, received_us DESC);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (received_us DESC);
CREATE INDEX IF NOT EXISTS decisions_by_decision ON decisions (decision, score DESC, received_us DESC);
CREATE INDEX IF NOT EXISTS decisions_unreviewed ON decisions (score DESC, received_us DESC)
    WHERE latest_outcome IS NULL;
"""
_ORDER: Final = {
    "score_desc": "score DESC, received_us DESC, application_id",
    "time_desc": "received_us DESC, application_id",
}


class AuditStore:
    """The audit store in one SQLite file (`":memory:"` for tests); see the module docstring."""

    def __init__(self, path: Path | str, *, secret: bytes, personal_data: Mode = "hash") -> None:
        self.personal = PersonalData(secret, personal_data)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA synchronous=FULL")  # a commit reaches the disk before record returns
        self._db.execute("PRAGMA busy_timeout=10000")  # another process sharing the file
        self._db.execute("PRAGMA foreign_keys=ON")
        self._writers = FileWriteLock(self.path)  # other processes' writers (serve --workers N)
        # Workers starting together on a new file take turns: switching it to WAL is refused with
        # "database is locked" (no busy wait) while another process does the same, and a process
        # must not see the tables before the format is stamped.
        with self._writers:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._check_format()
        # Checkpoints in a background thread, not in the commit that crosses SQLite's threshold
        # (measured: such commits took 60-110 ms; `features.writelock.Checkpointer`).
        self._checkpointer: Checkpointer | None = None
        if self.path != ":memory:":
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = Checkpointer(self.path, name="audit-checkpoint")

    def _check_format(self) -> None:
        """Creates the tables in a new file; refuses a file written in another format."""
        found = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables and found != FORMAT:
            self._db.close()
            self._writers.close()
            raise AuditStoreError(
                f"audit store {self.path} has format {found}, this version reads {FORMAT}: "
                "point the service at another file, or migrate this one with the version that wrote it"
            )
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {FORMAT}")

    def record(self, rec: AuditRecord) -> tuple[AuditRecord, bool]:
        """Stores a decision, committed before returning; returns (record as stored, True). For an
        application_id already stored with the same payload digest, returns (the stored record,
        False): the caller answers with that. A different payload raises IdempotencyConflictError."""
        (result,) = self.record_many([rec])
        if isinstance(result, IdempotencyConflictError):
            raise result
        return result

    def record_many(
        self, records: Sequence[AuditRecord], *, as_stored: bool = True
    ) -> list[tuple[AuditRecord, bool] | IdempotencyConflictError]:
        """`record` for a micro-batch in one transaction: one commit (one wait for the disk) for
        all. Each item is what `record` would return, or the conflict it would raise. `as_stored`
        False: a new record comes back as given, not read back from what was written (the service
        answers from its own result; reading back costs a JSON parse of each record)."""
        encoded = [encode(r, self.personal.protect(r.application_id, r.application)) for r in records]
        existing: list[AuditRecord | None] = []
        with self._lock, self._transaction():
            for rec, values in zip(records, encoded, strict=True):
                inserted = self._db.execute(
                    f"INSERT INTO decisions ({COLUMNS}) VALUES ({', '.join('?' * len(values))}) "
                    "ON CONFLICT (application_id) DO NOTHING",
                    values,
                ).rowcount
                existing.append(None if inserted else self._get(rec.application_id))
        out: list[tuple[AuditRecord, bool] | IdempotencyConflictError] = []
        for rec, values, old in zip(records, encoded, existing, strict=True):
            if old is None:
                out.append((decode(values) if as_stored else rec, True))  # as_stored: as `get` reads it
            elif old.payload_sha256 != rec.payload_sha256:
                out.append(
                    IdempotencyConflictError(
                        f"application_id {rec.application_id!r} was already scored with a different "
                        "payload: a retry must resend the same application, a new application needs a "
                        "new application_id"
                    )
                )
            else:
                out.append((old, False))
        return out

    def get(self, application_id: str) -> AuditRecord | None:
        with self._lock:
            return self._get(application_id)

    def get_many(self, application_ids: Sequence[str]) -> dict[str, AuditRecord]:
        """The stored decisions among `application_ids` (a micro-batch's retry check: one query)."""
        if not application_ids:
            return {}
        marks = ", ".join("?" * len(application_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM decisions WHERE application_id IN ({marks})", list(application_ids)
            ).fetchall()
        return {rec.application_id: rec for rec in map(decode, rows)}

    def _get(self, application_id: str) -> AuditRecord | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE application_id = ?", (application_id,)
        ).fetchone()
        return None if row is None else decode(row)

    def record_outcome(
        self,
        application_id: str,
        outcome: Outcome,
        *,
        fraud_type: str = "",
        reviewer: str,
        note: str = "",
        at: dt.datetime | None = None,
    ) -> None:
        """Adds an outcome to the application's history; the latest (by `at`, then by recording
        order) is its label. An officer corrects an outcome by recording another."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)} (got {outcome!r})")
        at_us = to_us(at or dt.datetime.now(dt.UTC))
        with self._lock, self._transaction():
            known = self._db.execute("SELECT 1 FROM decisions WHERE application_id = ?", (application_id,))
            if known.fetchone() is None:
                raise UnknownApplicationError(f"no decision is stored for application_id {application_id!r}")
            self._db.execute(
                "INSERT INTO outcomes (application_id, outcome, fraud_type, reviewer, note, at_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (application_id, outcome, fraud_type, reviewer, note, at_us),
            )
            self._db.execute(
                "UPDATE decisions SET latest_outcome = (SELECT id FROM outcomes WHERE application_id = ?1 "
                "ORDER BY at_us DESC, id DESC LIMIT 1) WHERE application_id = ?1",
                (application_id,),
            )

    def outcome_of(self, application_id: str) -> OutcomeRecord | None:
        """The latest outcome recorded for the application, None if none was."""
        return self.latest_outcomes([application_id]).get(application_id)

    def latest_outcomes(self, application_ids: Sequence[str]) -> dict[str, OutcomeRecord]:
        """The latest outcome of each application that has one (the queue's status column)."""
        if not application_ids:
            return {}
        marks = ", ".join("?" * len(application_ids))
        with self._lock:
            rows = self._db.execute(
                "SELECT o.application_id, o.outcome, o.fraud_type, o.reviewer, o.note, o.at_us "
                "FROM decisions d JOIN outcomes o ON o.id = d.latest_outcome "
                f"WHERE d.application_id IN ({marks})",
                list(application_ids),
            ).fetchall()
        return {
            app: OutcomeRecord(app, outcome, fraud_type, reviewer, note, from_us(at_us))
            for app, outcome, fraud_type, reviewer, note, at_us in rows
        }

    def list_decisions(
        self,
        *,
        decisions: Sequence[str] = (),
        products: Sequence[str] = (),
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        min_score: int | None = None,
        order: Literal["score_desc", "time_desc"] = "score_desc",
        limit: int = 100,
        offset: int = 0,
        unreviewed_only: bool = False,
    ) -> list[AuditRecord]:
        """The review queue: decisions received in [since, until), filtered and sorted; unreviewed
        means no outcome recorded yet (an UNKNOWN outcome counts as reviewed)."""
        if order not in _ORDER:
            raise ValueError(f"order must be one of {', '.join(_ORDER)} (got {order!r})")
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0 (got {limit}, {offset})")
        where, params = self._filters(decisions, products, since, until)
        if min_score is not None:
            where.append("score >= ?")
            params.append(int(min_score))
        if unreviewed_only:
            where.append("latest_outcome IS NULL")
        sql = f"SELECT {COLUMNS} FROM decisions WHERE {' AND '.join(where) or '1'} ORDER BY {_ORDER[order]} "
        with self._lock:
            rows = self._db.execute(sql + "LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return [decode(row) for row in rows]

    @staticmethod
    def _filters(
        decisions: Sequence[str],
        products: Sequence[str],
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for column, values in (("decision", decisions), ("product", products)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += [str(v) for v in values]
        if since is not None:
            where.append("received_us >= ?")
            params.append(to_us(since))
        if until is not None:
            where.append("received_us < ?")
            params.append(to_us(until))
        return where, params

    def labelled(
        self,
        *,
        products: Sequence[str] = (),
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> pl.DataFrame:
        """The stored applications whose latest outcome is CONFIRMED_FRAUD or LEGITIMATE, as a canonical
        frame plus `is_fraud` (Int8, 1/0) and `fraud_type` ("none" for legitimate, "unspecified" when
        the officer gave none), in order of receipt.

        The rows are as stored: personal fields (names, date of birth, national id, phone, email,
        address line, employer, IP, device, bank account, free texts) are keyed hashes or ciphertexts
        (String columns), so features computed from their content (email domain, age, name/email similarity,
        text signals, history keys) cannot be recomputed from this frame. Retraining on it needs a
        feature set without those, or joining the lender's own clear data by application_id.
        """
        where, params = self._filters((), products, since, until)
        where.append("o.outcome IN ('CONFIRMED_FRAUD', 'LEGITIMATE')")
        sql = (
            "SELECT d.application, o.outcome, o.fraud_type FROM decisions d "
            f"JOIN outcomes o ON o.id = d.latest_outcome WHERE {' AND '.join(where)} "
            "ORDER BY d.received_us, d.application_id"
        )
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        schema: dict[str, pl.DataType] = {
            f.column: pl.String() if f.pii else CANONICAL_SCHEMA[f.column] for f in FIELDS
        }
        records = []
        for application, outcome, fraud_type in rows:
            row = json.loads(application)
            if row.get("submitted_at") is not None:
                row["submitted_at"] = dt.datetime.fromisoformat(row["submitted_at"])
            fraud = outcome == "CONFIRMED_FRAUD"
            row["is_fraud"] = int(fraud)
            row["fraud_type"] = (fraud_type or "unspecified") if fraud else "none"
            records.append(row)
        schema |= {"is_fraud": pl.Int8(), "fraud_type": pl.String()}
        if not records:
            return pl.DataFrame(schema=schema)
        return pl.from_dicts(records, schema_overrides=schema, infer_schema_length=None)

    def score_counts(self, *, bucket: int = 50) -> dict[tuple[int, str], int]:
        """Decisions by score bucket (its first score) and decision: the model page's distribution."""
        with self._lock:
            rows = self._db.execute(
                "SELECT (score / ?1) * ?1, decision, COUNT(*) FROM decisions GROUP BY 1, 2", (bucket,)
            ).fetchall()
        return {(int(start), str(decision)): int(n) for start, decision, n in rows}

    def probe(self) -> None:
        """Commits a write of 64 KiB and takes it back (two transactions): raises while the store
        cannot commit that much (disk full, I/O error). The health check's recovery probe."""
        at_us = to_us(dt.datetime.now(dt.UTC))
        with self._lock:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO health_probe (at_us, pad) VALUES (?, zeroblob(65536))", (at_us,)
                )
            with self._transaction():
                self._db.execute("DELETE FROM health_probe")

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception; the caller holds the lock."""
        with self._writers:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._writers.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
