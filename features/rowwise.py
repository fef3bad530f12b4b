"""The row-local features of `features.tabular`, computed in plain Python for a few rows at a time.

Why: a polars call has a fixed cost of milliseconds whatever the frame's height (measured: the 58
tabular expressions take about 2.5 ms for one row and 3 ms for 64), so a micro-batch of one or a
few applications, the usual case below saturation, spends most of its time there. The same
features in Python cost tens of microseconds a row. Serving uses this path for small micro-batches
(`FeaturePipeline.feature_rows`); training and large batches use the polars expressions, which stay
the definition.

The contract: for every row it accepts, `tabular_row` returns exactly what
`canonical.select(tabular_expressions()).to_dicts()` returns: the same names in the same order, the
same values bit for bit and the same Python types (int for polars' integer columns, float for
Float64, None for null). `tests/features/test_rowwise.py` holds it over the synthetic data and over
generated rows with arbitrary Unicode, whitespace and nulls in every text field.

Where Python's regular expressions and polars' (Rust's `regex` crate) differ, the classes are
spelled out: Rust's `\\s` is Unicode White_Space (Python's `\\s` also takes \\x1c-\\x1f), `$` is the
end of the text (Python's also matches before a final newline: `fullmatch` / `\\Z` here), `\\p{L}` and
`\\p{Lu}` come from `unicodedata`. What cannot be matched exactly is refused (`None`: the caller
uses polars): a string holding a character that Python's Unicode database does not know (Rust's
tables may be newer), or a non-ASCII user agent (Unicode word boundaries differ).

A serving batch skips the polars frame too: `canonical_rows` gives validated rows as
`frame.to_dicts()` would (floats for Float64 columns, the UTC time zone as polars gives it), and
`Batch` builds the frame only when a step asks for it.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, Final, Literal

import polars as pl

from features.tabular import (
    _CN_ID_CHECK,
    _CN_ID_WEIGHTS,
    AUTOMATION_UA,
    CJK,
    FREEMAIL_DOMAINS,
    MOBILE_UA,
    PHONE_PREFIX_BY_COUNTRY,
)

# Micro-batches up to this many applications take the row-wise path. Measured (bench/row_path.py,
# keys + features + matrix + feature rows, CPU): one row 8.1 ms with polars against 0.12 ms; 16 rows
# 8.6 against 1.8; 32 rows 8.9 against 4.0; 64 rows 11.7 against 11.6 (the crossover).
ROW_PATH_MAX: Final = 32

Kind = Literal["str", "float", "int", "date", "datetime"]
_KINDS: Final[dict[type[pl.DataType], Kind]] = {
    pl.String: "str",
    pl.Float64: "float",
    pl.Int64: "int",
    pl.Date: "date",
    pl.Datetime: "datetime",
}
_UTC_ZONE: Final = zoneinfo.ZoneInfo("UTC")  # the tzinfo of what polars gives for Datetime("us", "UTC")
_EXACT_FLOAT: Final = 2**53  # an int up to this size is the same number as a float


def kinds(schema: Mapping[str, pl.DataType]) -> list[tuple[str, Kind]]:
    """Each canonical column with the kind of Python value `canonical_rows` gives for it."""
    out = []
    for column, dtype in schema.items():
        kind = _KINDS.get(type(dtype))
        if kind is None or (kind == "datetime" and (dtype.time_unit, dtype.time_zone) != ("us", "UTC")):  # type: ignore[attr-defined]
            raise ValueError(f"no row-wise form of column {column} ({dtype})")
        out.append((column, kind))
    return out


def canonical_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, Kind]]
) -> list[dict[str, Any]] | None:
    """What `pl.DataFrame(rows, schema, orient="row").to_dicts()` gives, values and Python types
    alike, without polars' fixed cost per call (0.18 ms for one row, 0.5 ms for 16 measured): for
    rows as `features.schema.validate_row` makes them. None where a value is not one polars would
    take as it is (another type, a string that is not valid Unicode): the caller builds the frame."""
    out = []
    for row in rows:
        got: dict[str, Any] = {}
        for column, kind in columns:
            value = row.get(column)
            if value is not None:
                t = type(value)
                if kind == "str":
                    if t is not str or not (value.isascii() or _encodable(value)):
                        return None
                elif kind == "float":
                    if t is int and -_EXACT_FLOAT <= value <= _EXACT_FLOAT:
                        value = float(value)
                    elif t is not float:
                        return None
                elif kind == "int":
                    if t is not int or not -(2**63) <= value < 2**63:
                        return None
                elif kind == "date":
                    if t is not dt.date:
                        return None
                elif t is not dt.datetime or value.tzinfo is None:
                    return None
                else:
                    value = value.astimezone(_UTC_ZONE)
            got[column] = value
        out.append(got)
    return out


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: polars refuses it
        return False
    return True


class Batch:
    """A serving micro-batch of canonical applications: `rows` as `frame.to_dicts()` gives them
    (None past ROW_PATH_MAX, or where `canonical_rows` leaves them to polars) and the polars `frame`,
    built only when something asks for it (the polars path, the text signals)."""

    def __init__(
        self, height: int, rows: list[dict[str, Any]] | None, make_frame: Callable[[], pl.DataFrame]
    ) -> None:
        self.height = height
        self.rows = rows
        self._make_frame = make_frame
        self._frame: pl.DataFrame | None = None

    @classmethod
    def of_frame(cls, frame: pl.DataFrame) -> Batch:
        """A frame already built; its rows read when it is small enough for the row-wise path."""
        rows = frame.to_dicts() if frame.height <= ROW_PATH_MAX else None
        batch = cls(frame.height, rows, lambda: frame)
        batch._frame = frame
        return batch

    @property
    def frame(self) -> pl.DataFrame:
        if self._frame is None:
            self._frame = self._make_frame()
        return self._frame

    def take(self, positions: Sequence[int]) -> Batch:
        rows = None if self.rows is None else [self.rows[i] for i in positions]
        return Batch(len(positions), rows, lambda: self.frame[list(positions)])


# Unicode White_Space, Rust's `\s` and what its `trim` strips (Python's \s and strip() add \x1c-\x1f).
_WS_CHARS: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
_WS: Final = re.escape(_WS_CHARS)  # the same characters, for use inside a regex character class
_SPACES: Final = re.compile(f"[{_WS}]+")
_NOT_DIGIT: Final = re.compile(r"[^0-9]")
_NOT_ID: Final = re.compile(r"[^0-9A-Z]")
_REG_NOISE: Final = re.compile(f"[{_WS}-]")
_SPACE: Final = re.compile(f"[{_WS}]")
_IP4_24: Final = re.compile(r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.[0-9]{1,3}")
_IP6_48: Final = re.compile(r"([0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f]{0,4}):")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_WORDS: Final = re.compile(f"[^{_WS}]+")
_DIGITS: Final = re.compile(r"[0-9]")
_CJK: Final = re.compile(CJK)
_AUTOMATION: Final = re.compile(AUTOMATION_UA)
_MOBILE: Final = re.compile(MOBILE_UA)
_EMAIL_VALID: Final = re.compile(rf"[^@{_WS}]+@[^@{_WS}]+\.[A-Za-z]{{2,}}")
_LOCAL: Final = re.compile(r"([^@]+)@")
_DOMAIN: Final = re.compile(r"@([^@]+)\Z")
_PHONE_NOISE: Final = re.compile(rf"[{_WS}().-]")
_PHONE_VALID: Final = re.compile(r"\+[1-9][0-9]{7,14}")
_SSN: Final = re.compile(r"[0-9]{9}")
_CN_ID: Final = re.compile(r"[0-9]{17}[0-9X]")
_FREEMAIL: Final = frozenset(FREEMAIL_DOMAINS)


@cache
def _class_of(test: Callable[[str], bool]) -> re.Pattern[str]:
    """A compiled character class of every code point passing `test` (built once, ~0.3 s)."""
    ranges: list[str] = []
    start = None
    for cp in range(sys.maxunicode + 2):
        inside = cp <= sys.maxunicode and test(chr(cp))
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            lo, hi = re.escape(chr(start)), re.escape(chr(cp - 1))
            ranges.append(lo if start == cp - 1 else f"{lo}-{hi}")
            start = None
    return re.compile("[" + "".join(ranges) + "]")


def _unassigned(c: str) -> bool:
    return unicodedata.category(c) == "Cn"


def _upper(c: str) -> bool:
    return unicodedata.category(c) == "Lu"


def _not_letter(c: str) -> bool:  # [^a-z\p{L}]
    return not ("a" <= c <= "z" or unicodedata.category(c).startswith("L"))


def warm() -> None:
    """Builds the character classes now (start-up), not on a caller's request."""
    for test in (_unassigned, _upper, _not_letter):
        _class_of(test)


