"""`fraudscore serve`: loads the model, the stores and the text encoder, then runs the gRPC server and
the officers' review page in one event loop until SIGINT/SIGTERM, and shuts both down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from scoring.settings import Settings

if TYPE_CHECKING:
    from scoring.lists import PolicyLists
    from scoring.model import ScoringModel
    from scoring.service import ScoringService
    from scoring.text import TextRuntime
    from scoring.web.app import ReviewSite


async def serve_forever(
    service: ScoringService,
    settings: Settings,
    on_ready: Callable[[int, int | None, int | None], None],
    *,
    review: ReviewSite | None = None,
    worker: int | None = None,
) -> None:
    """Serves until SIGINT/SIGTERM; `review` None serves no page. `on_ready(grpc port, review page
    port, metrics port)`. `worker`: the index of a worker of `serve --workers N`, binding the port
    its siblings share (and its own port, `Settings.worker_port_base`)."""
    from scoring.grpc_server import Server
    from scoring.telemetry import MetricsSite, watch_gc

    reuse_port = worker is not None
    server = Server(service, settings, reuse_port=reuse_port, own_port=settings.worker_port(worker))
    await server.start()
    review_port = await review.start() if review is not None else None
    metrics = None
    if settings.metrics_port is not None:
        metrics = MetricsSite(service.metrics, settings.host, settings.metrics_port)
        await metrics.start()
    unwatch = watch_gc(service.metrics)
    settle_heap()
    on_ready(server.port, review_port, metrics.port if metrics else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if reuse_port:  # a worker of `serve --workers N`: stop when the parent is gone, even killed
        loop.add_reader(sys.stdin.fileno(), _on_parent_pipe, loop, stop)
    await stop.wait()
    if review is not None:
        await review.stop()
    await server.stop()
    if metrics is not None:
        await metrics.stop()
    unwatch()


def settle_heap() -> None:
    """After start-up: what loading left behind is collected once, and everything alive then (the
    model, the encoder, the stores, the modules) is frozen out of the garbage collector's reach
    (`gc.freeze`), so that no later collection walks it. Measured at 250 requests/s (history
    bundle, `bench/ab.py`): full collections took 86-103 ms in 2 of 9 runs of 20 s without it,
    during which every thread waits, and 1.5-4.3 ms each with it
    (`bench/results/suite-history-stalls.json`).
    The collection thresholds stay Python's: raised to 50,000, one young collection took 70-75 ms
    (`bench/results/ab-gc-250.md`), where the default's take about 0.3 ms each."""
    gc.collect()
    gc.freeze()


def _on_parent_pipe(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """The parent holds the write end of the worker's stdin: end of file means the parent exited
    (a SIGKILL included), and a worker must not serve on, orphaned, holding the port."""
    if not os.read(sys.stdin.fileno(), 4096):
        loop.remove_reader(sys.stdin.fileno())
        print("fraudscore: the parent process is gone; stopping", file=sys.stderr)
        stop.set()


def open_service(
    settings: Settings,
    model: ScoringModel,
    stack: ExitStack,
    *,
    text: TextRuntime | None = None,
    lists: PolicyLists | None = None,
) -> ScoringService:
    """The scoring service on the stores the settings name; `stack` closes them."""
    from features.history_store import SQLiteHistoryStore
    from scoring.audit import AuditStore
    from scoring.service import ScoringService

    history = SQLiteHistoryStore(settings.resolved_history_path())
    stack.callback(history.close)
    audit = stack.enter_context(
        AuditStore(
            settings.resolved_audit_path(),
            secret=settings.audit_secret(),
            personal_data=settings.audit_personal_data,
        )
    )
    return ScoringService(
        model,
        settings,
        history=history,
        history_secret=settings.resolved_history_secret(),
        text=text,
        audit=audit,
        lists=lists,
    )


def serve(
    settings: Settings,
    *,
    ensure_bundle: Callable[[Settings], Path],
    ensure_encoder: Callable[[Settings], Path],
    worker: int | None = None,
) -> int:
    """Returns the exit status: 0 after a clean shutdown, 3 when what it would serve is refused.

    With `settings.workers` > 1 this process prepares and supervises the workers (`scoring.workers`);
    `worker` is set in each of them."""
    from features.text.encoder import EncoderError
    from scoring import logs
    from scoring.access import AccessError, ApiKeys
    from scoring.errors import BundleError
    from scoring.lists import PolicyLists
    from scoring.model import ScoringModel
    from scoring.officer_log import OfficerLog
    from scoring.text import TextRuntime
    from scoring.web.app import ReviewSite
    from scoring.web.auth import Officers, OfficersError

    logs.configure(settings.log_level)
    bundle = ensure_bundle(settings)
    with ExitStack() as stack:
        text = None
        try:
            model = ScoringModel.load(
                bundle, threads=settings.model_threads, expected_version=settings.bundle_version
            )
            if settings.thresholds:
                model.override_thresholds(settings.thresholds)
            lists = PolicyLists.load(settings.policy_lists) if settings.policy_lists else None
            if model.uses_text:
                ensure_encoder(settings)
            supervise = settings.workers > 1 and worker is None
            if model.uses_text and not supervise:  # the workers load the encoder, not their parent
                text = TextRuntime(model, settings)
                stack.callback(text.close)
            officers = Officers(settings.resolved_officers_path())
            officers.names()  # a malformed officers file stops the start, not the first sign-in
            if settings.api_keys is not None:
                ApiKeys.load(settings.api_keys)
            elif worker is None:  # said once, by the parent of workers
                print(
                    "fraudscore: no api_keys file: every caller may score (set FRAUDSCORE_API_KEYS)",
                    file=sys.stderr,
                )
        except (BundleError, EncoderError, OfficersError, AccessError, ValueError) as exc:
            print(f"fraudscore: refusing to serve: {exc}", file=sys.stderr)
            return 3
        password_file = settings.data_dir / "review-admin-password"
        if supervise:
            from scoring.workers import serve_workers

            settings.audit_secret()  # made here once (the history key), not raced for by the workers
            if settings.review_port is not None and officers.ensure_admin(password_file):
                print(
                    f"fraudscore: review page: first admin 'admin', password in {password_file}",
                    file=sys.stderr,
                )
            version = model.version
            del model, lists
            return serve_workers(settings, bundle, version)
        service = open_service(settings, model, stack, text=text, lists=lists)
        review = None
        if settings.review_port is not None:
            officer_log = stack.enter_context(
                OfficerLog(settings.resolved_officer_log_path(), secret=settings.audit_secret())
            )
            review = ReviewSite(service, settings, officers=officers, officer_log=officer_log)
            if officers.ensure_admin(password_file):
                print(
                    f"fraudscore: review page: first admin 'admin', password in {password_file} (mode 0600); "
                    "add officers with 'fraudscore officers add'",
                    file=sys.stderr,
                )

        def ready(port: int, review_port: int | None, metrics_port: int | None) -> None:
            host = settings.review_host or settings.host
            notes = f" (model {model.version})"
            if (own := settings.worker_port(worker)) is not None:
                notes += f"; its own port {settings.host}:{own}"
            notes += f"; review page on http://{host}:{review_port}/" if review_port else ""
            notes += f"; metrics on http://{settings.host}:{metrics_port}/metrics" if metrics_port else ""
            tls = " over TLS" if settings.tls_cert else ""
            print(f"fraudscore: serving gRPC on {settings.host}:{port}{tls}{notes}", flush=True)

        asyncio.run(serve_forever(service, settings, ready, review=review, worker=worker))
    return 0
