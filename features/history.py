"""History features: velocity and identity links across applications, the same numbers offline (a
whole history in polars, each application seeing only what came strictly before it) and online (one
application at a time against a store of earlier ones, `features.history_store`).

Every feature is defined per entity key (device, phone, email, address, ...) at an application's
submission time t over earlier applications with the same key: how many fell in [t - w, t) for each
window w; over the last 28 days, how many distinct identities and emails they carried and the amount
they requested; and the days since the key was first seen. Across keys: the identities linked to the
application by one shared link key, its ring (followed further, `features.rings`) and earlier
confirmed fraud per link key. Keys are normalised, then stored only as keyed hashes (HMAC-SHA256
with a secret from settings, truncated to 128 bits): the history never holds a phone number or an
email in clear.

Exactness: times are integer microseconds and amounts integer cents, so sums and differences are
exact; the one conversion to float (`* 0.01`, `* (1 / 86_400e6)`) is the same multiplication in both
paths. `tests/features/test_history.py` replays applications one at a time and compares.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from features import rowwise
from features.rings import RING_BOUND, RING_FEATURES, RingBound, RingSize, offline_rings

HOUR_US: Final = 3_600 * 1_000_000
DAY_US: Final = 24 * HOUR_US
WINDOWS: Final = {"1h": HOUR_US, "6h": 6 * HOUR_US, "24h": DAY_US, "7d": 7 * DAY_US, "28d": 28 * DAY_US}
LINK_WINDOW: Final = "28d"
US_TO_DAYS: Final = 1 / 86_400e6


@dataclass(frozen=True, slots=True)
class KeySpec:
    """An entity key and the history features computed for it."""

    name: str
    windows: tuple[str, ...] = ("24h", "28d")
    identities: bool = False  # distinct identities in the link window
    emails: bool = False  # distinct emails in the link window
    amount: bool = False  # amount requested in the link window
    first_seen: bool = False  # days since the key was first seen (all history)


FAST: Final = ("1h", "6h", "24h", "7d", "28d")
KEYS: Final = (
    KeySpec("device", FAST, identities=True, emails=True, amount=True, first_seen=True),
    KeySpec("phone", FAST, identities=True, first_seen=True),
    KeySpec("email", FAST, identities=True, first_seen=True),
    KeySpec("ip", FAST, identities=True),
    KeySpec("ip24", ("24h", "28d"), identities=True),
    KeySpec("address", FAST, identities=True, amount=True, first_seen=True),
    KeySpec("postal_code", ("24h", "28d")),
    KeySpec("national_id", ("24h", "28d"), identities=True, amount=True, first_seen=True),
    KeySpec("bank_account", ("24h", "28d"), identities=True, first_seen=True),
    KeySpec("employer", ("28d",), identities=True),
    KeySpec("business_reg", ("28d",), identities=True, amount=True),
    KeySpec("date_of_birth", ("28d",), emails=True),
)
KEY_NAMES: Final = tuple(k.name for k in KEYS)


def feature_names(spec: KeySpec) -> list[str]:
    names = [f"{spec.name}_apps_{w}" for w in spec.windows]
    if spec.identities:
        names.append(f"{spec.name}_identities_{LINK_WINDOW}")
    if spec.emails:
        names.append(f"{spec.name}_emails_{LINK_WINDOW}")
    if spec.amount:
        names.append(f"{spec.name}_amount_{LINK_WINDOW}")
    if spec.first_seen:
        names.append(f"{spec.name}_days_since_first_seen")
    return names


# Keys specific enough to link one person's applications: the link and ring features follow only
# these (an employer or a postal code is shared by thousands of unrelated people).
LINK_KEYS: Final = ("device", "phone", "email", "address", "national_id", "bank_account", "ip")
LINKED_FEATURE: Final = "linked_identities_28d"
# Earlier applications sharing the key whose fraud outcome was known before this one (all history).
FRAUD_FEATURES: Final = tuple(f"{k}_confirmed_fraud" for k in LINK_KEYS)
HISTORY_FEATURES: Final = (
    *(n for k in KEYS for n in feature_names(k)),
    LINKED_FEATURE,
    *RING_FEATURES,
    *FRAUD_FEATURES,
)
HISTORY_SCHEMA: Final = pl.Schema({n: pl.Float64() for n in HISTORY_FEATURES})


# -- keys ----------------------------------------------------------------------------------------
def _lower(col: str) -> pl.Expr:
    return pl.col(col).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def _joined(*parts: pl.Expr) -> pl.Expr:
    """Parts joined by '|', null when the first (defining) part is null."""
    return (
        pl.when(parts[0].is_null())
        .then(None)
        .otherwise(pl.concat_str(parts, separator="|", ignore_nulls=True))
    )


def key_values(canonical: pl.DataFrame) -> pl.DataFrame:
    """Normalised clear-text keys, plus the time (µs), identity, email and amount (cents) columns.

    Only ever passed to `hash_keys`; never stored or logged."""
    ip = pl.col("ip_address").str.to_lowercase()
    ip24 = pl.coalesce(
        ip.str.extract(r"^([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.[0-9]{1,3}$", 1),
        ip.str.extract(r"^([0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f]{0,4}):", 1),
    )
    dob = pl.col("date_of_birth").cast(pl.String)
    email = _lower("email")
    return canonical.select(
        ts=pl.col("submitted_at").dt.epoch("us"),
        cents=(pl.col("loan_amount") * 100.0).round(0).cast(pl.Int64),
        identity=_joined(_lower("first_name"), _lower("last_name"), dob),
        email_key=email,
        device=pl.col("device_id").str.strip_chars(),
        phone=pl.col("phone").str.replace_all(r"[^0-9]", "").replace("", None),
        email=email,
        ip=ip,
        ip24=ip24,
        address=_joined(_lower("address_line1"), _lower("address_postal_code"), pl.col("address_country")),
        postal_code=_joined(_lower("address_postal_code"), pl.col("address_country")),
        national_id=pl.col("national_id")
        .str.to_uppercase()
        .str.replace_all(r"[^0-9A-Z]", "")
        .replace("", None),
        bank_account=_joined(
            pl.col("bank_account_number").str.replace_all(r"\s", ""), pl.col("bank_routing_number")
        ),
        employer=_lower("employer"),
        business_reg=pl.col("business_registration_number").str.to_uppercase().str.replace_all(r"[\s-]", ""),
        date_of_birth=dob,
    )


HASHED: Final = ("identity", "email_key", *KEY_NAMES)


def keyed_hash(secret: bytes, value: str) -> str:
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def hash_keys(values: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """Replaces every clear-text key (and identity, email) with its keyed hash."""
    if not secret:
        raise ValueError("the history secret must not be empty")
    out = []
    for name in HASHED:
        col = values.get_column(name)
        uniques = col.drop_nulls().unique().to_list()
        mapping = {v: keyed_hash(secret, f"{name}:{v}") for v in uniques}
        out.append(col.replace_strict(mapping, default=None, return_dtype=pl.String).alias(name))
    return values.with_columns(out)


def entity_keys(canonical: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """Hashed keys of each application, in the frame's row order (for whole histories)."""
    return hash_keys(key_values(canonical), secret)


