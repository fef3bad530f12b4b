"""Where a loaded server's time goes: py-spy samples `fraudscore serve` (every process of it) while
the suite's load generator drives it with new applications; prints the functions with the largest
inclusive and self shares of the samples (Python frames; time inside a C extension such as ONNX
Runtime, polars or SQLite counts to the Python frame that called it).

    uv run --frozen python bench/profile_server.py [--kind text] [--mix risky] [--rev REV]
        [--workers 4] [--concurrency 16] [--rate R | --stream N] [--seconds 20] [--gil]
        [--results profile-text]

py-spy comes from `uvx py-spy` (PYSPY=/path/to/py-spy overrides; on a GPU machine, a carried wheel).
Writes bench/results/NAME.md and NAME.raw.txt (py-spy's collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fraudscore_side as fs  # noqa: E402
import loadgen  # noqa: E402
from score_latency import machine  # noqa: E402


def _frame(frame: str) -> str:
    """`function (file)` without the line; a process as `process: worker N` or `process: parent`."""
    if frame.startswith("process "):
        words = frame.split()
        return f"process: worker {words[words.index('--worker') + 1]}" if "--worker" in words else "process"
    return frame.rsplit(":", 1)[0] + ")" if " (" in frame else frame


def per_process(raw: Path, seconds: float, hz: float) -> dict[str, float]:
    """Busy threads (samples / duration / rate) of each worker process: an idle worker shows the
    kernel gave it no connection (SO_REUSEPORT spreads connections, not calls)."""
    busy: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        worker = next((_frame(f) for f in reversed(stack.split(";")) if f.startswith("process ")), "process")
        busy[worker] += int(count)
    return {k: round(v / seconds / hz, 2) for k, v in sorted(busy.items())}


def shares(raw: Path, top: int) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """Samples, and the top functions by inclusive and by self share, from collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames) - {"process"}:  # the parent's frame is every stack's root
            inclusive[name] += n
    total = max(total, 1)
    return (
        total,
        [(n / total, f) for f, n in inclusive.most_common(top)],
        [(n / total, f) for f, n in own.most_common(top)],
    )


async def drive(
    args: argparse.Namespace, target: str, pid: int, warm: list[bytes], requests: list[bytes]
) -> dict[str, Any]:
    spy = os.environ.get("PYSPY")
    command = shlex.split(spy) if spy else ["uvx", "py-spy"]
    command += ["record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "100", "-f", "raw"]
    command += ["-o", str(args.raw), "--nonblocking", "--subprocesses"] + (["--gil"] if args.gil else [])
    async with loadgen.opened(target, args.channels, fs.SCORE) as (channels, call):
        await loadgen.closed_loop(call, itertools.cycle(warm), concurrency=4, seconds=5.0, pid=pid)
        profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        result = await loadgen.run_load(
            args, channels, call, fs.SCORE_BATCH, iter(requests), seconds=args.seconds + 2, pid=pid
        )
        profiler.wait()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=("tabular", "history", "text"), default="text")
    parser.add_argument(
        "--mix",
        choices=("mix", "risky", "consumer", "small_business"),
        default="mix",
        help="the applications sent (risky: every one REVIEW/DECLINE, with reasons); not with text",
    )
    parser.add_argument("--rev", default=None, help="serve this git revision's code (default: the tree)")
    parser.add_argument("--workers", type=int, default=1)
    loadgen.add_load_arguments(parser)
    parser.add_argument("--connections", type=int, default=0, help="default: 8 per worker (1 alone)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--results", default="profile")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples of threads holding the interpreter lock: what bounds one process's answers/s",
    )
    args = parser.parse_args()
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    args.raw = results / f"{args.results}.raw.txt"
    args.channels = args.connections or (8 * args.workers if args.workers > 1 else 1)
    pool = fs.Pool(prefix=f"PROFILE-{int(time.time())}")
    per_second = args.rate or 3000.0
    kind = "text128" if args.kind == "text" else args.mix
    warm = pool.requests(kind, 300)
    requests = pool.requests(kind, int(per_second * (args.seconds + 8)))
    work = Path(tempfile.mkdtemp(prefix="fraudscore-profile-"))
    source = fs.export(args.rev, work / "source")[1] if args.rev else None
    server = fs.start_server(fs.bundle(args.kind), work / "server", source, workers=args.workers)
    try:
        result = asyncio.run(drive(args, server.target, server.pid, warm, requests))
    finally:
        server.stop()
    total, inclusive, own = shares(args.raw, args.top)
    m = machine()
    load = loadgen.describe_load(args)
    lines = [
        f"# Server profile ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`uv run --frozen python bench/profile_server.py {' '.join(sys.argv[1:])}`: the {args.kind} bundle, "
        f"{args.workers} worker(s), {load} over {args.channels} connections, py-spy at 100 Hz for "
        f"{args.seconds:g} s over every process. "
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}.",
        "",
        f"Load: {result['throughput_rps']} answered/s, p50 {result['latency_ms'].get('p50')} ms, "
        f"p99 {result['latency_ms'].get('p99')} ms, errors {result['errors'] or 'none'}, "
        f"server {result['server_cpu_ms_per_request']} ms CPU per answer. Samples: {total:,} "
        + (
            "(only threads holding the interpreter lock: native code that releases it, such as SQLite's "
            "statements, LightGBM or ONNX Runtime, is left out)."
            if args.gil
            else "(threads busy in Python or in native code called from it, or waiting for the interpreter "
            "lock; idle waits excluded)."
        ),
        "",
        ("Threads holding the lock, by process: " if args.gil else "Busy threads by process: ")
        + ", ".join(f"{k} {v}" for k, v in per_process(args.raw, args.seconds, 100.0).items())
        + ".",
        "",
        "| inclusive | function | | self | function |",
        "|---|---|---|---|---|",
    ]
    for (a, f), (b, g) in zip(inclusive, own, strict=False):
        lines.append(f"| {a:.1%} | `{f}` | | {b:.1%} | `{g}` |")
    text = "\n".join(lines) + "\n"
    (results / f"{args.results}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
