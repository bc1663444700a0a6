"""Helpers for the console tests: a real console (uvicorn) on a loopback port in front of a
real, auth-enabled hub, and a plain HTTP client that signs in like a browser."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    alert_pb2,
    alert_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    hotlist_pb2,
    hotlist_pb2_grpc,
)

from alpr_common.simulation import make_read, noise_jpeg
from alpr_common.timestamps import timestamp_in
from console.app import create_app
from console.settings import ConsoleSettings
from hub.alerts import alert_id_for
from tests.access_support import AuthHub, call
from tests.hotlist_support import FAST

STOLEN = hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE


class ConsoleServer:
    """``alpr-console``'s app under uvicorn in a thread, on a port the OS picks."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ConsoleServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "console did not start"
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)


def settings_for(hub: AuthHub, **kw: Any) -> ConsoleSettings:
    return ConsoleSettings(hub=hub.thread.target, **kw)


def secured_hub(cassandra: Any, cql: Any) -> AuthHub:
    return AuthHub(cassandra, cql, auth={"enabled": True}, **FAST)


def add_entry(
    hub: AuthHub, token: str, plate: str, category: hotlist_pb2.HotListCategory.ValueType = STOLEN, priority: int = 0
) -> int:
    stub = hotlist_pb2_grpc.HotListServiceStub(hub.channel)
    req = hotlist_pb2.AddEntryRequest(
        expire_time=timestamp_in(timedelta(days=30)),
        plate=plate,
        state="IL",
        category=category,
        reason="stolen 2026-11-30",
        entered_by="root",
        priority=priority,
    )
    return int(call(stub.AddEntry, req, token).version)


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    m = CSRF.search(page)
    assert m, "no CSRF field on the page"
    return html.unescape(m.group(1))


def problem_of(page: str) -> str:
    m = re.search(r'class="problem"[^>]*>(.*?)</p>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


class Browserless:
    """An HTTP client that keeps cookies and signs in through the sign-in form."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
        self.csrf = ""

    def sign_in(self, token: str = "", *, user: str = "", password: str = "") -> httpx.Response:
        form = self.http.get("/signin")
        sent = {"csrf": csrf_of(form.text), "next": "/"}
        sent.update({"token": token} if token else {"user": user, "password": password})
        r = self.http.post("/signin", data=sent)
        if r.status_code == 303:
            self.csrf = csrf_of(self.http.get(r.headers["location"], follow_redirects=True).text)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body["csrf"] = self.csrf
        return self.http.post(path, data=body, **kw)

    def close(self) -> None:
        self.http.close()


def wait_until(fn: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def run_sync(coro: Any) -> Any:
    return asyncio.run(coro)


class Stack:
    """A secured hub with one user per role, a console in front of it, and hits on demand."""

    def __init__(self, hub: AuthHub, console: ConsoleServer) -> None:
        self.hub = hub
        self.console = console
        self.officer = hub.token("ofc-1", "officer")
        self.dispatcher = hub.token("disp-1", "dispatcher")
        self.fleet = hub.token("fleet-1", "fleet_operator")
        self.auditor = hub.token("aud-1", "auditor")
        self.supervisor = hub.token("sup-1", "supervisor")
        self.alerts = alert_pb2_grpc.AlertServiceStub(hub.channel)

    def client(self, token: str | None = None) -> Browserless:
        b = Browserless(self.console.url)
        if token:
            assert b.sign_in(token).status_code == 303
        return b

    def hit(self, plate: str = "ABC1234", camera: str = "cam-1") -> str:
        """Ingest a read that matches the hot list (returns once acked); returns its alert id."""
        read = make_read(plate=plate, camera_id=camera, crop_jpeg=noise_jpeg(120, 40, seed=1),
                         frame_jpeg=noise_jpeg(640, 360, seed=2))  # fmt: skip
        read.frame_width, read.frame_height = 640, 360
        self.hub.ingest([read])
        return str(alert_id_for(read.read_id))

    def set_password(self, user_id: str, password: str) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(self.hub.channel)
        call(stub.SetPassword, admin_pb2.SetPasswordRequest(user_id=user_id, password=password), self.hub.admin)

    def audited(self, actor: str, action: str) -> list[audit_pb2.AuditEntry]:
        stub = audit_pb2_grpc.AuditServiceStub(self.hub.channel)
        entries = call(stub.ListAudit, audit_pb2.ListAuditRequest(action=action, limit=1000), self.auditor).entries
        return [e for e in entries if e.actor == actor]

    def alert(self, alert_id: str) -> alert_pb2.GetAlertResponse:
        got: alert_pb2.GetAlertResponse = call(
            self.alerts.GetAlert, alert_pb2.GetAlertRequest(alert_id=alert_id), self.supervisor
        )
        return got


@contextlib.contextmanager
def console_stack(cassandra: Any, cql: Any) -> Iterator[Stack]:
    hub = secured_hub(cassandra, cql)
    console = ConsoleServer(settings_for(hub)).start()
    try:
        for plate in ("ABC1234", "QRS5678", "XYZ9876"):
            add_entry(hub, hub.admin, plate)
        hub.ingest([make_read(plate="NOHIT12")])  # starts the stand-in node path before any timing
        yield Stack(hub, console)
    finally:
        console.stop()
        hub.stop()
