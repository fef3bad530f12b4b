"""A gRPC load generator for unary calls and bidirectional streams of pre-serialised requests.

Requests are bytes made before the run (protobuf `SerializeToString`), so the client spends its CPU
on gRPC, not on building messages, and the same generator drives any service (fraudscore's
`Score`, MLServer's V2 `ModelInfer`). Two ways to load a server:

- closed loop: N callers, each sends its next request when its previous answer came back;
- open loop: requests sent at a fixed arrival rate (Poisson or uniform gaps) whether or not earlier
  ones were answered; each latency is measured from the request's *intended* send time, so a client
  that falls behind (or a server that stalls) shows up in the percentiles instead of being hidden
  (coordinated omission).

The server's CPU time and peak memory come from /proc, summed over its process tree (MLServer runs
its model in worker processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import resource
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

WINDOW_S = 5.0  # latency percentiles are also given per window of this length (noise on a shared machine)
_TICK = os.sysconf("SC_CLK_TCK")


def identity(data: bytes) -> bytes:
    return data


# -- the server's processes ------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system CPU seconds of the server's processes
    peak_rss_mib: float  # sum of each process's peak resident memory (VmHWM)
    machine_busy_s: float  # CPU seconds all cores spent busy (from /proc/stat)
    client_cpu_s: float  # this process's user + system CPU seconds
    at: float


def sample(pid: int) -> ProcSample:
    cpu, peak = 0.0, 0.0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        cpu += (int(stat[11]) + int(stat[12])) / _TICK
        for line in status.splitlines():
            if line.startswith("VmHWM"):
                peak += int(line.split()[1]) / 1024
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / _TICK  # all but idle and iowait
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcSample(cpu, round(peak, 1), busy, usage.ru_utime + usage.ru_stime, time.perf_counter())


# -- results ---------------------------------------------------------------------------------------
def percentiles(ms: Sequence[float]) -> dict[str, float]:
    if not ms:
        return {}
    a = np.asarray(ms, dtype=np.float64)
    out = {f"p{q:g}": round(float(np.percentile(a, q)), 3) for q in (50, 90, 99, 99.9)}
    return out | {"mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3)}


@dataclass(slots=True)
class Recorder:
    """Latencies (ms) of answered calls with the time they completed, and errors by status code."""

    started: float = field(default_factory=time.perf_counter)
    latencies: list[float] = field(default_factory=list)
    completed_at: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    responses: list[bytes] = field(default_factory=list)
    keep_responses: int = 0

    def ok(self, latency_s: float, response: bytes) -> None:
        self.latencies.append(latency_s * 1000.0)
        self.completed_at.append(time.perf_counter())
        if self.keep_responses:
            self.keep_responses -= 1
            self.responses.append(response)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def summary(self, elapsed: float, before: ProcSample, after: ProcSample) -> dict[str, Any]:
        n = len(self.latencies)
        windows = []
        if n:
            done = np.asarray(self.completed_at) - self.started
            lat = np.asarray(self.latencies)
            for w in range(int(elapsed // WINDOW_S)):
                mask = (done >= w * WINDOW_S) & (done < (w + 1) * WINDOW_S)
                if mask.sum() >= 20:
                    windows.append(
                        {
                            "rps": round(float(mask.sum()) / WINDOW_S, 1),
                            "p99": round(float(np.percentile(lat[mask], 99)), 3),
                        }
                    )
        server_cpu = after.cpu_s - before.cpu_s
        client_cpu = after.client_cpu_s - before.client_cpu_s
        busy = after.machine_busy_s - before.machine_busy_s
        span = max(after.at - before.at, 1e-9)
        return {
            "seconds": round(elapsed, 2),
            "ok": n,
            "errors": dict(self.errors),
            "throughput_rps": round(n / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": percentiles(self.latencies),
            "windows": windows,
            "window_p99_median": round(float(np.median([w["p99"] for w in windows])), 3) if windows else None,
            "window_rps_median": round(float(np.median([w["rps"] for w in windows])), 1) if windows else None,
            "server_cpu_ms_per_request": round(server_cpu * 1000 / max(n, 1), 3),
            "server_cores_used": round(server_cpu / span, 2),
            "client_cpu_ms_per_request": round(client_cpu * 1000 / max(n, 1), 3),
            # CPU the rest of the machine used meanwhile (other people's work): noise indicator.
            "other_cores_used": round(max(0.0, busy - server_cpu - client_cpu) / span, 2),
            "server_peak_rss_mib": after.peak_rss_mib,
        }


# -- unary load ------------------------------------------------------------------------------------
UnaryCall = Callable[..., Any]


def unary(channel: grpc.aio.Channel, method: str) -> UnaryCall:
    """A callable sending raw request bytes to `method` and returning raw response bytes."""
    call: UnaryCall = channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)
    return call


def spread(calls: Sequence[UnaryCall]) -> UnaryCall:
    """One call over several channels in turn (`channels`): a server of several processes sharing a
    port (`serve --workers N`) gets connections, not calls, spread over its processes."""
    turn = itertools.cycle(calls)

    def call(data: bytes, *, timeout: float) -> Any:
        return next(turn)(data, timeout=timeout)

    return call  # type: ignore[return-value]


def channels(target: str, n: int) -> list[grpc.aio.Channel]:
    """`n` channels to `target`, each on its own connection (gRPC would share one among channels
    with equal arguments). A target of several addresses (`ipv4:a:p,b:q`, each worker's own port)
    gets gRPC's round_robin policy: each channel then holds a connection to every address and sends
    each call to the next."""
    options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
    if "," in target:
        options.append(("grpc.lb_policy_name", "round_robin"))
    return [grpc.aio.insecure_channel(target, options=options) for _ in range(n)]


@contextlib.asynccontextmanager
async def opened(target: str, n: int, method: str) -> AsyncIterator[tuple[list[grpc.aio.Channel], UnaryCall]]:
    """`n` channels to `target` and one call of `method` spread over them; closed on the way out."""
    chans = channels(target, n)
    try:
        yield chans, spread([unary(c, method) for c in chans])
    finally:
        for c in chans:
            await c.close()


async def _one(call: UnaryCall, data: bytes, t0: float, rec: Recorder, timeout: float) -> None:
    try:
        response = await call(data, timeout=timeout)
        rec.ok(time.perf_counter() - t0, response)
    except grpc.aio.AioRpcError as exc:
        rec.error(exc.code().name)


async def closed_loop(
    call: UnaryCall,
    requests: Iterator[bytes],
    *,
    concurrency: int,
    seconds: float,
    pid: int,
    timeout: float = 5.0,
    keep_responses: int = 0,
) -> tuple[dict[str, Any], list[bytes]]:
    """`concurrency` callers, each sending its next request as soon as its previous one is answered."""
    rec = Recorder(keep_responses=keep_responses)
    before = sample(pid)
    stop_at = rec.started + seconds

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            data = next(requests)
            await _one(call, data, time.perf_counter(), rec, timeout)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - rec.started
    out = {"mode": "closed", "concurrency": concurrency} | rec.summary(elapsed, before, sample(pid))
    return out, rec.responses


async def open_loop(
    call: UnaryCall,
    requests: Iterator[bytes],
    *,
    rate: float,
    seconds: float,
    pid: int,
    poisson: bool = True,
    timeout: float = 5.0,
    seed: int = 1,
    keep_responses: int = 0,
) -> tuple[dict[str, Any], list[bytes]]:
    """Requests at `rate` per second (Poisson arrivals, or evenly spaced); latency from the intended
    send time. The sender wakes up, sends every request whose time has come, and sleeps until the
    next one, so a late wake-up delays sends without dropping them (and the delay is counted)."""
    rng = random.Random(seed)
    rec = Recorder(keep_responses=keep_responses)
    before = sample(pid)
    t0 = rec.started
    end = t0 + seconds
    tasks: set[asyncio.Task[None]] = set()
    next_at, sent, late = t0, 0, 0.0
    while next_at < end:
        now = time.perf_counter()
        if next_at > now:
            await asyncio.sleep(next_at - now)
            now = time.perf_counter()
        while next_at <= now and next_at < end:
            late = max(late, now - next_at)
            task = asyncio.create_task(_one(call, next(requests), next_at, rec, timeout))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            next_at += rng.expovariate(rate) if poisson else 1.0 / rate
    if tasks:
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    # Answered per second over the whole run, the drain of what was still queued at the end included:
    # a server that cannot keep up answers below the rate.
    summary = rec.summary(elapsed, before, sample(pid))
    out = {
        "mode": "open",
        "rate": rate,
        "arrivals": "poisson" if poisson else "uniform",
        "sent": sent,
        "max_send_lag_ms": round(late * 1000, 3),
    } | summary
    return out, rec.responses


# -- streams ---------------------------------------------------------------------------------------
async def _aiter(items: list[bytes]) -> AsyncIterator[bytes]:
    for data in items:
        yield data


async def stream_batches(
    channel: grpc.aio.Channel | Sequence[grpc.aio.Channel],
    method: str,
    requests: Iterator[bytes],
    *,
    items: int,
    seconds: float,
    pid: int,
    streams: int = 1,
    timeout: float = 120.0,
    is_error: Callable[[bytes], str | None] = lambda _: None,
) -> dict[str, Any]:
    """Bidirectional streams of `items` requests each, `streams` at a time, for about `seconds`;
    throughput in items answered per second. `is_error` names the error code of an error item."""
    chans = list(channel) if isinstance(channel, Sequence) else [channel]
    calls = [
        c.stream_stream(method, request_serializer=identity, response_deserializer=identity) for c in chans
    ]
    rec = Recorder()
    before = sample(pid)
    stop_at = rec.started + seconds
    batch_s: list[float] = []

    async def one_stream(call: Any) -> None:
        while time.perf_counter() < stop_at:
            batch = [next(requests) for _ in range(items)]
            t = time.perf_counter()
            try:
                async for response in call(_aiter(batch), timeout=timeout):
                    code = is_error(response)
                    if code is None:
                        rec.ok(time.perf_counter() - t, b"")
                    else:
                        rec.error(code)
            except grpc.aio.AioRpcError as exc:
                rec.error(exc.code().name)
            batch_s.append(time.perf_counter() - t)

    # `streams` per channel: several channels (connections) reach several worker processes.
    await asyncio.gather(*(one_stream(call) for call in calls for _ in range(streams)))
    elapsed = time.perf_counter() - rec.started
    out = rec.summary(elapsed, before, sample(pid))
    del out["latency_ms"], out["windows"], out["window_p99_median"]
    return {
        "mode": "stream",
        "items_per_stream": items,
        "streams": streams * len(calls),
        "stream_seconds": percentiles([s * 1000 for s in batch_s]),
    } | out


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The load of one phase: N in flight (closed loop), a rate (open loop) or ScoreBatch streams."""
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate instead")
    parser.add_argument(
        "--stream",
        type=int,
        default=0,
        help="ScoreBatch streams of this many applications instead (one per connection)",
    )


def describe_load(args: argparse.Namespace) -> str:
    if args.stream:
        return f"ScoreBatch streams of {args.stream}"
    return f"open loop {args.rate:g}/s" if args.rate else f"{args.concurrency} in flight"


async def run_load(
    args: argparse.Namespace,
    channels: Sequence[grpc.aio.Channel],
    call: UnaryCall,
    stream_method: str,
    requests: Iterator[bytes],
    *,
    seconds: float,
    pid: int,
) -> dict[str, Any]:
    """One phase of the load `add_load_arguments` asked for; a stream's items have no latency."""
    if args.stream:
        result = await stream_batches(
            channels, stream_method, requests, items=args.stream, seconds=seconds, pid=pid
        )
        return result | {"latency_ms": {}}
    if args.rate:
        result, _ = await open_loop(
            call, requests, rate=args.rate, seconds=seconds, pid=pid, keep_responses=0
        )
    else:
        result, _ = await closed_loop(
            call, requests, concurrency=args.concurrency, seconds=seconds, pid=pid, keep_responses=0
        )
    return result
