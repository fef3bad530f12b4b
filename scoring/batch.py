"""One micro-batch, scored and put on record: the synchronous core that runs on the batch thread.

`ScoringService` (scoring.service) takes requests in on the event loop, gathers them into
micro-batches and hands each to `BatchScorer.answer` on its one worker thread; nothing here touches
the event loop, futures or the transport. A batch: retries of stored decisions are answered from the
audit record, the others get features (the row-wise path for small batches, polars for large),
history (looked up and appended in one transaction), text signals where the deadline leaves time,
the model's score and decision, TreeSHAP reasons where a decision is not an approval, and a durable
audit record before any caller hears of its decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from features import rowwise
from features.history import entity_key_rows, history_frame
from features.history_store import HistoryStore
from scoring.audit import AuditRecord, AuditStore
from scoring.errors import FraudscoreError, IdempotencyConflictError, NotReadyError
from scoring.health import StoreHealth
from scoring.lists import PolicyLists
from scoring.model import ScoringModel
from scoring.policy import Decision
from scoring.results import ScoreResult
from scoring.settings import Settings
from scoring.telemetry import Metrics
from scoring.text import TextRuntime

log = logging.getLogger("fraudscore.service")

Answers = tuple[list[ScoreResult | FraudscoreError], set[int]]


@dataclass(slots=True)
class Pending:
    """One validated application waiting for its batch (the service keeps its future)."""

    row: dict[str, Any]
    received: float  # time.perf_counter() when the request arrived
    deadline: float | None  # time.perf_counter() by which the caller stops waiting
    digest: str = ""  # of the canonical application: the idempotency check
    received_at: dt.datetime | None = None  # wall clock, for the audit record


class BatchScorer:
    """Scores micro-batches; called from one thread at a time (the service's batch thread)."""

    def __init__(
        self,
        model: ScoringModel,
        settings: Settings,
        *,
        history: HistoryStore | None,
        secret: bytes,
        text: TextRuntime | None,
        audit: AuditStore | None,
        lists: PolicyLists | None,
        metrics: Metrics,
        health: StoreHealth,
    ) -> None:
        self.model = model
        self.settings = settings
        self.history = history
        self._secret = secret
        self.text = text
        self.audit = audit
        self.lists = lists
        self.metrics = metrics
        self.health = health

    def warm_up(self) -> None:
        """Runs the whole scoring path once on a synthetic application, recording nothing."""
        from scoring.synth import generate

        frame = self.model.pipeline.frame_from_rows(generate(1, seed=0).to_dicts())
        history, keys = None, entity_key_rows(frame, self._secret) if self._secret else None
        if self.history is not None and keys is not None and self.model.uses_history:
            history = self.history.lookup_and_record(keys, record=False)
        text = None
        if self.text is not None and keys is not None:
            text = self.text.signals(frame, [k["identity"] for k in keys], record=False)
            self.model.score_batch(frame, history, None)  # the fallback model, too
        # Both paths: the row-wise one (small batches) and polars'; the row-wise path's character
        # tables are built here (about 0.8 s), not on a caller's request.
        rowwise.warm()
        self.model.score_batch(frame, history, text)
        self.model.score_frame(frame, None if history is None else history_frame(history), text)

    def _text_signals(
        self, batch: Sequence[Pending], canonical: rowwise.Batch, keys: list[dict[str, Any]] | None
    ) -> tuple[pl.DataFrame | None, list[int], dict[int, str]]:
        """Text signals for the applications whose deadline leaves time for the encoder; the others,
        or all when the encoder fails, get a reason to be scored by the fallback model."""
        if self.text is None or keys is None:
            return None, list(range(len(batch))), {}
        now = time.perf_counter()
        need = self.text.expected_seconds(len(batch)) + self.settings.text_margin_ms / 1000.0
        rich = [i for i, p in enumerate(batch) if p.deadline is None or p.deadline - now >= need]
        short = set(range(len(batch))) - set(rich)
        reasons = {
            i: f"deadline: {max(0.0, (batch[i].deadline or now) - now) * 1000:.0f} ms left, "
            f"the text encoder needs about {need * 1000:.0f} ms"
            for i in sorted(short)
        }
        if not rich:
            return None, [], reasons
        try:
            text = self.text.signals(canonical.frame[rich], [keys[i]["identity"] for i in rich])
        except Exception as exc:  # the encoder's failure must not become the caller's error
            log.error("text encoder failed; scoring without text", extra={"error": type(exc).__name__})
            reasons.update(dict.fromkeys(rich, f"text encoder failed ({type(exc).__name__})"))
            return None, [], reasons
        return text, rich, reasons

    def answer(self, batch: Sequence[Pending]) -> Answers:
        """Answers a micro-batch: a retry of a stored decision gets that decision (a changed
        application under a stored id, the conflict), the others are scored and recorded. Returns the
        answers in order and the positions answered from the record (not new decisions)."""
        if self.audit is None:
            return self._score_batch(batch)
        try:
            stored = self.audit.get_many([p.row["application_id"] for p in batch])
        except (sqlite3.Error, OSError) as exc:
            raise self._audit_failed(exc, len(batch)) from None
        answers: list[ScoreResult | FraudscoreError | None] = [None] * len(batch)
        replayed: set[int] = set()
        for i, p in enumerate(batch):
            record = stored.get(p.row["application_id"])
            if record is None:
                continue
            if record.payload_sha256 != p.digest:
                answers[i] = _conflict(record.application_id)
            else:
                answers[i] = record.to_result()
                replayed.add(i)
        fresh = [i for i, a in enumerate(answers) if a is None]
        if fresh:
            scored, again = self._score_batch([batch[i] for i in fresh])
            for j, (i, answer) in enumerate(zip(fresh, scored, strict=True)):
                answers[i] = answer
                if j in again:
                    replayed.add(i)
        return [a for a in answers if a is not None], replayed

    def _score_batch(self, batch: Sequence[Pending]) -> Answers:
        # A small batch's rows as its frame would give them, for the row-wise path's keys and
        # features; the polars frame is built only where a step needs it (large batches, text).
        canonical = self.model.pipeline.batch([p.row for p in batch])
        keys = entity_key_rows(canonical, self._secret) if self._secret else None
        history = None
        # A model without history features does not pay for the lookup (about 0.55 ms an application).
        if self.history is not None and keys is not None and self.model.uses_history:
            history = self.history.lookup_and_record(keys)
        text, rich, reasons = self._text_signals(batch, canonical, keys)
        # Rows with text signals go to the primary model, the rest (if the model uses text) to the fallback.
        groups = [(rich, text)] if self.text is not None else [(list(range(len(batch))), None)]
        if self.text is not None and reasons:
            groups.append((sorted(reasons), None))
        results: list[ScoreResult | FraudscoreError | None] = [None] * len(batch)
        features: dict[int, Any] = {}
        info = self.text.info if self.text is not None else None
        for rows, text_part in groups:
            if not rows:
                continue
            whole = len(rows) == len(batch)
            scores = self.model.score_batch(
                canonical if whole else canonical.take(rows),
                None if history is None else history if whole else [history[i] for i in rows],
                text_part,
            )
            # Reasons inline only where a decision needs them (REVIEW, DECLINE): TreeSHAP costs
            # about 1.4 ms a row, against 0.05 ms for the score.
            flagged = [j for j, d in enumerate(scores.decisions) if d is not Decision.APPROVE]
            feature_rows = scores.feature_rows() if self.audit is not None else []
            explained = dict(zip(flagged, scores.explain(flagged, threads=self.model.threads), strict=True))
            done = time.perf_counter()
            for j, i in enumerate(rows):
                p = batch[i]
                model_reasons = explained[j].risk_raising() if j in explained else ()
                override = self.lists.match(keys[i]) if self.lists is not None and keys is not None else None
                results[i] = ScoreResult(
                    application_id=p.row["application_id"],
                    product=p.row["product"],
                    probability=float(scores.probability[j]),
                    score=int(scores.score[j]),
                    decision=override.decision if override else scores.decisions[j],
                    model_version=self.model.version,
                    latency_ms=round((done - p.received) * 1000.0, 3),
                    degraded=i in reasons,
                    degraded_reason=reasons.get(i, ""),
                    text_encoder=info.identity if info else "",
                    text_provider=info.provider if info and i not in reasons else "",
                    reasons=(override.reason, *model_reasons) if override else model_reasons,
                )
                if self.audit is not None:
                    features[i] = feature_rows[j]
        done_results = [r for r in results if r is not None]
        return (
            self._on_record(batch, done_results, features)
            if self.audit is not None
            else (done_results, set())
        )

    def _on_record(
        self, batch: Sequence[Pending], results: list[ScoreResult | FraudscoreError], features: dict[int, Any]
    ) -> Answers:
        """Commits the batch's decisions (durably, one transaction) before anyone hears of them. A
        concurrent duplicate that won the race is answered with the stored decision (its position is
        in the returned set); a store failure refuses the batch (UNAVAILABLE) and makes the service
        unhealthy: a decision that is not on record is never acknowledged."""
        assert self.audit is not None
        records = [
            AuditRecord.from_result(
                r,
                payload_sha256=p.digest,
                received_at=p.received_at or dt.datetime.now(dt.UTC),
                application=p.row,
                features=features[i],
            )
            for i, (p, r) in enumerate(zip(batch, results, strict=True))
            if isinstance(r, ScoreResult)
        ]
        started = time.perf_counter()
        try:
            stored = iter(self.audit.record_many(records, as_stored=False))
        except (sqlite3.Error, OSError) as exc:
            raise self._audit_failed(exc, len(batch)) from None
        self.metrics.audit_commit_seconds.observe(time.perf_counter() - started)
        self.health.report(True)
        # `latency_ms` (answer and record alike, so a retry gets the same answer) runs to the end of
        # scoring: the commit that follows is not in it, nor the gRPC path either side.
        out: list[ScoreResult | FraudscoreError] = []
        replayed: set[int] = set()
        for i, r in enumerate(results):
            if not isinstance(r, ScoreResult):
                out.append(r)
                continue
            outcome = next(stored)
            if isinstance(outcome, IdempotencyConflictError):
                out.append(outcome)
                continue
            record, new = outcome
            out.append(r if new else record.to_result())
            if not new:
                replayed.add(i)
        return out, replayed

    def _audit_failed(self, exc: BaseException, batch_size: int) -> NotReadyError:
        """A store failure refuses the batch and makes the service unhealthy."""
        log.error(
            "audit store failed; batch refused", extra={"error": type(exc).__name__, "batch_size": batch_size}
        )
        self.metrics.audit_failures.inc()
        self.health.report(False)
        return NotReadyError(
            "the decision could not be recorded (audit store failure), so none was made; retry later"
        )


def _conflict(application_id: str) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"application_id {application_id!r} was already scored with a different application; "
        "a changed application needs a new application_id"
    )
