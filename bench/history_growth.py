"""The history index while serving: what a process's memory grows by, and what each micro-batch takes,
as new applications arrive after the store was opened (the service's `lookup_and_record`, in
micro-batches, on a copy of the demo history; nothing goes over gRPC).

    uv run --frozen python bench/history_growth.py [--applications 100000] [--batch 16] [--rev REV]
        [--store var/history.sqlite] [--results NAME]

The applications are new synthetic ones, keyed with the demo's history key and dated after the
stored history, so their keys repeat as new applications' would. `--rev` runs the index of another
revision (`git archive` of scoring/ and features/), for a before/after in separate processes.
Writes bench/results/NAME.{json,md} (default history_growth).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fraudscore_side as fs  # noqa: E402
from history_memory import breakdown, cold_runs, save  # noqa: E402
from score_latency import machine  # noqa: E402


def _rss_mib() -> float:
    """The process's resident memory now (VmRSS), after the garbage collector and after giving the
    C heap's free memory back to the system (`malloc_trim`): what is held, not what was freed."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--applications", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rev", default=None)
    parser.add_argument("--store", type=Path, default=fs.DATA / "history.sqlite")
    parser.add_argument("--results", default="history_growth")
    parser.add_argument(
        "--fresh-run", type=int, default=0, help="the index's FRESH_RUN instead of its own (0: its own)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fraudscore-history-growth-"))
    commit = fs.import_revision(args.rev, work / "source") if args.rev else "working tree"
    import polars as pl

    from features import history_index
    from features.history import entity_keys
    from features.history_store import SQLiteHistoryStore
    from features.schema import CANONICAL_SCHEMA
    from scoring.settings import Settings
    from scoring.synth import generate

    if args.fresh_run:
        history_index.FRESH_RUN = args.fresh_run  # type: ignore[attr-defined,unused-ignore]
    try:
        copy = work / "history.sqlite"
        shutil.copyfile(args.store, copy)
        db = sqlite3.connect(copy)
        stored, last_ts = db.execute("SELECT COUNT(*), MAX(ts) FROM applications").fetchone()
        db.close()
        secret = Settings(data_dir=fs.DATA).resolved_history_secret()
        frame = generate(args.applications, seed=9090).select(list(CANONICAL_SCHEMA))
        keyed = entity_keys(frame, secret).with_columns(
            application_id=pl.lit("GROWTH-") + frame.get_column("application_id")
        )
        keyed = keyed.with_columns(ts=pl.col("ts") - pl.col("ts").min() + last_ts + 1_000_000).sort("ts")
        rows = list(keyed.iter_rows(named=True))
        del frame, keyed

        store = SQLiteHistoryStore(copy)
        index = store._index
        rss_open = _rss_mib()
        held_open = sum(breakdown(index).values())
        batches: list[float] = []
        samples = []
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(0, len(rows), args.batch):
            t = time.perf_counter()
            store.lookup_and_record(rows[i : i + args.batch])
            batches.append((time.perf_counter() - t) * 1000)
            if (i // args.batch) % max(1, len(rows) // args.batch // 10) == 0:
                samples.append((i + args.batch, round(_rss_mib() - rss_open, 1)))
        if hasattr(index, "wait_for_merges"):
            index.wait_for_merges()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rss_end = _rss_mib()
        held = breakdown(index)
        runs = [len(keys) for keys, _ in cold_runs(index)]
        in_dict = len(index._by_key) + len(getattr(index, "_fresh", ()))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    served = len(rows)
    ordered = sorted(batches)
    out = {
        "machine": machine(),
        "code": commit,
        "stored_applications": stored,
        "applications_served": served,
        "batch": args.batch,
        "rss_after_opening_mib": round(rss_open, 1),
        "rss_growth_mib": round(rss_end - rss_open, 1),
        "rss_growth_bytes_per_application": round((rss_end - rss_open) * 2**20 / served),
        "structures_growth_bytes_per_application": round((sum(held.values()) - held_open) / served),
        "rss_growth_samples": samples,
        "dict_entries": in_dict,
        "runs": runs,
        "batch_ms": {
            "p50": round(statistics.median(batches), 2),
            "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
            "max": round(ordered[-1], 2),
        },
        "cpu_ms_per_application": round(cpu * 1000 / served, 3),
        "seconds": round(seconds, 1),
        "structures_bytes": held,
    }
    command = f"uv run --frozen python bench/history_growth.py --applications {served}"
    command += f" --batch {args.batch}" + (f" --rev {args.rev}" if args.rev else "")
    command += f" --fresh-run {args.fresh_run}" if args.fresh_run else ""
    text = (
        f"# The history index while serving ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
        f"`{command}` (code: {commit}): {served:,} new applications in batches of {args.batch} after "
        f"opening {stored:,} stored ones. Machine: {out['machine']['cpu']}, "
        f"{out['machine']['cores']} cores.\n\n"
        "| RSS after opening MiB | RSS growth MiB | bytes an application (RSS) | bytes an application "
        "(structures) | dict entries | runs | batch p50 / p99 / max ms | CPU ms an application |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {rss_open:,.0f} | {out['rss_growth_mib']:,} | {out['rss_growth_bytes_per_application']:,} | "
        f"{out['structures_growth_bytes_per_application']:,} | {in_dict:,} | {len(runs)} "
        f"({', '.join(f'{n:,}' for n in runs)}) | {out['batch_ms']['p50']} / {out['batch_ms']['p99']} / "
        f"{out['batch_ms']['max']} | {out['cpu_ms_per_application']} |\n\n"
        "RSS growth as the applications came (applications served, MiB; each after `malloc_trim`): "
        + ", ".join(f"{n:,}: {mib}" for n, mib in samples)
        + "\n"
    )
    save(args.results, text, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
