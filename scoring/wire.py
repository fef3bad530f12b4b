"""Conversions between the protobuf messages of `fraudscore.v1` and the core's domain objects.

Fields are read generically by their dotted path from `features.schema.FIELDS`, so the wire and the
canonical table cannot drift apart silently: a path that does not exist in the message fails the
first conversion (and the tests).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf.message import Message

from features.schema import FIELDS, FieldError
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


def _leaf(message: Message, path: str) -> Any:
    """The value at `path`, or None when it (or a message above it) is not set."""
    *parents, name = path.split(".")
    for part in parents:
        if not message.HasField(part):
            return None
        message = getattr(message, part)
    descriptor = message.DESCRIPTOR.fields_by_name[name]
    if descriptor.message_type is not None or descriptor.has_presence:
        if not message.HasField(name):
            return None
        if (
            descriptor.message_type is not None
            and descriptor.message_type.full_name == "google.protobuf.Timestamp"
        ):
            return getattr(message, name)
    value = getattr(message, name)
    if descriptor.enum_type is not None:
        if value == 0:
            return None
        known = descriptor.enum_type.values_by_number.get(value)
        if known is None:
            return f"<unknown enum value {value}>"
        prefix = descriptor.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
        return known.name.removeprefix(prefix)
    return value


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
                errors.append(FieldError("submitted_at", "is not a valid timestamp"))
                value = None
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
    if request.outcome not in _OUTCOMES:
        problems.append("outcome must be CONFIRMED_FRAUD, LEGITIMATE or UNKNOWN")
    if not request.reviewer.strip():
        problems.append("reviewer is required")
    for name, limit in (("application_id", 128), ("reviewer", 128), ("fraud_type", 64), ("note", 2000)):
        if len(getattr(request, name)) > limit:
            problems.append(f"{name} must be at most {limit:,} characters")
    if problems:
        raise InvalidRequestError("; ".join(problems))
    at = request.concluded_at.ToDatetime(tzinfo=dt.UTC) if request.HasField("concluded_at") else None
    return {
        "application_id": request.application_id,
        "outcome": _OUTCOMES[request.outcome],
        "fraud_type": request.fraud_type,
        "reviewer": request.reviewer.strip(),
        "note": request.note,
        "at": at,
    }
