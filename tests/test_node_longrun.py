"""A node runs for months: memory does not grow with the reads it made, a slow or hung alert
command neither stalls plate reading nor survives its timeout, and stopping never hangs on a
full frame queue. (ops/bench/soak.py measures the memory over minutes with a real hub.)"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from node.config import NodeConfig
from node.recognition.types import Box, FrameRecognizer, Image, PlateResult
from node.runtime import NodeRuntime
from node.sources import Frame
from node.tracker import FinishedTrack, Sighting


def _config(tmp_path: Path, source: str, **extra: Any) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "insecure_dev": True,
            "node_id": "long-1",
            "state_dir": str(tmp_path / "state"),
            "location": {"latitude": 41.52, "longitude": -88.08},
            "cameras": [{"camera_id": "long-cam", "source": source}],
            "hub": {"targets": ["127.0.0.1:1"], "backoff_initial_s": 5.0},
            "hotlist": {"enabled": False},
            "metrics_port": -1,
            **extra,
        }
    )


class OneRecognizer(FrameRecognizer):
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.entered = threading.Event()

    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        return []

    def versions(self) -> dict[str, str]:
        return {"detector": "t", "ocr": "t", "state_classifier": "t"}


def _track(i: int) -> FinishedTrack:
    img = np.full((480, 640, 3), 90, np.uint8)
    frame = Frame(img, float(i), time.time(), i)
    result = PlateResult((100, 200, 220, 240), 0.9, f"ABC{i:04d}", 0.95, (0.95,) * 7, "IL", 0.9, img[200:240, 100:220])
    return FinishedTrack(i, result.text, 0.95, result.char_confidences, "IL", 0.9, Sighting(float(i), result, frame),
                         float(i), float(i), 3)  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def still(tmp_path: Path) -> str:
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), np.full((480, 640, 3), 60, np.uint8))
    return str(path)


def test_reads_kept_in_memory_are_bounded(tmp_path: Path, still: str) -> None:
    runtime = NodeRuntime(_config(tmp_path, still), recognizer=OneRecognizer())
    try:
        cam = runtime.cameras[0]
        for i in range(300):
            runtime._emit(cam, [_track(i)])
        # every read is durable in the queue; memory holds only the last few (with their JPEGs)
        assert runtime.queue.depth() == 300
        assert len(runtime.emitted) <= 100
        assert runtime.emitted[-1].read.plate_text == "ABC0299"
        assert runtime.status()["reads_emitted"] == 300
    finally:
        runtime._resources.close()


def test_alert_command_runs_off_the_pipeline_and_is_killed_on_timeout(tmp_path: Path, still: str) -> None:
    pids = tmp_path / "pids"
    # the hook starts a grandchild and hangs: both must be gone after the timeout
    hook = (
        "import os, subprocess, sys, time; sys.stdin.read(); "
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}} {{g.pid}}\\n'); time.sleep(120)"
    )
    cfg = _config(tmp_path, still, alerts={"command": [sys.executable, "-c", hook], "timeout_s": 1.0})
    runtime = NodeRuntime(cfg, recognizer=OneRecognizer(), local_matcher=lambda plate, state: [{"match": "EXACT"}])
    try:
        cam = runtime.cameras[0]
        t0 = time.monotonic()
        runtime._emit(cam, [_track(1)])
        assert time.monotonic() - t0 < 0.5, "the pipeline waited for the alert command"
        deadline = time.monotonic() + 15
        while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child, grandchild = map(int, pids.read_text().split())
        deadline = time.monotonic() + 10
        while (_alive(child) or _alive(grandchild)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child) and not _alive(grandchild)
        assert runtime.registry.get_sample_value("alpr_node_alert_hook_failures_total") == 1
    finally:
        runtime._resources.close()


def test_alert_backlog_is_bounded(tmp_path: Path, still: str) -> None:
    hook = "import sys, time; sys.stdin.read(); time.sleep(30)"
    cfg = _config(tmp_path, still, alerts={"command": [sys.executable, "-c", hook], "timeout_s": 30,
                                           "workers": 1, "max_pending": 2})  # fmt: skip
    runtime = NodeRuntime(cfg, recognizer=OneRecognizer(), local_matcher=lambda plate, state: [{"match": "EXACT"}])
    try:
        t0 = time.monotonic()
        for i in range(10):
            runtime._emit(runtime.cameras[0], [_track(i)])
        assert time.monotonic() - t0 < 2
        # one running, two waiting, the rest dropped and counted; stopping kills the runner
        assert (runtime.registry.get_sample_value("alpr_node_alert_hooks_dropped_total") or 0) >= 7
    finally:
        t0 = time.monotonic()
        runtime._resources.close()
        assert time.monotonic() - t0 < 8


def test_stop_does_not_block_on_a_full_frame_queue(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((120, 160, 3), i, np.uint8))
    gate = threading.Event()
    recognizer = OneRecognizer(gate)
    runtime = NodeRuntime(_config(tmp_path, str(folder)), recognizer=recognizer).start()
    cam = runtime.cameras[0]
    assert recognizer.entered.wait(30)
    deadline = time.monotonic() + 30
    while not cam.frames.full() and time.monotonic() < deadline:  # the camera waits for room
        time.sleep(0.02)
    releaser = threading.Timer(0.5, gate.set)  # the frame being recognized finishes during stop()
    releaser.start()
    t0 = time.monotonic()
    runtime.stop(drain_s=0)
    took = time.monotonic() - t0
    releaser.join()
    camera_threads = [th for th in runtime._threads if th.name.startswith("camera-")]
    assert not any(th.is_alive() for th in camera_threads), "a camera thread hangs on the frame queue"
    assert took < 9, f"stop() took {took:.1f} s"  # a hung camera thread held it 10 s (join timeout)
    assert os.path.exists(Path(runtime.config.state_dir) / "status.json")
