"""What the history store's in-memory index costs: the time to open a copy of a history store (its
log read into `features.history_index`) and the memory it takes in one process, with the time to
convert a format-4 file first where the store is one.

    uv run --frozen python bench/history_memory.py [--store var/history.sqlite] [--results NAME]

The store itself is not touched: a copy is converted (in a child process, so that the conversion's
own memory does not count) and opened. Also says which of the index's structures hold the memory
(`sys.getsizeof` of each container and of the objects it alone holds). Writes
bench/results/NAME.{json,md} (default history_memory).
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
from typing import Any

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


def breakdown(index: Any) -> dict[str, int]:
    """Bytes held by each structure of a `features.history_index.HistoryIndex`: its containers and
    the objects in them (each object counted once, where it is first met)."""
    seen: set[int] = set()

    def own(obj: object) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return sys.getsizeof(obj)

    by_key, fresh = index._by_key, getattr(index, "_fresh", {})
    return {
        "application ids and their numbers (dict)": own(index._number)
        + sum(own(k) + own(v) for k, v in index._number.items())
        + own(index._ids),
        "times and amounts (arrays)": own(index._ts) + own(index._cents),
        "identity and email hashes (lists, shared bytes)": own(index._identity)
        + own(index._email)
        + own(index._shared)
        + sum(own(v) for v in index._shared.values()),
        "each application's packed keys (bytes)": own(index._keys) + sum(own(k) for k in index._keys),
        "key -> applications: the dict's table": own(by_key),
        "key -> applications: the 16-byte keys": sum(own(k) for k in by_key),
        "key -> applications: numbers and lists": sum(own(v) for v in by_key.values()),
        "keys new since the last run (dict)": own(fresh) + sum(own(k) + own(v) for k, v in fresh.items()),
        "keys carried once: sorted arrays": sum(
            int(keys.__sizeof__() + nums.__sizeof__()) for keys, nums in cold_runs(index)
        ),
    }


def cold_runs(index: Any) -> list[tuple[Any, Any]]:
    """The index's sorted runs of keys carried once (one pair of arrays before the runs came)."""
    if hasattr(index, "_runs"):
        return list(index._runs)
    return [(index._cold_keys, index._cold_nums)] if hasattr(index, "_cold_keys") else []


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
        index = store._index
        held = breakdown(index)
        cold = sum(len(keys) for keys, _ in cold_runs(index))
        distinct_keys = len(index._by_key) + cold
        repeated_keys = sum(1 for v in index._by_key.values() if isinstance(v, list))
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
        "distinct_keys": distinct_keys,
        "keys_seen_more_than_once": repeated_keys,
        "structures_bytes": held,
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
        f"{converted} Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores.\n\n"
        f"Where it goes ({distinct_keys:,} distinct keys, {distinct_keys / max(apps, 1):.1f} an "
        f"application, {repeated_keys:,} of them seen more than once):\n\n"
        "| structure | MiB | bytes an application |\n|---|---|---|\n"
        + "".join(
            f"| {name} | {b / 2**20:.1f} | {b / max(apps, 1):.0f} |\n"
            for name, b in [*held.items(), ("total", sum(held.values()))]
        )
    )
    save(args.results, text, out)
    return 0


def save(name: str, text: str, out: dict[str, Any]) -> None:
    """Writes bench/results/NAME.md (`text`, also printed) and NAME.json (`out`)."""
    results = BENCH / "results"
    (results / f"{name}.md").write_text(text)
    (results / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
