"""SearchService: purpose and case required, plate exact/partial/fuzzy, camera, area, time, paging, audit."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from alpr.v1 import alert_pb2, audit_pb2, audit_pb2_grpc, reads_pb2, search_pb2, search_pb2_grpc
from cassandra.cluster import Session
from google.protobuf.timestamp_pb2 import Timestamp

from alpr_common.operator_cli import main as alpr
from alpr_common.simulation import make_read
from hub.search import fuzzy_match, glob_matcher
from tests.access_support import AuthHub, call, rpc_code


def ts(dt: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(dt)
    return t


class SearchHub(AuthHub):
    """The secured hub with reads to search for and an investigator's token."""

    reads: list[reads_pb2.PlateRead]
    inv: str


@pytest.fixture(scope="module")
def shub(cassandra: tuple[list[str], int], cql: Session) -> Iterator[SearchHub]:
    h = SearchHub(cassandra, cql)
    now = datetime.now(UTC)
    rnd = random.Random(7)
    reads = [
        make_read("n1", "cam-a", "BOSS123", now - timedelta(hours=1), rnd),
        make_read("n1", "cam-a", "BOSS123", now - timedelta(days=2), rnd),
        make_read("n1", "cam-b", "8OS5123", now - timedelta(minutes=5), rnd),  # look-alike of BOSS123
        make_read("n1", "cam-b", "BOSS1234", now - timedelta(minutes=6), rnd),  # one extra char
        make_read("n1", "cam-b", "XYZ9876", now - timedelta(minutes=7), rnd),
    ]
    far = make_read("n2", "cam-far", "FAR1111", now - timedelta(minutes=8), rnd)
    far.location.latitude, far.location.longitude = 40.0, -90.0
    reads.append(far)
    h.ingest(reads)
    h.reads = reads
    h.inv = h.token("inv-1", "investigator")
    yield h
    h.stop()


def search(h: SearchHub, token: str | None = None, **kw: Any) -> search_pb2.SearchResponse:
    stub = search_pb2_grpc.SearchServiceStub(h.channel)
    kw.setdefault("purpose", "stolen vehicle investigation")
    kw.setdefault("case_number", "2026-00042")
    return call(stub.Search, search_pb2.SearchRequest(**kw), token or h.inv)


def plates(resp: search_pb2.SearchResponse) -> list[str]:
    return [hit.plate for hit in resp.hits]


def test_matchers() -> None:
    assert fuzzy_match("BOSS123", "8OS5123") and fuzzy_match("BOSS123", "BOSS1234")
    assert not fuzzy_match("BOSS123", "XYZ9876")
    assert glob_matcher("BO?S*")("BOSS123") and not glob_matcher("BO?S")("BOSS123")


def test_purpose_and_case_are_required_and_refusals_audited(shub: SearchHub) -> None:
    for kw in ({"purpose": ""}, {"case_number": "  "}):
        code, msg = rpc_code(functools.partial(search, shub, plate="BOSS123", **kw))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert ("purpose" in msg) if "purpose" in kw else ("case_number" in msg)
    auditor = shub.token("aud-s", "auditor")
    entries = call(
        audit_pb2_grpc.AuditServiceStub(shub.channel).ListAudit,
        audit_pb2.ListAuditRequest(action="search", limit=1000),
        auditor,
    ).entries
    assert [e.outcome for e in entries if e.actor == "inv-1"][:2] == ["refused", "refused"]


def test_exact_partial_fuzzy_and_audit(shub: SearchHub) -> None:
    assert plates(search(shub, plate="boss-123")) == ["BOSS123", "BOSS123"]
    assert sorted(plates(search(shub, plate="BOSS12?*", mode=search_pb2.PLATE_MATCH_MODE_PARTIAL))) == [
        "BOSS123",
        "BOSS123",
        "BOSS1234",
    ]
    fuzzy = search(shub, plate="BOSS123", mode=search_pb2.PLATE_MATCH_MODE_FUZZY)
    assert sorted(plates(fuzzy)) == ["8OS5123", "BOSS123", "BOSS123", "BOSS1234"]
    assert [h.capture_time.ToDatetime() for h in fuzzy.hits] == sorted(
        (h.capture_time.ToDatetime() for h in fuzzy.hits), reverse=True
    )
    chain, seq = fuzzy.audit_ref.split("/")
    auditor = shub.token("aud-1", "auditor")
    entries = call(
        audit_pb2_grpc.AuditServiceStub(shub.channel).ListAudit,
        audit_pb2.ListAuditRequest(chain=chain, after_seq=int(seq) - 1, limit=1),
        auditor,
    ).entries
    e = entries[0]
    assert (e.actor, e.role, e.action, e.purpose, e.case_number, e.result_count) == (
        "inv-1", "investigator", "search", "stolen vehicle investigation", "2026-00042", 4,
    )  # fmt: skip
    assert json.loads(e.details_json)["plate"] == "BOSS123"


