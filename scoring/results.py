"""What the scoring core returns: plain data, no transport types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scoring.explain import Reason
from scoring.policy import Decision


@dataclass(frozen=True, slots=True)
class ScoreResult:
    application_id: str
    product: str
    probability: float
    score: int
    decision: Decision
    model_version: str
    latency_ms: float
    degraded: bool = False
    degraded_reason: str = ""
    text_encoder: str = ""  # encoder identity; empty when the model uses no text
    text_provider: str = ""  # the ONNX Runtime provider that ran it
    reasons: tuple[Reason, ...] = ()  # risk-raising reasons (TreeSHAP) for REVIEW and DECLINE


@dataclass(frozen=True, slots=True)
class ModelDescription:
    version: str
    created_at: str
    training_data_fingerprint: str
    features: tuple[tuple[str, str], ...]
    lender_attributes: tuple[str, ...]
    thresholds: Mapping[str, tuple[float, float]]
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    calibration: str = ""
    synthetic_training_data: bool = False
    text_encoder: str = ""
    text_provider: str = ""
