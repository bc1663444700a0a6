"""Helpers for the dispatch-bridge tests: two agency hubs, real webhook receivers, a bridge
running in-process (or as a process to be killed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from alpr.v1 import agency_pb2_grpc, alert_pb2, alert_pb2_grpc, hotlist_pb2
from prometheus_client import CollectorRegistry

from alpr_common.simulation import make_read, noise_jpeg
from alpr_common.timestamps import timestamp_in
from dispatch_bridge.bridge import Bridge
from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.sinks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature
from hub.alerts import alert_id_for
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import FAST, hotlist_stub
from tests.support import ROOT, HubThread, read_request, run_stream

SECRET = "test-webhook-secret"
STOLEN = hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE
HOT_PLATE = "BRG1234"


class Hubs:
    """Agency A (Joliet, IL: the bridge's hub) and agency B (another hub, its own keyspace)."""

    def __init__(self, a: HubThread, b: HubThread) -> None:
        self.a, self.b = a, b

    def agency_a(self) -> agency_pb2_grpc.AgencyExchangeServiceStub:
        return agency_pb2_grpc.AgencyExchangeServiceStub(grpc.insecure_channel(self.a.target))

    def agency_b(self) -> agency_pb2_grpc.AgencyExchangeServiceStub:
        return agency_pb2_grpc.AgencyExchangeServiceStub(grpc.insecure_channel(self.b.target))

    def alerts_a(self) -> alert_pb2_grpc.AlertServiceStub:
        return alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(self.a.target))


_HUBS: list[Hubs] = []


@pytest.fixture(scope="session")
def agency_hubs(request: pytest.FixtureRequest, cassandra: tuple[list[str], int], cql: Any) -> Hubs:
    """Two agency hubs for the whole session, shared by every bridge test module (each module
    registers this fixture under the same name; the hubs are started once)."""
    if _HUBS:
        return _HUBS[0]
    fast: dict[str, Any] = {k: v for k, v in FAST.items() if k != "cassandra"}
    fast["alerts"] = {**fast["alerts"], "unattended_after_s": 300.0}

    def config(ks: str, hub_id: str, agency: str) -> Any:
        cfg = make_hub_config(cassandra, ks, hub_id=hub_id, agencies={"agency_id": agency}, **fast)
        # Schema changes are slow on a loaded 2-core box: be patient, not flaky.
        cfg.cassandra.request_timeout_s = max(cfg.cassandra.request_timeout_s, 60.0)
        cfg.cassandra.connect_timeout_s = max(cfg.cassandra.connect_timeout_s, 30.0)
        return cfg

    a = HubThread(config(fresh_keyspace("bra"), "hub-joliet", "joliet-pd")).start()
    b = HubThread(config(fresh_keyspace("brb"), "hub-will", "will-county-so")).start()
    hotlist_stub(a.target).AddEntry(
        hotlist_pb2.AddEntryRequest(
            expire_time=timestamp_in(timedelta(days=30)),
            plate=HOT_PLATE,
            state="IL",
            category=STOLEN,
            reason="test",
            entered_by="o-1",
        )
    )
    _HUBS.append(Hubs(a, b))

    def stop() -> None:
        a.stop(1)
        b.stop(1)
        _HUBS.clear()
        # Test keyspaces left behind add up to thousands of tables on the shared test Cassandra.
        for hub in (a, b):
            with contextlib.suppress(Exception):
                cql.execute(f"DROP KEYSPACE IF EXISTS {hub.config.cassandra.keyspace}", timeout=120)

    request.addfinalizer(stop)
    return _HUBS[0]


def raise_alert(target: str, camera: str, crop: bytes | None = None) -> tuple[str, Any]:
    """Ingest a read of the hot plate; returns (alert id, read)."""
    read = make_read(plate=HOT_PLATE, camera_id=camera, crop_jpeg=crop or noise_jpeg(96, 32, seed=7))
    res = run_stream(target, [read_request(read)])
    assert read.read_id in res.acks, res
    return str(alert_id_for(read.read_id)), read


