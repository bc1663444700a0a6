"""Detector only where a plate can be: the motion gate, region detection with the shipped
detector, and the node pipeline gated vs not on the same clips (no plate may be lost)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from alpr_common.similarity import iou
from node.clips import make_clip, make_traffic_clip
from node.config import NodeConfig
from node.motion_gate import GateSettings, MotionGate
from node.recognition.detector import OnnxYoloDetector
from node.recognition.loading import MODELS_DIR, Recognizer, RecognizerConfig, load_recognizer
from node.runtime import NodeRuntime
from node.training.compose import paste, warp_plate
from node.training.plates import render_plate


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return load_recognizer(RecognizerConfig())


def _street(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grad = np.linspace(60, 150, 720, dtype=np.float32)[:, None, None]
    return np.clip(
        np.repeat(np.repeat(grad, 1280, axis=1), 3, axis=2) + rng.normal(0, 8, (720, 1280, 3)), 0, 255
    ).astype(np.uint8)


def _with_plate(bg: np.ndarray, seed: int, x: int, y: int, width: int = 180) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    plate = render_plate(rng)
    patch, mask, _ = warp_plate(plate.image, width, rng)
    frame = bg.copy()
    paste(frame, patch, mask, x, y)
    return frame, plate.text


def test_static_frames_cost_no_detector_and_a_new_plate_is_a_region() -> None:
    gate = MotionGate(GateSettings(full_frame_interval_s=1.0, settled_interval_s=0.2))
    bg = _street()
    assert gate.plan(bg, 0.0, []).regions is None  # the first frame: whole
    for i in range(1, 20):  # 0.76 s of a still street at 25 fps
        assert gate.plan(bg, i * 0.04, []).regions == []
    assert gate.plan(bg, 1.0, []).regions is None  # the safety net: the whole frame every second
    frame, _ = _with_plate(bg, 7, 600, 400)
    plan = gate.plan(frame, 1.04, [])
    assert plan.reason == "regions" and plan.regions
    (x1, y1, x2, y2), *_ = plan.regions
    assert x1 <= 600 and y1 <= 400 and x2 >= 780 and y2 >= 440
    assert (x2 - x1) * (y2 - y1) < 0.2 * 1280 * 720  # a small part of the frame


def test_a_followed_plate_is_looked_at_even_when_still_and_settled_ones_on_a_stride() -> None:
    gate = MotionGate(GateSettings(full_frame_interval_s=10.0, settled_interval_s=0.2))
    bg = _street()
    gate.plan(bg, 0.0, [])
    box = (600, 400, 780, 440)
    assert gate.plan(bg, 0.04, [(box, False)]).regions  # not settled: every frame
    assert gate.plan(bg, 0.24, [(box, True)]).regions  # settled: at its stride
    assert gate.plan(bg, 0.28, [(box, True)]).regions == []  # between strides: nothing
    assert gate.plan(bg, 0.44, [(box, True)]).regions


def test_whole_frame_when_most_of_it_moves() -> None:
    gate = MotionGate(GateSettings(full_frame_interval_s=10.0))
    bg = _street()
    gate.plan(bg, 0.0, [])
    assert gate.plan(255 - bg, 0.04, []).reason == "full:motion"  # a light change, a moving camera


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_region_detection_finds_what_the_whole_frame_finds(seed: int) -> None:
    # A crop is resized differently from the whole frame, so the box may move by a few
    # pixels; the same plate means a near-identical box (IoU), not identical corners.
    det = OnnxYoloDetector(MODELS_DIR / "plate_detector.onnx", conf=0.15)
    assert det.body is not None  # the shipped detector's body runs at any size
    frame, _ = _with_plate(_street(), seed, 500, 380, width=200)
    whole = det.detect(frame)
    assert len(whole) == 1, "the shipped detector finds the synthetic plate, and only it"
    x1, y1, x2, y2 = whole[0].box
    assert x1 <= 510 and x2 >= 690 and y1 >= 340 and y2 <= 540  # where it was pasted
    part = det.detect_regions(frame, [(x1 - 60, y1 - 60, x2 + 60, y2 + 60)])
    assert len(part) == 1 and iou(part[0].box, whole[0].box) >= 0.9
    assert det.detect_regions(frame, [(0, 0, 200, 200)]) == []  # nothing there
    # the whole frame through the body at 640x384 finds the same plate as the square export
    fit = OnnxYoloDetector(MODELS_DIR / "plate_detector.onnx", conf=0.15, input_mode="fit")
    assert fit.input_mode == "fit"
    got = fit.detect(frame)
    assert len(got) == 1 and iou(got[0].box, whole[0].box) >= 0.9


def _run(tmp_path: Path, clip: Path, recognizer: Recognizer, gated: bool, name: str) -> tuple[list[str], float, float]:
    cfg = NodeConfig.model_validate({
        "insecure_dev": True, "node_id": "gate-node", "state_dir": str(tmp_path / name),
        "location": {"latitude": 41.52, "longitude": -88.08},
        "cameras": [{"camera_id": "gate-cam", "source": str(clip)}],
        "hub": {"targets": ["127.0.0.1:9"]}, "hotlist": {"enabled": False}, "metrics_port": -1,
        "gating": {"enabled": gated},
    })  # fmt: skip
    runtime = NodeRuntime(cfg, recognizer=recognizer).start()
    try:
        assert runtime.wait_sources_done(300)
        sample = runtime.registry.get_sample_value
        frames = sample("alpr_node_frames_processed_total", {"camera_id": "gate-cam"}) or 0
        detected = sample("alpr_node_detector_seconds_count") or 0
        return [e.read.plate_text for e in runtime.emitted], frames, detected
    finally:
        runtime.stop(drain_s=0)


@pytest.mark.parametrize("scene", ["sparse", "heavy"])
def test_gating_loses_no_plate(tmp_path: Path, recognizer: Recognizer, scene: str) -> None:
    clip = tmp_path / "clip.avi"
    if scene == "sparse":
        truth = make_clip(clip, vehicles=3, fps=25.0, frames_per_pass=12, gap_frames=30, seed=5, noise=3.0)
    else:
        truth = make_traffic_clip(clip, vehicles=6, lanes=3, frames_per_pass=20, seed=5, noise=3.0)
    plain, frames, detected_plain = _run(tmp_path, clip, recognizer, False, "plain")
    gated, frames_g, detected_gated = _run(tmp_path, clip, recognizer, True, "gated")
    assert frames == frames_g and detected_plain == frames
    plates = {v.plate for v in truth}
    # every plate read without gating is read with it, and gating adds no reads
    assert plates & set(plain) <= set(gated), (plain, gated, sorted(plates))
    assert len(gated) == len(plain) == len(truth), (plain, gated)
    if scene == "sparse":  # the still street between vehicles costs no detector
        assert detected_gated < frames


def test_a_plate_that_stops_is_read_once(tmp_path: Path, recognizer: Recognizer) -> None:
    """A car pulls in and parks: the gate keeps looking at its followed plate, so it is one read."""
    import cv2

    clip = tmp_path / "park.avi"
    bg = _street(9)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (1280, 720))
    text = ""
    for i in range(125):  # 5 s: 1 s driving in, 3 s parked, then gone
        if i < 100:
            frame, text = _with_plate(bg, 21, 300 + 12 * min(i, 25), 400, width=200)
        else:
            frame = bg
        writer.write(frame)
    writer.release()
    reads, _, _ = _run(tmp_path, clip, recognizer, True, "park")
    assert len(reads) == 1, (reads, text)


def test_gating_config_is_strict() -> None:
    base = {"node_id": "n", "location": {"latitude": 1, "longitude": 2}, "cameras": [{"camera_id": "c", "source": "x"}]}
    assert NodeConfig.model_validate(base).gating.enabled
    with pytest.raises(ValidationError, match="settled_interval_s"):
        NodeConfig.model_validate({**base, "gating": {"settled_interval_s": 1.0}})
    with pytest.raises(ValidationError):
        NodeConfig.model_validate({**base, "gating": {"stride": 2}})
