"""Near-duplicate text across recent applications of other identities: template reuse by rings.

For an application i and one text field, the candidates are earlier applications j that

- wrote that field (empty texts are neither queried nor remembered),
- were submitted strictly before i and within ``window_us`` of it,
- belong to another identity (a null identity is nobody's: it never matches another),
- are among the last ``cap`` texts remembered before i (the online index is a ring buffer of ``cap``
  entries, so the offline computation is bounded the same way and the two agree exactly).

Signals: the highest cosine similarity to a candidate (null without candidates) and the number of
candidates at or above ``threshold`` (near copies).

``offline_near_duplicates`` computes both for a whole history in blocks of matrix products;
``NearDuplicateIndex`` computes them online, one application (or micro-batch) at a time, and keeps
its entries in SQLite so a restart does not forget the window. Several processes may share that
file (`fraudscore serve --workers N`): each catches up with the entries the others wrote before it
looks anything up, inside the write transaction that adds its own, so every application sees the
ones committed before it whichever process took them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

import numpy as np
import numpy.typing as npt

from features.writelock import Checkpointer, FileWriteLock

Vectors = npt.NDArray[np.float32]
BLOCK = 1024
TRIM_EVERY = 1024


@dataclass(frozen=True, slots=True)
class NearDupResult:
    max_similarity: npt.NDArray[np.float64]  # NaN where there was no candidate or no text
    copies: npt.NDArray[np.float64]  # NaN where the application has no text


def _empty(n: int) -> NearDupResult:
    return NearDupResult(np.full(n, np.nan), np.full(n, np.nan))


def offline_near_duplicates(
    ts: npt.NDArray[np.int64],
    identity: Sequence[str | None],
    vectors: Vectors,
    present: npt.NDArray[np.bool_],
    *,
    window_us: int,
    cap: int,
    threshold: float,
) -> NearDupResult:
    """As of each application, over a whole history. Rows must be in the order they were recorded
    (time order; ties keep their order), as the online index would have seen them."""
    n = len(ts)
    out = _empty(n)
    rows = np.flatnonzero(present)
    if rows.size == 0:
        return out
    if np.any(np.diff(ts) < 0):
        raise ValueError("offline_near_duplicates needs applications in time order")
    t = ts[rows]
    vec = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    codes = _identity_codes([identity[int(i)] for i in rows])
    out.copies[rows] = 0.0
    for start in range(0, rows.size, BLOCK):
        stop = min(start + BLOCK, rows.size)
        lo = max(0, start - cap, int(np.searchsorted(t, t[start] - window_us, side="left")))
        sims = vec[start:stop] @ vec[lo:stop].T  # queries x candidates
        q_pos = np.arange(start, stop)[:, None]
        c_pos = np.arange(lo, stop)[None, :]
        q_t, c_t = t[start:stop, None], t[None, lo:stop]
        ok = (
            (c_pos < q_pos)
            & (c_pos >= q_pos - cap)
            & (c_t < q_t)
            & (c_t >= q_t - window_us)
            & _others(codes[start:stop, None], codes[None, lo:stop])
        )
        masked = np.where(ok, sims, -np.inf)
        best = masked.max(axis=1)
        target = rows[start:stop]
        out.max_similarity[target] = np.where(np.isfinite(best), best, np.nan)
        out.copies[target] = (masked >= threshold).sum(axis=1)
    return out


def _identity_codes(identity: Sequence[str | None]) -> npt.NDArray[np.int64]:
    """A 62-bit digest of each identity (already a keyed hash) as an integer; -1 when missing."""
    return np.array(
        [
            -1 if v is None else int.from_bytes(blake2b(v.encode(), digest_size=8).digest()) >> 2
            for v in identity
        ],
        dtype=np.int64,
    )


def _others(query: npt.NDArray[np.int64], candidate: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Whether candidates belong to another identity than the query (a missing one is nobody's)."""
    out: npt.NDArray[np.bool_] = (query != candidate) | (query < 0) | (candidate < 0)
    return out


