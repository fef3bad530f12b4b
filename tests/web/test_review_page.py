"""The review page end to end in a real headless Chromium: an application scored over gRPC appears
in the queue, an officer opens the case (personal data masked, the text behind the text signals
highlighted, every reason), records the outcome with the buttons, the outcome is in the audit store
and the officer log, and training takes it as a label."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import polars as pl
import pytest
from playwright.async_api import Browser, Page, expect

from scoring.v1 import scoring_pb2 as pb
from tests.conftest import RISKY_CHANGES, application, with_attributes
from tests.web.conftest import ADMIN, OFFICER, screenshot_dir

URGENT = "I need the money today, please approve it as fast as possible. It is to consolidate my cards."


async def sign_in(page: Page, base_url: str, who: tuple[str, str, str], path: str = "/queue") -> None:
    await page.goto(base_url + path)
    await expect(page).to_have_url(f"{base_url}/login?next={path}")  # signed out: sent to sign in
    await page.fill("input[name=username]", who[0])
    await page.fill("input[name=password]", who[2])
    await page.click("button[type=submit]")
    await expect(page).to_have_url(base_url + path)


def honest_ids(training_files: tuple[Path, Path], n: int) -> list[str]:
    """Applications the training file calls honest: the officers will find them to be fraud."""
    data, _ = training_files
    frame = pl.read_parquet(data).filter(pl.col("confirmed_fraud") == "N")
    return frame.get_column("application_id").tail(n).to_list()


@pytest.mark.slow
async def test_scored_case_reviewed_in_the_browser_becomes_a_training_label(
    stub, settings, review, base_url, browser: Browser, training_files, tmp_path
):
    by_browser, *by_grpc = honest_ids(training_files, 3)
    sent = {}
    for app_id in (by_browser, *by_grpc):
        app = with_attributes(
            application(application_id=app_id, **RISKY_CHANGES, **{"text.loan_purpose": URGENT})
        )
        answer = await stub.Score(pb.ScoreRequest(application=app), timeout=10)
        assert answer.decision in (pb.DECISION_REVIEW, pb.DECISION_DECLINE)
        sent[app_id] = (app, answer)
    app, answer = sent[by_browser]
    decision = pb.Decision.Name(answer.decision).removeprefix("DECISION_")

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await sign_in(page, base_url, OFFICER)
    # Other tests share the server: newest first puts this case on the first page of the queue.
    await page.goto(f"{base_url}/queue?sort=time")
    row = page.locator(f"tr[data-application='{by_browser}']")
    await expect(row).to_be_visible()  # in the default queue: REVIEW and DECLINE, not yet reviewed
    await expect(row.locator(".badge").first).to_have_text(decision)
    await expect(row.locator("td.num").first).to_have_text(str(answer.score))
    if shots := screenshot_dir():
        await page.screenshot(path=str(shots / "review-queue.png"), full_page=True)

    # Filters narrow the queue: the product and a score floor above this case's score hide it.
    await page.goto(f"{base_url}/queue?product=SMALL_BUSINESS")
    await expect(page.locator(f"tr[data-application='{by_browser}']")).to_have_count(0)
    await page.goto(f"{base_url}/queue?product=CONSUMER&sort=time")
    await expect(page.locator(f"tr[data-application='{by_browser}']")).to_be_visible()

    await page.click(f"a[href='/case/{by_browser}']")
    await expect(page).to_have_url(f"{base_url}/case/{by_browser}")
    await expect(page.locator("#decision")).to_have_text(decision)
    await expect(page.locator("#score")).to_have_text(str(answer.score))
    reasons = page.locator("#reasons tbody tr")
    assert await reasons.count() >= min(10, len(answer.reasons))
    for reason in answer.reasons:  # the reasons answered are in the full breakdown
        await expect(page.locator("#reasons, details").get_by_text(reason.code, exact=True)).to_have_count(1)
    await expect(page.locator("svg.waterfall rect")).not_to_have_count(0)
    urgency = page.locator("[data-field=text_loan_purpose] mark.theme-urgency")
    await expect(urgency.first).to_contain_text("I need the money today")
    html = await page.content()
    for clear in (
        app.applicant.phone,
        app.applicant.email,
        app.applicant.national_id,
        app.applicant.last_name,
    ):
        assert clear not in html  # masked
    assert "https://" not in html and "http://" not in html  # nothing loaded from outside
    if shots:
        await page.screenshot(path=str(shots / "review-case.png"), full_page=True)

    await page.select_option("select[name=fraud_type]", "identity_theft")
    await page.fill("textarea[name=note]", "Applicant did not recognise the application on call-back.")
    await page.click("button[value=CONFIRMED_FRAUD]")
    await expect(page.locator(".notice")).to_have_text("Outcome recorded.")
    await expect(page.locator("#current-outcome")).to_contain_text("confirmed fraud")
    await expect(page.locator("#current-outcome")).to_contain_text(OFFICER[0])

    await page.goto(f"{base_url}/queue")  # reviewed: out of the default queue
    await expect(page.locator(f"tr[data-application='{by_browser}']")).to_have_count(0)
    await page.goto(f"{base_url}/queue?status=all&product=CONSUMER&sort=time")
    status = page.locator(f"tr[data-application='{by_browser}'] td.status")
    await expect(status).to_have_text("confirmed fraud")

    outcome = review.audit.outcome_of(by_browser)
    assert outcome is not None
    assert (outcome.outcome, outcome.fraud_type, outcome.reviewer) == (
        "CONFIRMED_FRAUD",
        "identity_theft",
        OFFICER[0],
    )
    # What the officer saw and did is in the officer log, chained, without the note or the applicant.
    actions = [(a.officer, a.action, a.target) for a in review.log.recent(1000)]
    for action in ("sign_in", "view_queue"):
        assert (OFFICER[0], action, "") in actions
    for action in ("view_case", "record_outcome"):
        assert (OFFICER[0], action, by_browser) in actions
    assert review.log.verify().ok
    raw = Path(review.log.path).read_bytes()
    for clear in (app.applicant.phone, app.applicant.email, "call-back", "money today"):
        assert clear.encode() not in raw

    # An officer cannot open the officer log; an admin can, and sees the chain verified.
    await page.goto(f"{base_url}/actions")
    await expect(page.locator(".error")).to_contain_text("for admins")
    admin = await browser.new_page()
    await sign_in(admin, base_url, ADMIN, "/actions")
    await expect(admin.locator("#chain")).to_contain_text("Chain verified")
    await expect(admin.get_by_text(by_browser).first).to_be_visible()

    # Two more outcomes through gRPC; training takes all three as labels.
    for app_id in by_grpc:
        await stub.ReportOutcome(
            pb.ReportOutcomeRequest(
                application_id=app_id, outcome=pb.OUTCOME_CONFIRMED_FRAUD, reviewer="o-2"
            ),
            timeout=10,
        )
    data, mapping = training_files
    out = tmp_path / "relabelled"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scoring.cli",
        "train",
        "--data",
        str(data),
        "--mapping",
        str(mapping),
        "--out",
        str(out),
        "--no-text",
        "--no-history",
        "--audit-labels",
        str(settings.resolved_audit_path()),
        env={**os.environ, "FRAUDSCORE_DATA_DIR": str(settings.data_dir)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode == 0, stderr.decode()
    assert "3 of 30,000 labels from outcomes recorded in" in stderr.decode()
    report = json.loads((out / "metrics.json").read_text())
    assert "3 labels from recorded outcomes replaced the file's" in report["data_warnings"]
    with sqlite3.connect(settings.resolved_audit_path()) as db:
        (note,) = db.execute(
            "SELECT note FROM outcomes WHERE application_id = ? ORDER BY id DESC", (by_browser,)
        ).fetchone()
    assert note.startswith("Applicant did not recognise")  # the note is kept where the case is
