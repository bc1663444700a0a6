"""Hub ingest against a real Cassandra and a real gRPC server on a loopback port."""

from __future__ import annotations

import random
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from alpr.v1 import ingest_pb2, reads_pb2
from cassandra.cluster import Session
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from alpr_common.simulation import make_read, noise_jpeg
from hub.config import SIXTY_DAYS_S
from tests.conftest import fresh_keyspace, make_hub_config
from tests.support import HubThread, PacedStream, read_request, run_stream, stored_ids

READ_TABLES = ("reads_by_id", "reads_by_plate", "reads_by_camera")


def test_round_trip_stores_every_field(session_hub: HubThread, cql: Session, keyspace: str) -> None:
    rnd = random.Random(1)
    crop = noise_jpeg(160, 48, seed=2)
    frame = noise_jpeg(320, 180, seed=3)
    read = make_read(
        node_id="pole-7",
        camera_id="pole-7-east",
        plate="abc-1234",
        rnd=rnd,
        crop_jpeg=crop,
        frame_jpeg=frame,
    )
    read.location.heading_deg = 90.0
    result = run_stream(session_hub.target, [read_request(read)])
    assert result.status == grpc.StatusCode.OK, result
    assert list(result.acks) == [read.read_id] and not result.errors, result

    row = cql.execute(f"SELECT * FROM {keyspace}.reads_by_id WHERE read_id = %s", [uuid.UUID(read.read_id)]).one()
    assert row.plate == "ABC1234"  # normalized by the hub
    assert (row.node_id, row.camera_id, row.node_kind) == ("pole-7", "pole-7-east", "FIXED")
    assert row.plate_crop_jpeg == crop and row.frame_jpeg == frame
    assert abs(row.latitude - 41.525) < 1e-9 and abs(row.longitude + 88.0817) < 1e-9
    assert row.heading_deg == 90.0 and row.speed_mps is None
    assert row.region == "IL" and len(row.char_confidences) == 7
    assert (row.box_x1, row.box_y1, row.box_x2, row.box_y2) == (100, 200, 220, 240)
    assert row.detector_version == "sim" and row.hub_id == "test-hub"
    captured = read.capture_time.ToDatetime(tzinfo=UTC)
    assert abs((row.capture_time.replace(tzinfo=UTC) - captured).total_seconds()) < 0.002

    by_plate = cql.execute(
        f"SELECT read_id, camera_id FROM {keyspace}.reads_by_plate WHERE plate = %s AND day = %s",
        ["ABC1234", captured.date()],
    ).all()
    assert [str(r.read_id) for r in by_plate] == [read.read_id]
    hour = captured.replace(minute=0, second=0, microsecond=0)
    by_cam = cql.execute(
        f"SELECT read_id, plate FROM {keyspace}.reads_by_camera WHERE camera_id = %s AND hour = %s",
        ["pole-7-east", hour],
    ).all()
    assert [(str(r.read_id), r.plate) for r in by_cam] == [(read.read_id, "ABC1234")]


def test_every_read_row_carries_the_60_day_ttl(session_hub: HubThread, cql: Session, keyspace: str) -> None:
    read = make_read(plate="TTL6000", camera_id="cam-ttl")
    assert read.read_id in run_stream(session_hub.target, [read_request(read)]).acks
    captured = read.capture_time.ToDatetime(tzinfo=UTC)
    rid = uuid.UUID(read.read_id)
    ttls = {
        "reads_by_id": cql.execute(f"SELECT TTL(plate) FROM {keyspace}.reads_by_id WHERE read_id = %s", [rid]).one()[0],
        "reads_by_plate": cql.execute(
            f"SELECT TTL(camera_id) FROM {keyspace}.reads_by_plate WHERE plate = 'TTL6000' AND day = %s",
            [captured.date()],
        ).one()[0],
        "reads_by_camera": cql.execute(
            f"SELECT TTL(plate) FROM {keyspace}.reads_by_camera WHERE camera_id = 'cam-ttl' AND hour = %s",
            [captured.replace(minute=0, second=0, microsecond=0)],
        ).one()[0],
    }
    for table, ttl in ttls.items():
        assert SIXTY_DAYS_S - 120 < ttl <= SIXTY_DAYS_S, (table, ttl)
    for table in READ_TABLES:
        meta = cql.execute(
            "SELECT default_time_to_live, compaction FROM system_schema.tables WHERE keyspace_name=%s AND table_name=%s",
            [keyspace, table],
        ).one()
        assert meta.default_time_to_live == SIXTY_DAYS_S
        assert meta.compaction["class"].endswith("TimeWindowCompactionStrategy")
        assert (
            meta.compaction["compaction_window_unit"],
            meta.compaction["compaction_window_size"],
        ) == ("DAYS", "2")