class NearDuplicateIndex:
    """The online side: a ring buffer of the last ``cap`` texts (vector, time, identity hash) per
    field, kept in memory for the matrix product and in SQLite for restarts. Thread-safe."""

    def __init__(
        self,
        path: Path | None,
        fields: Sequence[str],
        *,
        dim: int,
        window_us: int,
        cap: int,
        threshold: float,
    ) -> None:
        self.window_us, self.cap, self.threshold, self.dim = window_us, cap, threshold, dim
        self._lock = threading.Lock()
        self._vec = {f: np.zeros((cap, dim), dtype=np.float32) for f in fields}
        self._ts = {f: np.full(cap, np.iinfo(np.int64).min, dtype=np.int64) for f in fields}
        self._who = {f: np.full(cap, -1, dtype=np.int64) for f in fields}
        self._used = dict.fromkeys(fields, 0)  # entries ever added (the ring position)
        self._since_trim = dict.fromkeys(fields, 0)
        self._seen = dict.fromkeys(fields, 0)  # the last file entry (seq) held in memory
        self._db: sqlite3.Connection | None = None
        self._writers: FileWriteLock | None = None
        self._checkpointer: Checkpointer | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")  # another worker process adding its texts
            self._writers = FileWriteLock(path)  # other processes' writers (serve --workers N)
            with self._writers:  # workers starting together on a new file take turns
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS text_index (seq INTEGER PRIMARY KEY, field TEXT NOT NULL, "
                    "ts INTEGER NOT NULL, identity TEXT, vector BLOB NOT NULL)"
                )
                self._db.execute("CREATE INDEX IF NOT EXISTS text_index_field ON text_index (field, seq)")
            # Checkpoints off the request path, as the history and audit stores do.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = Checkpointer(path, name="text-index-checkpoint")
            self._load()

    def _load(self) -> None:
        for field in self._vec:
            self._catch_up(field)

    def _catch_up(self, field: str) -> None:
        """Takes into memory the file's entries not held yet: at start all (the last `cap`), later
        those that other processes sharing the file added."""
        assert self._db is not None
        rows = self._db.execute(
            "SELECT seq, ts, identity, vector FROM (SELECT seq, ts, identity, vector FROM text_index "
            "WHERE field = ? AND seq > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (field, self._seen[field], self.cap),
        ).fetchall()
        for seq, ts, who, blob in rows:
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.size == self.dim:
                self._put(field, int(ts), who, vector)
            self._seen[field] = int(seq)

    def _put(self, field: str, ts: int, who: str | None, vector: Vectors) -> None:
        slot = self._used[field] % self.cap
        self._vec[field][slot] = vector
        self._ts[field][slot] = ts
        self._who[field][slot] = _identity_codes([who])[0]
        self._used[field] += 1

    def _similarities(self, field: str, rows: npt.NDArray[np.intp], vector: Vectors) -> Vectors:
        """Similarities of `vector` to the entries at `rows` (slot numbers, ascending).

        Entries arrive in about time order, so a window's rows are one run of the ring (two where it
        wraps past the end): the product runs over those slices in place, then keeps `rows`. A copy
        of the rows first would cost as much as the product again."""
        if rows.size == 0:
            return np.zeros(0, dtype=np.float32)
        vec = self._vec[field]
        oldest = self._used[field] % self.cap if self._used[field] >= self.cap else 0
        parts = []
        for segment in (rows[rows >= oldest], rows[rows < oldest]):  # oldest first, as in the ring
            if segment.size:
                lo, hi = int(segment[0]), int(segment[-1]) + 1
                parts.append((vec[lo:hi] @ vector)[segment - lo])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def lookup_and_add(
        self,
        field: str,
        ts: Sequence[int],
        identity: Sequence[str | None],
        vectors: Vectors,
        present: npt.NDArray[np.bool_],
        *,
        record: bool = True,
    ) -> NearDupResult:
        """Signals for applications in the order given, each seeing the entries before it (those of
        the same call included), then remembers them (unless ``record`` is false)."""
        n = len(ts)
        out = _empty(n)
        codes = _identity_codes(identity)
        db = self._db
        writers = self._writers if record else None
        with self._lock, writers or contextlib.nullcontext():
            if db is not None and record:
                db.execute("BEGIN IMMEDIATE")  # other processes' additions wait until ours are in
            try:
                if db is not None:
                    self._catch_up(field)
                added = self._lookup(field, (ts, identity, codes, vectors, present), out, record=record)
                if added and db is not None:
                    db.executemany(
                        "INSERT INTO text_index (field, ts, identity, vector) VALUES (?, ?, ?, ?)", added
                    )
                    self._seen[field] = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
                    self._trim(field, len(added))
                if db is not None and record:
                    db.execute("COMMIT")
            except BaseException:
                if db is not None and db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return out

    def _lookup(
        self,
        field: str,
        batch: tuple[
            Sequence[int], Sequence[str | None], npt.NDArray[np.int64], Vectors, npt.NDArray[np.bool_]
        ],
        out: NearDupResult,
        *,
        record: bool,
    ) -> list[tuple[str, int, str | None, bytes]]:
        """Fills `out` for each application present (times, identities, their codes, vectors,
        presence), remembering each in memory (when `record`) before the next one looks; returns the
        rows to add to the file."""
        ts, identity, codes, vectors, present = batch
        added: list[tuple[str, int, str | None, bytes]] = []
        for i in range(len(ts)):
            if not present[i]:
                continue
            filled = min(self._used[field], self.cap)
            t = self._ts[field][:filled]
            window = (t < ts[i]) & (t >= ts[i] - self.window_us)
            rows = np.flatnonzero(window & _others(codes[i], self._who[field][:filled]))
            chosen = self._similarities(field, rows, vectors[i])
            out.max_similarity[i] = float(chosen.max()) if chosen.size else np.nan
            out.copies[i] = float((chosen >= self.threshold).sum())
            if record:
                vector = np.ascontiguousarray(vectors[i], dtype=np.float32)
                self._put(field, int(ts[i]), identity[i], vector)
                added.append((field, int(ts[i]), identity[i], vector.tobytes()))
        return added

    def _trim(self, field: str, added: int) -> None:
        """Keeps the file bounded: what fell out of the ring is never read again. The delete walks
        `cap` index entries, so it runs once per TRIM_EVERY texts, not per request."""
        assert self._db is not None
        self._since_trim[field] += added
        if self._since_trim[field] >= TRIM_EVERY:
            self._since_trim[field] = 0
            self._db.execute(
                "DELETE FROM text_index WHERE field = ? AND seq <= (SELECT seq FROM text_index "
                "WHERE field = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (field, field, self.cap),
            )

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._writers is not None:
            self._writers.close()
            self._writers = None
