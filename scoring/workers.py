"""`fraudscore serve --workers N`: N server processes share the gRPC port (SO_REUSEPORT, Linux).

One Python process scores on about one core: its event loop, gRPC and the batch thread share one
interpreter lock. With N processes the kernel spreads incoming *connections* over them (a client's
channel is one connection, so one caller's calls all reach one worker: callers that want the
spread open several channels). Each worker is a whole `fraudscore serve` with its own model, encoder
and micro-batcher; they share the SQLite files, whose write transactions serialise them: the history
store and the near-duplicate text index (each worker catches up with the others' entries inside its
write transaction, `features.text.near_dup`), the audit store (a retry reaching another worker finds
the decision on record).

This process, the parent, prepares what the workers must not race on (the demo bundle, the
encoder, the secrets, the first admin), keeps the port bound for the workers' whole life (so no
other program takes it between two of them), restarts a worker that dies, and on SIGTERM/SIGINT
stops them gracefully. Only worker 0 serves the review page; worker i serves its metrics on
`metrics_port + i` (each worker's own counters).

Calls, not connections, are spread by the caller: with `worker_port_base` set, worker i also
listens on `worker_port_base + i` alone, and a gRPC channel to all those ports with the
`round_robin` policy sends each call to the next worker (one connection to each). The parent holds
those ports too (refusing to start if anything else holds one), so a restarted worker gets its own
back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scoring.settings import Settings

READY = "fraudscore: serving gRPC on "
# A worker that dies this many times within RESTART_WINDOW_S is not restarted again: the server
# stops (its supervisor decides) rather than loop on a fault.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[str]
    ready: bool = False
    line: str = ""
    started: float = field(default_factory=time.monotonic)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT: the workers bind the same port
    beside it, and only listening sockets are given connections. Port 0 picks a free one."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("workers > 1 needs SO_REUSEPORT (Linux); serve with workers = 1 here")
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def reserve_free_port(host: str, port: int) -> socket.socket:
    """`reserve_port` for a port nothing may hold yet: a worker's own port (`worker_port_base`). A
    plain bind first (SO_REUSEADDR only, so a closing connection's TIME_WAIT does not count) fails
    if any socket holds the port, another server's SO_REUSEPORT group included; the reservation then
    keeps it for the workers' whole life, a restarted worker's included."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    return reserve_port(host, port)


def worker_env(settings: Settings, index: int) -> dict[str, str]:
    """The environment of worker `index`: the review page on worker 0 only, metrics one port each."""
    env = dict(os.environ, FRAUDSCORE_WORKERS="1")
    if settings.worker_port_base is not None:  # the worker adds its index (`Settings.worker_port`)
        env["FRAUDSCORE_WORKER_PORT_BASE"] = str(settings.worker_port_base)
    if index > 0 or settings.review_port is None:
        env["FRAUDSCORE_REVIEW_PORT"] = "none"
    if settings.metrics_port is None:
        env["FRAUDSCORE_METRICS_PORT"] = "none"
    elif settings.metrics_port > 0:
        env["FRAUDSCORE_METRICS_PORT"] = str(settings.metrics_port + index)
    return env


class Supervisor:
    """Starts the workers, relays their readiness, restarts the dead, stops them all on a signal."""

    def __init__(self, settings: Settings, bundle: Path, port: int) -> None:
        self.settings, self.bundle, self.port = settings, bundle, port
        self.events: queue.Queue[tuple[str, int, object]] = queue.Queue()
        self.workers: dict[int, _Worker] = {}
        self.restarts: list[float] = []

    def _spawn(self, index: int) -> None:
        command = [
            sys.executable,
            "-m",
            "scoring.cli",
            "serve",
            "--worker",
            str(index),
            "--bundle",
            str(self.bundle),
            "--host",
            self.settings.host,
            "--port",
            str(self.port),
        ]
        # stdin: a pipe whose write end only this process holds; the worker stops at its end of file,
        # so no worker outlives its parent (killed with SIGKILL included).
        process = subprocess.Popen(
            command,
            env=worker_env(self.settings, index),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        worker = _Worker(index, process)
        self.workers[index] = worker
        threading.Thread(target=self._watch, args=(worker,), name=f"worker-{index}", daemon=True).start()

    def _watch(self, worker: _Worker) -> None:
        """Relays the worker's stdout lines, then its exit, to the main loop."""
        assert worker.process.stdout is not None
        for line in worker.process.stdout:
            self.events.put(("line", worker.index, line.rstrip("\n")))
        self.events.put(("exit", worker.index, worker.process.wait()))

    def run(self, on_ready: Callable[[list[str]], None]) -> int:
        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop.set()
            self.events.put(("stop", -1, signum))

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for index in range(self.settings.workers):
                self._spawn(index)
            announced = False
            while not stop.is_set():
                kind, index, value = self.events.get()
                worker = self.workers.get(index)
                if kind == "line" and worker is not None:
                    text = str(value)
                    if text.startswith(READY) and not worker.ready:
                        worker.ready, worker.line = True, text.removeprefix("fraudscore: ")
                        print(f"fraudscore: worker {index} (pid {worker.process.pid}) ready: {worker.line}")
                    else:
                        print(text, flush=True)
                    if not announced and all(w.ready for w in self.workers.values()):
                        announced = True
                        on_ready([self.workers[i].line for i in sorted(self.workers)])
                elif kind == "exit" and worker is not None and worker.process.poll() is not None:
                    status = int(value)  # type: ignore[call-overload]
                    if not announced:
                        print(
                            f"fraudscore: worker {index} exited with status {status} before it was ready",
                            file=sys.stderr,
                        )
                        return status or 1
                    if not self._restart(index, status):
                        return 1
            return 0
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _restart(self, index: int, status: int) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            print(
                f"fraudscore: worker {index} exited with status {status}; {len(self.restarts)} exits within "
                f"{RESTART_WINDOW_S:.0f} s: stopping the server",
                file=sys.stderr,
            )
            return False
        print(f"fraudscore: worker {index} exited with status {status}; restarting it", file=sys.stderr)
        dead = self.workers[index].process.stdin
        if dead is not None:
            dead.close()
        self._spawn(index)
        return True

    def _stop_all(self) -> None:
        """SIGTERM to every worker (each stops gracefully: in-flight calls finish), then waits;
        SIGKILL to one still running after the grace period and a margin."""
        alive = [w.process for w in self.workers.values() if w.process.poll() is None]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_seconds + 15.0
        for process in alive:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_workers(settings: Settings, bundle: Path, model_version: str) -> int:
    """Runs `settings.workers` worker processes on one port until SIGINT/SIGTERM."""
    try:
        reserved = reserve_port(settings.host, settings.port)
    except (OSError, ValueError) as exc:
        print(f"fraudscore: refusing to serve: {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 3
    with reserved, contextlib.ExitStack() as stack:
        port = int(reserved.getsockname()[1])
        for i in range(settings.workers if settings.worker_port_base is not None else 0):
            mine = settings.worker_port(i)
            assert mine is not None
            try:
                stack.enter_context(reserve_free_port(settings.host, mine))
            except OSError as exc:
                print(
                    f"fraudscore: refusing to serve: worker {i}'s own port {settings.host}:{mine}: {exc}",
                    file=sys.stderr,
                )
                return 3

        def ready(lines: list[str]) -> None:
            tls = " over TLS" if settings.tls_cert else ""
            notes = f"model {model_version}; {len(lines)} worker processes"
            if (base := settings.worker_port_base) is not None:
                notes += f"; worker i also alone on port {base} + i ({base}-{base + len(lines) - 1})"
            print(f"{READY}{settings.host}:{port}{tls} ({notes})", flush=True)

        return Supervisor(settings, bundle, port).run(ready)