def with_outcomes(keys: pl.DataFrame, label: ArrayLike, delay_days: float) -> pl.DataFrame:
    """Adds each application's outcome for `offline_history`: its label, taken as known `delay_days`
    after submission (how long a lender takes to confirm fraud, when the data does not say)."""
    delay = round(delay_days * DAY_US)
    return keys.with_columns(
        fraud=pl.Series("fraud", np.asarray(label), dtype=pl.Int8),
        known_at=pl.col("ts") + pl.lit(delay, pl.Int64),
    )


def entity_key_rows(canonical: pl.DataFrame | rowwise.Batch, secret: bytes) -> list[dict[str, Any]]:
    """The same hashed keys as plain rows, for a serving batch: hashing a few values in Python
    costs microseconds, where a polars call per key column would cost milliseconds."""
    if not secret:
        raise ValueError("the history secret must not be empty")
    batch = canonical if isinstance(canonical, rowwise.Batch) else rowwise.Batch.of_frame(canonical)
    rows: list[dict[str, Any]] | None = None
    if batch.rows is not None and all(rowwise.accepts(r) for r in batch.rows):  # without polars' cost
        rows = [rowwise.key_values_row(r) for r in batch.rows]
        apps = [r["application_id"] for r in batch.rows]
    else:
        rows = key_values(batch.frame).to_dicts()
        apps = batch.frame.get_column("application_id").to_list()
    for row, app in zip(rows, apps, strict=True):
        for name in HASHED:
            value = row[name]
            if value is not None:
                row[name] = keyed_hash(secret, f"{name}:{value}")
        row["application_id"] = app
    return rows


