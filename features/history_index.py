"""The history held in memory: every recorded application's keys, indexed by key, so that one
application's history features are a few binary searches and short scans, not SQL statements.

`features.history_store` keeps the durable copy (an append-only log in SQLite) and feeds this index
from it; the index itself knows nothing of files. The numbers are those of `features.history`'s
definitions, the same offline and online (`tests/features/test_history.py`).

Layout, per application (numbered in the order the index learnt of them): its time and amount in
parallel `array`s, its identity and email hashes, its id, and its keys packed as bytes (1 byte: the
key's index in `KEY_NAMES`; 16 bytes: its keyed hash). Equal hashes (identities, emails) are shared
objects. Per key (the 16-byte hash alone: the kind is part of the hashed text, so two kinds never
share one), the numbers of the applications that carry it, in time order, are in one of three
places, looked up in this order:

- a dict of the keys carried more than once (a list of numbers each);
- a dict of the keys new since the last run was made, carried once so far (a number each);
- sorted runs: arrays of keys carried once beside their application's number (20 bytes a key
  against about 110 in a dict; 95% of the demo's keys), behind two filters on the keys' first 6
  bytes that answer most lookups of a key in no run without a binary search.

A key seen again moves into the first dict (its entry in a run stays, unread). Opening the store
builds one run from the whole log; while serving, every `FRESH_RUN` new keys become a small run
(about a millisecond on the caller's thread), and a thread of the index's own merges runs of like
size in the background, in blocks that hand the interpreter lock over, so there are a few runs and
no merge of a large run stalls a batch. On the demo history that is about 820 bytes an application
of structures when opened, 1.3 kB of a process's memory (`bench/history_memory.py`), and 650-700
bytes of a process's memory for each application served after (`bench/history_growth.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from bisect import bisect_left, insort_right
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from features.history import KEY_NAMES, KEYS, LINK_KEYS, LINK_WINDOW, WINDOWS, KeyAggregate, online_history
from features.rings import RING_BOUND, RingBound, RingSize, walk_ring

log = logging.getLogger(__name__)

LinkKey = tuple[int, bytes]  # (index in LINK_KEYS, keyed hash): a link key as the ring walk sees it
# One application as the log keeps it: id, time (µs), amount (cents), identity and email hashes, and
# its keys packed (`pack_keys`).
LogRow = tuple[str, int, int, bytes | None, bytes | None, bytes]
# A key's carriers (application numbers in time order) and the positions [lo, hi) of those in the
# link window before an application; hi also counts all of the key's applications before it.
Span = tuple[Sequence[int], int, int]
LINK_OF_KIND = tuple(LINK_KEYS.index(name) if name in LINK_KEYS else -1 for name in KEY_NAMES)
_LINK_US = WINDOWS[LINK_WINDOW]
_SPECS = tuple((spec, tuple((w, WINDOWS[w]) for w in spec.windows if w != LINK_WINDOW)) for spec in KEYS)
# A sorted run of keys carried once and, position for position, the number of the application that
# carries each.
Run = tuple[np.ndarray, np.ndarray]
# Keys that arrive while serving wait in a dict until this many have come; then those still carried
# once move into a run of their own (about 500 applications' new keys; 1 ms of the caller's time).
FRESH_RUN = 4_096
# Elements a background merge writes between two hand-overs of the interpreter lock.
MERGE_BLOCK = 1 << 16


def _merge_runs(a: Run, b: Run) -> Run:
    """Two runs as one, written in blocks (each holds the interpreter lock for well under a
    millisecond) so that a merge of millions of keys on a background thread does not stall the
    threads that serve. A key is in one run only (it enters a run once, when carried once)."""
    (a_keys, a_nums), (b_keys, b_nums) = a, b
    total = len(a_keys) + len(b_keys)
    # Where each key of b goes in the merged run: before the keys of a that are not smaller.
    dest = np.concatenate(
        [a_keys.searchsorted(b_keys[i : i + MERGE_BLOCK]) for i in range(0, len(b_keys), MERGE_BLOCK)]
        or [np.empty(0, dtype=np.int64)]
    )
    dest += np.arange(len(b_keys))
    keys = np.empty(total, dtype=a_keys.dtype)
    nums = np.empty(total, dtype=np.uint32)
    for start in range(0, total, MERGE_BLOCK):
        end = min(start + MERGE_BLOCK, total)
        b_lo, b_hi = (int(i) for i in dest.searchsorted((start, end)))
        a_lo, a_hi = start - b_lo, end - b_hi
        from_b = np.zeros(end - start, dtype=bool)
        from_b[dest[b_lo:b_hi] - start] = True
        block_keys, block_nums = keys[start:end], nums[start:end]
        block_keys[from_b], block_keys[~from_b] = b_keys[b_lo:b_hi], a_keys[a_lo:a_hi]
        block_nums[from_b], block_nums[~from_b] = b_nums[b_lo:b_hi], a_nums[a_lo:a_hi]
        time.sleep(0)  # the serving threads' turn
    return keys, nums


# Two neighbouring runs are merged when the older is at most this many times the newer: run sizes
# then fall geometrically from the oldest, so there are about log(keys / FRESH_RUN) / log(this) runs.
MERGE_RATIO = 4


def _pick(runs: Sequence[Run]) -> int | None:
    """The first of two neighbouring runs to merge (the newest such pair), or None."""
    for i in range(len(runs) - 2, -1, -1):
        if len(runs[i][0]) <= MERGE_RATIO * len(runs[i + 1][0]):
            return i
    return None


def pack_keys(blobs: Mapping[str, bytes | None]) -> bytes:
    """An application's entity keys as the log and the index keep them."""
    return b"".join(bytes((i,)) + key for i, name in enumerate(KEY_NAMES) if (key := blobs[name]) is not None)


