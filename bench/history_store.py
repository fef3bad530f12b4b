"""History store: lookup + update latency with a large history already stored.

Loads N synthetic applications (default 1,000,000) into a fresh SQLite history store, then scores
the history features of further applications one at a time (lookup of every key's aggregates, the
ring walk, then append), as the service does for each request, and reports p50/p99. Also the
in-process cost of the whole Score batch for one application (features + history + model), to give
the history its share; and the worst case of the ring walk: an application whose ring is just under
the cap after every hop, every other key of every member a hub.

    uv run python bench/history_store.py [--stored 1000000] [--probes 2000] [--results DIR]

Writes history_store.{json,md} into DIR (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.score_latency import RESULTS, machine, percentiles
from features.history import HASHED, LINK_KEYS, entity_keys, keyed_hash, with_outcomes
from features.history_store import SQLiteHistoryStore
from features.rings import RING_BOUND
from features.schema import CANONICAL_SCHEMA
from scoring.synth import generate

BENCH = Path(__file__).resolve().parent
SECRET = b"bench-secret"


def keyed(frame: Any) -> Any:
    return entity_keys(frame, SECRET).with_columns(application_id=frame.get_column("application_id"))


def crowded_ring(t0: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Applications (from t0, a second apart) and a probe after them whose ring walk reads the most
    the bounds allow: 10 members on the probe's device, 20 more through their phones, 18 through
    those members' emails (49 with the probe, one under the cap), every member's other link keys
    hubs of 11 further applications each."""
    hub = RING_BOUND.hub
    rows: list[dict[str, Any]] = []

    def add(identity: str, **links: str) -> dict[str, Any]:
        row = dict.fromkeys(HASHED) | {"ts": t0 + len(rows) * 1_000_000, "cents": 100_000}
        row |= {"application_id": f"crowd-{len(rows)}", "identity": keyed_hash(SECRET, identity)}
        row |= {kind: keyed_hash(SECRET, f"crowd:{kind}:{value}") for kind, value in links.items()}
        rows.append(row)
        return row

    hubs = [k for k in LINK_KEYS if k not in ("device", "phone", "email")]
    members = []
    for m in range(10):
        members.append(add(f"m{m}", device="d0", phone=f"p{m}", email=f"e{m}-0"))
        for k in range(2):
            members.append(add(f"m{m}-{k}", phone=f"p{m}", email=f"e{m}-{k + 1}"))
    for m in range(18):
        members.append(add(f"n{m}", email=f"e{m % 10}-{1 + m // 10}"))
    for n, member in enumerate(members):
        for kind in hubs:
            member[kind] = keyed_hash(SECRET, f"crowd:{kind}:hub{n}")
        for f in range(hub + 1):
            add(f"f{n}-{f}", **{kind: f"hub{n}" for kind in hubs})
    probe = dict.fromkeys(HASHED) | {"ts": t0 + (len(rows) + 1) * 1_000_000, "cents": 100_000}
    probe |= {"application_id": "crowd-probe", "identity": keyed_hash(SECRET, "probe")}
    probe["device"] = keyed_hash(SECRET, "crowd:device:d0")
    return rows, probe


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=2_000)
    parser.add_argument("--results", type=Path, default=RESULTS)
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
        one, rings = [], []
        for row in probes:
            row["application_id"] = "probe-" + row["application_id"]
            t = time.perf_counter()
            features = store.lookup_and_record([row])[0]
            one.append((time.perf_counter() - t) * 1000)
            rings.append(features["ring_applications_28d"] or 0)
        result["lookup_and_record_one_ms"] = percentiles(one)
        result["probes_in_a_ring"] = sum(r > 1 for r in rings)
        result["probes_at_the_ring_cap"] = sum(r >= RING_BOUND.cap for r in rings)
        batch = []
        for start in range(0, len(probes) - 16, 16):
            rows = [dict(r, application_id="b-" + r["application_id"]) for r in probes[start : start + 16]]
            t = time.perf_counter()
            store.lookup_and_record(rows)
            batch.append((time.perf_counter() - t) * 1000 / 16)
        result["lookup_and_record_per_app_in_batches_of_16_ms"] = percentiles(batch)
        crowd, probe = crowded_ring(max(r["ts"] for r in probes) + 1)
        store.record_many(crowd)
        worst = []
        for n in range(200):
            t = time.perf_counter()
            features = store.lookup_and_record(
                [dict(probe, application_id=f"crowd-probe-{n}")], record=False
            )[0]
            worst.append((time.perf_counter() - t) * 1000)
        assert features["ring_applications_28d"] == RING_BOUND.cap - 1, features["ring_applications_28d"]
        result["worst_ring_lookup_ms"] = percentiles(worst)
        store.close()
        # Opening the file again, in a process of its own: the time to read the log into memory and
        # the memory the index takes (bench/history_memory.py).
        subprocess.run(
            [
                sys.executable,
                str(BENCH / "history_memory.py"),
                "--store",
                str(path),
                "--results",
                "history_store_open",
            ],
            check=True,
        )
        opened = json.loads((RESULTS / "history_store_open.json").read_text())
        result["open_s"], result["index_mib"] = (
            opened["open_seconds"],
            opened["peak_rss_mib"] - opened["rss_before_mib"],
        )
    score = RESULTS / "score_latency.json"
    if score.exists():
        seq = json.loads(score.read_text())["sequential"]["latency_ms"]["p50"]
        result["score_sequential_p50_ms"] = seq
        result["history_share_of_score_p50"] = round(result["lookup_and_record_one_ms"]["p50"] / seq, 3)
    result["machine"] = machine()
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.results.mkdir(exist_ok=True)
    (args.results / "history_store.json").write_text(json.dumps(result, indent=2) + "\n")
    one_ms, b_ms = result["lookup_and_record_one_ms"], result["lookup_and_record_per_app_in_batches_of_16_ms"]
    w_ms = result["worst_ring_lookup_ms"]
    md = "\n".join(
        [
            f"# History store ({result['date']})",
            "",
            f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. In-memory index "
            f"over a log in SQLite (WAL), {args.stored:,} synthetic applications stored "
            f"({result['file_mib']} MiB database, {result['wal_mib']} MiB WAL and index; loaded in "
            f"{result['load_s']} s, {result['load_apps_per_s']:,} applications/s). Opening the file "
            f"again took {result['open_s']} s and {result['index_mib']:,.0f} MiB of memory "
            f"(`bench/history_memory.py`).",
            "",
            "| lookup + update of one application's 12 keys | p50 ms | p90 ms | p99 ms | p99.9 ms |",
            "|---|---|---|---|---|",
            f"| alone | {one_ms['p50']} | {one_ms['p90']} | {one_ms['p99']} | {one_ms['p99.9']} |",
            f"| per application, batches of 16 | {b_ms['p50']} | {b_ms['p90']} | {b_ms['p99']} "
            f"| {b_ms['p99.9']} |",
            f"| worst ring walk (lookup only) | {w_ms['p50']} | {w_ms['p90']} | {w_ms['p99']} "
            f"| {w_ms['p99.9']} |",
            "",
            f"Probes in a ring of 2 or more: {result['probes_in_a_ring']} of {args.probes}; at the cap "
            f"({RING_BOUND.cap}): {result['probes_at_the_ring_cap']}.",
            "",
            f"Share of sequential Score p50 ({result.get('score_sequential_p50_ms', '?')} ms, from "
            f"score_latency.json): {result.get('history_share_of_score_p50', '?')}.",
        ]
    )
    (args.results / "history_store.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
