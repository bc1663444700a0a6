"""Alerts against a real Cassandra and two hub replicas: raised on ingest before the ack,
fanned out to watchers on the other replica, decided under the policy's rules."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, reads_pb2
from cassandra.cluster import Session

from alpr_common.simulation import make_read, noise_jpeg
from alpr_common.timestamps import timestamp_in, to_timestamp
from dispatch_bridge.config import BridgeConfig
from hub.alerts import AlertStore, alert_id_for
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import FAST, hotlist_stub
from tests.support import HubThread, read_request, run_stream

STOLEN = hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE
WANTED = hotlist_pb2.HOT_LIST_CATEGORY_WANTED_PERSON


@pytest.fixture(scope="module")
def hubs(cassandra: tuple[list[str], int]) -> Iterator[tuple[HubThread, HubThread]]:
    ks = fresh_keyspace("al")
    a = HubThread(make_hub_config(cassandra, ks, hub_id="hub-a", **FAST)).start()
    b = HubThread(make_hub_config(cassandra, ks, hub_id="hub-b", **FAST)).start()
    for plate, cat in (("ABC1234", STOLEN), ("WNT4567", WANTED)):
        v = (
            hotlist_stub(a.target)
            .AddEntry(
                hotlist_pb2.AddEntryRequest(
                    expire_time=timestamp_in(timedelta(days=30)),
                    plate=plate,
                    state="IL",
                    category=cat,
                    reason="test",
                    entered_by="o-1",
                )
            )
            .version
        )
    deadline = time.monotonic() + 10
    while hotlist_stub(b.target).GetVersion(hotlist_pb2.GetVersionRequest()).version < v:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield a, b
    a.stop(1)
    b.stop(1)


def stub(target: str) -> alert_pb2_grpc.AlertServiceStub:
    return alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(target))


class Watcher:
    def __init__(self, target: str, **kw: Any) -> None:
        self.events: queue.Queue[alert_pb2.WatchResponse] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.call = stub(target).Watch(alert_pb2.WatchRequest(**kw))
        self.call.initial_metadata()  # the hub has registered the watcher
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            for ev in self.call:
                self.events.put(ev)
        except grpc.RpcError as e:
            self.error = e

    def next(self, timeout: float = 5) -> alert_pb2.WatchResponse:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped


def ingest(target: str, plate: str, region: str = "IL", camera: str = "cam-1", **kw: Any) -> reads_pb2.PlateRead:
    read = make_read(plate=plate, camera_id=camera, **kw)
    read.region = region
    res = run_stream(target, [read_request(read)])
    assert read.read_id in res.acks, res
    return read


def accept(**kw: Any) -> alert_pb2.Acceptance:
    base: dict[str, Any] = dict(
        characters_verified=True,
        state_verified=True,
        leads_check=alert_pb2.LEADS_CHECK_DONE,
        action=alert_pb2.ENFORCEMENT_ACTION_TAKING_ACTION,
    )
    base.update(kw)
    return alert_pb2.Acceptance(**base)


def test_alert_raised_on_one_hub_reaches_watcher_on_the_other(hubs: tuple[HubThread, HubThread]) -> None:
    a, b = hubs
    w = Watcher(b.target)
    other_cam = Watcher(b.target, filter=alert_pb2.AlertFilter(camera_ids=["cam-elsewhere"]))
    wanted_only = Watcher(a.target, filter=alert_pb2.AlertFilter(categories=[WANTED]))
    try:
        crop, frame = noise_jpeg(120, 40, seed=1), noise_jpeg(320, 180, seed=2)
        t0 = time.monotonic()
        read = ingest(a.target, "A8C1234", crop_jpeg=crop, frame_jpeg=frame)  # B/8 look-alike
        ev = w.next()
        assert time.monotonic() - t0 < 2.0
        assert ev.kind == alert_pb2.ALERT_EVENT_KIND_CREATED and ev.alert.read_id == read.read_id
        assert ev.alert.status == alert_pb2.ALERT_STATUS_PENDING and ev.alert.hub_id == "hub-a"
        m = ev.alert.matches[0]
        assert m.kind == alert_pb2.MATCH_KIND_LOOKALIKE and m.entry.plate == "ABC1234" and not m.state_mismatch
        assert list(ev.alert.categories) == [STOLEN]
        full = stub(b.target).GetAlert(alert_pb2.GetAlertRequest(alert_id=ev.alert.alert_id))
        assert full.plate_crop_jpeg == crop and full.frame_jpeg == frame
        # Filters: other camera and other category see nothing of it.
        ingest(a.target, "WNT4567", region="WI")
        ev2 = wanted_only.next()
        assert ev2.alert.plate == "WNT4567" and ev2.alert.matches[0].state_mismatch
        assert ev2.alert.matches[0].score < 1.0
        assert w.next().alert.plate == "WNT4567"
        with pytest.raises(queue.Empty):
            other_cam.next(timeout=0.5)
        with pytest.raises(queue.Empty):
            wanted_only.next(timeout=0.3)
    finally:
        w.close()
        other_cam.close()
        wanted_only.close()


def test_no_alert_for_unlisted_plate_and_resend_is_idempotent(hubs: tuple[HubThread, HubThread], cql: Session) -> None:
    a, _ = hubs
    ks = a.config.cassandra.keyspace
    read = ingest(a.target, "ZZZ9999X")
    n = cql.execute(f"SELECT count(*) FROM {ks}.alerts_by_id WHERE read_id = %s ALLOW FILTERING",
                    [uuid.UUID(read.read_id)]).one()[0]  # fmt: skip
    assert n == 0
    hit = ingest(a.target, "ABC1234")
    again = run_stream(a.target, [read_request(hit)])  # the node resends (e.g. lost ack)
    assert hit.read_id in again.acks
    rows = cql.execute(f"SELECT alert_id FROM {ks}.alerts_by_id WHERE read_id = %s ALLOW FILTERING",
                       [uuid.UUID(hit.read_id)]).all()  # fmt: skip
    assert len(rows) == 1


def test_disposition_rules_and_history(hubs: tuple[HubThread, HubThread]) -> None:
    a, b = hubs
    w = Watcher(a.target, filter=alert_pb2.AlertFilter(camera_ids=["cam-disp"]))
    try:
        ingest(b.target, "ABC1234", camera="cam-disp")
        created = w.next()
        aid = created.alert.alert_id
        sa, sb = stub(a.target), stub(b.target)

        def decide(s: alert_pb2_grpc.AlertServiceStub, **kw: Any) -> alert_pb2.DecideAlertResponse:
            return s.DecideAlert(alert_pb2.DecideAlertRequest(alert_id=aid, **kw))

        def refused(code: grpc.StatusCode, text: str, s: alert_pb2_grpc.AlertServiceStub = sa, **kw: Any) -> None:
            with pytest.raises(grpc.RpcError) as e:
                decide(s, **kw)
            assert e.value.code() == code, e.value.details()
            assert text in (e.value.details() or "")

        inv = grpc.StatusCode.INVALID_ARGUMENT
        refused(inv, "officer_id", accept=accept())
        refused(inv, "decision is required", officer_id="o-9")
        refused(inv, "policy 4.2", officer_id="o-9", accept=accept(state_verified=False))
        refused(inv, "leads_check", officer_id="o-9", accept=accept(leads_check=0))
        refused(inv, "action", officer_id="o-9", accept=accept(action=0))
        refused(inv, "policy 4.6", officer_id="o-9", accept=accept(on_other_assignment=True))
        refused(inv, "reject.reason", officer_id="o-9", reject=alert_pb2.Rejection())
        refused(inv, "note", officer_id="o-9", reject=alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_OTHER))
        refused(grpc.StatusCode.FAILED_PRECONDITION, "PENDING", officer_id="o-9", amend=True, note="x",
                reject=alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_MISREAD))  # fmt: skip

        done = decide(sa, officer_id="o-9", accept=accept(on_other_assignment=True, supervisor_notified=True,
                                                          action=alert_pb2.ENFORCEMENT_ACTION_UNABLE_TO_ACT))  # fmt: skip
        assert done.alert.status == alert_pb2.ALERT_STATUS_ACCEPTED
        ev = w.next()
        assert ev.kind == alert_pb2.ALERT_EVENT_KIND_STATUS_CHANGED and ev.alert.disposition.officer_id == "o-9"
        assert ev.alert.disposition.accept.action == alert_pb2.ENFORCEMENT_ACTION_UNABLE_TO_ACT

        # Only a PENDING alert can be decided, whichever replica is asked.
        refused(grpc.StatusCode.FAILED_PRECONDITION, "already ACCEPTED by o-9", s=sb, officer_id="o-2",
                reject=alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_MISREAD))  # fmt: skip
        refused(inv, "amendment needs a note", s=sb, officer_id="o-2", amend=True,
                reject=alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_MISREAD))  # fmt: skip
        amended = decide(sb, officer_id="o-2", amend=True, note="second look: 8 not B",
                         reject=alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_MISREAD))  # fmt: skip
        assert amended.alert.status == alert_pb2.ALERT_STATUS_REJECTED
        got = sa.GetAlert(alert_pb2.GetAlertRequest(alert_id=aid))
        assert got.alert.status == alert_pb2.ALERT_STATUS_REJECTED
        assert [(h.officer_id, h.status, h.amendment) for h in got.history] == [
            ("o-9", alert_pb2.ALERT_STATUS_ACCEPTED, False),
            ("o-2", alert_pb2.ALERT_STATUS_REJECTED, True),
        ]
        # A resent read does not reset the decision.
        listed = sa.ListAlerts(alert_pb2.ListAlertsRequest(filter=alert_pb2.AlertFilter(camera_ids=["cam-disp"])))
        assert [x.status for x in listed.alerts] == [alert_pb2.ALERT_STATUS_REJECTED]
    finally:
        w.close()
    s = stub(a.target)
    for req, code in (
        (alert_pb2.GetAlertRequest(alert_id="nope"), grpc.StatusCode.INVALID_ARGUMENT),
        (alert_pb2.GetAlertRequest(alert_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.RpcError) as e:
            s.GetAlert(req)
        assert e.value.code() == code
    with pytest.raises(grpc.RpcError) as e:
        s.DecideAlert(alert_pb2.DecideAlertRequest(alert_id=str(uuid.uuid4()), officer_id="o", accept=accept()))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        s.ListAlerts(alert_pb2.ListAlertsRequest(hours=5000))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_resumes_from_an_event_and_unattended_alerts_are_counted(hubs: tuple[HubThread, HubThread]) -> None:
    a, b = hubs
    w = Watcher(a.target, filter=alert_pb2.AlertFilter(camera_ids=["cam-resume"]))
    ingest(a.target, "ABC1234", camera="cam-resume")
    first = w.next()
    w.close()
    ingest(b.target, "ABC1234", camera="cam-resume")  # while the watcher is away
    ingest(b.target, "ABC1234", camera="cam-resume")
    again = Watcher(b.target, filter=alert_pb2.AlertFilter(camera_ids=["cam-resume"]), after_event_id=first.event_id)
    try:
        got = [again.next(), again.next()]
        assert all(e.kind == alert_pb2.ALERT_EVENT_KIND_CREATED for e in got)
        assert first.event_id not in {e.event_id for e in got}
    finally:
        again.close()
    with pytest.raises(grpc.RpcError) as e:
        list(stub(a.target).Watch(alert_pb2.WatchRequest(after_event_id="garbage")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(2.2)  # unattended_after_s = 2 in these tests
    listed = stub(a.target).ListAlerts(
        alert_pb2.ListAlertsRequest(unattended_only=True, filter=alert_pb2.AlertFilter(camera_ids=["cam-resume"]))
    )
    assert len(listed.alerts) == 3 and all(x.unattended for x in listed.alerts)
    deadline = time.monotonic() + 5
    while a.metric("alpr_hub_alerts_unattended") < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_one_unattended_threshold_and_counts_over_every_retained_alert(
    hubs: tuple[HubThread, HubThread], cassandra: tuple[list[str], int], cql: Session
) -> None:
    """The hub owns "unattended after" (clients read it from ListAlerts; the bridge has no
    setting of its own), and its pending/unattended gauges count a hit left pending for days,
    not only those of the last 24 h."""
    a, _ = hubs
    assert stub(a.target).ListAlerts(alert_pb2.ListAlertsRequest(limit=1)).unattended_after_s == 2.0
    with pytest.raises(ValueError, match=r"alerts\.unattended_after_s in the hub"):
        BridgeConfig.model_validate({"relay": {"unattended_after_s": 600}})

    # a hit raised three days ago and never decided (e.g. while the console was down)
    three_days = datetime.now(UTC) - timedelta(days=3)
    old = alert_pb2.Alert(alert_id=str(uuid.uuid4()), read_id=str(uuid.uuid4()), plate="OLD1234", region="IL",
                          status=alert_pb2.ALERT_STATUS_PENDING, camera_id="cam-old", node_id="n-old",
                          node_kind=reads_pb2.NODE_KIND_FIXED, capture_time=to_timestamp(three_days),
                          created_time=to_timestamp(three_days), hub_id="hub-a")  # fmt: skip
    store = AlertStore(session=cql, config=a.config)
    asyncio.run(store.create(old, noise_jpeg(60, 20), b"", 86_400 * 57))

    later = HubThread(make_hub_config(cassandra, a.config.cassandra.keyspace, hub_id="hub-later", **FAST)).start()
    try:

        def counted() -> tuple[float, float]:
            return (later.metric("alpr_hub_alerts_pending") - a.metric("alpr_hub_alerts_pending"),
                    later.metric("alpr_hub_alerts_unattended") - a.metric("alpr_hub_alerts_unattended"))  # fmt: skip

        deadline = time.monotonic() + 30
        while counted() != (1.0, 1.0):  # hub-a started before the write: it rescans all days hourly
            assert time.monotonic() < deadline, counted()
            time.sleep(0.2)
        reject = alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_MISREAD)
        stub(later.target).DecideAlert(alert_pb2.DecideAlertRequest(alert_id=old.alert_id, officer_id="o-1",
                                                                    reject=reject))  # fmt: skip
        deadline = time.monotonic() + 30
        while counted() != (0.0, 0.0):  # decided: the re-check drops it
            assert time.monotonic() < deadline, counted()
            time.sleep(0.2)
    finally:
        later.stop(1)


def test_concurrent_deciders_on_two_hubs_exactly_one_wins(hubs: tuple[HubThread, HubThread]) -> None:
    """Two officers decide the same alerts at the same moment on different replicas: for each
    alert exactly one decision is stored (status, latest disposition, history), the other is
    refused naming the winner."""
    a, b = hubs
    reads = [ingest(a.target, "ABC1234", camera="cam-race") for _ in range(12)]
    ids = [str(alert_id_for(r.read_id)) for r in reads]
    sa, sb = stub(a.target), stub(b.target)
    outcomes: dict[tuple[str, str], grpc.StatusCode] = {}
    refusals: dict[str, str] = {}

    def decide(s: alert_pb2_grpc.AlertServiceStub, officer: str, aid: str, gate: threading.Barrier) -> None:
        kw: dict[str, Any] = (
            {"accept": accept()}
            if officer == "o-a"
            else {"reject": alert_pb2.Rejection(reason=alert_pb2.REJECT_REASON_MISREAD)}
        )
        gate.wait()
        try:
            s.DecideAlert(alert_pb2.DecideAlertRequest(alert_id=aid, officer_id=officer, **kw), timeout=30)
            outcomes[(aid, officer)] = grpc.StatusCode.OK
        except grpc.RpcError as e:
            outcomes[(aid, officer)] = e.code()
            refusals[aid] = e.details() or ""

    for aid in ids:
        gate = threading.Barrier(2)
        ts = [threading.Thread(target=decide, args=(s, o, aid, gate)) for s, o in ((sa, "o-a"), (sb, "o-b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    for aid in ids:
        got = {o: outcomes[(aid, o)] for o in ("o-a", "o-b")}
        winners = [o for o, code in got.items() if code == grpc.StatusCode.OK]
        assert len(winners) == 1, got
        loser = "o-b" if winners == ["o-a"] else "o-a"
        assert got[loser] == grpc.StatusCode.FAILED_PRECONDITION, got
        assert f"by {winners[0]}" in refusals[aid], refusals[aid]
        full = sa.GetAlert(alert_pb2.GetAlertRequest(alert_id=aid))
        assert [h.officer_id for h in full.history] == winners
        assert full.alert.disposition.officer_id == winners[0]
        want = alert_pb2.ALERT_STATUS_ACCEPTED if winners == ["o-a"] else alert_pb2.ALERT_STATUS_REJECTED
        assert full.alert.status == want
