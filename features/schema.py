"""The canonical loan application: one table of fields that the wire format, the training files, the
synthetic generator and the feature code all agree on.

Each field has a flat column name (what polars frames and training files use), the dotted path of the
same field in the protobuf message (what error messages name), a polars dtype, whether it is personal
data, and its constraints. `validate_row` turns a raw row (as the wire layer or a file reader hands it
over) into a typed row, or raises `ValidationError` naming every bad field by its path.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

PRODUCTS: Final = ("CONSUMER", "SMALL_BUSINESS")
EMPLOYMENT_STATUSES: Final = (
    "EMPLOYED",
    "SELF_EMPLOYED",
    "UNEMPLOYED",
    "RETIRED",
    "STUDENT",
)
HOUSING: Final = ("OWN", "MORTGAGE", "RENT", "FAMILY", "OTHER")
CHANNELS: Final = ("WEB", "MOBILE_APP", "BRANCH", "BROKER", "PHONE")
LOAN_PURPOSES: Final = (
    "DEBT_CONSOLIDATION",
    "HOME_IMPROVEMENT",
    "VEHICLE",
    "MEDICAL",
    "EDUCATION",
    "WEDDING_OR_EVENT",
    "WORKING_CAPITAL",
    "EQUIPMENT",
    "INVENTORY",
    "EXPANSION",
    "OTHER",
)

# Lender attributes live in the canonical frame as `attr_<key>` columns.
ATTRIBUTE_PREFIX: Final = "attr_"
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_ATTRIBUTES: Final = 64
MAX_ATTRIBUTE_TEXT: Final = 1_000
APPLICATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
INDUSTRY_CODE = re.compile(r"^[0-9]{2,6}$")
FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)
EARLIEST_SUBMISSION: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One canonical field."""

    column: str
    path: str
    dtype: pl.DataType
    pii: bool = False
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    max_len: int | None = None
    choices: tuple[str, ...] | None = None
    pattern: re.Pattern[str] | None = None
    pattern_hint: str = ""


def _s(column: str, path: str, *, max_len: int, **kw: Any) -> Field:
    return Field(column=column, path=path, dtype=pl.String(), max_len=max_len, **kw)


def _f(column: str, path: str, lo: float, hi: float, **kw: Any) -> Field:
    return Field(column=column, path=path, dtype=pl.Float64(), minimum=lo, maximum=hi, **kw)


TEXT_MAX: Final = 4_000

