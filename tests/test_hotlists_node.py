"""The node's hot-list copy: Subscribe client on SQLite, local matching, shift start."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alpr.v1 import hotlist_pb2

from alpr_common.retry import Backoff
from alpr_common.timestamps import timestamp_in
from node.hotlist_sync import HotListSync
from node.shift_cli import main as shift_main
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import FAST, hotlist_stub
from tests.support import HubThread


@pytest.fixture(scope="module")
def hub(cassandra: tuple[list[str], int]) -> Iterator[HubThread]:
    h = HubThread(make_hub_config(cassandra, fresh_keyspace("nd"), **FAST)).start()
    add(h, "NODE111")
    yield h
    h.stop(1)


def add(h: HubThread, plate: str) -> int:
    return (
        hotlist_stub(h.target)
        .AddEntry(
            hotlist_pb2.AddEntryRequest(
                expire_time=timestamp_in(timedelta(days=30)),
                plate=plate,
                state="IL",
                category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
                reason="test",
                entered_by="o-1",
            )
        )
        .version
    )


def wait(cond: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_sync_applies_snapshot_and_live_deltas_and_survives_restart(hub: HubThread, tmp_path: Path) -> None:
    db = tmp_path / "hotlist.sqlite"
    sync = HotListSync(db, ["127.0.0.1:1", hub.target], node_id="car-7", backoff=Backoff(0.05, 0.2))
    sync.start()
    try:
        assert sync.wait_current(15)
        assert [m.entry.plate for m in sync.match("N0DE111", "IL")] == ["NODE111"]  # look-alike, locally
        v = add(hub, "NODE222")
        wait(lambda: bool(sync.match("NODE222", "IL")))
        wait(lambda: sync.status().version == v and sync.status().current)
        wait(lambda: hub.metric("alpr_hub_node_hotlist_version", {"node_id": "car-7"}) == v)
        assert hub.metric("alpr_hub_node_hotlist_lag_versions", {"node_id": "car-7"}) == 0
    finally:
        sync.stop()
    # Offline: the copy on disk still matches; the version is what was applied.
    offline = HotListSync(db, ["127.0.0.1:1"], node_id="car-7")
    assert offline.status().version == v and offline.match("NODE222", "IL")
    offline.local.close()
    # Back online after a change: catches up from its version.
    v2 = add(hub, "NODE333")
    again = HotListSync(db, [hub.target], node_id="car-7", backoff=Backoff(0.05, 30.0))
    again.start()
    try:
        assert again.wait_current(15)
        wait(lambda: again.status().version == v2)
        assert again.match("NODE333", "IL") and again.status().entries == 3
    finally:
        again.stop()


def test_shift_start_ready_only_when_current(
    hub: HubThread, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALPR_HUB", raising=False)
    rc = shift_main(["shift-start", "--officer", "o-44", "--hub", hub.target, "--state-dir", str(tmp_path),
                     "--node-id", "car-9", "--timeout", "20"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "READY" in out and "is current" in out and (tmp_path / "shift.json").exists()
    rc = shift_main(["shift-start", "--officer", "o-44", "--hub", "127.0.0.1:1", "--state-dir", str(tmp_path),
                     "--node-id", "car-9", "--timeout", "1.5"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 1 and "NOT READY" in err and "cannot reach the hub" in err and "version" in err
    rc = shift_main(["shift-start", "--officer", "o-44", "--state-dir", str(tmp_path)])
    assert rc == 2
