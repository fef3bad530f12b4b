"""MLServer for the side-by-side: its own venv (made on first use), a model repository serving one
LightGBM text-format booster with MLServer's LightGBM runtime, and V2 requests for it.

MLServer is installed into a separate venv (bench/.cache/venv-mlserver, git-ignored) so that the
project's locked environment is left alone. uvloop is pinned below 0.22: with uvloop 0.23 MLServer
1.7.1's default `parallel_workers=1` never loads a model (its worker process fails on
`asyncio.get_event_loop()`), so "as shipped" would not serve at all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from framing import read_framed, write_framed  # bench/ is on sys.path (bench/suite.py)

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".cache" / "venv-mlserver"
PACKAGES = ("mlserver==1.7.1", "mlserver-lightgbm==1.7.1", "uvloop<0.22")
MODEL = "fraud"
INFER = "/inference.GRPCInferenceService/ModelInfer"


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def ensure_venv(venv: Path = VENV) -> Path:
    """MLServer's venv, created and installed on first use; returns its Python."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mlserver").exists():
        print(f"[suite] installing {' '.join(PACKAGES)} into {venv}", file=sys.stderr, flush=True)
        subprocess.run([*_uv(), "venv", str(venv), "--python", "3.11"], check=True)
        subprocess.run([*_uv(), "pip", "install", "--python", str(python), *PACKAGES], check=True)
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform; "
        "print(json.dumps({'python': platform.python_version(), "
        "**{p: m.version(p) for p in ('mlserver', 'mlserver-lightgbm', 'lightgbm', 'grpcio', 'uvloop')}}))"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def encode_requests(python: Path, rows: np.ndarray, work: Path) -> list[bytes]:
    """Serialised V2 ModelInferRequest messages, one per row, made by MLServer's own stubs."""
    np.save(work / "rows.npy", rows.astype(np.float32))
    out = work / "requests.bin"
    subprocess.run(
        [
            str(python),
            str(BENCH / "mlserver_side.py"),
            "encode",
            "--rows",
            str(work / "rows.npy"),
            "--model",
            MODEL,
            "--out",
            str(out),
        ],
        check=True,
    )
    return read_framed(out)


def decode_responses(python: Path, responses: list[bytes], work: Path) -> list[tuple[int, float]]:
    """(row index, MLServer's prediction) of each response."""
    path = work / "responses.bin"
    write_framed(responses, path)
    out = subprocess.run(
        [str(python), str(BENCH / "mlserver_side.py"), "decode", "--in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [(int(i.removeprefix("r")), float(v)) for i, v in json.loads(out)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Config:
    """One way of running MLServer: server settings (settings.json), model settings
    (model-settings.json) and environment variables."""

    name: str
    server: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in {**self.server, **self.model}.items()]
        parts += [f"{k}={v}" for k, v in self.env.items()]
        return ", ".join(parts) or "defaults"


AS_SHIPPED = Config("as shipped")
# Tried in turn (a short closed loop each); the best is measured in full. OMP_NUM_THREADS is not an
# MLServer setting, but its LightGBM runtime calls predict() without num_threads, so OpenMP takes
# every core for one row; fraudscore sets LightGBM's num_threads to 1 the same way.
_QUIET = {"debug": False, "metrics_endpoint": None}
CANDIDATES = (
    Config("workers=0", {**_QUIET, "parallel_workers": 0}),
    Config("workers=0, omp=1", {**_QUIET, "parallel_workers": 0}, env={"OMP_NUM_THREADS": "1"}),
    Config("workers=1, omp=1", {**_QUIET, "parallel_workers": 1}, env={"OMP_NUM_THREADS": "1"}),
    Config(
        "workers=0, omp=1, batch 16/2ms",
        {**_QUIET, "parallel_workers": 0},
        {"max_batch_size": 16, "max_batch_time": 0.002},
        {"OMP_NUM_THREADS": "1"},
    ),
)


class MLServer:
    """A running `mlserver start` on a model repository holding one LightGBM booster."""

    def __init__(self, python: Path, booster: Path, config: Config, work: Path) -> None:
        self.config = config
        repo = work / f"repo-{config.name.replace(' ', '_').replace(',', '').replace('/', '-')}"
        shutil.rmtree(repo, ignore_errors=True)
        (repo / MODEL).mkdir(parents=True)
        shutil.copyfile(booster, repo / MODEL / "model.txt")
        self.grpc_port = free_port()
        ports = {"http_port": free_port(), "grpc_port": self.grpc_port, "metrics_port": free_port()}
        (repo / "settings.json").write_text(json.dumps({**ports, **config.server}))
        model_settings = {
            "name": MODEL,
            "implementation": "mlserver_lightgbm.LightGBMModel",
            "parameters": {"uri": "./model.txt"},
        } | config.model
        (repo / MODEL / "model-settings.json").write_text(json.dumps(model_settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER", "OMP_", "VIRTUAL_ENV"))}
        self.log = (work / f"{repo.name}.log").open("w")
        self.proc = subprocess.Popen(
            [str(python.parent / "mlserver"), "start", str(repo)],
            cwd=repo,
            env=env | config.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its worker processes go with it on stop
        )
        self.target = f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, request: bytes, timeout: float = 90.0) -> None:
        """Until one inference answers (the model is loaded in every worker by then, or soon after)."""
        import grpc
        from loadgen import identity

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            call = channel.unary_unary(INFER, request_serializer=identity, response_deserializer=identity)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mlserver exited ({self.proc.returncode}); see {self.log.name}")
                try:
                    call(request, timeout=2)
                    return
                except grpc.RpcError:
                    time.sleep(0.5)
        raise RuntimeError(f"mlserver did not answer within {timeout} s; see {self.log.name}")

    def stop(self) -> None:
        if self.log.closed:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
