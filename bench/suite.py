"""The performance suite: fraudscore over real gRPC in its scenarios, and MLServer serving the same
LightGBM booster side by side, with the same load generator (bench/loadgen.py).

    uv run --frozen python bench/suite.py            # full: 11-12 minutes on 2 cores
    uv run --frozen python bench/suite.py --quick    # 4-s phases, fewer points: about 4 minutes
    uv run --frozen python bench/suite.py --rev HEAD # serve the committed code, not the working tree

fraudscore scenarios (each its own `fraudscore serve`, on copies of the demo state, every request a
new application): tabular only, tabular + history (the main one: closed loop at several
concurrencies, open loop at several rates), risky applications (REVIEW/DECLINE with reasons),
consumer-only and small-business-only mixes, ScoreBatch streams, and text (the demo bundle, the
int8 encoder on the CPU, one 128-token text per application). MLServer 1.7.1 (its own venv) serves
the demo bundle's primary booster from the same model's feature rows, as shipped and tuned.

Writes bench/results/suite.json and suite.md, and the generated part of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fraudscore_side as fs
import loadgen
import mlserver_bench as ml
import suite_report
from score_latency import gpu

RESULTS = fs.ROOT / "bench" / "results"
DOC = fs.ROOT / "docs" / "performance.md"
MLSERVER_ROWS = 2000


@dataclass(frozen=True, slots=True)
class Phase:
    """One load on one server: `mode` closed (level = callers in flight), open (level = requests
    per second) or stream (level = applications per ScoreBatch stream)."""

    scenario: str
    mode: str
    level: float
    pool: str = "mix"
    quick: bool = False  # also run with --quick
    seconds: float | None = None  # None: the suite's phase length

    def label(self) -> str:
        if self.mode == "closed":
            return f"{self.level:g} in flight"
        if self.mode == "open":
            return f"open {self.level:g}/s"
        return f"ScoreBatch streams of {self.level:g}"


# Which bundle each server runs, and its phases in order.
FRAUDSCORE: dict[str, tuple[str, list[Phase]]] = {
    "tabular": (
        "tabular",
        [Phase("tabular only", "closed", 16, quick=True), Phase("tabular only", "open", 250, quick=True)],
    ),
    "history": (
        "history",
        [
            Phase("tabular+history", "closed", 1, quick=True),
            Phase("tabular+history", "closed", 4),
            Phase("tabular+history", "closed", 16, quick=True),
            Phase("tabular+history", "closed", 64),
            Phase("tabular+history", "open", 100),
            Phase("tabular+history", "open", 250, quick=True),
            Phase("tabular+history", "open", 500, quick=True),
            Phase("risky (reasons)", "closed", 16, "risky"),
            Phase("risky (reasons)", "open", 500, "risky", quick=True),
            Phase("consumer only", "open", 250, "consumer", quick=True),
            Phase("small business only", "open", 250, "small_business", quick=True),
            Phase("ScoreBatch", "stream", 2000, quick=True),
        ],
    ),
    # `serve --workers 2` (two processes on one port, SO_REUSEPORT); the client spreads its calls
    # over 8 connections, since the kernel spreads connections, not calls.
    "history-2w": (
        "history",
        [
            Phase("tabular+history, 2 workers", "closed", 16, quick=True),
            Phase("tabular+history, 2 workers", "closed", 64),
            Phase("tabular+history, 2 workers", "open", 250, quick=True),
            Phase("tabular+history, 2 workers", "open", 500, quick=True),
            Phase("tabular+history, 2 workers", "stream", 2000, quick=True),
        ],
    ),
    "text": (
        "text",
        [
            Phase("text (int8, 128 tokens)", "closed", 1, "text128", quick=True),
            Phase("text (int8, 128 tokens)", "closed", 16, "text128"),
            Phase("text (int8, 128 tokens)", "open", 50, "text128", quick=True),
        ],
    ),
}
# Only with `--only text-gpu`, on a machine with a GPU (bench/gpu_run.sh): the demo bundle with the
# fp16 encoder on ONNX Runtime's CUDA provider (settings' default providers, cuda then cpu; the
# provider each answer reports is counted), four workers, one ScoreBatch stream per worker.
GPU_TEXT = "text on GPU (fp16, 128 tokens)"
GPU_SERVERS: dict[str, tuple[str, list[Phase]]] = {
    "text-gpu": (
        "text",
        [
            Phase(GPU_TEXT, "closed", 1, "text128", quick=True),
            Phase(GPU_TEXT, "closed", 16, "text128", quick=True),
            Phase(GPU_TEXT, "closed", 64, "text128"),
            Phase(GPU_TEXT, "open", 250, "text128", quick=True),
            Phase(GPU_TEXT, "open", 1000, "text128", quick=True),
            Phase(GPU_TEXT, "stream", 1000, "text128", quick=True),
        ],
    ),
}
FRAUDSCORE |= GPU_SERVERS
WORKERS = {"history-2w": 2, "text-gpu": 4}
# The kernel hashes each connection to one worker: with 2 connections a worker, 3 of 8 workers got
# none at all in a profile on 16 cores (bench/results/gpu/optimistic); 8 a worker spread the load.
CONNECTIONS = {"history-2w": 8, "text-gpu": 32}
MLSERVER_PHASES = [
    Phase("MLServer", "closed", 1, quick=True),
    Phase("MLServer", "closed", 4),
    Phase("MLServer", "closed", 16, quick=True),
    Phase("MLServer", "closed", 64),
    Phase("MLServer", "open", 100),
    Phase("MLServer", "open", 250, quick=True),
    Phase("MLServer", "open", 500, quick=True),
]


def log(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def quiet(wait: float, below: float = 0.3) -> None:
    """Waits (at most `wait` seconds) until the rest of the machine uses under `below` cores, measured
    over 1 s while the server is idle between phases: other people's work skews figures."""
    give_up = time.perf_counter() + wait
    while time.perf_counter() < give_up:
        before = loadgen.sample(0)
        await asyncio.sleep(1.0)
        after = loadgen.sample(0)
        if (after.machine_busy_s - before.machine_busy_s) / (after.at - before.at) < below:
            return
    if wait:
        log(f"the machine stayed busy for {wait:g} s; measuring anyway")


