"""Interleaved A/B of the service at two (or more) git revisions: each round serves every revision in
turn (`fraudscore serve` on the code exported by `git archive`, fresh copies of the demo stores)
and drives it with the same kind of load; the machine's drift and other people's work then fall on
all of them alike. Reports each run and, per revision, the medians over the rounds of answers per
second, p50, p99 and server CPU per answer.

    uv run --frozen python bench/ab.py fcc243f HEAD [--kind history]
        [--concurrency 16 | --rate R | --stream N] [--seconds 10] [--rounds 3] [--workers 1]
        [--results ab-NAME]

A revision written `REV+rr` (with `--workers N`, revisions since aedec5c) is served with each
worker also on a port of its own (`--worker-port-base`), and the client's channels use gRPC's
round_robin policy over those ports: calls, not connections, are spread over the workers. `ab.py
HEAD HEAD+rr --workers 2` compares the two ways of reaching the same code.

Writes bench/results/NAME.json and NAME.md (default ab). One load phase per run: for the whole set of
scenarios use `bench/suite.py --rev REV --results NAME`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fraudscore_side as fs  # noqa: E402
import loadgen  # noqa: E402
import suite_report  # noqa: E402
from score_latency import machine  # noqa: E402


def _connections(args: argparse.Namespace) -> int:
    """As the suite: one connection alone; with several workers 8 a worker for unary calls and 4 a
    worker for ScoreBatch (a stream on each). SO_REUSEPORT spreads connections, not calls: with
    one stream a worker, both streams of 2 workers landed on one worker about half the time."""
    if args.connections:
        return int(args.connections)
    if args.workers == 1:
        return 1
    return (4 if args.stream else 8) * args.workers


async def drive(
    args: argparse.Namespace, target: str, pid: int, warm: list[bytes], requests: list[bytes]
) -> Any:
    connections = _connections(args)
    async with loadgen.opened(target, connections, fs.SCORE) as (channels, call):
        await loadgen.closed_loop(call, itertools.cycle(warm), concurrency=4, seconds=3.0, pid=pid)
        return await loadgen.run_load(
            args, channels, call, fs.SCORE_BATCH, iter(requests), seconds=args.seconds, pid=pid
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revs", nargs="+", help="git revisions to compare (two or more)")
    parser.add_argument("--kind", choices=("tabular", "history", "text"), default="history")
    parser.add_argument(
        "--mix",
        choices=("mix", "risky", "consumer", "small_business"),
        default="mix",
        help="the applications sent (risky: every one REVIEW/DECLINE, with reasons); not with text",
    )
    loadgen.add_load_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="client channels (default: 1 alone; 8 a worker, 4 for ScoreBatch); with REV+rr each "
        "channel holds a connection to every worker",
    )
    parser.add_argument("--results", default="ab")
    args = parser.parse_args()
    if len(args.revs) < 2:
        parser.error("give at least two revisions")
    work = Path(tempfile.mkdtemp(prefix="fraudscore-ab-"))
    sources = {
        rev: fs.export(rev.removesuffix("+rr"), work / f"source-{i}") for i, rev in enumerate(args.revs)
    }
    pool = fs.Pool(prefix=f"AB-{int(time.time())}")
    kind = "text128" if args.kind == "text" else args.mix
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for rev, (commit, source) in sources.items():
            warm = pool.requests(kind, 200)
            per_second = args.rate or (1500.0 if args.stream else 800.0)
            # Enough that no application is sent twice (a repeat is answered from the record).
            in_flight = args.stream * _connections(args)
            requests = pool.requests(kind, int(per_second * args.seconds * 1.2) + in_flight)
            balanced = rev.endswith("+rr")
            server = fs.start_server(
                fs.bundle(args.kind),
                work / f"state-{round_}-{commit[:12]}",
                source,
                workers=args.workers,
                balanced=balanced,
            )
            try:
                before = fs.server_counters(server)
                target = server.balanced_target if balanced and server.balanced_target else server.target
                result = asyncio.run(drive(args, target, server.pid, warm, requests))
                result["server_counters"] = fs.counters_during(before, fs.server_counters(server))
            finally:
                server.stop()
            run = {"round": round_, "rev": rev, "commit": commit} | result
            runs.append(run)
            print(
                f"round {round_} {rev} ({commit[:8]}): {result['throughput_rps']}/s, "
                f"p50 {result['latency_ms'].get('p50')} ms, p99 {result['latency_ms'].get('p99')} ms, "
                f"server CPU {result['server_cpu_ms_per_request']} ms an answer, "
                f"errors {result['errors'] or 'none'}; "
                + suite_report.describe_stalls(result["server_counters"]),
                flush=True,
            )
    load = loadgen.describe_load(args)
    m = machine()
    lines = [
        f"# A/B ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`uv run --frozen python bench/ab.py {' '.join(sys.argv[1:])}`: the {args.kind} bundle "
        f"({kind} applications), "
        f"{args.workers} worker(s), {load}, {args.seconds:g} s a run, {args.rounds} interleaved rounds. "
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; client and server share it.",
        "",
        "| revision | commit | answered /s (runs) | median /s | median p50 ms | median p99 ms "
        "| median server CPU ms an answer | stalls in each run: GC pauses, slow audit commits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rev, (commit, _) in sources.items():
        mine = [r for r in runs if r["rev"] == rev]

        def med(key: str, of: list[dict[str, Any]] = mine) -> float:
            return round(statistics.median(float(r[key]) for r in of), 3)

        timed = [r for r in mine if r["latency_ms"]]  # a stream's items have no latency of their own
        p50 = round(statistics.median(r["latency_ms"]["p50"] for r in timed), 2) if timed else "-"
        p99 = round(statistics.median(r["latency_ms"]["p99"] for r in timed), 2) if timed else "-"
        each = " / ".join(f"{r['throughput_rps']:g}" for r in mine)
        stalls = " / ".join(suite_report.describe_stalls(r["server_counters"]) for r in mine)
        lines.append(
            f"| {rev} | {commit[:12]} | {each} | {med('throughput_rps')} | {p50} | {p99} | "
            f"{med('server_cpu_ms_per_request')} | {stalls} |"
        )
    text = "\n".join(lines) + "\n"
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / f"{args.results}.md").write_text(text)
    (results / f"{args.results}.json").write_text(
        json.dumps({"machine": m, "args": vars(args), "runs": runs}, indent=1)
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
