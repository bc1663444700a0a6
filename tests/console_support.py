"""Helpers for the console tests: a real console (uvicorn) on a loopback port in front of a
real, auth-enabled hub, and a plain HTTP client that signs in like a browser."""

from __future__ import annotations

import asyncio
import html
import re
import threading
import time
from typing import Any

import httpx
import uvicorn
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc

from console.app import create_app
from console.settings import ConsoleSettings
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
    return ConsoleSettings(hub=hub.thread.target, unattended_after_s=2.0, **kw)


def secured_hub(cassandra: Any, cql: Any) -> AuthHub:
    return AuthHub(cassandra, cql, auth={"enabled": True}, **FAST)


def add_entry(
    hub: AuthHub, token: str, plate: str, category: hotlist_pb2.HotListCategory.ValueType = STOLEN, priority: int = 0
) -> int:
    stub = hotlist_pb2_grpc.HotListServiceStub(hub.channel)
    req = hotlist_pb2.AddEntryRequest(
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

    def sign_in(self, token: str) -> httpx.Response:
        form = self.http.get("/signin")
        r = self.http.post("/signin", data={"csrf": csrf_of(form.text), "token": token, "next": "/"})
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
