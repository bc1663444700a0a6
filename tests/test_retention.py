"""Retention proven (policy 5.4-5.5): with a TTL of seconds, reads, images and alerts vanish
while evidence copies stay; the oldest-read metric; no public path to read data (policy 3.4)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import urllib.request
import uuid
from datetime import timedelta

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, evidence_pb2, evidence_pb2_grpc, hotlist_pb2
from cassandra.cluster import Session

from alpr_common.simulation import make_read, noise_jpeg
from alpr_common.timestamps import timestamp_in
from tests.access_support import drop_keyspace, slow_ok
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import hotlist_stub
from tests.support import ROOT, HubThread, read_request, run_stream

TTL = 8
FAST = {
    "hotlists": {"poll_interval_s": 0.05, "notice_interval_s": 1.0},
    "alerts": {"feed_poll_interval_s": 0.05, "pending_scan_interval_s": 0.5},
}


def _count(cql: Session, ks: str, table: str, key: str, value: object) -> int:
    return len(cql.execute(f"SELECT * FROM {ks}.{table} WHERE {key} = %s", (value,)).all())


def _oldest_age(hub: HubThread) -> float:
    assert hub.hub is not None
    asyncio.run_coroutine_threadsafe(hub.hub.retention.refresh(), hub.loop).result(60)
    return hub.metric("alpr_hub_oldest_read_age_seconds")


def test_reads_images_and_alerts_expire_while_evidence_stays(cassandra: tuple[list[str], int], cql: Session) -> None:
    ks = fresh_keyspace("ret")
    hub = HubThread(slow_ok(make_hub_config(cassandra, ks, retention={"read_ttl_seconds": TTL}, **FAST))).start()
    try:
        hotlist_stub(hub.target).AddEntry(
            hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
                plate="RET1234", state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
                reason="retention test", entered_by="o-1",
            )
        )  # fmt: skip
        deadline = time.monotonic() + 10
        reads = [
            make_read("n1", "cam-r", plate, crop_jpeg=noise_jpeg(96, 32, i), frame_jpeg=noise_jpeg(160, 90, i))
            for i, plate in enumerate(["RET1234", "KEEP001", "GONE002"])
        ]
        while True:  # the hub's mirror picks the entry up within a poll interval
            res = run_stream(hub.target, [read_request(reads[0])])
            assert list(res.acks) == [reads[0].read_id], res
            alerts = alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(hub.target)).ListAlerts(
                alert_pb2.ListAlertsRequest(hours=1), timeout=10
            )
            if alerts.alerts or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert alerts.alerts, "the matching read raised no alert"
        alert_id = uuid.UUID(alerts.alerts[0].alert_id)
        assert len(run_stream(hub.target, [read_request(r) for r in reads[1:]]).acks) == 2

        exported = evidence_pb2_grpc.EvidenceServiceStub(grpc.insecure_channel(hub.target)).ExportEvidence(
            evidence_pb2.ExportEvidenceRequest(
                case_number="C-RET", purpose="retention test", read_ids=[reads[1].read_id]
            ),
            timeout=30,
        )
        assert len(exported.reads) == 1
        ids = [uuid.UUID(r.read_id) for r in reads]
        for rid in ids:
            assert _count(cql, ks, "reads_by_id", "read_id", rid) == 1
        assert _count(cql, ks, "alerts_by_id", "alert_id", alert_id) == 1
        age = _oldest_age(hub)
        assert 0 < age < TTL + 5
        # No public path (policy 3.4): the unauthenticated metrics endpoint never carries plates.
        body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=10).read().decode()
        assert "alpr_hub_reads_stored_total" in body and "alpr_hub_oldest_read_age_seconds" in body
        for r in reads:
            assert r.plate_text not in body

        time.sleep(TTL + 1.5)
        for rid in ids:
            assert _count(cql, ks, "reads_by_id", "read_id", rid) == 0, "read (with its images) outlived the TTL"
        assert cql.execute(f"SELECT * FROM {ks}.reads_by_camera").all() == []
        assert cql.execute(f"SELECT * FROM {ks}.reads_by_plate").all() == []
        assert _count(cql, ks, "alerts_by_id", "alert_id", alert_id) == 0
        assert cql.execute(f"SELECT * FROM {ks}.alerts_by_day").all() == []

        ev = cql.execute(f"SELECT read, TTL(plate) AS ttl FROM {ks}.evidence_reads WHERE case_number = 'C-RET'").all()
        assert len(ev) == 1 and ev[0].ttl is None
        kept = evidence_pb2.EvidenceRead(read=exported.reads[0].read).read
        assert kept.plate_crop_jpeg == reads[1].plate_crop_jpeg and kept.frame_jpeg == reads[1].frame_jpeg
        assert _oldest_age(hub) == 0.0
    finally:
        hub.stop(1)
        drop_keyspace(cql, ks)


def test_only_storage_writes_read_tables_and_nothing_extends_their_ttl() -> None:
    """No code path deletes reads or rewrites them with a new TTL: the evidence copy is the only way to keep one."""
    files = subprocess.run(["git", "ls-files", "hub/*.py", "node/*.py", "dispatch_bridge/*.py", "alpr_common/*.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split()  # fmt: skip
    files += [str(p.relative_to(ROOT)) for p in (ROOT / "hub").glob("*.py")]
    writes = re.compile(r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM|insert_cql\()\s*[\w{}.\"]*reads_by_", re.IGNORECASE)
    writers = sorted({f for f in set(files) if (ROOT / f).exists() and writes.search((ROOT / f).read_text())})
    assert writers == ["hub/storage.py"]
    storage = (ROOT / "hub/storage.py").read_text()
    assert not re.search(r"(UPDATE|DELETE\s+FROM)\s+[\w{}.]*reads_by_", storage, re.IGNORECASE)
