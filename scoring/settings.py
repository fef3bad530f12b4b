"""The one settings object of the service: built once by the command line (from `FRAUDSCORE_*`
environment variables, a `.env` file and command-line flags) and passed down. Nothing else reads
the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Provider = Literal["tensorrt", "cuda", "cpu"]


def _default_providers() -> list[Provider]:
    return ["cuda", "cpu"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FRAUDSCORE_", env_file=".env", extra="ignore", env_parse_none_str="none"
    )

    host: str = "127.0.0.1"
    """Address the gRPC server binds. Use 0.0.0.0 in a container."""
    port: int = Field(default=50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (the server prints and logs the one it got)."""
    tls_cert: Path | None = None
    """PEM certificate chain: with `tls_key`, gRPC is served over TLS only."""
    tls_key: Path | None = None
    """PEM private key of `tls_cert`."""
    tls_client_ca: Path | None = None
    """PEM CA certificate(s): with TLS on, clients must present a certificate signed by one (mutual TLS)."""
    api_keys: Path | None = None
    """JSON file of the clients allowed to call (`fraudscore clients add`): each one's hashed key,
    methods and rate limit; calls carry the key in `x-api-key` metadata. Unset: no key is asked for."""
    metrics_port: int | None = Field(default=9095, ge=0, le=65535)
    """Port of Prometheus metrics (`/metrics`, HTTP); 0 picks a free one; `none`
    (`FRAUDSCORE_METRICS_PORT=none`) serves none. Bound on `host`."""
    bundle: Path | None = None
    """Model bundle directory. Unset: the demo bundle under `data_dir`, trained on first start."""
    bundle_version: str | None = None
    """The bundle version this deployment approved (e.g. fs-1a2b...); any other is refused at start,
    even one whose manifest matches its files."""
    data_dir: Path = Path("var")
    """Where the demo data and demo bundle are written."""
    demo_rows: int = Field(default=200_000, ge=10_000)
    """Synthetic applications generated to train the demo bundle."""
    demo_seed: int = 7
    """Seed of the demo data: the same seed gives the same data and the same model."""

    history_path: Path | None = None
    """SQLite file of the history store (earlier applications' hashed keys). Default:
    `data_dir/history.sqlite`."""
    history_secret: SecretStr | None = None
    """Key of the keyed hashes (HMAC-SHA256) under which identifiers are stored in the history.
    Unset: a random key is made on first start and kept in `data_dir/history.key` (mode 0600).
    Replicas sharing a history store must share the key."""

    policy_lists: Path | None = None
    """JSON file of allow and deny lists of hashed identifiers that override the model's decision
    (see scoring/lists.py; `fraudscore lists hash` makes an entry). Unset: no overrides."""
    thresholds: dict[str, dict[str, float]] | None = None
    """Per-product REVIEW and DECLINE probability thresholds replacing the bundle's, e.g.
    `FRAUDSCORE_THRESHOLDS='{"CONSUMER": {"review": 0.2, "decline": 0.6}}'`. Products not named
    keep the bundle's thresholds."""
    audit_path: Path | None = None
    """SQLite file of the audit store: every decision, committed before it is answered, personal
    fields protected (`audit_personal_data`); outcomes. Default: `data_dir/audit.sqlite`."""
    audit_personal_data: Literal["encrypt", "hash"] = "encrypt"
    """How the audit store keeps an application's personal fields: `encrypt` (AES-256-GCM under a key
    derived from the history key; signed-in officers see them masked and the free texts in full) or
    `hash` (keyed hashes: nobody can read them back, the review page shows none)."""
    review_port: int | None = Field(default=8080, ge=0, le=65535)
    """Port of the risk officers' review page (HTTP, served by `fraudscore serve`); 0 picks a free one;
    `none` (`FRAUDSCORE_REVIEW_PORT=none`) serves no page."""
    review_host: str | None = None
    """Address the review page binds. Default: the same as `host`."""
    officers_path: Path | None = None
    """JSON file of the officers who may sign in (`fraudscore officers add`): user name, role (officer
    or admin) and a scrypt hash of the password. Default: `data_dir/officers.json`; when missing, one
    admin is made and its password written once to `data_dir/review-admin-password` (mode 0600)."""
    officer_log_path: Path | None = None
    """SQLite file of the tamper-evident log of what officers saw and did (`fraudscore audit verify`).
    Default: `data_dir/officer-log.sqlite`."""
    review_session_minutes: float = Field(default=30.0, gt=0.0)
    """An officer's session ends after this long without a request."""
    encoder_dir: Path | None = None
    """Text encoder directory (`fraudscore encoder build`). Default: `data_dir/encoder`, built from
    the packaged all-MiniLM-L6-v2 on first start when missing."""
    text_providers: list[Provider] = Field(default_factory=_default_providers)
    """ONNX Runtime providers for the text encoder, in order of preference. The one that actually
    started is reported (GetModelInfo, every response): a GPU provider that cannot load (no CUDA 13 /
    cuDNN 9 libraries, no device) leaves the CPU."""
    text_variant: Literal["auto", "fp32", "fp16", "int8"] = "auto"
    """Encoder graph: auto is fp16 on a GPU provider, int8 on the CPU."""
    text_threads: int = Field(default=0, ge=0, le=64)
    """ONNX Runtime threads for the encoder on the CPU; 0 lets ONNX Runtime choose (all cores).
    Measured on 2 cores with `bench/score_latency.py`: sequential p50 the same with 1 or 2 threads
    (16.7 / 16.9 ms), 16 in flight 137 req/s with 1 thread and 168 req/s with 2."""
    text_encode_ahead: bool = True
    """Encode each queued application's texts on a thread of their own while it waits for its
    micro-batch (`scoring.text.EncodeAhead`), so the encoder overlaps the batch in progress."""
    text_cache_size: int = Field(default=20_000, ge=0)
    """Embeddings kept by text hash, so a text seen again (templates, retries) is not encoded again."""
    text_index_path: Path | None = None
    """SQLite file of the near-duplicate text index (recent texts' vectors, hashed identities).
    Default: `data_dir/text-index.sqlite`."""
    text_margin_ms: float = Field(default=5.0, ge=0.0)
    """A request whose remaining deadline is under the encoder's recent time plus this margin is
    scored by the fallback model without text (degraded), not left to miss its deadline."""

    batch_max_size: int = Field(default=64, ge=1, le=4096)
    """Most applications scored together in one micro-batch."""
    batch_max_wait_ms: float = Field(default=0.0, ge=0.0, le=100.0)
    """How long the first request of a micro-batch waits for others to join it. The default 0 batches
    adaptively: a batch is whatever queued while the previous one was scored (measured on 2 cores:
    0 ms gave 7.1 ms sequential p50 and 927 req/s at 16 in flight; 2 ms gave 10.8 ms and 659 req/s)."""
    max_queue_wait_ms: float = Field(default=100.0, gt=0.0)
    """Admission control: a request that would wait longer than this before it is scored (the queue
    ahead of it times the recent scoring time per application), or longer than its own deadline
    leaves, is refused at once with RESOURCE_EXHAUSTED, so accepted calls keep their latency under
    overload instead of all of them timing out in a long queue."""
    max_queue: int = Field(default=2048, ge=1)
    """Requests waiting to be scored beyond which new ones are refused with RESOURCE_EXHAUSTED."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes sharing the gRPC port (SO_REUSEPORT, Linux; `scoring.workers`). One process
    scores on about one core; more use more cores, each with its own model and encoder in memory.
    The kernel spreads connections, not calls: a caller's channel stays on one worker. Worker 0
    serves the review page; worker i its metrics on `metrics_port + i`."""
    worker_port_base: int | None = Field(default=None, ge=1, le=65535)
    """With `workers` > 1 (ignored with one): worker i also listens on `worker_port_base + i`, a port
    of its own (held by the parent for the workers' whole life, refused if anything holds it), so
    that a caller can spread calls, not connections, over the workers: a gRPC channel to all the
    workers' ports with the `round_robin` load-balancing policy (`docs/operations.md`). None: the
    shared port only."""
    model_threads: int = Field(default=1, ge=1, le=64)
    """Threads LightGBM uses per prediction call (unset, it would take every core for one row)."""
    max_message_bytes: int = Field(default=1 << 20, ge=1 << 16)
    """Largest request message accepted, in bytes."""
    batch_stream_window: int = Field(default=256, ge=1, le=65536)
    """Requests of one ScoreBatch stream scored concurrently (bounded to keep memory bounded)."""
    grace_seconds: float = Field(default=5.0, ge=0.0)
    """On shutdown, how long in-flight calls get to finish."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Structured JSON logs go to stderr at this level; they never carry personal data."""

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both to serve TLS, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self

    @model_validator(mode="after")
    def _worker_ports(self) -> Settings:
        base = self.worker_port_base
        if base is None or self.workers == 1:  # one process listens on `port` alone: unused
            return self
        if base + self.workers - 1 > 65535:
            raise ValueError(
                f"worker_port_base {base} leaves no port for worker {self.workers - 1} "
                "(worker i listens on worker_port_base + i, at most 65535)"
            )
        own = range(base, base + self.workers)
        taken: dict[str, list[int | None]] = {"port": [self.port]}
        if self.review_host in (None, self.host):
            taken["review_port"] = [self.review_port]
        if self.metrics_port:
            taken["metrics_port + i"] = list(range(self.metrics_port, self.metrics_port + self.workers))
        for name, ports in taken.items():
            if any(p in own for p in ports if p):
                raise ValueError(
                    f"worker_port_base {base}: the workers' own ports {base}-{own[-1]} overlap {name}"
                )
        return self

    def worker_port(self, worker: int | None) -> int | None:
        """The port of worker `worker` alone (`worker_port_base`); None for a single process."""
        if worker is None or self.worker_port_base is None:
            return None
        return self.worker_port_base + worker

    def resolved_bundle(self) -> Path:
        return self.bundle if self.bundle is not None else self.data_dir / "demo-bundle"

    def resolved_audit_path(self) -> Path:
        return self.audit_path if self.audit_path is not None else self.data_dir / "audit.sqlite"

    def audit_secret(self) -> bytes:
        """The key of the audit store's pseudonyms: derived from the history key (one secret to keep),
        so an audit pseudonym never equals a history key's hash."""
        import hashlib
        import hmac

        return hmac.new(self.resolved_history_secret(), b"fraudscore-audit", hashlib.sha256).digest()

    def resolved_officers_path(self) -> Path:
        return self.officers_path if self.officers_path is not None else self.data_dir / "officers.json"

    def resolved_officer_log_path(self) -> Path:
        return (
            self.officer_log_path
            if self.officer_log_path is not None
            else self.data_dir / "officer-log.sqlite"
        )

    def resolved_encoder_dir(self) -> Path:
        return self.encoder_dir if self.encoder_dir is not None else self.data_dir / "encoder"

    def resolved_text_index_path(self) -> Path:
        return (
            self.text_index_path if self.text_index_path is not None else self.data_dir / "text-index.sqlite"
        )

    def resolved_history_path(self) -> Path:
        return self.history_path if self.history_path is not None else self.data_dir / "history.sqlite"

    def resolved_history_secret(self) -> bytes:
        """The configured key, or the one kept in the data directory (made once, on first use)."""
        if self.history_secret is not None:
            return self.history_secret.get_secret_value().encode()
        path = self.data_dir / "history.key"
        if not path.exists():
            import os
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()
