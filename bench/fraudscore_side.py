"""The fraudscore side of the suite: bundles for each scenario, pools of new applications as
serialised `ScoreRequest` messages, a `fraudscore serve` process on copies of the demo state, and the
float feature rows that the model sees (for MLServer, which predicts from ready rows).

Every request is a new application: a fresh application_id (a repeat would be answered from the
audit record) and, in the text scenario, a text never sent before (the encoder caches by text).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from features.schema import CANONICAL_SCHEMA  # noqa: E402
from scoring.synth import generate  # noqa: E402
from scoring.v1 import scoring_pb2 as pb  # noqa: E402
from scoring.wire import application_to_pb  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
DATA = Path(os.environ.get("FRAUDSCORE_DATA_DIR", str(ROOT / "var")))
SCORE = "/fraudscore.v1.FraudScoring/Score"
SCORE_BATCH = "/fraudscore.v1.FraudScoring/ScoreBatch"
# Risky applications: fraud-labelled synthetic ones with the channel of a scripted session.
RISKY = {"session_duration_seconds": 40.0, "user_agent": "Mozilla/5.0 HeadlessChrome/120.0"}


def bundle(kind: str) -> Path:
    """tabular: no history, no text; history: tabular + history; text: the demo bundle (all three).
    The first two are trained once from the demo's own applications (about 45 s) and kept."""
    if kind == "text":
        return DATA / "demo-bundle"
    out = CACHE / "bundles" / kind
    if not (out / "MANIFEST.json").exists():
        data = DATA / "demo-applications.parquet"
        flags = ["--no-text", "--no-history"] if kind == "tabular" else ["--no-text"]
        print(f"[suite] training the {kind} bundle from {data} (once)", file=sys.stderr, flush=True)
        subprocess.run(
            [
                *_fraudscore(),
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--synthetic",
                "--seed",
                "7",
                *flags,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def _fraudscore() -> list[str]:
    """The `fraudscore` command of this interpreter's environment; where the package is on the path
    but not installed (a GPU machine with the wheels unpacked beside it), `python -m scoring.cli`."""
    script = Path(sys.executable).parent / "fraudscore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scoring.cli"]


def export(rev: str, into: Path) -> tuple[str, Path]:
    """The service's code as of a git revision (`git archive`), to serve instead of the working
    tree, which others may be editing; returns the commit and the directory."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", commit, "scoring", "features"], cwd=ROOT, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit, into


def import_revision(rev: str, into: Path) -> str:
    """Makes later imports of `scoring` and `features` in this process come from a git revision's
    code (`export`), dropping those modules already imported from the working tree; returns the
    commit. For a benchmark that runs the code in-process, not served."""
    commit, source = export(rev, into)
    sys.path.insert(0, str(source))
    for name in [m for m in sys.modules if m.split(".")[0] in ("scoring", "features")]:
        del sys.modules[name]
    return commit


def git_state() -> dict[str, Any]:
    """HEAD and the service files that differ from it (uncommitted work in the tree)."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "scoring", "features", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return {"head": head, "uncommitted": [line[3:] for line in status.splitlines()]}


# -- applications ----------------------------------------------------------------------------------
class Pool:
    """New applications for one server: each handed out once, under an id never used before."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seed = 1000
        self.count = 0
        self._tokenizer: Any = None
        self._sentences: list[str] = []
        self._word_tokens: dict[str, int] = {}

    def requests(self, kind: str, n: int) -> list[bytes]:
        frame = self._frame(kind, n)
        out = []
        for row in frame.iter_rows(named=True):
            self.count += 1
            row["application_id"] = f"{self.prefix}-{self.count:08d}"
            out.append(pb.ScoreRequest(application=application_to_pb(row)).SerializeToString())
        return out

    def _frame(self, kind: str, n: int) -> pl.DataFrame:
        parts: list[pl.DataFrame] = []
        have = 0
        while have < n:
            self.seed += 1
            size = max(n - have, 1000) * (40 if kind == "risky" else 4 if kind == "small_business" else 1)
            part = generate(size, seed=self.seed)
            if kind == "risky":
                part = part.filter(pl.col("is_fraud") == 1).with_columns(
                    *(pl.lit(v).alias(k) for k, v in RISKY.items()), bank_account_age_days=pl.lit(3.0)
                )
            elif kind in ("consumer", "small_business"):
                part = part.filter(pl.col("product") == kind.upper())
            parts.append(part)
            have += part.height
        frame = pl.concat(parts).head(n).select(list(CANONICAL_SCHEMA))
        if kind == "text128":
            texts = [self._text(i) for i in range(frame.height)]
            frame = frame.with_columns(
                text_loan_purpose=pl.Series(texts, dtype=pl.String),
                text_business_description=pl.lit(None, dtype=pl.String),
                text_employment_description=pl.lit(None, dtype=pl.String),
            )
        return frame

    def tokens(self, text: str) -> int:
        return len(self._tok().encode(text).ids)

    def _tok(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(DATA / "encoder" / "tokenizer.json"))
            self._tokenizer.no_padding()
            self._tokenizer.no_truncation()
            frame = generate(5000, seed=4242)
            texts = pl.concat(
                [frame.get_column(c) for c in ("text_loan_purpose", "text_business_description")]
            ).drop_nulls()
            self._sentences = sorted({t for t in texts.to_list() if t.isascii() and len(t) > 30})
        return self._tokenizer

    def _text(self, i: int) -> str:
        """A new English text of 128 tokens ([CLS] and [SEP] included), from the generator's sentences.
        The tokenizer splits on spaces before its word pieces, so a text's count is the sum of its
        words' counts (cached): one encoding per text, checked, instead of one per word added."""
        tok = self._tok()
        rng = random.Random(self.seed * 1_000_003 + i)
        words = f"Reference {self.seed}-{i}.".split()
        count = 2 + sum(self._tokens_of(w) for w in words)
        while count < 128:
            more = rng.choice(self._sentences).split()
            words += more
            count += sum(self._tokens_of(w) for w in more)
        while count > 128:
            count -= self._tokens_of(words.pop())
        text = " ".join(words)
        assert len(tok.encode(text).ids) == count, "token counts are not additive over words"
        return text

    def _tokens_of(self, word: str) -> int:
        n = self._word_tokens.get(word)
        if n is None:
            n = self._word_tokens[word] = len(self._tok().encode(word, add_special_tokens=False).ids)
        return n


def cycle(requests: list[bytes], counter: list[int]) -> Iterator[bytes]:
    """Hands the requests out once; past the end it repeats them and counts the repeats."""
    yield from requests
    while True:
        for data in requests:
            counter[0] += 1
            yield data


# -- the server ------------------------------------------------------------------------------------
@dataclass
class FraudscoreServer:
    proc: subprocess.Popen[str]
    target: str
    state: Path
    metrics_url: str | None = None  # /metrics of the process (of one worker under `--workers N`)
    # `--workers N --worker-port-base B`: a gRPC target of every worker's own port, for a channel with
    # the round_robin policy (calls spread over the workers, not connections)
    balanced_target: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.state, ignore_errors=True)


