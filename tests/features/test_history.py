"""History features: online (one application at a time against the store) equals offline (a whole
history in polars), and no application's features depend on a later one."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import history_index
from features.history import (
    HASHED,
    HISTORY_FEATURES,
    KEY_NAMES,
    LINK_KEYS,
    entity_keys,
    history_frame,
    key_values,
    keyed_hash,
    offline_history,
)
from features.history_store import SQLiteHistoryStore
from features.rings import RING_BOUND, RING_FEATURES, RingBound
from features.schema import CANONICAL_SCHEMA
from scoring.synth import generate

SECRET = b"test-secret"
ROWS = 4_000


@pytest.fixture(scope="module")
def canonical() -> pl.DataFrame:
    # A dense slice of time, so that rings, households and shared devices repeat inside windows.
    frame = generate(ROWS, seed=21, months=1).select(list(CANONICAL_SCHEMA))
    # Ties: some applications share a submission time to the microsecond.
    return frame.with_columns(
        submitted_at=pl.when(pl.int_range(pl.len()) % 97 == 1)
        .then(pl.col("submitted_at").shift(1))
        .otherwise(pl.col("submitted_at"))
    ).sort("submitted_at", maintain_order=True)


OUTCOME_DELAY_US = 3 * 24 * 3_600_000_000  # outcomes become known three days after submission


@pytest.fixture(scope="module")
def keys(canonical) -> pl.DataFrame:
    labels = generate(ROWS, seed=21, months=1).select("application_id", "is_fraud")
    return (
        entity_keys(canonical, SECRET)
        .with_columns(application_id=canonical.get_column("application_id"))
        .join(labels, on="application_id", how="left", maintain_order="left")
        .with_columns(fraud=pl.col("is_fraud"), known_at=pl.col("ts") + OUTCOME_DELAY_US)
        .drop("is_fraud")
    )


@pytest.fixture(scope="module")
def offline(keys) -> pl.DataFrame:
    return offline_history(keys)


@pytest.mark.slow
def test_online_one_at_a_time_equals_offline(keys, offline, tmp_path_factory):
    store = SQLiteHistoryStore(tmp_path_factory.mktemp("history") / "history.sqlite")
    # Outcomes can be recorded up front: each becomes visible only to applications after its time.
    store.record_outcomes(keys.select("application_id", "fraud", "known_at").iter_rows())
    online = [store.lookup_and_record([row])[0] for row in keys.iter_rows(named=True)]
    store.close()
    online_frame = history_frame(online)
    for name in HISTORY_FEATURES:  # feature by feature, for a readable failure
        assert online_frame.get_column(name).equals(offline.get_column(name)), name
    # The data is not trivial: links and repeats do occur.
    assert offline.get_column("device_apps_28d").max() >= 3
    assert offline.get_column("phone_identities_28d").max() >= 2
    assert offline.get_column("device_days_since_first_seen").drop_nulls().len() > 100
    assert offline.get_column("linked_identities_28d").max() >= 2
    assert offline.get_column("device_confirmed_fraud").max() >= 1
    # Rings reach past one hop: more identities than the application's own and its direct links.
    beyond = offline.get_column("ring_identities_28d") > offline.get_column("linked_identities_28d") + 1
    assert beyond.sum() >= 20
    assert offline.get_column("ring_applications_28d").max() >= 8


@pytest.mark.slow
def test_rings_online_equal_offline_at_their_bounds(keys, offline):
    # Tight bounds, so that hubs, the hop limit and the cap all decide many of these rings.
    bound = RingBound(hub=3, cap=5, hops=2)
    rings = offline_history(keys, ring_bound=bound).select(RING_FEATURES)
    store = SQLiteHistoryStore(":memory:", ring_bound=bound)
    online = history_frame([store.lookup_and_record([row])[0] for row in keys.iter_rows(named=True)])
    assert online.select(RING_FEATURES).equals(rings)
    assert (offline.get_column("device_apps_28d") > bound.hub).sum() >= 10  # hubs
    assert (rings.get_column("ring_applications_28d") == bound.cap).sum() >= 10  # at the cap


def test_batches_see_earlier_members_of_the_same_batch(keys, offline):
    store = SQLiteHistoryStore(":memory:")
    store.record_outcomes(keys.select("application_id", "fraud", "known_at").iter_rows())
    rows = list(keys.head(600).iter_rows(named=True))
    online = []
    for start in range(0, len(rows), 64):
        online += store.lookup_and_record(rows[start : start + 64])
    assert history_frame(online).equals(offline.head(600))


def test_two_stores_on_one_file_equal_offline(keys, offline, tmp_path):
    """`serve --workers 2`: each process opens the file; micro-batches taken in turn by either see
    every application the other recorded before them."""
    path = tmp_path / "history.sqlite"
    stores = [SQLiteHistoryStore(path, checkpoint_seconds=0.05) for _ in range(2)]
    stores[0].record_outcomes(keys.select("application_id", "fraud", "known_at").iter_rows())
    rows = list(keys.head(600).iter_rows(named=True))
    online = []
    for n, start in enumerate(range(0, len(rows), 8)):
        online += stores[n % 2].lookup_and_record(rows[start : start + 8])
    for store in stores:
        store.close()
    assert history_frame(online).equals(offline.head(600))
    assert offline.head(600).get_column("device_apps_28d").max() >= 2  # repeats to see across stores


def test_a_retry_does_not_count_twice(keys):
    store = SQLiteHistoryStore(":memory:")
    rows = list(keys.head(50).iter_rows(named=True))
    store.lookup_and_record(rows)
    probe = dict(rows[-1], ts=rows[-1]["ts"] + 1, application_id="probe")
    before = store.lookup_and_record([probe], record=False)[0]
    assert before["email_apps_28d"] == 1.0
    store.lookup_and_record(rows[-10:])  # the same applications again
    assert store.count() == 50
    assert store.lookup_and_record([probe], record=False)[0] == before


def test_applications_recorded_out_of_time_order_give_the_same_features(keys, offline, tmp_path):
    """Back-dated applications (a lender's history loaded late, a retry hours later) go into the
    middle of their keys' time order; reopening the file reads the log back in the same way."""
    rows = list(keys.head(800).iter_rows(named=True))
    shuffled = [rows[i] for i in random.Random(5).sample(range(len(rows)), len(rows))]
    path = tmp_path / "history.sqlite"
    store = SQLiteHistoryStore(path)
    store.record_outcomes(keys.select("application_id", "fraud", "known_at").iter_rows())
    assert store.record_many(shuffled) == len(rows)
    store.close()
    store = SQLiteHistoryStore(path)
    assert store.count() == len(rows)
    # Every application is held, later ones too; each sees only those before its time.
    online = store.lookup_and_record(rows, record=False)
    store.close()
    assert history_frame(online).equals(offline.head(800))


def test_a_reopened_store_goes_on_equal_to_offline(keys, offline, tmp_path, monkeypatch):
    """Reopening reads the log into the index in bulk, the keys carried once into a sorted run;
    while serving, new keys carried once move into runs of their own, which a thread merges in the
    background. The applications scored (keys seen again move out of the runs, a batch that fails
    is taken back) give the offline features, and so does every application read again after the
    merges."""
    monkeypatch.setattr(history_index, "FRESH_RUN", 100)  # a run every ~15 applications
    monkeypatch.setattr(history_index, "MERGE_BLOCK", 64)  # merges written in many blocks
    rows = list(keys.head(2_000).iter_rows(named=True))
    path = tmp_path / "history.sqlite"
    store = SQLiteHistoryStore(path)
    store.record_outcomes(keys.select("application_id", "fraud", "known_at").iter_rows())
    online = store.lookup_and_record(rows[:700])
    store.close()
    store = SQLiteHistoryStore(path)
    index = store._index
    (opened,) = index.runs()
    assert opened > 1_000 and len(index._by_key) > 0  # both parts are in use
    # A batch that fails after its first application was taken in leaves the index as it was.
    with pytest.raises(KeyError):
        store.lookup_and_record([rows[700], {"application_id": "bad"}])
    most_runs = 1
    for start in range(700, len(rows), 10):
        if start == 1_300:  # another failed batch, with new keys waiting for a run
            with pytest.raises(KeyError):
                store.lookup_and_record([rows[start], {"application_id": "bad"}])
        online += store.lookup_and_record(rows[start : start + 10])
        most_runs = max(most_runs, len(index.runs()))
    index.wait_for_merges()
    runs = index._runs
    everything = store.lookup_and_record(rows, record=False)  # through the merged runs
    moved = sum(1 for key in index._by_key if index._cold(key) is not None)
    store.close()
    assert history_frame(online).equals(offline.head(2_000))
    assert history_frame(everything).equals(offline.head(2_000))
    assert moved >= 20  # keys carried once, seen again later
    assert most_runs >= 3 and history_index._pick(runs) is None  # runs made while serving, merged
    assert sum(map(len, (k for k, _ in runs))) > opened + 5_000  # the new keys went into runs
    # What the dict keeps: keys seen more than once, and those waiting for the next run.
    assert sum(1 for found in index._by_key.values() if type(found) is int) < 200
    assert len(index._fresh) < 100
    for run_keys, nums in runs:
        assert list(run_keys) == sorted(run_keys) and len(nums) == len(run_keys)
    in_runs = [key for run_keys, _ in runs for key in run_keys.tolist()]
    assert len(set(in_runs)) == len(in_runs)  # a key is in one run only


def test_runs_merge_in_blocks_into_one_sorted_run(monkeypatch):
    monkeypatch.setattr(history_index, "MERGE_BLOCK", 7)
    rng = np.random.default_rng(3)
    keys = np.frombuffer(rng.bytes(16 * 300), dtype="S16")
    keys = np.concatenate([keys, np.frombuffer(b"\x05" + b"\x00" * 15 + b"\xff" * 16, dtype="S16")])
    nums = np.arange(len(keys), dtype=np.uint32)
    split = rng.permutation(len(keys))
    a, b = np.sort(split[:250]), np.sort(split[250:])
    order_a, order_b = np.argsort(keys[a]), np.argsort(keys[b])
    merged = history_index._merge_runs(
        (keys[a][order_a], nums[a][order_a]), (keys[b][order_b], nums[b][order_b])
    )
    order = np.argsort(keys)
    assert merged[0].tobytes() == keys[order].tobytes()
    assert merged[1].tolist() == nums[order].tolist()
    empty = (np.empty(0, dtype="S16"), np.empty(0, dtype=np.uint32))
    assert history_index._merge_runs(empty, merged)[1].tolist() == merged[1].tolist()
    assert history_index._merge_runs(merged, empty)[1].tolist() == merged[1].tolist()


def test_a_batch_that_fails_leaves_nothing_behind(keys, tmp_path):
    store = SQLiteHistoryStore(tmp_path / "history.sqlite")
    rows = list(keys.head(100).iter_rows(named=True))
    store.lookup_and_record(rows[:50])
    probe = dict(rows[60], application_id="probe")
    before = store.lookup_and_record([probe], record=False)[0]
    bad = dict(rows[99], cents="not cents")  # fails after the batch's first members were taken
    with pytest.raises(ValueError, match="not cents"):
        store.lookup_and_record([*rows[50:99], bad])
    assert store.count() == 50
    assert store.lookup_and_record([probe], record=False)[0] == before
    # One the log refuses (no application id), after the others were taken into the index.
    with pytest.raises(sqlite3.IntegrityError):
        store.lookup_and_record([*rows[50:99], dict(rows[99], application_id=None)])
    assert store.count() == 50
    # Another process appends next, into the numbers the rolled-back rows had: it is still read.
    other = SQLiteHistoryStore(tmp_path / "history.sqlite")
    other.lookup_and_record(rows[50:60])
    other.close()
    assert store.count() == 60
    store.lookup_and_record(rows[50:])  # the same applications, now whole, are taken
    assert store.count() == 100
    store.close()
    reopened = SQLiteHistoryStore(tmp_path / "history.sqlite")
    assert reopened.count() == 100
    reopened.close()


def _write_format_4(path, rows, outcomes) -> None:
    """A history file as format 4 wrote it: a row per key of each application, indexed by key."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE key_events (kind TEXT NOT NULL, key BLOB NOT NULL, ts INTEGER NOT NULL, "
        "identity BLOB, email BLOB, cents INTEGER NOT NULL, app TEXT NOT NULL, "
        "PRIMARY KEY (kind, key, ts, app)) WITHOUT ROWID;"
        "CREATE TABLE applications (app TEXT PRIMARY KEY, ts INTEGER NOT NULL, identity BLOB, "
        "links BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE outcomes (app TEXT PRIMARY KEY, fraud INTEGER NOT NULL, known_at INTEGER NOT NULL) "
        "WITHOUT ROWID; PRAGMA user_version = 4;"
    )
    blob = lambda v: None if v is None else bytes.fromhex(v)  # noqa: E731
    for row in rows:
        identity, email = blob(row["identity"]), blob(row["email_key"])
        links = b"".join(bytes((i,)) + blob(row[k]) for i, k in enumerate(LINK_KEYS) if row[k] is not None)
        app = row["application_id"]
        db.execute("INSERT INTO applications VALUES (?, ?, ?, ?)", (app, row["ts"], identity, links))
        db.executemany(
            "INSERT INTO key_events VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (k, blob(row[k]), row["ts"], identity, email, row["cents"], app)
                for k in KEY_NAMES
                if row[k] is not None
            ],
        )
    db.executemany("INSERT INTO outcomes VALUES (?, ?, ?)", outcomes)
    db.commit()
    db.close()


def test_a_format_4_store_is_converted_on_opening(keys, offline, tmp_path):
    path = tmp_path / "history.sqlite"
    rows = list(keys.head(600).iter_rows(named=True))
    _write_format_4(path, rows[:400], keys.select("application_id", "fraud", "known_at").rows())
    store = SQLiteHistoryStore(path)
    assert store.count() == 400
    online = store.lookup_and_record(rows[:400], record=False) + store.lookup_and_record(rows[400:])
    store.close()
    assert history_frame(online).equals(offline.head(600))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"applications", "outcomes"}
    db.close()


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(1, ROWS - 1))
def test_no_feature_depends_on_a_later_application(keys, offline, cut):
    assert offline_history(keys.head(cut)).equals(offline.head(cut))


def test_ties_do_not_see_each_other():
    t = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    frame = (
        generate(3, seed=1)
        .select(list(CANONICAL_SCHEMA))
        .with_columns(submitted_at=pl.lit(t), device_id=pl.lit("same-device"))
    )
    out = offline_history(entity_keys(frame, SECRET))
    assert out.get_column("device_apps_1h").to_list() == [0.0, 0.0, 0.0]
    assert out.get_column("device_days_since_first_seen").to_list() == [None, None, None]


def test_missing_keys_give_missing_features_not_a_shared_key():
    frame = (
        generate(20, seed=2).select(list(CANONICAL_SCHEMA)).with_columns(device_id=pl.lit(None, pl.String))
    )
    out = offline_history(entity_keys(frame, SECRET))
    assert out.get_column("device_apps_28d").null_count() == 20


def test_keys_are_hashed_with_the_secret(canonical):
    clear = key_values(canonical.head(5))
    hashed = entity_keys(canonical.head(5), SECRET)
    other = entity_keys(canonical.head(5), b"another-secret")
    for name in ("phone", "email", "national_id", "device", "identity"):
        assert set(hashed.get_column(name).drop_nulls()).isdisjoint(set(clear.get_column(name).drop_nulls()))
        assert set(hashed.get_column(name).drop_nulls()).isdisjoint(set(other.get_column(name).drop_nulls()))
    assert all(len(v) == 32 for v in hashed.get_column("phone").drop_nulls())


def test_serving_rows_hash_exactly_like_the_training_frame(canonical):
    from features.history import entity_key_rows

    frame = canonical.head(300)
    expected = entity_keys(frame, SECRET).with_columns(application_id=frame.get_column("application_id"))
    assert entity_key_rows(frame, SECRET) == expected.to_dicts()


def test_linked_identities_follow_shared_keys_one_hop():
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    base = generate(4, seed=5).select(list(CANONICAL_SCHEMA))
    frame = base.with_columns(
        submitted_at=pl.Series([t0 + dt.timedelta(hours=h) for h in (0, 1, 2, 3)]),
        first_name=pl.Series(["Ann", "Bob", "Cy", "Ann"]),
        last_name=pl.lit("Doe"),
        date_of_birth=pl.lit(dt.date(1990, 1, 1)),
        device_id=pl.Series(["d1", "d1", "d2", "d1"]),
        phone=pl.Series(["+15550001", "+15550002", "+15550002", "+15550001"]),
        email=pl.Series(["a@x.com", "b@x.com", "c@x.com", "a@x.com"]),
        ip_address=pl.lit(None, pl.String),
        address_line1=pl.Series(["1 A St", "2 B St", "3 C St", "1 A St"]),
        national_id=pl.Series(["111-11-1111", "222-22-2222", "333-33-3333", "111-11-1111"]),
        bank_account_number=pl.lit(None, pl.String),
    )
    linked = offline_history(entity_keys(frame, SECRET)).get_column("linked_identities_28d").to_list()
    # Ann: nobody before; Bob: Ann (device); Cy: Bob (phone), not Ann (two hops);
    # Ann again: Bob (device) and not herself.
    assert linked == [0.0, 1.0, 1.0, 1.0]


def test_a_store_in_another_format_is_refused(tmp_path):
    import sqlite3

    from features.history_store import HistoryStoreError

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE key_events (kind TEXT, key TEXT)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with pytest.raises(HistoryStoreError, match="has format 1, this version reads 5"):
        SQLiteHistoryStore(path)
    fresh = SQLiteHistoryStore(tmp_path / "new.sqlite")
    fresh.close()
    SQLiteHistoryStore(tmp_path / "new.sqlite").close()  # reopening its own format is fine


def test_an_outcome_counts_only_once_it_is_known():
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    frame = (
        generate(3, seed=6)
        .select(list(CANONICAL_SCHEMA))
        .with_columns(
            submitted_at=pl.Series([t0, t0 + dt.timedelta(days=1), t0 + dt.timedelta(days=5)]),
            device_id=pl.lit("shared-device"),
        )
    )
    hour = 3_600_000_000
    keys = entity_keys(frame, SECRET).with_columns(
        fraud=pl.Series([1, 0, 0], dtype=pl.Int8), known_at=pl.col("ts").first() + 48 * hour
    )
    confirmed = offline_history(keys).get_column("device_confirmed_fraud").to_list()
    # The first application's fraud became known two days after it: too late for the second
    # application (day 1), in time for the third (day 5).
    assert confirmed == [0.0, 0.0, 1.0]


# -- rings ---------------------------------------------------------------------------------------
T0 = 1_772_323_200_000_000  # 2026-03-01 UTC, µs
DAY = 24 * 3_600_000_000


def _rings(apps, bound=RING_BOUND):
    """(ring_applications_28d, ring_identities_28d) of each application, given as (day, identity,
    {link key: value}) in time order; offline, after checking that the store gives the same."""
    rows = []
    for n, (day, identity, links) in enumerate(apps):
        row = dict.fromkeys(HASHED) | {
            "ts": T0 + round(day * DAY),
            "cents": 100_000,
            "application_id": f"A{n}",
        }
        row["identity"] = keyed_hash(SECRET, f"identity:{identity}")
        row |= {kind: keyed_hash(SECRET, f"{kind}:{value}") for kind, value in links.items()}
        rows.append(row)
    schema = (
        {"ts": pl.Int64, "cents": pl.Int64} | dict.fromkeys(HASHED, pl.String) | {"application_id": pl.String}
    )
    keys = pl.DataFrame(rows, schema=schema)
    offline = offline_history(keys, ring_bound=bound)
    store = SQLiteHistoryStore(":memory:", ring_bound=bound)
    online = history_frame([store.lookup_and_record([row])[0] for row in rows])
    assert online.equals(offline)
    return list(offline.select(RING_FEATURES).iter_rows())


def test_a_ring_follows_links_through_other_applications():
    apps = [
        (0, "ann", {"device": "d1"}),
        (1, "bob", {"device": "d1", "phone": "p1"}),
        (2, "cy", {"phone": "p1", "email": "cy@x.com"}),
        (3, "dee", {"email": "cy@x.com"}),
    ]
    # Dee shares only an email with Cy; Cy a phone with Bob; Bob a device with Ann (three hops).
    assert _rings(apps) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert _rings(apps[:3]) == [(1, 1), (2, 2), (3, 3)]  # Cy reaches Ann at hop distance 2


def test_links_that_left_the_window_do_not_count():
    apps = [
        (0, "ann", {"device": "d1"}),
        (20, "bob", {"device": "d1", "phone": "p1"}),
        (30, "cy", {"phone": "p1"}),  # Ann (day 0) left Cy's 28 days, Bob (day 20) did not
        (49, "dee", {"phone": "p1"}),  # Bob left Dee's 28 days: only Cy is left
    ]
    assert _rings(apps) == [(1, 1), (2, 2), (2, 2), (2, 2)]


def test_repeat_applications_of_one_identity_count_once():
    apps = [(d, "ann", {"device": "d1"}) for d in (0, 1, 2)] + [(3, "bob", {"device": "d1"})]
    assert _rings(apps) == [(1, 1), (2, 1), (3, 1), (4, 2)]


def test_a_key_shared_by_more_than_the_hub_bound_does_not_link():
    terminal = [(i * 0.1, f"customer{i}", {"device": "branch"}) for i in range(RING_BOUND.hub + 1)]
    probe = (3, "probe", {"device": "branch", "phone": "p1"})
    first = (0, "first", {"phone": "p1"})
    rings = _rings([first, *terminal, probe])
    assert rings[-2] == (RING_BOUND.hub + 1, RING_BOUND.hub + 1)  # hub earlier ones: still links
    assert rings[-1] == (2, 2)  # one more: a hub; the phone still links to `first`


def test_a_ring_larger_than_the_cap_reads_the_cap():
    bound = RingBound(hub=10, cap=8, hops=3)
    # Nine earlier applications of three people, all on one device: a ring of ten.
    apps = [(i * 0.1, f"p{i % 3}", {"device": "d1"}) for i in range(9)]
    assert _rings([*apps, (2, "probe", {"device": "d1"})], bound)[-1] == (8, 8)
    assert _rings([*apps[:7], (2, "probe", {"device": "d1"})], bound)[-1] == (8, 4)


def test_the_hop_limit_holds():
    kinds = ("device", "phone", "email", "bank_account", "address")
    chain = [(i, f"p{i}", {kinds[i % 5]: f"k{i}", kinds[(i + 1) % 5]: f"k{i + 1}"}) for i in range(6)]
    # Each application shares one key with the one before it: the last is 5 hops from the first.
    assert [r[0] for r in _rings(chain, RingBound(hops=3))] == [1, 2, 3, 4, 4, 4]
    assert [r[0] for r in _rings(chain, RingBound(hops=5))] == [1, 2, 3, 4, 5, 6]


def test_an_application_never_sees_later_or_simultaneous_ones():
    apps = [
        (0, "ann", {"device": "d1"}),
        (1, "bob", {"device": "d1"}),
        (1, "cy", {"device": "d1"}),  # submitted at the same microsecond as Bob
    ]
    assert _rings(apps) == [(1, 1), (2, 2), (2, 2)]


def test_without_link_keys_the_ring_is_missing():
    apps = [(0, "ann", {"employer": "acme"}), (1, "bob", {"employer": "acme", "device": "d1"})]
    assert _rings(apps) == [(None, None), (1, 1)]
