"""The synthetic generator: deterministic by seed, in the canonical schema, every row valid, both
products and both markets, every fraud typology, a realistic fraud rate and noisy labels."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from features.schema import CANONICAL_SCHEMA, validate_row
from scoring.synth import FRAUD_TYPES, generate

ROWS = 20_000
CJK = r"[\u4e00-\u9fff]"


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return generate(ROWS, seed=2024)


def test_same_seed_gives_the_same_frame():
    assert generate(3_000, seed=5).equals(generate(3_000, seed=5))


def test_different_seeds_give_different_frames():
    assert not generate(3_000, seed=5).equals(generate(3_000, seed=6))


def test_columns_are_the_canonical_schema_then_the_labels(frame):
    assert frame.height == ROWS
    assert list(frame.schema.items()) == [
        *CANONICAL_SCHEMA.items(),
        ("is_fraud", pl.Int8()),
        ("fraud_type", pl.String()),
    ]


def test_every_sampled_row_passes_validation(frame):
    now = frame.get_column("submitted_at").max() + dt.timedelta(seconds=1)
    canonical = frame.drop("is_fraud", "fraud_type")
    for i in range(0, frame.height, 13):
        validate_row(canonical.row(i, named=True), now=now)


def test_ids_are_unique_and_rows_sorted_by_submission(frame):
    assert frame.get_column("application_id").n_unique() == frame.height
    assert frame.get_column("application_id").str.starts_with("SYN-").all()
    assert frame.get_column("submitted_at").is_sorted()


def test_submissions_fall_inside_the_window():
    start = dt.datetime(2025, 3, 15, tzinfo=dt.UTC)
    frame = generate(4_000, seed=9, start=start, months=2)
    times = frame.get_column("submitted_at")
    assert times.min() >= start
    assert times.max() < dt.datetime(2025, 5, 15, tzinfo=dt.UTC)


def test_fewer_applications_at_night_than_in_the_afternoon(frame):
    local_hour = (
        frame.filter(pl.col("address_country") == "CN")
        .get_column("submitted_at")
        .dt.convert_time_zone("Asia/Shanghai")
        .dt.hour()
    )
    assert (local_hour == 3).sum() * 5 < (local_hour == 15).sum()


def test_fraud_rate_is_between_one_and_three_percent(frame):
    assert 0.01 <= frame.get_column("is_fraud").mean() <= 0.03
    assert 0.01 <= (frame.get_column("fraud_type") != "none").mean() <= 0.03


def test_every_typology_is_present(frame):
    assert set(frame.get_column("fraud_type").unique()) == {"none", *FRAUD_TYPES}


def test_labels_carry_noise_both_ways(frame):
    fraud = frame.get_column("fraud_type") != "none"
    observed = frame.get_column("is_fraud") == 1
    assert (fraud & ~observed).sum() > 0  # fraud never found
    assert (~fraud & observed).sum() > 0  # good customers flagged
    assert (fraud & observed).sum() > 0.75 * fraud.sum()


def test_both_products_and_both_markets(frame):
    share = frame.get_column("product").value_counts(normalize=True)
    business = share.filter(pl.col("product") == "SMALL_BUSINESS").get_column("proportion").item()
    assert 0.2 < business < 0.3
    cn = frame.filter(pl.col("address_country") == "CN")
    assert 0.15 < cn.height / frame.height < 0.25
    assert set(cn.get_column("loan_currency").unique()) == {"CNY"}
    assert cn.get_column("phone").drop_nulls().str.starts_with("+86").mean() > 0.95


def test_chinese_rows_have_chinese_text(frame):
    cn = frame.filter(pl.col("address_country") == "CN")
    for column in ("text_loan_purpose", "first_name", "address_city"):
        assert cn.get_column(column).str.contains(CJK).mean() > 0.9
    us = frame.filter(pl.col("address_country") == "US")
    assert us.get_column("text_loan_purpose").str.contains(CJK).mean() < 0.05


def test_business_fields_only_on_business_applications(frame):
    consumer = frame.filter(pl.col("product") == "CONSUMER")
    business = frame.filter(pl.col("product") == "SMALL_BUSINESS")
    assert consumer.get_column("business_industry_code").null_count() == consumer.height
    assert business.get_column("business_industry_code").null_count() == 0
    assert business.get_column("text_business_description").null_count() < 0.1 * business.height


def test_resident_ids_of_honest_chinese_applicants_have_valid_check_digits(frame):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    ids = (
        frame.filter((pl.col("address_country") == "CN") & (pl.col("fraud_type") == "none"))
        .get_column("national_id")
        .drop_nulls()
    )

    def check(body: str) -> str:
        return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]

    valid = [check(i[:17]) == i[17] for i in ids]
    assert len(ids) > 1000
    assert sum(valid) > 0.99 * len(ids)


def test_ring_members_share_devices_and_near_identical_text(frame):
    ring = frame.filter(pl.col("fraud_type") == "ring")
    devices = ring.get_column("device_id").value_counts()
    assert devices.get_column("count").max() >= 3
    assert ring.get_column("text_loan_purpose").n_unique() < ring.height
    assert ring.select("first_name", "last_name").n_unique() > 0.8 * ring.height


def test_progress_is_reported_per_chunk():
    calls: list[tuple[int, int]] = []
    generate(10, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 10)]


def test_zero_rows_gives_an_empty_frame_with_the_schema():
    empty = generate(0, seed=1)
    assert empty.height == 0
    assert list(empty.schema)[: len(CANONICAL_SCHEMA)] == list(CANONICAL_SCHEMA)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": -1}, "rows must be >= 0"),
        ({"rows": 5, "months": 0}, "months must be >= 1"),
        ({"rows": 5, "start": dt.datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(seed=1, **kwargs)
