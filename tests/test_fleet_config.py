"""Central fleet configuration: versioned overlays per group and per unit at the hub, validated
with the node's own model; nodes subscribe, apply in place (or restart their parts), keep the
last good configuration and report the applied version."""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
import yaml
from alpr.v1 import fleet_config_pb2, fleet_config_pb2_grpc, fleet_pb2, fleet_pb2_grpc

from node.config import NodeConfig
from node.fleet_config import ConfigManager
from node.fleet_overlay import apply_overlay
from node.recognition.types import Box, FrameRecognizer, Image, PlateResult
from node.runtime import NodeRuntime
from tests.conftest import make_hub_config
from tests.support import HubThread

GROUP = fleet_config_pb2.OVERLAY_SCOPE_KIND_GROUP
NODE = fleet_config_pb2.OVERLAY_SCOPE_KIND_NODE


def stub(target: str) -> fleet_config_pb2_grpc.FleetConfigServiceStub:
    return fleet_config_pb2_grpc.FleetConfigServiceStub(grpc.insecure_channel(target))


def set_overlay(
    target: str, kind: int, name: str, settings: dict[str, Any], *, replace: bool = False, reason: str = "test",
    **kw: Any,
) -> fleet_config_pb2.SetOverlayResponse:  # fmt: skip
    req = fleet_config_pb2.SetOverlayRequest(
        scope=fleet_config_pb2.OverlayScope(kind=kind, name=name),  # type: ignore[arg-type]
        settings_json=json.dumps(settings), replace=replace, reason=reason, changed_by="ops-1", **kw,
    )  # fmt: skip
    resp: fleet_config_pb2.SetOverlayResponse = stub(target).SetOverlay(req, timeout=60)
    return resp


def get_scope(target: str, kind: int, name: str, at: int = 0) -> tuple[dict[str, Any], int]:
    scope = fleet_config_pb2.OverlayScope(kind=kind, name=name)  # type: ignore[arg-type]
    r = stub(target).GetConfig(fleet_config_pb2.GetConfigRequest(scope=scope, at_version=at), timeout=30)
    return json.loads(r.overlay_json), r.scope_version


