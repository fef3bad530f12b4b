"""What the review page shows, built from stored records: pure functions (no transport, no store),
tested directly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from features.schema import ATTRIBUTE_PREFIX, FIELDS, PII_COLUMNS, PRODUCTS, TEXT_COLUMNS
from features.text.spans import Span
from scoring.personal import mask

DECISIONS: Final = ("APPROVE", "REVIEW", "DECLINE")
TO_REVIEW: Final = ("REVIEW", "DECLINE")
FRAUD_TYPES: Final = (
    "identity_theft",
    "synthetic_identity",
    "first_party_bust_out",
    "income_inflation",
    "ring",
    "shell_business",
    "account_takeover",
    "other",
)
TEXT_LABELS: Final = {
    "text_loan_purpose": "Loan purpose",
    "text_business_description": "Business description",
    "text_employment_description": "Employment",
}
THEME_LABELS: Final = {
    "urgency": "Urgency",
    "third_party": "Written for someone else",
    "vague_business": "Vague business description",
    "cash_out": "Cash-out intent",
}
PAGE_SIZE: Final = 50


class QueryError(ValueError):
    """A query parameter of the page is not acceptable; the message names it."""


@dataclass(frozen=True, slots=True)
class QueueFilters:
    decisions: tuple[str, ...] = TO_REVIEW
    products: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None  # inclusive: decisions received on that day are shown
    min_score: int | None = None
    sort: str = "score"
    status: str = "unreviewed"
    page: int = 1

    @classmethod
    def parse(cls, query: Mapping[str, Sequence[str]]) -> QueueFilters:
        def one(name: str) -> str:
            values = [v for v in query.get(name, ()) if v != ""]
            if len(values) > 1:
                raise QueryError(f"{name}: give at most one value")
            return values[0] if values else ""

        def date(name: str) -> dt.date | None:
            text = one(name)
            try:
                return dt.date.fromisoformat(text) if text else None
            except ValueError:
                raise QueryError(f"{name}: expected a date as YYYY-MM-DD") from None

        def choice(name: str, allowed: Sequence[str]) -> tuple[str, ...]:
            values = tuple(v for v in query.get(name, ()) if v != "")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise QueryError(f"{name}: expected one of {', '.join(allowed)}")
            return values

        def number(name: str, lo: int, hi: int) -> int | None:
            text = one(name)
            if not text:
                return None
            if not text.isdigit() or not lo <= int(text) <= hi:
                raise QueryError(f"{name}: expected a whole number from {lo} to {hi}")
            return int(text)

        sort = one("sort") or "score"
        status = one("status") or "unreviewed"
        if sort not in ("score", "time"):
            raise QueryError("sort: expected score or time")
        if status not in ("unreviewed", "all"):
            raise QueryError("status: expected unreviewed or all")
        decisions = choice("decision", DECISIONS) if "decision" in query else TO_REVIEW
        return cls(
            decisions=decisions,
            products=choice("product", PRODUCTS),
            since=date("since"),
            until=date("until"),
            min_score=number("min_score", 0, 999),
            sort=sort,
            status=status,
            page=number("page", 1, 100_000) or 1,
        )

    def store_query(self) -> dict[str, Any]:
        """Arguments of `AuditStore.list_decisions` for this page (one row more, to know if another
        page follows)."""

        def start(day: dt.date | None) -> dt.datetime | None:
            return None if day is None else dt.datetime.combine(day, dt.time(), dt.UTC)

        return {
            "decisions": self.decisions,
            "products": self.products,
            "since": start(self.since),
            "until": start(self.until + dt.timedelta(days=1)) if self.until else None,
            "min_score": self.min_score,
            "order": "score_desc" if self.sort == "score" else "time_desc",
            "unreviewed_only": self.status == "unreviewed",
            "limit": PAGE_SIZE + 1,
            "offset": (self.page - 1) * PAGE_SIZE,
        }

    def link(self, page: int) -> str:
        """The queue URL of another page under the same filters."""
        query: list[tuple[str, Any]] = [("decision", d) for d in self.decisions]
        query += [("product", p) for p in self.products]
        for name, value in (("since", self.since), ("until", self.until), ("min_score", self.min_score)):
            if value is not None:
                query.append((name, str(value)))
        query += [("sort", self.sort), ("status", self.status), ("page", page)]
        return "/queue?" + urlencode(query)

    def log_detail(self) -> dict[str, Any]:
        """The filters as the officer log keeps them (no personal data in any of them)."""
        return {
            "decision": list(self.decisions),
            "product": list(self.products),
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "min_score": self.min_score,
            "sort": self.sort,
            "status": self.status,
            "page": self.page,
        }


@dataclass(frozen=True, slots=True)
class FieldRow:
    label: str
    value: str
    personal: bool


def application_rows(application: Mapping[str, Any]) -> list[FieldRow]:
    """The application's fields in schema order, personal ones masked, free texts left out (they have
    their own block); lender attributes last. Absent optional fields are skipped."""
    rows = []
    for f in FIELDS:
        if f.column in TEXT_COLUMNS or f.column == "application_id":
            continue
        value = application.get(f.column)
        if value is None:
            continue
        shown = mask(f.column, value) if f.column in PII_COLUMNS else _plain(value)
        rows.append(FieldRow(f.path, shown, f.column in PII_COLUMNS))
    for column in sorted(k for k in application if k.startswith(ATTRIBUTE_PREFIX)):
        if application[column] is not None:
            label = f"attributes[{column.removeprefix(ATTRIBUTE_PREFIX)}]"
            rows.append(FieldRow(label, _plain(application[column]), False))
    return rows


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else f"{value:g}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    theme: str = ""  # empty: not part of a span
    title: str = ""


@dataclass(frozen=True, slots=True)
class TextBlock:
    column: str
    label: str
    segments: tuple[Segment, ...]
    readable: bool  # False: stored as a keyed hash, nothing to show
    near_copies: int | None  # other identities' recent applications with nearly the same text
    near_max: float | None


def segments(text: str, spans: Sequence[Span]) -> tuple[Segment, ...]:
    """The text cut at span edges; overlapping or out-of-range spans are clipped, not trusted."""
    out: list[Segment] = []
    at = 0
    for span in sorted(spans, key=lambda s: s.start):
        start, end = max(span.start, at), min(span.end, len(text))
        if start >= end:
            continue
        if start > at:
            out.append(Segment(text[at:start]))
        label = THEME_LABELS.get(span.theme, span.theme)
        out.append(Segment(text[start:end], span.theme, f"{label}: similarity {span.similarity:.2f}"))
        at = end
    if at < len(text):
        out.append(Segment(text[at:]))
    return tuple(out)


def text_blocks(
    application: Mapping[str, Any],
    spans: Mapping[str, Sequence[Span]],
    features: Mapping[str, Any],
) -> list[TextBlock]:
    field_key = {"text_loan_purpose": "purpose", "text_business_description": "business"}
    out = []
    for column in TEXT_COLUMNS:
        text = application.get(column)
        if text is None:
            continue
        readable = not str(text).startswith(("h:", "e:"))
        key = field_key.get(column)
        copies = _feature(features, f"nlp_{key}_near_copies_") if key else None
        near = _feature(features, f"nlp_{key}_near_dup_max_") if key else None
        out.append(
            TextBlock(
                column,
                TEXT_LABELS[column],
                segments(str(text), spans.get(column, ())) if readable else (),
                readable,
                None if copies is None else int(copies),
                near,
            )
        )
    return out


def _feature(features: Mapping[str, Any], prefix: str) -> float | None:
    value = next((v for k, v in features.items() if k.startswith(prefix)), None)
    return float(value) if isinstance(value, int | float) else None