def needed(phase: Phase, seconds: float) -> int:
    """Applications a phase may send (closed loops: a generous ceiling on the rate)."""
    if phase.mode == "open":
        return int(phase.level * seconds * 1.1) + 100
    ceiling = {"stream": 3000, "closed": 1000}[phase.mode]
    if phase.pool == "text128" and phase.scenario != GPU_TEXT:
        ceiling = 120
    return int(ceiling * seconds)


async def run_phase(  # noqa: PLR0917
    phase: Phase,
    channel: grpc.aio.Channel | list[grpc.aio.Channel],
    pid: int,
    requests: Iterator[bytes],
    seconds: float,
    method: str,
    keep: int,
    streams: int = 1,
) -> tuple[dict[str, Any], list[bytes]]:
    channels = channel if isinstance(channel, list) else [channel]
    if phase.mode == "stream":  # one stream a connection: `streams` of them
        result = await loadgen.stream_batches(
            channels[: max(1, min(streams, len(channels)))],
            fs.SCORE_BATCH,
            requests,
            items=int(phase.level),
            seconds=seconds,
            pid=pid,
            is_error=fs.batch_item_error,
        )
        return result, []
    call = loadgen.spread([loadgen.unary(c, method) for c in channels])
    if phase.mode == "closed":
        return await loadgen.closed_loop(
            call, requests, concurrency=int(phase.level), seconds=seconds, pid=pid, keep_responses=keep
        )
    return await loadgen.open_loop(
        call, requests, rate=phase.level, seconds=seconds, pid=pid, keep_responses=keep
    )


def phase_seconds(phase: Phase, args: argparse.Namespace) -> float:
    base = args.seconds if phase.seconds is None else min(phase.seconds, args.seconds)
    return float(base)


