"""Crash safety through the real surface: `fraudscore serve` killed with SIGKILL while Score calls are
in flight and restarted on the same files, round after round. No decision a caller was told about may
be missing from the audit store, the store must pass SQLite's integrity checks, and the calls cut off
by a kill must succeed when retried (bench/crash_harness.py does the work; its docstring says how)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.crash_harness import HarnessConfig, HarnessResult, run_harness, scratch_files

pytestmark = pytest.mark.slow

ROUNDS = 4


def _run(settings, tmp_path) -> HarnessResult:
    files = scratch_files(settings.resolved_bundle(), tmp_path / "var", encoder_dir=settings.encoder_dir)
    config = HarnessConfig(
        rounds=ROUNDS,
        concurrency=8,
        kill_delay_s=(0.02, 1.0),
        pool_rows=2_000,
        seed=17,
        attributes={"bureau_score": 700.0, "branch_region": "OR"},  # the test model's lender attributes
    )
    # In a thread of its own: the harness runs its own event loops (asyncio.run), which must not
    # replace the one pytest-asyncio keeps for the session.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run_harness, files, config).result()


def test_no_acknowledged_decision_is_lost_when_the_server_is_killed(settings, tmp_path):
    result = _run(settings, tmp_path)

    assert len(result.rounds) == ROUNDS
    for r in result.rounds:
        # Not vacuous: every kill came after answers and cut calls off.
        assert r.acknowledged > 0, r
        assert r.in_flight_at_kill > 0, r
        assert r.crash_image["integrity"] == "ok", r
        assert r.crash_image["lost"] == [], r
        assert r.crash_image["mismatched"] == [], r
        assert r.quick_check_after_restart == "ok", r
        assert r.retried > 0, r
        assert r.retry_failed == {}, r  # a retry with the same payload is answered, never ALREADY_EXISTS
        assert r.retry_mismatched == 0, r  # one already on record gets the recorded decision
    assert result.lost == 0
    assert result.mismatched == 0
    assert result.final_integrity_check == "ok"
    assert result.final_decisions >= result.acknowledged > 0
    assert result.clean_stop_exit == 0
