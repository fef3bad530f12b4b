"""The scoring core: validates applications, gathers concurrent requests into micro-batches, scores
each batch with one pass of the feature pipeline and the model, and answers each caller.

No transport code here: the gRPC servicer and the command line both call `ScoringService`.

Why micro-batches: building polars features for one row costs nearly as much as for 64 (the
per-call overhead dominates), so requests are scored together, up to `batch_max_size`. The CPU-bound
batch runs on one worker thread, off the event loop; while it runs, the next batch gathers, so under
load batches grow by themselves. `batch_max_wait_ms` can hold the first request of a batch back for
others to join; it defaults to 0, which measured better on 2 cores (see Settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import polars as pl

from features import rowwise
from features.history import entity_key_rows, history_frame
from features.history_store import HistoryStore
from features.schema import ATTRIBUTE_PREFIX, FieldError, ValidationError, validate_row
from scoring.audit import AuditRecord, AuditStore, Outcome
from scoring.errors import (
    BundleError,
    DeadlineExceededError,
    FraudscoreError,
    IdempotencyConflictError,
    InvalidApplicationError,
    NotReadyError,
    OverloadedError,
    ScoringFailedError,
    UnknownApplicationError,
)
from scoring.explain import Explanation
from scoring.health import StoreHealth
from scoring.lists import PolicyLists
from scoring.model import ScoringModel
from scoring.personal import payload_digest
from scoring.policy import Decision
from scoring.results import ModelDescription, ScoreResult
from scoring.settings import Settings
from scoring.telemetry import Metrics, degraded_cause
from scoring.text import TextRuntime

log = logging.getLogger("fraudscore.service")


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    future: asyncio.Future[ScoreResult]
    received: float  # time.perf_counter() when the request arrived
    deadline: float | None  # time.perf_counter() by which the caller stops waiting
    digest: str = ""  # of the canonical application: the idempotency check
    received_at: dt.datetime | None = None  # wall clock, for the audit record


class ScoringService:
    def __init__(
        self,
        model: ScoringModel,
        settings: Settings,
        *,
        history: HistoryStore | None = None,
        history_secret: bytes = b"",
        text: TextRuntime | None = None,
        audit: AuditStore | None = None,
        lists: PolicyLists | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if model.uses_history and (history is None or not history_secret):
            raise ValueError("this model uses history features: give the service a history store and its key")
        if model.uses_text and (text is None or not history_secret):
            raise ValueError(
                "this model uses text signals: give the service its text encoder and the history key"
            )
        self.model = model
        self.text = text
        self.audit = audit
        self.lists = lists
        if lists is not None and not history_secret:
            raise ValueError("allow/deny lists match keyed hashes: give the service the history key")
        self.settings = settings
        self.history = history
        self._secret = history_secret
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fraudscore-batch")
        self.batches = 0
        self.scored = 0
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.model.labels(model.version).set(1)
        if text is not None:
            self.metrics.provider.labels(text.info.provider).set(1)
        self.health = StoreHealth(audit, self.metrics)
        self._batch_s = 0.005  # recent time to score one micro-batch (a running average)

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        # The first polars and LightGBM calls of a process are slow (measured: 80 ms for the first
        # request against about 10 ms after): pay that before serving, not on a caller's deadline.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._warm_up)
        self.health.attach(loop)
        queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=self.settings.max_queue)
        self._queue = queue
        self.metrics.queue_depth.set_function(queue.qsize)
        self._worker = asyncio.create_task(self._run(), name="fraudscore-batcher")

    async def stop(self) -> None:
        """Scores what is queued, then stops the worker."""
        if self._queue is not None and self.ready:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._worker = None
        await self.health.stop()
        self._executor.shutdown(wait=True)

    @property
    def ready(self) -> bool:
        return self._worker is not None and not self._worker.done()

    # -- the API -----------------------------------------------------------------------------
    def prepare(
        self,
        raw: Mapping[str, Any],
        attributes: Mapping[str, Any],
        read_errors: Sequence[FieldError] = (),
    ) -> dict[str, Any]:
        """Validates one application into a canonical row; raises InvalidApplicationError naming
        every bad field: those found reading the request, the fields, and the lender attributes."""
        errors = list(read_errors)
        row: dict[str, Any] = {}
        try:
            row = validate_row(raw, attributes=attributes)
        except ValidationError as exc:
            errors += exc.errors
        try:
            typed = self.model.pipeline.coerce_attributes(attributes)
        except ValidationError as exc:
            errors += exc.errors
        if errors:
            raise InvalidApplicationError.from_validation(ValidationError(errors))
        row.update({ATTRIBUTE_PREFIX + key: value for key, value in typed.items()})
        return row

    def submit(
        self,
        raw: Mapping[str, Any],
        attributes: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        read_errors: Sequence[FieldError] = (),
        shed: bool = True,
    ) -> asyncio.Future[ScoreResult]:
        """Validates and queues one application and returns the future of its answer (no task per
        application: a ScoreBatch stream has many in flight); what is refused before queueing
        raises at once. `timeout` is the caller's remaining deadline in seconds. `shed` False
        (ScoreBatch items): not refused for the queue ahead (`max_queue_wait_ms`), only for a
        deadline that the queue ahead would miss. Called on the event loop."""
        received = time.perf_counter()
        row = self.prepare(raw, attributes or {}, read_errors)
        if self._queue is None or not self.ready:
            raise NotReadyError("the scoring service is not running")
        # A retry is answered from the record in the batch (one query for the whole batch on the
        # batch thread: no thread hop per request); the digest tells a retry from a changed application.
        digest = payload_digest(row) if self.audit is not None else ""
        loop = asyncio.get_running_loop()
        pending = _Pending(
            row,
            loop.create_future(),
            received,
            None if timeout is None else received + timeout,
            digest,
            dt.datetime.now(dt.UTC),
        )
        self._admit(pending.received, pending.deadline, shed=shed)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise OverloadedError(
                f"scoring queue is full ({self.settings.max_queue} waiting); retry with backoff"
            ) from None
        if self.text is not None and (behind := self.text.encode_ahead(row)):
            self.metrics.text_ahead_dropped.inc(behind)
        return pending.future

    def admit_early(self, timeout: float | None) -> None:
        """Admission control before any work on a Score call: the servicer asks before it reads the
        request, so that under overload a refusal costs no parsing, validation or audit lookup
        (measured: refusals took about 1.7 ms of server CPU each when checked after them). A retry
        of a stored decision refused here gets it when retried after backoff."""
        if self._queue is None:
            return
        received = time.perf_counter()
        self._admit(received, None if timeout is None else received + timeout)

    def _admit(self, received: float, deadline: float | None, *, shed: bool = True) -> None:
        """Refuses (RESOURCE_EXHAUSTED) a request that would wait past `max_queue_wait_ms` or past its
        own deadline: under overload the excess is shed at once, not timed out after queueing."""
        assert self._queue is not None
        # What is queued goes in batches of up to batch_max_size, each taking about a recent batch's
        # time; with nothing queued a request is always taken (it can only wait for the batch running).
        batches_ahead = -(-self._queue.qsize() // self.settings.batch_max_size)
        wait = batches_ahead * self._batch_s
        if batches_ahead == 0:
            return
        if deadline is not None and received + wait > deadline:
            raise OverloadedError(
                f"busy: about {wait * 1000:.0f} ms of queued work is ahead and the deadline leaves less; "
                "retry with backoff"
            )
        if shed and wait * 1000.0 > self.settings.max_queue_wait_ms:
            raise OverloadedError(
                f"busy: about {wait * 1000:.0f} ms of queued work is ahead (limit "
                f"{self.settings.max_queue_wait_ms:g} ms); retry with backoff"
            )

    def describe(self) -> ModelDescription:
        m = self.model
        return ModelDescription(
            version=m.version,
            created_at=str(m.info.get("created_at", "")),
            training_data_fingerprint=str(m.info.get("training_data_fingerprint", "")),
            features=tuple((f.name, f.kind) for f in m.spec.features),
            lender_attributes=tuple(a.key for a in m.spec.attributes),
            thresholds={p: (t.review, t.decline) for p, t in m.policy.by_product.items()},
            metrics=m.metrics.get("products", {}),
            calibration=m.calibrator.method,
            synthetic_training_data=bool(m.info.get("synthetic_training_data", False)),
            text_encoder=self.text.info.identity if self.text else "",
            text_provider=self.text.info.provider if self.text else "",
        )

    # -- the batcher -------------------------------------------------------------------------
    async def _gather(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        batch = [await queue.get()]
        wait_until = time.perf_counter() + self.settings.batch_max_wait_ms / 1000.0
        while len(batch) < self.settings.batch_max_size:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = wait_until - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(queue)
            try:
                now = time.perf_counter()
                live = []
                for p in batch:
                    if p.future.done():  # the caller went away (cancelled)
                        continue
                    if p.deadline is not None and now >= p.deadline:
                        p.future.set_exception(DeadlineExceededError("deadline passed before scoring"))
                        continue
                    live.append(p)
                if live:
                    started = time.perf_counter()
                    try:
                        results, replayed = await loop.run_in_executor(self._executor, self._answer, live)
                    except asyncio.CancelledError:
                        raise
                    except FraudscoreError as exc:  # the batch as a whole was refused (store failure)
                        for p in live:
                            if not p.future.done():
                                p.future.set_exception(exc)
                    except BaseException:  # polars panics derive from BaseException
                        # A fault of ours, not bad input: every caller in the batch hears of it, with
                        # no detail (exception messages can quote data); the log has type and place.
                        log.exception("batch scoring failed", extra={"batch_size": len(live)})
                        for p in live:
                            if not p.future.done():
                                p.future.set_exception(
                                    ScoringFailedError("internal error; see the server log")
                                )
                    else:
                        debug = log.isEnabledFor(logging.DEBUG)
                        for i, (p, r) in enumerate(zip(live, results, strict=True)):
                            if isinstance(r, FraudscoreError):
                                if not p.future.done():
                                    p.future.set_exception(r)
                                continue
                            if not p.future.done():
                                p.future.set_result(r)
                            if i in replayed:  # a decision made earlier, counted when it was made
                                continue
                            self.metrics.decisions.labels(r.product, r.decision.value).inc()
                            if r.degraded:
                                self.metrics.degraded.labels(degraded_cause(r.degraded_reason)).inc()
                            if debug:  # ids, decision and timing only: never application data
                                log.debug(
                                    "scored",
                                    extra={
                                        "application_id": r.application_id,
                                        "product": r.product,
                                        "decision": r.decision.value,
                                        "score": r.score,
                                        "latency_ms": r.latency_ms,
                                        "batch_size": len(live),
                                    },
                                )
                        self._batch_s += 0.2 * (time.perf_counter() - started - self._batch_s)
                        self.batches += 1
                        self.scored += len(live)
                        self.metrics.batch_size.observe(len(live))
            finally:
                for _ in batch:
                    queue.task_done()

    def _warm_up(self) -> None:
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
        self, batch: list[_Pending], canonical: rowwise.Batch, keys: list[dict[str, Any]] | None
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

    def _answer(self, batch: list[_Pending]) -> tuple[list[ScoreResult | FraudscoreError], set[int]]:
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

    def _score_batch(self, batch: list[_Pending]) -> tuple[list[ScoreResult | FraudscoreError], set[int]]:
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
        self, batch: list[_Pending], results: list[ScoreResult | FraudscoreError], features: dict[int, Any]
    ) -> tuple[list[ScoreResult | FraudscoreError], set[int]]:
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

    def explain(self, application_id: str) -> tuple[AuditRecord, Explanation, float]:
        """The full TreeSHAP breakdown of a stored decision (any decision, approvals included)."""
        if self.audit is None:
            raise NotReadyError("no audit store: stored decisions cannot be explained")
        record = self.audit.get(application_id)
        if record is None:
            raise UnknownApplicationError(f"no decision is stored for application_id {application_id!r}")
        explanation, probability = explain_record(self.model, record)
        return record, explanation, probability

    def report_outcome(
        self,
        application_id: str,
        outcome: Outcome,
        *,
        fraud_type: str = "",
        reviewer: str,
        note: str = "",
        at: dt.datetime | None = None,
    ) -> None:
        """Records a case's outcome in the audit store (the next model's label) and, for confirmed
        fraud or legitimate, in the history store (the earlier-confirmed-fraud features)."""
        if self.audit is None:
            raise NotReadyError("no audit store: outcomes cannot be recorded")
        at = at or dt.datetime.now(dt.UTC)
        self.audit.record_outcome(
            application_id, outcome, fraud_type=fraud_type, reviewer=reviewer, note=note, at=at
        )
        if self.history is not None and outcome != "UNKNOWN":
            known_at = int(at.timestamp() * 1_000_000)
            self.history.record_outcomes([(application_id, outcome == "CONFIRMED_FRAUD", known_at)])


def explain_record(model: ScoringModel, record: AuditRecord) -> tuple[Explanation, float]:
    """A stored decision's full explanation by the loaded model, which must be the one that made it."""
    if record.model_version != model.version:
        raise BundleError(
            f"{record.application_id!r} was decided by model {record.model_version}; this server runs "
            f"{model.version}: explain it with that bundle"
        )
    return model.explain_stored(record.features, degraded=record.degraded)


def _conflict(application_id: str) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"application_id {application_id!r} was already scored with a different application; "
        "a changed application needs a new application_id"
    )
