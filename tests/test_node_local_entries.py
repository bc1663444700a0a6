"""An officer enters a plate at the unit while it has no link (policy §2, 4.5): the unit
matches it at once, and when a hub answers the entry becomes a MANUAL entry on the hub,
entered by that officer at that unit, once, and comes back with the hub's versions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from alpr.v1 import hotlist_pb2

from alpr_common.retry import Backoff
from node.cli import main as alpr_node
from node.hotlist_sync import HotListSync, LocalHotList
from tests.hotlist_support import hotlist_stub
from tests.support import HubThread


def _wait(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_an_entry_made_offline_is_matched_then_handed_to_the_hub_once(
    session_hub: HubThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    until = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    args = ["hotlist-add", "OFL4321", "--state", "IL", "--category", "stolen_vehicle", "--expires", until,
            "--officer", "4711", "--state-dir", str(state), "--json"]  # fmt: skip
    # what the policy requires is checked at the unit
    assert alpr_node([*args[:7], "2020-01-01", *args[8:], "--reason", "r"]) == 2
    assert "is past" in capsys.readouterr().err
    assert alpr_node([*args, "--reason", " "]) == 2
    assert "reason" in capsys.readouterr().err
    assert alpr_node([*args, "--reason", "BOLO from dispatch: armed robbery"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["waiting_for_hub"] == 1

    # no link: the unit matches it anyway, and keeps it for the hub
    offline = HotListSync(state / "hotlist.sqlite", ["127.0.0.1:1"], node_id="car-ofl", outbox_interval_s=0.2)
    offline.start()
    try:
        _wait(lambda: offline.local_pending == 1, "the outbox looked at")
        assert offline.match("OFL4321", "IL")  # the unit's own entry, matched offline
    finally:
        offline.stop()

    # the link returns: the hub gets it as a manual entry by the officer, at that unit
    sync = HotListSync(state / "hotlist.sqlite", [session_hub.target], node_id="car-ofl",
                       backoff=Backoff(0.05, 0.5), outbox_interval_s=0.2)  # fmt: skip
    sync.start()
    try:
        _wait(lambda: sync.local_pending == 0 and sync.status().current, "entry handed over and the copy current")
        e = hotlist_stub(session_hub.target).GetEntry(hotlist_pb2.GetEntryRequest(entry_id=made["entry_id"])).entry
        assert e.plate == "OFL4321" and e.source == hotlist_pb2.HOT_LIST_SOURCE_MANUAL and e.entered_by == "4711"
        assert e.reason == "BOLO from dispatch: armed robbery" and "car-ofl" in e.details
        assert e.expire_time.ToDatetime(UTC).date().isoformat() == until
        assert sync.match("OFL4321", "IL")  # now as the hub's entry, from its versions
        held = {x.entry_id for x in sync.local.entries()}
        assert made["entry_id"] in held
    finally:
        sync.stop()
    local = LocalHotList(state / "hotlist.sqlite")
    try:
        assert local.outbox() == []
    finally:
        local.close()

    # a resend (the answer was lost) changes nothing on the hub
    stub = hotlist_stub(session_hub.target)
    before = stub.GetVersion(hotlist_pb2.GetVersionRequest()).version
    resend = hotlist_pb2.LocalEntry(local_id=made["entry_id"].split(":", 1)[1], plate="OFL4321", state="IL",
                                    category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE, reason="again",
                                    officer_id="4711")  # fmt: skip
    resend.entered_time.GetCurrentTime()
    resend.expire_time.FromDatetime(datetime.now(UTC) + timedelta(days=7))
    again = stub.SubmitLocalEntries(hotlist_pb2.SubmitLocalEntriesRequest(node_id="car-ofl", entries=[resend]))
    assert again.entries[0].reason == "BOLO from dispatch: armed robbery"
    assert stub.GetVersion(hotlist_pb2.GetVersionRequest()).version == before
    # and an entry without a reason is refused by the hub too
    resend.local_id, resend.reason = "00000000-0000-4000-8000-000000000001", ""
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitLocalEntries(hotlist_pb2.SubmitLocalEntriesRequest(node_id="car-ofl", entries=[resend]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "4.5" in str(err.value.details())
