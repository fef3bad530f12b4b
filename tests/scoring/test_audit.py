"""The audit store on real SQLite files: durable, idempotent by application_id, pseudonymised, outcomes
with history, the review queue and the labelled rows for retraining."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schema import PII_COLUMNS, validate_row
from scoring.audit import AuditRecord, AuditStore, AuditStoreError
from scoring.audit_record import dumps, plain
from scoring.errors import IdempotencyConflictError, UnknownApplicationError
from scoring.personal import payload_digest, pseudonymise
from scoring.policy import Decision
from scoring.results import ScoreResult

SECRET = b"audit-test-secret"
T0 = dt.datetime(2026, 6, 12, 14, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 6, 13, tzinfo=dt.UTC)
# Personal values chosen to be unmistakable in the file's bytes.
CLEAR = {
    "first_name": "Zebulon",
    "last_name": "Quixotefield",
    "national_id": "987-65-4329",
    "phone": "+1 555 013 7788",
    "email": "zebulon.quixotefield@example.org",
    "address_line1": "4242 Marigold Crescent",
    "employer": "Hyperion Widgets LLC",
    "ip_address": "203.0.113.77",
    "device_id": "device-7f3c9a11",
    "bank_account_number": "000123456789",
    "text_loan_purpose": "Consolidating my Quixotefield family loans",
}


def application(app_id: str = "A-1", *, product: str = "CONSUMER", **changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "application_id": app_id,
        "submitted_at": "2026-06-12T14:03:27Z",
        "product": product,
        "date_of_birth": "1987-09-14",
        "address_city": "Portland",
        "address_country": "US",
        "loan_amount": 12000,
        "loan_term_months": 36,
        "loan_currency": "USD",
        **CLEAR,
    }
    if product == "SMALL_BUSINESS":
        raw["business_industry_code"] = "4441"
    raw.update(changes)
    return validate_row(raw, attributes={"bureau_score": 700.0}, now=NOW)


def record(
    app_id: str = "A-1",
    *,
    decision: str = "APPROVE",
    score: int = 120,
    minutes: int = 0,
    product: str = "CONSUMER",
    **changes: object,
) -> AuditRecord:
    row = application(app_id, product=product, **changes)
    return AuditRecord(
        application_id=app_id,
        payload_sha256=payload_digest(row),
        received_at=T0 + dt.timedelta(minutes=minutes),
        product=product,
        decision=decision,
        probability=score / 1000,
        score=score,
        model_version="m-1",
        text_encoder="minilm",
        text_provider="CPUExecutionProvider",
        degraded=False,
        degraded_reason="",
        latency_ms=4.5,
        reasons=[{"code": "LOAN_TO_INCOME", "feature": "loan_to_income", "contribution": 0.12}],
        features={"loan_to_income": 0.4, "email_domain": "example.org", "bureau_score": None},
        application=row,
    )


@pytest.fixture
def store(tmp_path: Path):
    with AuditStore(tmp_path / "var" / "audit.sqlite", secret=SECRET) as s:
        yield s


def rows_in(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
    finally:
        db.close()


def test_pseudonymise_hashes_exactly_the_personal_fields():
    row = application()
    out = pseudonymise(row, SECRET)
    for column in PII_COLUMNS:
        if row[column] is None:
            assert out[column] is None
        else:
            assert out[column].startswith("h:") and len(out[column]) == 2 + 64
            assert str(row[column]) not in out[column]
    assert out["date_of_birth"] != "1987-09-14"
    assert out["loan_amount"] == 12000.0 and out["address_city"] == "Portland"
    assert out["submitted_at"] == "2026-06-12T14:03:27+00:00"
    assert out["attr_bureau_score"] == 700.0
    # Keyed and stable: the same value hashes alike under one secret, differently under another.
    assert pseudonymise(row, SECRET) == out
    assert pseudonymise(row, b"another")["phone"] != out["phone"]


def test_pseudonymise_separates_fields_and_refuses_an_empty_secret():
    out = pseudonymise({"first_name": "Sam", "last_name": "Sam"}, SECRET)
    assert out["first_name"] != out["last_name"]
    with pytest.raises(ValueError, match="secret"):
        pseudonymise({"phone": "1"}, b"")


def test_payload_digest_ignores_field_order_and_sees_changes():
    row = application()
    assert payload_digest(dict(reversed(list(row.items())))) == payload_digest(row)
    assert payload_digest(application(loan_amount=12001)) != payload_digest(row)


def test_a_recorded_decision_survives_reopening_the_file(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    rec = record()
    with AuditStore(path, secret=SECRET) as first:
        stored, inserted = first.record(rec)
    assert inserted
    with AuditStore(path, secret=SECRET) as again:
        assert again.get("A-1") == stored
    assert stored.decision == "APPROVE" and stored.received_at == T0
    assert stored.application == pseudonymise(rec.application, SECRET)
    assert stored.reasons == rec.reasons and stored.features == rec.features


def test_the_file_is_in_wal_mode(store: AuditStore):
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_retry_with_the_same_payload_gets_the_stored_decision(store: AuditStore):
    first, inserted = store.record(record(decision="REVIEW", score=700))
    # A retry scored again (say by a newer model) must not change the answer.
    retry, again = store.record(record(decision="APPROVE", score=100))
    assert inserted and not again
    assert retry == first and retry.decision == "REVIEW" and retry.score == 700
    assert rows_in(Path(store.path)) == 1


def test_a_different_payload_under_the_same_id_is_refused(store: AuditStore):
    store.record(record())
    with pytest.raises(IdempotencyConflictError, match="'A-1'") as caught:
        store.record(record(loan_amount=50000))
    message = str(caught.value)
    assert "50000" not in message and CLEAR["last_name"] not in message
    assert caught.value.grpc_status_code().name == "ALREADY_EXISTS"
    assert store.get("A-1") is not None and store.get("A-1").application["loan_amount"] == 12000.0  # type: ignore[union-attr]


def test_concurrent_records_of_one_id_store_one_row_and_agree(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    # Two stores on one file (as two processes would be), four threads each.
    stores = [AuditStore(path, secret=SECRET) for _ in range(2)]
    barrier = threading.Barrier(8)
    results: list[tuple[AuditRecord, bool]] = []
    lock = threading.Lock()

    def score(i: int) -> None:
        rec = record(decision=("APPROVE", "REVIEW", "DECLINE")[i % 3], score=100 * i)
        barrier.wait()
        out = stores[i % 2].record(rec)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(results) == 8
    assert sum(inserted for _, inserted in results) == 1
    assert len({(r.decision, r.score) for r, _ in results}) == 1
    assert rows_in(path) == 1


def test_no_personal_value_reaches_the_file(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    store = AuditStore(path, secret=SECRET)
    store.record(record())
    store.record(record("A-2", minutes=1))
    store.record_outcome("A-1", "CONFIRMED_FRAUD", fraud_type="identity_theft", reviewer="officer-7")
    # Read the WAL too, before and after the final checkpoint.
    files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.sqlite")]
    raw = b"".join(p.read_bytes() for p in files)
    store.close()
    raw += path.read_bytes()
    assert b"Portland" in raw  # the check itself can see clear text
    for value in (*CLEAR.values(), "1987-09-14"):
        assert value.encode() not in raw, value


def test_outcomes_keep_history_and_the_latest_wins(store: AuditStore):
    store.record(record())
    assert store.outcome_of("A-1") is None
    store.record_outcome("A-1", "CONFIRMED_FRAUD", fraud_type="synthetic_id", reviewer="o-1", at=T0)
    later = T0 + dt.timedelta(days=1)
    store.record_outcome("A-1", "LEGITIMATE", reviewer="o-2", note="customer verified", at=later)
    # An outcome dated earlier, recorded later (an import), does not override the newer one.
    store.record_outcome("A-1", "UNKNOWN", reviewer="o-3", at=T0 - dt.timedelta(1))
    latest = store.outcome_of("A-1")
    assert latest is not None
    assert (latest.outcome, latest.reviewer, latest.note) == ("LEGITIMATE", "o-2", "customer verified")
    assert latest.at == later


def test_an_outcome_for_an_unknown_id_is_refused(store: AuditStore):
    with pytest.raises(UnknownApplicationError, match="'nope'") as caught:
        store.record_outcome("nope", "LEGITIMATE", reviewer="o-1")
    assert caught.value.grpc_status_code().name == "NOT_FOUND"
    store.record(record())
    with pytest.raises(ValueError, match="outcome must be one of"):
        store.record_outcome("A-1", "MAYBE", reviewer="o-1")  # type: ignore[arg-type]


def test_list_decisions_filters_and_sorts(store: AuditStore):
    store.record(record("A-1", decision="APPROVE", score=100, minutes=0))
    store.record(record("A-2", decision="REVIEW", score=650, minutes=1))
    store.record(record("A-3", decision="DECLINE", score=900, minutes=2, product="SMALL_BUSINESS"))
    store.record(record("A-4", decision="REVIEW", score=700, minutes=3))

    def ids(**kw: object) -> list[str]:
        return [r.application_id for r in store.list_decisions(**kw)]  # type: ignore[arg-type]

    assert ids() == ["A-3", "A-4", "A-2", "A-1"]
    assert ids(order="time_desc") == ["A-4", "A-3", "A-2", "A-1"]
    assert ids(decisions=["REVIEW"]) == ["A-4", "A-2"]
    assert ids(decisions=[Decision.REVIEW, Decision.DECLINE], products=["CONSUMER"]) == ["A-4", "A-2"]
    assert ids(products=["SMALL_BUSINESS"]) == ["A-3"]
    assert ids(since=T0 + dt.timedelta(minutes=1), until=T0 + dt.timedelta(minutes=3)) == ["A-3", "A-2"]
    assert ids(min_score=700) == ["A-3", "A-4"]
    assert ids(limit=2, offset=1) == ["A-4", "A-2"]
    store.record_outcome("A-4", "UNKNOWN", reviewer="o-1")
    assert ids(decisions=["REVIEW"], unreviewed_only=True) == ["A-2"]
    with pytest.raises(ValueError, match="order"):
        ids(order="random")


def test_labelled_returns_the_latest_fraud_and_legitimate_outcomes(store: AuditStore):
    for i in range(1, 6):
        store.record(record(f"A-{i}", minutes=i))
    store.record_outcome("A-1", "CONFIRMED_FRAUD", fraud_type="synthetic_id", reviewer="o", at=T0)
    store.record_outcome("A-2", "CONFIRMED_FRAUD", reviewer="o", at=T0)
    store.record_outcome("A-3", "CONFIRMED_FRAUD", fraud_type="mule", reviewer="o", at=T0)
    store.record_outcome("A-3", "LEGITIMATE", reviewer="o", at=T0 + dt.timedelta(hours=1))
    store.record_outcome("A-4", "UNKNOWN", reviewer="o", at=T0)  # A-5 has none
    frame = store.labelled()
    assert frame.get_column("application_id").to_list() == ["A-1", "A-2", "A-3"]
    assert frame.get_column("is_fraud").to_list() == [1, 1, 0]
    assert frame.get_column("fraud_type").to_list() == ["synthetic_id", "unspecified", "none"]
    assert frame.schema["is_fraud"] == pl.Int8
    assert frame.schema["submitted_at"] == pl.Datetime("us", "UTC")
    assert frame.schema["loan_amount"] == pl.Float64
    assert frame.get_column("email").str.starts_with("h:").all()
    assert frame.get_column("attr_bureau_score").to_list() == [700.0] * 3
    assert store.labelled(products=["SMALL_BUSINESS"]).height == 0


def test_a_file_of_another_format_is_refused(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    AuditStore(path, secret=SECRET).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(AuditStoreError, match="format 99"):
        AuditStore(path, secret=SECRET)


def test_a_record_is_built_from_a_score_result(store: AuditStore):
    result = ScoreResult(
        application_id="A-9",
        product="CONSUMER",
        probability=0.8,
        score=800,
        decision=Decision.DECLINE,
        model_version="m-2",
        latency_ms=3.0,
        degraded=True,
        degraded_reason="text encoder unavailable",
    )
    row = application("A-9")
    rec = AuditRecord.from_result(
        result, payload_sha256=payload_digest(row), received_at=T0, application=row, features={}
    )
    stored, _ = store.record(rec)
    assert store.get("A-9") == stored
    assert stored.reasons == []
    assert (stored.decision, stored.degraded, stored.degraded_reason) == (
        "DECLINE",
        True,
        "text encoder unavailable",
    )


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: orjson cannot write those, json can
    | st.floats()  # NaN and infinities: orjson would write null
    | st.text(max_size=20)
    | st.dates()
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.sampled_from(list(Decision))
    | st.builds(np.float64, st.floats(allow_nan=False))
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4).map(MappingProxyType)
    ),
    max_leaves=20,
)


@given(_values)
@settings(max_examples=300, deadline=None)
def test_records_are_written_as_json_would_write_them(value: object):
    # The stored text may differ in spacing; what reads back must be what json.dumps wrote.
    expected = json.dumps(value, default=plain)
    got = dumps(value)
    assert json.dumps(json.loads(got)) == json.dumps(json.loads(expected))


def test_a_feature_that_is_not_a_number_reads_back_as_one(store: AuditStore):
    store.record(replace(record("A-NaN"), features={"ratio": math.nan, "amount": 1.5, "missing": None}))
    features = store.get("A-NaN").features
    assert math.isnan(features["ratio"]) and features["amount"] == 1.5 and features["missing"] is None