def free_ports(n: int) -> int:
    """A port p such that p .. p + n - 1 are free now."""
    import contextlib
    import socket

    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = int(first.getsockname()[1])
            if base + n - 1 > 65535:
                continue
            with contextlib.ExitStack() as stack:
                try:
                    for port in range(base + 1, base + n):
                        stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
                except OSError:
                    continue
                return base
    raise SystemExit(f"no {n} free consecutive ports")


def start_server(
    bundle_dir: Path,
    state: Path,
    source: Path | None = None,
    *,
    workers: int = 1,
    balanced: bool = False,
) -> FraudscoreServer:
    """`fraudscore serve` on copies of the history store and text index and a fresh audit store,
    so every run starts from the same state; with `source`, the code exported there (`export`);
    `workers` > 1: `serve --workers N` (N processes on one port; the pid is their parent's);
    `balanced`: each worker also on a port of its own (`--worker-port-base`, since aedec5c), for a
    client that spreads calls over them (`balanced_target`)."""
    state.mkdir(parents=True, exist_ok=True)
    for name in ("history.sqlite", "text-index.sqlite"):
        if (DATA / name).exists():
            shutil.copyfile(DATA / name, state / name)
    environment = {
        **os.environ,
        "FRAUDSCORE_DATA_DIR": str(DATA),
        "FRAUDSCORE_LOG_LEVEL": "WARNING",
        "FRAUDSCORE_HISTORY_PATH": str(state / "history.sqlite"),
        "FRAUDSCORE_TEXT_INDEX_PATH": str(state / "text-index.sqlite"),
        "FRAUDSCORE_AUDIT_PATH": str(state / "audit.sqlite"),
        # Metrics stay on (they are on the request path) on a free port; the review page (not on it)
        # is off, so that serving writes nothing into the data directory.
        "FRAUDSCORE_METRICS_PORT": "0",
        "FRAUDSCORE_REVIEW_PORT": "none",
    }
    command = _fraudscore()
    if balanced and workers < 2:
        raise SystemExit("balanced needs workers > 1")
    base = free_ports(workers) if balanced else 0
    if source is not None:  # ahead of the editable install of the working tree on sys.path
        environment["PYTHONPATH"] = str(source)
        command = [sys.executable, "-m", "scoring.cli"]
    log = (state / "server.log").open("w")
    proc = subprocess.Popen(
        [
            *command,
            "serve",
            "--port",
            "0",
            "--bundle",
            str(bundle_dir),
            *(["--workers", str(workers)] if workers > 1 else []),
            *(["--worker-port-base", str(base)] if balanced else []),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=environment,
        cwd=source or ROOT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("fraudscore: serving gRPC on "):
            metrics = line.split("metrics on ")[1].strip() if "metrics on " in line else None
            target = line.split(" on ")[1].split(" ")[0]
            host = target.rsplit(":", 1)[0]
            own = f"ipv4:{','.join(f'{host}:{base + i}' for i in range(workers))}" if balanced else None
            return FraudscoreServer(proc, target, state, metrics, own)
    raise SystemExit(f"fraudscore serve did not start; see {state / 'server.log'}")


def server_counters(server: FraudscoreServer) -> dict[str, float] | None:
    """Counters from the server's /metrics so far: its garbage collector's collections and their
    milliseconds by generation (`gc0`, `gc0_ms`, ... `gc2_ms`; from 14cbda3 on) and its audit
    commits, all and those over 50 and 250 ms (`commits`, `commits_50ms`, `commits_250ms`). None
    without a metrics port; a counter the revision does not have is absent."""
    if server.metrics_url is None:
        return None
    import urllib.request

    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("fraudscore_gc_pause_seconds_"):
            g = name.split('generation="')[1].split('"')[0]
            if name.startswith("fraudscore_gc_pause_seconds_count"):
                out[f"gc{g}"] = float(value)
            elif name.startswith("fraudscore_gc_pause_seconds_sum"):
                out[f"gc{g}_ms"] = float(value) * 1000
        elif name == "fraudscore_audit_commit_seconds_count":
            out["commits"] = float(value)
        elif name.startswith("fraudscore_audit_commit_seconds_bucket"):
            buckets[name.split('le="')[1].split('"')[0]] = float(value)
    if "commits" in out:
        out["commits_50ms"] = out["commits"] - buckets.get("0.05", 0.0)
        out["commits_250ms"] = out["commits"] - buckets.get("0.25", 0.0)
    return out


def counters_during(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """`server_counters` over one run: after minus before."""
    if before is None or after is None:
        return None
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}


def summarise_responses(responses: list[bytes]) -> dict[str, Any]:
    """Decisions, degraded answers, reasons and the server's own latency from Score responses."""
    decisions: dict[str, int] = {}
    providers: dict[str, int] = {}  # the ONNX Runtime provider each answer says its text ran on
    degraded, reasons, server_ms = 0, 0, []
    for data in responses:
        r = pb.ScoreResponse.FromString(data)
        name = pb.Decision.Name(r.decision).removeprefix("DECISION_")
        decisions[name] = decisions.get(name, 0) + 1
        if r.text_model.execution_provider:
            providers[r.text_model.execution_provider] = providers.get(r.text_model.execution_provider, 0) + 1
        degraded += r.degraded
        reasons += bool(r.reasons)
        server_ms.append(r.latency_ms)
    return {
        "decisions": decisions,
        "text_providers": providers,
        "degraded": degraded,
        "with_reasons": reasons,
        "server_latency_ms_p50": round(float(np.median(server_ms)), 3) if server_ms else None,
        "server_latency_ms_p99": round(float(np.percentile(server_ms, 99)), 3) if server_ms else None,
    }


def batch_item_error(data: bytes) -> str | None:
    item = pb.ScoreBatchItem.FromString(data)
    return item.error.code if item.HasField("error") else None


# -- the model's input rows, offline ---------------------------------------------------------------
def feature_rows(bundle_dir: Path, n: int, work: Path) -> np.ndarray:
    """The float matrix the bundle's primary model predicts from, for `n` new synthetic applications,
    built with the service's own pieces (pipeline, history store lookup on a copy, text signals),
    as one micro-batch of 64 at a time; nothing is recorded."""
    cached = CACHE / f"rows-{bundle_dir.name}-{n}.npy"
    if cached.exists() and cached.stat().st_mtime >= (bundle_dir / "MANIFEST.json").stat().st_mtime:
        return np.asarray(np.load(cached))
    from features.history import entity_key_rows, history_frame
    from features.history_store import SQLiteHistoryStore
    from scoring.model import ScoringModel
    from scoring.settings import Settings
    from scoring.text import TextRuntime

    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / "history.sqlite", work / "history.sqlite")
    settings = Settings(data_dir=DATA, text_index_path=work / "text-index.sqlite")
    model = ScoringModel.load(bundle_dir)
    secret = settings.resolved_history_secret()
    store = SQLiteHistoryStore(work / "history.sqlite")
    text = TextRuntime(model, settings) if model.uses_text else None
    canonical = generate(n, seed=777).select(list(CANONICAL_SCHEMA))
    rows = []
    try:
        for start in range(0, n, 64):
            frame = model.pipeline.frame_from_rows(canonical.slice(start, 64).to_dicts())
            keys = entity_key_rows(frame, secret)
            history = (
                history_frame(store.lookup_and_record(keys, record=False)) if model.uses_history else None
            )
            signals = text.signals(frame, [k["identity"] for k in keys], record=False) if text else None
            rows.append(model.score_frame(frame, history, signals).matrix)
    finally:
        store.close()
        if text is not None:
            text.close()
    matrix = np.vstack(rows)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, matrix)
    return matrix