def run_fraudscore(server_name: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    kind, phases = FRAUDSCORE[server_name]
    phases = [p for p in phases if p.quick or not args.quick]
    bundle_dir = fs.bundle(kind)
    pool = fs.Pool(prefix=f"BENCH-{server_name}-{int(time.time())}")
    # Made before the server starts: building messages must not take the server's CPU mid-run.
    warm_pool = "text128" if kind == "text" else "mix"
    plans = [(p, pool.requests(p.pool, needed(p, phase_seconds(p, args)))) for p in phases]
    warm = pool.requests(warm_pool, 300 if kind == "text" else 1500)
    text_tokens = pool.tokens(pool._text(0)) if kind == "text" else None
    log(f"starting fraudscore serve --bundle {bundle_dir} ({server_name})")
    workers = WORKERS.get(server_name, 1)
    server = fs.start_server(bundle_dir, work / f"fraudscore-{server_name}", args.source, workers=workers)
    out = []
    try:

        async def drive() -> None:
            channels = loadgen.channels(server.target, CONNECTIONS.get(server_name, 1))
            try:
                await drive_on(channels)
            finally:
                for c in channels:
                    await c.close()

        async def drive_on(channel: list[grpc.aio.Channel]) -> None:
            warm_up = Phase("warm-up", "closed", 4)
            await run_phase(warm_up, channel, server.pid, fs.cycle(warm, [0]), 3.0, fs.SCORE, 0)
            for phase, requests in plans:
                await quiet(args.quiet_wait)
                seconds = phase_seconds(phase, args)
                repeats = [0]
                # One worker's /metrics: with several, the counters would be one process's of N.
                before = fs.server_counters(server) if workers == 1 else None
                result, responses = await run_phase(
                    phase,
                    channel,
                    server.pid,
                    fs.cycle(requests, repeats),
                    seconds,
                    fs.SCORE,
                    10**7,
                    # With several workers, 4 streams a worker, each on its own connection: the
                    # kernel spreads connections over the workers, and with one stream a worker
                    # both streams of 2 workers landed on one of them about half the time.
                    streams=1 if workers == 1 else 4 * workers,
                )
                result |= {
                    "system": "fraudscore",
                    "server": server_name,
                    "bundle": str(bundle_dir.resolve()).removeprefix(f"{fs.ROOT}/"),
                    "scenario": phase.scenario,
                    "label": phase.label(),
                    "repeated_applications": repeats[0],
                    "workers": workers,
                    "connections": len(channel),
                    "server_counters": fs.counters_during(
                        before, fs.server_counters(server) if before else None
                    ),
                }
                if text_tokens is not None:
                    result["text_tokens"] = text_tokens
                result |= fs.summarise_responses(responses)
                out.append(result)
                log(suite_report.one_line(result))

        asyncio.run(drive())
    finally:
        server.stop()
    return out


def run_mlserver(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    python = ml.ensure_venv()
    booster = fs.DATA / "demo-bundle" / "model.txt"
    rows = fs.feature_rows(fs.DATA / "demo-bundle", MLSERVER_ROWS, work / "rows")
    requests = ml.encode_requests(python, rows, work)
    info: dict[str, Any] = {
        "booster": str(booster.relative_to(fs.ROOT)),
        "rows": int(rows.shape[0]),
        "features": int(rows.shape[1]),
        "versions": ml.versions(python),
        "tuning": [],
    }

    def measure(
        server: ml.MLServer, config: ml.Config, phases: list[Phase], keep: int = 0, warm: float = 2.0
    ) -> list[dict[str, Any]]:
        """The phases on a running MLServer; with `keep`, the first phase's answers are checked."""
        results: list[dict[str, Any]] = []

        async def drive() -> None:
            async with grpc.aio.insecure_channel(server.target) as channel:
                it = fs.cycle(requests, [0])
                await run_phase(Phase("warm-up", "closed", 4), channel, server.pid, it, warm, ml.INFER, 0)
                for n, phase in enumerate(phases):
                    await quiet(args.quiet_wait)
                    seconds = phase_seconds(phase, args)
                    result, responses = await run_phase(
                        phase, channel, server.pid, it, seconds, ml.INFER, keep if n == 0 else 0
                    )
                    result |= {
                        "system": "mlserver",
                        "server": config.name,
                        "settings": config.describe(),
                        "scenario": f"MLServer {config.name}",
                        "label": phase.label(),
                    }
                    if responses:
                        result["check"] = check(responses)
                    results.append(result)
                    log(suite_report.one_line(result))

        asyncio.run(drive())
        return results

    def check(responses: list[bytes]) -> dict[str, Any]:
        """MLServer's answers against LightGBM's own prediction of the same rows (sent as FP32)."""
        import lightgbm
        import numpy as np

        pairs = ml.decode_responses(python, responses, work)
        index = [i for i, _ in pairs]
        theirs = np.asarray([v for _, v in pairs])
        mine = lightgbm.Booster(model_file=str(booster)).predict(rows[index].astype(np.float32))
        return {"compared": len(pairs), "max_abs_diff": float(np.abs(theirs - mine).max())}

    phases = [p for p in MLSERVER_PHASES if p.quick or not args.quick]
    log("MLServer as shipped")
    server = ml.MLServer(python, booster, ml.AS_SHIPPED, work)
    try:
        server.wait_ready(requests[0])
        results = measure(server, ml.AS_SHIPPED, phases)
    finally:
        server.stop()
    # Tuning: every candidate started at once (an idle one takes no CPU), then a short closed loop on
    # each in turn, round after round, so that other work on the machine falls on all of them alike;
    # the best median throughput wins and goes on to the full phases.
    servers = [(config, ml.MLServer(python, booster, config, work)) for config in ml.CANDIDATES]
    try:
        for _, candidate in servers:
            candidate.wait_ready(requests[0])
        sweep = Phase("tuning", "closed", 16, seconds=3.0 if args.quick else 4.0)
        tried: list[list[dict[str, Any]]] = [[] for _ in servers]
        for _ in range(2 if args.quick else 3):
            for k, (config, candidate) in enumerate(servers):
                tried[k] += measure(candidate, config, [sweep], warm=0.5)
        scores = [
            statistics.median(0.0 if r["errors"] else r["throughput_rps"] for r in runs) for runs in tried
        ]
        for (config, _), runs, score in zip(servers, tried, scores, strict=True):
            info["tuning"].append(
                {
                    "settings": config.describe(),
                    "throughput_rps": round(score, 1),
                    "p99_ms": round(statistics.median(r["latency_ms"]["p99"] for r in runs), 3),
                    "runs": runs,
                }
            )
        best = scores.index(max(scores))
        for k, (_, candidate) in enumerate(servers):
            if k != best:
                candidate.stop()
        config, server = servers[best]
        tuned = ml.Config("tuned", config.server, config.model, config.env)
        log(f"MLServer tuned: {tuned.describe()}")
        tuned_results = measure(server, tuned, phases, keep=200)
    finally:
        for _, candidate in servers:
            candidate.stop()
    info["correctness"] = tuned_results[0].get("check")
    return results + tuned_results, info


def machine() -> dict[str, Any]:
    import lightgbm
    import onnxruntime
    import polars

    cpu, mem = "unknown", 0.0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) / 1024 / 1024
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem, 1),
        "gpu": gpu(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "lightgbm": lightgbm.__version__,
        "onnxruntime": onnxruntime.__version__,
        "polars": polars.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short phases and fewer points")
    parser.add_argument(
        "--seconds", type=float, default=None, help="length of each phase (default 15; 4 quick)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="servers to run: tabular history history-2w text mlserver (default all), text-gpu (GPU only)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    parser.add_argument(
        "--results",
        default="suite",
        help="write bench/results/NAME.json and NAME.md (default suite; another name implies --no-doc)",
    )
    parser.add_argument(
        "--gpu-workers", type=int, default=None, help="processes of the text-gpu server (default 4)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each phase, wait up to this many seconds for other work on the machine to stop",
    )
    parser.add_argument(
        "--rev",
        default=None,
        help="serve the service's code at this git revision (default: the working tree)",
    )
    args = parser.parse_args()
    args.seconds = args.seconds or (4.0 if args.quick else 15.0)
    if args.gpu_workers:
        WORKERS["text-gpu"] = args.gpu_workers
        CONNECTIONS["text-gpu"] = 8 * args.gpu_workers
    only = set(args.only or ["tabular", "history", "history-2w", "text", "mlserver"])
    command = "uv run --frozen python bench/suite.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    mlserver: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="fraudscore-suite-"))
    code: dict[str, Any] = {"served": "working tree"} | fs.git_state()
    args.source = None
    if args.rev:
        commit, args.source = fs.export(args.rev, work / "source")
        code = {"served": f"git archive {commit} (scoring/, features/)", "head": commit, "uncommitted": []}
    for name in ("tabular", "history", "history-2w", "text", *GPU_SERVERS):
        if name in only:
            runs += run_fraudscore(name, args, work)
    if "mlserver" in only:
        ml_runs, mlserver = run_mlserver(args, work)
        runs += ml_runs
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "quick": args.quick,
        "phase_seconds": args.seconds,
        "suite_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "code": code,
        "mlserver": mlserver,
        "runs": runs,
    }
    result["summary"] = suite_report.summary(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.results}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = suite_report.markdown(result)
    (RESULTS / f"{args.results}.md").write_text(md + "\n")
    if not args.no_doc and args.results == "suite":
        suite_report.update_doc(DOC, md)
    print(md)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