# -- offline: a whole history, as of each application ------------------------------------------
def _rolling_exprs(spec: KeySpec) -> list[pl.Expr]:
    ts, t = pl.col("ts"), pl.col("ts").max()
    before = ts < t
    exprs = [(before & (ts >= t - WINDOWS[w])).sum().alias(f"{spec.name}_apps_{w}") for w in spec.windows]
    link = before & (ts >= t - WINDOWS[LINK_WINDOW])
    if spec.identities:
        exprs.append(
            pl.col("identity").filter(link).drop_nulls().n_unique().alias(f"{spec.name}_identities_28d")
        )
    if spec.emails:
        exprs.append(
            pl.col("email_key").filter(link).drop_nulls().n_unique().alias(f"{spec.name}_emails_28d")
        )
    if spec.amount:
        exprs.append(pl.col("cents").filter(link).sum().alias(f"{spec.name}_amount_28d"))
    return exprs


def offline_history(keys: pl.DataFrame, *, ring_bound: RingBound = RING_BOUND) -> pl.DataFrame:
    """History features of every application from the applications before it in the same frame.

    The window of a row is closed at both ends so that it contains the row itself and any tie;
    every aggregate then keeps only `ts < t` (strictly earlier), so ties never see each other.
    `ring_bound` must be the serving store's (`features.rings`); only tests change it."""
    period = f"{WINDOWS[LINK_WINDOW]}i"
    n = keys.height
    base = keys.with_row_index("_row")
    columns: dict[str, pl.Series] = {}
    for spec in KEYS:
        # Applications without this key are left out: a missing phone is not a shared phone.
        sub = base.select("_row", "ts", "identity", "email_key", "cents", key=pl.col(spec.name))
        sub = sub.filter(pl.col("key").is_not_null()).sort(["key", "ts"], maintain_order=True)
        agg = sub.rolling(index_column="ts", period=period, closed="both", group_by="key").agg(
            _rolling_exprs(spec)
        )
        # rolling() yields one row per input row, in the sorted order: scatter back to frame order.
        rows = sub.get_column("_row")
        for name in feature_names(spec):
            if name.endswith("_days_since_first_seen"):
                continue
            value = agg.get_column(name).cast(pl.Float64)
            if name.endswith("_amount_28d"):
                value = value * 0.01
            full = pl.Series(name, [None] * n, dtype=pl.Float64)
            columns[name] = full.scatter(rows, value) if rows.len() else full
        if spec.first_seen:
            first = base.select(
                pl.when(pl.col(spec.name).is_null())
                .then(None)
                .otherwise(pl.col("ts").min().over(spec.name))
                .alias("first"),
                "ts",
            )
            since = pl.when(pl.col("first") < pl.col("ts")).then(
                (pl.col("ts") - pl.col("first")) * US_TO_DAYS
            )
            columns[f"{spec.name}_days_since_first_seen"] = first.select(since).to_series().cast(pl.Float64)
    columns[LINKED_FEATURE] = _linked_identities(base)
    columns.update(offline_rings(base, LINK_KEYS, WINDOWS[LINK_WINDOW], ring_bound))
    columns.update(_confirmed_fraud(base))
    frame = pl.DataFrame({name: columns[name].alias(name) for name in HISTORY_FEATURES})
    assert frame.height == n
    return frame


def _confirmed_fraud(base: pl.DataFrame) -> dict[str, pl.Series]:
    """Per link key: earlier applications with the key whose outcome, known before this
    application, was fraud. Needs `fraud` (1/0/null) and `known_at` (µs) columns; without them no
    outcome is known and the counts are 0. Null where the application lacks the key."""
    out = {}
    has_outcomes = "fraud" in base.columns and "known_at" in base.columns
    for name in LINK_KEYS:
        rows = base.select("_row", "ts", key=pl.col(name)).filter(pl.col("key").is_not_null())
        counts = pl.Series("n", [], dtype=pl.Float64)
        if has_outcomes:
            frauds = base.filter((pl.col("fraud") == 1) & pl.col(name).is_not_null()).select(
                key=pl.col(name), ts_f="ts", known="known_at"
            )
            joined = rows.join(frauds, on="key").filter(
                (pl.col("ts_f") < pl.col("ts")) & (pl.col("known") < pl.col("ts"))
            )
            per_row = joined.group_by("_row").agg(pl.len().cast(pl.Float64).alias("n"))
            rows = rows.join(per_row, on="_row", how="left")
            counts = rows.get_column("n").fill_null(0.0)
        else:
            counts = pl.Series("n", [0.0] * rows.height, dtype=pl.Float64)
        full = pl.Series(f"{name}_confirmed_fraud", [None] * base.height, dtype=pl.Float64)
        if rows.height:
            full = full.scatter(rows.get_column("_row"), counts)
        out[f"{name}_confirmed_fraud"] = full
    return out


