"""Takes the README's screenshots of the review page: serves the demo bundle on a scratch copy of the
state, scores a few hundred SYNTHETIC applications (and one showcase application with urgent,
third-party text), signs in as the first admin in Debian's Chromium and photographs the queue, the
showcase case and the model page into docs/img/.

    uv run python docs/screenshots.py          # after `make run` has built var/ once
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
from google.protobuf import json_format
from playwright.async_api import async_playwright

from scoring.synth import generate
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from scoring.wire import application_to_pb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOWCASE = "LOS-2026-000777"


def showcase() -> pb.LoanApplication:
    data = json.loads((ROOT / "docs" / "examples" / "consumer-application.json").read_text())
    data["application_id"] = SHOWCASE
    data["applicant"] |= {"email": "xk7r92mq1@mail.com", "phone": "+8613800000000"}
    data["bank_account"]["account_age_days"] = 3
    data["channel"] |= {"session_duration_seconds": 40, "user_agent": "Mozilla/5.0 HeadlessChrome/120.0"}
    data["loan"]["amount"] = 60000
    data["text"]["loan_purpose"] = (
        "I need the money today, it is urgent. Submitted on behalf of my client who is travelling. "
        "Funds will be moved to another account right away."
    )
    return json_format.ParseDict(data, pb.LoanApplication())


async def main() -> None:
    var = Path(os.environ.get("FRAUDSCORE_DATA_DIR", ROOT / "var"))
    state = Path(tempfile.mkdtemp(prefix="fraudscore-shots-"))
    shutil.copyfile(var / "history.sqlite", state / "history.sqlite")
    shutil.copyfile(var / "history.key", state / "history.key")
    env = {
        **os.environ,
        "FRAUDSCORE_DATA_DIR": str(state),
        "FRAUDSCORE_ENCODER_DIR": str(var / "encoder"),
        "FRAUDSCORE_REVIEW_PORT": "0",
        "FRAUDSCORE_METRICS_PORT": "none",
        "FRAUDSCORE_LOG_LEVEL": "WARNING",
    }
    cmd = [
        str(Path(sys.executable).parent / "fraudscore"),
        "serve",
        "--port",
        "0",
        "--bundle",
        str(var / "demo-bundle"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = next(line for line in proc.stdout if line.startswith("fraudscore: serving gRPC on "))
    target = line.split(" on ")[1].split(" ")[0]
    page_url = line.split("review page on ")[1].split(";")[0].strip()
    try:
        frame = generate(600, seed=99)
        apps = [application_to_pb(row) for row in frame.iter_rows(named=True)] + [showcase()]
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            for app in apps:
                await stub.Score(pb.ScoreRequest(application=app), timeout=30)
        password = (state / "review-admin-password").read_text().strip()
        OUT.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(page_url + "login")
            await page.fill("input[name=username]", "admin")
            await page.fill("input[name=password]", password)
            await page.click("button[type=submit]")
            await page.screenshot(path=str(OUT / "review-queue.png"))
            await page.goto(page_url + f"case/{SHOWCASE}")
            await page.screenshot(path=str(OUT / "review-case.png"), full_page=True)
            await page.goto(page_url + "model")
            await page.screenshot(path=str(OUT / "review-model.png"), full_page=True)
            await browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
