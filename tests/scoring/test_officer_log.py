"""The officer log's chain on real SQLite files: every kind of tampering is found and named, by the
store and by `fraudscore audit verify`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from scoring.cli import main
from scoring.officer_log import OfficerLog
from scoring.settings import Settings

SECRET = b"k" * 32
COLUMNS = "seq, at_us, officer, role, action, target, detail, prev, mac"


def written(path: Path, n: int = 6) -> Path:
    with OfficerLog(path, secret=SECRET) as log:
        for i in range(n):
            log.append("olivia", "officer", "view_case", f"APP-{i}", {"page": i})
    return path


def check(path: Path) -> tuple[bool, int | None, str]:
    with OfficerLog(path, secret=SECRET) as log:
        v = log.verify()
    return v.ok, v.broken_at, v.problem


def tamper(path: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(path) as db:
        db.execute(sql, params)


def test_an_untouched_log_verifies_and_reads_back(tmp_path):
    path = written(tmp_path / "log.sqlite")
    with OfficerLog(path, secret=SECRET) as log:
        v = log.verify()
        recent = log.recent(2)
        assert [a.target for a in log.recent(10, target="APP-3")] == ["APP-3"]
    assert v.ok and v.rows == 6 and len(v.head) == 64
    assert [a.seq for a in recent] == [6, 5] and recent[0].detail == {"page": 5}


CASES = {
    "edited": ("UPDATE actions SET target = 'APP-X' WHERE seq = 3", 3, "edited"),
    "edited detail": ("UPDATE actions SET detail = '{\"page\": 9}' WHERE seq = 4", 4, "edited"),
    "deleted": ("DELETE FROM actions WHERE seq = 2", 2, "deleted or reordered"),
    "deleted first": ("DELETE FROM actions WHERE seq = 1", 1, "deleted or reordered"),
    "renumbered": ("UPDATE actions SET seq = seq + 100 WHERE seq = 5", 5, "deleted or reordered"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_found_at_the_first_broken_record(tmp_path, case):
    sql, broken_at, problem = CASES[case]
    path = written(tmp_path / "log.sqlite")
    tamper(path, sql)
    ok, at, text = check(path)
    assert not ok and at == broken_at and problem in text


def test_reordered_rows_and_a_forged_chain_are_found(tmp_path):
    path = written(tmp_path / "log.sqlite")
    with sqlite3.connect(path) as db:  # swap the contents of records 2 and 3 (keeping their numbers)
        rows = {r[0]: r[1:] for r in db.execute(f"SELECT {COLUMNS} FROM actions")}
        for seq, other in ((2, 3), (3, 2)):
            db.execute(
                "UPDATE actions SET at_us=?, officer=?, role=?, action=?, target=?, detail=?, prev=?, mac=? "
                "WHERE seq = ?",
                (*rows[other], seq),
            )
    assert check(path)[:2] == (False, 2)
    # A forger without the key recomputes the chain with another key: every record fails from there.
    forged = written(tmp_path / "forged.sqlite")
    with OfficerLog(tmp_path / "other.sqlite", secret=b"another key") as other:
        other.append("mallory", "admin", "record_outcome", "APP-1")
    with sqlite3.connect(tmp_path / "other.sqlite") as db:
        (row,) = db.execute(f"SELECT {COLUMNS} FROM actions").fetchall()
    tamper(forged, "DELETE FROM actions")
    tamper(forged, "INSERT INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", *row)
    assert check(forged)[:2] == (False, 1)


def test_audit_verify_names_the_broken_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FRAUDSCORE_DATA_DIR", str(tmp_path / "var"))
    secret = Settings(_env_file=None).audit_secret()  # type: ignore[call-arg]  # the CLI's own key
    path = tmp_path / "cli-log.sqlite"
    with OfficerLog(path, secret=secret) as log:
        for i in range(3):
            log.append("adam", "admin", "view_model", f"m{i}")
    assert main(["audit", "verify", "--log", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["records"] == 3
    tamper(path, "UPDATE actions SET officer = 'eve' WHERE seq = 2")
    assert main(["audit", "verify", "--log", str(path)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["broken_at"] == 2
    assert "broken at record 2" in captured.err
