"""Serving's two feature paths score alike: a micro-batch small enough for the row-wise path
(`ScoringModel.score_batch`, `features.rowwise`) gives the same matrix, scores, decisions, feature
rows (values and types, as the audit record keeps them) and reasons as polars' path (`score_frame`),
for the primary model with text signals and the fallback without, lender attributes included."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from features.history import entity_key_rows, history_frame
from features.history_store import SQLiteHistoryStore
from features.rowwise import ROW_PATH_MAX
from features.text.encoder import TextEncoder
from features.text.signals import TextFeaturizer
from scoring.model import ScoringModel
from scoring.synth import generate


@pytest.fixture(scope="module")
def batch(bundle_dir, encoder_dir):
    model = ScoringModel.load(bundle_dir)
    rows = generate(160, seed=12).to_dicts()
    for i, row in enumerate(rows):  # the test model's lender attributes, some missing
        row["attr_bureau_score"] = None if i % 7 == 0 else 600.0 + i
        row["attr_branch_region"] = None if i % 5 == 0 else ("OR", "WA", "CA")[i % 3]
    frame = model.pipeline.frame_from_rows(rows)
    keys = entity_key_rows(frame, b"k")
    history = SQLiteHistoryStore(":memory:").lookup_and_record(keys)
    assert model.text_spec is not None
    featurizer = TextFeaturizer(model.text_spec, TextEncoder(encoder_dir, providers=["cpu"]))
    text = featurizer.offline(frame, [k["identity"] for k in keys])
    return model, frame, history, text


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert [list(r) for r in a] == [list(r) for r in b]  # names and order
    for x, y in zip(a, b, strict=True):
        for name in y:
            u, v = x[name], y[name]
            both_nan = isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v)
            assert both_nan or (type(u) is type(v) and u == v), (name, u, v)


@pytest.mark.parametrize("with_text", [True, False])
def test_row_path_equals_polars_path(batch, with_text):
    model, frame, history, text = batch
    compared = 0
    for start in range(0, frame.height, ROW_PATH_MAX):
        part = slice(start, start + ROW_PATH_MAX)
        sub, past = frame[part], history[part]
        signals = text[part] if with_text else None
        rows = model.score_batch(sub, past, signals)
        frames = model.score_frame(sub, history_frame(past), signals)
        assert rows.rows is not None and rows.features is None  # the row path did run
        assert frames.features is not None
        assert rows.head is frames.head
        assert np.array_equal(rows.matrix, frames.matrix, equal_nan=True)
        assert np.array_equal(rows.raw, frames.raw) and np.array_equal(rows.probability, frames.probability)
        assert rows.decisions == frames.decisions
        _same_rows(rows.feature_rows(), frames.feature_rows())
        flagged = list(range(sub.height))
        assert rows.explain(flagged) == frames.explain(flagged)
        compared += sub.height
    assert compared == frame.height


def test_larger_batches_and_refused_rows_take_polars(batch):
    model, frame, history, text = batch
    big = model.score_batch(frame[: ROW_PATH_MAX + 1], history[: ROW_PATH_MAX + 1], text[: ROW_PATH_MAX + 1])
    assert big.rows is None and big.features is not None
    odd = frame[:2].with_columns(user_agent=pl.lit("Mozilla b\u00f6t"))  # non-ASCII: refused by rowwise
    refused = model.score_batch(odd, history[:2], text[:2])
    assert refused.rows is None and refused.features is not None