def refusal(fn: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details() or ""


def wait(cond: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def uid() -> str:
    return uuid.uuid4().hex[:8]


def test_patch_replace_get_and_history(session_hub: HubThread) -> None:
    t, g = session_hub.target, f"pole-{uid()}"
    v1 = set_overlay(t, GROUP, g, {"tracker": {"min_hits": 3}}, reason="fewer ghost reads").version
    v2 = set_overlay(t, GROUP, g, {"plate_formats": {"min_confidence": 0.5}}).version
    assert v2 > v1
    overlay, scope_version = get_scope(t, GROUP, g)
    assert overlay == {"tracker": {"min_hits": 3}, "plate_formats": {"min_confidence": 0.5}} and scope_version == v2
    assert get_scope(t, GROUP, g, at=v1)[0] == {"tracker": {"min_hits": 3}}
    # null removes a key; replace sets the whole overlay
    set_overlay(t, GROUP, g, {"tracker": None})
    assert get_scope(t, GROUP, g)[0] == {"plate_formats": {"min_confidence": 0.5}}
    set_overlay(t, GROUP, g, {"images": {"frame_quality": 60}}, replace=True)
    assert get_scope(t, GROUP, g)[0] == {"images": {"frame_quality": 60}}
    scope = fleet_config_pb2.OverlayScope(kind=GROUP, name=g)
    hist = stub(t).ListHistory(fleet_config_pb2.ListHistoryRequest(scope=scope), timeout=30)
    assert [h.version for h in hist.versions][-1] == v1 and len(hist.versions) == 4
    first = hist.versions[-1]
    assert first.changed_by == "ops-1" and first.reason == "fewer ghost reads" and first.HasField("changed_time")
    # a unit's effective overlay: its groups in order, then its own
    set_overlay(t, NODE, f"car-{g}", {"tracker": {"min_hits": 5}})
    node = fleet_config_pb2.NodeTarget(node_id=f"car-{g}", groups=[g])
    r = stub(t).GetConfig(fleet_config_pb2.GetConfigRequest(node=node), timeout=30)
    assert json.loads(r.overlay_json) == {"images": {"frame_quality": 60}, "tracker": {"min_hits": 5}}


@pytest.mark.parametrize(
    ("settings", "field", "reason"),
    [
        ({"tracker": {"min_hit": 3}}, "tracker.min_hit", "unknown setting"),
        ({"plate_formats": {"min_confidence": 2}}, "plate_formats.min_confidence", "less than or equal to 1"),
        ({"plate_formats": {"patterns": {"IL": ["[A-Z"]}}}, "plate_formats.patterns", "bad regex"),
        ({"hub": {"targets": ["evil:1"]}}, "hub.targets", "local-only"),
        ({"state_dir": "/tmp"}, "state_dir", "local-only"),
        ({"cameras": {"*": {"source": "rtsp://x"}}}, "cameras.*.source", "not settable centrally"),
        ({"cameras": {"*": {"max_fps": -1}}}, "cameras.*.max_fps", "greater than or equal to 0"),
    ],
)
def test_an_invalid_overlay_is_refused_with_field_and_reason(
    session_hub: HubThread, settings: dict[str, Any], field: str, reason: str
) -> None:
    t, g = session_hub.target, f"bad-{uid()}"
    code, details = refusal(lambda: set_overlay(t, GROUP, g, settings))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert field in details and reason in details, details
    assert get_scope(t, GROUP, g) == ({}, 0)  # nothing committed
    code, details = refusal(lambda: set_overlay(t, GROUP, g, {"tracker": {"min_hits": 2}}, reason=" "))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "reason" in details


def test_two_operators_on_two_hubs_never_lose_a_change(
    session_hub: HubThread, cassandra: tuple[list[str], int], keyspace: str
) -> None:
    """Concurrent patches of one group through two hub replicas: every change is kept, versions are distinct."""
    other = HubThread(make_hub_config(cassandra, keyspace, hub_id="test-hub-2")).start()
    try:
        g = f"district-{uid()}"
        keys = ["crop_quality", "frame_max_width", "frame_quality", "send_frame"]
        values: dict[str, Any] = {"crop_quality": 80, "frame_max_width": 800, "frame_quality": 55, "send_frame": False}
        versions: list[int] = []
        errors: list[BaseException] = []

        def change(i: int, key: str) -> None:
            try:
                target = (session_hub, other)[i % 2].target
                versions.append(set_overlay(target, GROUP, g, {"images": {key: values[key]}}).version)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=change, args=(i, k)) for i, k in enumerate(keys)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors, errors
        assert len(set(versions)) == len(keys)
        wait(lambda: get_scope(session_hub.target, GROUP, g)[0] == {"images": values})
        wait(lambda: get_scope(other.target, GROUP, g)[0] == {"images": values})
        # An edit made from an old copy is refused rather than undoing the others.
        code, details = refusal(
            lambda: set_overlay(session_hub.target, GROUP, g, {"images": {}}, replace=True, expected_scope_version=1)
        )
        assert code == grpc.StatusCode.ABORTED and "changed since" in details
    finally:
        other.stop(1)


def applied(nodes: list[NodeRuntime], version: int) -> bool:
    return all(n.fleet is not None and n.fleet.status() == (version, "") for n in nodes)


class StillRecognizer(FrameRecognizer):
    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        return []

    def versions(self) -> dict[str, str]:
        return {"detector": "none", "ocr": "none", "state_classifier": "none"}


def node_settings(tmp_path: Path, node_id: str, target: str, groups: list[str]) -> dict[str, Any]:
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "0.png"), np.zeros((48, 64, 3), np.uint8))
    return {
        "insecure_dev": True,
        "node_id": node_id,
        "kind": "FIXED",
        "state_dir": str(tmp_path / node_id),
        "location": {"latitude": 41.5, "longitude": -88.1},
        "cameras": [{"camera_id": f"{node_id}-cam", "source": str(folder), "loop": True, "max_fps": 2}],
        "hub": {"targets": [target], "backoff_initial_s": 0.05, "backoff_max_s": 0.5, "heartbeat_interval_s": 0.5},
        "hotlist": {"enabled": False},
        "fleet": {"groups": groups, "local_file_check_s": 0.2},
        "metrics_port": -1,
    }


