"""Server life cycle through the real surface: graceful shutdown under load, and load shedding."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from features.history_store import SQLiteHistoryStore
from scoring.audit import AuditStore
from scoring.grpc_server import Server
from scoring.model import ScoringModel
from scoring.service import ScoringService
from scoring.settings import Settings
from scoring.text import TextRuntime
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from tests.conftest import application


async def _start(settings: Settings, audit: AuditStore | None = None) -> Server:
    model = ScoringModel.load(settings.resolved_bundle())
    store = SQLiteHistoryStore(":memory:")
    service = ScoringService(
        model, settings, history=store, history_secret=b"k", text=TextRuntime(model, settings), audit=audit
    )
    server = Server(service, settings)
    await server.start()
    return server


async def test_graceful_shutdown_finishes_in_flight_calls_and_says_not_serving(settings, tmp_path):
    audit = AuditStore(tmp_path / "audit.sqlite", secret=b"k" * 32)
    # Admission control off (a minute of queue): this test is about what shutdown does to queued calls.
    server = await _start(settings.model_copy(update={"max_queue_wait_ms": 60_000.0}), audit)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.FraudScoringStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="fraudscore.v1.FraudScoring"))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        calls = [
            stub.Score(pb.ScoreRequest(application=application(application_id=f"G-{i}")), timeout=30)
            for i in range(300)
        ]
        pending = asyncio.gather(*calls, return_exceptions=True)
        for _ in range(1000):  # stop once scoring is under way
            if server.service.scored >= 10:
                break
            await asyncio.sleep(0.005)
        stopping = asyncio.create_task(server.stop(grace=10.0))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        results = await pending
        await stopping
    answered = [r for r in results if isinstance(r, pb.ScoreResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(answered) + len(refused) == 300
    # Every call the service had taken in was scored and answered: none cut off by the shutdown.
    assert len(answered) == server.service.scored >= 10
    # Calls grpc had not handed to the service yet are refused (grpc core says CANCELLED).
    assert {e.code() for e in refused} <= {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}
    # Every OK has its record, committed before the answer.
    assert all(audit.get(r.application_id) is not None for r in answered)
    assert audit.count() == len(answered)
    audit.close()


async def test_a_full_queue_sheds_with_resource_exhausted(settings):
    server = await _start(settings.model_copy(update={"max_queue": 1, "max_queue_wait_ms": 60_000.0}))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            calls = [
                stub.Score(pb.ScoreRequest(application=application(application_id=f"Q-{i}")), timeout=30)
                for i in range(100)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await server.stop(grace=1.0)
    codes = [grpc.StatusCode.OK if isinstance(r, pb.ScoreResponse) else r.code() for r in results]
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    shed = next(r for r in results if isinstance(r, grpc.aio.AioRpcError))
    assert "retry with backoff" in shed.details()


@pytest.mark.parametrize("bad_port", [-1, 70000])
def test_settings_refuse_impossible_ports(bad_port):
    with pytest.raises(ValueError, match="port"):
        Settings(port=bad_port, _env_file=None)  # type: ignore[call-arg]


async def test_overload_is_shed_at_admission_by_expected_wait(settings):
    """Queue room is not the bound that matters: a request that would wait past max_queue_wait_ms
    behind the work already queued is refused at once, before it is queued."""
    server = await _start(settings.model_copy(update={"max_queue_wait_ms": 5.0}))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            calls = [stub.Score(pb.ScoreRequest(application=application()), timeout=30) for _ in range(200)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            scored_unary = server.service.scored
            # A ScoreBatch stream's items queue (its window bounds them) rather than being shed.
            stream = stub.ScoreBatch(
                iter([pb.ScoreRequest(application=application()) for _ in range(200)]), timeout=60
            )
            items = [item async for item in stream]
    finally:
        await server.stop(grace=1.0)
    shed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    answered = [r for r in results if isinstance(r, pb.ScoreResponse)]
    assert answered and shed and len(answered) + len(shed) == 200
    assert {e.code() for e in shed} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all("of queued work is ahead" in (e.details() or "") for e in shed)
    assert scored_unary == len(answered)  # the shed ones cost no scoring
    assert len(items) == 200 and all(item.HasField("response") for item in items), [
        item.error for item in items if item.HasField("error")
    ][:3]
