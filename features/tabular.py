"""Row-local features of one application as polars expressions: ratios, age and tenure, time of
day, email and phone signals, identifier format validity, text statistics.

Every expression here reads only its own row, so a feature never depends on which other
applications share the frame: the batch used in serving and the single row give the same numbers.
Cross-application features (velocity, identity links) live in `features.history`.

Never divide by a literal here: polars computes `x / c` over a batch as `x * (1 / c)` but exactly
for a single row, so the last bit of the result would depend on the batch. Multiplying by a literal
is one rounding either way. (`tests/features/test_pipeline.py` holds batch == single row.)
"""

from __future__ import annotations

from typing import Final

import polars as pl

FREEMAIL_DOMAINS: Final = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "aol.com",
    "icloud.com",
    "protonmail.com",
    "proton.me",
    "gmx.com",
    "mail.com",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "foxmail.com",
)

AUTOMATION_UA = (
    r"(?i)headless|phantomjs|selenium|webdriver|puppeteer|playwright|python-requests|curl/|wget/"
    r"|httpclient|scrapy|bot\b"
)
MOBILE_UA = r"(?i)mobile|android|iphone|ipad"
CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"

# Country calling codes for the countries the demo data covers; others give null (unknown).
PHONE_PREFIX_BY_COUNTRY: Final = {"US": "+1", "CA": "+1", "CN": "+86", "GB": "+44", "HK": "+852"}

# ISO 7064 MOD 11-2 weights of the 18-digit Chinese resident ID.
_CN_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK: Final = "10X98765432"


