"""Reasons from TreeSHAP: contributions reproduce the score, every feature has a catalogued reason,
and REVIEW / DECLINE answers carry the risk-raising reasons through gRPC."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from features.history import entity_key_rows, history_frame
from features.history_store import SQLiteHistoryStore
from features.text.encoder import TextEncoder
from features.text.signals import TextFeaturizer
from scoring.explain import OTHER, reason_of
from scoring.model import ScoringModel
from scoring.synth import generate
from scoring.v1 import scoring_pb2 as pb
from tests.conftest import RISKY_CHANGES, application, with_attributes


@pytest.fixture(scope="module")
def scored(bundle_dir, encoder_dir):
    model = ScoringModel.load(bundle_dir)
    frame = model.pipeline.frame_from_rows(generate(300, seed=8).to_dicts())
    keys = entity_key_rows(frame, b"k")
    history = history_frame(SQLiteHistoryStore(":memory:").lookup_and_record(keys))
    assert model.text_spec is not None
    featurizer = TextFeaturizer(model.text_spec, TextEncoder(encoder_dir, providers=["cpu"]))
    text = featurizer.offline(frame, [k["identity"] for k in keys])
    return model, model.score_frame(frame, history, text), model.score_frame(frame, history, None)


@pytest.mark.parametrize("head", ["primary", "fallback"])
def test_contributions_plus_the_base_value_reproduce_the_raw_score(scored, head):
    model, primary, fallback = scored
    scores = primary if head == "primary" else fallback
    assert scores.head is (model.primary if head == "primary" else model.fallback)
    rows = list(range(len(scores.raw)))
    for explanation, raw in zip(scores.explain(rows), scores.raw, strict=True):
        assert explanation.raw_score == pytest.approx(raw, abs=1e-9)
        by_reason = explanation.base_value + sum(r.contribution for r in explanation.reasons)
        assert by_reason == pytest.approx(raw, abs=1e-9)
        by_feature = explanation.base_value + sum(
            f.contribution for r in explanation.reasons for f in r.features
        )
        assert by_feature == pytest.approx(raw, abs=1e-9)


def test_every_feature_of_the_model_has_a_catalogued_reason(scored):
    model, _, _ = scored
    uncatalogued = [name for name in model.spec.names if reason_of(name) is OTHER]
    assert uncatalogued == []
    assert reason_of("phone_apps_24h").code == "R-PHONE-VELOCITY"
    assert reason_of("phone_valid").code == "R-PHONE-CHECK"  # not the phone's velocity
    assert reason_of("ip24_apps_28d").code == "R-IP-RANGE-VELOCITY"  # not the single address
    assert reason_of("nlp_purpose_near_copies_7d").code == "R-TEXT-TEMPLATE"


def test_reasons_name_the_values_behind_them(scored):
    _, scores, _ = scored
    explanation = scores.explain([int(np.argmax(scores.raw))])[0]
    top = explanation.risk_raising()
    assert top and all(r.contribution > 0 for r in top)
    assert [r.contribution for r in top] == sorted((r.contribution for r in top), reverse=True)
    first = top[0]
    assert first.description and first.description_zh
    assert first.features and first.features[0].name in scores.features.columns
    assert abs(first.features[0].contribution) == max(abs(f.contribution) for f in first.features)


def test_a_reason_as_stored_is_what_dataclasses_asdict_gives(scored):
    _, scores, _ = scored
    reasons = scores.explain([int(np.argmax(scores.raw))])[0].reasons
    assert len(reasons) > 1 and any(r.features for r in reasons)
    for reason in reasons:
        # The same JSON the audit record held when it was written with asdict.
        assert json.dumps(reason.as_dict(), default=str) == json.dumps(asdict(reason), default=str)


async def test_review_and_decline_answers_carry_their_reasons_approvals_none(stub):
    risky = with_attributes(application(application_id="EXPLAIN-RISKY", **RISKY_CHANGES))
    clean = with_attributes(application(application_id="EXPLAIN-CLEAN"))
    seen = {}
    for app in (clean, risky):
        r = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
        seen[r.decision] = r
    assert pb.DECISION_APPROVE in seen and len(seen) == 2, "the fixtures no longer span two decisions"
    assert list(seen[pb.DECISION_APPROVE].reasons) == []
    flagged = next(r for d, r in seen.items() if d != pb.DECISION_APPROVE)
    assert 1 <= len(flagged.reasons) <= 4
    assert all(r.contribution > 0 and r.code.startswith("R-") for r in flagged.reasons)
    assert all(r.description and r.description_zh and r.features for r in flagged.reasons)
