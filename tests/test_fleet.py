"""FleetService (policy 4.1, 4.8): each node's latest heartbeat through the hub's API, its
filters, paging and roles; ``alpr nodes status``; the CLI's retries of read-only calls."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    fleet_config_pb2,
    fleet_config_pb2_grpc,
    fleet_models_pb2,
    fleet_models_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    ingest_pb2,
    reads_pb2,
)
from cassandra.cluster import Session

from alpr_common.operator.common import READ_ONLY_METHODS
from alpr_common.operator_cli import main as alpr_cli
from alpr_common.timestamps import from_timestamp, to_timestamp
from hub.auth import METHOD_ROLES
from tests.access_support import AuthHub, call, rpc_code
from tests.support import HubThread, run_stream


def heartbeat(node: str, **kw: Any) -> ingest_pb2.IngestRequest:
    base: dict[str, Any] = dict(
        node_id=node, node_kind=reads_pb2.NODE_KIND_MOBILE, sent_time=to_timestamp(datetime.now(UTC)),
        detector_ok=True, disk_free_bytes=10 * 2**30, queue_depth=3, queue_oldest_age_s=12.5, hotlist_version=42,
        hotlist_synced_time=to_timestamp(datetime.now(UTC) - timedelta(minutes=5)), software_version="0.1.0",
        cameras=[ingest_pb2.CameraStatus(camera_id=f"{node}-cam", frames_received=100, ok=True)],
    )  # fmt: skip
    base.update(kw)
    return ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(**base))


def send(target: str, *reqs: ingest_pb2.IngestRequest) -> None:
    res = run_stream(target, list(reqs))
    assert len(res.heartbeat_acks) == len(reqs), res


def list_all(stub: fleet_pb2_grpc.FleetServiceStub, prefix: str, **kw: Any) -> list[fleet_pb2.NodeStatus]:
    """Every page; only this test's nodes (the session keyspace is shared)."""
    out: list[fleet_pb2.NodeStatus] = []
    token = ""
    while True:
        resp = stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(page_token=token, **kw), timeout=30)
        out.extend(resp.nodes)
        token = resp.next_page_token
        if not token:
            return [n for n in out if n.node_id.startswith(prefix)]


@pytest.fixture(scope="module")
def fleet(session_hub: HubThread) -> str:
    """Three nodes: one healthy, one with self-check problems, one with a camera down."""
    p = f"fleet-{uuid.uuid4().hex[:6]}-"
    send(
        session_hub.target,
        heartbeat(p + "a"),
        heartbeat(p + "b", problems=["clock off by +42.0 s against the hub: check NTP/GPS time"], detector_ok=False),
        heartbeat(p + "c", cameras=[ingest_pb2.CameraStatus(camera_id="c-rear", ok=False, problem="no frames")],
                  node_kind=reads_pb2.NODE_KIND_FIXED, sent_time=to_timestamp(datetime.now(UTC) + timedelta(seconds=30))),
    )  # fmt: skip
    return p


def test_list_nodes_returns_what_the_latest_heartbeat_said(session_hub: HubThread, fleet: str) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(session_hub.target))
    nodes = list_all(stub, fleet)
    assert [n.node_id for n in nodes] == [fleet + "a", fleet + "b", fleet + "c"]
    a, b, c = nodes
    assert a.node_kind == reads_pb2.NODE_KIND_MOBILE and c.node_kind == reads_pb2.NODE_KIND_FIXED
    assert a.hub_id == session_hub.config.hub_id and a.software_version == "0.1.0"
    assert a.hotlist_version == 42 and a.queue_depth == 3 and a.queue_oldest_age_s == 12.5
    assert a.disk_free_bytes == 10 * 2**30 and a.detector_ok and not a.problems
    assert [(x.camera_id, x.frames_received, x.ok) for x in a.cameras] == [(fleet + "a-cam", 100, True)]
    age = datetime.now(UTC) - from_timestamp(a.last_heartbeat_time)
    assert timedelta(0) <= age < timedelta(minutes=5)
    assert timedelta(minutes=4) < from_timestamp(a.last_heartbeat_time) - from_timestamp(a.hotlist_synced_time)
    assert a.HasField("clock_skew_s") and abs(a.clock_skew_s) < 10
    assert 20 < c.clock_skew_s < 40  # its clock runs 30 s ahead of the hub's
    assert b.problems == ["clock off by +42.0 s against the hub: check NTP/GPS time"] and not b.detector_ok
    assert [(x.camera_id, x.ok, x.problem) for x in c.cameras] == [("c-rear", False, "no frames")]


