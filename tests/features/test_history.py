"""History features: online (one application at a time against the store) equals offline (a whole
history in polars), and no application's features depend on a later one."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.history import HISTORY_FEATURES, entity_keys, history_frame, key_values, offline_history
from features.history_store import SQLiteHistoryStore
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


def test_batches_see_earlier_members_of_the_same_batch(keys, offline):
    store = SQLiteHistoryStore(":memory:")
    store.record_outcomes(keys.select("application_id", "fraud", "known_at").iter_rows())
    rows = list(keys.head(600).iter_rows(named=True))
    online = []
    for start in range(0, len(rows), 64):
        online += store.lookup_and_record(rows[start : start + 64])
    assert history_frame(online).equals(offline.head(600))


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
    with pytest.raises(HistoryStoreError, match="has format 1, this version reads 3"):
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
