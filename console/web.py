"""What every page shares: the signed-in session, CSRF checks, security headers, hub errors."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from alpr.v1 import admin_pb2, alert_pb2, hotlist_pb2, reads_pb2, search_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alpr_common.location_quality import age_text, describe_position
from console.hubclient import HubClient, HubFailure, Metadata, failure
from console.images import RecentImages
from console.sessions import COOKIE, Session, Sessions
from console.settings import ConsoleSettings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# Only our own scripts, styles and images (a hit's images are console URLs). No framing,
# no plugins, forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]

# Which pages each role sees in the navigation. Display only: the hub decides what a token
# may do, and refuses the rest (shown as 403).
NAV: list[tuple[str, str, frozenset[str]]] = [
    ("/queue", "Hits", frozenset({"officer", "dispatcher", "supervisor", "investigator"})),
    ("/search", "Search", frozenset({"officer", "dispatcher", "supervisor", "investigator"})),
    ("/hotlists", "Hot lists", frozenset({"officer", "dispatcher", "supervisor", "investigator", "admin"})),
    ("/fleet", "Fleet", frozenset({"fleet_operator", "supervisor", "admin"})),
    ("/audit", "Audit", frozenset({"auditor", "admin"})),
    ("/deadletters", "Dead letters", frozenset({"supervisor", "admin"})),
]


class SecurityHeaders:
    """Adds the headers above to every response; pages and images are never cached."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if self.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


class Console:
    """The console's state: settings, sessions, the hub connection, the templates."""

    def __init__(self, settings: ConsoleSettings, hub: HubClient | None = None) -> None:
        self.settings = settings
        self.sessions = Sessions(max_s=settings.session_max_s, idle_s=settings.session_idle_s)
        self.images = RecentImages()
        # The plate crops of the last search results, for the results table (a search is audited
        # once; looking at its crops a few minutes later must not need a second search).
        self.search_crops = RecentImages(hold_s=600.0, max_hits=2000)
        self._ending: set[asyncio.Task[None]] = set()
        # gRPC's asyncio channel belongs to the server's event loop: made at start-up (lifespan).
        self._hub = hub
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            enable_async=False,
        )
        self.templates.filters.update(ts=fmt_time, enum=fmt_enum, pct=fmt_pct, where=hit_position, stale_position=stale_position,
                                      **ENUM_FILTERS)  # fmt: skip
        self.templates.globals.update(nav=NAV)

    @property
    def hub(self) -> HubClient:
        if self._hub is None:
            self._hub = HubClient(self.settings.hub, self.settings.hub_tls)
        return self._hub

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
            self._hub = None

    def session(self, request: Request) -> Session | None:
        s = self.sessions.get(request.cookies.get(COOKIE))
        for gone in self.sessions.ended():
            task = asyncio.get_running_loop().create_task(self.end(gone))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)
        return s

    async def end(self, s: Session | None) -> None:
        """A session is over: its images go, and a password sign-in's token is ended at the hub."""
        if s is None:
            return
        self.images.forget(s.sid)
        self.search_crops.forget(s.sid)
        if s.hub_session:
            try:
                await self.hub.admin.EndSession(
                    admin_pb2.EndSessionRequest(), metadata=self.md(s), timeout=self.settings.rpc_timeout_s
                )
            except grpc.aio.AioRpcError as e:  # it expires at the hub anyway (the session's maximum)
                log.info("hub session of %s not ended: %s %s", s.user_id, e.code().name, e.details())

    def md(self, s: Session) -> Metadata:
        return HubClient.metadata(s.token)

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        s: Session | None = request.scope.get("console_session")
        html = self.templates.get_template(name).render(request=request, session=s, **ctx)
        return HTMLResponse(html, status_code=status)

    def hub_error(self, request: Request, e: grpc.aio.AioRpcError) -> Response:
        f = failure(e, self.settings.hub)
        s: Session | None = request.scope.get("console_session")
        if f.http_status == 401 and s is not None:
            # The hub no longer takes this token (revoked): the session ends with it.
            self.sessions.drop_user(s.user_id)
            return signin_redirect(request, f.message)
        return self.error(request, f)

    def error(self, request: Request, f: HubFailure) -> Response:
        return self.render(request, "error.html", status=f.http_status, failure=f)

    def forbidden(self, request: Request, what: str) -> Response:
        s: Session | None = request.scope.get("console_session")
        role = s.role if s else "?"
        return self.error(request, HubFailure(403, "PERMISSION_DENIED", f"role {role!r} may not {what}"))