def test_filters_and_paging(session_hub: HubThread, fleet: str) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(session_hub.target))
    assert [n.node_id for n in list_all(stub, fleet, problems_only=True)] == [fleet + "b", fleet + "c"]
    one = stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(node_id=fleet + "b"), timeout=30)
    assert [n.node_id for n in one.nodes] == [fleet + "b"] and not one.next_page_token
    none = stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(node_id=fleet + "zzz"), timeout=30)
    assert list(none.nodes) == []
    pages: list[str] = []
    token = ""
    while True:
        resp = stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(page_size=1, page_token=token), timeout=30)
        assert len(resp.nodes) <= 1
        pages.extend(n.node_id for n in resp.nodes)
        token = resp.next_page_token
        if not token:
            break
    assert [n for n in pages if n.startswith(fleet)] == [fleet + "a", fleet + "b", fleet + "c"]
    assert pages == sorted(pages) and len(pages) == len(set(pages))
    for bad in (fleet_pb2.FleetServiceListNodesRequest(page_size=1001),
                fleet_pb2.FleetServiceListNodesRequest(page_size=-1),
                fleet_pb2.FleetServiceListNodesRequest(page_token="not base64!")):  # fmt: skip
        code, details = rpc_code(functools.partial(stub.ListNodes, bad, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details


def test_a_newer_heartbeat_replaces_the_status(session_hub: HubThread, fleet: str) -> None:
    send(session_hub.target, heartbeat(fleet + "b"))
    stub = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(session_hub.target))
    (b,) = list_all(stub, fleet, node_id=fleet + "b")
    assert b.detector_ok and not b.problems
    assert fleet + "b" not in [n.node_id for n in list_all(stub, fleet, problems_only=True)]


def test_alpr_nodes_status(session_hub: HubThread, fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    hub = ["--hub", session_hub.target]
    assert alpr_cli([*hub, "nodes", "status", "--json"]) == 0
    docs = [d for d in json.loads(capsys.readouterr().out) if d["node_id"].startswith(fleet)]
    assert [d["node_id"] for d in docs] == [fleet + "a", fleet + "b", fleet + "c"]
    assert docs[2]["cameras"][0]["problem"] == "no frames" and docs[0]["hotlist_version"] == "42"
    assert alpr_cli([*hub, "nodes", "status", "--node", fleet + "c"]) == 0
    text = capsys.readouterr().out
    assert f"{fleet}c (fixed, 0.1.0)" in text and "c-rear DOWN: no frames" in text and "hot list v42" in text
    assert alpr_cli([*hub, "nodes", "status", "--node", fleet + "nobody"]) == 1
    assert "no heartbeat from node" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ahub(cassandra: tuple[list[str], int], cql: Session) -> Iterator[AuthHub]:
    h = AuthHub(cassandra, cql)
    yield h
    h.stop()


def test_who_may_see_the_fleet(ahub: AuthHub) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(ahub.channel)
    req = fleet_pb2.FleetServiceListNodesRequest()
    for role in ("fleet_operator", "supervisor", "admin"):
        call(stub.ListNodes, req, ahub.token(f"{role}-1", role))
    for role in ("officer", "dispatcher", "investigator", "auditor"):
        code, details = rpc_code(functools.partial(call, stub.ListNodes, req, ahub.token(f"{role}-1", role)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "fleet_operator" in details
    assert rpc_code(lambda: call(stub.ListNodes, req))[0] == grpc.StatusCode.UNAUTHENTICATED
    me = call(admin_pb2_grpc.AdminServiceStub(ahub.channel).WhoAmI, admin_pb2.WhoAmIRequest(),
              ahub.token("ops-1", "fleet_operator"))  # fmt: skip
    assert me.user.role == admin_pb2.ROLE_FLEET_OPERATOR


def test_cli_retry_policy_names_only_read_only_methods() -> None:
    for service, methods in READ_ONLY_METHODS.items():
        for m in methods:
            assert f"/{service}/{m}" in METHOD_ROLES, f"{service}/{m} is not an RPC of the hub"
            assert m.startswith(("Get", "List", "Search", "Verify", "WhoAmI")), f"{m} may change something"


class FlakyAdmin(admin_pb2_grpc.AdminServiceServicer):
    """Answers UNAVAILABLE to the first ``failures`` calls of each method, like a restarting hub."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def _count(self, method: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            n = self.calls[method] = self.calls.get(method, 0) + 1
        if n <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "hub restarting")

    def WhoAmI(self, request: admin_pb2.WhoAmIRequest, context: grpc.ServicerContext) -> admin_pb2.WhoAmIResponse:
        self._count("WhoAmI", context)
        return admin_pb2.WhoAmIResponse(user=admin_pb2.User(user_id="ops-1", role=admin_pb2.ROLE_ADMIN))

    def RevokeUser(
        self, request: admin_pb2.RevokeUserRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RevokeUserResponse:
        self._count("RevokeUser", context)
        return admin_pb2.RevokeUserResponse(user=admin_pb2.User(user_id=request.user_id, revoked=True))


def test_cli_retries_read_only_calls_but_never_changes(capsys: pytest.CaptureFixture[str]) -> None:
    servicer = FlakyAdmin(failures=2)  # type: ignore[abstract]  # two methods are all this test calls
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        hub = ["--hub", f"127.0.0.1:{port}"]
        assert alpr_cli([*hub, "users", "whoami"]) == 0
        assert "ops-1" in capsys.readouterr().out
        assert servicer.calls["WhoAmI"] == 3  # two UNAVAILABLE answers retried by gRPC
        assert alpr_cli([*hub, "users", "revoke", "someone"]) == 1
        assert "UNAVAILABLE" in capsys.readouterr().err
        assert servicer.calls["RevokeUser"] == 1  # a change is never repeated
    finally:
        server.stop(None)


def test_who_may_change_the_fleet_and_that_each_change_names_its_author(ahub: AuthHub) -> None:
    """Configuration and model rollouts: fleet operators and admins change them, as themselves;
    every other role is refused with the roles that may, and a change is audited under its author."""
    cfg = fleet_config_pb2_grpc.FleetConfigServiceStub(ahub.channel)
    models = fleet_models_pb2_grpc.ModelReleaseServiceStub(ahub.channel)
    group = f"district-{uuid.uuid4().hex[:6]}"
    scope = fleet_config_pb2.OverlayScope(kind=fleet_config_pb2.OVERLAY_SCOPE_KIND_GROUP, name=group)
    change = fleet_config_pb2.SetOverlayRequest(
        scope=scope, settings_json='{"plate_formats": {"min_confidence": 0.5}}', reason="night glare on district poles"
    )
    changes: list[tuple[Any, Any]] = [
        (cfg.SetOverlay, change),
        (
            models.Rollout,
            fleet_models_pb2.RolloutRequest(
                release_id="r1", stage=fleet_models_pb2.ROLLOUT_STAGE_ALL, reason="new OCR"
            ),
        ),
        (models.PauseRollout, fleet_models_pb2.PauseRolloutRequest(reason="complaints")),
        (models.Rollback, fleet_models_pb2.RollbackRequest(reason="complaints")),
    ]
    for role in ("officer", "dispatcher", "investigator", "auditor", "supervisor"):
        token = ahub.token(f"{role}-fl", role)
        for method, req in changes:
            code, details = rpc_code(functools.partial(call, method, req, token))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "fleet_operator" in details, (role, code, details)
    for method, req in changes:
        assert rpc_code(functools.partial(call, method, req))[0] == grpc.StatusCode.UNAUTHENTICATED
    ops = ahub.token("ops-fl", "fleet_operator")
    code, details = rpc_code(
        functools.partial(
            call,
            cfg.SetOverlay,
            fleet_config_pb2.SetOverlayRequest(scope=scope, settings_json="{}", reason="x", changed_by="someone-else"),
            ops,
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "someone-else" in details, details
    version = call(cfg.SetOverlay, change, ops).version
    history = call(cfg.ListHistory, fleet_config_pb2.ListHistoryRequest(scope=scope), ops).versions
    assert [(v.version, v.changed_by) for v in history] == [(version, "ops-fl")]
    auditor = ahub.token("aud-fl", "auditor")
    entries = call(
        audit_pb2_grpc.AuditServiceStub(ahub.channel).ListAudit, audit_pb2.ListAuditRequest(limit=1000), auditor
    ).entries
    mine = [e for e in entries if e.actor == "ops-fl" and group in e.details_json]
    assert mine and all(e.outcome == "ok" for e in mine), [(e.action, e.outcome) for e in mine]
