"""The text model in serving, through the real gRPC surface: the encoder and provider reported,
degraded answers when the encoder fails or the deadline leaves no time for it, and an encoder other
than the bundle's refused at start."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import pytest

from features.history_store import SQLiteHistoryStore
from features.text.encoder import EncoderError, TextEncoder
from scoring.grpc_server import Server
from scoring.model import ScoringModel
from scoring.service import ScoringService
from scoring.settings import Settings
from scoring.text import AHEAD_QUEUE, EncodeAhead, TextRuntime
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from tests.conftest import application


class BreakableEncoder:
    """The real encoder, which starts failing when told to: the only way to make an ONNX Runtime
    session fail on demand (fault injection, not a stand-in for the model)."""

    def __init__(self, real: TextEncoder) -> None:
        self.real, self.info, self.broken = real, real.info, False

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.broken:
            raise EncoderError("injected failure")
        return self.real.encode(texts)


async def _serve(settings: Settings, encoder: object | None = None) -> tuple[Server, TextRuntime]:
    model = ScoringModel.load(settings.resolved_bundle())
    text = TextRuntime(model, settings, encoder=encoder)  # type: ignore[arg-type]
    service = ScoringService(
        model, settings, history=SQLiteHistoryStore(":memory:"), history_secret=b"k", text=text
    )
    server = Server(service, settings)
    await server.start()
    return server, text


@pytest.fixture
async def broken(
    settings, encoder_dir, tmp_path
) -> AsyncIterator[tuple[pb_grpc.FraudScoringStub, BreakableEncoder]]:
    encoder = BreakableEncoder(TextEncoder(encoder_dir, providers=["cpu"]))
    own = settings.model_copy(update={"text_index_path": tmp_path / "idx.sqlite"})
    server, text = await _serve(own, encoder)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.FraudScoringStub(channel), encoder
    await server.stop(grace=1.0)
    text.close()


async def test_each_response_names_the_encoder_and_the_provider_that_ran(stub, bundle_dir):
    model = ScoringModel.load(bundle_dir)
    response = await stub.Score(pb.ScoreRequest(application=application(application_id="T-1")), timeout=10)
    assert response.text_model.encoder == model.text_spec.encoder
    assert response.text_model.encoder.startswith("all-MiniLM-L6-v2@sha256:")
    assert response.text_model.execution_provider in {
        "CPUExecutionProvider",
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
    }
    assert not response.degraded and response.degraded_reason == ""
    info = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.text_model.encoder == model.text_spec.encoder
    assert info.text_model.execution_provider == response.text_model.execution_provider
    assert any(f.name.startswith("nlp_") for f in info.features)


async def test_an_encoder_failure_gives_a_flagged_answer_from_the_fallback_model(broken):
    stub, encoder = broken
    app = application(application_id="T-BROKEN")
    healthy = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    encoder.broken = True
    started = time.perf_counter()
    response = await stub.Score(pb.ScoreRequest(application=app), timeout=2)
    assert time.perf_counter() - started < 2
    assert response.degraded
    assert response.degraded_reason == "text encoder failed (EncoderError)"
    assert response.text_model.execution_provider == ""  # no provider ran text for this answer
    assert 0.0 <= response.fraud_probability <= 1.0
    assert response.fraud_probability != healthy.fraud_probability  # another model answered
    encoder.broken = False
    recovered = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    assert not recovered.degraded


class RecordingEncoder:
    """The real encoder, noting which thread asked for which texts."""

    def __init__(self, real: TextEncoder) -> None:
        self.real, self.info, self.calls = real, real.info, list[tuple[str, list[str]]]()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append((threading.current_thread().name, list(texts)))
        return self.real.encode(texts)


@pytest.mark.parametrize("ahead", [True, False])
async def test_queued_texts_are_encoded_ahead_of_their_batch_and_only_once(
    settings, encoder_dir, tmp_path, ahead
):
    encoder = RecordingEncoder(TextEncoder(encoder_dir, providers=["cpu"]))
    own = settings.model_copy(update={"text_index_path": tmp_path / "idx.sqlite", "text_encode_ahead": ahead})
    server, text = await _serve(own, encoder)
    before = encoder.real.encoded  # the phrases' prototypes and the warm-up's texts
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            app = application(**{"text.business_description": "   "})  # blank: no signal, not encoded
            response = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
    finally:
        await server.stop(grace=1.0)
        text.close()
    assert not response.degraded
    texts = {app.text.loan_purpose, app.text.employment_description}
    by_thread = {name for name, asked in encoder.calls if texts & set(asked)}
    assert ("fraudscore-encode-ahead" in by_thread) is ahead
    assert any(name.startswith("fraudscore-batch") for name in by_thread)  # the batch still asks
    assert encoder.real.encoded - before == 2  # each text went through the model once
    assert all("   " not in asked for _, asked in encoder.calls)


async def test_a_deadline_too_short_for_the_encoder_is_answered_without_text(settings, encoder_dir, tmp_path):
    # The margin says the encoder needs a minute: any deadline under that is too short for it.
    own = settings.model_copy(update={"text_margin_ms": 60_000.0, "text_index_path": tmp_path / "idx.sqlite"})
    server, text = await _serve(own)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            short = await stub.Score(
                pb.ScoreRequest(application=application(application_id="T-D1")), timeout=5
            )
            assert short.degraded and short.degraded_reason.startswith("deadline: ")
            assert "the text encoder needs about" in short.degraded_reason
            unbounded = await stub.Score(pb.ScoreRequest(application=application(application_id="T-D2")))
            assert not unbounded.degraded
    finally:
        await server.stop(grace=1.0)
        text.close()


@pytest.mark.slow
def test_serve_refuses_an_encoder_other_than_the_bundles(bundle_dir, tmp_path):
    other = tmp_path / "enc128"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "scoring.cli",
            "encoder",
            "build",
            "--out",
            str(other),
            "--max-seq-length",
            "128",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert (other / "model.int8.onnx").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "scoring.cli", "serve", "--bundle", str(bundle_dir), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "FRAUDSCORE_ENCODER_DIR": str(other),
            "FRAUDSCORE_DATA_DIR": str(tmp_path / "var"),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert proc.returncode == 3, proc.stderr
    assert "refusing to serve" in proc.stderr
    assert "was trained with text encoder all-MiniLM-L6-v2@sha256:" in proc.stderr


def test_encoding_ahead_waits_in_a_bounded_queue_and_stops_on_close():
    release = threading.Event()
    calls: list[list[str]] = []

    class Held:
        def encode(self, texts: Sequence[str]) -> None:
            calls.append(list(texts))
            assert release.wait(10)

    ahead = EncodeAhead(Held(), chunk=8)  # type: ignore[arg-type]
    ahead.add(["first"])
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    # The thread is busy with "first": the queue fills, the rest is left to the batches.
    assert ahead.add([f"text {i}" for i in range(AHEAD_QUEUE + 50)]) == 50
    assert len(ahead._todo) == AHEAD_QUEUE
    release.set()
    ahead.close()
    assert not ahead._thread.is_alive()
    assert calls[0] == ["first"] and all(len(c) <= 8 for c in calls)
