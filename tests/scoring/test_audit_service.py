"""The audit trail through the real gRPC surface: every decision on record before it is answered,
retries answered from the record, conflicting reuse of an id refused, outcomes recorded as labels."""

from __future__ import annotations

import asyncio
import sqlite3

import grpc
import pytest

from scoring.audit import AuditStore
from scoring.dataset import load_dataset, with_outcome_labels
from scoring.v1 import scoring_pb2 as pb
from tests.conftest import application


@pytest.fixture
def audit(settings):
    store = AuditStore(
        settings.resolved_audit_path(), secret=settings.audit_secret(), personal_data="encrypt"
    )
    yield store
    store.close()


def _rows(settings, application_id: str) -> int:
    with sqlite3.connect(settings.resolved_audit_path()) as db:
        return db.execute(
            "SELECT count(*) FROM decisions WHERE application_id = ?", (application_id,)
        ).fetchone()[0]


async def test_a_decision_is_on_record_when_answered_and_a_retry_gets_the_same_answer(stub, settings, audit):
    app = application()
    first = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    stored = audit.get(app.application_id)  # another connection: committed, not just cached
    assert stored is not None and stored.decision == pb.Decision.Name(first.decision).removeprefix(
        "DECISION_"
    )
    assert stored.probability == first.fraud_probability and stored.model_version == first.model_version
    assert stored.application["phone"].startswith("e:")  # personal fields encrypted (the default)
    clear = audit.personal.reveal(app.application_id, stored.application)
    assert clear["phone"] == app.applicant.phone and clear["email"] == app.applicant.email
    retry = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    assert retry == first
    assert _rows(settings, app.application_id) == 1


async def test_concurrent_duplicates_get_one_decision(stub, settings):
    app = application()
    answers = await asyncio.gather(
        *(stub.Score(pb.ScoreRequest(application=app), timeout=10) for _ in range(6))
    )
    assert all(a == answers[0] for a in answers)
    assert _rows(settings, app.application_id) == 1


async def test_retries_are_answered_from_the_record_and_not_counted_as_new_decisions(stub, server, settings):
    def sample(name: str) -> float:
        registry = server.service.metrics.registry
        return sum(s.value for m in registry.collect() for s in m.samples if s.name == name)

    def made() -> float:
        return sample("fraudscore_decisions_total")

    before, commits = made(), sample("fraudscore_audit_commit_seconds_count")
    app = application()
    first = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    # A retry alone, then retries arriving together (one micro-batch, answered by one query).
    assert await stub.Score(pb.ScoreRequest(application=app), timeout=10) == first
    again = await asyncio.gather(
        *(stub.Score(pb.ScoreRequest(application=app), timeout=10) for _ in range(5))
    )
    assert all(a == first for a in again)
    # A new application and its duplicates sent together: one decision, counted once.
    other = application()
    together = await asyncio.gather(
        *(stub.Score(pb.ScoreRequest(application=other), timeout=10) for _ in range(4))
    )
    assert all(a == together[0] for a in together)
    assert made() - before == 2
    # Two commits, one for each new decision (its duplicates in a later batch find it stored);
    # retries commit nothing.
    assert sample("fraudscore_audit_commit_seconds_count") - commits == 2
    assert _rows(settings, app.application_id) == 1 and _rows(settings, other.application_id) == 1


async def test_the_same_id_with_another_application_is_refused(stub):
    app = application()
    await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    changed = application(application_id=app.application_id, **{"loan.amount": 99_000})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Score(pb.ScoreRequest(application=changed), timeout=10)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert app.application_id in info.value.details()
    assert "99000" not in info.value.details()


async def test_outcomes_become_labels_and_feed_the_history(stub, settings, audit):
    app = application()
    await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    await stub.ReportOutcome(
        pb.ReportOutcomeRequest(
            application_id=app.application_id,
            outcome=pb.OUTCOME_CONFIRMED_FRAUD,
            fraud_type="synthetic_identity",
            reviewer="officer-7",
        ),
        timeout=10,
    )
    outcome = audit.outcome_of(app.application_id)
    assert outcome is not None and outcome.outcome == "CONFIRMED_FRAUD" and outcome.reviewer == "officer-7"
    labelled = audit.labelled()
    row = labelled.filter(labelled["application_id"] == app.application_id)
    assert row.height == 1 and row["is_fraud"][0] == 1 and row["fraud_type"][0] == "synthetic_identity"
    with sqlite3.connect(settings.resolved_history_path()) as db:
        assert db.execute("SELECT fraud FROM outcomes WHERE app = ?", (app.application_id,)).fetchone() == (
            1,
        )


@pytest.mark.parametrize(
    ("request_fields", "code", "message"),
    [
        (
            {"application_id": "NEVER-SCORED", "outcome": pb.OUTCOME_LEGITIMATE, "reviewer": "o"},
            "NOT_FOUND",
            "NEVER-SCORED",
        ),
        (
            {"application_id": "X", "outcome": pb.OUTCOME_LEGITIMATE},
            "INVALID_ARGUMENT",
            "reviewer is required",
        ),
        ({"application_id": "X", "reviewer": "o"}, "INVALID_ARGUMENT", "outcome must be CONFIRMED_FRAUD"),
        (
            {"application_id": "X", "outcome": 1, "reviewer": "o", "note": "n" * 2001},
            "INVALID_ARGUMENT",
            "note must be at most 2,000",
        ),
    ],
)
async def test_bad_outcome_reports_are_refused_clearly(stub, request_fields, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ReportOutcome(pb.ReportOutcomeRequest(**request_fields), timeout=10)
    assert info.value.code().name == code
    assert message in info.value.details()


async def test_explain_gives_the_full_breakdown_of_any_stored_decision(stub):
    app = application()
    scored = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    explained = await stub.Explain(pb.ExplainRequest(application_id=app.application_id), timeout=10)
    assert explained.model_version == scored.model_version
    # Recomputed from the features on record, by the model that decided: the same probability.
    assert explained.fraud_probability == pytest.approx(scored.fraud_probability, abs=1e-9)
    total = explained.base_value + sum(r.contribution for r in explained.reasons)
    assert total == pytest.approx(explained.raw_score, abs=1e-9)
    signs = [r.contribution > 0 for r in explained.reasons]
    assert signs == sorted(signs, reverse=True)  # risk-raising first, then lowering
    assert any(signs) and not all(signs)
    assert sum(explained.reason_shares) == pytest.approx(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Explain(pb.ExplainRequest(application_id="NEVER-SCORED"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_recorded_outcomes_replace_the_files_labels_by_application_id(training_files):
    data, mapping = training_files
    dataset = load_dataset(data, mapping)
    ids = dataset.canonical.get_column("application_id").to_list()
    first, second = ids[0], ids[1]
    flipped = {first: 1 - int(dataset.label[0]), second: int(dataset.label[1]), "not-in-file": 1}
    relabelled, taken = with_outcome_labels(dataset, flipped)
    assert taken == 2
    assert relabelled.label[0] == 1 - dataset.label[0] and relabelled.label[1] == dataset.label[1]
    assert (relabelled.label[2:] == dataset.label[2:]).all()
