"""Soak: a real `fraudscore serve` under a steady open-loop load for a long while, watching what
grows. Every request is a new application (synthetic, from `fraudscore synth`) under a fresh
application_id; its loan-purpose text is short (the generator's own), about 128 tokens, or near the
4,000-character field maximum. Requests are sent at `--rate` per second on a Poisson schedule,
whether or not earlier ones have been answered (open loop).

Every `--sample-seconds` the server's resident memory, open file descriptors (/proc/PID/fd),
threads, CPU time and the sizes of the files in its data directory are read. Reported: memory growth
per hour (least-squares line over the second half of the run, after the warm-up, and the part of it
that the near-duplicate text index's ring buffer explains while it fills), descriptors at the start,
end and most, latency p50/p99 per window (by send time), and errors by status.

    uv run --frozen python bench/soak.py --minutes 30 [--rate 20] [--bundle DIR] [--source DIR]
    uv run --frozen python bench/soak.py --render [--note TEXT]   # soak.md again from soak.json

The client runs on the same machine and shares its cores; so may other work (the load average is
sampled too). Writes bench/results/soak.json and .md (a partial JSON at every window while it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.crash_harness import (
    ROOT,
    ServerFiles,
    ServerProcess,
    machine,
    scratch_files,
    server_code,
)
from bench.loadgen import channels
from features.schema import CANONICAL_SCHEMA, TEXT_MAX
from scoring.synth import generate
from scoring.v1 import scoring_pb2 as pb
from scoring.v1 import scoring_pb2_grpc as pb_grpc
from scoring.wire import application_to_pb

RESULTS = ROOT / "bench" / "results"
TEXT_FIELDS = ("loan_purpose", "business_description", "employment_description")
# Bytes one text adds to the near-duplicate index's ring buffer (features/text/near_dup.py): its
# float32 vector (384 dimensions for MiniLM) and two int64 (time, identity), until the ring is full.
INDEX_ENTRY_BYTES = 384 * 4 + 8 + 8
_VOCABULARY = (
    "loan business customers revenue invoices payroll equipment inventory supplier contract kitchen "
    "renovation vehicle repair tuition medical wedding consolidate credit card debt monthly income "
    "salary overtime seasonal farm harvest tractor delivery van restaurant cafe bakery salon clinic "
    "workshop warehouse shipping export import retail online shop marketing website software laptop "
    "printer lease rent deposit apartment mortgage refinance interest rate lower payments family "
    "children school fees emergency hospital bills savings cushion expansion second location staff "
    "hire train wages tax return accountant bookkeeping cash flow gap ninety days net terms client "
    "government tender approved purchase order steel timber cement tools contractor plumbing "
    "electrical roofing landscaping cleaning catering events photography studio music lessons gym "
    "fitness yoga daycare tutoring translation consulting design agency freelance developer driver "
    "courier taxi truck logistics cold storage fishing boat nets solar panels generator pump "
    "irrigation seeds fertiliser livestock feed veterinary pharmacy groceries stock shelves fridge "
    "oven mixer sewing machines fabric tailoring shoes repairs phones electronics stable steady "
    "reliable years experience references bank statements attached payslips contract signed"
)
WORDS = tuple(_VOCABULARY.split())


# -- the load --------------------------------------------------------------------------------------
class Texts:
    """Loan-purpose texts of three lengths; the medium and long ones are random word sequences, so no
    two repeat (the encoder's cache does not hide the work)."""

    def __init__(self, rng: random.Random, encoder_dir: Path | None) -> None:
        self.rng = rng
        self.tokenizer: Any = None
        if encoder_dir is not None and (encoder_dir / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(encoder_dir / "tokenizer.json"))
            self.tokenizer.no_truncation()

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    def medium(self) -> str:
        """About 128 tokens with the encoder's own tokenizer (special tokens included)."""
        text = self.words(140)
        if self.tokenizer is None:
            return " ".join(text.split()[:110])
        offsets = self.tokenizer.encode(text).offsets
        if len(offsets) <= 128:
            return text
        return text[: offsets[126][1]].rsplit(" ", 1)[0]

    def long(self) -> str:
        text = self.words(700)
        while len(text) < TEXT_MAX - 100:
            text += " " + self.words(100)
        return text[: TEXT_MAX - self.rng.randrange(0, 100)].rsplit(" ", 1)[0]


@dataclass(frozen=True)
class Mix:
    """Shares of the loan-purpose text lengths."""

    short: float = 0.5
    medium: float = 0.35
    long: float = 0.15


def applications(
    rows: int, *, seed: int, texts: Texts, mix: Mix, run: str
) -> Iterator[tuple[str, pb.LoanApplication]]:
    """(text length class, application) for `rows` distinct synthetic applications."""
    frame = generate(rows, seed=seed).select(list(CANONICAL_SCHEMA))
    rng = texts.rng
    for n, row in enumerate(frame.iter_rows(named=True)):
        kind = rng.choices(("short", "medium", "long"), weights=(mix.short, mix.medium, mix.long))[0]
        if kind == "medium":
            row["text_loan_purpose"] = texts.medium()
        elif kind == "long":
            row["text_loan_purpose"] = texts.long()
        app = application_to_pb(row)
        app.application_id = f"SOAK-{run}-{n:08d}"
        yield kind, app


# -- measurements --------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """The server and its descendants (`serve --workers N`: the parent and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def sample(pid: int, data_dir: Path, t: float) -> dict[str, Any]:
    """Summed over the server's process tree (one process, or a parent and its workers)."""
    rss = hwm = fds = threads = ticks = 0
    for p in _tree(pid):
        try:
            status = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{p}/status").read_text().splitlines()
                if ":" in line
            )
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:  # it exited meanwhile
            continue
        rss += int(status["VmRSS"].split()[0])
        hwm += int(status["VmHWM"].split()[0])
        threads += int(status["Threads"])
        ticks += int(stat[11]) + int(stat[12])
    files = {p.name: p.stat().st_size for p in sorted(data_dir.glob("*.sqlite*"))}
    return {
        "t_s": round(t, 1),
        "rss_mib": round(rss / 1024, 1),
        "hwm_mib": round(hwm / 1024, 1),
        "fds": fds,
        "threads": threads,
        "cpu_s": round(ticks / os.sysconf("SC_CLK_TCK"), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "files_bytes": files,
    }


@dataclass(kw_only=True)
class Window:
    start_s: float
    sent: int = 0
    ok: int = 0
    degraded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    """The server's own latency_ms (request in to decision on record), without client and transport."""

    def summary(self) -> dict[str, Any]:
        return {
            "start_min": round(self.start_s / 60, 1),
            "sent": self.sent,
            "ok": self.ok,
            "degraded": self.degraded,
            "errors": dict(self.errors),
            "p50_ms": _percentile(self.latency_ms, 50),
            "p99_ms": _percentile(self.latency_ms, 99),
            "max_ms": _percentile(self.latency_ms, 100),
            "server_p50_ms": _percentile(self.server_ms, 50),
            "server_p99_ms": _percentile(self.server_ms, 99),
        }


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


@dataclass(kw_only=True)
class Load:
    windows: list[Window]
    window_s: float
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    texts_indexed: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    """(time, texts per field answered with text signals so far): what the near-dup index holds."""
    indexed: Counter[str] = field(default_factory=Counter)
    late_sends: int = 0  # sent more than 100 ms after schedule: the client itself fell behind
    in_flight_max: int = 0

    def window(self, t: float) -> Window:
        index = int(t // self.window_s)
        while len(self.windows) <= index:
            self.windows.append(Window(start_s=len(self.windows) * self.window_s))
        return self.windows[index]


async def soak(
    server: ServerProcess,
    apps: Iterator[tuple[str, pb.LoanApplication]],
    *,
    seconds: float,
    rate: float,
    deadline: float,
    sample_s: float,
    window_s: float,
    rng: random.Random,
    on_window: Any = None,
) -> tuple[Load, list[dict[str, Any]]]:
    load = Load(windows=[], window_s=window_s)
    samples: list[dict[str, Any]] = []
    in_flight: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter()

    # Eight connections, each call on the next: `serve --workers N` gets connections spread over
    # its workers (one process takes them all alike).
    connections = channels(server.target, 8)
    stubs = itertools.cycle([pb_grpc.FraudScoringStub(c) for c in connections])
    try:

        async def call(kind: str, app: pb.LoanApplication, sent_at: float) -> None:
            stub = next(stubs)
            win = load.window(sent_at)
            win.sent += 1
            started = time.perf_counter()
            try:
                r = await stub.Score(pb.ScoreRequest(application=app), timeout=deadline)
            except grpc.aio.AioRpcError as exc:
                win.errors[exc.code().name] += 1
                return
            ms = (time.perf_counter() - started) * 1000
            win.ok += 1
            win.degraded += r.degraded
            win.latency_ms.append(ms)
            win.server_ms.append(r.latency_ms)
            load.by_kind.setdefault(kind, []).append(ms)
            if not r.degraded:
                load.indexed.update(f for f in TEXT_FIELDS if getattr(app.text, f))

        async def sampler() -> None:
            next_window = window_s
            while server.proc.poll() is None:
                t = time.perf_counter() - t0
                samples.append(sample(server.pid, server.files.data_dir, t))
                load.texts_indexed.append((round(t, 1), dict(load.indexed)))
                if on_window is not None and t >= next_window:
                    next_window += window_s
                    on_window(load, samples)
                await asyncio.sleep(sample_s - (time.perf_counter() - t0) % sample_s)

        watcher = asyncio.create_task(sampler())
        due = 0.0
        while due < seconds and not watcher.done():  # the sampler ends if the server dies
            wait = due - (time.perf_counter() - t0)
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.1:
                load.late_sends += 1
            kind, app = next(apps)
            task = asyncio.create_task(call(kind, app, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            load.in_flight_max = max(load.in_flight_max, len(in_flight))
            due += rng.expovariate(rate)
        if in_flight:
            await asyncio.wait(in_flight, timeout=deadline + 5)
        if watcher.done():
            watcher.result()  # a failure of the sampler itself
            raise RuntimeError(f"the server exited ({server.proc.poll()}) after {due:.0f} s of load")
        samples.append(sample(server.pid, server.files.data_dir, time.perf_counter() - t0))
        load.texts_indexed.append((round(time.perf_counter() - t0, 1), dict(load.indexed)))
        watcher.cancel()
    finally:
        for c in connections:
            await c.close()
    return load, samples


# -- the report ------------------------------------------------------------------------------------
def slope_per_hour(samples: list[dict[str, Any]], key: str, since_s: float) -> float:
    points = [(s["t_s"] / 3600, s[key]) for s in samples if s["t_s"] >= since_s]
    if len(points) < 3:
        return math.nan
    x, y = np.asarray(points).T
    return float(np.polyfit(x, y, 1)[0])


def index_growth_mib_per_hour(load: Load, since_s: float, cap: int) -> float:
    """What the near-dup index's ring buffer adds to RSS over the same span, while it fills."""
    points = [(t, counts) for t, counts in load.texts_indexed if t >= since_s]
    if len(points) < 2:
        return math.nan

    def held(counts: dict[str, int]) -> int:
        return sum(min(n, cap) for n in counts.values())

    (t_a, a), (t_b, b) = points[0], points[-1]
    return (held(b) - held(a)) * INDEX_ENTRY_BYTES / 2**20 / ((t_b - t_a) / 3600)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 1)


def report(load: Load, samples: list[dict[str, Any]], *, seconds: float, index_cap: int) -> dict[str, Any]:
    half = seconds / 2
    rss = [s["rss_mib"] for s in samples]
    fds = [s["fds"] for s in samples]
    errors: Counter[str] = Counter()
    for w in load.windows:
        errors.update(w.errors)
    slope = slope_per_hour(samples, "rss_mib", half)
    explained = index_growth_mib_per_hour(load, half, index_cap)
    return {
        "memory": {
            "rss_start_mib": rss[0],
            "rss_end_mib": rss[-1],
            "rss_max_mib": max(rss),
            "hwm_end_mib": samples[-1]["hwm_mib"],
            "growth_mib_per_hour_second_half": _num(slope),
            "growth_mib_per_hour_whole_run": _num(slope_per_hour(samples, "rss_mib", 0.0)),
            "near_dup_index_fill_mib_per_hour_second_half": _num(explained),
            "growth_beyond_index_fill_mib_per_hour": _num(slope - explained),
        },
        "fds": {"start": fds[0], "end": fds[-1], "max": max(fds), "min": min(fds)},
        "threads": {"start": samples[0]["threads"], "end": samples[-1]["threads"]},
        "server_cpu_s": round(samples[-1]["cpu_s"] - samples[0]["cpu_s"], 1),
        "sent": sum(w.sent for w in load.windows),
        "ok": sum(w.ok for w in load.windows),
        "degraded": sum(w.degraded for w in load.windows),
        "errors": dict(errors),
        "late_sends": load.late_sends,
        "in_flight_max": load.in_flight_max,
        "texts_indexed": dict(load.indexed),
        "windows": [w.summary() for w in load.windows],
        "latency_by_text_length": {
            kind: {
                "ok": len(ms),
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1),
            }
            for kind, ms in sorted(load.by_kind.items())
        },
        "files_bytes_end": samples[-1]["files_bytes"],
    }


def markdown(out: dict[str, Any]) -> str:
    r, m, c = out["result"], out["machine"], out["config"]
    mem, fds = r["memory"], r["fds"]
    loads = [s["load_average_1m"] for s in out["samples"]]
    server_ms = any(w.get("server_p50_ms") is not None for w in r["windows"])  # older results lack it
    lines = [
        f"# Soak ({out['date']}){' (partial)' if out.get('partial') else ''}",
        "",
        f"Command: `{out['command']}`",
        "",
        *([f"Note: {out['note']}", ""] if out.get("note") else []),
        f"Machine: {m['cpu']}, {m['cores']} cores, shared: the client runs on it, and so did other "
        f"people's work (1-minute load average {min(loads)}-{max(loads)}, median "
        f"{float(np.median(loads)):.2f}). Server code: {out['server_code']}. Bundle: {out['bundle']}.",
        f"Load: {c['rate']} req/s open loop (Poisson) for {c['minutes']} min, deadline {c['deadline_s']} s, "
        f"every request a new application; loan-purpose text short / ~128 tokens / 3,900-4,000 chars "
        f"in {c['mix']['short']:.0%} / {c['mix']['medium']:.0%} / {c['mix']['long']:.0%}.",
        "",
        f"**Memory**: RSS {mem['rss_start_mib']} MiB at the first sample, {mem['rss_end_mib']} MiB at "
        f"the end (most {mem['rss_max_mib']}). Growth {mem['growth_mib_per_hour_second_half']} MiB/hour "
        f"(line fit over the second half; whole run {mem['growth_mib_per_hour_whole_run']}), of which "
        f"the near-duplicate index's ring buffer filling accounts for "
        f"{mem['near_dup_index_fill_mib_per_hour_second_half']} MiB/hour (bounded: it stops at "
        f"{c['index_cap']:,} texts per field); beyond it: {mem['growth_beyond_index_fill_mib_per_hour']} "
        "MiB/hour.",
        f"**File descriptors**: {fds['start']} at the start, {fds['end']} at the end, {fds['max']} most. "
        f"Threads {r['threads']['start']} -> {r['threads']['end']}.",
        f"**Requests**: {r['sent']} sent, {r['ok']} OK ({r['degraded']} degraded), errors "
        f"{r['errors'] or 'none'}; {r['late_sends']} sent over 100 ms late by the client; at most "
        f"{r['in_flight_max']} in flight. Server CPU {r['server_cpu_s']} s.",
        disk(out["samples"], r["ok"]),
        "",
        "Latency as the client saw it (send to answer), by send time"
        + ("; server ms: the answer's own latency_ms" if server_ms else "")
        + ". Server CPU: the server process's CPU time over the window's wall time (100% = one core); "
        "load: the machine's 1-minute load average, mean of the window's samples.",
        "",
        "| window (min) | sent | OK | degraded | errors | p50 ms | p99 ms | max ms "
        + ("| server p50 / p99 ms " if server_ms else "")
        + "| server CPU | load |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if server_ms else ""),
    ]
    for w in r["windows"]:
        start = w["start_min"] * 60
        cpu, load = window_cpu(out["samples"], start, start + c["window_minutes"] * 60)
        lines.append(
            f"| {w['start_min']}-{w['start_min'] + c['window_minutes']:g} | {w['sent']} | {w['ok']} | "
            f"{w['degraded']} | {w['errors'] or '-'} | {w['p50_ms']} | {w['p99_ms']} | {w['max_ms']} | "
            + (f"{w['server_p50_ms']} / {w['server_p99_ms']} | " if server_ms else "")
            + f"{cpu} | {load} |"
        )
    lines += ["", "| text | OK | p50 ms | p99 ms |", "|---|---|---|---|"]
    for kind, k in r["latency_by_text_length"].items():
        lines.append(f"| {kind} | {k['ok']} | {k['p50_ms']} | {k['p99_ms']} |")
    lines += [
        "",
        "| t (min) | RSS MiB | fds | threads | load 1m | audit.sqlite MiB | audit WAL MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    step = max(1, len(out["samples"]) // 12)
    shown = out["samples"][::step]
    for s in shown + out["samples"][-1:] if shown[-1] is not out["samples"][-1] else shown:
        f = s["files_bytes"]
        lines.append(
            f"| {s['t_s'] / 60:.1f} | {s['rss_mib']} | {s['fds']} | {s['threads']} | "
            f"{s['load_average_1m']} | {f.get('audit.sqlite', 0) / 2**20:.1f} | "
            f"{f.get('audit.sqlite-wal', 0) / 2**20:.1f} |"
        )
    return "\n".join(lines)


def disk(samples: list[dict[str, Any]], answered: int) -> str:
    """What the run added to the data directory's SQLite files (WAL included)."""

    def size(sample: dict[str, Any], name: str) -> int:
        f = sample["files_bytes"]
        return int(f.get(name, 0) + f.get(name + "-wal", 0))

    first, last = samples[0], samples[-1]
    grown = {n: (size(last, n) - size(first, n)) / 2**20 for n in ("audit.sqlite", "history.sqlite")}
    index = size(last, "text-index.sqlite") / 2**20
    return (
        f"**Disk**: the audit store grew {grown['audit.sqlite']:.0f} MiB, "
        f"{grown['audit.sqlite'] * 2**20 / max(answered, 1) / 1024:.1f} KiB per answered decision; the "
        f"history store {grown['history.sqlite']:.0f} MiB; the text index is {index:.0f} MiB."
    )


def window_cpu(samples: list[dict[str, Any]], start: float, end: float) -> tuple[str, str]:
    inside = [s for s in samples if start <= s["t_s"] <= end]
    if len(inside) < 2:
        return "-", "-"
    a, b = inside[0], inside[-1]
    cpu = 100 * (b["cpu_s"] - a["cpu_s"]) / (b["t_s"] - a["t_s"])
    return f"{cpu:.0f}%", f"{np.mean([s['load_average_1m'] for s in inside]):.1f}"


def index_cap(bundle: Path) -> int:
    try:
        return int(json.loads((bundle / "text.json").read_text())["index_cap"])
    except (OSError, KeyError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument(
        "--mix", default="0.5,0.35,0.15", help="shares of short, ~128-token and near-4,000-char texts"
    )
    parser.add_argument("--deadline", type=float, default=2.0, help="seconds, per call")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    parser.add_argument("--bundle", type=Path, default=ROOT / "var" / "demo-bundle")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var", help="history store and key to copy")
    parser.add_argument("--encoder", type=Path, help="default: DATA_DIR/encoder when present")
    parser.add_argument("--source", type=Path, help="serve the code in this directory (see crash_harness)")
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N (default 1)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where soak.json and soak.md go")
    parser.add_argument("--render", action="store_true", help="only write soak.md again from soak.json")
    parser.add_argument("--note", help="what else ran on the machine, or anything a reader should know")
    args = parser.parse_args()
    if args.render:
        done = json.loads((args.results / "soak.json").read_text())
        if args.note:
            done["note"] = args.note
            (args.results / "soak.json").write_text(json.dumps(done, indent=2, default=str) + "\n")
        (args.results / "soak.md").write_text(markdown(done) + "\n")
        print(markdown(done))
        return
    if not (args.bundle / "MANIFEST.json").exists():
        raise SystemExit(f"no bundle at {args.bundle}: run `make run` once, or give --bundle")
    encoder = args.encoder or (args.data_dir / "encoder" if (args.data_dir / "encoder").exists() else None)
    seconds = args.minutes * 60
    rng = random.Random(args.seed)
    mix = Mix(*(float(x) for x in args.mix.split(",")))
    run = f"{args.seed}-{int(time.time())}"
    apps = applications(
        int(seconds * args.rate * 1.2) + 1000, seed=args.seed, texts=Texts(rng, encoder), mix=mix, run=run
    )
    scratch = Path(tempfile.mkdtemp(prefix="fraudscore-soak-"))
    cap = index_cap(args.bundle)
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "uv run --frozen python bench/soak.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "server_code": server_code(args.source),
        "note": args.note or "",
        "bundle": str(args.bundle.relative_to(ROOT) if args.bundle.is_relative_to(ROOT) else args.bundle),
        "config": {
            "minutes": args.minutes,
            "rate": args.rate,
            "workers": args.workers,
            "deadline_s": args.deadline,
            "sample_seconds": args.sample_seconds,
            "window_minutes": args.window_minutes,
            "seed": args.seed,
            "mix": asdict(mix),
            "index_cap": cap,
        },
    }

    def write(load: Load, samples: list[dict[str, Any]], *, partial: bool) -> None:
        out.update(
            partial=partial, samples=samples, result=report(load, samples, seconds=seconds, index_cap=cap)
        )
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "soak.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        if not partial:
            (args.results / "soak.md").write_text(markdown(out) + "\n")

    server = None
    try:
        files: ServerFiles = scratch_files(
            args.bundle, scratch, source_data_dir=args.data_dir, encoder_dir=encoder, source=args.source
        )
        if args.workers > 1:
            files = replace(files, env={**files.env, "FRAUDSCORE_WORKERS": str(args.workers)})
        server = ServerProcess(files, log=scratch / "server.log")
        out["server_start_s"] = round(server.start_seconds, 2)
        load, samples = asyncio.run(
            soak(
                server,
                apps,
                seconds=seconds,
                rate=args.rate,
                deadline=args.deadline,
                sample_s=args.sample_seconds,
                window_s=args.window_minutes * 60,
                rng=rng,
                on_window=lambda load, samples: write(load, samples, partial=True),
            )
        )
        stopping = time.perf_counter()
        out["clean_stop_exit"] = server.stop()
        out["stop_s"] = round(time.perf_counter() - stopping, 2)
        log = (scratch / "server.log").read_text(errors="replace").splitlines()
        out["server_log_lines"] = len(log)
        out["server_log_tail"] = log[-20:]
        write(load, samples, partial=False)
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    print(markdown(out))


if __name__ == "__main__":
    main()
