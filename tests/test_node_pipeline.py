"""The whole node pipeline with the shipped models on a generated video with known plates:
exactly one read per vehicle pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpr_common.similarity import text_similarity
from node.clips import make_clip
from node.config import NodeConfig
from node.recognition.loading import Recognizer, RecognizerConfig, load_recognizer
from node.runtime import NodeRuntime


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return load_recognizer(RecognizerConfig())


def test_one_correct_read_per_vehicle(tmp_path: Path, recognizer: Recognizer) -> None:
    clip = tmp_path / "drive.avi"
    truth = make_clip(clip, vehicles=3, fps=10.0, plate_width=200, frames_per_pass=10, gap_frames=8, seed=5)
    cfg = NodeConfig.model_validate(
        {
            "insecure_dev": True,
            "node_id": "pipe-node",
            "state_dir": str(tmp_path / "state"),
            "location": {"latitude": 41.52, "longitude": -88.08},
            "cameras": [{"camera_id": "pipe-cam", "source": str(clip)}],
            "hub": {"targets": ["127.0.0.1:9"]},
            "hotlist": {"enabled": False},
            "metrics_port": -1,
        }
    )
    runtime = NodeRuntime(cfg, recognizer=recognizer).start()
    try:
        assert runtime.wait_sources_done(300)
        reads = [e.read for e in runtime.emitted]
        sample = runtime.registry.get_sample_value
        frames = sample("alpr_node_frames_processed_total", {"camera_id": "pipe-cam"})
        # the detector runs on every frame the motion gate does not find idle (nothing moved,
        # nothing followed); OCR once per plate read (settled tracks are not re-read)
        idle = sample("alpr_node_gate_frames_total", {"camera": "pipe-cam", "decision": "idle"}) or 0
        assert frames and sample("alpr_node_detector_seconds_count") == frames - idle
        ocr_runs = sample("alpr_node_ocr_seconds_count")
        assert ocr_runs is not None and len(truth) * 2 <= ocr_runs < frames * len(truth)
    finally:
        runtime.stop(drain_s=0)
    # One read per vehicle pass: as many reads as vehicles, each vehicle matched by exactly
    # one read, recognisably its plate.
    assert len(reads) == len(truth), [r.plate_text for r in reads]
    for v in truth:
        matching = [r.plate_text for r in reads if text_similarity(r.plate_text, v.plate) >= 0.6]
        assert len(matching) == 1, (v.plate, [r.plate_text for r in reads])
    exact = sum(1 for v in truth if v.plate in {r.plate_text for r in reads})
    print(
        f"pipeline: {exact}/{len(truth)} plates read exactly: {[r.plate_text for r in reads]} vs {[v.plate for v in truth]}"
    )
    # The shipped OCR reads most plates of this clip exactly (2 of 3 today: an 8 read as 3);
    # fewer means the pipeline or the models regressed. `alpr-node evaluate` has the real figures.
    assert exact >= len(truth) - 1, [r.plate_text for r in reads]
    for r in reads:
        assert r.plate_crop_jpeg[:3] == b"\xff\xd8\xff" and r.frame_jpeg
        assert r.model_versions.detector and r.model_versions.ocr
        assert len(r.char_confidences) == len(r.plate_text)
