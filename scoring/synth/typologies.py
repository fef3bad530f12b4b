"""Who is fraudulent in the synthetic data, and who shares what. The generator first draws a population
of honest applicants as latent arrays (codes and numbers, one array per attribute); this module then
builds in the legitimate sharing that makes fraud hard to see (households, shared computers), turns
about 2% of rows into one of six fraud typologies by rewriting the attributes the way each typology
shows in real applications, and draws the observed label with noise. Ring texts are edited after
rendering, since they are near-copies of one another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from features.schema import CHANNELS, EMPLOYMENT_STATUSES, HOUSING, LOAN_PURPOSES

Latent = dict[str, npt.NDArray[Any]]

FRAUD_TYPES: Final = (
    "synthetic_identity",
    "identity_theft",
    "first_party_bust_out",
    "ring",
    "shell_business",
    "income_inflation",
)
SYNTHETIC, THEFT, BUST_OUT, RING, SHELL, INFLATION = range(6)
FRAUD_RATE: Final = 0.021
# Share of the fraud in each typology, in FRAUD_TYPES order.
FRAUD_MIX: Final = (0.25, 0.25, 0.15, 0.11, 0.09, 0.15)
# Share of each typology that is never found out (labelled 0): bust-outs are often written off as
# credit losses; the rest mostly surfaces through victims' disputes and collections.
MISSED: Final = (0.12, 0.08, 0.25, 0.12, 0.12, 0.12)
LEGIT_FLAGGED: Final = 0.0012

DAY_US: Final = 86_400_000_000
HOUR_US: Final = 3_600_000_000
# Amounts and incomes in CNY are this many times the USD figures of the same profile.
CNY_SCALE: Final = 2.0

EMPLOYED, SELF_EMPLOYED, UNEMPLOYED, RETIRED, STUDENT = (
    EMPLOYMENT_STATUSES.index(s) for s in ("EMPLOYED", "SELF_EMPLOYED", "UNEMPLOYED", "RETIRED", "STUDENT")
)
OWN, MORTGAGE, RENT, FAMILY, OTHER_HOUSING = (HOUSING.index(h) for h in HOUSING)
WEB, MOBILE_APP, BRANCH, BROKER, PHONE = (
    CHANNELS.index(c) for c in ("WEB", "MOBILE_APP", "BRANCH", "BROKER", "PHONE")
)
DEBT, OTHER_PURPOSE, WORKING_CAPITAL = (
    LOAN_PURPOSES.index(p) for p in ("DEBT_CONSOLIDATION", "OTHER", "WORKING_CAPITAL")
)
# Email local-part styles.
E_NAME, E_NAME_DIGITS, E_RANDOM, E_DIGIT_HEAVY, E_NUMERIC, E_HANDLE, E_OTHER_NAME = range(7)
# User-agent families (blocks of the user-agent templates).
UA_DESKTOP, UA_MOBILE_US, UA_MOBILE_CN, UA_IOS_APP, UA_ANDROID_APP, UA_BROKER = range(6)
UA_AUTOMATION, UA_LINUX = 6, 7
# Free-text length styles.
TEXT_SHORT, TEXT_CORE, TEXT_LONG = range(3)

ADDRESS_KEYS: Final = ("city", "district", "street", "street_no", "suffix", "apt", "postal", "off")
DEVICE_KEYS: Final = ("dev_hi", "dev_lo", "dev_fmt", "ua", "channel")
PHONE_KEYS: Final = ("phone_cc", "phone")


@dataclass(frozen=True, slots=True)
class Span:
    """The submission window in microseconds since the epoch, end exclusive."""

    start_us: int
    end_us: int


def set_clock(
    ts: npt.NDArray[np.int64], offset_h: npt.NDArray[Any], seconds: npt.NDArray[Any]
) -> npt.NDArray[np.int64]:
    """Moves each timestamp to `seconds` after local midnight of its own local day."""
    shift = offset_h.astype(np.int64) * HOUR_US
    midnight = ts - (ts + shift) % DAY_US
    return midnight + seconds.astype(np.int64) * 1_000_000


def phone_numbers(
    cc: npt.NDArray[Any], rng: np.random.Generator, area: npt.NDArray[Any] | None = None
) -> npt.NDArray[np.int64]:
    """National numbers for country calling codes: a Chinese mobile for +86, a North American number
    (in `area` when given) for +1, eight to ten digits elsewhere."""
    n = len(cc)
    mobile = 10**10 + rng.choice([3, 5, 7, 8, 9], n) * 10**9 + rng.integers(0, 10**9, n)
    area = rng.integers(201, 990, n) if area is None else area
    nanp = area * 10**7 + rng.integers(200, 1000, n) * 10**4 + rng.integers(0, 10**4, n)
    other = rng.integers(10**7, 10**10, n)
    numbers: npt.NDArray[np.int64] = np.select([cc == 86, cc == 1], [mobile, nanp], other).astype(np.int64)
    return numbers


def clamp(ts: npt.NDArray[np.int64], span: Span) -> npt.NDArray[np.int64]:
    """Moves timestamps outside the window in by whole days, keeping their time of day."""
    early = -(-(span.start_us - ts) // DAY_US)
    late = (ts - span.end_us) // DAY_US + 1
    ts = np.where(early > 0, ts + early * DAY_US, ts)
    ts = np.where(late > 0, ts - late * DAY_US, ts)
    return np.clip(ts, span.start_us, span.end_us - 1)


def _copy(pop: Latent, keys: tuple[str, ...], dst: npt.NDArray[Any], src: npt.NDArray[Any]) -> None:
    for key in keys:
        pop[key][dst] = pop[key][src]


def _near(rng: np.random.Generator, ts: npt.NDArray[np.int64], days: float) -> npt.NDArray[np.int64]:
    """Timestamps a few days either side of `ts` (exponential gap)."""
    gap = rng.exponential(days, len(ts)) * rng.choice([-1.0, 1.0], len(ts))
    moved: npt.NDArray[np.int64] = ts + (gap * DAY_US).astype(np.int64)
    return moved


def share_legitimately(pop: Latent, rng: np.random.Generator, span: Span) -> None:
    """Households share an address (often a surname, sometimes a computer or a phone) and apply close
    together; colleagues and library users share computers. All of it is honest, and it is why a
    shared device or address alone is weak evidence of a ring."""
    country = pop["country"]
    for c in (0, 1):
        rows = np.flatnonzero(country == c)
        if len(rows) < 2:
            continue
        joiners = rows[rng.random(len(rows)) < 0.07]
        hosts = rows[rng.integers(0, len(rows), len(joiners))]
        keep = joiners != hosts
        joiners, hosts = joiners[keep], hosts[keep]
        _copy(pop, (*ADDRESS_KEYS, "housing"), joiners, hosts)
        spouse = rng.random(len(joiners)) < 0.45
        _copy(pop, ("last",), joiners[spouse], hosts[spouse])
        both_online = (pop["channel"][joiners] <= MOBILE_APP) & (pop["channel"][hosts] <= MOBILE_APP)
        computer = both_online & (rng.random(len(joiners)) < 0.25)
        _copy(pop, DEVICE_KEYS, joiners[computer], hosts[computer])
        landline = rng.random(len(joiners)) < 0.08
        _copy(pop, PHONE_KEYS, joiners[landline], hosts[landline])
        close = rng.random(len(joiners)) < 0.35
        pop["ts"][joiners[close]] = clamp(_near(rng, pop["ts"][hosts[close]], 3.0), span)
    online = np.flatnonzero(pop["channel"] <= MOBILE_APP)
    if len(online) > 1:
        users = online[rng.random(len(online)) < 0.02]
        owners = online[rng.integers(0, len(online), len(users))]
        _copy(pop, DEVICE_KEYS, users, owners)
        soon = rng.random(len(users)) < 0.5
        pop["ts"][users[soon]] = clamp(_near(rng, pop["ts"][owners[soon]], 2.0), span)


def _round(x: npt.NDArray[np.float64], step: float) -> npt.NDArray[np.float64]:
    return np.maximum(np.round(x / step) * step, step)


def _cap_amount(pop: Latent, rows: npt.NDArray[np.int64], amount: npt.NDArray[Any]) -> None:
    scale = np.where(pop["country"][rows] == 1, CNY_SCALE, 1.0)
    top = np.where(pop["product"][rows] == 1, 2_000_000.0, 100_000.0) * scale
    pop["amount"][rows] = _round(np.clip(amount, 1000 * scale, top), 500.0)


def _ring_sizes(rng: np.random.Generator, total: int) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(min(15, 3 + rng.geometric(0.22) - 1)))
    while sizes and sum(sizes) > total:
        excess = sum(sizes) - total
        sizes[-1] -= excess
        if sizes[-1] < 3:
            sizes.pop()
    return sizes


def inject(pop: Latent, rng: np.random.Generator, span: Span) -> None:
    """Turns about FRAUD_RATE of the rows into fraud: sets `pop["fraud"]` (the index in FRAUD_TYPES,
    -1 for honest rows) and `pop["ring"]` (the ring's number, -1 outside rings) and rewrites the rows."""
    n = len(pop["ts"])
    pop["fraud"] = np.full(n, -1, dtype=np.int8)
    pop["ring"] = np.full(n, -1, dtype=np.int32)
    counts = rng.multinomial(rng.binomial(n, FRAUD_RATE), FRAUD_MIX)
    order = rng.permutation(n)
    taken = np.zeros(n, dtype=bool)

    def take(kind: int, k: int, where: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        chosen = order[where[order] & ~taken[order]][:k]
        taken[chosen] = True
        pop["fraud"][chosen] = kind
        return chosen

    rings: list[npt.NDArray[np.int64]] = []
    for kind in (SHELL, RING, SYNTHETIC, THEFT, BUST_OUT, INFLATION):
        if kind == SHELL:
            rows = take(kind, int(counts[kind]), pop["product"] == 1)
            _shell(pop, rng, rows)
        elif kind == RING:
            for size in _ring_sizes(rng, int(counts[kind])):
                c = int(rng.random() < 0.2)
                group = take(kind, size, (pop["country"] == c) & (pop["product"] == 0))
                if len(group) >= 3:
                    pop["ring"][group] = len(rings)
                    rings.append(group)
                else:
                    pop["fraud"][group] = -1
                    taken[group] = False
        else:
            rewrite = {SYNTHETIC: _synthetic, THEFT: _theft, BUST_OUT: _bust_out, INFLATION: _inflated}
            rewrite[kind](pop, rng, take(kind, int(counts[kind]), np.ones(n, dtype=bool)))
    for group in rings:
        _ring(pop, rng, group, span)


def _synthetic(pop: Latent, rng: np.random.Generator, rows: npt.NDArray[np.int64]) -> None:
    """A made-up person: adult age but a thin, new footprint; many look clean."""
    # Seasoned identities were nursed for years before cashing out: nothing in the row gives them
    # away but a name-based email that may not quite match.
    seasoned = rng.random(len(rows)) < 0.15
    pop["email_style"][rows[seasoned]] = E_NAME_DIGITS
    rows = rows[~seasoned]
    k = len(rows)
    pop["age_days"][rows] = ((21 + rng.gamma(2.0, 5.0, k)) * 365.25).astype(np.int32)
    new_bank = rng.random(k) < 0.45
    pop["bank_age"][rows] = np.where(
        new_bank, 3 + np.minimum(rng.exponential(150, k), 360), np.minimum(pop["bank_age"][rows], 2500)
    )
    pop["yrs_addr"][rows] = np.where(
        rng.random(k) < 0.45, np.round(rng.uniform(0, 1.5, k) * 2) / 2, pop["yrs_addr"][rows]
    )
    style = rng.choice([E_RANDOM, E_DIGIT_HEAVY, E_NAME_DIGITS, E_NAME], k, p=[0.22, 0.18, 0.35, 0.25])
    pop["email_style"][rows] = style
    pop["id_bad"][rows] = rng.random(k) < 0.15
    pop["id_shift"][rows] = np.where(rng.random(k) < 0.06, rng.integers(200, 3000, k), 0)
    emp = rng.choice([EMPLOYED, SELF_EMPLOYED, STUDENT], k, p=[0.7, 0.25, 0.05])
    pop["emp"][rows] = emp
    pop["yrs_emp"][rows] = np.where(emp == STUDENT, np.nan, np.round(rng.uniform(0.5, 6, k)))
    pop["employer_kind"][rows] = np.where(emp == EMPLOYED, 1, -1)
    scale = np.where(pop["country"][rows] == 1, CNY_SCALE, 1.0)
    pop["income"][rows] = np.round(rng.lognormal(np.log(58_000), 0.4, k) * scale, -3)
    pop["housing"][rows] = rng.choice([RENT, OTHER_HOUSING, FAMILY, OWN], k, p=[0.6, 0.1, 0.15, 0.15])
    pop["bank"][rows] = np.where(rng.random(k) < 0.35, pop["neobank"][rows], pop["bank"][rows])
    pop["session"][rows] *= np.where(rng.random(k) < 0.35, rng.uniform(0.3, 0.7, k), 1.0)
    pop["text_style"][rows] = rng.choice([TEXT_SHORT, TEXT_CORE, TEXT_LONG], k, p=[0.35, 0.45, 0.2])
    _cap_amount(pop, rows, pop["income"][rows] * rng.lognormal(np.log(0.28), 0.45, k))


def _theft(pop: Latent, rng: np.random.Generator, rows: npt.NDArray[np.int64]) -> None:
    """Someone else's established identity, with the fraudster's contact details and device."""
    k = len(rows)
    age = 30 + rng.gamma(3.0, 6.0, k)
    pop["age_days"][rows] = (np.minimum(age, 85) * 365.25).astype(np.int32)
    pop["yrs_addr"][rows] = np.maximum(pop["yrs_addr"][rows], np.round(rng.uniform(3, 15, k)))
    mule = rng.random(k) < 0.35
    pop["bank_age"][rows] = np.where(mule, rng.uniform(1, 60, k), rng.uniform(1500, 7000, k))
    pop["email_style"][rows] = rng.choice(
        [E_OTHER_NAME, E_RANDOM, E_DIGIT_HEAVY, E_NAME, E_NAME_DIGITS], k, p=[0.3, 0.15, 0.1, 0.2, 0.25]
    )
    pop["email_other"][rows] = pop["first"][rng.integers(0, len(pop["first"]), k)]
    foreign = rng.random(k) < 0.28
    us = pop["country"][rows] == 0
    pop["phone_cc"][rows] = np.where(
        foreign,
        np.where(us, rng.choice([86, 44, 234, 63, 52], k), rng.choice([1, 852, 60, 66], k)),
        pop["phone_cc"][rows],
    )
    pop["phone"][rows] = np.where(foreign, phone_numbers(pop["phone_cc"][rows], rng), pop["phone"][rows])
    night = rng.random(k) < 0.4
    secs = rng.integers(0, 5 * 3600, k)
    pop["ts"][rows] = np.where(night, set_clock(pop["ts"][rows], pop["off"][rows], secs), pop["ts"][rows])
    pop["session"][rows] = np.where(
        rng.random(k) < 0.6, rng.lognormal(np.log(150), 0.5, k), pop["session"][rows]
    )
    pop["channel"][rows] = np.where(rng.random(k) < 0.65, WEB, MOBILE_APP)
    pop["ua"][rows] = np.where(
        pop["channel"][rows] == WEB,
        rng.choice([UA_DESKTOP, UA_AUTOMATION, UA_LINUX], k, p=[0.75, 0.13, 0.12]),
        UA_ANDROID_APP,
    )
    # The fraudster's own device and connection, never a branch terminal or a broker's system.
    pop["dev_fmt"][rows] = np.where(pop["channel"][rows] == WEB, 0, 2)
    pop["dev_hi"][rows] = rng.integers(0, 2**64, k, dtype=np.uint64)
    pop["dev_lo"][rows] = rng.integers(0, 2**64, k, dtype=np.uint64)
    pop["ip4"][rows] ^= rng.integers(1, 2**24, k).astype(np.uint32)
    pop["broker"][rows] = -1
    pop["ua_null"][rows] = False
    pop["datacenter"][rows] = rng.random(k) < 0.3
    pop["urgent"][rows] |= rng.random(k) < 0.3
    boost = np.where(rng.random(k) < 0.75, rng.uniform(1.8, 4.0, k), 1.0)
    _cap_amount(pop, rows, pop["amount"][rows] * boost)


def _bust_out(pop: Latent, rng: np.random.Generator, rows: npt.NDArray[np.int64]) -> None:
    """The real applicant borrowing big with no plan to repay; otherwise an ordinary good profile."""
    k = len(rows)
    consumer = pop["product"][rows] == 0
    debt = rng.random(k) < 0.6
    pop["purpose"][rows] = np.where(debt, np.where(consumer, DEBT, WORKING_CAPITAL), pop["purpose"][rows])
    pop["term"][rows] = np.where(
        consumer & (rng.random(k) < 0.6), rng.choice([60, 72, 84], k), pop["term"][rows]
    )
    base = np.where(consumer, pop["income"][rows], pop["revenue"][rows] * 0.35)
    _cap_amount(pop, rows, base * rng.uniform(0.35, 1.0, k))
    pop["bank_age"][rows] = np.maximum(pop["bank_age"][rows], rng.uniform(700, 3000, k))


def _inflated(pop: Latent, rng: np.random.Generator, rows: npt.NDArray[np.int64]) -> None:
    """Declared income far above what the job and age support; the loan is sized to the lie."""
    k = len(rows)
    scale = np.where(pop["country"][rows] == 1, CNY_SCALE, 1.0)
    student = rng.random(k) < 0.3
    pop["emp"][rows] = np.where(student, rng.choice([STUDENT, UNEMPLOYED], k), pop["emp"][rows])
    pop["age_days"][rows] = np.where(
        student, (rng.uniform(19, 25, k) * 365.25).astype(np.int32), pop["age_days"][rows]
    )
    pop["yrs_emp"][rows] = np.where(student, np.nan, pop["yrs_emp"][rows])
    pop["employer_kind"][rows] = np.where(student, -1, pop["employer_kind"][rows])
    factor = np.where(rng.random(k) < 0.2, rng.uniform(1.6, 2.5, k), rng.uniform(2.5, 6.0, k))
    income = np.where(student, rng.uniform(120_000, 300_000, k) * scale, pop["income"][rows] * factor)
    pop["income"][rows] = np.round(income, -3)
    _cap_amount(pop, rows, pop["income"][rows] * rng.lognormal(np.log(0.3), 0.4, k))


def _shell(pop: Latent, rng: np.random.Generator, rows: npt.NDArray[np.int64]) -> None:
    """A company that exists on paper: young, odd revenue per head, a description that does not
    match its industry code, money going to a new account."""
    k = len(rows)
    scale = np.where(pop["country"][rows] == 1, CNY_SCALE, 1.0)
    pop["yrs_trading"][rows] = np.where(
        rng.random(k) < 0.75, np.round(rng.uniform(0.1, 1.5, k), 1), pop["yrs_trading"][rows]
    )
    odd = rng.random(k)
    pop["employees"][rows] = np.where(
        odd < 0.5, rng.integers(0, 3, k), np.where(odd < 0.7, rng.integers(20, 80, k), pop["employees"][rows])
    )
    pop["revenue"][rows] = np.where(
        odd < 0.5,
        rng.uniform(600_000, 3_000_000, k) * scale,
        np.where(odd < 0.7, rng.uniform(20_000, 60_000, k) * scale, pop["revenue"][rows]),
    )
    pop["revenue"][rows] = np.round(pop["revenue"][rows], -3)
    pop["desc_kind"][rows] = rng.choice([0, 1, 2], k, p=[0.2, 0.55, 0.25])
    pop["shell_name"][rows] = np.where(rng.random(k) < 0.4, rng.integers(0, 5, k), -1)
    pop["bank_age"][rows] = np.where(rng.random(k) < 0.45, rng.uniform(5, 200, k), pop["bank_age"][rows])
    pop["emp"][rows] = SELF_EMPLOYED
    pop["employer_kind"][rows] = 2  # the applicant's own (shell) company
    big = rng.random(k) < 0.6
    _cap_amount(
        pop, rows, np.where(big, pop["revenue"][rows] * rng.uniform(0.15, 0.6, k), pop["amount"][rows])
    )


def _ring(pop: Latent, rng: np.random.Generator, group: npt.NDArray[np.int64], span: Span) -> None:
    """One organised group: members spread over days or weeks, sharing devices, phones and
    addresses under different names; each row on its own looks ordinary."""
    k = len(group)
    gaps = rng.exponential(1.5 * DAY_US, k).astype(np.int64)
    gaps[0] = 0
    offsets = np.cumsum(gaps)
    latest = max(span.start_us, span.end_us - int(offsets[-1]) - DAY_US)
    begin = int(rng.integers(span.start_us, latest + 1))
    secs = rng.integers(9 * 3600, 22 * 3600, k)
    addresses = group[: 1 + int(rng.random() < 0.5)]
    at_drop = rng.random(k) < 0.7
    _copy(pop, ADDRESS_KEYS, group[at_drop], rng.choice(addresses, int(at_drop.sum())))
    pop["ts"][group] = clamp(set_clock(begin + offsets, pop["off"][group], secs), span)
    devices = group[: rng.integers(1, 4)]
    on_device = rng.random(k) < 0.8
    _copy(pop, DEVICE_KEYS, group[on_device], rng.choice(devices, int(on_device.sum())))
    phones = group[: rng.integers(1, 3)]
    on_phone = rng.random(k) < 0.5
    _copy(pop, PHONE_KEYS, group[on_phone], rng.choice(phones, int(on_phone.sum())))
    same_domain = rng.random(k) < 0.6
    pop["email_dom"][group[same_domain]] = pop["email_dom"][group[0]]
    pop["email_style"][group[same_domain]] = E_NAME_DIGITS
    pop["lang"][group] = pop["lang"][group[0]]
    pop["purpose"][group] = np.where(rng.random(k) < 0.85, pop["purpose"][group[0]], pop["purpose"][group])
    pop["text_style"][group] = max(TEXT_CORE, int(pop["text_style"][group[0]]))
    # Members are filled in from one template profile: similar job, income and amount.
    same = group[rng.random(k) < 0.7]
    _copy(pop, ("emp", "employer_kind", "housing", "yrs_emp"), same, np.full(len(same), group[0]))
    pop["income"][same] = np.round(pop["income"][group[0]] * rng.uniform(0.85, 1.2, len(same)), -3)
    ratio = pop["amount"][group[0]] / max(float(pop["income"][group[0]]), 20_000.0)
    income = np.maximum(pop["income"][group], 20_000)
    _cap_amount(pop, group, income * ratio * rng.uniform(0.9, 1.1, k))
    pop["bank_age"][group] = np.where(rng.random(k) < 0.12, rng.uniform(10, 300, k), pop["bank_age"][group])


def observe(fraud: npt.NDArray[np.int8], rng: np.random.Generator) -> npt.NDArray[np.int8]:
    """The label a lender would hold: some fraud never found, a few good customers flagged."""
    miss = np.asarray(MISSED)[np.maximum(fraud, 0)]
    caught = (fraud >= 0) & (rng.random(len(fraud)) >= miss)
    flagged = (fraud < 0) & (rng.random(len(fraud)) < LEGIT_FLAGGED)
    return (caught | flagged).astype(np.int8)


_SWAPS_EN: Final = (
    (r"\bneed\b", "require"),
    (r"\bmoney\b", "funds"),
    (r"\bwant to\b", "would like to"),
    (r"\bpay\b", "cover"),
    (r"\bI\b", "i"),
    (r"\bmy\b", "our"),
    (r"\bthe\b", "teh"),
)
_SWAPS_ZH: Final = (("，", ","), ("。", ""), ("我", "本人"), ("需要", "急需"), ("一笔", ""))
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+|\d{4,}")  # amounts, not "25%" or "3 years"


def _perturb(text: str, rng: np.random.Generator) -> str:
    """A near-copy of a ring's shared text: one or two small edits, a different amount."""
    original, chinese = text, any("\u4e00" <= ch <= "\u9fff" for ch in text)
    swaps = _SWAPS_ZH if chinese else _SWAPS_EN
    for _ in range(int(rng.integers(1, 3))):
        old, new = swaps[int(rng.integers(0, len(swaps)))]
        text = text.replace(old, new, 1) if chinese else re.sub(old, new, text, count=1)
    if text == original:
        text = text[:-1] if text[-1:] in ".!。！" else text + ("。" if chinese else ".")
    if _NUMBER.search(text) and rng.random() < 0.7:
        amount = int(rng.integers(20, 200)) * 500
        text = _NUMBER.sub(f"{amount:,}", text, count=1)
    if rng.random() < 0.3:
        text = text.rstrip(".!。！") if rng.random() < 0.5 else text + (" 谢谢" if chinese else " Thanks")
    return text


def edit_ring_texts(texts: pl.Series, ring: npt.NDArray[np.int32], rng: np.random.Generator) -> pl.Series:
    """Gives every member of a ring a near-copy of the first member's text."""
    values = texts.to_list()
    rows = np.flatnonzero(ring >= 0)
    bases: dict[int, str | None] = {}
    for i in rows[np.argsort(ring[rows], kind="stable")]:
        group = int(ring[i])
        if group not in bases:
            bases[group] = values[i]
            continue
        base = bases[group]
        if base is not None and values[i] is not None:
            values[i] = _perturb(base, rng)
    return pl.Series(texts.name, values, dtype=pl.String)
