"""Crash harness: `kill -9` a real `fraudscore serve` while Score calls are in flight, restart it on
the same files, and check that every decision a caller was told about is in the audit store.

Each round drives the server with `--concurrency` closed-loop Score calls over `grpc.aio` (every
call a fresh application_id), waits for the first acknowledged answer, then kills the process with
SIGKILL after a random delay. Checks, read-only with the sqlite3 module:

- on a copy of the files exactly as the kill left them (the database and its WAL, recovered in the
  copy, without the server's help): `PRAGMA integrity_check`, every application_id acknowledged so
  far is in `decisions` with the score and probability that were answered (lost = 0);
- after each restart, on the live file: `PRAGMA quick_check`;
- the calls that did not come back OK are retried on the restarted server with the same payload, as
  a client would: each must be answered OK, and one already on record with the recorded decision;
- after the last round, a clean stop (exit 0), then `PRAGMA integrity_check` and the membership
  check on the live file.

It also counts, per kill, the cut-off calls that the history store had recorded with no decision on
record (the history is written before the audit commit): not a loss, but what a client that never
retries leaves behind in later applications' velocity features.

SIGKILL ends the process, not the machine: the page cache survives, so this shows that nothing is
acknowledged before it is committed and that the files recover, not that `synchronous=FULL` holds
through a power cut.

    uv run --frozen python bench/crash_harness.py --rounds 10 [--bundle DIR] [--concurrency 16]

The default bundle is var/demo-bundle (history store and key copied from var/, encoder var/encoder).
Every file the server writes goes to a scratch directory. Writes bench/results/crash_harness.json
and .md with the machine and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import channels  # noqa: E402
from features.schema import CANONICAL_SCHEMA  # noqa: E402
from scoring.synth import generate  # noqa: E402
from scoring.v1 import scoring_pb2 as pb  # noqa: E402
from scoring.v1 import scoring_pb2_grpc as pb_grpc  # noqa: E402
from scoring.wire import application_to_pb  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FRAUDSCORE = Path(sys.executable).parent / "fraudscore"
READY = "fraudscore: serving gRPC on "
Answer = tuple[int, float]  # (score, fraud probability) as answered or as stored
RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
RETRY_ATTEMPTS = 6


# -- the server ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ServerFiles:
    """What a server runs on: a bundle, an encoder, and a scratch data directory holding every file
    the server writes (audit store, history store and key, text index, officers)."""

    bundle: Path
    data_dir: Path
    encoder_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    """More FRAUDSCORE_* settings, over the harness's own."""
    source: Path | None = None
    """Serve the code in this directory (e.g. `git archive` of a commit) instead of the installed
    working tree."""

    def command(self) -> list[str]:
        if self.source is None:
            return [str(FRAUDSCORE), "serve", "--port", "0", "--bundle", str(self.bundle)]
        return [sys.executable, "-m", "scoring.cli", "serve", "--port", "0", "--bundle", str(self.bundle)]

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit.sqlite"

    def environment(self) -> dict[str, str]:
        # No FRAUDSCORE_* of the caller's shell leaks in (an audit path elsewhere would defeat the check).
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCORE_")}
        env |= {
            "FRAUDSCORE_DATA_DIR": str(self.data_dir),
            # Free ports, never the fixed defaults (8080, 9095) that another server may hold. 0 is
            # read the same by every version; the value that serves no page has changed.
            "FRAUDSCORE_REVIEW_PORT": "0",
            "FRAUDSCORE_METRICS_PORT": "0",
            "FRAUDSCORE_LOG_LEVEL": "WARNING",
            "FRAUDSCORE_GRACE_SECONDS": "1",
        }
        if self.encoder_dir is not None:
            env["FRAUDSCORE_ENCODER_DIR"] = str(self.encoder_dir)
        if self.source is not None:  # ahead of the editable install of the working tree
            env["PYTHONPATH"] = str(self.source)
        return env | dict(self.env)


