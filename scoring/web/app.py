"""The risk officers' review page: server-rendered HTML over aiohttp, on its own port, in the same
process and event loop as the gRPC server (`fraudscore serve`). No script and nothing from outside:
the charts are inline SVG drawn by the templates.

Pages: sign-in; the queue of decisions to review (filters, sort, pages); a case (the application with
personal data masked, the free texts with the clauses behind the text signals highlighted, every
reason, a waterfall of contributions, the model, the outcome form); the model (metrics, score
distribution, feature importance); the officer log (admins). Every page view and action goes to the
tamper-evident officer log; the process log gets the route, status and time, never data.

The handlers are thin: what a page shows comes from `views` and `charts`, what it does from the
scoring service (`report_outcome`, `explain`) and the audit store.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from features.schema import PRODUCTS, TEXT_COLUMNS
from features.text.spans import theme_spans
from scoring.audit import OUTCOMES, AuditRecord, AuditStore
from scoring.errors import FraudscoreError
from scoring.officer_log import OfficerLog
from scoring.service import ScoringService
from scoring.settings import Settings
from scoring.web import charts, views
from scoring.web.auth import Officer, Officers, Session, Sessions

log = logging.getLogger("fraudscore.review")
COOKIE: Final = "fs_session"
MAX_NOTE: Final = 2000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION: Final = web.RequestKey("session", object)
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class ReviewSite:
    def __init__(
        self, service: ScoringService, settings: Settings, *, officers: Officers, officer_log: OfficerLog
    ) -> None:
        if service.audit is None:
            raise ValueError("the review page needs the audit store")
        self.service = service
        self.audit: AuditStore = service.audit
        self.settings = settings
        self.officers = officers
        self.log = officer_log
        self.sessions = Sessions(settings.review_session_minutes * 60)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(files("scoring.web") / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["value"] = _value
        self.app = web.Application(middlewares=[self._guard])
        self.app.add_routes(
            [
                web.get("/", self.index),
                web.get("/favicon.ico", self.no_icon),
                web.get("/login", self.login_page),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/queue", self.queue),
                web.get("/case/{application_id}", self.case),
                web.post("/case/{application_id}/outcome", self.outcome),
                web.get("/model", self.model_page),
                web.get("/actions", self.actions),
                web.static("/static", Path(str(files("scoring.web") / "static"))),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host = self.settings.review_host or self.settings.host
        site = web.TCPSite(self._runner, host, self.settings.review_port or 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing ------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Sign-in and form-token checks, security headers, error pages and the request log line."""
        started = time.perf_counter()
        open_path = request.path in ("/login", "/favicon.ico") or request.path.startswith("/static/")
        response: web.StreamResponse
        try:
            session = self.sessions.get(request.cookies.get(COOKIE))
            if session is None and not open_path:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/login?next={request.rel_url.path}")
                raise web.HTTPUnauthorized(text="sign in first")
            if request.method == "POST" and session is not None and request.path != "/login":
                token = (await request.post()).get("token")
                if not isinstance(token, str) or not hmac.compare_digest(token, session.token):
                    raise web.HTTPForbidden(text="this form has expired: reload the page and try again")
            request[SESSION] = session
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects travel as exceptions
                _secure(exc.headers)
                self._log_request(request, exc.status, started)
                raise
            message = exc.text or exc.reason
            response = self._page("error.html", request.get(SESSION), status=exc.status, message=message)
        except Exception:
            log.exception("review page error", extra={"route": _route(request)})
            message = "internal error; see the server log"
            response = self._page("error.html", request.get(SESSION), status=500, message=message)
        _secure(response.headers)
        self._log_request(request, response.status, started)
        return response

    @staticmethod
    def _log_request(request: web.Request, status: int, started: float) -> None:
        ms = round((time.perf_counter() - started) * 1000, 2)
        log.info(
            "review request",
            extra={"route": _route(request), "method": request.method, "status": status, "ms": ms},
        )

    def _page(self, template: str, session: Any, *, status: int = 200, **context: Any) -> web.Response:
        html = self.templates.get_template(template).render(session=session, **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    @staticmethod
    def _session(request: web.Request) -> Session:
        session = request[SESSION]
        assert isinstance(session, Session)
        return session

    async def _record(self, officer: Officer, action: str, target: str = "", **detail: Any) -> None:
        await asyncio.to_thread(self.log.append, officer.name, officer.role, action, target, detail)

    # -- sign-in ------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/queue")

    async def no_icon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return self._page("login.html", None, next=_safe_next(request.query.get("next")), error="")

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "")))
        officer = await asyncio.to_thread(self.officers.authenticate, name, password)
        if officer is None:
            known = any(o.name == name for o in await asyncio.to_thread(self.officers.names))
            # Only a known officer's name is logged: a mistyped name could be anything.
            await asyncio.to_thread(
                self.log.append,
                name if known else "-",
                "-",
                "sign_in_failed",
                "",
                {"locked_out": self.officers.locked_out(name)} if known else {},
            )
            message = (
                "Too many wrong passwords: try again in a few minutes."
                if known and self.officers.locked_out(name)
                else "Wrong user name or password."
            )
            return self._page("login.html", None, status=401, next=target, error=message)
        sid = self.sessions.open(officer)
        await self._record(officer, "sign_in")
        redirect = web.HTTPSeeOther(target)
        redirect.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
        raise redirect

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        await self._record(session.officer, "sign_out")
        self.sessions.close(request.cookies.get(COOKIE))
        redirect = web.HTTPSeeOther("/login")
        redirect.del_cookie(COOKIE, path="/")
        raise redirect

    # -- pages ----------------------------------------------------------------------------------
    async def queue(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        try:
            filters = views.QueueFilters.parse({k: request.query.getall(k) for k in request.query})
        except views.QueryError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        rows = await asyncio.to_thread(self.audit.list_decisions, **filters.store_query())
        ids = [r.application_id for r in rows[: views.PAGE_SIZE]]
        outcomes = await asyncio.to_thread(self.audit.latest_outcomes, ids)
        await self._record(session.officer, "view_queue", "", **filters.log_detail())
        return self._page(
            "queue.html",
            session,
            filters=filters,
            rows=rows[: views.PAGE_SIZE],
            more=len(rows) > views.PAGE_SIZE,
            outcomes=outcomes,
            decisions=views.DECISIONS,
            products=PRODUCTS,
        )

    async def case(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        application_id = request.match_info["application_id"]
        record = await asyncio.to_thread(self.audit.get, application_id)
        if record is None:
            raise web.HTTPNotFound(text=f"no decision is stored for application {application_id}")
        await self._record(session.officer, "view_case", application_id)
        context = await asyncio.to_thread(self._case_context, record)
        return self._page(
            "case.html",
            session,
            record=record,
            recorded=request.query.get("recorded") == "1",
            outcomes=OUTCOMES,
            fraud_types=views.FRAUD_TYPES,
            **context,
        )

    def _case_context(self, record: AuditRecord) -> dict[str, Any]:
        """Everything the case page computes (in a worker thread: decryption, TreeSHAP, encoding)."""
        try:
            application = self.audit.personal.reveal(record.application_id, record.application)
            unreadable = ""
        except ValueError as exc:
            application, unreadable = dict(record.application), str(exc)
        spans = {}
        text = self.service.text
        if text is not None:
            for column in TEXT_COLUMNS:
                value = application.get(column)
                if isinstance(value, str) and not value.startswith(("h:", "e:")):
                    featurizer = text.featurizer
                    spans[column] = theme_spans(value, featurizer.encoder, featurizer.theme_vectors)
        explanation, waterfall, explain_error = None, None, ""
        try:
            _, explanation, probability = self.service.explain(record.application_id)
            waterfall = charts.waterfall(
                explanation.base_value,
                [(r.description, r.contribution) for r in explanation.reasons],
                probability=probability,
            )
        except FraudscoreError as exc:
            explain_error = str(exc)
        return {
            "fields": views.application_rows(application),
            "texts": views.text_blocks(application, spans, record.features),
            "unreadable": unreadable,
            "explanation": explanation,
            "waterfall": waterfall,
            "explain_error": explain_error,
            "outcome": self.audit.outcome_of(record.application_id),
            "history": self.log.recent(20, target=record.application_id),
            "theme_labels": views.THEME_LABELS,
        }

    async def outcome(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        application_id = request.match_info["application_id"]
        form = await request.post()
        outcome, fraud_type = str(form.get("outcome", "")), str(form.get("fraud_type", ""))
        note = str(form.get("note", "")).strip()
        if outcome not in OUTCOMES:
            raise web.HTTPBadRequest(text=f"outcome: expected one of {', '.join(OUTCOMES)}")
        if outcome != "CONFIRMED_FRAUD":
            fraud_type = ""
        elif fraud_type and fraud_type not in views.FRAUD_TYPES:
            raise web.HTTPBadRequest(text=f"fraud_type: expected one of {', '.join(views.FRAUD_TYPES)}")
        if len(note) > MAX_NOTE:
            raise web.HTTPBadRequest(text=f"note: at most {MAX_NOTE} characters")
        try:
            await asyncio.to_thread(
                self.service.report_outcome,
                application_id,
                outcome,  # type: ignore[arg-type]
                fraud_type=fraud_type,
                reviewer=session.officer.name,
                note=note,
            )
        except FraudscoreError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        # The note is free text and may quote the applicant: it is in the audit store, not here.
        await self._record(
            session.officer,
            "record_outcome",
            application_id,
            outcome=outcome,
            fraud_type=fraud_type,
            with_note=bool(note),
        )
        raise web.HTTPSeeOther(f"/case/{application_id}?recorded=1")

    async def model_page(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        model = self.service.model
        counts = await asyncio.to_thread(self.audit.score_counts)
        gain = model.booster.feature_importance(importance_type="gain")
        importance = list(zip(model.booster.feature_name(), (float(g) for g in gain), strict=True))
        await self._record(session.officer, "view_model", model.version)
        return self._page(
            "model.html",
            session,
            model=model,
            metrics=model.metrics,
            thresholds=model.policy.by_product,
            histogram=charts.histogram(counts),
            decided=sum(counts.values()),
            importance=charts.ranking(importance),
            encoder=self.service.text.info if self.service.text else None,
        )

    async def actions(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session.officer.role != "admin":
            raise web.HTTPForbidden(text="the officer log is for admins")
        rows = await asyncio.to_thread(self.log.recent, 200)
        check = await asyncio.to_thread(self.log.verify)
        await self._record(session.officer, "view_actions")
        return self._page("actions.html", session, rows=rows, check=check)


def _value(value: Any) -> str:
    """A feature value as an officer reads it: 4 significant digits, "missing" for none."""
    if value is None:
        return "missing"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def _secure(headers: Any) -> None:
    for key, value in _HEADERS.items():
        headers.setdefault(key, value)


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "-"


def _safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme, no host, no '//' (an open redirect otherwise)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/queue"