def _safe_ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null where the denominator is missing or not positive."""
    return pl.when(den > 0).then(num / den).otherwise(None)


def _email_parts() -> tuple[pl.Expr, pl.Expr]:
    email = pl.col("email").str.to_lowercase()
    local = email.str.extract(r"^([^@]+)@", 1)
    domain = email.str.extract(r"@([^@]+)$", 1)
    return local, domain


def name_email_similarity() -> pl.Expr:
    """How much of the applicant's name shows in the email's local part, 0-1.

    Full credit per name part found whole (length >= 2), half credit for its initial starting the
    local part; the mean over first and last name. Null without an email.
    """
    local, _ = _email_parts()
    letters = local.str.replace_all(r"[^a-z\p{L}]", "")

    def part(col: str) -> pl.Expr:
        name = pl.col(col).str.to_lowercase().str.replace_all(r"[^a-z\p{L}]", "")
        whole = (name.str.len_chars() >= 2) & letters.str.contains(name, literal=True)
        initial = letters.str.starts_with(name.str.slice(0, 1)) & (name.str.len_chars() >= 1)
        return pl.when(whole).then(1.0).when(initial).then(0.5).otherwise(0.0)

    return pl.when(local.is_null()).then(None).otherwise((part("first_name") + part("last_name")) / 2)


def cn_resident_id_valid(col: str = "national_id") -> pl.Expr:
    """True when an 18-character Chinese resident ID has the right MOD 11-2 check character."""
    ident = pl.col(col).str.to_uppercase()
    digits = [ident.str.slice(i, 1).cast(pl.Int64, strict=False) for i in range(17)]
    total = pl.sum_horizontal([d * w for d, w in zip(digits, _CN_ID_WEIGHTS, strict=True)])
    expected = pl.lit(_CN_ID_CHECK).str.slice(total % 11, 1)
    shape = ident.str.contains(r"^[0-9]{17}[0-9X]$")
    return shape & (ident.str.slice(17, 1) == expected)


def us_ssn_valid(col: str = "national_id") -> pl.Expr:
    """True when a US SSN has a well-formed shape and an issuable area, group and serial."""
    digits = pl.col(col).str.replace_all("-", "")
    area = digits.str.slice(0, 3)
    return (
        digits.str.contains(r"^[0-9]{9}$")
        & ~area.is_in(["000", "666"])
        & ~area.str.starts_with("9")
        & (digits.str.slice(3, 2) != "00")
        & (digits.str.slice(5, 4) != "0000")
    )


def national_id_valid() -> pl.Expr:
    """1/0 for ID validity in the countries we know the format of; null elsewhere or when absent."""
    country = pl.col("address_country")
    return (
        pl.when(pl.col("national_id").is_null())
        .then(None)
        .when(country == "US")
        .then(us_ssn_valid())
        .when(country == "CN")
        .then(cn_resident_id_valid())
        .otherwise(None)
        .cast(pl.Int8)
    )


def phone_features() -> list[pl.Expr]:
    phone = pl.col("phone").str.replace_all(r"[\s().-]", "")
    valid = phone.str.contains(r"^\+[1-9][0-9]{7,14}$")
    expected = pl.col("address_country").replace_strict(
        PHONE_PREFIX_BY_COUNTRY, default=None, return_dtype=pl.String
    )
    mismatch = (
        pl.when(phone.is_null() | expected.is_null() | ~valid)
        .then(None)
        .otherwise(~phone.str.starts_with(expected))
    )
    return [
        pl.when(phone.is_null()).then(None).otherwise(valid).cast(pl.Int8).alias("phone_valid"),
        mismatch.cast(pl.Int8).alias("phone_country_mismatch"),
    ]


def email_features() -> list[pl.Expr]:
    local, domain = _email_parts()
    present = pl.col("email").is_not_null()
    valid = pl.col("email").str.contains(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
    return [
        domain.alias("email_domain"),
        pl.when(present).then(domain.is_in(FREEMAIL_DOMAINS)).cast(pl.Int8).alias("email_is_freemail"),
        pl.when(present).then(valid).cast(pl.Int8).alias("email_valid"),
        local.str.len_chars().alias("email_local_len"),
        _safe_ratio(local.str.count_matches(r"[0-9]").cast(pl.Float64), local.str.len_chars()).alias(
            "email_local_digit_share"
        ),
        name_email_similarity().alias("name_email_similarity"),
    ]


def text_features(col: str, short: str) -> list[pl.Expr]:
    text = pl.col(col)
    chars = text.str.len_chars()
    return [
        chars.fill_null(0).alias(f"text_{short}_len_chars"),
        text.str.count_matches(r"\S+").alias(f"text_{short}_words"),
        _safe_ratio(text.str.count_matches(CJK).cast(pl.Float64), chars).alias(f"text_{short}_cjk_share"),
        _safe_ratio(text.str.count_matches(r"\p{Lu}").cast(pl.Float64), chars).alias(
            f"text_{short}_upper_share"
        ),
        _safe_ratio(text.str.count_matches(r"[0-9]").cast(pl.Float64), chars).alias(
            f"text_{short}_digit_share"
        ),
    ]


def tabular_expressions() -> list[pl.Expr]:
    """All row-local features, named as they appear in the feature spec and in explanations."""
    amount, income = pl.col("loan_amount"), pl.col("annual_income")
    submitted = pl.col("submitted_at")
    revenue = pl.col("business_annual_revenue")
    employees = pl.col("business_employees").cast(pl.Float64)
    ua = pl.col("user_agent")
    return [
        pl.col("product"),
        amount.alias("loan_amount"),
        pl.col("loan_term_months"),
        pl.col("loan_purpose"),
        pl.col("loan_currency"),
        _safe_ratio(amount, income).alias("loan_to_income"),
        _safe_ratio(amount * 12.0, pl.col("loan_term_months") * income).alias("payment_to_income"),
        income.alias("annual_income"),
        ((submitted.dt.date() - pl.col("date_of_birth")).dt.total_days() * (1 / 365.25)).alias(
            "applicant_age_years"
        ),
        pl.col("years_at_address"),
        pl.col("years_employed"),
        pl.col("employment_status"),
        pl.col("housing"),
        pl.col("employer").is_null().cast(pl.Int8).alias("employer_missing"),
        submitted.dt.hour().alias("submitted_hour_utc"),
        submitted.dt.weekday().alias("submitted_weekday"),
        *email_features(),
        *phone_features(),
        national_id_valid().alias("national_id_valid"),
        pl.col("address_country"),
        pl.col("address_postal_code").is_null().cast(pl.Int8).alias("postal_code_missing"),
        pl.col("channel"),
        pl.col("ip_address").is_null().cast(pl.Int8).alias("ip_missing"),
        pl.col("ip_address").str.contains(":").cast(pl.Int8).alias("ip_is_ipv6"),
        pl.col("device_id").is_null().cast(pl.Int8).alias("device_id_missing"),
        ua.str.contains(AUTOMATION_UA).cast(pl.Int8).alias("ua_is_automation"),
        ua.str.contains(MOBILE_UA).cast(pl.Int8).alias("ua_is_mobile"),
        pl.col("session_duration_seconds"),
        pl.col("bank_account_age_days"),
        pl.col("bank_account_number").is_null().cast(pl.Int8).alias("bank_account_missing"),
        pl.col("business_industry_code").str.slice(0, 2).alias("business_sector"),
        pl.col("business_years_trading"),
        revenue.alias("business_annual_revenue"),
        employees.alias("business_employees"),
        _safe_ratio(revenue, employees).alias("business_revenue_per_employee"),
        _safe_ratio(amount, revenue).alias("loan_to_revenue"),
        pl.when(pl.col("product") == "SMALL_BUSINESS")
        .then(pl.col("business_registration_number").is_null())
        .cast(pl.Int8)
        .alias("business_registration_missing"),
        *text_features("text_loan_purpose", "purpose"),
        *text_features("text_business_description", "business"),
        *text_features("text_employment_description", "employment"),
    ]