@pytest.fixture
def three_nodes(session_hub: HubThread, tmp_path: Path) -> Iterator[tuple[str, list[NodeRuntime]]]:
    g = f"pole-{uid()}"
    nodes = []
    try:
        for i in range(3):
            cfg = NodeConfig.model_validate(node_settings(tmp_path, f"{g}-n{i}", session_hub.target, [g]))
            nodes.append(NodeRuntime(cfg, recognizer=StillRecognizer()).start())
        yield g, nodes
    finally:
        for n in nodes:
            n.stop(drain_s=0)


def test_a_change_reaches_three_nodes_and_is_applied_within_5_s(
    session_hub: HubThread, three_nodes: tuple[str, list[NodeRuntime]]
) -> None:
    g, nodes = three_nodes
    t = session_hub.target
    wait(lambda: all(n.fleet_sync is not None and n.fleet_sync.connected for n in nodes))  # subscribed
    latencies: list[float] = []
    for i in range(20):
        start = time.monotonic()
        v = set_overlay(
            t, GROUP, g, {"plate_formats": {"min_confidence": round(0.3 + i * 0.01, 2)}, "hub": {"window": 64 + i},
                          "cameras": {"*": {"max_fps": 1 + i}}},
        ).version  # fmt: skip
        wait(functools.partial(applied, nodes, v), 10)
        latencies.append(time.monotonic() - start)
        for n in nodes:  # applied in place, no restart
            assert n.config.plate_formats.min_confidence == round(0.3 + i * 0.01, 2)
            assert n.uplink.settings.window == 64 + i and n.cameras[0].config.max_fps == 1 + i
            assert not n.restart_needed.is_set()
    latencies.sort()
    assert latencies[-1] <= 5.0, latencies
    # the hub sees every node's applied version, and the heartbeats carry it
    wait(lambda: all(session_hub.metric("alpr_hub_node_fleet_config_version", {"node_id": n.config.node_id}) == v
                     for n in nodes))  # fmt: skip
    assert session_hub.metric("alpr_hub_fleet_config_version") >= v
    fleet = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(t))

    def reported() -> bool:
        resp = fleet.ListNodes(fleet_pb2.FleetServiceListNodesRequest(node_id=nodes[0].config.node_id), timeout=30)
        return bool(resp.nodes) and resp.nodes[0].config_version == v and resp.nodes[0].config_lag_versions == 0

    wait(reported)
    # A setting that cannot change in place asks for a clean restart of the node's parts.
    set_overlay(t, NODE, nodes[0].config.node_id, {"queue": {"budget_bytes": 64 * 1024 * 1024}})
    wait(nodes[0].restart_needed.is_set)
    assert nodes[0].restart_config is not None and nodes[0].restart_config.queue.budget_bytes == 64 * 1024 * 1024
    assert not nodes[1].restart_needed.is_set()


