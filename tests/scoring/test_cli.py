"""The command line as a user runs it: synth -> train -> evaluate, and serve (demo bundle) -> score."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import EXAMPLES

FRAUDSCORE = str(Path(sys.executable).parent / "fraudscore")
pytestmark = pytest.mark.slow


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FRAUDSCORE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_same_seed_same_data_and_same_metrics(tmp_path, encoder_dir):
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    for path, seed in ((a, "5"), (b, "5"), (c, "6")):
        proc = run("synth", "--rows", "8000", "--seed", seed, "--out", str(path))
        assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(a).equals(pl.read_parquet(b))
    assert not pl.read_parquet(a).equals(pl.read_parquet(c))

    reports = []
    for name in ("m1", "m2"):
        proc = run(
            "train",
            "--data",
            str(a),
            "--out",
            str(tmp_path / name),
            "--seed",
            "3",
            "--synthetic",
            "--encoder",
            str(encoder_dir),
        )
        assert proc.returncode == 0, proc.stderr
        assert "| overall |" in proc.stdout
        report = json.loads((tmp_path / name / "metrics.json").read_text())
        report.pop("train_seconds")
        reports.append(report)
    assert reports[0] == reports[1]
    for name in ("model.txt", "model_fallback.txt", "text.json"):  # text signals are deterministic too
        assert (tmp_path / "m1" / name).read_bytes() == (tmp_path / "m2" / name).read_bytes()

    proc = run(
        "evaluate",
        "--bundle",
        str(tmp_path / "m1"),
        "--data",
        str(c),
        "--json",
        "--encoder",
        str(encoder_dir),
    )
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads(proc.stdout)
    assert evaluated["overall"]["rows"] == 8000
    assert 0.5 < evaluated["overall"]["roc_auc"] <= 1.0
    assert set(evaluated["products"]) == {"CONSUMER", "SMALL_BUSINESS"}


def test_train_reports_a_missing_label_column_clearly(tmp_path):
    path = tmp_path / "x.csv"
    pl.DataFrame({"loan_amount": [1.0, 2.0]}).write_csv(path)
    proc = run("train", "--data", str(path), "--out", str(tmp_path / "b"), "--no-text")
    assert proc.returncode == 2
    assert "label column 'is_fraud' is not in the file" in proc.stderr


def _start_demo_server(tmp_path: Path) -> tuple[subprocess.Popen[str], str, str, str]:
    """The server, its gRPC target, its review page's URL and its metrics URL."""
    env = {
        **os.environ,
        "FRAUDSCORE_DATA_DIR": str(tmp_path / "var"),
        "FRAUDSCORE_DEMO_ROWS": "20000",
        "FRAUDSCORE_GRACE_SECONDS": "2",
        "FRAUDSCORE_LOG_LEVEL": "DEBUG",  # per-request lines too, so the personal-data check bites
        "FRAUDSCORE_REVIEW_PORT": "0",
        "FRAUDSCORE_METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [FRAUDSCORE, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 300
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("fraudscore: serving gRPC on "):
            page = line.split("review page on ")[1].split(";")[0].strip()
            return proc, line.split(" on ")[1].split(" ")[0], page, line.split("metrics on ")[1].strip()
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")


def test_serve_trains_a_demo_bundle_then_scores_the_readme_sample(tmp_path):
    proc, target, page, metrics_url = _start_demo_server(tmp_path)
    metrics = ""
    try:
        assert (tmp_path / "var" / "demo-bundle" / "MANIFEST.json").exists()
        scored = run("score", "--target", target, str(EXAMPLES / "consumer-application.json"), timeout=30)
        assert scored.returncode == 0, scored.stderr
        response = json.loads(scored.stdout)
        assert response["application_id"] == "LOS-2026-000123"
        assert response["decision"] in {"DECISION_APPROVE", "DECISION_REVIEW", "DECISION_DECLINE"}

        bad = json.loads((EXAMPLES / "consumer-application.json").read_text())
        bad["loan"]["amount"] = -5
        rejected = subprocess.run(
            [FRAUDSCORE, "score", "--target", target, "-"],
            input=json.dumps(bad),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert rejected.returncode == 2
        assert "INVALID_ARGUMENT: loan.amount must be > 0 (got -5)" in rejected.stderr

        info = run("info", "--target", target, timeout=30)
        assert json.loads(info.stdout)["synthetic_training_data"] is True
        _review_page_as_the_first_admin(tmp_path / "var", page)
        with urllib.request.urlopen(metrics_url, timeout=30) as r:
            metrics = r.read().decode()
        assert 'fraudscore_decisions_total{decision="APPROVE",product="CONSUMER"} 1.0' in metrics
        assert 'fraudscore_rpc_seconds_count{code="INVALID_ARGUMENT",method="Score"} 1.0' in metrics
        assert 'fraudscore_gc_pause_seconds_count{generation="2"}' in metrics  # collections timed
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "stopped" for entry in logs)
    scored = [entry for entry in logs if entry["event"] == "scored"]
    assert scored and scored[0]["application_id"] == "LOS-2026-000123"
    assert any(entry["event"] == "refused" and entry["code"] == "INVALID_ARGUMENT" for entry in logs)
    # No personal data of the sample in any log line.
    for secret in (
        "Maria",
        "Lopez",
        "512-44-7781",
        "maria.lopez87",
        "+14155550182",
        "1840 Alder",
        "d5c1a9e04f7b4c2e",
        "4417829301",
        "credit cards",
        "Cascade Health",
    ):
        assert secret not in stderr
        assert secret not in metrics


def _review_page_as_the_first_admin(var: Path, page: str) -> None:
    """The first start made an admin with a password only the server's owner can read; with it the
    review page lists the scored sample (an approval: shown when approvals are asked for)."""
    password_file = var / "review-admin-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = urllib.parse.urlencode({"username": "admin", "password": password_file.read_text().strip()})
    with opener.open(page + "login", data=form.encode(), timeout=30) as r:
        assert r.url.endswith("/queue")
    with opener.open(page + "queue?decision=APPROVE&status=all", timeout=30) as r:
        assert "LOS-2026-000123" in r.read().decode()
    with opener.open(page + "case/LOS-2026-000123", timeout=30) as r:
        html = r.read().decode()
    assert "pay off two credit cards" in html  # the free text, for the officer
    assert "+14155550182" not in html and "maria.lopez87" not in html  # masked


def test_officers_are_added_hashed_and_listed(tmp_path):
    env = {**os.environ, "FRAUDSCORE_DATA_DIR": str(tmp_path / "var")}
    added = subprocess.run(
        [FRAUDSCORE, "officers", "add", "olivia", "--role", "admin", "--password-stdin"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    stored = (tmp_path / "var" / "officers.json").read_text()
    assert "a long enough password" not in stored and "scrypt$" in stored
    assert run("officers", "list", env=env).stdout == "olivia\tadmin\n"
    short = subprocess.run(
        [FRAUDSCORE, "officers", "add", "bob", "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr


def test_csv_keeps_leading_zeros_and_reports_unreadable_values(tmp_path):
    from scoring.dataset import load_dataset

    frame = pl.read_parquet(_synth(tmp_path, rows=3000))
    frame = frame.with_columns(
        address_postal_code=pl.lit("02134"),
        branch_code=pl.lit("0042"),
        loan_term_months=pl.col("loan_term_months").cast(pl.String),
    ).with_columns(
        loan_term_months=pl.when(pl.int_range(pl.len()) < 7)
        .then(pl.lit("n/a"))
        .otherwise(pl.col("loan_term_months"))
    )
    path = tmp_path / "lender.csv"
    frame.write_csv(path)
    data = load_dataset(path)
    assert data.canonical.get_column("address_postal_code").unique().to_list() == ["02134"]
    assert data.canonical.get_column("attr_branch_code").dtype == pl.Float64  # all values are numbers
    assert data.canonical.get_column("loan_term_months").null_count() == 7
    assert data.warnings == ("7 values of column 'loan_term_months' could not be read as Int64",)
    assert data.time_ordered


def test_without_a_timestamp_the_split_is_by_row_order_and_says_so(tmp_path, encoder_dir):
    path = tmp_path / "no-time.parquet"
    pl.read_parquet(_synth(tmp_path, rows=6000)).drop("submitted_at").write_parquet(path)
    proc = run("train", "--data", str(path), "--out", str(tmp_path / "b"), "--encoder", str(encoder_dir))
    assert proc.returncode == 0, proc.stderr
    assert "text signals need a timestamp on every application; training without them" in proc.stderr
    assert not (tmp_path / "b" / "text.json").exists()
    report = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert report["split"]["by"] == "row order (the data has no timestamp)"


def _synth(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / f"synth-{rows}.parquet"
    proc = run("synth", "--rows", str(rows), "--seed", "2", "--out", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def test_lender_spellings_of_enum_values_are_understood(tmp_path):
    from scoring.dataset import ColumnMapping, canonicalise

    frame = pl.read_parquet(_synth(tmp_path, rows=2000))
    lender = frame.with_columns(
        product=pl.col("product").str.to_lowercase(),
        employment_status=pl.lit("Self-Employed"),
        housing=pl.lit("HOUSING_RENT"),
        channel=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("carrier pigeon")).otherwise(pl.lit("web")),
    )
    data = canonicalise(lender, ColumnMapping())
    canon = data.canonical
    assert set(canon.get_column("product").unique()) == {"CONSUMER", "SMALL_BUSINESS"}
    assert canon.get_column("employment_status").unique().to_list() == ["SELF_EMPLOYED"]
    assert canon.get_column("housing").unique().to_list() == ["RENT"]
    assert canon.get_column("channel").null_count() == 3
    assert any("3 values of column 'channel' could not be read as one of WEB" in w for w in data.warnings)


def test_a_label_in_disguise_is_reported(tmp_path):
    path = tmp_path / "leaky.parquet"
    frame = pl.read_parquet(_synth(tmp_path, rows=6000))
    frame.with_columns(
        case_status=pl.when(pl.col("is_fraud") == 1).then(pl.lit("CHARGED_OFF")).otherwise(pl.lit("OPEN"))
    ).write_parquet(path)
    proc = run("train", "--data", str(path), "--out", str(tmp_path / "b"), "--no-text")
    assert proc.returncode == 0, proc.stderr
    assert "lender attribute 'case_status' alone has ROC-AUC 1.000" in proc.stderr
    report = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert report["lender_attributes"] == ["case_status"]
    assert any("case_status" in w for w in report["data_warnings"])


def test_history_command_loads_applications_and_outcomes_as_hashes(tmp_path):
    import sqlite3

    data = _synth(tmp_path, rows=3000)
    env = {**os.environ, "FRAUDSCORE_DATA_DIR": str(tmp_path / "var")}
    proc = run("history", "--data", str(data), "--outcome-delay-days", "10", env=env)
    assert proc.returncode == 0, proc.stderr
    db = sqlite3.connect(tmp_path / "var" / "history.sqlite")
    assert db.execute("SELECT COUNT(*) FROM applications").fetchone()[0] == 3000
    frauds = pl.read_parquet(data).get_column("is_fraud").sum()
    assert db.execute("SELECT SUM(fraud) FROM outcomes").fetchone()[0] == frauds
    first = pl.read_parquet(data).row(0, named=True)
    dumped = "\n".join(db.iterdump())
    for clear in (first["phone"], first["email"], first["national_id"], first["last_name"]):
        assert clear not in dumped  # only keyed hashes are stored
    assert (tmp_path / "var" / "history.key").stat().st_mode & 0o777 == 0o600
