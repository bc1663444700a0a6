"""Help-desk tickets (policy 4.8): real heartbeats through the hub, one ticket per unit per
incident (file and webhook ticket sinks), closed when the unit recovers, reopened on a new failure."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alpr.v1 import fleet_pb2, ingest_pb2, reads_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from alpr_common.timestamps import to_timestamp
from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.tickets import problems_of
from tests import bridge_support
from tests.bridge_support import BridgeThread, Hubs, WebhookReceiver, bridge_config, wait_for, webhook_sink
from tests.support import run_stream

agency_hubs = bridge_support.agency_hubs  # the session fixture


def heartbeat(target: str, node: str, **kw: Any) -> None:
    ts = Timestamp()
    ts.GetCurrentTime()
    base: dict[str, Any] = dict(node_id=node, node_kind=reads_pb2.NODE_KIND_MOBILE, sent_time=ts, detector_ok=True,
                                disk_free_bytes=10 * 2**30,
                                cameras=[ingest_pb2.CameraStatus(camera_id=f"{node}-cam", frames_received=100, ok=True)])  # fmt: skip
    base.update(kw)
    res = run_stream(target, [ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(**base))])
    assert res.heartbeat_acks, res


def events(path: Path, node: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    return [d for d in docs if d["node_id"] == node]


def test_one_ticket_per_unit_per_incident(cassandra: tuple[list[str], int], agency_hubs: Hubs, tmp_path: Path) -> None:
    hubs = agency_hubs
    desk = WebhookReceiver()
    path = tmp_path / "tickets.jsonl"
    cfg = bridge_config(
        cassandra, hubs, "tickets",
        tickets={"enabled": True, "poll_interval_s": 0.3, "no_heartbeat_after_s": 6.0,
                 "min_disk_free_bytes": 2**30,
                 "sinks": [{"name": "it-file", "kind": "file", "path": str(path)}, webhook_sink(desk.url, "it-desk")]},
    )  # fmt: skip
    t = hubs.a.target
    heartbeat(t, "car-1")
    heartbeat(t, "car-2")
    bridge = BridgeThread(cfg).start()
    try:
        time.sleep(1.0)
        assert events(path, "car-1") == [] and events(path, "car-2") == []  # healthy units: no ticket
        # car-1: detector dead, then also a camera down while the same incident is open.
        heartbeat(t, "car-1", detector_ok=False)
        opened = wait_for(lambda: events(path, "car-1"), what="ticket")
        assert len(opened) == 1 and opened[0]["event"] == "open" and "detector not working" in opened[0]["problems"]
        heartbeat(t, "car-1", detector_ok=False, cameras=[ingest_pb2.CameraStatus(camera_id="c", ok=False,
                                                                                  problem="no frames for 30 s")])  # fmt: skip
        heartbeat(t, "car-2", disk_free_bytes=2**20, problems=["clock skew 42 s against the hub"])
        car2 = wait_for(lambda: events(path, "car-2"), what="car-2 ticket")
        assert any("disk full" in p for p in car2[0]["problems"])
        assert "clock skew 42 s against the hub" in car2[0]["problems"]
        time.sleep(1.0)  # several polls while failing
        assert [e["event"] for e in events(path, "car-1")] == ["open"]
        # Recovery closes the incident; a new failure opens a new one.
        heartbeat(t, "car-1")
        wait_for(lambda: len(events(path, "car-1")) == 2, what="close")
        ev = events(path, "car-1")
        assert ev[1]["event"] == "close" and ev[1]["ticket_id"] == ev[0]["ticket_id"]
        # No heartbeat for N (6 s: a loaded test machine takes seconds for the steps above):
        # car-1 goes silent (car-2 keeps reporting, still failing).
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            heartbeat(t, "car-2", disk_free_bytes=2**20)
            time.sleep(0.5)
        ev = wait_for(lambda: len(events(path, "car-1")) == 3 and events(path, "car-1"), what="silent unit")
        assert ev[2]["event"] == "open" and ev[2]["ticket_id"] != ev[0]["ticket_id"]
        assert any("no heartbeat" in p for p in ev[2]["problems"])
        assert [e["event"] for e in events(path, "car-2")] == ["open"]
        # The help desk webhook got the same events, signed, once each.
        wait_for(lambda: len([d for d in desk.by_key.values() if d["node_id"] == "car-1"]) == 3, what="webhook")
        assert desk.bad_signatures == 0 and len(desk.deliveries) == len(desk.by_key)
        assert bridge.metric("alpr_bridge_tickets_total", {"event": "open"}) >= 3
    finally:
        bridge.stop()
        desk.stop()
    # A restarted bridge does not re-send tickets of incidents it already reported.
    n = len(path.read_text().splitlines())
    again = BridgeThread(cfg).start()
    try:
        time.sleep(1.5)
        assert len(path.read_text().splitlines()) == n
    finally:
        again.stop()


def test_problem_rules() -> None:
    cfg = BridgeConfig.model_validate({"tickets": {"no_heartbeat_after_s": 60, "min_disk_free_bytes": 100}})
    now = datetime.now(UTC)
    node = fleet_pb2.NodeStatus(node_id="car-1", last_heartbeat_time=to_timestamp(now), detector_ok=True,
                                disk_free_bytes=1000)  # fmt: skip
    assert problems_of(node, cfg, now) == []
    node.cameras.add(camera_id="c1", ok=False, problem="no frames for 30 s")
    node.disk_free_bytes = 50
    node.problems.append("clock off by +42.0 s against the hub")
    node.detector_ok = False
    assert problems_of(node, cfg, now) == [
        "detector not working",
        "camera c1 down: no frames for 30 s",
        "disk full (0 MiB free)",
        "clock off by +42.0 s against the hub",
    ]
    node.last_heartbeat_time.CopyFrom(to_timestamp(now - timedelta(minutes=5)))
    assert problems_of(node, cfg, now) == ["no heartbeat for more than 1 min"]
    assert problems_of(fleet_pb2.NodeStatus(node_id="never"), cfg, now) == ["no heartbeat for more than 1 min"]
