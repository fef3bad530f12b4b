"""Personal data at rest and on screen: how the audit store keeps an application's personal fields
(`pii` in `features.schema`), and how the officers' page shows them.

Two modes, chosen by settings (`audit_personal_data`):

- ``hash``: each personal value becomes "h:" + HMAC-SHA256(key, "column:value"): one-way, so equal
  values still match but nobody (officers included) can read them back.
- ``encrypt``: each personal value becomes "e:" + base64(nonce + AES-256-GCM ciphertext), bound to
  its application id and column (associated data), so a value cannot be moved to another record or
  field undetected. Officers see it masked (`mask`); the free texts in full, since they are what
  they review.

Both keys are derived from the audit secret; absent values stay None (absence is a signal, not
personal data).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from features.schema import PII_COLUMNS, TEXT_COLUMNS

Mode = Literal["encrypt", "hash"]
HASH_PREFIX: Final = "h:"
CIPHER_PREFIX: Final = "e:"
_NONCE: Final = 12
HIDDEN: Final = "•••"


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value  # datetime is a date too


def pseudonymise(row: Mapping[str, Any], secret: bytes) -> dict[str, Any]:
    """The row with every personal field replaced by "h:" + HMAC-SHA256(secret, "column:value") in
    hex. Dates and datetimes become ISO strings; other columns (lender attributes included) are kept
    as they are. The column is in the hashed text, so equal values in different fields do not match."""
    if not secret:
        raise ValueError("the audit secret must not be empty")
    out: dict[str, Any] = {}
    for column, value in row.items():
        text = iso(value)
        if column in PII_COLUMNS and text is not None:
            text = HASH_PREFIX + hmac.new(secret, f"{column}:{text}".encode(), hashlib.sha256).hexdigest()
        out[column] = text
    return out


def payload_digest(row: Mapping[str, Any]) -> str:
    """SHA-256 of a canonical row (validated, so trimmed and typed) as JSON with sorted keys: the same
    application sent twice has the same digest whatever the order of its fields."""
    text = json.dumps({k: iso(v) for k, v in row.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class PersonalData:
    """Protects (before storing) and reveals (for the officers' page) an application's personal
    fields under one mode and key."""

    def __init__(self, secret: bytes, mode: Mode = "hash") -> None:
        if not secret:
            raise ValueError("the audit secret must not be empty")
        if mode not in ("encrypt", "hash"):
            raise ValueError(f"personal data mode must be 'encrypt' or 'hash' (got {mode!r})")
        self.mode: Mode = mode
        self._hash_key = secret
        self._aead = AESGCM(hmac.new(secret, b"fraudscore-audit-encryption", hashlib.sha256).digest())

    def protect(self, application_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        if self.mode == "hash":
            return pseudonymise(row, self._hash_key)
        out: dict[str, Any] = {}
        for column, value in row.items():
            text = iso(value)
            if column in PII_COLUMNS and text is not None:
                nonce = os.urandom(_NONCE)
                sealed = self._aead.encrypt(nonce, str(text).encode(), _bound(application_id, column))
                text = CIPHER_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")
            out[column] = text
        return out

    def reveal(self, application_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """The stored row with encrypted fields decrypted (as strings); hashed ones stay hashes. A
        value that fails authentication (edited, moved, another key) raises ValueError naming the
        column, never showing the value."""
        out = dict(row)
        for column, value in row.items():
            if isinstance(value, str) and value.startswith(CIPHER_PREFIX):
                blob = base64.b64decode(value[len(CIPHER_PREFIX) :])
                try:
                    clear = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _bound(application_id, column))
                except InvalidTag:
                    raise ValueError(
                        f"stored {column} of {application_id!r} does not decrypt under this key "
                        "(edited, moved from another record, or another audit secret)"
                    ) from None
                out[column] = clear.decode()
        return out


def _bound(application_id: str, column: str) -> bytes:
    return f"{application_id}\x00{column}".encode()


def mask(column: str, value: Any) -> str:
    """How the officers' page shows a personal value: enough to recognise it on a call with the
    applicant, not enough to copy it. Hashed values cannot be shown at all."""
    if value is None:
        return "—"
    text = str(value)
    if text.startswith(HASH_PREFIX):
        return "(hashed)"
    if column in TEXT_COLUMNS:
        return text
    if column == "email" and "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}{HIDDEN}@{domain}"
    if column == "date_of_birth":
        return f"{text[:4]}-••-••"
    if column == "ip_address":
        sep = ":" if ":" in text else "."
        return f"{text.split(sep, maxsplit=1)[0]}{sep}{HIDDEN}"
    if column in ("phone", "national_id", "bank_account_number"):
        digits = [c for c in text if c.isalnum()]
        return f"{HIDDEN}{''.join(digits[-2:])}" if len(digits) > 4 else HIDDEN
    return f"{text[:1]}{HIDDEN}"
