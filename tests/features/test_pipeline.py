"""The feature pipeline gives every application the same numbers however it is batched, and the
serving path (validated dict rows) gives the same numbers as the training path (a whole frame)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.pipeline import FeaturePipeline
from features.schema import CANONICAL_SCHEMA, validate_row
from scoring.synth import generate

ROWS = 400


@pytest.fixture(scope="module")
def canonical() -> pl.DataFrame:
    return generate(ROWS, seed=3).select(list(CANONICAL_SCHEMA))


@pytest.fixture(scope="module")
def pipeline(canonical: pl.DataFrame) -> FeaturePipeline:
    p = FeaturePipeline()
    p.fit_spec(p.features(generate(5_000, seed=4).select(list(CANONICAL_SCHEMA))))
    return p


def test_batch_features_equal_one_application_at_a_time(canonical, pipeline):
    batch = pipeline.features(canonical)
    singles = pl.concat([pipeline.features(canonical.slice(i, 1)) for i in range(canonical.height)])
    assert batch.equals(singles)
    m_batch = pipeline.matrix(batch)
    m_single = np.vstack([pipeline.matrix(pipeline.features(canonical.slice(i, 1))) for i in range(50)])
    np.testing.assert_array_equal(m_batch[:50], m_single)


def test_serving_rows_give_the_training_features(canonical, pipeline):
    now = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    rows = [validate_row(r, now=now) for r in canonical.iter_rows(named=True)]
    served = pipeline.features(pipeline.frame_from_rows(rows))
    assert served.equals(pipeline.features(canonical))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_features_of_a_row_do_not_depend_on_the_other_rows(canonical, pipeline, data):
    indices = data.draw(st.lists(st.integers(0, ROWS - 1), min_size=1, max_size=30, unique=True))
    subset = pipeline.features(canonical[indices])
    full = pipeline.features(canonical)[indices]
    assert subset.equals(full)


def test_unseen_categories_become_missing_not_errors(pipeline, canonical):
    odd = canonical.head(1).with_columns(pl.lit("x@never-seen.example").alias("email"))
    matrix = pipeline.matrix(pipeline.features(odd))
    spec = pipeline.spec
    assert spec is not None
    col = spec.names.index("email_domain")
    assert np.isnan(matrix[0, col])
