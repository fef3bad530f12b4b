"""Bad input through the real gRPC server (the session's, from tests/conftest.py): malformed protobuf
bytes, strings that are not UTF-8, oversized messages and fields, out-of-range numbers and times,
odd Unicode, control characters, huge and prompt-injection texts, wrong enums, missing fields
(strategies in tests/strategies.py), to Score, ScoreBatch, ReportOutcome, Explain and GetModelInfo.

Whatever comes in, the answer is OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED (and NOT_FOUND for a
well-formed id never scored), never UNKNOWN or INTERNAL; an INVALID_ARGUMENT names the field path and
what was expected; no planted personal value comes back, in an error or in an answer. The number of
inputs sent is printed at the end of the module ("bad input: N requests sent ...").
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import given
from hypothesis import strategies as st

from features.schema import APPLICATION_ID, FIELDS
from scoring.errors import MAX_DETAILS, InvalidRequestError
from scoring.settings import Settings
from scoring.v1 import scoring_pb2 as pb
from tests import strategies as bad
from tests.conftest import RISKY_CHANGES

OK, INVALID, EXHAUSTED, NOT_FOUND = (
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
)
DECISIONS = {pb.DECISION_APPROVE, pb.DECISION_REVIEW, pb.DECISION_DECLINE}
SERVICE = "/fraudscore.v1.FraudScoring/"
REQUEST_TYPES: dict[str, type[Message]] = {
    "Score": pb.ScoreRequest,
    "ReportOutcome": pb.ReportOutcomeRequest,
    "Explain": pb.ExplainRequest,
    "GetModelInfo": pb.GetModelInfoRequest,
}
# The paths a refusal may start with: the application's fields, the other requests' fields, and
# "request" for bytes that are not a message at all.
KNOWN_PATHS = {f.path for f in FIELDS} | {
    "application",
    "attributes",
    "request",
    "application_id",
    "outcome",
    "reviewer",
    "fraud_type",
    "note",
    "concluded_at",
}
# One refusal: a path, then what was expected ("must ...", "is required", "is not valid UTF-8 ...").
REFUSAL = re.compile(
    r"(?:^|; )(?P<path>attributes\[.*?\]|[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*) "
    r"(?P<expected>must |is required|is not |key must )"
)


class Tally:
    """What was sent and what came back, printed when the module is done."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def line(self) -> str:
        methods = ", ".join(f"{m} {n}" for m, n in sorted(self.sent.items()))
        codes = ", ".join(f"{c} {n}" for c, n in self.codes.most_common())
        return f"bad input: {sum(self.sent.values())} requests sent ({methods}); answers: {codes}"


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def report_the_count(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints the tally when the module is done, past pytest's output capture."""
    yield
    line = TALLY.line()
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(line)


async def call(channel: grpc.aio.Channel, method: str, data: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """Sends raw bytes to a unary method; (status, details, response bytes)."""
    TALLY.sent[method] += 1
    rpc = channel.unary_unary(SERVICE + method)
    try:
        body: bytes = await rpc(data, timeout=30)
    except grpc.aio.AioRpcError as exc:
        TALLY.codes[exc.code().name] += 1
        return exc.code(), exc.details() or "", b""
    TALLY.codes["OK"] += 1
    return OK, "", body


def refused_paths(details: str) -> list[str]:
    """The field paths a refusal names, in order; fails unless it starts with one."""
    found = [m["path"] for m in REFUSAL.finditer(details)]
    assert REFUSAL.match(details) and found, f"names no field path and expectation: {details!r}"
    for path in found:
        assert path in KNOWN_PATHS or path.startswith("attributes["), f"unknown path {path!r} in {details!r}"
    return found


def judge(
    code: grpc.StatusCode,
    details: str,
    planted: bad.Planted,
    *,
    size: int,
    limit: int,
    also: frozenset[grpc.StatusCode] = frozenset(),
) -> None:
    """The checks every answer passes."""
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (code, details)
    assert code in {OK, INVALID, EXHAUSTED} | also, (code, details)
    # gRPC refuses a message over the limit before the service sees it, and nothing else is too big.
    assert (code == EXHAUSTED) == (size > limit), (code, size, details)
    assert "Traceback" not in details and 'File "' not in details, details
    assert not planted.leaked_into(details), (planted.leaked_into(details), details)
    if code == INVALID:
        refused_paths(details)


def check_scored(body: bytes, app: pb.LoanApplication, planted: bad.Planted) -> pb.ScoreResponse:
    response = pb.ScoreResponse.FromString(body)
    assert response.application_id == app.application_id
    assert 0.0 <= response.fraud_probability <= 1.0
    assert response.decision in DECISIONS
    assert not planted.leaked_into(body.decode("utf-8", "replace")), "an answer carries a personal value"
    return response


@pytest.fixture(scope="module")
def limit(settings: Settings) -> int:
    return settings.max_message_bytes


@pytest.fixture(scope="module")
async def scored_id(channel: grpc.aio.Channel) -> str:
    """A scored application of its own identity, for ReportOutcome and Explain."""
    app = bad.fresh_application()
    code, details, _ = await call(channel, "Score", pb.ScoreRequest(application=app).SerializeToString())
    assert code == OK, details
    return app.application_id


# -- Score ----------------------------------------------------------------------------------------
# A field whose change may make another field's rule fail: the age rule names the date of birth,
# a SMALL_BUSINESS product needs an industry code.
COMPANIONS = {"submitted_at": {"applicant.date_of_birth"}, "product": {"business.industry_code"}}


@bad.examples(300)
@given(case=bad.one_field_changed())
async def test_one_odd_field_is_scored_or_refused_by_its_path(channel, limit, case):
    data = pb.ScoreRequest(application=case.app).SerializeToString()
    code, details, body = await call(channel, "Score", data)
    judge(code, details, case.planted, size=len(data), limit=limit)
    if code == OK:
        check_scored(body, case.app, case.planted)
    elif code == INVALID:
        (changed,) = case.changed
        allowed = {changed} | COMPANIONS.get(changed, set())
        for path in refused_paths(details):
            assert path in allowed or (changed == "attributes" and path.startswith("attributes")), (
                changed,
                details,
            )


@bad.examples(200)
@given(case=bad.mangled_application())
async def test_mangled_applications_get_ok_or_a_refusal_naming_fields(channel, limit, case):
    data = pb.ScoreRequest(application=case.app).SerializeToString()
    code, details, body = await call(channel, "Score", data)
    judge(code, details, case.planted, size=len(data), limit=limit)
    if code == OK:
        check_scored(body, case.app, case.planted)


@bad.examples(60)
@given(case=bad.missing_required())
async def test_every_missing_required_field_is_named(channel, limit, case):
    data = pb.ScoreRequest(application=case.app).SerializeToString()
    code, details, _ = await call(channel, "Score", data)
    judge(code, details, case.planted, size=len(data), limit=limit)
    leaves = bad.required_leaves(case.changed, case.app)
    if not leaves:  # e.g. the business message of a consumer application
        assert code == OK, details
        return
    assert code == INVALID, details
    named = refused_paths(details)
    if re.search(r"; and \d+ more$", details):
        assert len(named) == 10 and set(named) <= leaves, details
    else:
        assert set(named) == leaves, (case.changed, details)


# -- bytes that are not a message ---------------------------------------------------------------
def _valid(method: str, scored_id: str) -> Message:
    if method == "Score":
        return pb.ScoreRequest(application=bad.fresh_application())
    if method == "ReportOutcome":
        return pb.ReportOutcomeRequest(
            application_id=scored_id, outcome=pb.OUTCOME_UNKNOWN, reviewer="officer-7"
        )
    if method == "Explain":
        return pb.ExplainRequest(application_id=scored_id)
    return pb.GetModelInfoRequest()


def _not_found_allowed(method: str, data: bytes) -> frozenset[grpc.StatusCode]:
    """NOT_FOUND is the contract for a well-formed id that was never scored."""
    if method not in ("ReportOutcome", "Explain"):
        return frozenset()
    try:
        parsed = REQUEST_TYPES[method].FromString(data)
    except DecodeError:
        return frozenset()
    well_formed = APPLICATION_ID.fullmatch(getattr(parsed, "application_id", ""))
    return frozenset({NOT_FOUND}) if well_formed else frozenset()


@pytest.mark.parametrize("method", ["Score", "ReportOutcome", "Explain", "GetModelInfo"])
@bad.examples(80)
@given(data=st.data())
async def test_corrupt_bytes_are_refused_as_invalid_argument(channel, limit, scored_id, method, data):
    case = data.draw(bad.corrupt_bytes(lambda: _valid(method, scored_id)))
    code, details, _ = await call(channel, method, case.data)
    judge(
        code,
        details,
        case.planted,
        size=len(case.data),
        limit=limit,
        also=_not_found_allowed(method, case.data),
    )
    try:
        REQUEST_TYPES[method].FromString(case.data)
    except DecodeError:
        assert code == INVALID, details
        assert details.startswith(f"request is not a valid {REQUEST_TYPES[method].__name__} message: "), (
            details
        )


@pytest.mark.parametrize("method", ["Score", "ReportOutcome", "Explain"])
@bad.examples(50)
@given(data=st.data())
async def test_a_string_that_is_not_utf8_is_refused_naming_its_path(channel, limit, scored_id, method, data):
    message_type = REQUEST_TYPES[method]
    case = data.draw(bad.not_utf8_request(message_type, lambda: _valid(method, scored_id)))
    code, details, _ = await call(channel, method, case.data)
    judge(code, details, case.planted, size=len(case.data), limit=limit)
    assert code == INVALID, details
    assert details == (
        f"request is not a valid {message_type.__name__} message: "
        f"{case.not_utf8_at} is not valid UTF-8 (protobuf strings must be UTF-8)"
    )


# -- oversized ------------------------------------------------------------------------------------
@st.composite
def oversized(draw: st.DrawFn, scored_id: str, limit: int) -> tuple[str, bad.RawCase, str]:
    """(method, request, the field its refusal names) for a field or message near or beyond a limit."""
    method, data, named = draw(_oversized(scored_id, limit))
    return method, bad.RawCase(data, bad.Planted()), named


@st.composite
def _oversized(draw: st.DrawFn, scored_id: str, limit: int) -> tuple[str, bytes, str]:
    kind = draw(st.sampled_from(("text", "padding", "attributes", "explain_id", "note")))
    if kind == "text":
        length = draw(st.sampled_from((4_001, 100_000, 300_000)))
        app = bad.fresh_application()
        app.text.loan_purpose = draw(st.sampled_from(("x", "😀", "贷"))) * length
        return "Score", pb.ScoreRequest(application=app).SerializeToString(), "text.loan_purpose"
    if kind == "padding":  # unknown fields are skipped: only the message's size matters
        size = draw(st.sampled_from((limit - 10_000, limit - 64, limit + 1_000, 2 * limit)))
        valid = pb.ScoreRequest(application=bad.fresh_application()).SerializeToString()
        filler = size - len(valid) - 10
        return "Score", valid + bad.length_delimited(999, b"\x00" * filler), ""
    if kind == "attributes":
        app = bad.fresh_application()
        for i in range(draw(st.sampled_from((65, 5_000)))):
            app.attributes[f"a{i}"].text = "v"
        return "Score", pb.ScoreRequest(application=app).SerializeToString(), "attributes"
    if kind == "explain_id":
        length = draw(st.sampled_from((129, 200_000, 2 * limit)))
        return "Explain", pb.ExplainRequest(application_id="x" * length).SerializeToString(), "application_id"
    length = draw(st.sampled_from((2_001, 500_000, 2 * limit)))
    request = pb.ReportOutcomeRequest(
        application_id=scored_id, outcome=1, reviewer="officer-7", note="n" * length
    )
    return "ReportOutcome", request.SerializeToString(), "note"


@bad.examples(20)
@given(data=st.data())
async def test_oversized_messages_and_fields_are_refused(channel, limit, scored_id, data):
    method, case, named = data.draw(oversized(scored_id, limit))
    code, details, _ = await call(channel, method, case.data)
    judge(code, details, case.planted, size=len(case.data), limit=limit)
    if code == INVALID:
        assert refused_paths(details) == [named], details
    elif code == OK:
        assert not named


# -- ScoreBatch -----------------------------------------------------------------------------------
@st.composite
def batch_item(draw: st.DrawFn) -> tuple[bad.RawCase, bool]:
    """(the item, whether it must be scored)."""
    kind = draw(st.sampled_from(("valid", "mangled", "corrupt", "not_utf8")))
    if kind == "valid":
        app = bad.fresh_application()
        return bad.RawCase(pb.ScoreRequest(application=app).SerializeToString(), bad.Planted()), True
    if kind == "mangled":
        case = draw(bad.mangled_application())
        return bad.RawCase(pb.ScoreRequest(application=case.app).SerializeToString(), case.planted), False
    valid = lambda: pb.ScoreRequest(application=bad.fresh_application())  # noqa: E731
    strategy = bad.corrupt_bytes(valid) if kind == "corrupt" else bad.not_utf8_request(pb.ScoreRequest, valid)
    return draw(strategy), False


@bad.examples(40)
@given(items=st.lists(batch_item(), min_size=1, max_size=6))
async def test_a_batch_answers_every_item_in_order_and_goes_on_after_bad_ones(channel, limit, items):
    TALLY.sent["ScoreBatch"] += len(items)

    async def requests() -> AsyncIterator[bytes]:
        for item, _ in items:
            yield item.data

    stream = channel.stream_stream(SERVICE + "ScoreBatch")
    answers: list[pb.ScoreBatchItem] = []
    try:
        async for raw in stream(requests(), timeout=60):
            answers.append(pb.ScoreBatchItem.FromString(raw))
        code, details = OK, ""
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
    TALLY.codes[f"ScoreBatch {code.name}"] += 1
    largest = max(len(item.data) for item, _ in items)
    planted = bad.Planted([c for item, _ in items for c in item.planted.canaries])
    judge(code, details, planted, size=largest, limit=limit)
    if code != OK:
        return
    assert [a.index for a in answers] == list(range(len(items)))
    for answer, (item, must_score) in zip(answers, items, strict=True):
        if answer.WhichOneof("result") == "error":
            assert answer.error.code == "INVALID_ARGUMENT", answer.error
            assert not must_score, answer.error.message
            assert not item.planted.leaked_into(answer.error.message), answer.error.message
            refused_paths(answer.error.message)
        else:
            sent = pb.ScoreRequest.FromString(item.data).application
            check_scored(answer.response.SerializeToString(), sent, item.planted)


# -- ReportOutcome and Explain ------------------------------------------------------------------
def outcome_problems(request: pb.ReportOutcomeRequest, now: int) -> set[str]:
    """The fields of an outcome report the service must refuse (the contract in the proto)."""
    problems = set()
    if not APPLICATION_ID.fullmatch(request.application_id):
        problems.add("application_id")
    if request.outcome not in (1, 2, 3):
        problems.add("outcome")
    if not request.reviewer.strip() or len(request.reviewer) > 128:
        problems.add("reviewer")
    if len(request.fraud_type) > 64:
        problems.add("fraud_type")
    if len(request.note) > 2000:
        problems.add("note")
    if request.HasField("concluded_at"):
        seconds, nanos = request.concluded_at.seconds, request.concluded_at.nanos
        if not (0 <= nanos <= 999_999_999 and 946_684_800 <= seconds <= now + 300):
            problems.add("concluded_at")
    return problems


@bad.examples(150)
@given(data=st.data())
async def test_outcome_reports_are_recorded_or_refused_naming_every_bad_field(
    channel, limit, scored_id, data
):
    request, planted = data.draw(bad.outcome_request(scored_id))
    payload = request.SerializeToString()
    now = int(time.time())
    code, details, _ = await call(channel, "ReportOutcome", payload)
    judge(code, details, planted, size=len(payload), limit=limit, also=frozenset({NOT_FOUND}))
    problems = outcome_problems(request, now)
    if problems:
        assert code == INVALID, (problems, details)
        assert set(refused_paths(details)) == problems, details
    elif request.application_id == scored_id:
        assert code == OK, details
    else:
        assert code == NOT_FOUND, details


@bad.examples(100)
@given(data=st.data())
async def test_explain_answers_a_stored_decision_and_refuses_ids_no_decision_can_have(
    channel, limit, scored_id, data
):
    application_id = data.draw(bad.explain_ids(scored_id))
    payload = pb.ExplainRequest(application_id=application_id).SerializeToString()
    code, details, body = await call(channel, "Explain", payload)
    judge(code, details, bad.Planted(), size=len(payload), limit=limit, also=frozenset({NOT_FOUND}))
    if len(payload) > limit:
        return
    if application_id == scored_id:
        assert code == OK and pb.ExplainResponse.FromString(body).application_id == scored_id
    elif APPLICATION_ID.fullmatch(application_id):
        assert code == NOT_FOUND, details
    else:  # named, not echoed
        assert code == INVALID, details
        assert details in (
            "application_id is required",
            "application_id must be 1-128 characters of [A-Za-z0-9._:-], as it was scored",
        )


# -- prompt injection -----------------------------------------------------------------------------
# The risky application's signals, less its identity (phone, email, id): each application keeps
# one of its own.
RISKY_SIGNALS = {
    k: v
    for k, v in RISKY_CHANGES.items()
    if k not in ("applicant.email", "applicant.national_id", "applicant.phone")
}
NEUTRAL_TEXTS = (
    "Buying a second-hand delivery van for my bakery route.",
    "Consolidating two store cards into one lower payment.",
)


@pytest.mark.parametrize("risky", [False, True], ids=["plain", "risky"])
async def test_prompt_injection_text_gets_the_decision_a_neutral_text_gets(channel, risky):
    """Text is a feature like any other: an instruction in it buys nothing. The same application
    (each under an identity of its own, so history plays no part) is scored with neutral texts and
    with injection texts; every answer is a normal one, and the decision is the neutral one."""

    async def score(text: str) -> pb.ScoreResponse:
        app = bad.fresh_application()
        for path, value in (RISKY_SIGNALS if risky else {}).items():
            message, name = bad.parent_of(app, path)
            setattr(message, name, value)
        app.text.loan_purpose = text
        data = pb.ScoreRequest(application=app).SerializeToString()
        code, details, body = await call(channel, "Score", data)
        assert code == OK, details
        response = check_scored(body, app, bad.Planted())
        assert not response.degraded, response.degraded_reason
        assert text not in body.decode("utf-8", "replace")
        return response

    neutral = [await score(t) for t in NEUTRAL_TEXTS]
    assert len({r.decision for r in neutral}) == 1, [r.fraud_probability for r in neutral]
    for text in bad.PROMPT_INJECTION:
        injected = await score(text)
        assert injected.decision == neutral[0].decision, (text, injected.fraud_probability)


def test_error_details_on_the_wire_are_bounded():
    """gRPC clients drop a call whose status details pass 16 KiB: a message quoting a long value is cut."""
    assert InvalidRequestError("x" * 100_000).details() == "x" * (MAX_DETAILS - 3) + "..."
    assert (
        InvalidRequestError("loan.amount must be > 0 (got -5)").details()
        == "loan.amount must be > 0 (got -5)"
    )
