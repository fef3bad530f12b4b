"""The review page on a real port beside the session's gRPC server (same service, same audit store),
with its own officers file and officer log, and a real headless Chromium (Debian's, driven by
Playwright) to use it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from scoring.grpc_server import Server
from scoring.officer_log import OfficerLog
from scoring.settings import Settings
from scoring.web.app import ReviewSite
from scoring.web.auth import Officers

CHROMIUM = os.environ.get("FRAUDSCORE_CHROMIUM", "/usr/bin/chromium")
# As the machine's probe found: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OFFICER = ("olivia", "officer", "correct horse battery")
ADMIN = ("adam", "admin", "staple gun paperclip")


@pytest.fixture(scope="session")
def officers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Officers:
    found = Officers(tmp_path_factory.mktemp("review") / "officers.json")
    for name, role, password in (OFFICER, ADMIN):
        found.add(name, role, password)
    return found


@pytest.fixture(scope="session")
async def review(
    server: Server, settings: Settings, officers: Officers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ReviewSite]:
    log = OfficerLog(
        tmp_path_factory.mktemp("review-log") / "officer-log.sqlite", secret=settings.audit_secret()
    )
    site = ReviewSite(
        server.service, settings.model_copy(update={"review_port": 0}), officers=officers, officer_log=log
    )
    await site.start()
    yield site
    await site.stop()
    log.close()


@pytest.fixture(scope="session")
def base_url(review: ReviewSite) -> str:
    return f"http://127.0.0.1:{review.port}"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


def screenshot_dir() -> Path | None:
    """Where the browser test saves its screenshots (FRAUDSCORE_SCREENSHOTS; docs/img for the README)."""
    out = os.environ.get("FRAUDSCORE_SCREENSHOTS")
    return Path(out) if out else None
