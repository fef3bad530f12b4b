"""Text signals: near duplicates as of each application (online equals offline), and what the
signals say about texts whose meaning is known."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from features.text.encoder import TextEncoder
from features.text.near_dup import NearDuplicateIndex, offline_near_duplicates
from features.text.signals import DEFAULT_PHRASES, TextFeaturizer, TextSpec
from scoring.synth import generate

HOUR_US = 3_600_000_000


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_near_duplicates_online_equal_offline_on_a_replayed_history(tmp_path):
    rng = np.random.default_rng(5)
    n = 3000
    base = _unit(rng, 40)
    # Texts are noisy copies of 40 templates, so near copies exist; some rows have no text.
    vectors = base[rng.integers(0, 40, n)] + rng.normal(scale=0.08, size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ts = np.sort(rng.integers(0, 30 * 24 * HOUR_US, n)).astype(np.int64)
    ts[100:110] = ts[100]  # ties: same-time applications never see each other
    identity = [None if i % 97 == 0 else f"id-{rng.integers(0, 400)}" for i in range(n)]
    present = rng.random(n) > 0.1
    options = {"window_us": 7 * 24 * HOUR_US, "cap": 500, "threshold": 0.95}
    offline = offline_near_duplicates(ts, identity, vectors, present, **options)
    index = NearDuplicateIndex(tmp_path / "idx.sqlite", ["purpose"], dim=16, **options)
    online = [
        index.lookup_and_add(
            "purpose", ts[i : i + 1].tolist(), identity[i : i + 1], vectors[i : i + 1], present[i : i + 1]
        )
        for i in range(n)
    ]
    max_online = np.concatenate([r.max_similarity for r in online])
    copies_online = np.concatenate([r.copies for r in online])
    assert np.array_equal(np.isnan(max_online), np.isnan(offline.max_similarity))
    assert np.allclose(max_online, offline.max_similarity, atol=1e-6, equal_nan=True)
    assert np.array_equal(copies_online, offline.copies, equal_nan=True)
    assert np.nansum(offline.copies) > 100  # the test has near copies to find
    # The index survives a restart: the same next answer from the file as from memory.
    probe = dict(
        ts=[int(ts[-1]) + 1], identity=["someone-new"], vectors=vectors[-1:], present=np.array([True])
    )
    before = index.lookup_and_add("purpose", **probe, record=False)
    index.close()
    reopened = NearDuplicateIndex(tmp_path / "idx.sqlite", ["purpose"], dim=16, **options)
    after = reopened.lookup_and_add("purpose", **probe, record=False)
    assert (
        after.max_similarity[0] == pytest.approx(before.max_similarity[0])
        and after.copies[0] == before.copies[0]
    )


def test_near_duplicates_shared_by_two_workers_equal_offline(tmp_path):
    """Two indexes on one file (`serve --workers 2`: one per process) taking applications in turn
    give every application the answer one index would: each sees what the other added."""
    rng = np.random.default_rng(11)
    n = 600
    base = _unit(rng, 12)
    vectors = base[rng.integers(0, 12, n)] + rng.normal(scale=0.05, size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ts = np.sort(rng.integers(0, 10 * 24 * HOUR_US, n)).astype(np.int64)
    identity = [f"id-{rng.integers(0, 100)}" for _ in range(n)]
    present = np.ones(n, bool)
    options = {"window_us": 7 * 24 * HOUR_US, "cap": 200, "threshold": 0.95}
    offline = offline_near_duplicates(ts, identity, vectors, present, **options)
    workers = [NearDuplicateIndex(tmp_path / "idx.sqlite", ["purpose"], dim=16, **options) for _ in range(2)]
    copies, best = [], []
    for start in range(0, n, 3):  # micro-batches of 3, to each worker in turn
        stop = min(start + 3, n)
        out = workers[(start // 3) % 2].lookup_and_add(
            "purpose", ts[start:stop].tolist(), identity[start:stop], vectors[start:stop], present[start:stop]
        )
        copies.append(out.copies)
        best.append(out.max_similarity)
    assert np.array_equal(np.concatenate(copies), offline.copies, equal_nan=True)
    assert np.allclose(np.concatenate(best), offline.max_similarity, atol=1e-6, equal_nan=True)
    assert np.nansum(offline.copies) > 50  # near copies to find, most across the two workers
    for w in workers:
        w.close()


def test_near_duplicates_count_only_other_identities_within_the_window():
    v = np.tile(_unit(np.random.default_rng(1), 1), (5, 1))  # five identical texts
    ts = np.array([0, 1, 2, 3, 8 * 24], dtype=np.int64) * HOUR_US
    who = ["a", "a", "b", None, "c"]
    out = offline_near_duplicates(
        ts, who, v, np.ones(5, bool), window_us=7 * 24 * HOUR_US, cap=100, threshold=0.95
    )
    # a: nothing earlier; a again: only itself earlier; b: two of a; None: a, a, b; c: all outside 7 days
    assert out.copies.tolist() == [0, 0, 2, 3, 0]
    assert np.isnan(out.max_similarity[[0, 1, 4]]).all()
    assert out.max_similarity[2] == pytest.approx(1.0, abs=1e-6)
    capped = offline_near_duplicates(
        ts, who, v, np.ones(5, bool), window_us=7 * 24 * HOUR_US, cap=1, threshold=0.95
    )
    assert capped.copies.tolist() == [0, 0, 1, 1, 0]


@pytest.fixture(scope="module")
def featurizer(encoder_dir) -> TextFeaturizer:
    encoder = TextEncoder(encoder_dir, providers=["cpu"])
    return TextFeaturizer(TextSpec.from_phrases(DEFAULT_PHRASES, encoder.info.identity), encoder)


def _applications(**texts: list[str | None]) -> pl.DataFrame:
    n = len(next(iter(texts.values())))
    frame = generate(n, seed=3)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return frame.with_columns(
        submitted_at=pl.Series([start + dt.timedelta(hours=i) for i in range(n)]).dt.cast_time_unit("us"),
        **{k: pl.Series(k, v, dtype=pl.String) for k, v in texts.items()},
    )


def test_signals_read_what_the_text_says(featurizer):
    frame = _applications(
        text_loan_purpose=[
            "Need the money today, please approve urgently!!",
            "Replacing the roof on our house",
            None,
            "  ",
        ],
        text_business_description=[
            None,
            None,
            "We import and export various goods and offer investment services",
            "We run a family bakery: bread and cakes",
        ],
    ).with_columns(
        loan_purpose=pl.Series(
            ["HOME_IMPROVEMENT", "HOME_IMPROVEMENT", "WORKING_CAPITAL", "WORKING_CAPITAL"]
        ),
        business_industry_code=pl.Series(["311811", "311811", "311811", "311811"]),
    )
    identity = ["a", "b", "c", "d"]
    signals = featurizer.offline(frame, identity)
    urgency = signals.get_column("nlp_risk_urgency").to_list()
    assert urgency[0] > urgency[1] + 0.15
    fit = signals.get_column("nlp_purpose_fit").to_list()
    assert fit[1] > fit[0]
    assert fit[2] is None and fit[3] is None  # missing and blank text: no signal, not zero
    margin = signals.get_column("nlp_business_industry_margin").to_list()
    assert margin[3] > 0 > margin[2]  # a bakery fits 311811; trading talk reads like something else
    vague = signals.get_column("nlp_risk_vague_business").to_list()
    assert vague[2] > vague[3]


def test_ring_template_text_shows_as_near_copies_from_other_identities(featurizer):
    template = "Opening a second location downtown, we need working capital for the build out."
    texts = [
        template,
        template.replace("build out", "build-out"),
        "Buying a used Honda from a private seller",
        template + " Thanks",
    ]
    frame = _applications(text_loan_purpose=texts)
    signals = featurizer.offline(frame, ["r1", "r2", "x", "r1"])
    copies = signals.get_column("nlp_purpose_near_copies_7d").to_list()
    best = signals.get_column("nlp_purpose_near_dup_max_7d").to_list()
    assert copies[0] == 0 and best[0] is None
    assert best[1] > 0.9
    assert best[2] < 0.6
    # r1's second application matches r2's copy, never its own first one
    assert copies[3] >= 1 and best[3] > 0.9
