"""`fraudscore serve --workers 2`: two processes on one port (SO_REUSEPORT) sharing the stores, as a
user runs it. Both workers answer, every decision lands in the one audit store, a retry that reaches
the other worker gets the decision on record, a killed worker is restarted, and SIGTERM stops all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from scoring.audit import AuditStore
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from tests.conftest import application, with_attributes

FRAUDSCORE = str(Path(sys.executable).parent / "fraudscore")
pytestmark = pytest.mark.slow

CHANNELS = 16  # the kernel spreads connections: 16 all on one worker has odds of 2**-15


def _lines_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 180) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no line matching {pattern!r}; got {seen}")


def _decisions(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fraudscore_decisions_total{")
    )


def _score_everywhere(port: int, apps: list[pb.LoanApplication]) -> list[pb.ScoreResponse]:
    """Each application over its own new channel (connection), so both workers get some."""
    out = []
    for app in apps:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            out.append(pb_grpc.FraudScoringStub(channel).Score(pb.ScoreRequest(application=app), timeout=30))
    return out


def _env(settings, data: Path) -> dict[str, str]:
    return dict(
        os.environ,
        FRAUDSCORE_BUNDLE=str(settings.bundle),
        FRAUDSCORE_ENCODER_DIR=str(settings.encoder_dir),
        FRAUDSCORE_DATA_DIR=str(data),
        FRAUDSCORE_REVIEW_PORT="0",
        FRAUDSCORE_METRICS_PORT="0",
        FRAUDSCORE_GRACE_SECONDS="1",
    )


def _free_port_pair() -> int:
    """A port p such that p and p + 1 are free now (the workers' own ports)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second, contextlib.suppress(OSError):
                second.bind(("127.0.0.1", port + 1))
                return int(port)
    raise AssertionError("no two free consecutive ports")


def _serve_two_workers(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[str]:
    """`fraudscore serve --workers 2 --port 0` as a user starts it; stderr into `log`."""
    with log.open("w") as err:
        return subprocess.Popen(
            [FRAUDSCORE, "serve", "--workers", "2", "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )


def test_two_workers_share_the_port_and_the_stores(settings, tmp_path):
    data = tmp_path / "var"
    base = _free_port_pair()
    proc = _serve_two_workers(_env(settings, data), tmp_path / "stderr.log", "--worker-port-base", str(base))
    try:
        lines = _lines_until(proc, r"^fraudscore: serving gRPC on ")
        port = int(re.search(r"serving gRPC on 127\.0\.0\.1:(\d+) .*2 worker processes", lines[-1]).group(1))
        ready = {
            int(m.group(1)): m
            for line in lines
            if (m := re.match(r"fraudscore: worker (\d) \(pid (\d+)\) ready: (.*)", line))
        }
        assert sorted(ready) == [0, 1]
        assert f"worker i also alone on port {base} + i" in lines[-1]
        assert all(f"its own port 127.0.0.1:{base + i}" in ready[i].group(3) for i in (0, 1))
        assert "review page on" in ready[0].group(3) and "review page" not in ready[1].group(3)
        metrics = {i: re.search(r"metrics on (\S+)", m.group(3)).group(1) for i, m in ready.items()}

        apps = [with_attributes(application()) for _ in range(CHANNELS)]
        first = _score_everywhere(port, apps)
        per_worker = [_decisions(metrics[i]) for i in (0, 1)]
        assert sum(per_worker) == CHANNELS and min(per_worker) > 0, per_worker

        # A retry of each, over new connections: whichever worker it reaches answers from the record.
        again = _score_everywhere(port, apps)
        assert [(r.application_id, r.score, r.decision) for r in again] == [
            (r.application_id, r.score, r.decision) for r in first
        ]
        assert sum(_decisions(metrics[i]) for i in (0, 1)) == CHANNELS  # none scored twice
        with AuditStore(data / "audit.sqlite", secret=settings.audit_secret()) as audit:
            assert all(audit.get(a.application_id) is not None for a in apps)

        # One channel to the workers' own ports with round_robin: its calls, not just its
        # connections, go to both workers in turn (on the shared port one channel reaches one).
        before = [_decisions(metrics[i]) for i in (0, 1)]
        target = f"ipv4:127.0.0.1:{base},127.0.0.1:{base + 1}"
        with grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")]) as channel:
            stub = pb_grpc.FraudScoringStub(channel)
            for _ in range(20):
                stub.Score(pb.ScoreRequest(application=with_attributes(application())), timeout=30)
        spread = [_decisions(metrics[i]) - before[i] for i in (0, 1)]
        assert sum(spread) == 20 and min(spread) >= 5, spread  # strict turns once both are connected
        with socket.socket() as intruder, pytest.raises(OSError):  # held: nothing else may take it
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            intruder.bind(("127.0.0.1", base + 1))

        # A worker killed outright is restarted on the same port; the service answers meanwhile.
        os.kill(int(ready[1].group(2)), signal.SIGKILL)
        restarted = _lines_until(proc, r"^fraudscore: worker 1 \(pid \d+\) ready")
        assert int(re.search(r"pid (\d+)", restarted[-1]).group(1)) != int(ready[1].group(2))
        assert len(_score_everywhere(port, [with_attributes(application()) for _ in range(4)])) == 4
        with grpc.insecure_channel(f"127.0.0.1:{base + 1}") as channel:  # back on its own port
            pb_grpc.FraudScoringStub(channel).Score(
                pb.ScoreRequest(application=with_attributes(application())), timeout=30
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(60)
        assert proc.stdout is not None
        proc.stdout.close()
    assert status == 0
    for m in ready.values():  # the workers are gone with their parent
        with pytest.raises(ProcessLookupError):
            os.kill(int(m.group(2)), 0)


def test_a_worker_port_held_by_another_program_refuses_the_start(settings, tmp_path):
    base = _free_port_pair()
    with socket.socket() as other:
        other.bind(("127.0.0.1", base + 1))
        other.listen()
        env = _env(settings, tmp_path / "var") | {"FRAUDSCORE_REVIEW_PORT": "none"}
        proc = _serve_two_workers(env, tmp_path / "stderr.log", "--worker-port-base", str(base))
        try:
            assert proc.wait(120) == 3
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stdout is not None
            proc.stdout.close()
    assert f"worker 1's own port 127.0.0.1:{base + 1}" in (tmp_path / "stderr.log").read_text()


def test_workers_stop_when_their_parent_is_killed(settings, tmp_path):
    """SIGKILL leaves the parent no chance to stop its workers: they see their stdin pipe close and
    stop by themselves, instead of serving on, orphaned, on the port."""
    env = _env(settings, tmp_path / "var") | {"FRAUDSCORE_REVIEW_PORT": "none"}
    proc = _serve_two_workers(env, tmp_path / "stderr.log")
    try:
        lines = _lines_until(proc, r"^fraudscore: serving gRPC on ")
    finally:
        proc.kill()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    pids = [
        int(m.group(1)) for line in lines if (m := re.match(r"fraudscore: worker \d \(pid (\d+)\)", line))
    ]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)
    assert "the parent process is gone; stopping" in (tmp_path / "stderr.log").read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A stopped child of a dead parent is reaped by init; until then it may show as a zombie.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True
