"""An officer's commands on the unit: shift-end puts it off shift, report-damage makes the
damage a self-check problem (so the help desk gets a ticket, policy 4.8) until repaired."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.tickets import problems_of
from node.cli import main as alpr_node
from node.config import NodeConfig
from node.runtime import NodeRuntime
from node.shift import on_shift
from tests.test_node_longrun import OneRecognizer


def test_shift_end_and_damage_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((48, 64, 3), 60, np.uint8))
    config = tmp_path / "node.yaml"
    config.write_text(json.dumps({
        "insecure_dev": True, "node_id": "car-12", "kind": "MOBILE", "state_dir": str(state), "gps": {"source": "file:/nonexistent"},
        "cameras": [{"camera_id": "car-12-front", "source": str(still)}],
        "hub": {"targets": ["127.0.0.1:1"]}, "hotlist": {"enabled": False}, "metrics_port": -1,
    }))  # fmt: skip
    assert alpr_node(["shift-end", "--officer", "o-5", "--config", str(config)]) == 0
    assert on_shift(state) is False and "off shift" in capsys.readouterr().out

    assert alpr_node(["report-damage", "--officer", "o-5", "--config", str(config), "--note", " "]) == 2
    assert alpr_node(["report-damage", "--officer", "o-5", "--config", str(config),
                      "--note", "front camera hit, lens cracked"]) == 0  # fmt: skip
    runtime = NodeRuntime(NodeConfig.model_validate_json(config.read_text()), recognizer=OneRecognizer())
    try:
        hb = runtime.heartbeat()
        damage = [p for p in hb.problems if p.startswith("damage reported by officer o-5")]
        assert damage and damage[0].endswith("front camera hit, lens cracked")
        # the bridge opens a ticket for it
        from alpr.v1 import fleet_pb2

        status = fleet_pb2.NodeStatus(node_id="car-12", detector_ok=True, disk_free_bytes=2**40,
                                      problems=list(hb.problems))  # fmt: skip
        status.last_heartbeat_time.FromDatetime(datetime.now(UTC))
        bridge = BridgeConfig.model_validate({})
        assert any(p.startswith("damage reported") for p in problems_of(status, bridge, datetime.now(UTC)))

        assert alpr_node(["report-damage", "--officer", "o-6", "--config", str(config), "--repaired"]) == 0
        assert not any(p.startswith("damage") for p in runtime.heartbeat().problems)
    finally:
        runtime._resources.close()
