"""Who gets in and what they may do on the review page, over plain HTTP on the real port: sign-in,
wrong passwords and lockout, form tokens, roles, redirects, headers, bad filters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from scoring.web.auth import MAX_FAILURES, Officers
from tests.web.conftest import ADMIN, OFFICER


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A cookie jar that keeps cookies for 127.0.0.1 (the default one ignores IP addresses).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, base_url: str, who: tuple[str, str, str]) -> str:
    """Signs in; returns the session's form token read from the queue page."""
    async with http.post(
        f"{base_url}/login", data={"username": who[0], "password": who[2]}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/queue"
    async with http.get(f"{base_url}/queue") as r:
        assert r.status == 200
        match = re.search(r'name="token" value="([^"]+)"', await r.text())
    assert match is not None
    return match.group(1)


async def test_pages_need_a_signed_in_officer(http, base_url):
    for path in ("/queue", "/case/ANY", "/model", "/actions"):
        async with http.get(base_url + path, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == f"/login?next={path}"
    async with http.post(f"{base_url}/case/ANY/outcome", data={"outcome": "LEGITIMATE"}) as r:
        assert r.status == 401
    async with http.get(f"{base_url}/static/style.css") as r:  # the stylesheet is public
        assert r.status == 200


async def test_wrong_passwords_are_refused_then_lock_the_name(http, base_url, officers: Officers):
    officers.add("lena", "officer", "a good long password")
    for attempt in range(1, MAX_FAILURES + 1):
        async with http.post(f"{base_url}/login", data={"username": "lena", "password": "wrong"}) as r:
            expected = (
                "Too many wrong passwords" if attempt == MAX_FAILURES else "Wrong user name or password"
            )
            assert r.status == 401 and expected in await r.text()
    # Locked out: even the right password is refused for a while.
    data = {"username": "lena", "password": "a good long password"}
    async with http.post(f"{base_url}/login", data=data, allow_redirects=False) as r:
        assert r.status == 401 and "Too many wrong passwords" in await r.text()
    async with http.post(f"{base_url}/login", data={"username": "nobody", "password": "x"}) as r:
        assert r.status == 401 and "Wrong user name or password" in await r.text()


async def test_forms_need_the_sessions_token(http, base_url, review):
    token = await sign_in(http, base_url, OFFICER)
    url = f"{base_url}/case/NEVER-SCORED/outcome"
    async with http.post(url, data={"outcome": "LEGITIMATE"}) as r:
        assert r.status == 403 and "expired" in await r.text()
    async with http.post(url, data={"outcome": "LEGITIMATE", "token": token}) as r:
        assert r.status == 404 and "NEVER-SCORED" in await r.text()
    async with http.post(url, data={"outcome": "MAYBE", "token": token}) as r:
        assert r.status == 400 and "outcome: expected one of" in await r.text()
    async with http.post(f"{base_url}/logout", data={"token": token}, allow_redirects=False) as r:
        assert r.status == 303
    async with http.get(f"{base_url}/queue", allow_redirects=False) as r:
        assert r.status == 303  # signed out


async def test_roles_headers_and_bad_filters(http, base_url):
    await sign_in(http, base_url, OFFICER)
    async with http.get(f"{base_url}/actions") as r:
        assert r.status == 403
    async with http.get(f"{base_url}/queue?min_score=1000") as r:
        assert r.status == 400 and "min_score: expected a whole number from 0 to 999" in await r.text()
    async with http.get(f"{base_url}/queue?since=22/11/2026") as r:
        assert r.status == 400 and "since: expected a date as YYYY-MM-DD" in await r.text()
    async with http.get(f"{base_url}/queue?decision=MAYBE") as r:
        assert r.status == 400 and "decision: expected one of APPROVE, REVIEW, DECLINE" in await r.text()
    async with http.get(f"{base_url}/case/NEVER-SCORED") as r:
        assert r.status == 404
    async with http.get(f"{base_url}/model") as r:
        assert r.status == 200
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"


async def test_sign_in_only_sends_back_to_this_site(http, base_url):
    for target, expected in (
        ("/model", "/model"),
        ("//evil.example/x", "/queue"),
        ("https://evil.example", "/queue"),
    ):
        data = {"username": ADMIN[0], "password": ADMIN[2], "next": target}
        async with http.post(f"{base_url}/login", data=data, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == expected
