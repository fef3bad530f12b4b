"""Rendering for the synthetic loan generator: turns the latent arrays of a chunk (codes and numbers,
see scoring.synth.generator) into the canonical string columns of features.schema with polars: names,
emails, phone numbers, US SSN-like and Chinese resident IDs (with their ISO 7064 check digit), addresses,
company names and registration numbers, devices, IP addresses, user agents and the free text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from features.schema import CANONICAL_SCHEMA, CHANNELS, EMPLOYMENT_STATUSES, HOUSING, LOAN_PURPOSES
from scoring.synth import text as tx
from scoring.synth import typologies as ty
from scoring.synth import words as w
from scoring.synth.typologies import DAY_US, Latent


def _chars(rng: np.random.Generator, n: int, k: int, alphabet: bytes) -> pl.Series:
    """n random strings of k characters from `alphabet`."""
    codes = np.frombuffer(alphabet, dtype=np.uint8)[rng.integers(0, len(alphabet), (n, k))]
    return pl.Series(np.ascontiguousarray(codes).view(f"S{k}").ravel()).cast(pl.String)


def _hex(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> pl.Series:
    """32 lower-case hex digits of the 128-bit number (hi, lo)."""
    raw = np.stack([hi, lo], axis=1).astype(">u8").view(np.uint8).reshape(-1, 16)
    nibbles = np.empty((len(hi), 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 15
    codes = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return pl.Series(np.ascontiguousarray(codes).view("S32").ravel()).cast(pl.String)


def _s(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String)


def _grouped(x: pl.Expr) -> pl.Expr:
    """An integer with thousands separators: 1234567 -> 1,234,567."""
    millions, thousands, units = x // 1_000_000, x // 1000 % 1000, x % 1000

    def pad(e: pl.Expr) -> pl.Expr:
        return _s(e).str.zfill(3)

    return (
        pl.when(millions > 0)
        .then(pl.concat_str(_s(millions), pl.lit(","), pad(thousands), pl.lit(","), pad(units)))
        .when(thousands > 0)
        .then(pl.concat_str(_s(thousands), pl.lit(","), pad(units)))
        .otherwise(_s(units))
    )


def _cn_resident_ids(pop: Latent, dob_days: npt.NDArray[np.int64]) -> pl.Series:
    """18-character resident IDs: region, birth date, sequence (odd for men), ISO 7064 MOD 11-2."""
    region = np.where(pop["id_a"] == 0, w.DISTRICT_CODE[pop["district"]], pop["id_a"]).astype(np.int64)
    born = (dob_days + pop["id_shift"]).astype("datetime64[D]")
    year = born.astype("datetime64[Y]").astype(np.int64) + 1970
    month = born.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (born - born.astype("datetime64[M]")).astype(np.int64) + 1
    body = region * 10**11 + (year * 10_000 + month * 100 + day) * 1000 + pop["id_b"] % 1000
    digits = body[:, None] // 10 ** np.arange(16, -1, -1) % 10
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = (digits * weights).sum(axis=1) % 11
    check = np.where(pop["id_bad"], (check + 1 + pop["id_c"] % 10) % 11, check)
    marks = w.series("10X98765432")[check]
    ids: pl.Series = pl.Series(body).cast(pl.String).str.zfill(17) + marks
    return ids


def _latent(pop: Latent, *keys: str, **extra: Any) -> pl.DataFrame:
    return pl.DataFrame({**{k: pop[k] for k in keys}, **extra})


def frame(pop: Latent, rng: np.random.Generator) -> pl.DataFrame:
    """The canonical columns, in order, rendered from the latent arrays."""
    n = len(pop["ts"])
    dob_days = pop["ts"] // DAY_US - pop["age_days"]
    cols: dict[str, pl.Series] = {
        "application_id": pl.Series([""] * n, dtype=pl.String),
        "submitted_at": pl.Series(pop["ts"]).cast(pl.Datetime("us", "UTC")),
        "product": w.series(("CONSUMER", "SMALL_BUSINESS"))[pop["product"]],
        "first_name": w.FIRST[pop["first"]],
        "last_name": w.LAST[pop["last"]],
        "date_of_birth": pl.Series(dob_days.astype(np.int32)).cast(pl.Date),
    }
    cols.update(_contact(pop, rng, dob_days))
    cols.update(_address(pop))
    cols.update(_work(pop, rng))
    cols.update(_loan_and_channel(pop, rng))
    cols.update(_texts(pop, rng, cols))
    consumer = pop["product"] == 0
    for name in CANONICAL_SCHEMA:
        if name.startswith("business_"):
            cols[name] = _null_where(cols[name], consumer)
    return pl.DataFrame([cols[c].alias(c).cast(t) for c, t in CANONICAL_SCHEMA.items()])


def _contact(pop: Latent, rng: np.random.Generator, dob_days: npt.NDArray[np.int64]) -> dict[str, pl.Series]:
    n = len(pop["ts"])
    us = pop["country"] == 0
    other = pop["email_style"] == ty.E_OTHER_NAME
    pick = rng.integers(0, 3, n)
    bad = us & pop["id_bad"]
    area = np.where(bad, np.select([pick == 0, pick == 1], [0, 666], 900 + pop["id_c"] % 100), pop["id_a"])
    group = np.where(bad & (pick == 2), 1 + pop["id_c"] % 49, pop["id_b"])  # 9xx outside ITIN groups
    work_domain = len(w.FREEMAIL) + pop["employer"]
    domain = np.where(
        (pop["employer_kind"] == 0) & pop["email_work"] & (pop["email_style"] <= 1),
        work_domain,
        pop["email_dom"],
    )
    domain = np.where(pop["email_style"] == ty.E_NUMERIC, w.FREEMAIL.index("qq.com"), domain)
    phone = pop["phone"]
    f = _latent(
        pop,
        "email_style",
        "email_pat",
        "email_num",
        "id_c",
        "phone_cc",
        fa=w.FIRST_ASCII[np.where(other, pop["email_other"], pop["first"])],
        la=w.LAST_ASCII[np.where(other, pop["email_other_last"], pop["last"])],
        letters=_chars(rng, n, 10, b"abcdefghijklmnopqrstuvwxyz"),
        handle=w.HANDLES[pop["email_num"] % len(w.HANDLES)],
        domain=w.DOMAIN[domain],
        area=area,
        group=group,
        phone=phone,
        born=pl.Series(dob_days.astype(np.int32)).cast(pl.Date).dt.year(),
    )
    fa, la, num, style, pat = (
        pl.col("fa"),
        pl.col("la"),
        pl.col("email_num"),
        pl.col("email_style"),
        pl.col("email_pat"),
    )
    patterns = [
        pl.concat_str(fa, pl.lit("."), la),
        pl.concat_str(fa, la),
        pl.concat_str(fa.str.slice(0, 1), la),
        pl.concat_str(fa, pl.lit("_"), la),
        pl.concat_str(la, fa.str.slice(0, 1)),
        pl.concat_str(la, fa),
        pl.concat_str(la, pl.lit("."), fa),
    ]
    name_local = pl.coalesce([pl.when(pat == i).then(e) for i, e in enumerate(patterns)])
    digits = (
        pl.when(num % 10 < 2)
        .then(_s(pl.col("born")))
        .when(num % 10 < 5)
        .then(_s(pl.col("born") % 100).str.zfill(2))
        .otherwise(_s(num // 10 % 1000))
    )
    local = (
        pl.when(style == ty.E_NAME_DIGITS)
        .then(pl.concat_str(name_local, digits))
        .when(style == ty.E_RANDOM)
        .then(pl.col("letters").str.slice(0, 6 + num % 5))
        .when(style == ty.E_DIGIT_HEAVY)
        .then(
            pl.concat_str(pl.col("letters").str.slice(0, 1 + num % 3), _s(num // 7).str.slice(0, 5 + num % 4))
        )
        .when(style == ty.E_NUMERIC)
        .then(_s(num // 10 + 10_000).str.slice(0, 6 + num % 5))
        .when(style == ty.E_HANDLE)
        .then(pl.concat_str(pl.col("handle"), _s(num % 100)))
        .otherwise(name_local)
    )
    us_ssn = pl.concat_str(
        _s(pl.col("area")).str.zfill(3),
        pl.lit("-"),
        _s(pl.col("group")).str.zfill(2),
        pl.lit("-"),
        _s(pl.col("id_c")).str.zfill(4),
    )
    out = f.select(
        national_id=pl.when(pl.Series(us)).then(us_ssn).otherwise(pl.lit(_cn_resident_ids(pop, dob_days))),
        phone=pl.concat_str(pl.lit("+"), _s(pl.col("phone_cc")), _s(pl.col("phone"))),
        email=pl.concat_str(local, pl.lit("@"), pl.col("domain")),
    )
    return {
        "national_id": _null_where(out["national_id"], pop["id_null"]),
        "phone": _null_where(out["phone"], pop["phone_null"]),
        "email": _null_where(out["email"], pop["email_null"]),
    }


def _null_where(values: pl.Series, mask: npt.NDArray[np.bool_]) -> pl.Series:
    return pl.select(pl.when(pl.Series(mask)).then(None).otherwise(values)).to_series()


def _company(f: pl.DataFrame, surname: str, brand: str, word: str, suffix: str) -> pl.Series:
    """Company names: `Miller Plumbing & Heating LLC`, `Summit Bistro Inc.`, `深圳市鑫源网络科技有限公司`."""
    en_lead = pl.when(pl.col("style") == 0).then(pl.col(surname)).otherwise(pl.col(brand))
    en = pl.concat_str(en_lead, pl.lit(" "), pl.col(word), pl.lit(" "), pl.col(suffix))
    zh = pl.concat_str(pl.col("city"), pl.col("brand_zh"), pl.col(word), pl.lit("有限公司"))
    return f.select(pl.when(pl.col("cn")).then(zh).otherwise(en)).to_series()


def _address(pop: Latent) -> dict[str, pl.Series]:
    f = _latent(
        pop,
        "street_no",
        "apt",
        "postal",
        cn=pop["country"] == 1,
        district=w.DISTRICT[pop["district"]],
        street=w.STREET[pop["street"]],
        suffix=w.SUFFIX[pop["suffix"]],
        prefix=w.POSTAL[pop["city"]],
    )
    apt, no = pl.col("apt"), _s(pl.col("street_no"))
    us_line = pl.concat_str(no, pl.lit(" "), pl.col("street"), pl.lit(" "), pl.col("suffix"))
    us_line = pl.when(apt > 0).then(pl.concat_str(us_line, pl.lit(" Apt "), _s(apt))).otherwise(us_line)
    cn_line = pl.concat_str(pl.col("district"), pl.col("street"), no, pl.lit("号"))
    cn_room = pl.concat_str(cn_line, _s(apt // 10_000), pl.lit("栋"), _s(apt % 10_000), pl.lit("室"))
    cn_line = pl.when(apt > 0).then(cn_room).otherwise(cn_line)
    postal = _s(pl.col("postal")).str.zfill(2)
    out = f.select(
        address_line1=pl.when(pl.col("cn")).then(cn_line).otherwise(us_line),
        address_postal_code=pl.concat_str(
            pl.col("prefix"), pl.when(pl.col("cn")).then(pl.lit("0")).otherwise(pl.lit("")), postal
        ),
        address_country=pl.when(pl.col("cn")).then(pl.lit("CN")).otherwise(pl.lit("US")),
    )
    return {
        **out.to_dict(),
        "address_city": w.CITY[pop["city"]],
        "address_region": w.REGION[pop["city"]],
    }


def _work(pop: Latent, rng: np.random.Generator) -> dict[str, pl.Series]:
    cn = pop["country"] == 1
    n, n_ind, n_shell = len(cn), len(w.IND), len(w.SHELL_NAME_WORDS)
    shell_word = 2 * n_ind + cn * n_shell + pop["shell_name"]
    f = pl.DataFrame(
        {
            "cn": cn,
            "style": pop["biz_style"],
            "city": w.CITY[pop["city"]],
            "last": w.LAST[pop["last"]],
            "other_last": w.LAST[pop["email_other_last"]],
            "brand": w.BRAND_EN[pop["biz_brand"] % len(w.BRANDS_EN)],
            "brand_zh": w.BRAND_ZH[pop["biz_brand"] % len(w.BRANDS_ZH)],
            "suffix": w.LEGAL_SUFFIX[pop["biz_suffix"]],
            "word": w.NAME_WORD[np.where(pop["shell_name"] >= 0, shell_word, cn * n_ind + pop["ind"])],
            "other_word": w.NAME_WORD[cn * n_ind + pop["desc_other"]],
            "reg": pop["reg"],
            "prefix": pop["reg_prefix"],
            "uscc": _chars(rng, n, 10, b"0123456789ABCDEFGHJKLMNPQRTUWXY"),
            "region": w.DISTRICT_CODE[pop["district"]],
            "code": w.IND_CODE[pop["ind"]],
            "code_len": pop["code_len"],
        }
    )
    legal = _company(f, "last", "brand", "word", "suffix")
    made_up = _company(f, "other_last", "brand", "other_word", "suffix")
    kind = pl.Series(pop["employer_kind"])
    employer = pl.select(
        pl.when(kind == 0)
        .then(w.EMPLOYER[pop["employer"]])
        .when(kind == 1)
        .then(made_up)
        .when(kind == 2)
        .then(legal)
    ).to_series()
    ein = pl.concat_str(_s(pl.col("prefix")), pl.lit("-"), _s(pl.col("reg") % 10**7).str.zfill(7))
    uscc = pl.concat_str(pl.lit("91"), _s(pl.col("region")), pl.col("uscc"))
    out = f.select(
        business_registration_number=pl.when(pl.col("cn")).then(uscc).otherwise(ein),
        business_industry_code=pl.col("code").str.slice(0, pl.col("code_len")),
    )
    return {
        "employment_status": w.series(EMPLOYMENT_STATUSES)[pop["emp"]],
        "employer": employer,
        "annual_income": pl.Series(pop["income"]),
        "housing": w.series(HOUSING)[pop["housing"]],
        "years_at_address": pl.Series(pop["yrs_addr"]),
        "years_employed": pl.Series(pop["yrs_emp"]).fill_nan(None),
        "business_legal_name": legal,
        **out.to_dict(),
        "business_years_trading": pl.Series(pop["yrs_trading"]),
        "business_annual_revenue": pl.Series(pop["revenue"]),
        "business_employees": pl.Series(pop["employees"]),
    }


def _loan_and_channel(pop: Latent, rng: np.random.Generator) -> dict[str, pl.Series]:
    n = len(pop["ts"])
    cn = pop["country"] == 1
    hosting = rng.choice(w.HOSTING, n).astype(np.uint32) << 24
    ip4 = np.where(pop["datacenter"], hosting | (pop["ip4"] & 0xFFFFFF), pop["ip4"])
    ua_block = np.where(pop["ua_null"], -1, pop["ua"]).astype(np.int64)
    agents = (
        pl.DataFrame(
            {
                "v": rng.integers(118, 132, n),
                "fv": rng.integers(120, 134, n),
                "ios": rng.integers(0, 7, n),
                "android": rng.integers(10, 15, n),
                "model": w.MODELS[rng.integers(0, len(w.MODELS), n)],
                "app": rng.integers(0, 9, n),
                "wx": rng.integers(40, 50, n),
                "pr": rng.integers(28, 33, n),
                "m": rng.integers(0, 10, n),
            }
        )
        .with_columns(pl.all().cast(pl.String))
        .with_columns(
            iosd=pl.concat_str(pl.lit("17."), pl.col("ios")),
            ios=pl.concat_str(pl.lit("17_"), pl.col("ios")),
            app=pl.concat_str(pl.lit("5."), pl.col("app"), pl.lit(".1")),
        )
    )
    f = pl.DataFrame(
        {
            "cn": cn,
            "ip4": ip4,
            "ip6": pop["ip6"] & ~pop["datacenter"],
            "prefix": w.IPV6_PREFIX[pop["ip6_pre"]],
            "hex6": _hex(pop["ip6_hi"], pop["ip6_lo"]),
            "hex": _hex(pop["dev_hi"], pop["dev_lo"]),
            "fmt": pop["dev_fmt"],
            "acct": pop["acct"],
            "tail": pop["routing_tail"],
            "bank": w.ROUTING[pop["bank"]],
        }
    )
    octets = [_s(pl.col("ip4") // 2**s % 256) for s in (24, 16, 8, 0)]
    ipv4 = pl.concat_str(octets, separator=".")
    groups = [pl.col("hex6").str.slice(4 * i, 4).str.strip_chars_start("0") for i in range(6)]
    ipv6 = pl.concat_str(
        [
            pl.col("prefix"),
            pl.concat_str([pl.when(g == "").then(pl.lit("0")).otherwise(g) for g in groups], separator=":"),
        ]
    )
    h = pl.col("hex")
    uuid = pl.concat_str(
        [h.str.slice(0, 8), h.str.slice(8, 4), h.str.slice(12, 4), h.str.slice(16, 4), h.str.slice(20, 12)],
        separator="-",
    )
    out = f.select(
        ip_address=pl.when(pl.col("ip6")).then(ipv6).otherwise(ipv4),
        device_id=pl.when(pl.col("fmt") == 1)
        .then(uuid.str.to_uppercase())
        .when(pl.col("fmt") == 2)
        .then(h.str.slice(16, 16))
        .otherwise(h),
        bank_routing_number=pl.when(pl.col("cn"))
        .then(pl.concat_str(pl.col("bank"), _s(pl.col("tail")).str.zfill(9)))
        .otherwise(pl.col("bank")),
        bank_account_number=pl.when(pl.col("cn"))
        .then(pl.concat_str(pl.lit("62"), _s(pl.col("acct")).str.zfill(17)))
        .otherwise(_s(pl.col("acct"))),
    )
    return {
        "loan_amount": pl.Series(pop["amount"]),
        "loan_term_months": pl.Series(pop["term"]),
        "loan_purpose": w.series(LOAN_PURPOSES)[pop["purpose"]],
        "loan_currency": pl.Series(np.where(cn, "CNY", "USD")),
        "channel": w.series(CHANNELS)[pop["channel"]],
        "user_agent": tx.fill(tx.USER_AGENTS.texts, tx.USER_AGENTS.pick(ua_block, rng), agents),
        "session_duration_seconds": pl.Series(pop["session"]),
        "bank_account_age_days": pl.Series(pop["bank_age"]),
        **out.to_dict(),
    }


def _with_years(slots: pl.DataFrame) -> pl.DataFrame:
    """Adds `years`, the English phrase for the `yrs` slot: "1 year", "3 years"."""
    yrs = pl.col("yrs")
    return slots.with_columns(
        years=pl.when(yrs == "1").then(pl.lit("1 year")).otherwise(pl.concat_str(yrs, pl.lit(" years")))
    )


def _in_language(rng: np.random.Generator, lang: npt.NDArray[Any], en: int, zh: int) -> Any:
    """An index into an English-then-Chinese pool, in each row's language."""
    return np.where(lang == 0, rng.integers(0, en, len(lang)), en + rng.integers(0, zh, len(lang)))