def test_late_read_expires_sixty_days_after_capture_not_after_arrival(
    session_hub: HubThread, cql: Session, keyspace: str
) -> None:
    read = make_read(captured=datetime.now(UTC) - timedelta(days=10))
    assert read.read_id in run_stream(session_hub.target, [read_request(read)]).acks
    ttl = cql.execute(
        f"SELECT TTL(plate) FROM {keyspace}.reads_by_id WHERE read_id = %s",
        [uuid.UUID(read.read_id)],
    ).one()[0]
    assert abs(ttl - (SIXTY_DAYS_S - 10 * 86400)) < 120


def test_rows_really_expire(cassandra: tuple[list[str], int], cql: Session) -> None:
    ks = fresh_keyspace("ttl")
    hub = HubThread(make_hub_config(cassandra, ks, retention={"read_ttl_seconds": 3})).start()
    try:
        read = make_read()
        assert read.read_id in run_stream(hub.target, [read_request(read)]).acks
        assert stored_ids(cql, ks, [read.read_id]) == {read.read_id}
        time.sleep(4.5)
        assert stored_ids(cql, ks, [read.read_id]) == set()
        assert cql.execute(f"SELECT count(*) FROM {ks}.reads_by_plate").one()[0] == 0
    finally:
        hub.stop()
        cql.execute(f"DROP KEYSPACE {ks}")


def test_resending_a_read_changes_nothing(session_hub: HubThread, cql: Session, keyspace: str) -> None:
    read = make_read(plate="DUP0001", camera_id="cam-dup")
    first = run_stream(session_hub.target, [read_request(read)])
    rid = uuid.UUID(read.read_id)
    before = cql.execute(
        f"SELECT plate, node_id, capture_time, plate_crop_jpeg, TTL(plate) AS ttl FROM {keyspace}.reads_by_id WHERE read_id = %s",
        [rid],
    ).one()
    again = run_stream(session_hub.target, [read_request(read)] * 3)
    assert read.read_id in first.acks and read.read_id in again.acks and not again.errors
    after = cql.execute(
        f"SELECT plate, node_id, capture_time, plate_crop_jpeg, TTL(plate) AS ttl FROM {keyspace}.reads_by_id WHERE read_id = %s",
        [rid],
    ).one()
    assert after[:4] == before[:4]
    assert abs(after.ttl - before.ttl) <= 2  # same expiry instant: capture time + 60 days
    captured = read.capture_time.ToDatetime(tzinfo=UTC)
    n_plate = cql.execute(
        f"SELECT count(*) FROM {keyspace}.reads_by_plate WHERE plate = 'DUP0001' AND day = %s",
        [captured.date()],
    ).one()[0]
    assert n_plate == 1


def _bad(mutate: Callable[[reads_pb2.PlateRead], object]) -> reads_pb2.PlateRead:
    read = make_read()
    mutate(read)
    return read


BAD_READS = {
    "plate_text": lambda r: setattr(r, "plate_text", "AB$12"),
    "plate_text_too_long": lambda r: setattr(r, "plate_text", "ABCDEFGHJK"),
    "read_id": lambda r: setattr(r, "read_id", "not-a-uuid"),
    "camera_id": lambda r: setattr(r, "camera_id", ""),
    "node_kind": lambda r: setattr(r, "node_kind", reads_pb2.NODE_KIND_UNSPECIFIED),
    "capture_time_future": lambda r: r.capture_time.FromDatetime(datetime.now(UTC) + timedelta(hours=2)),
    "capture_time_expired": lambda r: r.capture_time.FromDatetime(datetime.now(UTC) - timedelta(days=61)),
    "plate_crop_jpeg_missing": lambda r: setattr(r, "plate_crop_jpeg", b""),
    "plate_crop_jpeg_not_jpeg": lambda r: setattr(r, "plate_crop_jpeg", b"\x89PNG\r\n"),
    "frame_jpeg_too_large": lambda r: setattr(r, "frame_jpeg", b"\xff\xd8\xff" + b"0" * 600_000),
    "confidence": lambda r: setattr(r, "confidence", 1.5),
    "char_confidences": lambda r: r.char_confidences.append(0.5),
    "location": lambda r: r.ClearField("location"),
    "latitude": lambda r: setattr(r.location, "latitude", 123.0),
    "plate_box": lambda r: setattr(r.plate_box, "x2", 5000),
}


