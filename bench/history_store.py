"""History store: lookup + update latency with a large history already stored.

Loads N synthetic applications (default 1,000,000) into a fresh SQLite history store, then scores
the history features of further applications one at a time (lookup of every key's aggregates, then
append), as the service does for each request, and reports p50/p99. Also the in-process cost of the
whole Score batch for one application (features + history + model), to give the history its share.

    uv run python bench/history_store.py [--stored 1000000] [--probes 2000]

Writes bench/results/history_store.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.score_latency import RESULTS, machine, percentiles
from features.history import entity_keys, with_outcomes
from features.history_store import SQLiteHistoryStore
from features.schema import CANONICAL_SCHEMA
from scoring.synth import generate

SECRET = b"bench-secret"


def keyed(frame: Any) -> Any:
    return entity_keys(frame, SECRET).with_columns(application_id=frame.get_column("application_id"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=2_000)
    args = parser.parse_args()
    result: dict[str, Any] = {"stored": args.stored, "probes": args.probes}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite"
        store = SQLiteHistoryStore(path)
        t = time.perf_counter()
        generated = generate(args.stored, seed=1)
        history = generated.select(list(CANONICAL_SCHEMA))
        # Outcomes known 30 days after submission, as the demo loads them.
        keys = with_outcomes(keyed(history), generated.get_column("is_fraud"), 30.0)
        result["prepare_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        for start in range(0, keys.height, 100_000):
            chunk = keys.slice(start, 100_000)
            store.record_many(chunk.iter_rows(named=True))
            store.record_outcomes(chunk.select("application_id", "fraud", "known_at").iter_rows())
        result["load_s"] = round(time.perf_counter() - t, 1)
        result["load_apps_per_s"] = round(args.stored / result["load_s"])
        result["file_mib"] = round(path.stat().st_size / 2**20, 1)
        result["wal_mib"] = round(sum(p.stat().st_size for p in Path(tmp).iterdir() if p != path) / 2**20, 1)
        # Probes: new applications from the same population and period (another seed), so their
        # keys meet the stored ones as often as real traffic would.
        probes = list(
            keyed(generate(args.probes, seed=2).select(list(CANONICAL_SCHEMA))).iter_rows(named=True)
        )
        one = []
        for row in probes:
            row["application_id"] = "probe-" + row["application_id"]
            t = time.perf_counter()
            store.lookup_and_record([row])
            one.append((time.perf_counter() - t) * 1000)
        result["lookup_and_record_one_ms"] = percentiles(one)
        batch = []
        for start in range(0, len(probes) - 16, 16):
            rows = [dict(r, application_id="b-" + r["application_id"]) for r in probes[start : start + 16]]
            t = time.perf_counter()
            store.lookup_and_record(rows)
            batch.append((time.perf_counter() - t) * 1000 / 16)
        result["lookup_and_record_per_app_in_batches_of_16_ms"] = percentiles(batch)
        store.close()
    score = RESULTS / "score_latency.json"
    if score.exists():
        seq = json.loads(score.read_text())["sequential"]["latency_ms"]["p50"]
        result["score_sequential_p50_ms"] = seq
        result["history_share_of_score_p50"] = round(result["lookup_and_record_one_ms"]["p50"] / seq, 3)
    result["machine"] = machine()
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "history_store.json").write_text(json.dumps(result, indent=2) + "\n")
    one_ms, b_ms = result["lookup_and_record_one_ms"], result["lookup_and_record_per_app_in_batches_of_16_ms"]
    md = "\n".join(
        [
            f"# History store ({result['date']})",
            "",
            f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. SQLite (WAL), "
            f"{args.stored:,} synthetic applications stored ({result['file_mib']} MiB database, "
            f"{result['wal_mib']} MiB WAL and index; loaded in "
            f"{result['load_s']} s, {result['load_apps_per_s']:,} applications/s).",
            "",
            "| lookup + update of one application's 12 keys | p50 ms | p90 ms | p99 ms | p99.9 ms |",
            "|---|---|---|---|---|",
            f"| alone | {one_ms['p50']} | {one_ms['p90']} | {one_ms['p99']} | {one_ms['p99.9']} |",
            f"| per application, batches of 16 | {b_ms['p50']} | {b_ms['p90']} | {b_ms['p99']} "
            f"| {b_ms['p99.9']} |",
            "",
            f"Share of sequential Score p50 ({result.get('score_sequential_p50_ms', '?')} ms, from "
            f"score_latency.json): {result.get('history_share_of_score_p50', '?')}.",
        ]
    )
    (RESULTS / "history_store.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