FIELDS: Final[tuple[Field, ...]] = (
    _s(
        "application_id",
        "application_id",
        max_len=128,
        required=True,
        pattern=APPLICATION_ID,
        pattern_hint="1-128 characters of [A-Za-z0-9._:-]",
    ),
    Field(
        column="submitted_at",
        path="submitted_at",
        dtype=pl.Datetime("us", "UTC"),
        required=True,
    ),
    _s("product", "product", max_len=32, required=True, choices=PRODUCTS),
    _s("first_name", "applicant.first_name", max_len=100, pii=True, required=True),
    _s("last_name", "applicant.last_name", max_len=100, pii=True, required=True),
    Field(
        column="date_of_birth",
        path="applicant.date_of_birth",
        dtype=pl.Date(),
        pii=True,
        required=True,
    ),
    _s("national_id", "applicant.national_id", max_len=40, pii=True),
    _s("phone", "applicant.phone", max_len=32, pii=True),
    _s("email", "applicant.email", max_len=254, pii=True),
    _s("address_line1", "applicant.address.line1", max_len=200, pii=True),
    _s("address_city", "applicant.address.city", max_len=100),
    _s("address_region", "applicant.address.region", max_len=100),
    _s("address_postal_code", "applicant.address.postal_code", max_len=20),
    _s(
        "address_country",
        "applicant.address.country",
        max_len=2,
        required=True,
        pattern=COUNTRY,
        pattern_hint="an ISO 3166-1 alpha-2 code in upper case, e.g. US",
    ),
    _s(
        "employment_status",
        "applicant.employment_status",
        max_len=32,
        choices=EMPLOYMENT_STATUSES,
    ),
    _s("employer", "applicant.employer", max_len=200, pii=True),
    _f("annual_income", "applicant.annual_income", 0, 1e9),
    _s("housing", "applicant.housing", max_len=32, choices=HOUSING),
    _f("years_at_address", "applicant.years_at_address", 0, 100),
    _f("years_employed", "applicant.years_employed", 0, 80),
    _s("business_legal_name", "business.legal_name", max_len=200),
    _s("business_registration_number", "business.registration_number", max_len=64),
    _s(
        "business_industry_code",
        "business.industry_code",
        max_len=6,
        pattern=INDUSTRY_CODE,
        pattern_hint="a NAICS code of 2-6 digits",
    ),
    _f("business_years_trading", "business.years_trading", 0, 200),
    _f("business_annual_revenue", "business.annual_revenue", 0, 1e11),
    Field(
        column="business_employees",
        path="business.employees",
        dtype=pl.Int64(),
        minimum=0,
        maximum=1_000_000,
    ),
    _f("loan_amount", "loan.amount", 0, 1e9, required=True, exclusive_minimum=True),
    Field(
        column="loan_term_months",
        path="loan.term_months",
        dtype=pl.Int64(),
        required=True,
        minimum=1,
        maximum=480,
    ),
    _s("loan_purpose", "loan.purpose", max_len=32, choices=LOAN_PURPOSES),
    _s(
        "loan_currency",
        "loan.currency",
        max_len=3,
        required=True,
        pattern=CURRENCY,
        pattern_hint="an ISO 4217 code in upper case, e.g. USD",
    ),
    _s("channel", "channel.channel", max_len=32, choices=CHANNELS),
    _s("ip_address", "channel.ip_address", max_len=45, pii=True),
    _s("device_id", "channel.device_id", max_len=128, pii=True),
    _s("user_agent", "channel.user_agent", max_len=1_000),
    _f("session_duration_seconds", "channel.session_duration_seconds", 0, 86_400),
    _s("bank_routing_number", "bank_account.routing_number", max_len=34),
    _s("bank_account_number", "bank_account.account_number", max_len=34, pii=True),
    _f("bank_account_age_days", "bank_account.account_age_days", 0, 36_500),
    _s("text_loan_purpose", "text.loan_purpose", max_len=TEXT_MAX, pii=True),
    _s("text_business_description", "text.business_description", max_len=TEXT_MAX, pii=True),
    _s(
        "text_employment_description",
        "text.employment_description",
        max_len=TEXT_MAX,
        pii=True,
    ),
)

