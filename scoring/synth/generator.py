"""The synthetic loan-application generator: `generate(rows, seed=...)` returns a polars frame in the
canonical schema (features.schema) plus the observed label `is_fraud` and the true `fraud_type`. Rows
are drawn in chunks, each from its own child of `numpy.random.default_rng(seed)`: first a population of
honest applicants as latent arrays (codes and numbers, see `_population`), then the legitimate sharing
and the fraud typologies (scoring.synth.typologies), then the strings are rendered with polars (names,
emails, phones, IDs, devices, free text). Everything is vectorised, so a million rows take seconds.
The data is synthetic, for demos, tests and benchmarks; docs/synthetic-data.md describes it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from features.schema import CANONICAL_SCHEMA
from scoring.synth import render
from scoring.synth import typologies as ty
from scoring.synth import words as w
from scoring.synth.typologies import CNY_SCALE, DAY_US, Latent, Span

CHUNK_ROWS: Final = 100_000

# Relative volume by local hour; weekends start later and stay flatter.
# fmt: off
_WEEKDAY_HOURS: Final = np.array([0.6, 0.35, 0.25, 0.2, 0.25, 0.5, 1.2, 2.4, 3.8, 5.0, 5.6, 5.8,
                                  5.7, 5.5, 5.4, 5.3, 5.1, 4.9, 5.0, 5.6, 5.9, 5.2, 3.6, 1.7])
_WEEKEND_HOURS: Final = np.array([1.0, 0.6, 0.4, 0.3, 0.3, 0.35, 0.6, 1.1, 2.0, 3.4, 4.4, 4.9,
                                  5.0, 5.0, 4.8, 4.6, 4.5, 4.4, 4.5, 4.8, 4.9, 4.4, 3.2, 1.8])
# fmt: on
# Employment mix (EMPLOYED, SELF_EMPLOYED, UNEMPLOYED, RETIRED, STUDENT) by age band.
_AGE_BANDS: Final = np.array([23, 30, 60, 67])
_EMPLOYMENT_BY_AGE: Final = np.array(
    [
        [0.45, 0.05, 0.10, 0.00, 0.40],
        [0.72, 0.08, 0.11, 0.00, 0.09],
        [0.76, 0.13, 0.08, 0.01, 0.02],
        [0.45, 0.10, 0.05, 0.40, 0.00],
        [0.08, 0.05, 0.02, 0.85, 0.00],
    ]
)
_EMPLOYMENT_BUSINESS: Final = np.array([0.25, 0.72, 0.0, 0.03, 0.0])
_INCOME_MEDIAN: Final = np.array([58_000.0, 62_000.0, 14_000.0, 36_000.0, 11_000.0])
_INCOME_SIGMA: Final = np.array([0.5, 0.8, 0.7, 0.55, 0.8])
# Housing (OWN, MORTGAGE, RENT, FAMILY, OTHER) by age band (<25, <35, <60, older).
_HOUSING_BY_AGE: Final = np.array(
    [
        [0.02, 0.03, 0.50, 0.40, 0.05],
        [0.05, 0.25, 0.55, 0.10, 0.05],
        [0.12, 0.50, 0.32, 0.03, 0.03],
        [0.50, 0.30, 0.17, 0.01, 0.02],
    ]
)
_PURPOSE_CONSUMER: Final = np.array([0.34, 0.15, 0.15, 0.07, 0.06, 0.05, 0, 0, 0, 0, 0.18])
_PURPOSE_BUSINESS: Final = np.array([0.05, 0, 0, 0, 0, 0, 0.36, 0.22, 0.16, 0.15, 0.06])
# Median loan-to-income by purpose, for consumer loans.
_LOAN_TO_INCOME: Final = np.array([0.28, 0.25, 0.35, 0.10, 0.20, 0.15, 0.2, 0.2, 0.2, 0.2, 0.12])
_CONSUMER_TERMS: Final = np.array([12, 24, 36, 48, 60, 72, 84])
_CONSUMER_TERM_P: Final = np.array(
    [
        [0.35, 0.35, 0.20, 0.05, 0.05, 0.00, 0.00],
        [0.08, 0.20, 0.32, 0.15, 0.20, 0.03, 0.02],
        [0.02, 0.08, 0.25, 0.20, 0.35, 0.06, 0.04],
    ]
)
_BUSINESS_TERMS: Final = np.array([6, 12, 18, 24, 36, 48, 60, 84, 120])
_BUSINESS_TERM_P: Final = np.array([0.06, 0.18, 0.08, 0.2, 0.2, 0.08, 0.12, 0.05, 0.03])
# Channel mix (WEB, MOBILE_APP, BRANCH, BROKER, PHONE).
_CHANNEL_US: Final = np.array([0.50, 0.36, 0.06, 0.05, 0.03])
_CHANNEL_CN: Final = np.array([0.30, 0.62, 0.04, 0.02, 0.02])
_CHANNEL_BUSINESS: Final = np.array([0.45, 0.15, 0.15, 0.22, 0.03])
_SESSION_MEDIAN_S: Final = np.array([540.0, 420.0, 1500.0, 90.0, 900.0])


def _add_months(start: dt.datetime, months: int) -> dt.datetime:
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def _us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def generate(
    rows: int,
    *,
    seed: int,
    start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    months: int = 6,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Generates `rows` synthetic loan applications submitted over `months` months from `start`.

    The frame holds the canonical columns (features.schema.CANONICAL_SCHEMA, in order), then
    `is_fraud` (Int8, the observed label, with noise) and `fraud_type` (the true typology, "none" for
    legitimate rows), sorted by `submitted_at`. The same seed gives the same frame. `progress(done,
    total)` is called after each chunk of CHUNK_ROWS rows.
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0 (got {rows})")
    if months < 1:
        raise ValueError(f"months must be >= 1 (got {months})")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware, e.g. datetime(2026, 1, 1, tzinfo=UTC)")
    span = Span(_us(start), _us(_add_months(start, months)))
    rng = np.random.default_rng(seed)
    sizes = [min(CHUNK_ROWS, rows - i) for i in range(0, rows, CHUNK_ROWS)]
    world = _World.draw(rng)
    frames: list[pl.DataFrame] = []
    for size, child in zip(sizes, rng.spawn(len(sizes)), strict=True):
        frames.append(_chunk(size, child, span, world))
        if progress is not None:
            progress(sum(f.height for f in frames), rows)
    schema = pl.Schema({**CANONICAL_SCHEMA, "is_fraud": pl.Int8(), "fraud_type": pl.String()})
    if not frames:
        return pl.DataFrame(schema=schema)
    frame = pl.concat(frames).sort("submitted_at", maintain_order=True)
    width = max(8, len(str(rows)))
    ids = pl.concat_str(pl.lit("SYN-"), pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(width))
    return frame.with_columns(ids.alias("application_id")).select(list(schema))


def _chunk(n: int, rng: np.random.Generator, span: Span, world: _World) -> pl.DataFrame:
    pop = _population(n, rng, span, world)
    ty.share_legitimately(pop, rng, span)
    ty.inject(pop, rng, span)
    frame = render.frame(pop, rng)
    observed = ty.observe(pop["fraud"], rng)
    fraud_type = np.array(("none", *ty.FRAUD_TYPES))[pop["fraud"] + 1]
    return frame.with_columns(
        pl.Series("is_fraud", observed, dtype=pl.Int8),
        pl.Series("fraud_type", fraud_type, dtype=pl.String),
    )


def _categorical(rng: np.random.Generator, probs: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
    """One draw per row from per-row probability vectors (rows of `probs`)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    picks: npt.NDArray[np.int8] = (u > cum).sum(axis=1).astype(np.int8)
    return picks


