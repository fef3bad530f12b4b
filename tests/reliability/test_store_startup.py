"""Several processes opening one new store file at once, as `fraudscore serve --workers N` does on
its first start: each must find the file usable. Before the stores set a new file up under its
write lock, a process could see the tables another was creating before that one had stamped the
format, and refused the file ("has format 0"), or be refused the switch to WAL ("database is
locked": SQLite does not wait for that one); both were seen with 8 workers on 16 cores."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

PROCESSES = 8
ROUNDS = 3


def _open_stores(directory: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    from features.history_store import SQLiteHistoryStore
    from features.text.near_dup import NearDuplicateIndex
    from scoring.audit import AuditStore

    barrier.wait()
    try:
        AuditStore(Path(directory) / "audit.sqlite", secret=b"k" * 32).close()
        SQLiteHistoryStore(Path(directory) / "history.sqlite").close()
        options = {"dim": 4, "window_us": 10**9, "cap": 16, "threshold": 0.9}
        NearDuplicateIndex(Path(directory) / "text-index.sqlite", ["purpose"], **options).close()
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_workers_opening_new_store_files_together_all_succeed(tmp_path):
    context = mp.get_context("spawn")  # as the supervisor's workers: fresh interpreters
    failures = []
    for round_ in range(ROUNDS):
        directory = tmp_path / f"round-{round_}"
        directory.mkdir()
        barrier, errors = context.Barrier(PROCESSES), context.Queue()
        procs = [
            context.Process(target=_open_stores, args=(str(directory), barrier, errors))
            for _ in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        while not errors.empty():
            failures.append(errors.get())
    assert failures == []