def _linked_identities(base: pl.DataFrame) -> pl.Series:
    """Distinct other identities that shared any link key with the application in the 28 days
    before it (one hop; `features.rings` follows further). Null when the application has no link
    key at all."""
    long = pl.concat(
        [
            base.select("_row", "ts", "identity", kind=pl.lit(name), key=pl.col(name)).filter(
                pl.col("key").is_not_null()
            )
            for name in LINK_KEYS
        ]
    )
    earlier = long.select("kind", "key", ts_p="ts", identity_p="identity")
    window = WINDOWS[LINK_WINDOW]
    pairs = long.join(earlier, on=["kind", "key"]).filter(
        (pl.col("ts_p") < pl.col("ts"))
        & (pl.col("ts_p") >= pl.col("ts") - window)
        & (pl.col("identity_p") != pl.col("identity"))
    )
    counts = pairs.group_by("_row").agg(pl.col("identity_p").n_unique().cast(pl.Float64).alias("n"))
    has_key = long.select("_row").unique()
    per_row = has_key.join(counts, on="_row", how="left").with_columns(pl.col("n").fill_null(0.0))
    full = pl.Series(LINKED_FEATURE, [None] * base.height, dtype=pl.Float64)
    if per_row.height:
        full = full.scatter(per_row.get_column("_row"), per_row.get_column("n"))
    return full


# -- online: one application against aggregates from the store ----------------------------------
@dataclass(frozen=True, slots=True)
class KeyAggregate:
    """What the store returns for one key of one application: earlier applications only."""

    apps: Mapping[str, int]  # window -> count
    identities: int = 0
    emails: int = 0
    cents: int = 0
    first_seen_us: int | None = None


def online_history(
    ts: int,
    aggregates: Mapping[str, KeyAggregate | None],
    linked_identities: int | None,
    confirmed_fraud: Mapping[str, int | None],
    ring: RingSize | None,
) -> dict[str, float | None]:
    """One application's history features from its keys' aggregates (None: the key is missing),
    the count of other identities linked to it (None: no link key), per link key the earlier
    applications confirmed as fraud before it (None: the key is missing) and its ring (None: no
    link key)."""
    out: dict[str, float | None] = {
        f"{k}_confirmed_fraud": None if confirmed_fraud.get(k) is None else float(confirmed_fraud[k] or 0)
        for k in LINK_KEYS
    }
    out |= {LINKED_FEATURE: None if linked_identities is None else float(linked_identities)}
    ring_values = (None, None) if ring is None else (float(ring.applications), float(ring.identities))
    out |= dict(zip(RING_FEATURES, ring_values, strict=True))
    for spec in KEYS:
        agg = aggregates.get(spec.name)
        for w in spec.windows:
            out[f"{spec.name}_apps_{w}"] = None if agg is None else float(agg.apps[w])
        if spec.identities:
            out[f"{spec.name}_identities_28d"] = None if agg is None else float(agg.identities)
        if spec.emails:
            out[f"{spec.name}_emails_28d"] = None if agg is None else float(agg.emails)
        if spec.amount:
            out[f"{spec.name}_amount_28d"] = None if agg is None else float(agg.cents) * 0.01
        if spec.first_seen:
            first = None if agg is None else agg.first_seen_us
            out[f"{spec.name}_days_since_first_seen"] = None if first is None else (ts - first) * US_TO_DAYS
    return out


def history_frame(rows: Sequence[Mapping[str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame([[r[n] for n in HISTORY_FEATURES] for r in rows], schema=HISTORY_SCHEMA, orient="row")