FIELD_BY_COLUMN: Final = {f.column: f for f in FIELDS}
FIELD_BY_PATH: Final = {f.path: f for f in FIELDS}
CANONICAL_SCHEMA: Final = pl.Schema({f.column: f.dtype for f in FIELDS})
PII_COLUMNS: Final = frozenset(f.column for f in FIELDS if f.pii)
TEXT_COLUMNS: Final = (
    "text_loan_purpose",
    "text_business_description",
    "text_employment_description",
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """A problem with one field, named by its path in the wire message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path} {self.message}"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A value the reader could not turn into its field's type (an out-of-range protobuf Timestamp):
    validation reports `problem` for the field, instead of calling it missing."""

    problem: str


@dataclass(slots=True)
class ValidationError(Exception):
    """An application that cannot be scored; `errors` names every bad field."""

    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        shown = "; ".join(str(e) for e in self.errors[:10])
        more = len(self.errors) - 10
        return shown + (f"; and {more} more" if more > 0 else "")


def _number(value: float) -> str:
    """A number as an error message shows it: whole numbers in full, others as Python writes them."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _shorten(value: object) -> str:
    """A value as an error message may echo it: short, never personal data."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_value(f: Field, value: Any, errors: list[FieldError]) -> Any:
    """Returns the typed value (None when absent) or appends an error."""
    if isinstance(value, Unreadable):
        errors.append(FieldError(f.path, value.problem))
        return None
    if isinstance(value, str) and f.dtype == pl.String():
        if "\x00" in value:
            errors.append(FieldError(f.path, "must not contain NUL characters"))
            return None
        # A field with a pattern is better told what it should look like than how long it is.
        if f.max_len is not None and len(value) > f.max_len and f.pattern is None:
            errors.append(FieldError(f.path, f"must be at most {f.max_len} characters (got {len(value)})"))
            return None
        # Free-form fields are trimmed; identifiers with a format (the idempotency key among them)
        # are taken as sent, so a key is never silently changed.
        if f.pattern is None:
            value = value.strip()
        if value == "":
            value = None
    if value is None:
        if f.required:
            errors.append(FieldError(f.path, "is required"))
        return None
    if f.dtype == pl.String():
        return _check_string(f, value, errors)
    if f.dtype == pl.Date():
        return _check_date(f, value, errors)
    if isinstance(f.dtype, pl.Datetime):
        return _check_datetime(f, value, errors)
    return _check_number(f, value, errors)


def _check_string(f: Field, value: Any, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str):
        errors.append(FieldError(f.path, f"must be a string (got {type(value).__name__})"))
        return None
    if f.choices is not None and value not in f.choices:
        errors.append(FieldError(f.path, f"must be one of {', '.join(f.choices)} (got {_shorten(value)})"))
        return None
    if f.pattern is not None and not f.pattern.fullmatch(value):
        shown = "" if f.pii else f" (got {_shorten(value)})"
        errors.append(FieldError(f.path, f"must be {f.pattern_hint}{shown}"))
        return None
    return value


def _check_date(f: Field, value: Any, errors: list[FieldError]) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    errors.append(FieldError(f.path, "must be a date as YYYY-MM-DD"))
    return None


def _check_datetime(f: Field, value: Any, errors: list[FieldError]) -> dt.datetime | None:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            errors.append(FieldError(f.path, "must be an ISO 8601 timestamp"))
            return None
    if not isinstance(value, dt.datetime):
        errors.append(FieldError(f.path, "must be a timestamp"))
        return None
    stamp: dt.datetime = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def _check_number(f: Field, value: Any, errors: list[FieldError]) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(FieldError(f.path, f"must be a number (got {type(value).__name__})"))
        return None
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(FieldError(f.path, f"must be a finite number (got {value})"))
        return None
    number: float | int
    if f.dtype == pl.Int64():
        if isinstance(value, float) and not value.is_integer():
            errors.append(FieldError(f.path, f"must be a whole number (got {value})"))
            return None
        number = int(value)
    else:
        number = float(value)
    value = number
    lo, hi = f.minimum, f.maximum
    if lo is not None and (value <= lo if f.exclusive_minimum else value < lo):
        op = ">" if f.exclusive_minimum else ">="
        errors.append(FieldError(f.path, f"must be {op} {_number(lo)} (got {_number(number)})"))
        return None
    if hi is not None and value > hi:
        errors.append(FieldError(f.path, f"must be <= {_number(hi)} (got {_number(number)})"))
        return None
    return number


def _check_attributes(attributes: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    if len(attributes) > MAX_ATTRIBUTES:
        errors.append(
            FieldError("attributes", f"must have at most {MAX_ATTRIBUTES} entries (got {len(attributes)})")
        )
        return {}
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        path = f"attributes[{_shorten(key)}]"
        if not ATTRIBUTE_KEY.fullmatch(key):
            errors.append(FieldError(path, "key must be 1-64 characters of [A-Za-z0-9_]"))
        elif isinstance(value, float) and not math.isfinite(value):
            errors.append(FieldError(path, f"must be a finite number (got {value})"))
        elif isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT:
            errors.append(FieldError(path, f"must be at most {MAX_ATTRIBUTE_TEXT} characters"))
        else:
            out[ATTRIBUTE_PREFIX + key] = value
    return out


def validate_row(
    raw: Mapping[str, Any],
    *,
    attributes: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Checks one application given as {column: value} and returns its typed canonical row.

    Cross-field rules: a small-business application needs its industry code; the applicant is 18-120
    years old at submission; the submission is not in the future (beyond clock skew).
    """
    errors: list[FieldError] = []
    row = {f.column: _check_value(f, raw.get(f.column), errors) for f in FIELDS}
    needs_industry = row["product"] == "SMALL_BUSINESS" and row["business_industry_code"] is None
    if needs_industry and not any(e.path == "business.industry_code" for e in errors):
        errors.append(FieldError("business.industry_code", "is required for SMALL_BUSINESS applications"))
    submitted, dob = row["submitted_at"], row["date_of_birth"]
    if submitted is not None:
        now = now or dt.datetime.now(dt.UTC)
        if submitted > now + FUTURE_TOLERANCE:
            errors.append(FieldError("submitted_at", "must not be in the future"))
        elif submitted < EARLIEST_SUBMISSION:
            errors.append(FieldError("submitted_at", f"must be after {EARLIEST_SUBMISSION:%Y-%m-%d}"))
        if dob is not None:
            age = (submitted.date() - dob).days / 365.25
            if not 18 <= age <= 120:
                errors.append(
                    FieldError(
                        "applicant.date_of_birth",
                        "must make the applicant 18-120 years old at submission",
                    )
                )
    row.update(_check_attributes(attributes or {}, errors))
    if errors:
        raise ValidationError(errors)
    return row
