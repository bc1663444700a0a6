"""Hot lists against a real Cassandra and two real hub replicas: import and its delta,
manual entries, monotonic versions across replicas, Subscribe with resume, lag metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from alpr.v1 import hotlist_pb2
from cassandra.cluster import Session

from alpr_common.timestamps import timestamp_in
from hub.hotlists.store import BATCH_BYTES, BATCH_ROWS, sized_batches
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import FAST, SAMPLES, Subscription, hotlist_stub, import_ok, import_refused
from tests.support import HubThread

LEADS = hotlist_pb2.IMPORT_FORMAT_IL_LEADS
SOS = hotlist_pb2.IMPORT_FORMAT_IL_SOS
CSV = hotlist_pb2.IMPORT_FORMAT_CSV
SRC_LEADS = hotlist_pb2.HOT_LIST_SOURCE_LEADS
SRC_SOS = hotlist_pb2.HOT_LIST_SOURCE_STATE_SOS
SRC_SCOFF = hotlist_pb2.HOT_LIST_SOURCE_SCOFFLAW


@pytest.fixture(scope="module")
def hubs(cassandra: tuple[list[str], int]) -> Iterator[tuple[HubThread, HubThread]]:
    ks = fresh_keyspace("hl")
    a = HubThread(make_hub_config(cassandra, ks, hub_id="hub-a", **FAST)).start()
    b = HubThread(make_hub_config(cassandra, ks, hub_id="hub-b", **FAST)).start()
    yield a, b
    a.stop(1)
    b.stop(1)


def version(target: str) -> int:
    return hotlist_stub(target).GetVersion(hotlist_pb2.GetVersionRequest()).version


def add(target: str, plate: str, **kw: Any) -> hotlist_pb2.AddEntryResponse:
    req = hotlist_pb2.AddEntryRequest(
        plate=plate,
        state=kw.pop("state", "IL"),
        category=kw.pop("category", hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE),
        reason=kw.pop("reason", "seen leaving a burglary"),
        entered_by=kw.pop("entered_by", "officer-7"),
        expire_time=kw.pop("expire_time", timestamp_in(timedelta(days=30))),
        **kw,
    )
    return hotlist_stub(target).AddEntry(req)


def test_import_reports_bad_rows_and_imports_nothing_without_skip_bad(hubs: tuple[HubThread, HubThread]) -> None:
    a, _ = hubs
    before = version(a.target)
    err = import_refused(a.target, (SAMPLES / "il_leads_sample.txt").read_bytes(), LEADS, SRC_LEADS)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "--skip-bad" in err.details and "line 34" in err.details
    result = err.result
    assert result is not None and [b.line for b in result.bad_rows] == [34, 46] and result.version == 0
    assert version(a.target) == before


def test_full_import_then_delta(hubs: tuple[HubThread, HubThread], tmp_path: Path) -> None:
    a, b = hubs
    data = (SAMPLES / "il_leads_sample.txt").read_bytes()
    before = version(a.target)
    result = import_ok(a.target, data, LEADS, SRC_LEADS, skip_bad=True)
    assert (result.rows, result.added, result.changed, result.removed) == (62, 60, 0, 0)
    assert result.version == before + 1 and len(result.bad_rows) == 2
    # The entry keeps the vehicle description and the record number; visible on the other replica.
    e = hotlist_stub(b.target).GetEntry(hotlist_pb2.GetEntryRequest(entry_id="LEADS:IL:601815V:V23A0968")).entry
    assert (e.vehicle.make, e.vehicle.color, e.vehicle.year, e.source_record_id) == ("JEEP", "WHI", "13", "V23A0968")
    assert e.category == hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE and e.version == result.version

    # Same file again: nothing to do, no new version.
    again = import_ok(b.target, data, LEADS, SRC_LEADS, skip_bad=True)
    assert (again.unchanged, again.added, again.changed, again.removed, again.version) == (
        60, 0, 0, 0, 0,
    )  # fmt: skip

    # Next extract: two records gone, one colour changed, one new record.
    lines = data.decode().splitlines()
    kept = [ln for ln in lines if not ln.startswith(("HX90996", "Y219935"))]
    kept = [ln.replace("VCO/MAR", "VCO/RED") if ln.startswith("XD826330") else ln for ln in kept]
    kept.append("NEW1234 ILPCSTOLEN VYR/20 VMA/FORD VMO/F15 VST/PK VCO/BLK     DOT/010125 LDS/V99A0001")
    dry = import_ok(b.target, ("\n".join(kept) + "\n").encode(), LEADS, SRC_LEADS, skip_bad=True, dry_run=True)
    assert dry.dry_run and dry.version == 0 and (dry.added, dry.changed, dry.removed) == (1, 1, 2)
    delta = import_ok(b.target, ("\n".join(kept) + "\n").encode(), LEADS, SRC_LEADS, skip_bad=True)
    assert (delta.added, delta.changed, delta.removed, delta.unchanged) == (1, 1, 2, 57)
    assert delta.version == result.version + 1
    stub = hotlist_stub(a.target)
    with pytest.raises(grpc.RpcError) as gone:
        stub.GetEntry(hotlist_pb2.GetEntryRequest(entry_id="LEADS:IL:HX90996:W13B9353"))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    listed = stub.ListEntries(hotlist_pb2.ListEntriesRequest(plate="xd826330")).entries
    assert [x.vehicle.color for x in listed] == ["RED"]


def test_sos_and_csv_imports(hubs: tuple[HubThread, HubThread]) -> None:
    a, _ = hubs
    sos = import_ok(a.target, (SAMPLES / "il_sos_sample.txt").read_bytes(), SOS, SRC_SOS)
    assert sos.added == 40 and not sos.bad_rows
    e = hotlist_stub(a.target).ListEntries(hotlist_pb2.ListEntriesRequest(plate="X305652")).entries[0]
    assert e.category == hotlist_pb2.HOT_LIST_CATEGORY_REGISTRATION_SUSPENDED and "0127" in e.details
    csv_data = (SAMPLES / "scofflaw_sample.csv").read_bytes()
    err = import_refused(a.target, csv_data, CSV, SRC_SCOFF)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "line 32" in err.details
    assert import_ok(a.target, csv_data, CSV, SRC_SCOFF, skip_bad=True).added == 30
    # A CSV whose rows claim another source is refused row by row.
    bad = b"plate,state,category,source\nABC123,IL,other,leads\n"
    err = import_refused(a.target, bad, CSV, SRC_SCOFF)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.result is not None and "differs" in err.result.bad_rows[0].message
    err = import_refused(a.target, b"plate,state,colour\n", CSV, SRC_SCOFF)
    assert "unknown column" in err.details and "category" in err.details
    err = import_refused(a.target, b"x", CSV, hotlist_pb2.HOT_LIST_SOURCE_MANUAL)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "hotlist add" in err.details


def test_manual_entry_rules(hubs: tuple[HubThread, HubThread]) -> None:
    a, b = hubs
    resp = add(a.target, "man-001")
    e = resp.entry
    assert e.plate == "MAN001" and e.source == hotlist_pb2.HOT_LIST_SOURCE_MANUAL and e.entered_by == "officer-7"
    days = (e.expire_time.seconds - e.entered_time.seconds) / 86400
    assert abs(days - 30) < 0.01  # as entered
    without = hotlist_pb2.AddEntryRequest(plate="MAN003", state="IL", reason="r", entered_by="o",
                                          category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE)  # fmt: skip
    with pytest.raises(grpc.RpcError) as err:
        hotlist_stub(a.target).AddEntry(without)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expire_time is required" in str(
        err.value.details()
    )
    for kw, field in (({"reason": " "}, "reason"), ({"entered_by": ""}, "entered_by"),
                      ({"state": "ILL"}, "state"), ({"category": 0}, "category")):  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            add(a.target, "MAN002", **kw)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        add(a.target, "BAD!!")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub = hotlist_stub(b.target)
    with pytest.raises(grpc.RpcError) as err:
        stub.RemoveEntry(hotlist_pb2.RemoveEntryRequest(entry_id=e.entry_id, removed_by="sgt-1"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in (err.value.details() or "")
    removed = stub.RemoveEntry(
        hotlist_pb2.RemoveEntryRequest(entry_id=e.entry_id, reason="vehicle recovered", removed_by="sgt-1")
    )
    assert removed.version == resp.version + 1 or removed.version > resp.version
    with pytest.raises(grpc.RpcError) as err:
        stub.RemoveEntry(hotlist_pb2.RemoveEntryRequest(entry_id=e.entry_id, reason="again", removed_by="sgt-1"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_versions_stay_monotonic_and_gap_free_across_replicas(hubs: tuple[HubThread, HubThread], cql: Session) -> None:
    a, b = hubs
    got: list[int] = []
    lock = threading.Lock()

    def writer(target: str, n: int) -> None:
        for i in range(n):
            v = add(target, f"RACE{target[-2:]}{i}").version
            with lock:
                got.append(v)

    threads = [threading.Thread(target=writer, args=(h.target, 8)) for h in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 32 and len(set(got)) == 32, sorted(got)
    ks = a.config.cassandra.keyspace
    all_versions = sorted(r.version for r in cql.execute(f"SELECT version FROM {ks}.hotlist_versions WHERE log='main'"))
    assert all_versions == list(range(1, len(all_versions) + 1))  # no gaps, no repeats
    assert set(got) <= set(all_versions)


def test_subscribe_snapshot_deltas_resume_and_lag_metric(hubs: tuple[HubThread, HubThread]) -> None:
    a, b = hubs
    current = version(a.target)
    sub = Subscription(a.target, "car-12", 0)
    try:
        got = sub.until_current(current)
        kinds = [r.WhichOneof("payload") for r in got]
        assert kinds[0] == "snapshot_begin" and "snapshot_end" in kinds
        snap_v = got[0].snapshot_begin.version
        n = sum(len(r.snapshot_chunk.entries) for r in got if r.WhichOneof("payload") == "snapshot_chunk")
        assert n == got[0].snapshot_begin.entry_count > 0
        sub.ack(snap_v)
        _wait(lambda: a.metric("alpr_hub_node_hotlist_lag_versions", {"node_id": "car-12"}) == 0 and a.metric(
            "alpr_hub_node_hotlist_version", {"node_id": "car-12"}) == snap_v)  # fmt: skip

        # A change made on the other replica reaches this subscriber as a delta.
        t0 = time.monotonic()
        new = add(b.target, "LIVE123").version
        got = sub.until_current(new)
        deltas = [r.delta for r in got if r.WhichOneof("payload") == "delta"]
        assert deltas[-1].version == new and deltas[-1].changes[0].entry.plate == "LIVE123"
        assert time.monotonic() - t0 < 2.0
        # Not acked yet: one version behind, and the age counts.
        _wait(lambda: a.metric("alpr_hub_node_hotlist_lag_versions", {"node_id": "car-12"}) == 1)
        sub.ack(new)
        _wait(lambda: a.metric("alpr_hub_node_hotlist_lag_versions", {"node_id": "car-12"}) == 0)
        assert a.metric("alpr_hub_node_hotlist_age_seconds", {"node_id": "car-12"}) == 0
    finally:
        sub.close()

    # Resume on the other hub from the version held: only the missing deltas, no snapshot.
    later = add(a.target, "LATE123").version
    sub = Subscription(b.target, "car-12", new)
    try:
        got = sub.until_current(later)
        kinds = [r.WhichOneof("payload") for r in got]
        assert "snapshot_begin" not in kinds
        assert [r.delta.version for r in got if r.WhichOneof("payload") == "delta"] == list(range(new + 1, later + 1))
    finally:
        sub.close()


def test_subscribe_validation(hubs: tuple[HubThread, HubThread]) -> None:
    a, _ = hubs
    sub = Subscription(a.target, "", 0)
    _wait(lambda: sub.error is not None)
    assert sub.error is not None
    assert sub.error.code() == grpc.StatusCode.INVALID_ARGUMENT and "node_id" in (sub.error.details() or "")
    sub.close()


def _wait(cond: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_version_left_half_applied_by_a_crashed_hub_is_completed(
    hubs: tuple[HubThread, HubThread], cassandra: tuple[list[str], int]
) -> None:
    """A hub claims a version and dies before writing hotlist_entries: the next hub to start finishes it."""
    import asyncio

    from alpr_common.hotlist_model import HotListEntry
    from hub.hotlists.store import UPSERT, Change

    a, _ = hubs
    hub_a = a.hub
    assert hub_a is not None
    store = hub_a.mirror.store
    e = HotListEntry("MANUAL:crash-test", "CRASH12", "IL", "OTHER", "MANUAL", reason="r", entered_by="o")

    async def half_commit() -> int:
        prepared = await store.write_changes([Change(UPSERT, e.entry_id, e)])
        return await store.claim(prepared, "o", "crash test")  # ... and no finish()

    v = asyncio.run_coroutine_threadsafe(half_commit(), a.loop).result(30)
    with pytest.raises(grpc.RpcError):
        hotlist_stub(a.target).GetEntry(hotlist_pb2.GetEntryRequest(entry_id=e.entry_id))
    c = HubThread(make_hub_config(cassandra, a.config.cassandra.keyspace, hub_id="hub-c", **FAST)).start()
    try:
        got = hotlist_stub(c.target).GetEntry(hotlist_pb2.GetEntryRequest(entry_id=e.entry_id)).entry
        assert got.plate == "CRASH12" and got.version == v
        _wait(lambda: bool(hub_a.mirror.matcher.by_plate("CRASH12")))  # the log reached every mirror anyway
    finally:
        c.stop(1)


def test_one_import_per_source_at_a_time(hubs: tuple[HubThread, HubThread]) -> None:
    import asyncio

    a, b = hubs
    hub_a = a.hub
    assert hub_a is not None
    store = hub_a.mirror.store
    assert (
        asyncio.run_coroutine_threadsafe(store.lock_import("SCOFFLAW", "someone on hub-x"), a.loop).result(10) is None
    )
    try:
        err = import_refused(b.target, b"plate,state,category\nLCK123,IL,other\n", CSV, SRC_SCOFF)
        assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "someone on hub-x" in err.details
        res = import_ok(b.target, b"plate,state,category\nLCK123,IL,other\n", CSV, SRC_SCOFF, dry_run=True)
        assert res.dry_run  # a dry run changes nothing: no lock needed
    finally:
        asyncio.run_coroutine_threadsafe(store.unlock_import("SCOFFLAW", "someone on hub-x"), a.loop).result(10)


def test_entry_batches_stay_small_whatever_the_entries_carry() -> None:
    """Rows of one partition go in batches of at most BATCH_ROWS rows and about BATCH_BYTES, so
    entries with long texts never reach Cassandra's batch size limit; nothing is dropped or reordered."""

    def rows(n: int, size: int) -> list[tuple[Any, Any, int]]:
        return [(None, {"i": i}, size) for i in range(n)]

    cut = sized_batches(rows(450, 200))
    n = BATCH_BYTES // 200
    assert [len(b) for b in cut] == [n, n, 450 - 2 * n]
    assert [v["i"] for b in cut for _, v in b] == list(range(450))
    assert [len(b) for b in sized_batches(rows(450, 1))] == [BATCH_ROWS, BATCH_ROWS, 450 - 2 * BATCH_ROWS]
    assert [len(b) for b in sized_batches(rows(3, BATCH_BYTES + 1))] == [1, 1, 1]
