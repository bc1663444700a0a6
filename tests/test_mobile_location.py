"""A patrol car without a GPS fix still reads plates: its reads carry the last known position
with its age (STALE) or no position at all (NONE); the hub stores them with that quality,
matches them against the hot list, raises and relays the hit, and shows the quality wherever
the position is shown (search, alerts, the relay to dispatch)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from alpr.v1 import agency_pb2, alert_pb2, alert_pb2_grpc, hotlist_pb2, reads_pb2, search_pb2, search_pb2_grpc

from alpr_common.operator_cli import main as alpr_cli
from alpr_common.simulation import make_read
from alpr_common.timestamps import timestamp_in
from dispatch_bridge.sinks import relay_to_json
from node.gps import simulate_nmea
from node.runtime import NodeRuntime
from tests.hotlist_support import hotlist_stub
from tests.support import HubThread, read_request, run_stream
from tests.test_fleet_field import _mobile
from tests.test_node_longrun import OneRecognizer, _track


def _mobile_read(plate: str, camera: str, quality: reads_pb2.LocationQuality.ValueType) -> reads_pb2.PlateRead:
    read = make_read(node_id="car-9", camera_id=camera, plate=plate, kind=reads_pb2.NODE_KIND_MOBILE)
    read.location_quality = quality
    if quality == reads_pb2.LOCATION_QUALITY_NONE:
        read.ClearField("location")
    elif quality == reads_pb2.LOCATION_QUALITY_STALE:
        read.location_age_s = 240.0
    return read


def test_reads_without_a_current_fix_are_stored_matched_and_shown(
    session_hub: HubThread, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = session_hub
    tag = uuid.uuid4().hex[:5].upper()
    camera = f"car9-{tag.lower()}"
    no_fix, stale = f"NF{tag}", f"ST{tag}"
    for plate in (no_fix, stale):
        hotlist_stub(hub.target).AddEntry(hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
            plate=plate, state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
            reason="mobile fix test", entered_by="o-9"), timeout=30)  # fmt: skip
    good = [_mobile_read(no_fix, camera, reads_pb2.LOCATION_QUALITY_NONE),
            _mobile_read(stale, camera, reads_pb2.LOCATION_QUALITY_STALE)]  # fmt: skip
    fixed_without = make_read(camera_id=camera)
    fixed_without.ClearField("location")
    fixed_without.location_quality = reads_pb2.LOCATION_QUALITY_NONE
    stale_without = _mobile_read(stale, camera, reads_pb2.LOCATION_QUALITY_STALE)
    stale_without.ClearField("location")
    none_with = _mobile_read(no_fix, camera, reads_pb2.LOCATION_QUALITY_FIX)
    none_with.location_quality = reads_pb2.LOCATION_QUALITY_NONE
    bad = [fixed_without, stale_without, none_with]
    result = run_stream(hub.target, [read_request(r) for r in good + bad])
    assert set(result.acks) == {r.read_id for r in good}
    for r in bad:
        assert result.errors[r.read_id].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "config" in result.errors[fixed_without.read_id].message
    assert "NONE" in result.errors[stale_without.read_id].message

    # both hits are raised, with the quality of their position
    alerts = alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(hub.target))
    deadline, listed = time.monotonic() + 20, list[alert_pb2.Alert]()
    while len(listed) < 2 and time.monotonic() < deadline:
        req = alert_pb2.ListAlertsRequest(filter=alert_pb2.AlertFilter(camera_ids=[camera]))
        listed = list(alerts.ListAlerts(req, timeout=30).alerts)
    by_plate = {a.plate: a for a in listed}
    assert by_plate[no_fix].location_quality == reads_pb2.LOCATION_QUALITY_NONE
    assert not by_plate[no_fix].HasField("location")
    assert by_plate[stale].location_quality == reads_pb2.LOCATION_QUALITY_STALE
    assert by_plate[stale].location_age_s == pytest.approx(240.0)

    # dispatch is told the position is stale or missing
    for a, want in ((by_plate[no_fix], "none"), (by_plate[stale], "stale")):
        relay = agency_pb2.Relay(alert_id=a.alert_id, location_quality=a.location_quality,
                                 location_age_s=a.location_age_s)  # fmt: skip
        if a.HasField("location"):
            relay.location.CopyFrom(a.location)
        assert relay_to_json(relay)["location_quality"] == want

    # a search finds both, with the stored quality
    search = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(hub.target))
    hits = search.Search(search_pb2.SearchRequest(camera_ids=[camera], purpose="stolen vehicle check",
                                                  case_number="C-1"), timeout=30).hits  # fmt: skip
    quality = {h.plate: (h.location_quality, round(h.location_age_s)) for h in hits}
    assert quality == {no_fix: (reads_pb2.LOCATION_QUALITY_NONE, 0), stale: (reads_pb2.LOCATION_QUALITY_STALE, 240)}
    capsys.readouterr()
    assert alpr_cli(["--hub", hub.target, "search", "--camera", camera, "--purpose", "check", "--case", "C-1"]) == 0
    out = capsys.readouterr().out
    assert "no GPS fix" in out and "last known position, 4 min old" in out
    assert alpr_cli(["--hub", hub.target, "alerts", "show", by_plate[stale].alert_id, "--images-dir", "/tmp"]) == 0
    assert "last known position, 4 min old" in capsys.readouterr().out


def test_a_mobile_node_sends_its_last_known_position_when_the_fix_is_lost(tmp_path: Path) -> None:
    nmea = tmp_path / "drive.nmea"
    simulate_nmea(nmea, (41.52, -88.08), heading=90, speed_mps=10, seconds=5)
    runtime = NodeRuntime(_mobile(tmp_path, "car-7", nmea), recognizer=OneRecognizer())
    gps = runtime.gps
    assert gps is not None
    cam = runtime.cameras[0]
    try:
        runtime._emit(cam, [_track(1)])  # no fix yet: no position, still a read
        none = runtime.emitted[-1].read
        assert none.location_quality == reads_pb2.LOCATION_QUALITY_NONE and not none.HasField("location")
        gps.start()
        deadline = time.monotonic() + 20
        while gps.current() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        runtime._emit(cam, [_track(2)])
        fix = runtime.emitted[-1].read
        assert fix.location_quality == reads_pb2.LOCATION_QUALITY_FIX and abs(fix.location.latitude - 41.52) < 0.01
        gps.stop()
        gps.max_age_s = 0.5  # the receiver goes quiet: the fix ages past the limit
        time.sleep(1.0)
        runtime._emit(cam, [_track(3)])
        stale = runtime.emitted[-1].read
        assert stale.location_quality == reads_pb2.LOCATION_QUALITY_STALE
        assert abs(stale.location.latitude - 41.52) < 0.01 and stale.location_age_s >= 0.5
        assert runtime.queue.depth() == 3  # every read kept for the hub, whatever its fix
    finally:
        gps.stop()
        runtime._resources.close()