def accept(hubs: Hubs, alert_id: str, action: Any, **kw: Any) -> alert_pb2.DecideAlertResponse:
    acc = alert_pb2.Acceptance(
        characters_verified=True, state_verified=True, leads_check=alert_pb2.LEADS_CHECK_DONE, action=action, **kw
    )
    return hubs.alerts_a().DecideAlert(alert_pb2.DecideAlertRequest(alert_id=alert_id, officer_id="o-7", accept=acc))


class WebhookReceiver:
    """A real CAD webhook on a loopback port: verifies the HMAC, de-duplicates by idempotency key."""

    def __init__(self, secret: str = SECRET, port: int = 0) -> None:
        self.secret = secret.encode()
        self.lock = threading.Lock()
        self.deliveries: list[tuple[str, dict[str, Any]]] = []  # every request, duplicates included
        self.by_key: dict[str, dict[str, Any]] = {}  # what the CAD acts on: once per key
        self.bad_signatures = 0
        self.status_for: Callable[[dict[str, Any]], int] = lambda doc: 200
        self.hold: threading.Event | None = None  # when set: requests wait for it
        self.arrived = threading.Event()
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not verify_signature(recv.secret, self.headers.get(SIGNATURE_HEADER, ""), body):
                    with recv.lock:
                        recv.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                key = self.headers.get(IDEMPOTENCY_HEADER, "")
                doc = json.loads(body)
                with recv.lock:
                    recv.deliveries.append((key, doc))
                recv.arrived.set()
                if recv.hold is not None:
                    recv.hold.wait(30)
                status = recv.status_for(doc)
                if status == 200:
                    with recv.lock:
                        recv.by_key.setdefault(key, doc)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"{}")

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cad"

    def for_alert(self, alert_id: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: d for k, d in self.by_key.items() if d.get("alert_id") == alert_id}

    def wait_key(self, key: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if key in self.by_key:
                    return self.by_key[key]
            time.sleep(0.02)
        raise AssertionError(f"webhook did not receive {key} in {timeout} s; got {list(self.by_key)}")


def bridge_config(cassandra: tuple[list[str], int], hubs: Hubs, bridge_id: str, **overrides: Any) -> dict[str, Any]:
    points, port = cassandra
    data: dict[str, Any] = {
        "insecure_dev": True,  # the test hubs are plain-text development hubs
        "bridge_id": bridge_id,
        "agency_id": "joliet-pd",
        "hubs": [hubs.a.target],
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "shutdown_grace_s": 2,
        "cassandra": {
            "contact_points": points,
            "port": port,
            "keyspace": hubs.a.config.cassandra.keyspace,
            "write_consistency": "ONE",
            "read_consistency": "ONE",
        },
        "relay": {"pending_scan_interval_s": 0.5, "reconcile_window_s": 0},
        "delivery": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0, "rescan_interval_s": 1.0, "max_attempts": 1000},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return data


def webhook_sink(url: str, name: str = "cad") -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "url": url, "secret": SECRET, "timeout_s": 3}


class BridgeThread:
    """The bridge on its own event loop in a thread (same code as ``alpr-bridge``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.config = BridgeConfig.model_validate(data)
        self.registry = CollectorRegistry()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.bridge: Bridge | None = None

    def start(self) -> BridgeThread:
        self._thread.start()
        self.bridge = asyncio.run_coroutine_threadsafe(Bridge(self.config, self.registry).start(), self.loop).result(60)
        self.wait_connected()
        return self

    def wait_connected(self, timeout: float = 15) -> None:
        assert self.bridge is not None and self.bridge.follower is not None
        fut = asyncio.run_coroutine_threadsafe(self.bridge.follower.connected.wait(), self.loop)
        fut.result(timeout)

    def stop(self) -> None:
        if self.bridge is not None:
            asyncio.run_coroutine_threadsafe(self.bridge.stop(), self.loop).result(30)
            self.bridge = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v


class BridgeProcess:
    """``alpr-bridge`` as a real process (to SIGKILL it)."""

    def __init__(self, data: dict[str, Any], run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "bridge.yaml"
        self.path.write_text(yaml.safe_dump(data))
        self.log = run_dir / "bridge.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dispatch_bridge.cli", "--config", str(self.path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 60
        while "following the alert stream" not in self.log.read_text() or "running" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(0.3)  # the Watch stream opens right after
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def wait_for(cond: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
