"""The scoring core: validates applications, gathers concurrent requests into micro-batches, has
each batch scored and put on record (`scoring.batch.BatchScorer`, on one worker thread), and answers
each caller; also the explanations of stored decisions and the outcomes officers report.

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
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from features.history_store import HistoryStore
from features.schema import ATTRIBUTE_PREFIX, FieldError, ValidationError, validate_row
from scoring.audit import AuditRecord, AuditStore, Outcome
from scoring.batch import BatchScorer, Pending
from scoring.errors import (
    BundleError,
    DeadlineExceededError,
    FraudscoreError,
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
from scoring.results import ModelDescription, ScoreResult
from scoring.settings import Settings
from scoring.telemetry import Metrics, degraded_cause
from scoring.text import TextRuntime

log = logging.getLogger("fraudscore.service")


@dataclass(slots=True)
class _Queued:
    pending: Pending
    future: asyncio.Future[ScoreResult]


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
        self._queue: asyncio.Queue[_Queued] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fraudscore-batch")
        self.batches = 0
        self.scored = 0
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.model.labels(model.version).set(1)
        if text is not None:
            self.metrics.provider.labels(text.info.provider).set(1)
        self.health = StoreHealth(audit, self.metrics)
        self.scorer = BatchScorer(
            model,
            settings,
            history=history,
            secret=history_secret,
            text=text,
            audit=audit,
            lists=lists,
            metrics=self.metrics,
            health=self.health,
        )
        self._batch_s = 0.005  # recent time to score one micro-batch (a running average)

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        # The first polars and LightGBM calls of a process are slow (measured: 80 ms for the first
        # request against about 10 ms after): pay that before serving, not on a caller's deadline.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.scorer.warm_up)
        self.health.attach(loop)
        queue: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=self.settings.max_queue)
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
        pending = Pending(
            row, received, None if timeout is None else received + timeout, digest, dt.datetime.now(dt.UTC)
        )
        self._admit(pending.received, pending.deadline, shed=shed)
        queued = _Queued(pending, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(queued)
        except asyncio.QueueFull:
            raise OverloadedError(
                f"scoring queue is full ({self.settings.max_queue} waiting); retry with backoff"
            ) from None
        if self.text is not None and (behind := self.text.encode_ahead(row)):
            self.metrics.text_ahead_dropped.inc(behind)
        return queued.future

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
    async def _gather(self, queue: asyncio.Queue[_Queued]) -> list[_Queued]:
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
                    if p.pending.deadline is not None and now >= p.pending.deadline:
                        p.future.set_exception(DeadlineExceededError("deadline passed before scoring"))
                        continue
                    live.append(p)
                if live:
                    started = time.perf_counter()
                    try:
                        results, replayed = await loop.run_in_executor(
                            self._executor, self.scorer.answer, [p.pending for p in live]
                        )
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