def _timestamps(
    rng: np.random.Generator, offset_h: npt.NDArray[Any], branch: npt.NDArray[np.bool_], span: Span
) -> npt.NDArray[np.int64]:
    """Submission times with a weekly and daily rhythm in the applicant's local time; branches keep
    office hours. Volume grows a little over the window."""
    n = len(offset_h)
    day0 = span.start_us - span.start_us % DAY_US
    days = -(-(span.end_us - day0) // DAY_US)
    weekday = (dt.datetime.fromtimestamp(day0 / 1e6, dt.UTC).weekday() + np.arange(days)) % 7
    weight = np.where(weekday >= 5, 0.68, 1.0) * (1 + 0.12 * np.arange(days) / days)
    day = rng.choice(days, n, p=weight / weight.sum())
    weekend = weekday[day] >= 5
    hour = np.where(
        weekend,
        rng.choice(24, n, p=_WEEKEND_HOURS / _WEEKEND_HOURS.sum()),
        rng.choice(24, n, p=_WEEKDAY_HOURS / _WEEKDAY_HOURS.sum()),
    )
    hour = np.where(branch, rng.integers(9, 17, n), hour)
    noon = day0 + day.astype(np.int64) * DAY_US + DAY_US // 2
    secs = hour * 3600 + rng.integers(0, 3600, n)
    return ty.clamp(ty.set_clock(noon, offset_h, secs), span)


def _population(n: int, rng: np.random.Generator, span: Span, world: _World) -> Latent:
    """Honest applicants as latent arrays: one entry per attribute, one element per row."""
    cn = rng.random(n) < 0.2
    biz = rng.random(n) < 0.25
    scale = np.where(cn, CNY_SCALE, 1.0)
    pop: Latent = {"country": cn.astype(np.int8), "product": biz.astype(np.int8)}
    pop["lang"] = np.where(cn, rng.random(n) < 0.96, rng.random(n) < 0.015).astype(np.int8)
    pop.update(_places(rng, cn))
    pop["off"] = np.where(cn, 8, w.CITY_OFFSET[pop["city"]]).astype(np.int8)
    channel_p = np.where(biz[:, None], _CHANNEL_BUSINESS, np.where(cn[:, None], _CHANNEL_CN, _CHANNEL_US))
    age = np.where(biz, 22 + rng.gamma(3.0, 7.0, n), 18 + rng.gamma(2.0, 10.0, n))
    age = np.clip(age, 18.2, 92.0)
    old = age >= 65
    channel_p = np.where(old[:, None], channel_p * [0.7, 0.5, 3.0, 1.0, 3.0], channel_p)
    channel = _categorical(rng, channel_p)
    pop["channel"] = channel
    pop["ts"] = _timestamps(rng, pop["off"], channel == ty.BRANCH, span)
    pop["age_days"] = (age * 365.25 + rng.uniform(0, 300, n)).astype(np.int32)
    band = np.searchsorted(_AGE_BANDS, age, side="right")
    emp = _categorical(rng, np.where(biz[:, None], _EMPLOYMENT_BUSINESS, _EMPLOYMENT_BY_AGE[band]))
    pop["emp"] = emp
    age_factor = np.where(emp <= 1, np.exp(0.03 * (np.minimum(age, 50) - 35)), 1.0)
    income = _INCOME_MEDIAN[emp] * age_factor * np.exp(_INCOME_SIGMA[emp] * rng.standard_normal(n))
    income = np.where((emp == ty.UNEMPLOYED) & (rng.random(n) < 0.1), 0.0, income * scale)
    rounding = rng.choice([1000.0, 100.0, 1.0], n, p=[0.7, 0.2, 0.1])
    pop["income"] = np.round(income / rounding) * rounding
    working = emp <= ty.SELF_EMPLOYED
    tenure = np.minimum(rng.exponential(np.where(emp == 0, 5.0, 6.0)), age - 17.5)
    pop["yrs_emp"] = np.where(working, np.round(np.maximum(tenure, 0.0) * 2) / 2, np.nan)
    addr = rng.lognormal(np.log(1.5 + 0.15 * (age - 18)), 0.8)
    pop["yrs_addr"] = np.round(np.minimum(addr, age - 16) * 2) / 2
    house_band = np.searchsorted([25, 35, 60], age, side="right")
    pop["housing"] = _categorical(rng, _HOUSING_BY_AGE[house_band])
    pop.update(_people(rng, cn, pop["area"]))
    kind = pop["employer_kind"]
    own = np.where(biz, 2, np.where(rng.random(n) < 0.5, 1, -1))
    pop["employer_kind"] = np.select([emp == ty.EMPLOYED, emp == ty.SELF_EMPLOYED], [kind, own], -1).astype(
        np.int8
    )
    pop.update(_channel_details(rng, cn, channel, world))
    pop["session"] = np.clip(
        _SESSION_MEDIAN_S[channel] * np.where(biz, 1.4, 1.0) * rng.lognormal(0, 0.65, n), 5, 86_400
    ).round()
    # Honest thin files: people who just moved (new address, new account) and young adults who just
    # opened their first account look much like a synthetic identity.
    newcomer = rng.random(n) < 0.03
    new_account = newcomer | (rng.random(n) < np.where(age < 25, 0.15, 0.04))
    bank_years = np.minimum(rng.lognormal(np.log(6), 0.9, n), np.maximum(age - 16, 0.1))
    fresh = np.minimum(rng.exponential(120, n), 365)
    pop["bank_age"] = np.round(np.where(new_account, fresh, bank_years * 365.25))
    pop["yrs_addr"] = np.where(newcomer, np.round(rng.uniform(0, 1, n) * 2) / 2, pop["yrs_addr"])
    pop.update(_business(rng, cn, age, n))
    _loans(pop, rng, biz, scale)
    pop["text_style"] = rng.choice([0, 1, 2], n, p=[0.22, 0.43, 0.35]).astype(np.int8)
    pop["urgent"] = rng.random(n) < 0.06
    pop["datacenter"] = rng.random(n) < 0.01
    return pop


def _loans(pop: Latent, rng: np.random.Generator, biz: npt.NDArray[np.bool_], scale: Any) -> None:
    n = len(biz)
    purpose = _categorical(rng, np.where(biz[:, None], _PURPOSE_BUSINESS, _PURPOSE_CONSUMER))
    pop["purpose"] = purpose
    ratio = _LOAN_TO_INCOME[purpose] * rng.lognormal(0, 0.6, n)
    consumer = np.maximum(pop["income"], 20_000 * scale) * ratio
    business = np.maximum(pop["revenue"], 50_000 * scale) * 0.12 * rng.lognormal(0, 0.7, n)
    amount = np.where(biz, business, consumer)
    amount = np.clip(amount, np.where(biz, 5000, 1000) * scale, np.where(biz, 2e6, 1e5) * scale)
    step = np.where(biz | (rng.random(n) < 0.6), 1000.0, rng.choice([500.0, 100.0, 50.0], n))
    pop["amount"] = np.maximum(np.round(amount / step) * step, step)
    size = np.searchsorted([5000, 20_000], amount / scale)
    consumer_term = _CONSUMER_TERMS[_categorical(rng, _CONSUMER_TERM_P[size])]
    business_term = rng.choice(_BUSINESS_TERMS, n, p=_BUSINESS_TERM_P)
    pop["term"] = np.where(biz, business_term, consumer_term).astype(np.int16)


# --- latent identities, channels and businesses ----------------------------------------------


def _within(rng: np.random.Generator, ranges: list[tuple[int, int]], group: Any, skew: Any) -> Any:
    """An index inside the range of each row's group; skew > 1 favours the front (common names)."""
    table = np.array(ranges)
    start, size = table[group, 0], table[group, 1]
    return start + np.minimum((rng.random(len(start)) ** skew * size).astype(np.int64), size - 1)


class _World:
    """Broker systems (terminals 0-39) and branch terminals (40-199) per country: each is shared by
    many honest applications, across all chunks."""

    TERMINALS: Final = 200
    BROKERS: Final = 40

    def __init__(self, device: npt.NDArray[np.uint64], ip: npt.NDArray[np.uint32]) -> None:
        self.device, self.ip = device, ip

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _World:
        k = cls.TERMINALS
        device = rng.integers(0, 2**64, (2, k, 2), dtype=np.uint64)
        first = np.stack([rng.choice(w.ISP_US, k), rng.choice(w.ISP_CN, k)]).astype(np.uint32)
        ip = (first << 24) | rng.integers(0, 2**24, (2, k)).astype(np.uint32)
        return cls(device, ip.astype(np.uint32))


def _places(rng: np.random.Generator, cn: npt.NDArray[np.bool_]) -> Latent:
    n = len(cn)
    us_city = rng.choice(w.N_US_CITIES, n, p=w.US_CITY_P / w.US_CITY_P.sum())
    cn_city = rng.choice(len(w.CN_CITY_P), n, p=w.CN_CITY_P / w.CN_CITY_P.sum())
    district = _within(rng, w.DISTRICT_RANGES, cn_city, 1.0)
    us_street = rng.integers(0, len(w.US_STREETS), n)
    return {
        "city": np.where(cn, w.N_US_CITIES + cn_city, us_city),
        "district": np.where(cn, district, 0),
        "street": np.where(cn, len(w.US_STREETS) + rng.integers(0, len(w.CN_STREETS), n), us_street),
        "street_no": np.where(cn, rng.integers(1, 300, n), rng.lognormal(6.0, 1.2, n).astype(int) + 1),
        "suffix": rng.integers(0, len(w.US_STREET_SUFFIXES), n),
        "apt": np.where(
            cn,
            rng.integers(1, 30, n) * 10_000 + rng.integers(1, 29, n) * 100 + rng.integers(1, 5, n),
            np.where(rng.random(n) < 0.35, rng.integers(1, 40, n), 0),
        ),
        "postal": rng.integers(0, 100, n),
        "area": np.array([int(rng.choice(codes)) for codes in w.AREA_CODES])[us_city],
    }


def _people(rng: np.random.Generator, cn: npt.NDArray[np.bool_], area: npt.NDArray[np.int64]) -> Latent:
    n = len(cn)
    gender = rng.integers(0, 2, n)
    us = ~cn
    first = _within(rng, w.FIRST_RANGES, cn * 2 + gender, 1.3)
    last = np.where(cn, len(w.US_LAST), 0) + _within(
        rng, [(0, len(w.US_LAST)), (0, len(w.CN_SURNAMES))], cn.astype(int), np.where(cn, 1.6, 1.3)
    )
    # A few honest applicants keep a phone from abroad (students, new arrivals, cross-border workers).
    foreign = rng.random(n) < 0.012
    cc = np.where(foreign, np.where(cn, 852, rng.choice([86, 52, 44, 91], n)), np.where(cn, 86, 1))
    style_us = rng.choice(7, n, p=[0.42, 0.35, 0.02, 0.03, 0.0, 0.14, 0.04])
    style_cn = rng.choice(7, n, p=[0.20, 0.25, 0.03, 0.04, 0.30, 0.14, 0.04])
    domain_p = np.where(cn[:, None], w.FREEMAIL_CN, w.FREEMAIL_US)
    itin = us & (rng.random(n) < 0.02)
    region = np.where(
        rng.random(n) < 0.6, 0, rng.choice(w.DISTRICT_CODE, n)
    )  # 0 means: the district of the address, filled in at render time
    employed = rng.random(n)
    # Banks are indexed in words.ROUTING: US banks, US online banks, Chinese banks, Chinese online bank.
    cn_banks = len(w.ROUTING_US) + len(w.NEOBANK_US)
    bank = np.where(cn, cn_banks + rng.integers(0, len(w.BANK_CN), n), rng.integers(0, len(w.ROUTING_US), n))
    us_neobank = len(w.ROUTING_US) + rng.integers(0, len(w.NEOBANK_US), n)
    neobank = np.where(cn, cn_banks + len(w.BANK_CN), us_neobank)
    ssn_area = rng.integers(1, 899, n)
    ssn_area[ssn_area >= 666] += 1  # 666 is never issued
    return {
        "gender": gender.astype(np.int8),
        "first": first,
        "last": last,
        "email_style": np.where(cn, style_cn, style_us).astype(np.int8),
        "email_pat": rng.integers(0, 7, n).astype(np.int8),
        "email_dom": _categorical(rng, domain_p).astype(np.int16),
        "email_work": rng.random(n) < 0.25,
        "email_num": rng.integers(0, 10**10, n),
        "email_other": first.copy(),  # own first name, other surname: maiden or spouse's name
        "email_other_last": rng.permutation(last),
        "email_null": rng.random(n) < 0.01,
        "phone_cc": cc.astype(np.int16),
        "phone": ty.phone_numbers(cc, rng, area),
        "phone_null": rng.random(n) < 0.005,
        "id_a": np.where(cn, region, np.where(itin, rng.integers(900, 1000, n), ssn_area)),
        "id_b": np.where(
            cn,
            rng.integers(0, 500, n) * 2 + gender,
            np.where(itin, rng.integers(70, 89, n), rng.integers(1, 100, n)),
        ),
        "id_c": rng.integers(1, 10_000, n),
        "id_bad": rng.random(n) < 0.002,  # honest typos
        "id_shift": np.zeros(n, dtype=np.int32),
        "id_null": rng.random(n) < 0.015,
        "employer_kind": np.where(employed < 0.55, 0, 1).astype(np.int8),
        "employer": np.where(
            cn,
            len(w.US_EMPLOYERS) + rng.integers(0, len(w.CN_EMPLOYERS), n),
            rng.integers(0, len(w.US_EMPLOYERS), n),
        ),
        "bank": np.where(rng.random(n) < np.where(cn, 0.05, 0.12), neobank, bank),
        "neobank": neobank,
        "acct": np.where(cn, rng.integers(0, 10**17, n), rng.integers(10**9, 10**12, n)),
        "routing_tail": rng.integers(0, 10**9, n),
    }


def _channel_details(
    rng: np.random.Generator, cn: npt.NDArray[np.bool_], channel: npt.NDArray[np.int8], world: _World
) -> Latent:
    n = len(cn)
    web_kind = np.where(
        rng.random(n) < np.where(cn, 0.35, 0.58),
        ty.UA_DESKTOP,
        np.where(cn, ty.UA_MOBILE_CN, ty.UA_MOBILE_US),
    )
    web_kind = np.where(rng.random(n) < 0.01, ty.UA_LINUX, web_kind)
    web_kind = np.where(rng.random(n) < 0.002, ty.UA_AUTOMATION, web_kind)
    app_kind = np.where(rng.random(n) < np.where(cn, 0.25, 0.55), ty.UA_IOS_APP, ty.UA_ANDROID_APP)
    broker_kind = np.where(rng.random(n) < 0.5, ty.UA_BROKER, ty.UA_DESKTOP)
    ua = np.select(
        [channel == ty.WEB, channel == ty.MOBILE_APP, channel == ty.BROKER],
        [web_kind, app_kind, broker_kind],
        ty.UA_DESKTOP,
    )
    device = rng.integers(0, 2**64, (n, 2), dtype=np.uint64)
    ip4 = (
        np.where(cn, rng.choice(w.ISP_CN, n), rng.choice(w.ISP_US, n)).astype(np.uint32) << 24
    ) | rng.integers(0, 2**24, n).astype(np.uint32)
    branch, broker = channel == ty.BRANCH, channel == ty.BROKER
    terminal = np.where(
        broker, rng.integers(0, world.BROKERS, n), rng.integers(world.BROKERS, world.TERMINALS, n)
    )
    shared = branch | broker
    device[shared] = world.device[cn[shared].astype(int), terminal[shared]]
    ip4[shared] = world.ip[cn[shared].astype(int), terminal[shared]]
    mobile = (
        (ua == ty.UA_MOBILE_US) | (ua == ty.UA_MOBILE_CN) | (ua == ty.UA_IOS_APP) | (ua == ty.UA_ANDROID_APP)
    )
    return {
        "ua": ua.astype(np.int8),
        "ua_null": (channel == ty.PHONE) & (rng.random(n) < 0.3),
        "dev_hi": device[:, 0],
        "dev_lo": device[:, 1],
        "dev_fmt": np.select([ua == ty.UA_IOS_APP, ua == ty.UA_ANDROID_APP], [1, 2], 0).astype(np.int8),
        "ip4": ip4,
        "ip6": ~shared & (rng.random(n) < np.where(mobile, 0.18, 0.07)),
        "ip6_pre": np.where(cn, 3, 0) + rng.integers(0, 3, n),
        "ip6_hi": rng.integers(0, 2**64, n, dtype=np.uint64),
        "ip6_lo": rng.integers(0, 2**64, n, dtype=np.uint64),
        "broker": np.where(broker, terminal, -1),
    }


def _business(
    rng: np.random.Generator, cn: npt.NDArray[np.bool_], age: npt.NDArray[np.float64], n: int
) -> Latent:
    ind = rng.choice(len(w.IND), n, p=w.IND_P / w.IND_P.sum())
    employees = np.where(
        rng.random(n) < 0.2, 0, np.maximum(1, np.round(rng.lognormal(np.log(w.IND_EMPLOYEES[ind]), 0.8)))
    )
    scale = np.where(cn, CNY_SCALE, 1.0)
    revenue = w.IND_RPE[ind] * np.maximum(employees, 0.6) * rng.lognormal(0, 0.45, n) * scale
    trading = np.where(rng.random(n) < 0.08, rng.uniform(0.1, 1, n), rng.lognormal(np.log(5), 0.9, n))
    desc_kind = rng.choice(3, n, p=[0.93, 0.03, 0.04])
    return {
        "ind": ind,
        "employees": employees.astype(np.int64),
        "revenue": np.round(revenue, -3),
        "yrs_trading": np.round(np.clip(trading, 0.1, np.maximum(age - 18, 0.1)), 1),
        "code_len": rng.choice([6, 4, 3, 2], n, p=[0.91, 0.05, 0.02, 0.02]),
        "desc_kind": desc_kind.astype(np.int8),
        "desc_other": rng.integers(0, len(w.IND), n),
        "biz_style": rng.integers(0, 2, n),
        "biz_brand": rng.integers(0, 1000, n),
        "biz_suffix": rng.choice(5, n, p=[0.55, 0.25, 0.08, 0.06, 0.06]),
        "shell_name": np.full(n, -1),
        "reg": rng.integers(0, 10**9, n),
        "reg_prefix": rng.choice(
            [10, 11, 12, 20, 26, 27, 30, 33, 35, 45, 46, 47, 61, 80, 81, 82, 83, 84, 85], n
        ),
    }