def test_time_camera_area_and_paging(shub: SearchHub) -> None:
    now = datetime.now(UTC)
    recent = search(shub, plate="BOSS123", start_time=ts(now - timedelta(days=1)), end_time=ts(now))
    assert len(recent.hits) == 1
    assert sorted(plates(search(shub, camera_ids=["cam-b"]))) == ["8OS5123", "BOSS1234", "XYZ9876"]
    box = alert_pb2.GeoBox(min_latitude=39.5, min_longitude=-90.5, max_latitude=40.5, max_longitude=-89.5)
    assert plates(search(shub, area=box)) == ["FAR1111"]
    page1 = search(shub, camera_ids=["cam-a", "cam-b"], page_size=2)
    assert len(page1.hits) == 2 and page1.next_page_token
    page2 = search(shub, camera_ids=["cam-a", "cam-b"], page_size=2, page_token=page1.next_page_token)
    page3 = search(shub, camera_ids=["cam-a", "cam-b"], page_size=2, page_token=page2.next_page_token)
    ids = [h.read_id for p in (page1, page2, page3) for h in p.hits]
    assert len(ids) == 5 == len(set(ids)) and not page3.next_page_token
    code, _ = rpc_code(lambda: search(shub, camera_ids=["cam-x"], page_token=page1.next_page_token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_crops_come_only_when_asked_and_as_stored(shub: SearchHub) -> None:
    stored = next(r for r in shub.reads if r.plate_text == "XYZ9876")
    assert stored.plate_crop_jpeg
    plain = search(shub, plate="XYZ9876")
    assert [h.read_id for h in plain.hits] == [stored.read_id] and not plain.hits[0].plate_crop_jpeg
    shown = search(shub, plate="XYZ9876", include_crops=True)
    assert shown.hits[0].plate_crop_jpeg == stored.plate_crop_jpeg
    every = search(shub, camera_ids=["cam-a", "cam-b"], include_crops=True, page_size=1000)
    assert len(every.hits) == 5 and all(h.plate_crop_jpeg for h in every.hits)


def test_roles(shub: SearchHub) -> None:
    officer = shub.token("ofc-s", "officer")
    assert plates(search(shub, officer, plate="XYZ9876")) == ["XYZ9876"]
    # dispatchers check a plate for a call (policy 4.2B): purpose and case required, audited as dispatcher
    dispatcher = shub.token("disp-s", "dispatcher")
    code, msg = rpc_code(lambda: search(shub, dispatcher, plate="XYZ9876", purpose=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "purpose" in msg
    resp = search(shub, dispatcher, plate="XYZ9876", purpose="dispatch check: traffic stop", case_number="CAD-771")
    assert plates(resp) == ["XYZ9876"]
    chain, seq = resp.audit_ref.split("/")
    entry = call(
        audit_pb2_grpc.AuditServiceStub(shub.channel).ListAudit,
        audit_pb2.ListAuditRequest(chain=chain, after_seq=int(seq) - 1, limit=1),
        shub.token("aud-d", "auditor"),
    ).entries[0]
    assert (entry.actor, entry.role, entry.purpose, entry.case_number) == (
        "disp-s", "dispatcher", "dispatch check: traffic stop", "CAD-771",
    )  # fmt: skip
    code, msg = rpc_code(lambda: search(shub, shub.token("aud-s2", "auditor"), plate="XYZ9876"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "auditor" in msg


def test_cli_search_json(shub: SearchHub, capsys: pytest.CaptureFixture[str]) -> None:
    rc = alpr(
        ["--hub", shub.thread.target, "--token", shub.inv, "search", "XYZ9876", "--purpose", "hit and run",
         "--case", "INC-7", "--json"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [h["plate"] for h in out["hits"]] == ["XYZ9876"] and out["audit_refs"]