def accepts(row: Mapping[str, Any]) -> bool:
    """Whether `tabular_row` computes this row exactly as polars would (see the module's doc)."""
    unknown = _class_of(_unassigned)
    for value in row.values():
        if isinstance(value, str) and not value.isascii() and unknown.search(value):
            return False
    ua = row.get("user_agent")
    return ua is None or ua.isascii()


def _ratio(num: float | None, den: float | None) -> float | None:
    """`features.tabular._safe_ratio`: num / den, None where den is missing or not positive."""
    if den is None or not den > 0 or num is None:
        return None
    return num / den


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _count(pattern: re.Pattern[str], text: str) -> int:
    return sum(1 for _ in pattern.finditer(text))


def _email(row: Mapping[str, Any]) -> dict[str, Any]:
    email = row["email"]
    lower = None if email is None else email.lower()
    local = None if lower is None else (m.group(1) if (m := _LOCAL.match(lower)) else None)
    domain = None if lower is None else (m.group(1) if (m := _DOMAIN.search(lower)) else None)
    present = email is not None
    digits = None if local is None else _ratio(float(_count(_DIGITS, local)), len(local))
    similarity = None
    if local is not None:
        not_letter = _class_of(_not_letter)
        letters = not_letter.sub("", local)

        def part(col: str) -> float:
            name = row[col]
            if name is None:
                return 0.0
            name = not_letter.sub("", name.lower())
            if len(name) >= 2 and name in letters:
                return 1.0
            return 0.5 if len(name) >= 1 and letters.startswith(name[:1]) else 0.0

        similarity = (part("first_name") + part("last_name")) / 2
    return {
        "email_domain": domain,
        "email_is_freemail": None if not present or domain is None else int(domain in _FREEMAIL),
        "email_valid": None if not present else int(_EMAIL_VALID.fullmatch(email) is not None),
        "email_local_len": None if local is None else len(local),
        "email_local_digit_share": digits,
        "name_email_similarity": similarity,
    }


