"""Whether the service can record decisions, for the health service and /metrics.

The audit store failing (disk full, an I/O error, a lost file) makes the service unhealthy: the
batch that hit it is refused (`UNAVAILABLE`, nothing answered OK without its record) and health
says NOT_SERVING, so load balancers stop sending. Recovery: every second a probe commits a write to
the store; the first probe or batch that commits makes the service healthy again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Final

from scoring.audit import AuditStore
from scoring.telemetry import Metrics

log = logging.getLogger("fraudscore.health")
PROBE_SECONDS: Final = 1.0


class StoreHealth:
    def __init__(self, audit: AuditStore | None, metrics: Metrics) -> None:
        self.audit = audit
        self.metrics = metrics
        self.healthy = True
        self._listeners: list[Callable[[bool], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    def listen(self, listener: Callable[[bool], None]) -> None:
        """`listener(healthy)` is called on the event loop at each change."""
        self._listeners.append(listener)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def report(self, ok: bool) -> None:
        """From any thread: the store just committed (True) or failed (False)."""
        with self._lock:
            if ok == self.healthy:
                return
            self.healthy = ok
        self.metrics.healthy.set(1 if ok else 0)
        if ok:
            log.warning("audit store recovered: serving")
        else:
            log.error("audit store failing: NOT_SERVING until a write commits")
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed, ok)

    def _changed(self, ok: bool) -> None:
        for listener in self._listeners:
            listener(ok)
        if not ok and self.audit is not None and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_healthy())

    async def _probe_until_healthy(self) -> None:
        assert self.audit is not None
        while not self.healthy:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                await asyncio.to_thread(self.audit.probe)
            except Exception as exc:  # still failing: try again
                log.debug("audit store probe failed", extra={"error": type(exc).__name__})
                continue
            self.report(True)

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
