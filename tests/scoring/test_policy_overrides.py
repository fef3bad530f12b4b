"""Lender policy through the real surface: allow/deny lists of hashed identifiers override the
model's decision and say so as the first reason; thresholds from settings replace the bundle's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

from features.history_store import SQLiteHistoryStore
from scoring.errors import BundleError
from scoring.grpc_server import Server
from scoring.lists import PolicyLists
from scoring.model import ScoringModel
from scoring.policy import Decision
from scoring.service import ScoringService
from scoring.text import TextRuntime
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from tests.conftest import application, example, with_attributes


def _entry(settings, kind: str, value: str) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "scoring.cli", "lists", "hash", "--kind", kind, "--value", value],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FRAUDSCORE_DATA_DIR": str(settings.data_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)
    assert value not in proc.stdout  # only the keyed hash is printed
    return entry


async def test_deny_and_allow_lists_override_the_decision(settings, tmp_path):
    sample = example("consumer-application.json")
    lists_file = tmp_path / "lists.json"
    deny = _entry(settings, "phone", sample["applicant"]["phone"].replace("+1", "+1 "))  # normalised alike
    allow = _entry(settings, "email", "Allowed.Person@Example.com")
    lists_file.write_text(json.dumps({"deny": [deny], "allow": [allow]}))
    model = ScoringModel.load(settings.resolved_bundle())
    own = settings.model_copy(update={"text_index_path": tmp_path / "idx.sqlite"})
    text = TextRuntime(model, own)
    service = ScoringService(
        model,
        own,
        history=SQLiteHistoryStore(":memory:"),
        history_secret=own.resolved_history_secret(),
        text=text,
        lists=PolicyLists.load(lists_file),
    )
    server = Server(service, own)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            clean = with_attributes(application())
            denied = await stub.Score(pb.ScoreRequest(application=clean), timeout=10)
            assert denied.decision == pb.DECISION_DECLINE
            assert denied.reasons[0].code == "R-DENY-LIST-PHONE"
            assert "deny list" in denied.reasons[0].description and denied.reasons[0].description_zh
            assert 0.0 <= denied.fraud_probability < 0.5  # the model's own view is still answered
            allowed = await stub.Score(
                pb.ScoreRequest(
                    application=application(
                        **{"applicant.email": "allowed.person@example.com", "applicant.phone": "+15550100999"}
                    )
                ),
                timeout=10,
            )
            assert allowed.decision == pb.DECISION_APPROVE
            assert allowed.reasons[0].code == "R-ALLOW-LIST-EMAIL"
    finally:
        await server.stop(grace=1.0)
        text.close()


def test_a_list_file_with_a_clear_value_is_refused(tmp_path):
    path = tmp_path / "lists.json"
    path.write_text(json.dumps({"deny": [{"kind": "phone", "hash": "+15550100"}]}))
    with pytest.raises(ValueError, match=r"deny\[0\]\.hash must be 32 hex characters"):
        PolicyLists.load(path)


def test_thresholds_from_settings_replace_the_bundles(bundle_dir):
    model = ScoringModel.load(bundle_dir)
    model.override_thresholds({"CONSUMER": {"review": 0.0, "decline": 0.0}})
    assert model.policy.decide(0.0001, "CONSUMER") is Decision.DECLINE
    assert model.fallback is not None and model.fallback.policy.decide(0.0001, "CONSUMER") is Decision.DECLINE
    assert model.policy.decide(0.0001, "SMALL_BUSINESS") is Decision.APPROVE  # untouched
    with pytest.raises(BundleError, match="unknown products"):
        model.override_thresholds({"MORTGAGE": {"review": 0.1, "decline": 0.2}})
    with pytest.raises(BundleError, match="review <= decline"):
        model.override_thresholds({"CONSUMER": {"review": 0.9, "decline": 0.1}})
