"""Errors of the scoring core, each knowing the gRPC status it maps to.

    FraudscoreError
    ├── InvalidApplicationError   INVALID_ARGUMENT    the request names the bad field and why
    ├── InvalidRequestError       INVALID_ARGUMENT    another request (an outcome) names its bad field
    ├── OverloadedError           RESOURCE_EXHAUSTED  the queue is full; retry with backoff
    ├── DeadlineExceededError     DEADLINE_EXCEEDED   the caller's deadline passed before scoring
    ├── BundleError               FAILED_PRECONDITION a model bundle is missing, tampered or unreadable
    ├── NotReadyError             UNAVAILABLE         the service is starting or shutting down
    ├── IdempotencyConflictError  ALREADY_EXISTS      the application_id was scored with another payload
    ├── UnknownApplicationError   NOT_FOUND           no decision is stored under the application_id
    └── ScoringFailedError        INTERNAL            a fault of ours; details only in the server log

The core raises these; only `scoring.grpc_server` turns them into wire statuses, in one place.
"""

from __future__ import annotations

from typing import Final

import grpc

from features.schema import ValidationError

# gRPC carries a status's details in a header, and clients drop a call whose headers pass 16 KiB;
# a message that quotes a value sent (an id) stays far below that.
MAX_DETAILS: Final = 2_000


class FraudscoreError(Exception):
    """Base of every error the service reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def grpc_status_code(self) -> grpc.StatusCode:
        return self.code

    def details(self) -> str:
        """The message as the wire carries it: at most `MAX_DETAILS` characters."""
        text = str(self)
        return text if len(text) <= MAX_DETAILS else text[: MAX_DETAILS - 3] + "..."


class InvalidApplicationError(FraudscoreError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    @classmethod
    def from_validation(cls, error: ValidationError) -> InvalidApplicationError:
        return cls(str(error))


class InvalidRequestError(FraudscoreError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class OverloadedError(FraudscoreError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(FraudscoreError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class BundleError(FraudscoreError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotReadyError(FraudscoreError):
    code = grpc.StatusCode.UNAVAILABLE


class ScoringFailedError(FraudscoreError):
    """Scoring broke for reasons that are not the caller's; the message never carries data."""

    code = grpc.StatusCode.INTERNAL


class IdempotencyConflictError(FraudscoreError):
    """The application_id was already scored with a different payload; the message names the id, never
    the payload."""

    code = grpc.StatusCode.ALREADY_EXISTS


class UnknownApplicationError(FraudscoreError):
    """No scoring decision is stored under the application_id (an outcome for it cannot be recorded)."""

    code = grpc.StatusCode.NOT_FOUND