def _phone(row: Mapping[str, Any]) -> dict[str, Any]:
    phone = row["phone"]
    if phone is None:
        return {"phone_valid": None, "phone_country_mismatch": None}
    phone = _PHONE_NOISE.sub("", phone)
    valid = _PHONE_VALID.fullmatch(phone) is not None
    expected = PHONE_PREFIX_BY_COUNTRY.get(row["address_country"])
    mismatch = None if expected is None or not valid else int(not phone.startswith(expected))
    return {"phone_valid": int(valid), "phone_country_mismatch": mismatch}


def _national_id_valid(row: Mapping[str, Any]) -> int | None:
    ident, country = row["national_id"], row["address_country"]
    if ident is None:
        return None
    if country == "US":
        digits = ident.replace("-", "")
        area = digits[:3]
        return int(
            _SSN.fullmatch(digits) is not None
            and area not in ("000", "666")
            and not area.startswith("9")
            and digits[3:5] != "00"
            and digits[5:9] != "0000"
        )
    if country == "CN":
        upper = ident.upper()
        if _CN_ID.fullmatch(upper) is None:
            return 0
        total = sum(int(upper[i]) * w for i, w in enumerate(_CN_ID_WEIGHTS))
        return int(upper[17] == _CN_ID_CHECK[total % 11])
    return None


def _text(row: Mapping[str, Any], col: str, short: str) -> dict[str, Any]:
    text = row[col]
    if text is None:
        return {
            f"text_{short}_len_chars": 0,
            f"text_{short}_words": None,
            f"text_{short}_cjk_share": None,
            f"text_{short}_upper_share": None,
            f"text_{short}_digit_share": None,
        }
    chars = len(text)
    return {
        f"text_{short}_len_chars": chars,
        f"text_{short}_words": _count(_WORDS, text),
        f"text_{short}_cjk_share": _ratio(float(_count(_CJK, text)), chars),
        f"text_{short}_upper_share": _ratio(float(_count(_class_of(_upper), text)), chars),
        f"text_{short}_digit_share": _ratio(float(_count(_DIGITS, text)), chars),
    }


def _age_years(submitted: dt.datetime | None, born: dt.date | None) -> float | None:
    if submitted is None or born is None:
        return None
    return (submitted.date() - born).days * (1 / 365.25)