def test_a_node_resumes_from_the_version_it_holds(session_hub: HubThread, tmp_path: Path) -> None:
    g = f"patrol-{uid()}"
    t = session_hub.target
    v = set_overlay(t, GROUP, g, {"tracker": {"min_hits": 4}}).version
    cfg = NodeConfig.model_validate(node_settings(tmp_path, f"{g}-car", t, [g]))
    n = NodeRuntime(cfg, recognizer=StillRecognizer()).start()
    try:
        wait(lambda: n.config.tracker.min_hits == 4)
        assert n.fleet is not None and n.fleet.status()[0] >= v
    finally:
        n.stop(drain_s=0)
    v2 = set_overlay(t, GROUP, g, {"tracker": {"min_hits": 6}}).version  # changed while the unit was off
    again = NodeRuntime(cfg, recognizer=StillRecognizer())
    assert again.config.tracker.min_hits == 4  # the last good overlay, before any hub answers
    again.start()
    try:
        wait(lambda: again.config.tracker.min_hits == 6 and again.fleet is not None and again.fleet.status()[0] >= v2)
    finally:
        again.stop(drain_s=0)


def test_a_broken_local_file_keeps_the_last_good_configuration(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    settings = node_settings(tmp_path, "pole-9", "127.0.0.1:1", ["pole"])
    path.write_text(yaml.safe_dump(settings))
    m = ConfigManager.from_file(path)
    assert m.offer(7, {"tracker": {"min_hits": 3}}) == ""
    assert m.current.tracker.min_hits == 3 and m.status() == (7, "")
    # the file breaks (bad YAML, then a bad value): nothing changes, the error is reported
    path.write_text("cameras: [unclosed\n")
    time.sleep(0.01)
    assert not m.check_local_file()
    version, error = m.status()
    assert version == 7 and "local configuration file" in error and m.current.tracker.min_hits == 3
    path.write_text(yaml.safe_dump({**settings, "tracker": {"min_hits": 0}}))
    assert not m.check_local_file() and "tracker.min_hits" in m.status()[1]
    # a restart with the broken file runs on the last good configuration
    again = ConfigManager.from_file(path, str(tmp_path / "pole-9"))
    assert again.current.tracker.min_hits == 3 and again.status()[0] == 7 and "tracker.min_hits" in again.status()[1]
    # fixed: applied again, with the overlay on top
    path.write_text(yaml.safe_dump({**settings, "images": {"frame_quality": 50}}))
    assert m.check_local_file()
    assert m.status() == (7, "") and m.current.images.frame_quality == 50 and m.current.tracker.min_hits == 3


def test_a_new_overlay_the_node_cannot_use_keeps_the_last_good(tmp_path: Path) -> None:
    m = ConfigManager(node_settings(tmp_path, "pole-8", "127.0.0.1:1", []))
    assert m.offer(3, {"tracker": {"min_hits": 2}}) == ""
    err = m.offer(4, {"tracker": {"min_hits": -5}})
    assert "v4 not applied" in err and "tracker.min_hits" in err
    assert m.current.tracker.min_hits == 2 and m.status() == (3, err)
    assert not m.confirm(4)  # the hub's notice does not make the failed version "applied"
    m.applier = lambda cfg: "camera busy"
    assert "camera busy" in m.offer(5, {"tracker": {"min_hits": 3}}) and m.current.tracker.min_hits == 2


def test_local_only_settings_are_never_overwritten() -> None:
    local = {"node_id": "car-1", "hub": {"targets": ["hub:1"], "tls_ca_file": "/etc/ca.pem", "window": 8},
             "state_dir": "/var/lib/alpr", "cameras": [{"camera_id": "c1", "source": "/dev/video0"}]}  # fmt: skip
    hostile = {"node_id": "x", "hub": {"targets": ["evil:1"], "tls_ca_file": "/tmp/ca", "window": 16},
               "state_dir": "/tmp", "cameras": {"*": {"source": "rtsp://evil", "max_fps": 4}}}  # fmt: skip
    out = apply_overlay(local, hostile)
    assert out["node_id"] == "car-1" and out["state_dir"] == "/var/lib/alpr"
    assert out["hub"] == {"targets": ["hub:1"], "tls_ca_file": "/etc/ca.pem", "window": 16}
    assert out["cameras"] == [{"camera_id": "c1", "source": "/dev/video0", "max_fps": 4}]
