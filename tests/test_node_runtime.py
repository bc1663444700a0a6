"""The node runtime end to end with a real hub: local hot-list alert while the hub is down,
reads delivered once it is back, status and self-check.

The recognizer here is a scripted stand-in (it reads the plate text from a marker in the
image) so that the test is about the runtime; the real models are exercised by the
pipeline test and tests/test_recognition.py.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from alpr.v1 import hotlist_pb2
from cassandra.cluster import Session

from alpr_common.retry import Backoff
from alpr_common.timestamps import timestamp_in
from node.config import NodeConfig
from node.hotlist_sync import HotListSync
from node.recognition.types import Box, FrameRecognizer, Image, PlateResult
from node.runtime import NodeRuntime
from node.runtime_cli import main as node_cli
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import FAST, hotlist_stub
from tests.support import HubThread, stored_ids

PLATES = ["HOT1234", "ABC5678", "X"]  # X is junk: the plate-format rules drop it


class MarkerRecognizer(FrameRecognizer):
    """Finds one plate per image; its text is encoded in the first pixel row."""

    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        index = int(frame[0, 0, 0]) // 10
        text = PLATES[index]
        crop = frame[200:240, 100:220]
        return [PlateResult((100, 200, 220, 240), 0.9, text, 0.95, (0.95,) * len(text), "IL", 0.9, crop)]

    def versions(self) -> dict[str, str]:
        return {"detector": "marker", "ocr": "marker", "state_classifier": "marker"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(len(PLATES)):
        img = np.full((480, 640, 3), 60, np.uint8)
        img[0, :, :] = i * 10
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


def node_config(tmp_path: Path, folder: Path, port: int, alert_file: Path) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "insecure_dev": True,  # the test hub is a plain-text development hub
            "node_id": "car-7",
            "kind": "FIXED",
            "state_dir": str(tmp_path / "state"),
            "location": {"latitude": 41.52, "longitude": -88.08},
            "cameras": [{"camera_id": "car-7-front", "source": str(folder)}],
            "hub": {"targets": [f"127.0.0.1:{port}"], "backoff_initial_s": 0.1, "backoff_max_s": 0.5,
                    "heartbeat_interval_s": 1},
            "tracker": {"min_hits": 1},
            "plate_formats": {"patterns": {"IL": ["^[A-Z]{1,3}[0-9]{1,5}$"]}},
            "alerts": {"command": [sys.executable, "-c",
                                   f"import sys; open({str(alert_file)!r}, 'a').write(sys.stdin.read() + '\\n')"]},
            "metrics_port": 0,
        }
    )  # fmt: skip


def test_local_alert_while_hub_is_down_then_reads_delivered(
    cassandra: tuple[list[str], int], cql: Session, tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ks = fresh_keyspace("node")
    port = free_port()
    hub = HubThread(make_hub_config(cassandra, ks, grpc_port=port, **FAST)).start()
    hotlist_stub(hub.target).AddEntry(
        hotlist_pb2.AddEntryRequest(
            expire_time=timestamp_in(timedelta(days=30)),
            plate="HOT1234",
            state="IL",
            category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
            reason="stolen from lot 4",
            entered_by="officer-9",
        )
    )
    alert_file = tmp_path / "alerts.jsonl"
    cfg = node_config(tmp_path, scenes, port, alert_file)
    # shift start: bring the local hot list up to date, then the hub goes away
    sync = HotListSync(cfg.hotlist_path(), cfg.hub.targets, cfg.node_id, backoff=Backoff(0.1, 30.0))
    assert sync.sync_once(30).current
    sync.local.close()
    hub.stop(1)

    runtime = NodeRuntime(cfg, recognizer=MarkerRecognizer()).start()
    try:
        assert runtime.wait_sources_done(30)
        deadline = time.time() + 10
        while not alert_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        out = capsys.readouterr().out
        assert "HOT-LIST HIT: HOT1234 on car-7-front" in out
        alert = json.loads(alert_file.read_text().splitlines()[0])
        assert alert["plate"] == "HOT1234" and alert["match"] == "EXACT" and alert["category"]
        assert [e.read.plate_text for e in runtime.emitted] == ["HOT1234", "ABC5678"]  # X dropped as junk
        assert runtime.queue.depth() == 2 and not runtime.uplink.connected
        runtime._write_status()
        assert node_cli(["status", "--state-dir", cfg.state_dir]) == 0
        assert "queue: 2 read(s) waiting" in capsys.readouterr().out

        hub = HubThread(make_hub_config(cassandra, ks, grpc_port=port, **FAST)).start()  # the hub is back
        deadline = time.time() + 30
        while runtime.queue.depth() and time.time() < deadline:
            time.sleep(0.1)
        assert runtime.queue.depth() == 0
        ids = [e.read.read_id for e in runtime.emitted]
        assert stored_ids(cql, ks, ids) == set(ids)
        row = cql.execute(f"SELECT plate, node_kind, latitude, frame_jpeg FROM {ks}.reads_by_id WHERE read_id = %s",
                          [__import__("uuid").UUID(ids[0])]).one()  # fmt: skip
        assert row.plate == "HOT1234" and row.node_kind == "FIXED" and abs(row.latitude - 41.52) < 1e-9
        assert row.frame_jpeg[:3] == b"\xff\xd8\xff"
    finally:
        runtime.stop(drain_s=1)
        hub.stop(1)
        cql.execute(f"DROP KEYSPACE IF EXISTS {ks}")


def test_validate_config_and_self_check_problems(tmp_path: Path, scenes: Path) -> None:
    bad = tmp_path / "node.yaml"
    bad.write_text("node_id: n1\nkind: MOBILE\ncameras: [{camera_id: c1, source: x.mp4}]\n")
    assert node_cli(["run", "--validate-config", str(bad)]) == 2  # MOBILE without GPS
    good = tmp_path / "good.yaml"
    good.write_text(
        f"node_id: n1\nlocation: {{latitude: 1, longitude: 2}}\ncameras: [{{camera_id: c1, source: {scenes}}}]\n"
    )
    assert node_cli(["run", "--validate-config", str(good)]) == 2  # no TLS to the hub, no insecure_dev
    good.write_text(good.read_text() + "insecure_dev: true\n")
    assert node_cli(["run", "--validate-config", str(good)]) == 0
    cfg = NodeConfig.model_validate(
        {"insecure_dev": True, "node_id": "n2", "state_dir": str(tmp_path / "s"), "location": {"latitude": 1, "longitude": 2},
         "cameras": [{"camera_id": "c1", "source": str(tmp_path / "missing.mp4")}], "metrics_port": -1,
         "hub": {"targets": ["127.0.0.1:1"]}}
    )  # fmt: skip
    runtime = NodeRuntime(cfg, recognizer=MarkerRecognizer()).start()
    try:
        runtime.wait_sources_done(10)
        problems = runtime.problems()
        assert any("does not exist" in p for p in problems)
        assert any("hot list not confirmed current" in p for p in problems)
        hb = runtime.heartbeat()
        assert hb.node_id == "n2" and not hb.cameras[0].ok and hb.problems
    finally:
        runtime.stop(drain_s=0)
