"""What keeping the history store in memory would cost, naively: every key event of a history store
loaded into per-key Python lists (the shape an in-memory window index would take), timed, with the
process's peak memory. A sizing for the structural change docs/performance.md names, not a feature.

    uv run --frozen python bench/history_memory.py [--store var/history.sqlite] [--results NAME]

Writes bench/results/NAME.{json,md} (default history_memory).
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from score_latency import machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, default=BENCH.parent / "var" / "history.sqlite")
    parser.add_argument("--results", default="history_memory")
    args = parser.parse_args()
    db = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
    events, apps, first, last = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT app), MIN(ts), MAX(ts) FROM key_events"
    ).fetchone()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    kinds: dict[str, int] = {}
    index: dict[tuple[int, bytes], list[tuple[int, bytes | None, bytes | None, int, str]]] = {}
    for kind, key, ts, identity, email, cents, app in db.execute(
        "SELECT kind, key, ts, identity, email, cents, app FROM key_events"
    ):
        slot = (kinds.setdefault(kind, len(kinds)), key)
        found = index.get(slot)
        if found is None:
            index[slot] = found = []
        found.append((ts, identity, email, cents, app))
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "machine": machine(),
        "store": str(args.store),
        "store_mib": round(args.store.stat().st_size / 2**20, 1),
        "key_events": events,
        "applications": apps,
        "days": round((last - first) / 86_400e6, 1),
        "distinct_keys": len(index),
        "load_seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "rss_before_mib": round(before / 1024, 1),
    }
    text = (
        f"# History in memory, naively ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
        f"`uv run --frozen python bench/history_memory.py`: {args.store.name} ({out['store_mib']} MiB, "
        f"{events:,} key events of {apps:,} applications over {out['days']} days, {len(index):,} distinct "
        f"keys) loaded into per-key lists of (time, identity, email, cents, application) tuples in "
        f"{seconds:.1f} s; peak memory of the process {peak_mib:,.0f} MiB ({out['rss_before_mib']:,.0f} "
        f"before loading). Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores.\n"
    )
    results = BENCH / "results"
    (results / f"{args.results}.md").write_text(text)
    (results / f"{args.results}.json").write_text(json.dumps(out, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
