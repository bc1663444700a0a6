"""The console's ASGI application: sign-in and sign-out, and every page's routes."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from alpr.v1 import admin_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console import alerts, fleet, hotlists, records
from console.hubclient import HubClient, failure
from console.sessions import COOKIE, PRE_COOKIE
from console.settings import ConsoleSettings
from console.web import HERE, NAV, Console, SecurityHeaders, new_token, page, same_origin

log = logging.getLogger(__name__)


def console_of(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


def _safe_next(nxt: str) -> str:
    """Only a path on this console (no open redirect)."""
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/"


async def signin_form(request: Request, problem: str = "", status: int = 200, user: str = "") -> Response:
    c = console_of(request)
    pre = new_token()
    resp = c.render(
        request,
        "signin.html",
        status=status,
        pre=pre,
        next=_safe_next(request.query_params.get("next", "/")),
        why=request.query_params.get("why", ""),
        problem=problem,
        user=user,
    )
    resp.set_cookie(
        PRE_COOKIE, pre, max_age=3600, httponly=True, samesite="strict", secure=c.settings.https, path="/signin"
    )
    return resp


async def signin(request: Request) -> Response:
    c = console_of(request)
    if request.method == "GET":
        return await signin_form(request)
    form = await request.form()
    pre, sent = request.cookies.get(PRE_COOKIE, ""), str(form.get("csrf", ""))
    if not pre or not hmac.compare_digest(pre.encode(), sent.encode()) or not same_origin(request):
        return await signin_form(request, "this sign-in form is stale: try again", 403)
    token = str(form.get("token", "")).strip()
    user_id, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
    hub_session = False
    if not token:
        if not user_id or not password:
            return await signin_form(request, "enter your user id and password (or your access token)", 400, user_id)
        try:
            got = await c.hub.admin.SignIn(
                admin_pb2.SignInRequest(user_id=user_id, password=password, session_s=int(c.settings.session_max_s)),
                timeout=c.settings.rpc_timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            f = failure(e, c.settings.hub)
            return await signin_form(request, f"the hub refused the sign-in: {f.message}", f.http_status, user_id)
        token, hub_session = got.token, True
    try:
        who = await c.hub.admin.WhoAmI(
            admin_pb2.WhoAmIRequest(), metadata=HubClient.metadata(token), timeout=c.settings.rpc_timeout_s
        )
    except grpc.aio.AioRpcError as e:
        f = failure(e, c.settings.hub)
        return await signin_form(
            request, f"the hub refused the sign-in: {f.message}", 401 if f.http_status == 401 else f.http_status
        )
    u = who.user
    role = admin_pb2.Role.Name(u.role).removeprefix("ROLE_").lower()
    if not u.user_id or role in ("unspecified", "node", "service"):
        return await signin_form(request, "that token is not a person's: sign in with your own token", 403)
    s = c.sessions.create(
        token=token, user_id=u.user_id, role=role, display_name=u.display_name or u.user_id, hub_session=hub_session
    )
    log.info("%s (%s) signed in", u.user_id, role)
    nxt = _safe_next(str(form.get("next", "/")))
    resp = RedirectResponse(nxt if nxt != "/" else home_of(role), status_code=303)
    resp.set_cookie(
        COOKIE, s.sid, max_age=int(c.settings.session_max_s), httponly=True, samesite="strict", secure=c.settings.https, path="/"
    )  # fmt: skip
    resp.delete_cookie(PRE_COOKIE, path="/signin")
    return resp


def home_of(role: str) -> str:
    for path, _, roles in NAV:
        if role in roles:
            return path
    return "/whoami"


@page(console_of)
async def signout(request: Request, s: object) -> Response:
    c = console_of(request)
    await c.end(c.sessions.drop(request.cookies.get(COOKIE)))
    resp = RedirectResponse("/signin?why=signed+out", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


async def home(request: Request) -> Response:
    s = console_of(request).session(request)
    return RedirectResponse(home_of(s.role) if s else "/signin", status_code=303)


@page(console_of)
async def whoami(request: Request, s: object) -> Response:
    return console_of(request).render(request, "whoami.html")


def create_app(settings: ConsoleSettings, hub: HubClient | None = None) -> Starlette:
    console = Console(settings, hub)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.hub  # noqa: B018 - connect on the server's loop
        yield
        await console.close()

    routes = [
        Route("/", home),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/whoami", whoami),
        *alerts.ROUTES,
        *fleet.ROUTES,
        *records.ROUTES,
        *hotlists.ROUTES,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.add_middleware(SecurityHeaders, https=settings.https)
    return app