def signin_redirect(request: Request, why: str = "") -> Response:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = f"/signin?next={quote(nxt, safe='')}" + (f"&why={quote(why, safe='')}" if why else "")
    resp = RedirectResponse(target, status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


Handler = Callable[[Request, Session], Awaitable[Response]]


def page(console_of: Callable[[Request], Console], roles: Iterable[str] | None = None) -> Callable[[Handler], Any]:
    """A page for signed-in people: sign-in redirect, CSRF on every POST, hub errors shown.

    ``roles`` is the console's own gate for pages that make no hub call (forms); pages that
    call the hub are gated by the hub, whose refusal comes back as 403.
    """
    allowed = frozenset(roles) if roles is not None else None

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            c = console_of(request)
            s = c.session(request)
            if s is None:
                if request.method != "GET":
                    return Response("signed out: sign in again", status_code=401, media_type="text/plain")
                return signin_redirect(
                    request, "your session has ended: sign in again" if COOKIE in request.cookies else ""
                )
            request.scope["console_session"] = s
            if request.method == "POST":
                form = await request.form()
                sent = form.get("csrf")
                if not isinstance(sent, str) or not s.csrf_ok(sent) or not same_origin(request):
                    log.warning("CSRF check failed for %s %s (user %s)", request.method, request.url.path, s.user_id)
                    return c.error(
                        request, HubFailure(403, "CSRF", "this form is stale or did not come from the console: reload the page and try again")
                    )  # fmt: skip
            if allowed is not None and s.role not in allowed:
                return c.forbidden(request, f"open {request.url.path}")
            try:
                return await fn(request, s)
            except grpc.aio.AioRpcError as e:
                return c.hub_error(request, e)

        return endpoint

    return wrap


def same_origin(request: Request) -> bool:
    """A browser's Origin, when it sends one, must be this console."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def new_token() -> str:
    return secrets.token_urlsafe(32)


def fmt_time(t: Timestamp | datetime | None, with_date: bool = True) -> str:
    if t is None:
        return ""
    if isinstance(t, Timestamp):
        if not t.seconds and not t.nanos:
            return "—"
        t = t.ToDatetime(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ" if with_date else "%H:%M:%SZ")


def fmt_enum(value: str) -> str:
    """``HOT_LIST_CATEGORY_STOLEN_VEHICLE`` → ``stolen vehicle`` (after the prefix given)."""
    for prefix in ("HOT_LIST_CATEGORY_", "HOT_LIST_SOURCE_", "MATCH_KIND_", "ALERT_STATUS_", "NODE_KIND_",
                   "ENFORCEMENT_ACTION_", "LEADS_CHECK_", "REJECT_REASON_", "ROLE_"):  # fmt: skip
        value = value.removeprefix(prefix)
    return value.lower().replace("_", " ")


def hit_position(h: search_pb2.SearchHit) -> str:
    return describe_position(h.latitude, h.longitude, h.location_quality, h.location_age_s)


def stale_position(a: alert_pb2.Alert) -> str:
    """The warning beside a hit's map link when the unit had no current fix."""
    if a.location_quality != reads_pb2.LOCATION_QUALITY_STALE:
        return ""
    return f"no current fix: last known position, {age_text(a.location_age_s)} old"


def fmt_pct(x: float) -> str:
    return f"{round(x * 100):d}%"


def _enum_filter(enum: Any) -> Callable[[int], str]:
    def name(value: int) -> str:
        try:
            return fmt_enum(enum.Name(value))
        except ValueError:
            return str(value)

    return name


# ``{{ m.kind | kind_name }}`` → "lookalike", and so on for every enum a page shows.
ENUM_FILTERS = {
    "kind_name": _enum_filter(alert_pb2.MatchKind),
    "status_name": _enum_filter(alert_pb2.AlertStatus),
    "leads_name": _enum_filter(alert_pb2.LeadsCheck),
    "action_name": _enum_filter(alert_pb2.EnforcementAction),
    "reason_name": _enum_filter(alert_pb2.RejectReason),
    "category_name": _enum_filter(hotlist_pb2.HotListCategory),
    "source_name": _enum_filter(hotlist_pb2.HotListSource),
    "node_kind_name": _enum_filter(reads_pb2.NodeKind),
    "role_name": _enum_filter(admin_pb2.Role),
}
