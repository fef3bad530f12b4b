"""Score latency and throughput against a real `fraudscore serve` process over loopback gRPC.

Scenarios: sequential (one request at a time) and closed-loop concurrent (N in flight). The server
runs in its own process, as in production; the client is `grpc.aio` on the same machine, so both
share its cores (say so when quoting). Applications are synthetic, drawn from `fraudscore synth`.

    uv run python bench/score_latency.py [--bundle DIR] [--requests 2000] [--concurrency 16] [--seconds 15]

Writes bench/results/score_latency.json and .md with the machine and versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features.schema import CANONICAL_SCHEMA
from scoring.synth import generate
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from scoring.wire import application_to_pb

RESULTS = Path(__file__).resolve().parent / "results"


def gpu() -> str:
    """The GPU(s) nvidia-smi reports (name, memory, driver), or "none"."""
    if shutil.which("nvidia-smi") is None:
        return "none"
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "none"
    return "; ".join(line.strip() for line in out.splitlines() if line.strip()) or "none"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import lightgbm
    import polars

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "polars": polars.__version__,
        "lightgbm": lightgbm.__version__,
        "platform": platform.platform(),
    }


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {f"p{q:g}": round(float(np.percentile(a, q)), 3) for q in (50, 90, 99, 99.9)} | {
        "mean": round(float(a.mean()), 3)
    }


def start_server(bundle: Path | None, state: Path) -> tuple[subprocess.Popen[str], str]:
    """The server, on copies of the history store and text index: every run starts from the same
    state (a run appends its applications, and the next run would send the same ones again)."""
    cmd = [str(Path(sys.executable).parent / "fraudscore"), "serve", "--port", "0"]
    if bundle is not None:
        cmd += ["--bundle", str(bundle)]
    data_dir = Path(os.environ.get("FRAUDSCORE_DATA_DIR", "var"))
    for name in ("history.sqlite", "text-index.sqlite"):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, state / name)
    env = {
        **os.environ,
        "FRAUDSCORE_LOG_LEVEL": "WARNING",
        "FRAUDSCORE_REVIEW_PORT": "none",
        "FRAUDSCORE_METRICS_PORT": "none",
        "FRAUDSCORE_HISTORY_PATH": str(state / "history.sqlite"),
        "FRAUDSCORE_TEXT_INDEX_PATH": str(state / "text-index.sqlite"),
        # A fresh audit store: the same application ids again would be answered from the record.
        "FRAUDSCORE_AUDIT_PATH": str(state / "audit.sqlite"),
    }
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("fraudscore: serving gRPC on "):
            return proc, line.split(" on ")[1].split(" ")[0]
    raise SystemExit("server did not start")


def server_stats(pid: int) -> dict[str, float]:
    """CPU seconds and peak resident memory of the server process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return {"cpu_s": (int(stat[11]) + int(stat[12])) / ticks, "peak_rss_mib": round(peak_kb / 1024, 1)}


async def sequential(
    stub: pb_grpc.FraudScoringStub, apps: list[pb.LoanApplication], n: int, start: int = 0
) -> dict[str, Any]:
    lat, degraded = [], 0
    for i in range(n):
        t = time.perf_counter()
        response = await stub.Score(pb.ScoreRequest(application=apps[(start + i) % len(apps)]), timeout=5)
        degraded += response.degraded
        lat.append((time.perf_counter() - t) * 1000)
    return {"requests": n, "latency_ms": percentiles(lat), "degraded": degraded}


async def closed_loop(
    stub: pb_grpc.FraudScoringStub,
    apps: list[pb.LoanApplication],
    concurrency: int,
    seconds: float,
    start: int = 0,
) -> dict[str, Any]:
    lat: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds
    counter = iter(range(start, 10**9))  # applications not sent before: a repeat is answered from the record

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            app = apps[next(counter) % len(apps)]
            t = time.perf_counter()
            try:
                await stub.Score(pb.ScoreRequest(application=app), timeout=5)
                lat.append((time.perf_counter() - t) * 1000)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "ok": len(lat),
        "errors": errors,
        "throughput_rps": round(len(lat) / elapsed, 1),
        "latency_ms": percentiles(lat),
    }


