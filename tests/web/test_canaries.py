"""Personal data never reaches a log line or a metric: canary identities go through scoring, refusals,
batches, outcomes, explanations and officer actions on the review page with every logger at DEBUG;
then every log line, the metrics exposition and the officer log file are searched for them."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import aiohttp
import grpc
import pytest

from scoring.logs import JsonFormatter
from scoring.v1 import scoring_pb2 as pb
from tests.conftest import application
from tests.web.conftest import OFFICER

CANARIES = {
    "applicant.first_name": "Zqcanaryfirst",
    "applicant.last_name": "Qxcanarylast",
    "applicant.email": "zq.canary91@example.org",
    "applicant.phone": "+14155550917",
    "applicant.national_id": "519-77-4410",
    "applicant.employer": "Canaryzq Holdings",
    "applicant.address.line1": "77 Canaryzq Lane",
    "channel.device_id": "canaryzq-device-4471",
    "channel.ip_address": "198.51.100.201",
    "bank_account.account_number": "990011223344",
    "text.loan_purpose": "Canaryzq purpose: paying for my canaryzq bakery oven",
    "text.employment_description": "Canaryzq baker for nine years",
}
NOTE = "Spoke to Zqcanaryfirst at +14155550917"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def every_log_line():
    root = logging.getLogger()
    handler, level = Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def planted(text: str) -> list[str]:
    """The canaries found in `text` (case-insensitive; digits of phones and ids on their own too)."""
    found = [v for v in CANARIES.values() if v.lower() in text.lower()]
    found += [
        v
        for v in ("Canaryzq", "zqcanary", "4155550917", "519774410", "990011223344")
        if v.lower() in text.lower()
    ]
    return found


async def test_no_canary_in_logs_metrics_or_the_officer_log(stub, review, base_url, every_log_line):
    good = application(**CANARIES)
    await stub.Score(pb.ScoreRequest(application=good), timeout=10)
    await stub.Score(pb.ScoreRequest(application=good), timeout=10)  # a retry, answered from the record
    refusals = 0
    for change in ({"loan.amount": -5}, {"loan.term_months": -3}):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Score(pb.ScoreRequest(application=application(**{**CANARIES, **change})), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        refusals += 1
    clash = application(**{**CANARIES, "applicant.first_name": "Otherzq"}, application_id=good.application_id)
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await stub.Score(pb.ScoreRequest(application=clash), timeout=10)
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS and not planted(
        conflict.value.details() or ""
    )
    batch = [
        pb.ScoreRequest(application=application(**CANARIES)),
        pb.ScoreRequest(application=application(**{**CANARIES, "loan.amount": -1})),
    ]
    items = [item async for item in stub.ScoreBatch(iter(batch), timeout=30)]
    assert len(items) == 2 and items[1].HasField("error") and not planted(items[1].error.message)
    await stub.ReportOutcome(
        pb.ReportOutcomeRequest(
            application_id=good.application_id, outcome=pb.OUTCOME_CONFIRMED_FRAUD, reviewer="o-1", note=NOTE
        ),
        timeout=10,
    )
    await stub.Explain(pb.ExplainRequest(application_id=good.application_id), timeout=10)

    # An officer opens the case, records an outcome with a note quoting the applicant, signs out.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await http.post(f"{base_url}/login", data={"username": OFFICER[0], "password": OFFICER[2]})
        async with http.get(f"{base_url}/case/{good.application_id}") as r:
            page = await r.text()
            assert r.status == 200 and CANARIES["text.loan_purpose"] in page  # officers do see the text
        token = re.search(r'name="token" value="([^"]+)"', page)
        assert token is not None
        async with http.post(
            f"{base_url}/case/{good.application_id}/outcome",
            data={"outcome": "LEGITIMATE", "note": NOTE, "token": token.group(1)},
        ) as r:
            assert r.status == 200
        async with http.get(
            f"{base_url}/queue?status=all&min_score=0&decision=APPROVE&decision=REVIEW&decision=DECLINE"
        ) as r:
            assert r.status == 200
        await http.post(f"{base_url}/logout", data={"token": token.group(1)})

    assert len(every_log_line) > 10  # the logs did run at DEBUG: scored, refused, review requests
    assert any('"event": "scored"' in line for line in every_log_line)
    assert any('"event": "review request"' in line for line in every_log_line)
    searched = {
        "log lines": "\n".join(every_log_line),
        "metrics": review.service.metrics.exposition().decode(),
        "officer log": b"".join(
            p.read_bytes() for p in (Path(review.log.path), Path(review.log.path + "-wal")) if p.exists()
        ).decode("utf-8", "replace"),
    }
    found = {where: planted(text) for where, text in searched.items()}
    assert found == {where: [] for where in searched}, found
    print(f"canaries planted: {len(CANARIES)} fields, {refusals} refusals, 1 conflict; found: 0")
