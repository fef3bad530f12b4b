"""Conversions between the protobuf messages of `fraudscore.v1` and the core's domain objects.

Fields are read generically by their dotted path from `features.schema.FIELDS`, so the wire and the
canonical table cannot drift apart silently: a path that does not exist in the message fails the
first conversion (and the tests).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from features.schema import (
    APPLICATION_ID,
    EARLIEST_SUBMISSION,
    FIELDS,
    FUTURE_TOLERANCE,
    FieldError,
    Unreadable,
)
from scoring.errors import InvalidRequestError
from scoring.explain import Explanation, Reason
from scoring.results import ModelDescription, ScoreResult
from scoring.v1 import scoring_pb2 as pb

_PRODUCT_TO_PB = {"CONSUMER": pb.PRODUCT_CONSUMER, "SMALL_BUSINESS": pb.PRODUCT_SMALL_BUSINESS}
_DECISION_TO_PB = {
    "APPROVE": pb.DECISION_APPROVE,
    "REVIEW": pb.DECISION_REVIEW,
    "DECLINE": pb.DECISION_DECLINE,
}
_BAD_TIMESTAMP = "is not a valid timestamp (seconds within years 1-9999, nanos within 0-999,999,999)"
_BAD_APPLICATION_ID = "must be 1-128 characters of [A-Za-z0-9._:-], as it was scored"


@dataclass(frozen=True, slots=True)
class _Path:
    """How to read one dotted path of a message type, worked out once from its descriptors."""

    parents: tuple[str, ...]
    name: str
    presence: bool  # a message (a Timestamp comes back as one) or a field with presence: None unset
    enum: Mapping[int, str] | None  # number -> name without the enum's prefix (0, unspecified: None)


@functools.cache
def _path(descriptor: Descriptor, path: str) -> _Path:
    *parents, name = path.split(".")
    for part in parents:
        parent = descriptor.fields_by_name[part].message_type
        if parent is None:
            raise ValueError(f"{path}: {part} is not a message")
        descriptor = parent
    field = descriptor.fields_by_name[name]
    enum = None
    if field.enum_type is not None:
        prefix = field.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
        enum = {v.number: v.name.removeprefix(prefix) for v in field.enum_type.values if v.number != 0}
    return _Path(tuple(parents), name, field.message_type is not None or field.has_presence, enum)


def _leaf(message: Message, path: str) -> Any:
    """The value at `path`, or None when it (or a message above it) is not set."""
    how = _path(message.DESCRIPTOR, path)
    for part in how.parents:
        if not message.HasField(part):
            return None
        message = getattr(message, part)
    if how.presence and not message.HasField(how.name):
        return None
    value = getattr(message, how.name)
    if how.enum is None:
        return value
    if value == 0:
        return None
    return how.enum.get(value, f"<unknown enum value {value}>")


def application_from_pb(app: pb.LoanApplication) -> tuple[dict[str, Any], dict[str, Any], list[FieldError]]:
    """(raw canonical row, lender attributes, errors found while reading) of an application.

    Types and ranges are checked later by `features.schema.validate_row`, which adds its own errors
    to these, so the caller hears of every bad field at once."""
    errors: list[FieldError] = []
    row: dict[str, Any] = {}
    for f in FIELDS:
        value = _leaf(app, f.path)
        if f.column == "submitted_at" and value is not None:
            try:
                value = value.ToDatetime(tzinfo=dt.UTC)
            except (ValueError, OverflowError):
                value = Unreadable(_BAD_TIMESTAMP)  # reported by validation, not as "is required"
        row[f.column] = value
    attributes: dict[str, Any] = {}
    for key, v in app.attributes.items():
        kind = v.WhichOneof("kind")
        if kind is None:
            errors.append(FieldError(f"attributes[{key[:40]!r}]", "must set number, text or flag"))
        else:
            attributes[key] = getattr(v, kind)
    return row, attributes, errors


def result_to_pb(result: ScoreResult) -> pb.ScoreResponse:
    return pb.ScoreResponse(
        application_id=result.application_id,
        fraud_probability=result.probability,
        score=result.score,
        decision=_DECISION_TO_PB[result.decision.value],
        model_version=result.model_version,
        latency_ms=result.latency_ms,
        product=_PRODUCT_TO_PB.get(result.product, pb.PRODUCT_UNSPECIFIED),
        degraded=result.degraded,
        degraded_reason=result.degraded_reason,
        text_model=pb.TextModelInfo(encoder=result.text_encoder, execution_provider=result.text_provider),
        reasons=[reason_to_pb(r) for r in result.reasons],
    )


def feature_value(value: Any) -> str:
    """A scored feature's value for people: numbers to 6 significant digits, missing as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def reason_to_pb(reason: Reason) -> pb.Reason:
    return pb.Reason(
        code=reason.code,
        description=reason.description,
        description_zh=reason.description_zh,
        contribution=reason.contribution,
        features=[
            pb.FeatureContribution(name=f.name, value=feature_value(f.value), contribution=f.contribution)
            for f in reason.features
        ],
    )