def scratch_files(
    bundle: Path,
    scratch: Path,
    *,
    source_data_dir: Path | None = None,
    encoder_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> ServerFiles:
    """A scratch data directory for a server; the history store, its key and the text index are
    copied from `source_data_dir` where it has them (a bundle with history features needs the
    history it was served with, and the key its keys were hashed under). The copy goes through
    SQLite's backup, so a server writing the source meanwhile does not tear it."""
    scratch.mkdir(parents=True, exist_ok=True)
    if source_data_dir is not None:
        key = source_data_dir / "history.key"
        if key.exists():
            shutil.copyfile(key, scratch / "history.key")
            (scratch / "history.key").chmod(0o600)
        for name in ("history.sqlite", "text-index.sqlite"):
            if (source_data_dir / name).exists():
                backup_sqlite(source_data_dir / name, scratch / name)
    return ServerFiles(
        bundle=bundle.resolve(),
        data_dir=scratch.resolve(),
        encoder_dir=None if encoder_dir is None else encoder_dir.resolve(),
        env=dict(env or {}),
        source=None if source is None else source.resolve(),
    )


def backup_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


class ServerProcess:
    """One `fraudscore serve --port 0` subprocess; stderr appends to `log`."""

    def __init__(self, files: ServerFiles, *, log: Path, start_timeout: float = 300.0) -> None:
        self.files = files
        self.log = log
        started = time.perf_counter()
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                files.command(),
                stdout=subprocess.PIPE,
                stderr=err,
                env=files.environment(),
                cwd=files.data_dir,  # no .env of the working tree is read
                start_new_session=True,  # its own process group: `kill` takes its workers too
            )
        try:
            self.target = self._wait_ready(start_timeout)
        except BaseException:
            self.kill()
            raise
        self.start_seconds = time.perf_counter() - started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        out: IO[bytes] = self.proc.stdout
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], 0.5)
            if ready:
                chunk = os.read(out.fileno(), 4096)
                if not chunk:
                    break  # stdout closed: the process is gone
                seen += chunk
                for line in seen.decode(errors="replace").splitlines():
                    if line.startswith(READY):
                        return line.removeprefix(READY).split(" ")[0]
            elif self.proc.poll() is not None:
                break
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"server did not start (exit {self.proc.poll()}); stderr tail:\n{tail}")

    def kill(self) -> None:
        """SIGKILL to the server's process group: the process and, with `--workers N`, its workers,
        all at once (a crash of the whole server, not a worker's graceful stop)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, a graceful stop; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        return code


# -- applications ----------------------------------------------------------------------------------
def application_pool(
    rows: int, *, seed: int, attributes: Mapping[str, Any] | None = None
) -> list[pb.LoanApplication]:
    """Synthetic applications (from `fraudscore synth`) as wire messages."""
    frame = generate(rows, seed=seed).select(list(CANONICAL_SCHEMA))
    return [application_to_pb(row, dict(attributes or {})) for row in frame.iter_rows(named=True)]


def fresh_applications(pool: list[pb.LoanApplication], prefix: str) -> Iterator[pb.LoanApplication]:
    """The pool over and over, each time under a new application_id."""
    n = 0
    while True:
        app = pb.LoanApplication()
        app.CopyFrom(pool[n % len(pool)])
        app.application_id = f"{prefix}-{n:08d}"
        n += 1
        yield app


# -- the audit store, read-only --------------------------------------------------------------------
@dataclass(frozen=True)
class StoreCheck:
    integrity: str
    decisions: int
    lost: list[str]  # acknowledged, not on record
    mismatched: list[str]  # on record with another score or probability than was answered

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and not self.lost and not self.mismatched


def _pragma(db: sqlite3.Connection, pragma: str) -> str:
    return "; ".join(str(row[0]) for row in db.execute(f"PRAGMA {pragma}").fetchall())


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def stored_answers(db: sqlite3.Connection) -> dict[str, Answer]:
    rows = db.execute("SELECT application_id, score, probability FROM decisions")
    return {app: (int(score), float(p)) for app, score, p in rows}


def check_store(db: sqlite3.Connection, acknowledged: Mapping[str, Answer], *, pragma: str) -> StoreCheck:
    integrity = _pragma(db, pragma)
    stored = stored_answers(db)
    lost = sorted(app for app in acknowledged if app not in stored)
    mismatched = sorted(
        app for app, answer in acknowledged.items() if app in stored and stored[app] != answer
    )
    return StoreCheck(integrity, len(stored), lost, mismatched)


def check_crash_image(
    audit_path: Path, acknowledged: Mapping[str, Answer]
) -> tuple[StoreCheck, dict[str, Answer]]:
    """The store as the kill left it: the database and its WAL copied (no -shm), so SQLite recovers
    the WAL in the copy as a restart would. Returns the check and every stored answer."""
    with tempfile.TemporaryDirectory(prefix="crash-image-") as tmp:
        copy = Path(tmp) / audit_path.name
        for suffix in ("", "-wal"):
            source = audit_path.with_name(audit_path.name + suffix)
            if source.exists():
                shutil.copyfile(source, copy.with_name(copy.name + suffix))
        db = sqlite3.connect(copy)
        try:
            return check_store(db, acknowledged, pragma="integrity_check"), stored_answers(db)
        finally:
            db.close()


def in_history(path: Path, application_ids: list[str]) -> int | None:
    """How many of the applications the history store holds (None: no history store)."""
    if not path.exists():
        return None
    db = read_only(path)
    try:
        marks = ", ".join("?" * len(application_ids))
        sql = f"SELECT COUNT(*) FROM applications WHERE app IN ({marks})"
        return int(db.execute(sql, application_ids).fetchone()[0]) if application_ids else 0
    except sqlite3.OperationalError:  # a store of another format
        return None
    finally:
        db.close()


# -- one round -----------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Round:
    index: int
    server_start_s: float
    kill_delay_s: float
    calls: int = 0
    acknowledged: int = 0
    in_flight_at_kill: int = 0
    acknowledged_at_kill: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    crash_image: dict[str, Any] = field(default_factory=dict)
    on_record_unacknowledged: int = 0
    quick_check_after_restart: str = ""
    retried: int = 0
    retried_from_record: int = 0
    retry_failed: dict[str, int] = field(default_factory=dict)
    retry_mismatched: int = 0
    retry_refused: dict[str, int] = field(default_factory=dict)
    """Retry attempts the server shed (RESOURCE_EXHAUSTED, UNAVAILABLE) before answering."""
    in_history_not_on_record: int | None = None
    """Cut-off calls whose application the history store holds (it is written before the audit
    commit) though no decision is on record: velocity counts for applications never decided."""


async def drive_and_kill(
    server: ServerProcess,
    apps: Iterator[pb.LoanApplication],
    acknowledged: dict[str, Answer],
    rnd: Round,
    *,
    concurrency: int,
    call_timeout: float,
) -> dict[str, pb.LoanApplication]:
    """Closed-loop Score calls until the kill; returns the calls that did not come back OK (their
    outcome is unknown to the caller). Acknowledged answers go into `acknowledged`."""
    unknown: dict[str, pb.LoanApplication] = {}
    failed: Counter[str] = Counter()
    killed = asyncio.Event()
    in_flight = 0
    round_acks = 0

    connections = channels(server.target, concurrency)  # one per caller: spread over workers
    try:
        stubs = iter([pb_grpc.FraudScoringStub(c) for c in connections])

        async def worker() -> None:
            nonlocal in_flight, round_acks
            stub = next(stubs)
            while not killed.is_set():
                app = next(apps)
                in_flight += 1
                rnd.calls += 1
                try:
                    r = await stub.Score(pb.ScoreRequest(application=app), timeout=call_timeout)
                except grpc.aio.AioRpcError as exc:
                    failed[exc.code().name] += 1
                    unknown[app.application_id] = app
                    if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:  # shed: back off as a client would
                        await asyncio.sleep(0.05)
                else:
                    acknowledged[r.application_id] = (r.score, r.fraud_probability)
                    round_acks += 1
                finally:
                    in_flight -= 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        waited = time.monotonic()
        while round_acks == 0:  # the kill comes after the first answer: no round is empty by chance
            if any(w.done() for w in workers):  # a worker failed outside gRPC: say why
                killed.set()
                await asyncio.gather(*workers)
            if time.monotonic() - waited > 120 or server.proc.poll() is not None:
                killed.set()
                await asyncio.gather(*workers, return_exceptions=True)
                raise RuntimeError(f"round {rnd.index}: no call answered OK in 120 s ({dict(failed)})")
            await asyncio.sleep(0.005)
        await asyncio.sleep(rnd.kill_delay_s)
        rnd.in_flight_at_kill, rnd.acknowledged_at_kill = in_flight, round_acks
        server.kill()
        killed.set()
        await asyncio.gather(*workers)
    finally:
        for c in connections:
            await c.close()
    rnd.acknowledged = round_acks
    rnd.failed = dict(failed)
    return unknown


async def retry(
    server: ServerProcess,
    unknown: Mapping[str, pb.LoanApplication],
    on_record: Mapping[str, Answer],
    acknowledged: dict[str, Answer],
    rnd: Round,
    *,
    concurrency: int,
    call_timeout: float,
) -> None:
    """What a client does after a failed call: the same application again, with backoff while the
    server sheds load. Each must be answered OK in the end; one that was on record before the retry
    must get the recorded decision."""
    failed: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    todo = list(unknown.values())
    connections = channels(server.target, concurrency)  # one per caller: spread over workers
    try:
        stubs = itertools.cycle([pb_grpc.FraudScoringStub(c) for c in connections])

        async def score(app: pb.LoanApplication) -> pb.ScoreResponse | None:
            stub = next(stubs)
            for attempt in range(RETRY_ATTEMPTS):
                try:
                    response: pb.ScoreResponse = await stub.Score(
                        pb.ScoreRequest(application=app), timeout=call_timeout
                    )
                    return response
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in RETRYABLE or attempt == RETRY_ATTEMPTS - 1:
                        failed[exc.code().name] += 1
                        return None
                    refused[exc.code().name] += 1
                    await asyncio.sleep(0.05 * 2**attempt)
            return None

        async def worker() -> None:
            while todo:
                r = await score(todo.pop())
                if r is None:
                    continue
                answer = (r.score, r.fraud_probability)
                acknowledged[r.application_id] = answer
                if r.application_id in on_record:
                    rnd.retried_from_record += 1
                    rnd.retry_mismatched += on_record[r.application_id] != answer

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for c in connections:
            await c.close()
    rnd.retried = len(unknown)
    rnd.retry_failed = dict(failed)
    rnd.retry_refused = dict(refused)


# -- the harness ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class HarnessConfig:
    rounds: int = 10
    concurrency: int = 16
    kill_delay_s: tuple[float, float] = (0.05, 3.0)
    """The kill comes this long (uniformly drawn) after the round's first acknowledged answer."""
    call_timeout_s: float = 10.0
    seed: int = 7
    pool_rows: int = 20_000
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Lender attributes sent with every application (those the bundle was trained with)."""


@dataclass(kw_only=True)
class HarnessResult:
    rounds: list[Round]
    acknowledged: int
    lost: int
    mismatched: int
    final_integrity_check: str
    final_decisions: int
    clean_stop_exit: int
    errors: dict[str, int]
    server_start_s: list[float]

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.mismatched == 0
            and self.final_integrity_check == "ok"
            and self.clean_stop_exit == 0
            and all(
                r.crash_image.get("integrity") == "ok"
                and r.quick_check_after_restart == "ok"
                and not r.retry_failed
                and r.retry_mismatched == 0
                for r in self.rounds
            )
        )


def run_harness(files: ServerFiles, config: HarnessConfig, *, progress: bool = False) -> HarnessResult:
    rng = random.Random(config.seed)
    pool = application_pool(config.pool_rows, seed=config.seed, attributes=config.attributes)
    apps = fresh_applications(pool, f"CRASH-{uuid.uuid4().hex[:8]}")
    acknowledged: dict[str, Answer] = {}
    log = files.data_dir / "server.log"
    rounds: list[Round] = []
    starts: list[float] = []
    server = ServerProcess(files, log=log)
    try:
        starts.append(server.start_seconds)
        for index in range(1, config.rounds + 1):
            rnd = Round(
                index=index,
                server_start_s=round(server.start_seconds, 2),
                kill_delay_s=round(rng.uniform(*config.kill_delay_s), 3),
            )
            unknown = asyncio.run(
                drive_and_kill(
                    server,
                    apps,
                    acknowledged,
                    rnd,
                    concurrency=config.concurrency,
                    call_timeout=config.call_timeout_s,
                )
            )
            image, stored = check_crash_image(files.audit_path, acknowledged)
            rnd.crash_image = asdict(image)
            on_record = {app: stored[app] for app in unknown if app in stored}
            rnd.on_record_unacknowledged = len(on_record)
            rnd.in_history_not_on_record = in_history(
                files.data_dir / "history.sqlite", [app for app in unknown if app not in stored]
            )
            server = ServerProcess(files, log=log)
            starts.append(server.start_seconds)
            db = read_only(files.audit_path)
            try:
                rnd.quick_check_after_restart = _pragma(db, "quick_check")
            finally:
                db.close()
            asyncio.run(
                retry(
                    server,
                    unknown,
                    on_record,
                    acknowledged,
                    rnd,
                    concurrency=config.concurrency,
                    call_timeout=config.call_timeout_s,
                )
            )
            rounds.append(rnd)
            if progress:
                print(json.dumps(asdict(rnd) | {"crash_image": {"lost": len(image.lost)}}), file=sys.stderr)
        clean_exit = server.stop()
    except BaseException:
        server.kill()
        raise
    db = read_only(files.audit_path)
    try:
        final = check_store(db, acknowledged, pragma="integrity_check")
    finally:
        db.close()
    errors: Counter[str] = Counter()
    for r in rounds:
        errors.update(r.failed)
    return HarnessResult(
        rounds=rounds,
        acknowledged=len(acknowledged),
        lost=len(final.lost) + sum(len(r.crash_image["lost"]) for r in rounds),
        mismatched=len(final.mismatched) + sum(len(r.crash_image["mismatched"]) for r in rounds),
        final_integrity_check=final.integrity,
        final_decisions=final.decisions,
        clean_stop_exit=clean_exit,
        errors=dict(errors),
        server_start_s=[round(s, 2) for s in starts],
    )


# -- the command line ------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def server_code(source: Path | None) -> str:
    """Which code the server ran: a source directory, or the working tree at its commit, saying
    whether scoring/ or features/ had uncommitted changes (other people edit the same tree)."""
    if source is not None:
        return f"source directory {source}"

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args], capture_output=True, text=True
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "scoring", "features")
    return f"working tree at {git('rev-parse', '--short=12', 'HEAD')}" + (
        " with uncommitted changes in scoring/ or features/" if dirty else ""
    )


def markdown(out: dict[str, Any]) -> str:
    res, m = out["result"], out["machine"]
    lines = [
        f"# Crash harness ({out['date']})",
        "",
        f"Command: `{out['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work: load average "
        f"{m['load_average_at_start']} at the start); Python {m['python']}, grpcio {m['grpcio']}, "
        f"SQLite {m['sqlite']}. Server code: {out['server_code']}. Bundle: {out['bundle']}; "
        f"{out['config']['concurrency']} Score calls "
        "in flight (closed loop, a connection each), every call a fresh application_id; "
        + (f"`serve --workers {w}`; " if (w := out["config"].get("workers", 1)) > 1 else "")
        + "SIGKILL to the server's process group (with workers: the parent and every worker) "
        f"{out['config']['kill_delay_s'][0]}-{out['config']['kill_delay_s'][1]} s after the round's "
        "first acknowledged answer.",
        "",
        f"**{len(res['rounds'])} rounds, {res['acknowledged']} decisions acknowledged, {res['lost']} lost, "
        f"{res['mismatched']} on record with another answer.** Final `PRAGMA integrity_check`: "
        f"{res['final_integrity_check']}; {res['final_decisions']} decisions on record; clean stop exit "
        f"{res['clean_stop_exit']}. Failed calls at the kills: {res['errors'] or 'none'}. Server start "
        f"(to the serving line): {min(res['server_start_s'])}-{max(res['server_start_s'])} s.",
        "",
        "| round | kill after (s) | calls | acknowledged | in flight at kill | failed | lost (crash image) "
        "| integrity (crash image) | on record, unacknowledged | quick_check after restart | retried "
        "| retried from record | retry failed | in history, not on record |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rounds"]:
        lines.append(
            f"| {r['index']} | {r['kill_delay_s']} | {r['calls']} | {r['acknowledged']} | "
            f"{r['in_flight_at_kill']} | {r['failed'] or '-'} | {len(r['crash_image']['lost'])} | "
            f"{r['crash_image']['integrity']} | {r['on_record_unacknowledged']} | "
            f"{r['quick_check_after_restart']} | {r['retried']} | {r['retried_from_record']} | "
            f"{r['retry_failed'] or 0}{f' (shed first: {shed})' if (shed := r['retry_refused']) else ''} | "
            f"{r['in_history_not_on_record']} |"
        )
    lines += [
        "",
        "Lost: acknowledged (answered OK to the client) but not in the audit store's `decisions`, "
        "checked on a copy of the database and WAL as the kill left them, and at the end on the live "
        "file. On record, unacknowledged: committed, but the kill came before the answer reached the "
        "client; the retry with the same payload got the recorded decision. SIGKILL ends the process, "
        "not the machine (the page cache survives): this does not test power loss. In history, not on "
        "record: calls cut off by the kill whose application the history store had recorded (it is "
        "written before the audit commit) while no decision was on record; the retry (same "
        "application_id) does not record it twice, but a client that gives up leaves it counted in "
        "later applications' velocity features.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bundle", type=Path, default=ROOT / "var" / "demo-bundle")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var", help="history store and key to copy")
    parser.add_argument("--encoder", type=Path, help="default: DATA_DIR/encoder when present")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kill-min", type=float, default=0.05, help="seconds after the first answer")
    parser.add_argument("--kill-max", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N (default 1)")
    parser.add_argument("--results", default="crash_harness", help="bench/results/NAME.json and .md")
    parser.add_argument(
        "--source",
        type=Path,
        help="serve the code in this directory, e.g. `git archive HEAD | tar -x -C DIR` (default: the "
        "working tree, as installed)",
    )
    args = parser.parse_args()
    host = machine()
    if not (args.bundle / "MANIFEST.json").exists():
        raise SystemExit(f"no bundle at {args.bundle}: run `make run` once, or give --bundle")
    encoder = args.encoder or (args.data_dir / "encoder" if (args.data_dir / "encoder").exists() else None)
    scratch = Path(tempfile.mkdtemp(prefix="fraudscore-crash-"))
    config = HarnessConfig(
        rounds=args.rounds,
        concurrency=args.concurrency,
        kill_delay_s=(args.kill_min, args.kill_max),
        seed=args.seed,
    )
    started = time.perf_counter()
    try:
        files = scratch_files(
            args.bundle, scratch, source_data_dir=args.data_dir, encoder_dir=encoder, source=args.source
        )
        if args.workers > 1:
            files = replace(files, env={**files.env, "FRAUDSCORE_WORKERS": str(args.workers)})
        result = run_harness(files, config, progress=True)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "uv run --frozen python bench/crash_harness.py " + " ".join(sys.argv[1:]),
        "machine": host,
        "server_code": server_code(args.source),
        "bundle": str(args.bundle.relative_to(ROOT) if args.bundle.is_relative_to(ROOT) else args.bundle),
        "config": asdict(config) | {"attributes": dict(config.attributes), "workers": args.workers},
        "seconds": round(time.perf_counter() - started, 1),
        "ok": result.ok,
        "result": asdict(result),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.results}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = markdown(out)
    (RESULTS / f"{args.results}.md").write_text(md + "\n")
    print(md)
    if not result.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
