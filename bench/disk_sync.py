"""How long the data directory's disk takes to make a write durable: the floor under every audit
commit (synchronous=FULL: each acknowledged decision waits for one), and so under the service's
p99 at any load.

Two probes, one after the other, each for `--seconds`: a 4 KiB append to a file followed by
`fdatasync`, and a one-row commit to a SQLite file in WAL mode with synchronous=FULL (what the audit
store's commit costs the disk). Nothing else should run meanwhile.

    uv run --frozen python bench/disk_sync.py [--dir var] [--seconds 20] [--results disk_sync]

Writes bench/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from score_latency import machine, percentiles  # noqa: E402


def _probe(step: Callable[[], None], seconds: float) -> dict[str, float]:
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        step()
        out.append((time.perf_counter() - t) * 1000)
    return percentiles(out) | {"n": len(out), "max": round(max(out), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=BENCH.parent / "var")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--results", default="disk_sync")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"machine": machine(), "dir": str(args.dir), "seconds": args.seconds}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="disk-sync-") as tmp:
        fd = os.open(Path(tmp) / "append.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        page = os.urandom(4096)

        def append() -> None:
            os.write(fd, page)
            os.fdatasync(fd)

        try:
            result["fdatasync_ms"] = _probe(append, args.seconds)
        finally:
            os.close(fd)
        db = sqlite3.connect(Path(tmp) / "commit.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        body = os.urandom(2048)

        def commit() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body) VALUES (?)", (body,))
            db.execute("COMMIT")

        try:
            result["sqlite_commit_ms"] = _probe(commit, args.seconds)
        finally:
            db.close()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    probes = (("fdatasync_ms", "4 KiB append + fdatasync"), ("sqlite_commit_ms", "SQLite commit, WAL, FULL"))
    for name, label in probes:
        p = result[name]
        assert isinstance(p, dict)
        rows.append(
            f"| {label} | {p['n']:,} | {p['p50']} | {p['p90']} | {p['p99']} | {p['p99.9']} | {p['max']} |"
        )
    m = result["machine"]
    assert isinstance(m, dict)
    text = "\n".join(
        [
            f"# Durable writes on the data directory's disk ({date})",
            "",
            f"`uv run --frozen python bench/disk_sync.py --seconds {args.seconds:g}` in {args.dir}; machine: "
            f"{m['cpu']}, {m['cores']} cores. One probe after the other, each for {args.seconds:g} s.",
            "",
            "| probe | n | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    results = BENCH / "results"
    (results / f"{args.results}.json").write_text(json.dumps(result, indent=1) + "\n")
    (results / f"{args.results}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
