"""The text model at serving time: the encoder a bundle was trained with, its signals for a batch,
and how long they take, so the service can decide whether a deadline leaves time for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import polars as pl

from features.text.encoder import EncoderInfo, TextEncoder
from features.text.signals import TextFeaturizer
from scoring.model import ScoringModel, check_encoder
from scoring.settings import Settings

# Weight of the newest batch in the running estimate of the encoder's time per application.
EWMA = 0.2


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

    def expected_seconds(self, rows: int) -> float:
        """The encoder's recent time for a batch of `rows` applications (a running average)."""
        return self._per_row_s * max(rows, 1)

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
        self.index.close()
