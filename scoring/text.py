"""The text model at serving time: the encoder a bundle was trained with, its signals for a batch,
how long they take, so the service can decide whether a deadline leaves time for them, and the
encoding of queued applications' texts ahead of their batch (`EncodeAhead`)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from features.text.encoder import BATCH_TEXTS, GPU_PROVIDERS, EncoderInfo, TextEncoder
from features.text.signals import TEXT_FIELDS, TextFeaturizer
from scoring.model import ScoringModel, check_encoder
from scoring.settings import Settings

log = logging.getLogger(__name__)

# Weight of the newest batch in the running estimate of the encoder's time per application.
EWMA = 0.2
# Texts per encoder call of the thread that encodes ahead. A batch waiting for one of them waits for
# the whole call, so on the CPU calls stay short (8 int8 texts of 128 tokens: about 70 ms on 2
# cores); on a GPU a call of 32 costs about what a call of 1 does (docs/performance.md, "On a GPU").
AHEAD_TEXTS = {"cpu": 8, "gpu": BATCH_TEXTS}
# Texts waiting to be encoded ahead at most; past it a text is left to its batch.
AHEAD_QUEUE = 256


class EncodeAhead:
    """Encodes the texts of queued applications on a thread of its own while they wait for their
    micro-batch, so the encoder (ONNX Runtime, outside the interpreter lock) runs alongside the batch
    in progress instead of after it. The batch still asks the encoder for every text: what was
    encoded ahead comes from the encoder's cache, a text being encoded now is waited for, the rest
    is encoded by the batch itself. So nothing depends on this thread: a text it drops (queue full)
    or fails on is encoded, or fails, in its batch as it would without it."""

    def __init__(self, encoder: TextEncoder, *, chunk: int = AHEAD_TEXTS["cpu"]) -> None:
        self._encoder = encoder
        self._chunk = chunk
        self._todo: collections.deque[str] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="fraudscore-encode-ahead", daemon=True)
        self._thread.start()

    def add(self, texts: Sequence[str]) -> int:
        """Queues texts to encode; returns how many were left to their batch (the queue was full)."""
        with self._wake:
            taken = texts[: max(0, AHEAD_QUEUE - len(self._todo))]
            self._todo.extend(taken)
            self._wake.notify()
        return len(texts) - len(taken)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._todo and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                texts = [self._todo.popleft() for _ in range(min(len(self._todo), self._chunk))]
            try:
                self._encoder.encode(texts)
            except Exception as exc:  # the batch that needs these texts meets the failure itself
                log.debug("encoding ahead failed", extra={"error": type(exc).__name__})

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()


class TextRuntime:
    def __init__(
        self, model: ScoringModel, settings: Settings, *, encoder: TextEncoder | None = None
    ) -> None:
        if model.text_spec is None:
            raise ValueError("this model uses no text signals")
        encoder = encoder or TextEncoder(
            settings.resolved_encoder_dir(),
            providers=settings.text_providers,
            variant=settings.text_variant,
            threads=settings.text_threads,
            cache_size=settings.text_cache_size,
        )
        check_encoder(model, encoder.info)
        self.info: EncoderInfo = encoder.info
        self.featurizer = TextFeaturizer(model.text_spec, encoder)
        self.index = self.featurizer.new_index(settings.resolved_text_index_path())
        self._per_row_s = 0.005
        self._lock = threading.Lock()
        # Encoding ahead hands its vectors over through the encoder's cache: none without one.
        ahead = settings.text_encode_ahead and settings.text_cache_size > 0
        chunk = AHEAD_TEXTS["gpu" if encoder.info.provider in GPU_PROVIDERS else "cpu"]
        self.ahead = EncodeAhead(encoder, chunk=chunk) if ahead else None

    def expected_seconds(self, rows: int) -> float:
        """The encoder's recent time for a batch of `rows` applications (a running average)."""
        return self._per_row_s * max(rows, 1)

    def encode_ahead(self, row: Mapping[str, Any]) -> int:
        """Starts encoding a queued application's texts (those its signals will encode: not blank);
        returns how many of them were left to the batch because the thread is that far behind."""
        if self.ahead is None:
            return 0
        texts = [t for column in TEXT_FIELDS.values() if isinstance(t := row.get(column), str) and t.strip()]
        return self.ahead.add(texts) if texts else 0

    def signals(
        self, frame: pl.DataFrame, identity: Sequence[str | None], *, record: bool = True
    ) -> pl.DataFrame:
        started = time.perf_counter()
        out = self.featurizer.online(frame, identity, self.index, record=record)
        per_row = (time.perf_counter() - started) / max(frame.height, 1)
        with self._lock:
            self._per_row_s += EWMA * (per_row - self._per_row_s)
        return out

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
        self.index.close()
