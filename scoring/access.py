"""Who may call the gRPC service: TLS / mutual TLS credentials, per-client API keys and rate limits.

- **TLS**: `tls_cert` + `tls_key` serve TLS; with `tls_client_ca` too, clients must present a
  certificate signed by that CA (mutual TLS).
- **API keys** (`api_keys`, a JSON file written by `fraudscore clients add`): each client has a
  name, the SHA-256 of its key (the key itself is shown once, when made, and never stored), the
  methods it may call and a rate limit. A call carries its key in the `x-api-key` metadata. No key
  or an unknown key: `UNAUTHENTICATED`; a method the client may not call: `PERMISSION_DENIED`;
  over its rate: `RESOURCE_EXHAUSTED`. The health service stays open (load balancers probe it).
  Without an `api_keys` file every caller is let in, and the start says so.

Keys are 32 random bytes, so one SHA-256 is enough to store them (no slow hash is needed against
guessing; the lookup compares digests in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc

METHODS: Final = ("Score", "ScoreBatch", "GetModelInfo", "Explain", "ReportOutcome")
OPEN_SERVICES: Final = ("grpc.health.v1.Health",)
KEY_HEADER: Final = "x-api-key"
KEY_PREFIX: Final = "fsk_"
_NAME: Final = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


class AccessError(ValueError):
    """The TLS files or the API keys file are not usable; the message names the file and the problem."""


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    key_sha256: str
    methods: tuple[str, ...]
    rate_per_second: float  # 0: no limit
    burst: float


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_clients(path: Path) -> dict[str, Client]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["clients"]
        if not isinstance(entries, dict):
            raise TypeError("clients must be an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AccessError(f"API keys file {path} is unreadable: {exc}") from None
    out = {}
    for name, entry in entries.items():
        try:
            client = Client(
                name=name,
                key_sha256=str(entry["key_sha256"]),
                methods=tuple(entry.get("methods", METHODS)),
                rate_per_second=float(entry.get("rate_per_second", 0.0)),
                burst=float(entry.get("burst", max(1.0, 2 * float(entry.get("rate_per_second", 0.0))))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AccessError(f"API keys file {path}: client {name!r} is malformed ({exc})") from None
        unknown = [m for m in client.methods if m not in METHODS]
        if not _NAME.match(name) or unknown or not re.fullmatch(r"[0-9a-f]{64}", client.key_sha256):
            raise AccessError(
                f"API keys file {path}: client {name!r} is malformed (name, methods {unknown or 'ok'}, "
                "or key_sha256 not 64 hex digits)"
            )
        if client.rate_per_second < 0 or client.burst < 1:
            raise AccessError(f"API keys file {path}: client {name!r} needs rate >= 0 and burst >= 1")
        out[client.key_sha256] = client
    return out


def add_client(
    path: Path,
    name: str,
    *,
    methods: Sequence[str] = METHODS,
    rate_per_second: float = 0.0,
    burst: float = 0.0,
) -> str:
    """Adds a client (or replaces its key) and returns the new key: shown once, stored only hashed."""
    if not _NAME.match(name):
        raise AccessError(f"a client name is 2-64 of [a-z0-9._-], starting with a letter (got {name!r})")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise AccessError(f"unknown methods {unknown}: choose from {', '.join(METHODS)}")
    clients = {c.name: c for c in read_clients(path).values()} if path.exists() else {}
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    clients[name] = Client(
        name, _digest(key), tuple(methods), rate_per_second, burst or max(1.0, 2 * rate_per_second)
    )
    entries = {
        c.name: {
            "key_sha256": c.key_sha256,
            "methods": list(c.methods),
            "rate_per_second": c.rate_per_second,
            "burst": c.burst,
        }
        for c in clients.values()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"format": 1, "clients": entries}, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return key


class ApiKeys:
    """Checks a call's key, method and rate; thread-safe."""

    def __init__(self, clients: Mapping[str, Client]) -> None:
        self._clients = dict(clients)
        self._buckets = {
            c.key_sha256: _Bucket(c.rate_per_second, c.burst, c.burst)
            for c in clients.values()
            if c.rate_per_second
        }
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        return cls(read_clients(path))

    def check(self, key: str | None, method: str) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may go on; otherwise the status and a message naming no key."""
        if not key:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                f"this service needs an API key in the '{KEY_HEADER}' metadata",
            )
        digest = _digest(key)
        client = next((c for d, c in self._clients.items() if hmac.compare_digest(d, digest)), None)
        if client is None:
            return grpc.StatusCode.UNAUTHENTICATED, "the API key is not known here"
        if method not in client.methods:
            return grpc.StatusCode.PERMISSION_DENIED, f"client {client.name!r} may not call {method}"
        bucket = self._buckets.get(client.key_sha256)
        if bucket is not None:
            with self._lock:
                allowed = bucket.take()
            if not allowed:
                return (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"client {client.name!r} is over its rate limit of {client.rate_per_second:g} calls/s",
                )
        return None


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls `ApiKeys` refuses, before any request is read; the health service is open."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        service, _, method = details.method.lstrip("/").rpartition("/")
        if service in OPEN_SERVICES:
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        key = metadata.get(KEY_HEADER)
        refusal = self.keys.check(key if isinstance(key, str) else None, method)
        if refusal is None:
            return await continuation(details)
        handler = await continuation(details)
        return _refusing(handler, *refusal)


def _refusing(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises

    if handler is not None and handler.response_streaming:
        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(streaming)
        return grpc.unary_stream_rpc_method_handler(streaming)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.unary_unary_rpc_method_handler(unary)


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; with `client_ca`, clients must present a certificate it signed."""
    try:
        chain, private = cert.read_bytes(), key.read_bytes()
        ca = client_ca.read_bytes() if client_ca is not None else None
    except OSError as exc:
        raise AccessError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None
    for path, pem, marker in ((cert, chain, b"CERTIFICATE"), (key, private, b"PRIVATE KEY")):
        if marker not in pem:
            raise AccessError(f"TLS: {path} is not a PEM {marker.decode().lower()}")
    return grpc.ssl_server_credentials(
        [(private, chain)], root_certificates=ca, require_client_auth=ca is not None
    )
