"""Prometheus metrics: served on their own port (`metrics_port`) at /metrics.

What is measured: each RPC's latency and status code; decisions by product and decision; degraded
answers by cause; the text encoder's provider in use and the texts it could not encode ahead; the
scoring queue's depth; micro-batch sizes; audit commits' time, audit store failures and whether the
service is healthy; the garbage collector's pauses. Labels are methods, codes, products, decisions,
causes, providers and collector generations only: never an application id or anything an applicant
sent.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)


class Metrics:
    """One registry per service (so tests and several servers in one process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc_seconds = Histogram(
            "fraudscore_rpc_seconds",
            "gRPC call latency in the server",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "fraudscore_decisions_total",
            "Decisions made (a retry answered from the record is not counted again)",
            ["product", "decision"],
            registry=r,
        )
        self.degraded = Counter(
            "fraudscore_degraded_total", "Answers from the fallback model without text", ["cause"], registry=r
        )
        self.batch_size = Histogram(
            "fraudscore_batch_size",
            "Applications per micro-batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.audit_commit_seconds = Histogram(
            "fraudscore_audit_commit_seconds",
            "Time to commit a micro-batch's decisions durably to the audit store (the disk's flush is in it)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.audit_failures = Counter(
            "fraudscore_audit_failures_total", "Batches refused because the audit store failed", registry=r
        )
        self.healthy = Gauge("fraudscore_healthy", "1 when the service can record decisions", registry=r)
        self.queue_depth = Gauge("fraudscore_queue_depth", "Applications waiting to be scored", registry=r)
        self.provider = Gauge(
            "fraudscore_text_provider",
            "The text encoder's execution provider in use (1)",
            ["provider"],
            registry=r,
        )
        self.model = Gauge("fraudscore_model_info", "The model version served (1)", ["version"], registry=r)
        self.text_ahead_dropped = Counter(
            "fraudscore_text_ahead_dropped_total",
            "Texts not encoded ahead of their batch because the queue of the thread encoding ahead "
            "was full (each is encoded in its batch instead)",
            registry=r,
        )
        self.gc_pause = Histogram(
            "fraudscore_gc_pause_seconds",
            "Collections of Python's garbage collector, by generation: every thread of the process "
            "waits for each (`fraudscore serve` only)",
            ["generation"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.healthy.set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def watch_gc(metrics: Metrics) -> Callable[[], None]:
    """Times every collection of Python's garbage collector into `fraudscore_gc_pause_seconds` (a
    collection holds the interpreter lock throughout: a full one over a large heap shows in every
    request's latency). Process-wide; returns the function that stops it."""
    by_generation = [metrics.gc_pause.labels(str(g)) for g in range(3)]
    started = 0.0

    def timed(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started)

    gc.callbacks.append(timed)
    return lambda: gc.callbacks.remove(timed)


def degraded_cause(reason: str) -> str:
    """A degraded reason's cause, as a label with few values (the reason text carries numbers)."""
    return reason.split(":", 1)[0].split(" (", 1)[0].strip() or "other"


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Times every unary call of the scoring service and counts its status code."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").rpartition("/")
        if (
            handler is None
            or service.startswith("grpc.")
            or handler.request_streaming
            or handler.response_streaming
        ):
            return handler
        inner = handler.unary_unary
        histogram = self.metrics.rpc_seconds

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                found = context.code()
                code = found.name if isinstance(found, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                histogram.labels(method, code).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class MetricsSite:
    """/metrics over HTTP on its own port."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host, self.port = host, port
        app = web.Application()
        app.add_routes([web.get("/metrics", self._serve)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def _serve(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
