"""What the history store's in-memory index costs: the time to open a copy of a history store (its
log read into `features.history_index`) and the memory it takes in one process, with the time to
convert a format-4 file first where the store is one.

    uv run --frozen python bench/history_memory.py [--store var/history.sqlite] [--results NAME]

The store itself is not touched: a copy is converted (in a child process, so that the conversion's
own memory does not count) and opened. Writes bench/results/NAME.{json,md} (default history_memory).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from score_latency import machine  # noqa: E402


def _rss_mib() -> float:
    """The process's peak resident memory (VmHWM: unlike getrusage's maximum, it starts afresh at
    exec, so a child of a large process does not report its parent's)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, default=ROOT / "var" / "history.sqlite")
    parser.add_argument("--results", default="history_memory")
    args = parser.parse_args()
    from features.history_store import SQLiteHistoryStore

    work = Path(tempfile.mkdtemp(prefix="fraudscore-history-memory-"))
    try:
        copy = work / "history.sqlite"
        shutil.copyfile(args.store, copy)
        db = sqlite3.connect(copy)
        found = db.execute("PRAGMA user_version").fetchone()[0]
        db.close()
        convert_s = None
        if found != 5:
            started = time.perf_counter()
            code = "import sys; from features.history_store import SQLiteHistoryStore; "
            code += "SQLiteHistoryStore(sys.argv[1]).close()"
            subprocess.run([sys.executable, "-c", code, str(copy)], check=True, cwd=ROOT)
            convert_s = time.perf_counter() - started
        before = _rss_mib()
        started = time.perf_counter()
        store = SQLiteHistoryStore(copy)
        open_s = time.perf_counter() - started
        peak = _rss_mib()
        db = sqlite3.connect(copy)
        apps, first, last = db.execute("SELECT COUNT(*), MIN(ts), MAX(ts) FROM applications").fetchone()
        keys = sum(len(k) // 17 for (k,) in db.execute("SELECT keys FROM applications"))
        db.close()
        store.close()
        size_mib = copy.stat().st_size / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "machine": machine(),
        "store": str(args.store),
        "format_found": found,
        "store_mib": round(args.store.stat().st_size / 2**20, 1),
        "converted_mib": round(size_mib, 1),
        "convert_seconds": None if convert_s is None else round(convert_s, 2),
        "applications": apps,
        "key_events": keys,
        "days": round((last - first) / 86_400e6, 1),
        "open_seconds": round(open_s, 2),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "bytes_per_application": round((peak - before) * 2**20 / max(apps, 1)),
    }
    converted = (
        ""
        if convert_s is None
        else (
            f" Converting it from format {found} first took {convert_s:.1f} s (once; the file went from "
            f"{out['store_mib']} to {out['converted_mib']} MiB)."
        )
    )
    text = (
        f"# The history index in memory ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
        f"`uv run --frozen python bench/history_memory.py`: {args.store.name} ({apps:,} applications, "
        f"{keys:,} key events, over {out['days']} days) opened in {open_s:.1f} s; the process grew from "
        f"{before:,.0f} to {peak:,.0f} MiB, about {out['bytes_per_application']:,} bytes an application."
        f"{converted} Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores.\n"
    )
    results = BENCH / "results"
    (results / f"{args.results}.md").write_text(text)
    (results / f"{args.results}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