def explanation_to_pb(
    application_id: str, model_version: str, degraded: bool, explanation: Explanation, probability: float
) -> pb.ExplainResponse:
    total = sum(abs(r.contribution) for r in explanation.reasons) or 1.0
    return pb.ExplainResponse(
        application_id=application_id,
        model_version=model_version,
        degraded=degraded,
        base_value=explanation.base_value,
        raw_score=explanation.raw_score,
        fraud_probability=probability,
        reasons=[reason_to_pb(r) for r in explanation.reasons],
        reason_shares=[abs(r.contribution) / total for r in explanation.reasons],
    )


def model_info_to_pb(info: ModelDescription) -> pb.ModelInfo:
    msg = pb.ModelInfo(
        model_version=info.version,
        created_at=info.created_at,
        training_data_fingerprint=info.training_data_fingerprint,
        lender_attributes=list(info.lender_attributes),
        calibration=info.calibration,
        synthetic_training_data=info.synthetic_training_data,
        text_model=pb.TextModelInfo(encoder=info.text_encoder, execution_provider=info.text_provider),
    )
    for name, kind in info.features:
        msg.features.add(name=name, kind=kind)
    for product, (review, decline) in info.thresholds.items():
        msg.thresholds.add(product=_PRODUCT_TO_PB[product], review=review, decline=decline)
    for product, m in info.metrics.items():
        msg.metrics.add(
            product=_PRODUCT_TO_PB[product],
            test_rows=m["rows"],
            test_positives=m["positives"],
            roc_auc=m["roc_auc"],
            pr_auc=m["pr_auc"],
            recall_at_1pct_fpr=m["recall_at_1pct_fpr"],
            recall_at_5pct_fpr=m["recall_at_5pct_fpr"],
            ks=m["ks"],
            calibration_error=m["calibration_error"],
        )
    return msg


def application_to_pb(row: dict[str, Any], attributes: dict[str, Any] | None = None) -> pb.LoanApplication:
    """A canonical row (as in training files) as a wire message: for clients, benchmarks and
    re-scoring files. Inverse of `application_from_pb` for every field that is set."""
    app = pb.LoanApplication()
    for f in FIELDS:
        value = row.get(f.column)
        if value is None:
            continue
        *parents, name = f.path.split(".")
        message: Message = app
        for part in parents:
            message = getattr(message, part)
        descriptor = message.DESCRIPTOR.fields_by_name[name]
        if f.column == "submitted_at":
            app.submitted_at.FromDatetime(value)
        elif descriptor.enum_type is not None:
            prefix = descriptor.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
            setattr(message, name, descriptor.enum_type.values_by_name[prefix + value].number)
        elif isinstance(value, dt.date):
            setattr(message, name, value.isoformat())
        else:
            setattr(message, name, value)
    for key, value in (attributes or {}).items():
        if isinstance(value, bool):
            app.attributes[key].flag = value
        elif isinstance(value, int | float):
            app.attributes[key].number = float(value)
        else:
            app.attributes[key].text = str(value)
    return app


_OUTCOMES = {
    pb.OUTCOME_CONFIRMED_FRAUD: "CONFIRMED_FRAUD",
    pb.OUTCOME_LEGITIMATE: "LEGITIMATE",
    pb.OUTCOME_UNKNOWN: "UNKNOWN",
}


def outcome_from_pb(request: pb.ReportOutcomeRequest) -> dict[str, Any]:
    """The arguments of `ScoringService.report_outcome`; raises InvalidRequestError naming every
    bad field (never echoing the note)."""
    problems = []
    if not request.application_id:
        problems.append("application_id is required")
    elif not APPLICATION_ID.fullmatch(request.application_id):
        problems.append(f"application_id {_BAD_APPLICATION_ID}")
    if request.outcome not in _OUTCOMES:
        problems.append("outcome must be CONFIRMED_FRAUD, LEGITIMATE or UNKNOWN")
    if not request.reviewer.strip():
        problems.append("reviewer is required")
    for name, limit in (("reviewer", 128), ("fraud_type", 64), ("note", 2000)):
        if len(getattr(request, name)) > limit:
            problems.append(f"{name} must be at most {limit:,} characters")
    at, problem = _concluded_at(request)
    if problem:
        problems.append(f"concluded_at {problem}")
    if problems:
        raise InvalidRequestError("; ".join(problems))
    return {
        "application_id": request.application_id,
        "outcome": _OUTCOMES[request.outcome],
        "fraud_type": request.fraud_type,
        "reviewer": request.reviewer.strip(),
        "note": request.note,
        "at": at,
    }