class HistoryIndex:
    """Not thread-safe: its store serialises every call. (Its own merging thread touches only the
    runs, behind a lock of its own.)"""

    def __init__(self, ring_bound: RingBound = RING_BOUND) -> None:
        self.ring_bound = ring_bound
        self._number: dict[str, int] = {}  # application id -> its number
        self._ids: list[str] = []
        self._ts = array("q")
        self._cents = array("q")
        self._identity: list[bytes | None] = []
        self._email: list[bytes | None] = []
        self._keys: list[bytes] = []
        self._by_key: dict[bytes, int | list[int]] = {}
        # Keys carried by one application (most keys: a device, a phone, an email seen once), as
        # sorted runs instead of dict entries: 20 bytes a key against about 110. A key there that
        # is seen again moves into `_by_key`, which is looked up first (its entry in the run stays,
        # unread). Replaced whole, never changed in place: a lookup reads the tuple once.
        self._runs: tuple[Run, ...] = ()
        self._runs_lock = threading.Lock()  # between `settle` and the merging thread
        # Keys new to the index since the last run was made, carried once so far (a key seen again
        # moves to `_by_key`): the next run.
        self._fresh: dict[bytes, int] = {}
        self._merger: threading.Thread | None = None
        self._merge_wanted = threading.Event()
        self._closed = False
        # Two filters of 2 MiB: one bit for each value of a key's bytes 0-2, and of its bytes 3-5,
        # set for each key in a run (never cleared). Most keys looked up are in no run (a new
        # device, a new phone), and the two bits tell about 49 in 50 of those apart without a
        # binary search in each run (the demo's 1.9 million keys set about 1 bit in 9 of each).
        self._filters = (bytearray(1 << 21), bytearray(1 << 21))
        self._shared: dict[bytes, bytes] = {}
        self._fraud_known: dict[str, int] = {}  # application id -> when its fraud outcome was known

    def __len__(self) -> int:
        return len(self._ids)

    def _share(self, value: bytes | None) -> bytes | None:
        return None if value is None else self._shared.setdefault(value, value)

    def add(self, row: LogRow) -> bool:
        """Adds one application; False (and nothing changes) when its id is already held."""
        return self._add(row, None)

    def extend(self, rows: Iterable[LogRow]) -> int:
        """Adds many applications (a log read from its start); how many were new. A key's
        applications out of time order are put in order once, at the end, not one by one. Into an
        empty index (the store opening), the key map is built at the end, in bulk (`_build_keys`)."""
        if not self._ids:
            added = 0
            try:
                for row in rows:
                    added += self._add_application(row)
            finally:  # what was added before a failure is held, so its keys must be too
                self._build_keys()
            return added
        unsorted: set[bytes] = set()
        try:
            return sum(self._add(row, unsorted) for row in rows)
        finally:  # what was added before a failure is held, so it must be in order too
            at = self._ts.__getitem__
            for key in unsorted:
                found = self._by_key[key]
                assert isinstance(found, list)
                found.sort(key=at)  # stable: equal times keep the order they were added in

    def _add_application(self, row: LogRow) -> bool:
        """The application's own columns, not its keys; False when its id is already held."""
        app, ts, cents, identity, email, keys = row
        if app in self._number:
            return False
        self._number[app] = len(self._ids)
        self._ids.append(app)
        self._ts.append(ts)
        self._cents.append(cents)
        self._identity.append(self._share(identity))
        self._email.append(self._share(email))
        self._keys.append(keys)
        return True

    def _build_keys(self) -> None:
        """The key map of every application held, built at once: each key's applications in time
        order (ties in the order added), those of a key carried once into the sorted arrays."""
        counts = [len(k) // 17 for k in self._keys]
        if not sum(counts):
            return
        # Temporaries are let go of as soon as they are used: this runs at the process's peak.
        keys = np.frombuffer(b"".join(self._keys), dtype=np.dtype([("kind", "u1"), ("key", "S16")]))
        keys = keys["key"].copy()
        nums = np.repeat(np.arange(len(self._keys), dtype=np.uint32), counts)
        order = np.lexsort((nums, np.frombuffer(self._ts, dtype=np.int64)[nums], keys))
        keys, nums = keys[order], nums[order]
        del order
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        sizes = np.diff(np.append(starts, len(keys)))
        once = sizes == 1
        if once.any():
            run = (keys[starts[once]], nums[starts[once]])
            self._mark(run[0])
            self._runs = (run,)
        by_key = self._by_key
        for start, size in zip(starts[~once].tolist(), sizes[~once].tolist(), strict=True):
            by_key[keys[start : start + 1].tobytes()] = nums[start : start + size].tolist()

    def _mark(self, keys: np.ndarray) -> None:
        """Sets the filters' bits of the keys of a new run."""
        head = keys.view(np.uint8).reshape(-1, 16).astype(np.uint32)
        for at, filt in zip((0, 3), self._filters, strict=True):
            value = (head[:, at] << 16) | (head[:, at + 1] << 8) | head[:, at + 2]
            bits = np.frombuffer(filt, dtype=np.uint8)  # a view: the bits are set in place
            np.bitwise_or.at(bits, value >> 3, (1 << (value & 7)).astype(np.uint8))

    def _cold(self, key: bytes) -> int | None:
        """The one application of `key` in the runs, if it is in one."""
        first, second = self._filters
        value = (key[0] << 16) | (key[1] << 8) | key[2]
        if not first[value >> 3] & (1 << (value & 7)):
            return None
        value = (key[3] << 16) | (key[4] << 8) | key[5]
        if not second[value >> 3] & (1 << (value & 7)):
            return None
        # numpy gives an element back without its trailing zero bytes; keys are all 16 bytes long
        stripped = key.rstrip(b"\0")
        for keys, nums in reversed(self._runs):  # the newest first: recent keys are read most
            i = int(keys.searchsorted(key))
            if i < len(keys) and keys[i] == stripped:
                return int(nums[i])
        return None

    def settle(self) -> None:
        """Moves the keys new since the last run, once `FRESH_RUN` have come, into a new run; the
        merging thread is told. The store calls it where every application held is committed:
        `truncate` never reaches a key in a run."""
        fresh = self._fresh
        if len(fresh) < FRESH_RUN:
            return
        self._fresh = {}
        keys = np.frombuffer(b"".join(fresh), dtype="S16")
        order = np.argsort(keys)  # distinct keys
        run = (keys[order], np.fromiter(fresh.values(), dtype=np.uint32, count=len(fresh))[order])
        self._mark(run[0])
        with self._runs_lock:
            self._runs = (*self._runs, run)
        if _pick(self._runs) is not None:
            if self._merger is None:
                self._merger = threading.Thread(target=self._merging, name="history-index-merge", daemon=True)
                self._merger.start()
            self._merge_wanted.set()

    def _merging(self) -> None:
        """The merging thread: merges neighbouring runs of like size until none are left (`_pick`),
        then waits to be told of a new run. Only it removes runs; `settle` only adds one at the end."""
        while True:
            self._merge_wanted.wait()
            self._merge_wanted.clear()
            while not self._closed:
                with self._runs_lock:
                    runs = self._runs
                i = _pick(runs)
                if i is None:
                    break
                try:
                    merged = _merge_runs(runs[i], runs[i + 1])
                except Exception:  # lookups stay right over unmerged runs, only slower
                    log.exception("merging the history index's runs failed; new runs stay unmerged")
                    return
                with self._runs_lock:
                    now = self._runs  # the same runs, perhaps with new ones after them
                    self._runs = (*now[:i], merged, *now[i + 2 :])
            if self._closed:
                return

    def runs(self) -> list[int]:
        """The sizes of the runs, oldest first (benchmarks and tests)."""
        return [len(keys) for keys, _ in self._runs]

    def wait_for_merges(self) -> None:
        """Until the merging thread has nothing left to merge (tests and benchmarks)."""
        while self._merger is not None and not self._closed:
            with self._runs_lock:
                if _pick(self._runs) is None:
                    return
            if not self._merger.is_alive():
                raise RuntimeError("the history index's merging thread stopped (see the log)")
            time.sleep(0.005)

    def close(self) -> None:
        """Stops the merging thread, after the merge in progress if there is one."""
        self._closed = True
        self._merge_wanted.set()
        if self._merger is not None:
            self._merger.join()

    def _add(self, row: LogRow, unsorted: set[bytes] | None) -> bool:
        if not self._add_application(row):
            return False
        n, ts, keys = len(self._ids) - 1, row[1], row[5]
        by_key, fresh, times = self._by_key, self._fresh, self._ts
        for j in range(1, len(keys), 17):
            key = keys[j : j + 16]
            found = by_key.get(key)
            if found is None:  # carried once so far, if at all: it moves to `_by_key`
                found = fresh.pop(key, None)
                if found is None and self._runs:
                    found = self._cold(key)
            if found is None:
                fresh[key] = n
            elif isinstance(found, int):
                by_key[key] = [found, n] if times[found] <= ts else [n, found]
            elif times[found[-1]] <= ts:
                found.append(n)
            elif unsorted is not None:  # out of time order: sorted at the end of `extend`
                found.append(n)
                unsorted.add(key)
            else:  # out of time order (a back-dated application): keep the list sorted
                insort_right(found, n, key=times.__getitem__)
        return True

    def truncate(self, size: int) -> None:
        """Forgets the applications added after the first `size` (a batch whose commit failed)."""
        while len(self._ids) > size:
            n = len(self._ids) - 1
            keys = self._keys.pop()
            for j in range(1, len(keys), 17):
                key = keys[j : j + 16]
                found = self._by_key.get(key)
                if found is None:  # new with this application
                    del self._fresh[key]
                elif isinstance(found, int):
                    del self._by_key[key]
                else:
                    found.remove(n)
                    if len(found) == 1:
                        self._by_key[key] = found[0]
            del self._number[self._ids.pop()]
            self._ts.pop()
            self._cents.pop()
            self._identity.pop()
            self._email.pop()

    def set_outcome(self, app: str, fraud: bool, known_at: int) -> None:
        """The latest outcome of `app` (recorded before or after the application itself)."""
        if fraud:
            self._fraud_known[app] = known_at
        else:
            self._fraud_known.pop(app, None)

    # -- lookups --------------------------------------------------------------------------------
    def _carriers(self, key: bytes, owner: int | None = None) -> Sequence[int]:
        """The applications that carry `key`, in time order. `owner`: one application known to carry
        it; a key in neither dict is carried by that one alone (in a run), so no run is searched."""
        found = self._by_key.get(key)
        if found is None:
            found = self._fresh.get(key)
        if found is None and owner is not None:
            return (owner,)
        if found is None and self._runs:
            found = self._cold(key)
        if found is None:
            return ()
        return (found,) if isinstance(found, int) else found

    def _span(self, carriers: Sequence[int], lo_ts: int, hi_ts: int) -> tuple[int, int]:
        """Positions in `carriers` of the applications with lo_ts <= time < hi_ts."""
        at = self._ts.__getitem__
        hi = bisect_left(carriers, hi_ts, key=at)
        return bisect_left(carriers, lo_ts, 0, hi, key=at), hi

    def features(self, ts: int, blobs: Mapping[str, bytes | None]) -> dict[str, float | None]:
        """History features of an application at `ts` with hashed keys `blobs` (`HASHED` names),
        from the applications held (those at `ts` or later are not counted)."""
        aggregates: dict[str, KeyAggregate | None] = {}
        spans: dict[str, Span] = {}
        times = self._ts
        for spec, shorter in _SPECS:
            key = blobs[spec.name]
            if key is None:
                aggregates[spec.name] = None
                continue
            carriers = self._carriers(key)
            lo, hi = self._span(carriers, ts - _LINK_US, ts)
            spans[spec.name] = (carriers, lo, hi)
            apps = {LINK_WINDOW: hi - lo} if LINK_WINDOW in spec.windows else {}
            for w, width in shorter:
                apps[w] = hi - bisect_left(carriers, ts - width, lo, hi, key=times.__getitem__)
            window = carriers[lo:hi]
            aggregates[spec.name] = KeyAggregate(
                apps=apps,
                identities=self._distinct(self._identity, window) if spec.identities else 0,
                emails=self._distinct(self._email, window) if spec.emails else 0,
                cents=sum(self._cents[n] for n in window) if spec.amount else 0,
                first_seen_us=times[carriers[0]] if spec.first_seen and hi else None,
            )
        links = [(i, key) for i, name in enumerate(LINK_KEYS) if (key := blobs[name]) is not None]
        return online_history(
            ts,
            aggregates,
            self._linked(spans, blobs["identity"]),
            self._confirmed(spans, ts),
            self._ring(links, blobs["identity"], ts, aggregates),
        )

    @staticmethod
    def _distinct(values: list[bytes | None], numbers: Sequence[int]) -> int:
        found = {values[n] for n in numbers}
        found.discard(None)
        return len(found)

    def _linked(self, spans: Mapping[str, Span], identity: bytes | None) -> int | None:
        """Distinct other identities sharing a link key with the application in the link window
        (none when it has no identity: an unnamed application is linked to nobody by name)."""
        windows = [spans[name] for name in LINK_KEYS if name in spans]
        if not windows:
            return None
        if identity is None:
            return 0
        found: set[bytes | None] = set()
        for carriers, lo, hi in windows:
            found.update(self._identity[n] for n in carriers[lo:hi])
        found.discard(None)
        found.discard(identity)
        return len(found)

    def _confirmed(self, spans: Mapping[str, Span], ts: int) -> dict[str, int | None]:
        """Per link key: earlier applications with it whose fraud outcome was known before `ts`."""
        out: dict[str, int | None] = {}
        known, ids = self._fraud_known, self._ids
        for name in LINK_KEYS:
            span = spans.get(name)
            if span is None:
                out[name] = None
            elif not known:
                out[name] = 0
            else:
                carriers, _, hi = span  # hi: the carriers before `ts`, over all history
                out[name] = sum(1 for n in carriers[:hi] if known.get(ids[n], ts) < ts)
        return out

    def _ring(
        self,
        links: Sequence[LinkKey],
        identity: bytes | None,
        ts: int,
        aggregates: Mapping[str, KeyAggregate | None],
    ) -> RingSize | None:
        if not links:
            return None
        counts = {}
        for i, key in links:
            agg = aggregates.get(LINK_KEYS[i])
            if agg is not None:
                counts[(i, key)] = agg.apps[LINK_WINDOW]
        lo_ts, limit = ts - _LINK_US, self.ring_bound.hub + 1
        # The member each key reached by the walk came from: most are carried by it alone, and
        # then need no search of the runs (they were two thirds of the searches while serving).
        owners: dict[bytes, int] = {}

        def members(numbers: Sequence[int]) -> dict[int, tuple[bytes | None, list[LinkKey]]]:
            found = self._links(numbers)
            for n, (_, keys) in found.items():
                owners.update((key, n) for _, key in keys)
            return found

        def neighbours(todo: Sequence[LinkKey]) -> Iterator[tuple[LinkKey, list[int]]]:
            for link in todo:
                carriers = self._carriers(link[1], owners.get(link[1]))
                lo, hi = self._span(carriers, lo_ts, ts)
                if hi > lo:
                    yield link, list(carriers[lo : min(hi, lo + limit)])

        bound = self.ring_bound
        return walk_ring(
            identity, links, neighbours=neighbours, links=members, known_counts=counts, bound=bound
        )

    def _links(self, numbers: Sequence[int]) -> dict[int, tuple[bytes | None, list[LinkKey]]]:
        out = {}
        for n in numbers:
            keys = self._keys[n]
            own = [
                (LINK_OF_KIND[keys[j]], keys[j + 1 : j + 17])
                for j in range(0, len(keys), 17)
                if LINK_OF_KIND[keys[j]] >= 0
            ]
            out[n] = (self._identity[n], own)
        return out