def tabular_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The tabular features of one canonical row (as polars' `to_dicts` gives it), in the order of
    `tabular_expressions()`. Check `accepts(row)` first."""
    amount, income, term = row["loan_amount"], row["annual_income"], row["loan_term_months"]
    revenue, submitted, product = row["business_annual_revenue"], row["submitted_at"], row["product"]
    employees = None if row["business_employees"] is None else float(row["business_employees"])
    ip, ua, industry = row["ip_address"], row["user_agent"], row["business_industry_code"]
    den = None if term is None or income is None else term * income
    return {
        "product": product,
        "loan_amount": amount,
        "loan_term_months": term,
        "loan_purpose": row["loan_purpose"],
        "loan_currency": row["loan_currency"],
        "loan_to_income": _ratio(amount, income),
        "payment_to_income": _ratio(None if amount is None else amount * 12.0, den),
        "annual_income": income,
        "applicant_age_years": _age_years(submitted, row["date_of_birth"]),
        "years_at_address": row["years_at_address"],
        "years_employed": row["years_employed"],
        "employment_status": row["employment_status"],
        "housing": row["housing"],
        "employer_missing": int(row["employer"] is None),
        "submitted_hour_utc": None if submitted is None else submitted.hour,
        "submitted_weekday": None if submitted is None else submitted.isoweekday(),
        **_email(row),
        **_phone(row),
        "national_id_valid": _national_id_valid(row),
        "address_country": row["address_country"],
        "postal_code_missing": int(row["address_postal_code"] is None),
        "channel": row["channel"],
        "ip_missing": int(ip is None),
        "ip_is_ipv6": _flag(None if ip is None else ":" in ip),
        "device_id_missing": int(row["device_id"] is None),
        "ua_is_automation": _flag(None if ua is None else _AUTOMATION.search(ua) is not None),
        "ua_is_mobile": _flag(None if ua is None else _MOBILE.search(ua) is not None),
        "session_duration_seconds": row["session_duration_seconds"],
        "bank_account_age_days": row["bank_account_age_days"],
        "bank_account_missing": int(row["bank_account_number"] is None),
        "business_sector": None if industry is None else industry[:2],
        "business_years_trading": row["business_years_trading"],
        "business_annual_revenue": revenue,
        "business_employees": employees,
        "business_revenue_per_employee": _ratio(revenue, employees),
        "loan_to_revenue": _ratio(amount, revenue),
        "business_registration_missing": None
        if product is None
        else (int(row["business_registration_number"] is None) if product == "SMALL_BUSINESS" else None),
        **_text(row, "text_loan_purpose", "purpose"),
        **_text(row, "text_business_description", "business"),
        **_text(row, "text_employment_description", "employment"),
    }


# -- the history's entity keys (features.history.key_values) --------------------------------------
def _lower(value: str | None) -> str | None:
    return None if value is None else _SPACES.sub(" ", value.lower()).strip(_WS_CHARS)


def _joined(*parts: str | None) -> str | None:
    return None if parts[0] is None else "|".join(p for p in parts if p is not None)


def _blank_to_none(value: str) -> str | None:
    return value or None


def key_values_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """`features.history.key_values` of one canonical row: the same clear-text keys, exactly (they
    are hashed and looked up: one character apart is another key). Check `accepts(row)` first."""
    submitted, amount, born = row["submitted_at"], row["loan_amount"], row["date_of_birth"]
    ip = None if row["ip_address"] is None else row["ip_address"].lower()
    ip24 = None
    if ip is not None:
        m = _IP4_24.fullmatch(ip) or _IP6_48.match(ip)
        ip24 = m.group(1) if m else None
    dob = None if born is None else born.isoformat()
    email = _lower(row["email"])
    phone, ident = row["phone"], row["national_id"]
    account, reg, country = (
        row["bank_account_number"],
        row["business_registration_number"],
        row["address_country"],
    )
    return {
        "ts": None if submitted is None else (submitted - _EPOCH) // dt.timedelta(microseconds=1),
        "cents": None if amount is None else round(amount * 100.0),  # half to even, as polars
        "identity": _joined(_lower(row["first_name"]), _lower(row["last_name"]), dob),
        "email_key": email,
        "device": None if row["device_id"] is None else row["device_id"].strip(_WS_CHARS),
        "phone": None if phone is None else _blank_to_none(_NOT_DIGIT.sub("", phone)),
        "email": email,
        "ip": ip,
        "ip24": ip24,
        "address": _joined(_lower(row["address_line1"]), _lower(row["address_postal_code"]), country),
        "postal_code": _joined(_lower(row["address_postal_code"]), country),
        "national_id": None if ident is None else _blank_to_none(_NOT_ID.sub("", ident.upper())),
        "bank_account": _joined(
            None if account is None else _SPACE.sub("", account), row["bank_routing_number"]
        ),
        "employer": _lower(row["employer"]),
        "business_reg": None if reg is None else _REG_NOISE.sub("", reg.upper()),
        "date_of_birth": dob,
    }
