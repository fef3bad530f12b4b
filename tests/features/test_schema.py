"""validate_row: typed rows out, every bad field named by its wire path."""

from __future__ import annotations

import datetime as dt

import pytest

from features.schema import ValidationError, validate_row

NOW = dt.datetime(2026, 6, 12, 15, 0, tzinfo=dt.UTC)


def good(**changes):
    row = {
        "application_id": "A-1",
        "submitted_at": "2026-06-12T14:03:27Z",
        "product": "CONSUMER",
        "first_name": "Maria",
        "last_name": "Lopez",
        "date_of_birth": "1987-09-14",
        "address_country": "US",
        "loan_amount": 12000,
        "loan_term_months": 36,
        "loan_currency": "USD",
    }
    row.update(changes)
    return row


def test_valid_row_is_typed():
    row = validate_row(good(), now=NOW)
    assert row["submitted_at"] == dt.datetime(2026, 6, 12, 14, 3, 27, tzinfo=dt.UTC)
    assert row["date_of_birth"] == dt.date(1987, 9, 14)
    assert row["loan_amount"] == 12000.0 and isinstance(row["loan_amount"], float)
    assert row["loan_term_months"] == 36 and isinstance(row["loan_term_months"], int)
    assert row["email"] is None


def test_blank_strings_are_missing_and_trimmed():
    row = validate_row(good(email="   ", employer="  Acme  "), now=NOW)
    assert row["email"] is None
    assert row["employer"] == "Acme"


def test_naive_timestamps_are_taken_as_utc():
    row = validate_row(good(submitted_at=dt.datetime(2026, 6, 12, 14, 0)), now=NOW)
    assert row["submitted_at"].tzinfo == dt.UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loan_amount": float("nan")}, "loan.amount must be a finite number"),
        ({"loan_amount": "12"}, "loan.amount must be a number (got str)"),
        ({"loan_amount": True}, "loan.amount must be a number (got bool)"),
        ({"loan_term_months": 12.5}, "loan.term_months must be a whole number (got 12.5)"),
        ({"date_of_birth": "1987-02-30"}, "applicant.date_of_birth must be a date as YYYY-MM-DD"),
        ({"submitted_at": "yesterday"}, "submitted_at must be an ISO 8601 timestamp"),
        (
            {"housing": "CASTLE"},
            "applicant.housing must be one of OWN, MORTGAGE, RENT, FAMILY, OTHER (got 'CASTLE')",
        ),
    ],
)
def test_bad_values_name_their_field(changes, message):
    with pytest.raises(ValidationError) as info:
        validate_row(good(**changes), now=NOW)
    assert message in str(info.value)


def test_attributes_are_checked_and_prefixed():
    row = validate_row(good(), attributes={"bureau_score": 700.0, "region": "OR"}, now=NOW)
    assert row["attr_bureau_score"] == 700.0 and row["attr_region"] == "OR"
    with pytest.raises(ValidationError, match=r"key must be 1-64 characters"):
        validate_row(good(), attributes={"bad key!": 1.0}, now=NOW)