def test_invalid_reads_are_rejected_and_the_stream_goes_on(session_hub: HubThread, cql: Session, keyspace: str) -> None:
    good_before, good_after = make_read(), make_read()
    bad = {name: _bad(m) for name, m in BAD_READS.items()}
    reqs = [read_request(good_before), *(read_request(r) for r in bad.values()), ingest_pb2.IngestRequest(),
            read_request(good_after)]  # fmt: skip
    result = run_stream(session_hub.target, reqs)
    assert result.status == grpc.StatusCode.OK
    assert set(result.acks) == {good_before.read_id, good_after.read_id}
    for name, read in bad.items():
        err = result.errors[read.read_id]
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], name
        assert not err.retryable and err.message and err.field, name
    assert "'$'" in result.errors[bad["plate_text"].read_id].message  # the bad character, not the plate
    assert "clock" in result.errors[bad["capture_time_future"].read_id].message
    assert "" in result.errors  # the empty request is answered too
    ok_ids = [r.read_id for r in bad.values() if r.read_id != "not-a-uuid"]
    assert stored_ids(cql, keyspace, ok_ids) == set()
    assert stored_ids(cql, keyspace, [good_before.read_id, good_after.read_id]) == {
        good_before.read_id,
        good_after.read_id,
    }


def test_heartbeat_is_answered_with_server_time_and_recorded(
    session_hub: HubThread, cql: Session, keyspace: str
) -> None:
    hb = ingest_pb2.Heartbeat(node_id="car-12", node_kind=reads_pb2.NODE_KIND_MOBILE, queue_depth=4,
                              detector_ok=True, problems=["camera rear: no frames"])  # fmt: skip
    result = run_stream(session_hub.target, [ingest_pb2.IngestRequest(heartbeat=hb)])
    assert len(result.heartbeat_acks) == 1
    server_time = result.heartbeat_acks[0].server_time.ToDatetime(tzinfo=UTC)
    assert abs((datetime.now(UTC) - server_time).total_seconds()) < 30
    row = cql.execute(f"SELECT * FROM {keyspace}.node_status WHERE node_id = 'car-12'").one()
    assert row.node_kind == "MOBILE" and row.queue_depth == 4 and row.problems == ["camera rear: no frames"]


def test_many_reads_on_concurrent_streams_with_tight_back_pressure(
    cassandra: tuple[list[str], int], cql: Session, keyspace: str
) -> None:
    cfg = make_hub_config(cassandra, keyspace, ingest={"max_in_flight_per_stream": 2, "max_in_flight_total": 3})
    hub = HubThread(cfg).start()
    try:
        import concurrent.futures as cf

        batches = [[make_read(node_id=f"n{i}") for _ in range(150)] for i in range(4)]
        with cf.ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda b: run_stream(hub.target, map(read_request, b)), batches))
        for batch, res in zip(batches, results, strict=True):
            assert set(res.acks) == {r.read_id for r in batch} and not res.errors
        ids = [r.read_id for b in batches for r in b]
        assert stored_ids(cql, keyspace, ids) == set(ids)
        assert hub.metric("alpr_hub_reads_stored_total") == 600
        assert hub.metric("alpr_hub_reads_in_flight") == 0
    finally:
        hub.stop()


def test_metrics_endpoint_health_and_reflection(cassandra: tuple[list[str], int], keyspace: str) -> None:
    hub = HubThread(make_hub_config(cassandra, keyspace)).start()
    try:
        bad = make_read(plate="!!")
        run_stream(hub.target, [read_request(make_read(node_id="pole-9")), read_request(bad)])
        text = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=10).read().decode()
        assert "alpr_hub_reads_received_total 2.0" in text
        assert "alpr_hub_reads_stored_total 1.0" in text
        assert 'alpr_hub_reads_rejected_total{reason="bad_plate_text"} 1.0' in text
        assert 'alpr_hub_node_last_seen_timestamp_seconds{node_id="pole-9"}' in text
        assert "alpr_hub_read_write_seconds_count 1.0" in text
        assert "alpr_hub_open_streams 0.0" in text

        with grpc.insecure_channel(hub.target) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="alpr.v1.IngestService")
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            answer = next(
                iter(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
            )
            names = {s.name for s in answer.list_services_response.service}
            assert {"alpr.v1.IngestService", "grpc.health.v1.Health"} <= names
    finally:
        hub.stop()


def test_graceful_stop_acks_accepted_reads_then_ends_stream_with_unavailable(
    cassandra: tuple[list[str], int], cql: Session, keyspace: str
) -> None:
    hub = HubThread(make_hub_config(cassandra, keyspace)).start()
    stream = PacedStream(hub.target)
    reads = [make_read() for _ in range(50)]
    for r in reads:
        stream.send(read_request(r))
    deadline = time.time() + 30
    while len(stream.result.acks) < 10 and time.time() < deadline:
        time.sleep(0.01)
    hub.stop(grace=10)
    result = stream.wait_closed()
    assert result.status == grpc.StatusCode.UNAVAILABLE
    assert len(result.acks) >= 10
    acked = list(result.acks)
    # everything acked is really stored
    assert stored_ids(cql, keyspace, acked) == set(acked)


@pytest.mark.parametrize("field", ["node_id"])
def test_node_id_is_required(session_hub: HubThread, field: str) -> None:
    read = make_read()
    setattr(read, field, "")
    res = run_stream(session_hub.target, [read_request(read)])
    assert res.errors[read.read_id].field == field
