"""The gRPC transport: a thin `grpc.aio` servicer over `ScoringService`, plus the standard health and
reflection services.

Requests arrive as bytes and are parsed here, so that a message that does not parse is answered with
INVALID_ARGUMENT (grpcio's own deserialisation failure would answer INTERNAL). Every error of the core
carries its status code; `_unary` maps them onto the wire in one place, and anything unexpected becomes
INTERNAL with no details (it is logged with its type and place, never its message).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scoring import wire
from scoring.access import AccessInterceptor, ApiKeys, server_credentials
from scoring.errors import FraudscoreError, InvalidApplicationError, InvalidRequestError
from scoring.results import ScoreResult
from scoring.service import ScoringService
from scoring.settings import Settings
from scoring.telemetry import MetricsInterceptor
from scoring.v1 import scoring_pb2 as pb

log = logging.getLogger("fraudscore.grpc")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FraudScoring"].full_name
T = TypeVar("T")


def _parse(message_type: type[T], data: bytes) -> T:
    """The request in `data`; InvalidRequestError naming the field where bytes that do not parse go
    wrong (a string that is not UTF-8, a truncated field), or an identifier no request can have."""
    try:
        request: T = message_type.FromString(data)  # type: ignore[attr-defined]
    except (DecodeError, ValueError, RuntimeError) as exc:
        where = wire.decode_problem(message_type.DESCRIPTOR, data)  # type: ignore[attr-defined]
        raise InvalidRequestError(f"request is not a valid {message_type.__name__} message: {where}") from exc
    problems = wire.request_problems(request)  # type: ignore[arg-type]
    if problems:
        raise InvalidRequestError("; ".join(problems))
    return request


def _timeout(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


async def _unary(context: grpc.aio.ServicerContext[Any, Any], method: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except FraudscoreError as exc:
        # The status only: a message can quote values the caller sent.
        log.debug("refused", extra={"rpc": method, "code": exc.grpc_status_code().name})
        await context.abort(exc.grpc_status_code(), exc.details())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error", extra={"rpc": method})
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
    raise AssertionError("unreachable: abort raises")


# A ScoreBatch item in the window: the future of its answer, or its error item when refused at once.
_Item = asyncio.Future[ScoreResult] | pb.ScoreBatchItem


def _error_item(index: int, exc: BaseException) -> pb.ScoreBatchItem:
    if isinstance(exc, FraudscoreError):
        error = pb.ScoreError(code=exc.grpc_status_code().name, message=exc.details())
    else:
        log.error("unexpected error", exc_info=exc, extra={"rpc": "ScoreBatch", "index": index})
        error = pb.ScoreError(code="INTERNAL", message="internal error; see the server log")
    return pb.ScoreBatchItem(index=index, error=error)


class FraudScoringServicer:
    def __init__(self, service: ScoringService, settings: Settings) -> None:
        self.service = service
        self.settings = settings

    def _submit(
        self, request: pb.ScoreRequest, timeout: float | None, *, shed: bool = True
    ) -> asyncio.Future[ScoreResult]:
        """Reads the application and queues it; the future of its answer."""
        if not request.HasField("application"):
            raise InvalidApplicationError("application is required")
        raw, attributes, errors = wire.application_from_pb(request.application)
        return self.service.submit(raw, attributes, timeout=timeout, read_errors=errors, shed=shed)

    async def _score(self, request: pb.ScoreRequest, timeout: float | None) -> pb.ScoreResponse:
        return wire.result_to_pb(await self._submit(request, timeout))

    async def Score(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ScoreResponse:
        async def call() -> pb.ScoreResponse:
            timeout = _timeout(context)
            self.service.admit_early(timeout)  # overloaded: refused before the request is read
            return await self._score(_parse(pb.ScoreRequest, data), timeout)

        return await _unary(context, "Score", call())

    async def GetModelInfo(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelInfo:
        async def call() -> pb.ModelInfo:
            _parse(pb.GetModelInfoRequest, data)
            return wire.model_info_to_pb(self.service.describe())

        return await _unary(context, "GetModelInfo", call())

    async def ReportOutcome(
        self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportOutcomeResponse:
        async def call() -> pb.ReportOutcomeResponse:
            arguments = wire.outcome_from_pb(_parse(pb.ReportOutcomeRequest, data))
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.service.report_outcome(**arguments)
            )
            return pb.ReportOutcomeResponse()

        return await _unary(context, "ReportOutcome", call())

    async def Explain(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ExplainResponse:
        async def call() -> pb.ExplainResponse:
            request = _parse(pb.ExplainRequest, data)
            if not request.application_id:
                raise InvalidRequestError("application_id is required")
            record, explanation, probability = await asyncio.get_running_loop().run_in_executor(
                None, self.service.explain, request.application_id
            )
            return wire.explanation_to_pb(
                record.application_id, record.model_version, record.degraded, explanation, probability
            )

        return await _unary(context, "Explain", call())

    def _submit_item(self, index: int, data: bytes, timeout: float | None) -> _Item:
        """Reads and queues one stream item (no task of its own); what is refused at once becomes
        its error item."""
        try:
            # Not shed by queue length: a stream's items are already bounded by its window, and a
            # bulk caller wants them queued; the stream's deadline still applies.
            return self._submit(_parse(pb.ScoreRequest, data), timeout, shed=False)
        except Exception as exc:
            return _error_item(index, exc)

    @staticmethod
    async def _finish_item(index: int, item: _Item) -> pb.ScoreBatchItem:
        if isinstance(item, pb.ScoreBatchItem):
            return item
        try:
            result = await item
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _error_item(index, exc)
        return pb.ScoreBatchItem(index=index, response=wire.result_to_pb(result))

    async def ScoreBatch(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ScoreBatchItem]:
        """Scores a stream with at most `batch_stream_window` requests in flight; answers in order."""
        window: asyncio.Queue[tuple[int, _Item] | None] = asyncio.Queue(
            maxsize=self.settings.batch_stream_window
        )
        # One deadline for the whole stream: each item gets what is left of it when it starts.
        timeout = _timeout(context)
        deadline = None if timeout is None else time.perf_counter() + timeout

        async def produce() -> None:
            try:
                index = 0
                async for data in requests:
                    left = None if deadline is None else max(0.0, deadline - time.perf_counter())
                    await window.put((index, self._submit_item(index, data, left)))
                    index += 1
            finally:
                await window.put(None)

        producer = asyncio.create_task(produce())
        try:
            while (entry := await window.get()) is not None:
                yield await self._finish_item(*entry)
            await producer  # re-raises a failure to read the stream
        except FraudscoreError as exc:
            await context.abort(exc.grpc_status_code(), str(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            log.exception("unexpected error", extra={"rpc": "ScoreBatch"})
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
        finally:
            producer.cancel()
            while not window.empty():
                entry = window.get_nowait()
                if entry is not None and isinstance(entry[1], asyncio.Future):
                    answer = entry[1]
                    if not answer.done():
                        answer.cancel()  # the batcher skips an answer nobody waits for
                    elif not answer.cancelled():
                        answer.exception()  # a refusal nobody will read: not logged as unretrieved

    def handler(self) -> grpc.GenericRpcHandler:
        serialize = {
            "Score": pb.ScoreResponse.SerializeToString,
            "GetModelInfo": pb.ModelInfo.SerializeToString,
            "ScoreBatch": pb.ScoreBatchItem.SerializeToString,
            "ReportOutcome": pb.ReportOutcomeResponse.SerializeToString,
            "Explain": pb.ExplainResponse.SerializeToString,
        }
        methods: dict[str, grpc.RpcMethodHandler] = {
            "Score": grpc.unary_unary_rpc_method_handler(self.Score, response_serializer=serialize["Score"]),
            "GetModelInfo": grpc.unary_unary_rpc_method_handler(
                self.GetModelInfo, response_serializer=serialize["GetModelInfo"]
            ),
            "ScoreBatch": grpc.stream_stream_rpc_method_handler(
                self.ScoreBatch, response_serializer=serialize["ScoreBatch"]
            ),
            "ReportOutcome": grpc.unary_unary_rpc_method_handler(
                self.ReportOutcome, response_serializer=serialize["ReportOutcome"]
            ),
            "Explain": grpc.unary_unary_rpc_method_handler(
                self.Explain, response_serializer=serialize["Explain"]
            ),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


class Server:
    """The running gRPC server: scoring, health and reflection on one port."""

    def __init__(
        self,
        service: ScoringService,
        settings: Settings,
        *,
        reuse_port: bool = False,
        own_port: int | None = None,
    ) -> None:
        """`reuse_port`: a worker of `serve --workers N`, binding the port its siblings share;
        `own_port`: the port it also listens on alone (`Settings.worker_port_base`)."""
        self.service = service
        self.settings = settings
        # Off unless this is one of `serve --workers N`'s processes: a second server started by
        # mistake on the same port must fail, not silently take half the connections.
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", int(reuse_port)),
        ]
        interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(service.metrics)]
        if settings.api_keys is not None:
            interceptors.append(AccessInterceptor(ApiKeys.load(settings.api_keys)))
        self.grpc = grpc.aio.server(options=options, interceptors=interceptors)
        self.grpc.add_generic_rpc_handlers((FraudScoringServicer(service, settings).handler(),))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc
        )
        self.port = self._listen(settings.port)
        self.own_port = self._listen(own_port) if own_port is not None else None
        service.health.listen(self._on_health)

    def _listen(self, port: int) -> int:
        settings = self.settings
        address = f"{settings.host}:{port}"
        if settings.tls_cert is not None and settings.tls_key is not None:
            credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
            bound: int = self.grpc.add_secure_port(address, credentials)
        else:
            bound = self.grpc.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"could not bind {address}")
        return bound

    async def start(self) -> None:
        await self.service.start()
        await self.grpc.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": self.port, "model_version": self.service.model.version})

    def _on_health(self, ok: bool) -> None:
        """The audit store failed (NOT_SERVING) or recovered (SERVING)."""
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING

        async def publish() -> None:
            for name in ("", SERVICE_NAME):
                await self.health.set(name, status)

        self._health_task = asyncio.get_running_loop().create_task(publish())

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health says NOT_SERVING at once, in-flight calls get `grace` seconds to finish."""
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(self.settings.grace_seconds if grace is None else grace)
        await self.service.stop()
        log.info("stopped", extra={"batches": self.service.batches, "scored": self.service.scored})

    async def wait(self) -> None:
        await self.grpc.wait_for_termination()
