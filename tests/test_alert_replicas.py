"""Alert events pushed between hub replicas (real hubs on loopback ports, the real Cassandra):
a peer's watchers hear at once, the feed still delivers when a peer is down, and only a hub's
certificate may push."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, hotlist_pb2_grpc
from cassandra.cluster import Session

from alpr_common.operator_cli import main as alpr
from alpr_common.timestamps import timestamp_in
from alpr_common.tls import channel_credentials
from hub.alerts import alert_id_for
from hub.users import UserStore
from tests.access_support import call, drop_keyspace, rpc_code, slow_ok
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import hotlist_stub
from tests.support import HubThread
from tests.test_alerts import Watcher, accept, ingest, stub

STOLEN = hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE
# Long enough that a watcher hearing within seconds did not hear by polling the feed.
NO_POLL = {"feed_poll_interval_s": 60.0}
POLL = {"feed_poll_interval_s": 0.05}


def fanout_count(h: HubThread, path: str) -> float:
    return h.metric("alpr_hub_alert_fanout_seconds_count", {"path": path})


def list_plate(target: str, plate: str, *others: str) -> None:
    """Put ``plate`` on the list through ``target``; wait until every hub in ``others`` has it."""
    v = (
        hotlist_stub(target)
        .AddEntry(
            hotlist_pb2.AddEntryRequest(
                plate=plate,
                state="IL",
                category=STOLEN,
                reason="t",
                expire_time=timestamp_in(timedelta(days=30)),
                entered_by="o-1",
            )
        )
        .version
    )
    for o in others:
        deadline = time.monotonic() + 15
        while hotlist_stub(o).GetVersion(hotlist_pb2.GetVersionRequest()).version < v:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.fixture(scope="module")
def trio(cassandra: tuple[list[str], int], cql: Session) -> Iterator[tuple[HubThread, HubThread, HubThread]]:
    """B polls the feed only every minute; A pushes to B; C pushes to a peer that is not there."""
    ks = fresh_keyspace("push")
    fast = {"hotlists": {"poll_interval_s": 0.05}}
    b = HubThread(make_hub_config(cassandra, ks, hub_id="hub-b", alerts=NO_POLL, **fast)).start()
    a = HubThread(make_hub_config(cassandra, ks, hub_id="hub-a", alerts={**POLL, "peers": [b.target]}, **fast))
    c = HubThread(make_hub_config(cassandra, ks, hub_id="hub-c", alerts={**POLL, "peers": ["127.0.0.1:1"]}, **fast))
    a.start()
    c.start()
    list_plate(a.target, "PSH1234", b.target, c.target)
    time.sleep(0.5)  # B's first (start-up) feed poll is behind it
    yield a, b, c
    for h in (a, b, c):
        h.stop(1)
    drop_keyspace(cql, ks)


def test_alert_and_decision_pushed_to_the_peers_watcher(trio: tuple[HubThread, HubThread, HubThread]) -> None:
    a, b, _ = trio
    on_b, on_a = Watcher(b.target), Watcher(a.target)
    try:
        polled = fanout_count(b, "feed")
        read = ingest(a.target, "PSH1234", camera="cam-push")
        ev = on_b.next(timeout=3)  # B polls the feed once a minute: only the push brings it this soon
        assert ev.kind == alert_pb2.ALERT_EVENT_KIND_CREATED and ev.alert.read_id == read.read_id
        assert ev.alert.hub_id == "hub-a" and ev.alert.matches[0].entry.plate == "PSH1234"
        mine = on_a.next(timeout=3)  # the raising hub's own watcher, from memory
        assert mine.event_id == ev.event_id
        assert fanout_count(b, "peer") >= 1 and fanout_count(b, "feed") == polled
        assert fanout_count(a, "local") >= 1
        # The pushed event is the feed's event: resuming from it on B replays nothing twice.
        stub(a.target).DecideAlert(
            alert_pb2.DecideAlertRequest(alert_id=ev.alert.alert_id, officer_id="o-1", accept=accept())
        )
        changed = on_b.next(timeout=3)
        assert changed.kind == alert_pb2.ALERT_EVENT_KIND_STATUS_CHANGED
        assert changed.alert.status == alert_pb2.ALERT_STATUS_ACCEPTED and changed.alert.disposition.officer_id == "o-1"
        assert on_a.next(timeout=3).event_id == changed.event_id
    finally:
        on_b.close()
        on_a.close()


def test_peer_down_the_feed_still_delivers(trio: tuple[HubThread, HubThread, HubThread]) -> None:
    a, _, c = trio
    on_a = Watcher(a.target)
    try:
        read = ingest(c.target, "PSH1234", camera="cam-peer-down")  # C's only peer refuses connections
        ev = on_a.next(timeout=5)  # A hears by polling the feed
        assert ev.alert.read_id == read.read_id and ev.alert.hub_id == "hub-c"
        deadline = time.monotonic() + 5
        while c.metric("alpr_hub_alert_pushes_total", {"result": "failed"}) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert fanout_count(a, "feed") >= 1
    finally:
        on_a.close()


def test_bad_pushed_events_are_refused(trio: tuple[HubThread, HubThread, HubThread]) -> None:
    _, b, _ = trio
    replica = alert_pb2_grpc.AlertReplicaServiceStub(grpc.insecure_channel(b.target))
    good = alert_pb2.WatchResponse(
        event_id="8a6f6e2e-1d4b-11ef-8000-000000000001",
        kind=alert_pb2.ALERT_EVENT_KIND_CREATED,
        alert=alert_pb2.Alert(alert_id="5d7f0c8e-6a51-4d3e-9d37-0c5b1f3a9e21"),
    )
    for bad, says in (
        (alert_pb2.WatchResponse(event_id="x", kind=good.kind, alert=good.alert), "not a UUID"),
        (alert_pb2.WatchResponse(event_id="5d7f0c8e-6a51-4d3e-9d37-0c5b1f3a9e21", kind=good.kind, alert=good.alert),
         "version 1"),
        (alert_pb2.WatchResponse(event_id=good.event_id, alert=good.alert), "kind"),
    ):  # fmt: skip
        req = alert_pb2.PushEventsRequest(hub_id="h", events=[good, bad])
        code, details = rpc_code(lambda req=req: replica.PushEvents(req))  # type: ignore[misc]
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "events[1]" in details and says in details, details
    code, details = rpc_code(lambda: replica.PushEvents(alert_pb2.PushEventsRequest(hub_id="h")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "events" in details


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    assert alpr(["certs", "init", "--dir", str(d / "ca")]) == 0
    for name in ("hub-a", "hub-b"):
        assert alpr(["certs", "issue", name, "--kind", "service", "--ca-dir", str(d / "ca"), "--out", str(d),
                     "--host", "127.0.0.1", "--host", "localhost"]) == 0  # fmt: skip
    assert alpr(["certs", "issue", "console", "--kind", "service", "--ca-dir", str(d / "ca"), "--out", str(d)]) == 0
    return d


def test_push_over_mutual_tls_only_from_a_hub_certificate(
    cassandra: tuple[list[str], int], cql: Session, pki: Path
) -> None:
    ks = fresh_keyspace("pushtls")

    def tls(name: str) -> dict[str, Any]:
        return {"cert_file": str(pki / f"{name}.crt"), "key_file": str(pki / f"{name}.key"),
                "ca_file": str(pki / "ca" / "ca.crt"), "enabled": True}  # fmt: skip

    auth = {"enabled": True, "services": {"hub-a": "hub"}}
    b = HubThread(slow_ok(make_hub_config(cassandra, ks, hub_id="hub-b", tls=tls("hub-b"), auth=auth,
                                          alerts=NO_POLL))).start()  # fmt: skip
    a = HubThread(slow_ok(make_hub_config(cassandra, ks, hub_id="hub-a", tls=tls("hub-a"), auth=auth,
                                          alerts={**POLL, "peers": [f"localhost:{b.port}"]}))).start()  # fmt: skip
    # Reads arrive through a third hub on the keyspace without auth (a stand-in node path).
    open_hub = HubThread(slow_ok(make_hub_config(cassandra, ks, hub_id="ingest-hub", alerts=POLL)))
    try:
        users = UserStore(session=cql, cassandra=b.config.cassandra)
        officer = users.add_user_sync("off-1", "officer", "officer", "test")
        supervisor = users.add_user_sync("sup-1", "supervisor", "supervisor", "test")
        creds = channel_credentials(str(pki / "ca" / "ca.crt"), str(pki / "console.crt"), str(pki / "console.key"))
        to_b = grpc.secure_channel(f"localhost:{b.port}", creds)
        to_a = grpc.secure_channel(f"localhost:{a.port}", creds)
        v = call(hotlist_pb2_grpc.HotListServiceStub(to_a).AddEntry, hotlist_pb2.AddEntryRequest(
            plate="TLS1234", state="IL", category=STOLEN, reason="t", expire_time=timestamp_in(timedelta(days=30)), entered_by="sup-1"), supervisor).version  # fmt: skip
        open_hub.start()
        deadline = time.monotonic() + 15
        while hotlist_stub(open_hub.target).GetVersion(hotlist_pb2.GetVersionRequest()).version < v:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # B's start-up feed poll is behind it
        md = (("authorization", f"Bearer {officer}"),)
        watch = alert_pb2_grpc.AlertServiceStub(to_b).Watch(alert_pb2.WatchRequest(), metadata=md)
        watch.initial_metadata()
        read = ingest(open_hub.target, "TLS1234", camera="cam-tls")
        # A decision on A (the alert was stored before its ack) is pushed to B over mutual TLS
        # with A's certificate; B polls the feed once a minute.
        decide = alert_pb2.DecideAlertRequest(alert_id=str(alert_id_for(read.read_id)), accept=accept())
        call(alert_pb2_grpc.AlertServiceStub(to_a).DecideAlert, decide, officer)
        ev = next(e for e in watch if e.kind == alert_pb2.ALERT_EVENT_KIND_STATUS_CHANGED)
        assert ev.alert.read_id == read.read_id and ev.alert.disposition.officer_id == "off-1"
        watch.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped
        assert b.metric("alpr_hub_alert_fanout_seconds_count", {"path": "peer"}) >= 1
        assert a.metric("alpr_hub_alert_pushes_total", {"result": "ok"}) >= 1
        # Another service certificate (not listed as a hub) may not push.
        code, details = rpc_code(lambda: alert_pb2_grpc.AlertReplicaServiceStub(to_b).PushEvents(
            alert_pb2.PushEventsRequest(hub_id="console", events=[ev])))  # fmt: skip
        assert code == grpc.StatusCode.PERMISSION_DENIED and "hub" in details, details
        to_a.close()
        to_b.close()
    finally:
        open_hub.stop(1)
        a.stop(1)
        b.stop(1)
        drop_keyspace(cql, ks)
