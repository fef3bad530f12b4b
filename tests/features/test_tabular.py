"""The row-local feature expressions, on hand-made rows."""

from __future__ import annotations

import polars as pl
import pytest

from features.tabular import cn_resident_id_valid, name_email_similarity, national_id_valid, us_ssn_valid


@pytest.mark.parametrize(
    ("ident", "valid"),
    [
        ("11010519491231002X", True),  # the check character example from GB 11643
        ("110105194912310021", False),  # same body, wrong check digit
        ("11010519491231002x", True),  # lower-case X is accepted
        ("1101051949123100", False),  # too short
        ("11010519491231002A", False),
    ],
)
def test_cn_resident_id_check_digit(ident, valid):
    frame = pl.DataFrame({"national_id": [ident]})
    assert frame.select(cn_resident_id_valid()).item() is valid


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("512-44-7781", True),
        ("512447781", True),
        ("000-12-3456", False),
        ("666-12-3456", False),
        ("912-12-3456", False),
        ("512-00-3456", False),
        ("512-44-0000", False),
        ("51-244-7781x", False),
    ],
)
def test_us_ssn_validity(ssn, valid):
    assert pl.DataFrame({"national_id": [ssn]}).select(us_ssn_valid()).item() is valid


def test_national_id_validity_is_null_for_unknown_countries_and_missing_ids():
    frame = pl.DataFrame(
        {"national_id": ["512-44-7781", None, "X123"], "address_country": ["US", "US", "DE"]}
    )
    assert frame.select(national_id_valid()).to_series().to_list() == [1, None, None]


@pytest.mark.parametrize(
    ("first", "last", "email", "expected"),
    [
        ("Maria", "Lopez", "maria.lopez87@gmail.com", 1.0),
        ("Maria", "Lopez", "mlopez@example.com", 0.75),
        ("Maria", "Lopez", "xk7r92mq1@mail.com", 0.0),
        ("Maria", "Lopez", None, None),
    ],
)
def test_name_email_similarity(first, last, email, expected):
    frame = pl.DataFrame(
        {"first_name": [first], "last_name": [last], "email": [email]},
        schema={"first_name": pl.String, "last_name": pl.String, "email": pl.String},
    )
    assert frame.select(name_email_similarity()).item() == expected


@pytest.mark.parametrize("ssn", ["٦٦٦-١٢-٣٤٥٦", "５１２-４４-７７８１"])
def test_non_ascii_digits_never_make_a_valid_id(ssn):
    # Regression: polars' \d matches any Unicode digit, which let such IDs past the area rules.
    frame = pl.DataFrame({"national_id": [ssn, "１１０１０５１９４９１２３１００２Ｘ"]})
    assert frame.select(us_ssn_valid()).to_series().to_list()[0] is False
    assert frame.select(cn_resident_id_valid()).to_series().to_list()[1] is False