def _concluded_at(request: pb.ReportOutcomeRequest) -> tuple[dt.datetime | None, str]:
    """(the time an outcome was concluded or None for "when received", a problem with it or "").

    The latest outcome is the one with the latest time, so a time in the future would outrank every
    later correction: it is refused, as submission times are."""
    if not request.HasField("concluded_at"):
        return None, ""
    try:
        at = request.concluded_at.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        return None, _BAD_TIMESTAMP
    if at > dt.datetime.now(dt.UTC) + FUTURE_TOLERANCE:
        return None, "must not be in the future"
    if at < EARLIEST_SUBMISSION:
        return None, f"must be after {EARLIEST_SUBMISSION:%Y-%m-%d}"
    return at, ""


def request_problems(request: Message) -> list[str]:
    """What is wrong with a parsed request before the core sees it (an Explain's application_id that
    no scored application can have); names the field, never echoes it."""
    if not isinstance(request, pb.ExplainRequest) or not request.application_id:
        return []
    if not APPLICATION_ID.fullmatch(request.application_id):
        return [f"application_id {_BAD_APPLICATION_ID}"]
    return []


# -- where undecodable bytes go wrong ---------------------------------------------------------
_MAX_DEPTH = 100  # protobuf's own recursion limit


class _WireProblemError(Exception):
    """Stops the walk at the first problem; the message is the problem, named by field path."""


def decode_problem(descriptor: Descriptor, data: bytes) -> str:
    """Where bytes that protobuf refused to parse as `descriptor` go wrong, by field path: e.g.
    "application.applicant.first_name is not valid UTF-8". A best effort that never raises: a general
    sentence when the place is not found. Names fields only, never quotes the bytes."""
    try:
        _walk(descriptor, memoryview(data), "", 0)
    except _WireProblemError as problem:
        return str(problem)
    except Exception:  # a walker's own slip must not turn a refusal into INTERNAL
        pass
    return "the bytes are not a serialized message of this type (corrupt or truncated)"


def _varint(buf: memoryview, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf) and shift < 70:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _WireProblemError(f"{what} ends inside a varint (truncated or corrupt bytes)")


def _walk(descriptor: Descriptor | None, buf: memoryview, prefix: str, depth: int, group: int = 0) -> int:
    """Walks one message (or group) of `buf`; returns where it ended. `descriptor` is None inside
    unknown fields, whose contents are only checked for structure."""
    where = prefix.removesuffix(".") or "the message"
    if depth > _MAX_DEPTH:
        raise _WireProblemError(f"{where} nests more than {_MAX_DEPTH} levels deep")
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, where)
        number, wire_type = tag >> 3, tag & 7
        field = descriptor.fields_by_number.get(number) if descriptor is not None else None
        name = prefix + (field.name if field is not None else f"<field {number}>")
        if number == 0:
            raise _WireProblemError(f"{where} has a field numbered 0 (corrupt bytes)")
        if wire_type == 0:
            _, pos = _varint(buf, pos, name)
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
            if pos > len(buf):
                raise _WireProblemError(f"{name} ends early (truncated or corrupt bytes)")
        elif wire_type == 2:
            length, pos = _varint(buf, pos, name)
            if pos + length > len(buf):
                raise _WireProblemError(f"{name} is longer than the bytes left (truncated or corrupt bytes)")
            _check_chunk(field, buf[pos : pos + length], name, depth)
            pos += length
        elif wire_type == 3:
            pos += _walk(None, buf[pos:], name + ".", depth + 1, group=number)
        elif wire_type == 4:
            if number != group:
                raise _WireProblemError(f"{where} has an end-group tag that closes nothing (corrupt bytes)")
            return pos
        else:
            raise _WireProblemError(f"{name} has wire type {wire_type}, which does not exist (corrupt bytes)")
    if group:
        raise _WireProblemError(f"{where} is a group that never ends (truncated or corrupt bytes)")
    return pos


def _check_chunk(field: FieldDescriptor | None, chunk: memoryview, name: str, depth: int) -> None:
    if field is None:
        return
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            bytes(chunk).decode("utf-8")
        except UnicodeDecodeError:
            raise _WireProblemError(f"{name} is not valid UTF-8 (protobuf strings must be UTF-8)") from None
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _walk(field.message_type, chunk, name + ".", depth + 1)