def _texts(pop: Latent, rng: np.random.Generator, cols: dict[str, pl.Series]) -> dict[str, pl.Series]:
    n, lang = len(pop["ts"]), pop["lang"].astype(np.int64)
    cn = pop["country"] == 1
    year = pl.Series(pop["ts"]).cast(pl.Datetime("us", "UTC")).dt.year()
    desc = np.where(pop["desc_kind"] == 1, pop["desc_other"], pop["ind"])
    n_ind, n_vague = len(w.IND), len(w.VAGUE_ACTIVITIES)
    vague = 2 * n_ind + lang * n_vague + pop["biz_brand"] % n_vague
    activity = np.where(pop["desc_kind"] == 2, vague, lang * n_ind + desc)
    label = np.where(pop["desc_kind"] == 2, 2 * n_ind + lang, lang * n_ind + desc)
    amount = pl.col("amount_num").cast(pl.Int64)
    slots = pl.DataFrame(
        {
            "amount_num": pop["amount"],
            "cn": cn,
            "zh": lang == 1,
            "term": pl.Series(pop["term"]).cast(pl.String),
            "yrs": pl.Series(np.maximum(np.nan_to_num(pop["yrs_emp"]), 1).astype(int)).cast(pl.String),
            "city": cols["address_city"],
            # "Inc." at the end of a sentence would end it twice.
            "employer": cols["employer"]
            .str.strip_chars_end(".")
            .fill_null(pl.Series(np.where(lang == 0, "my own business", "自己的店"))),
            "name": cols["business_legal_name"],
            "role": w.ROLE[_in_language(rng, lang, len(w.ROLES_EN), len(w.ROLES_ZH))],
            "srole": w.SELF_ROLE[_in_language(rng, lang, len(w.SELF_ROLES_EN), len(w.SELF_ROLES_ZH))],
            "school": w.SCHOOL[_in_language(rng, lang, len(w.SCHOOLS_EN), len(w.SCHOOLS_ZH))],
            "plabel": w.PURPOSE_LABEL[lang * len(w.PURPOSE_LABELS) + pop["purpose"]],
            "label": w.LABEL[label],
            "activity": w.ACTIVITY[activity],
            "employees": pl.Series(pop["employees"]).cast(pl.String),
            "since": (year - pl.Series(pop["yrs_trading"]).cast(pl.Int32)).cast(pl.String),
            "retired": (year - pl.Series(rng.integers(1, 15, n))).cast(pl.String),
            "trading": pl.Series(np.maximum(pop["yrs_trading"], 1).astype(int)).cast(pl.String),
        }
    )
    slots = _with_years(slots).with_columns(
        amount=pl.when(pl.col("zh"))
        .then(pl.concat_str(_s(amount), pl.when(pl.col("cn")).then(pl.lit("元")).otherwise(pl.lit("美元"))))
        .otherwise(
            pl.concat_str(pl.when(pl.col("cn")).then(pl.lit("CNY ")).otherwise(pl.lit("$")), _grouped(amount))
        )
    )
    style, u = pop["text_style"], rng.random((7, n))
    long, core = style == ty.TEXT_LONG, style == ty.TEXT_CORE
    block = lang * len(LOAN_PURPOSES) + pop["purpose"]

    def part(templates: tx.Templates, where: npt.NDArray[np.bool_], blocks: Any = lang) -> pl.Series:
        return tx.fill(templates.texts, templates.pick(np.where(where, blocks, -1), rng), slots)

    parts = [
        part(tx.SENTENCES["OPENER"], long & (u[0] < 0.5)),
        part(tx.SHORT_PURPOSES, style == ty.TEXT_SHORT, block),
        part(tx.PURPOSES, style != ty.TEXT_SHORT, block),
        part(tx.SENTENCES["DETAIL"], long & (u[1] < 0.8)),
        part(tx.SENTENCES["DETAIL"], long & (u[2] < 0.3)),
        part(tx.SENTENCES["URGENT"], pop["urgent"]),
        part(tx.SENTENCES["CLOSING"], (long & (u[3] < 0.6)) | (core & (u[3] < 0.2))),
    ]
    purpose = pl.select(
        pl.when(pl.Series(lang == 1))
        .then(pl.concat_str(parts, separator="", ignore_nulls=True))
        .otherwise(pl.concat_str(parts, separator=" ", ignore_nulls=True))
    ).to_series()
    broker = tx.SENTENCES["BROKER"]
    boiler = (pop["broker"] >= 0) & (u[4] < 0.4)
    note = broker.starts[lang] + np.maximum(pop["broker"], 0) % broker.sizes[lang]
    notes = tx.fill(broker.texts, np.where(boiler, note, -1), slots)
    purpose = pl.select(pl.when(pl.Series(boiler)).then(notes).otherwise(purpose)).to_series()
    purpose = ty.edit_ring_texts(purpose, pop["ring"], rng)
    employment = tx.fill(
        tx.EMPLOYMENT.texts,
        tx.EMPLOYMENT.pick(np.where(u[5] < 0.85, lang * len(EMPLOYMENT_STATUSES) + pop["emp"], -1), rng),
        slots.with_columns(year=pl.col("retired")),
    )
    business = tx.fill(
        tx.SENTENCES["BUSINESS"].texts,
        tx.SENTENCES["BUSINESS"].pick(np.where((pop["product"] == 1) & (u[6] > 0.04), lang, -1), rng),
        _with_years(slots.with_columns(year=pl.col("since"), yrs=pl.col("trading"))),
    )
    return {
        "text_loan_purpose": purpose,
        "text_business_description": business,
        "text_employment_description": employment,
    }