async def run(args: argparse.Namespace, target: str, pid: int) -> dict[str, Any]:
    # Enough applications that no text repeats by wrap-around within a run (the encoder caches by text).
    frame = generate(args.applications, seed=99).select(list(CANONICAL_SCHEMA))
    apps = [application_to_pb(row) for row in frame.iter_rows(named=True)]
    # Submission times from the generator's calendar are in the past: fine for the validator.
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.FraudScoringStub(channel)
        await sequential(stub, apps, 200)  # warm-up
        before = server_stats(pid)
        seq = await sequential(stub, apps, args.requests, start=200)
        mid = server_stats(pid)
        seq["server_cpu_ms_per_request"] = round((mid["cpu_s"] - before["cpu_s"]) * 1000 / args.requests, 3)
        conc = await closed_loop(stub, apps, args.concurrency, args.seconds, start=200 + args.requests)
        after = server_stats(pid)
        conc["server_cpu_ms_per_request"] = round(
            (after["cpu_s"] - mid["cpu_s"]) * 1000 / max(conc["ok"], 1), 3
        )
        conc["server_peak_rss_mib"] = after["peak_rss_mib"]
    return {"sequential": seq, "concurrent": conc}


def describe(info: pb.ModelInfo) -> str:
    names = [f.name for f in info.features]
    parts = ["tabular"]
    if any(n.startswith("phone_apps_") or "_apps_" in n for n in names):
        parts.append("history")
    if info.text_model.encoder:
        parts.append(f"text ({info.text_model.encoder} on {info.text_model.execution_provider})")
    return " + ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    s, c = result["sequential"], result["concurrent"]
    return "\n".join(
        [
            f"# Score latency ({result['date']})",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, grpcio {m['grpcio']}, "
            f"polars {m['polars']}, LightGBM {m['lightgbm']}. Client and server on the same machine.",
            f"Model: {result['model_version']} ({result['training_data']} training data). "
            f"Features: {result['features']}.",
            "",
            "| scenario | requests | throughput (req/s) | p50 ms | p90 ms | p99 ms | p99.9 ms "
            "| server CPU ms/req |",
            "|---|---|---|---|---|---|---|---|",
            f"| sequential | {s['requests']} | {1000 / s['latency_ms']['mean']:.0f} | "
            f"{s['latency_ms']['p50']} | {s['latency_ms']['p90']} | {s['latency_ms']['p99']} | "
            f"{s['latency_ms']['p99.9']} | {s['server_cpu_ms_per_request']} |",
            f"| {c['concurrency']} in flight, {c['seconds']} s | {c['ok']} | {c['throughput_rps']} | "
            f"{c['latency_ms']['p50']} | {c['latency_ms']['p90']} | {c['latency_ms']['p99']} | "
            f"{c['latency_ms']['p99.9']} | {c['server_cpu_ms_per_request']} |",
            "",
            f"Errors: {c['errors'] or 'none'}. Degraded answers (sequential): {s['degraded']}. "
            f"Server peak RSS: {c['server_peak_rss_mib']} MiB.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, help="default: the demo bundle (trained if missing)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--applications", type=int, default=20_000, help="distinct applications sent")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="fraudscore-bench-"))
    proc, target = start_server(args.bundle, state)
    try:
        result = asyncio.run(run(args, target, proc.pid))
        with grpc.insecure_channel(target) as ch:
            info = pb_grpc.FraudScoringStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
    result |= {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "model_version": info.model_version,
        "training_data": "synthetic" if info.synthetic_training_data else "lender",
        "client_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "features": describe(info),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "score_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (RESULTS / "score_latency.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
