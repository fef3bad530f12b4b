"""Who may use the review page: the officers file (user name, role, scrypt hash of the password),
sign-in with a bound on wrong passwords, and server-side sessions.

The officers file is JSON, written by `fraudscore officers add` (never by hand: the hash format is
checked on load). Sessions live in memory: a restart signs everyone out, which is acceptable for a
page behind the lender's network; each session carries its own token that every form posts back
(the cookie is also SameSite=Strict), and ends after `review_session_minutes` without a request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Role = Literal["officer", "admin"]
ROLES: Final = ("officer", "admin")
_NAME: Final = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
# scrypt at n=2**14, r=8 costs about 16 MiB and tens of milliseconds a check: slow enough to make
# guessing expensive, fast enough for a sign-in.
_N, _R, _P = 1 << 14, 8, 1
MIN_PASSWORD: Final = 12
MAX_FAILURES: Final = 5
LOCKOUT_SECONDS: Final = 300.0


class OfficersError(ValueError):
    """The officers file or an officer entry is not acceptable."""


@dataclass(frozen=True, slots=True)
class Officer:
    name: str
    role: Role


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(digest)),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


class Officers:
    """The officers file, read on each sign-in so `fraudscore officers add` takes effect at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._dummy: str | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            officers = data["officers"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OfficersError(f"officers file {self.path} is unreadable: {exc}") from None
        for name, entry in officers.items():
            if not _NAME.match(name) or entry.get("role") not in ROLES or "password" not in entry:
                raise OfficersError(f"officers file {self.path}: entry {name!r} is malformed")
        return dict(officers)

    def names(self) -> list[Officer]:
        return [Officer(name, entry["role"]) for name, entry in sorted(self._read().items())]  # type: ignore[arg-type]

    def add(self, name: str, role: str, password: str) -> None:
        """Adds an officer, or replaces the password and role of an existing one."""
        if not _NAME.match(name):
            raise OfficersError(
                "an officer's user name is 2-32 characters: lower-case letters, digits, '.', '_' or '-', "
                f"starting with a letter (got {name!r})"
            )
        if role not in ROLES:
            raise OfficersError(f"role must be one of {', '.join(ROLES)} (got {role!r})")
        if len(password) < MIN_PASSWORD:
            raise OfficersError(f"a password needs at least {MIN_PASSWORD} characters")
        officers = self._read()
        officers[name] = {"role": role, "password": hash_password(password)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"format": 1, "officers": officers}, fh, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def ensure_admin(self, password_file: Path) -> bool:
        """With no officers file, makes the first admin ("admin", a random password written to
        `password_file`, mode 0600) and returns True; otherwise does nothing."""
        if self.path.exists():
            return False
        password = secrets.token_urlsafe(18)
        self.add("admin", "admin", password)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        return True

    def authenticate(self, name: str, password: str) -> Officer | None:
        """The officer, or None for an unknown name, a wrong password, or a name locked out after
        `MAX_FAILURES` wrong passwords within `LOCKOUT_SECONDS`. Slow on purpose (scrypt)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < LOCKOUT_SECONDS]
            self._failures[name] = recent
            if len(recent) >= MAX_FAILURES:
                return None
        entry = self._read().get(name)
        # An unknown name costs one scrypt like a known one, so timing does not tell which exist.
        if self._dummy is None:
            self._dummy = hash_password(secrets.token_urlsafe(16))
        stored = entry["password"] if entry else self._dummy
        if check_password(password, stored) and entry is not None:
            with self._lock:
                self._failures.pop(name, None)
            return Officer(name, entry["role"])  # type: ignore[arg-type]
        with self._lock:
            self._failures.setdefault(name, []).append(now)
        return None

    def locked_out(self, name: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return len([t for t in self._failures.get(name, []) if now - t < LOCKOUT_SECONDS]) >= MAX_FAILURES


@dataclass(slots=True)
class Session:
    officer: Officer
    token: str  # the form token: every POST must carry it
    last_seen: float


class Sessions:
    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, officer: Officer) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = Session(officer, secrets.token_urlsafe(24), time.monotonic())
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]:
                del self._sessions[key]
            session = self._sessions.get(sid)
            if session is not None:
                session.last_seen = now
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)
