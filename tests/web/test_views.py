"""What the review page computes, as pure functions: filters, text segments, chart geometry, and the
clauses behind the text signals (with the real encoder)."""

from __future__ import annotations

import datetime as dt

import pytest

from features.text.encoder import TextEncoder
from features.text.signals import TextFeaturizer
from features.text.spans import Span, clauses, theme_spans
from scoring.model import ScoringModel
from scoring.web import charts
from scoring.web.views import QueryError, QueueFilters, segments


def test_filters_parse_defaults_and_values():
    assert QueueFilters.parse({}) == QueueFilters()  # REVIEW and DECLINE, unreviewed, by score
    f = QueueFilters.parse(
        {
            "decision": ["DECLINE"],
            "product": ["SMALL_BUSINESS"],
            "since": ["2026-11-01"],
            "until": ["2026-11-22"],
            "min_score": ["500"],
            "sort": ["time"],
            "status": ["all"],
            "page": ["3"],
        }
    )
    q = f.store_query()
    assert q["decisions"] == ("DECLINE",) and q["products"] == ("SMALL_BUSINESS",)
    assert q["since"] == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert q["until"] == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # the until day is included
    assert (q["order"], q["unreviewed_only"], q["offset"], q["min_score"]) == ("time_desc", False, 100, 500)
    assert QueueFilters.parse({"decision": ["DECLINE"], "page": ["2"]}).link(3) == (
        "/queue?decision=DECLINE&sort=score&status=unreviewed&page=3"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"min_score": ["-1"]}, "min_score: expected a whole number"),
        ({"page": ["0"]}, "page: expected a whole number from 1"),
        ({"sort": ["name"]}, "sort: expected score or time"),
        ({"since": ["yesterday"]}, "since: expected a date"),
        ({"product": ["MORTGAGE"]}, "product: expected one of CONSUMER, SMALL_BUSINESS"),
        ({"status": ["a", "b"]}, "status: give at most one value"),
    ],
)
def test_filters_name_the_bad_parameter(query, message):
    with pytest.raises(QueryError, match=message):
        QueueFilters.parse(query)


def test_segments_cover_the_text_and_distrust_bad_spans():
    text = "Need cash now. For my shop."
    spans = [Span(0, 14, "urgency", 0.8), Span(10, 12, "cash_out", 0.5), Span(22, 99, "vague_business", 0.5)]
    out = segments(text, spans)
    assert "".join(s.text for s in out) == text
    assert [(s.text, s.theme) for s in out if s.theme] == [
        ("Need cash now.", "urgency"),
        ("shop.", "vague_business"),
    ]


def test_waterfall_runs_from_the_base_to_the_score():
    steps = [(f"r{i}", c) for i, c in enumerate([1.5, -0.5, 0.25, 0.1, -0.05])]
    chart = charts.waterfall(-4.0, steps, top=3, probability=0.2)
    labels = [b.label for b in chart.bars]
    assert labels[0].startswith("Base rate") and labels[-1].startswith("Model score")
    assert labels[1:4] == ["r0", "r1", "r2"] and labels[4] == "2 other factors"
    assert chart.bars[-1].value.startswith(f"{-4.0 + sum(c for _, c in steps):+.2f}")
    assert [b.css for b in chart.bars[1:5]] == ["raises", "lowers", "raises", "raises"]
    assert all(b.x >= 0 and b.x + b.w <= chart.width for b in chart.bars)


def test_histogram_and_ranking_scale_to_the_largest():
    h = charts.histogram({(0, "APPROVE"): 90, (0, "REVIEW"): 10, (900, "DECLINE"): 5})
    tallest = min(b.y for b in h.bars)
    assert len(h.bars) == 3 and tallest == pytest.approx(10)  # the 0-49 bucket reaches the top
    r = charts.ranking([("a", 10.0), ("b", 40.0), ("c", 20.0)], top=2)
    assert [b.label for b in r.bars] == ["b", "c"] and r.bars[0].value == "100%"


def test_clauses_split_english_and_chinese():
    text = "  Urgent, need funds today!  急需用钱，请马上放款。\n\n..."
    assert [text[s:e] for s, e in clauses(text)] == [
        "Urgent,",
        "need funds today!",
        "急需用钱，",
        "请马上放款。",
    ]


def test_theme_spans_point_at_the_clause_that_reads_like_a_theme(bundle_dir, encoder_dir):
    model = ScoringModel.load(bundle_dir)
    assert model.text_spec is not None
    encoder = TextEncoder(encoder_dir, providers=["cpu"])
    featurizer = TextFeaturizer(model.text_spec, encoder)
    text = "We repair bicycles in the city centre. Submitted on behalf of my client by our agency."
    spans = theme_spans(text, encoder, featurizer.theme_vectors)
    assert [(text[s.start : s.end], s.theme) for s in spans] == [
        ("Submitted on behalf of my client by our agency.", "third_party")
    ]
    assert theme_spans("", encoder, featurizer.theme_vectors) == []
