"""The fleet as a fleet operator and the help desk live it: where each unit is (heartbeats
carry the position, a mobile unit's last fix kept when the fix is lost), whether it is on
shift, how far behind its hot list is, a dead node still known after a hub restart, and
tickets only for what the help desk should act on."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from alpr.v1 import fleet_pb2, fleet_pb2_grpc, hotlist_pb2, ingest_pb2, reads_pb2

from alpr_common.operator_cli import main as alpr_cli
from alpr_common.timestamps import from_timestamp, timestamp_in, to_timestamp
from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.tickets import problem_kind, problems_of
from node.cli import main as alpr_node
from node.config import NodeConfig
from node.gps import simulate_nmea
from node.runtime import NodeRuntime
from tests.access_support import slow_ok
from tests.conftest import make_hub_config
from tests.hotlist_support import hotlist_stub
from tests.support import HubThread, run_stream
from tests.test_node_longrun import OneRecognizer


def _mobile(tmp_path: Path, node_id: str, nmea: Path) -> NodeConfig:
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((48, 64, 3), 60, np.uint8))
    return NodeConfig.model_validate({
        "insecure_dev": True, "node_id": node_id, "kind": "MOBILE", "state_dir": str(tmp_path / "state"),
        "gps": {"source": f"file:{nmea}", "max_age_s": 10}, "cameras": [{"camera_id": f"{node_id}-f", "source": str(still)}],
        "hub": {"targets": ["127.0.0.1:1"]}, "hotlist": {"enabled": False}, "metrics_port": -1,
    })  # fmt: skip


def test_heartbeat_position_shift_and_lag_through_the_fleet_api(
    cassandra: tuple[list[str], int],
    keyspace: str,
    session_hub: HubThread,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node_id = f"car-{uuid.uuid4().hex[:6]}"
    nmea = tmp_path / "drive.nmea"
    simulate_nmea(nmea, (41.52, -88.08), heading=90, speed_mps=10, seconds=5)
    cfg = _mobile(tmp_path, node_id, nmea)
    assert alpr_node(["shift-end", "--officer", "o-1", "--state-dir", cfg.state_dir]) == 0
    runtime = NodeRuntime(cfg, recognizer=OneRecognizer())
    assert runtime.gps is not None
    runtime.gps.start()
    try:
        deadline = time.monotonic() + 20
        while runtime.gps.last_known() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        hb = runtime.heartbeat()
    finally:
        runtime.gps.stop()
        runtime._resources.close()
    assert hb.HasField("position") and abs(hb.position.latitude - 41.52) < 0.01
    assert hb.shift_state == ingest_pb2.SHIFT_STATE_OFF_SHIFT
    # the fix was lost 10 minutes ago: the heartbeat still says where the car was, and when
    hb.position_time.CopyFrom(to_timestamp(datetime.now(UTC) - timedelta(minutes=10)))

    # the session hub (its keyspace is migrated once: schema changes are slow on a shared Cassandra)
    hub = session_hub
    hotlist_stub(hub.target).AddEntry(hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
        plate="LAG1234", state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
        reason="lag test", entered_by="o-9"), timeout=30)  # fmt: skip
    assert len(run_stream(hub.target, [ingest_pb2.IngestRequest(heartbeat=hb)]).heartbeat_acks) == 1
    stub = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(hub.target))
    deadline = time.monotonic() + 20
    nodes: list[fleet_pb2.NodeStatus] = []
    while not nodes and time.monotonic() < deadline:
        nodes = list(stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(node_id=node_id), timeout=30).nodes)
    (n,) = nodes
    assert abs(n.last_position.latitude - 41.52) < 0.01 and abs(n.last_position.longitude + 88.08) < 0.01
    age = datetime.now(UTC) - from_timestamp(n.last_position_time)
    assert timedelta(minutes=9) < age < timedelta(minutes=11)
    assert n.shift_state == ingest_pb2.SHIFT_STATE_OFF_SHIFT
    assert n.hotlist_version == 0 and n.hotlist_lag_versions >= 1
    assert alpr_cli(["--hub", hub.target, "nodes", "status", "--node", node_id]) == 0
    out = capsys.readouterr().out
    assert "off shift" in out and "at 41.52" in out and "behind" in out

    # a hub started later (a restart) knows when the node was last heard from: it may be dead now
    later = HubThread(slow_ok(make_hub_config(cassandra, keyspace, hub_id="later-hub"))).start()
    try:
        seen = later.metric("alpr_hub_node_last_heartbeat_timestamp_seconds", {"node_id": node_id})
        assert 0 < time.time() - seen < 600
    finally:
        later.stop()


def _status(
    kind: reads_pb2.NodeKind.ValueType,
    *,
    silent_s: float = 5,
    shift: ingest_pb2.ShiftState.ValueType = ingest_pb2.SHIFT_STATE_UNSPECIFIED,
    problems: tuple[str, ...] = (),
) -> fleet_pb2.NodeStatus:
    n = fleet_pb2.NodeStatus(node_id="u1", node_kind=kind, detector_ok=True, disk_free_bytes=2**40,
                             problems=list(problems), shift_state=shift)  # fmt: skip
    n.last_heartbeat_time.CopyFrom(to_timestamp(datetime.now(UTC) - timedelta(seconds=silent_s)))
    return n


def test_tickets_only_for_what_the_help_desk_acts_on() -> None:
    cfg = BridgeConfig.model_validate({})
    now = datetime.now(UTC)
    mobile, fixed = reads_pb2.NODE_KIND_MOBILE, reads_pb2.NODE_KIND_FIXED
    off, on = ingest_pb2.SHIFT_STATE_OFF_SHIFT, ingest_pb2.SHIFT_STATE_ON_SHIFT
    # a patrol car parked after its shift is silent: no ticket; on shift it is a fault
    assert problems_of(_status(mobile, silent_s=3600, shift=off), cfg, now) == []
    assert problems_of(_status(mobile, silent_s=3600, shift=on), cfg, now)[0].startswith("no heartbeat")
    assert problems_of(_status(fixed, silent_s=3600, shift=off), cfg, now)[0].startswith("no heartbeat")
    # the unit's own display tells the officer about these; the help desk cannot fix them
    noise = ("no GPS fix", "hot list not confirmed current for 9.0 h (version 3): connect to the hub")
    assert problem_kind(noise[0]) == "gps" and problem_kind(noise[1]) == "hotlist"
    assert problems_of(_status(mobile, shift=on, problems=noise), cfg, now) == []
    damage = "damage reported by officer o-5 at 2026-12-01T10:00:00+00:00: lens cracked"
    clock = "clock off by +42.0 s against the hub: check NTP/GPS time"
    assert problems_of(_status(mobile, shift=off, problems=(*noise, damage, clock)), cfg, now) == [damage, clock]
    # per kind of unit, configurable
    strict = BridgeConfig.model_validate({"tickets": {"open_for": {"MOBILE": ["gps", "no_heartbeat"], "FIXED": []}}})
    assert problems_of(_status(mobile, shift=on, problems=(*noise, clock)), strict, now) == [noise[0]]
    assert problems_of(_status(fixed, silent_s=3600), strict, now) == []


def test_an_officer_reports_a_damaged_unit_through_the_hub(
    session_hub: HubThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policy 4.8: the officer files the report, also for a unit that cannot report itself (a
    car parked off shift, dead, without a link): the help desk gets a ticket until it is fixed."""
    hub = session_hub
    node_id = f"car-dmg-{uuid.uuid4().hex[:6]}"
    hb = ingest_pb2.Heartbeat(node_id=node_id, node_kind=reads_pb2.NODE_KIND_MOBILE, detector_ok=True,
                              disk_free_bytes=2**40, shift_state=ingest_pb2.SHIFT_STATE_OFF_SHIFT)  # fmt: skip
    assert len(run_stream(hub.target, [ingest_pb2.IngestRequest(heartbeat=hb)]).heartbeat_acks) == 1
    cli = ["--hub", hub.target, "nodes", "report-damage"]
    assert alpr_cli([*cli, "no-such-unit", "--note", "lens cracked", "--officer", "4711"]) == 1
    assert "has ever sent a heartbeat" in capsys.readouterr().err
    assert alpr_cli([*cli, node_id, "--note", " ", "--officer", "4711"]) == 1
    assert alpr_cli([*cli, node_id, "--note", "front camera hit, lens cracked", "--officer", "4711"]) == 0
    assert "DAMAGE reported by officer 4711" in capsys.readouterr().out

    stub = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(hub.target))
    problems = stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(problems_only=True), timeout=30).nodes
    (n,) = [x for x in problems if x.node_id == node_id]
    assert n.damage.note == "front camera hit, lens cracked" and n.damage.reported_by == "4711"
    # a ticket even though the car is off shift and, an hour later, silent
    n.last_heartbeat_time.CopyFrom(to_timestamp(datetime.now(UTC) - timedelta(hours=1)))
    (why,) = problems_of(n, BridgeConfig(), datetime.now(UTC))
    assert problem_kind(why) == "damage" and "officer 4711" in why and "lens cracked" in why

    assert alpr_cli([*cli, node_id, "--repaired", "--officer", "fleet-2"]) == 0
    (n,) = stub.ListNodes(fleet_pb2.FleetServiceListNodesRequest(node_id=node_id), timeout=30).nodes
    assert not n.HasField("damage") and problems_of(n, BridgeConfig(), datetime.now(UTC)) == []
