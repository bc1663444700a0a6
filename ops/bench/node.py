#!/usr/bin/env python3
"""Edge-node benchmark: the node pipeline on 720p clips, before and after gating, same run.

Two generated scenes (node.clips: synthetic plates on a real scene, 1280x720, 25 fps, sensor
noise on every frame so no two frames are alike):
  sparse: vehicles pass one after another (the old benchmark's clip);
  heavy:  ``--lanes`` plates in view at once (heavy traffic).
For each scene, in one invocation and alternating, so load changes on a shared machine hit both:
  baseline: the pipeline as it was - whole-frame detector on every frame (gating off);
  gated:    the default node - motion gate + followed plates (node/motion_gate.py).
Per pipeline: pipeline_fps (steady state: first frame recognized to last frame done),
per-stage ms per frame (decode in its camera thread; gate, detect, ocr, track on the
pipeline thread; encode = JPEG of reads only, commit = SQLite queue), reads_correct against
the clip's ground truth. detector_fps: the whole-frame detector alone (mean of before/after).
Prints progress on stderr and, as the last line, one JSON object.

    .venv/bin/python -m ops.bench.node [--vehicles 12] [--heavy-vehicles 24 --lanes 6] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("YOLO_OFFLINE", "1")

import cv2

from node.clips import Vehicle, make_clip, make_traffic_clip
from node.config import NodeConfig
from node.recognition.loading import Recognizer, RecognizerConfig, load_recognizer
from node.recognition.types import Box, FrameRecognizer, Image, PlateResult, RecognitionTimings
from node.runtime import NodeRuntime
from ops.bench.common import log

STAGES = ("decode", "gate", "detect", "ocr", "track", "encode", "commit")


class TimedRecognizer(FrameRecognizer):
    """Marks when the pipeline's first frame is recognized (the steady state starts there)."""

    def __init__(self, inner: Recognizer) -> None:
        self.inner = inner
        self.first = 0.0
        self.calls = 0

    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        self.first = self.first or time.perf_counter()
        self.calls += 1
        return self.inner.recognize(frame, skip_ocr=skip_ocr, regions=regions)

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    @property
    def supports_regions(self) -> bool:
        return self.inner.supports_regions

    @property
    def last_timings(self) -> RecognitionTimings:  # the runtime's per-stage metrics read these
        return self.inner.last_timings


def run_pipeline(recognizer: Recognizer, clip: Path, truth: list[Vehicle], tmp: Path, gated: bool) -> dict[str, Any]:
    timed = TimedRecognizer(recognizer)
    state = tmp / f"state-{time.monotonic_ns()}"
    cfg = NodeConfig.model_validate({
        "insecure_dev": True, "node_id": "bench-node", "state_dir": str(state),
        "location": {"latitude": 41.52, "longitude": -88.08},
        "cameras": [{"camera_id": "bench-cam", "source": str(clip)}],
        "hub": {"targets": ["127.0.0.1:9"], "backoff_initial_s": 5.0},  # no hub: reads stay queued
        "hotlist": {"enabled": False}, "metrics_port": -1, "gating": {"enabled": gated},
    })  # fmt: skip
    runtime = NodeRuntime(cfg, recognizer=timed)
    runtime.start()
    runtime.wait_sources_done()
    done = time.perf_counter()
    sample = runtime.registry.get_sample_value
    frames = int(sample("alpr_node_frames_processed_total", {"camera_id": "bench-cam"}) or 0)
    stage_ms = {
        s: round(1000 * (sample("alpr_node_stage_seconds_total", {"stage": s}) or 0) / frames, 2) for s in STAGES
    }
    gate = {
        d: int(sample("alpr_node_gate_frames_total", {"camera": "bench-cam", "decision": d}) or 0)
        for d in ("full", "regions", "idle", "off")
    }
    reads = [e.read.plate_text for e in runtime.emitted]
    reads_total = runtime.reads_emitted
    runtime.stop(drain_s=0)
    plates = {v.plate for v in truth}
    return {
        "pipeline_fps": round(frames / (done - timed.first), 2),
        "frames": frames,
        "ms_per_frame": round(1000 * (done - timed.first) / frames, 2),
        "stage_ms_per_frame": stage_ms,
        "gate_frames": gate,
        "recognizer_calls": timed.calls,
        "reads": reads_total,
        "reads_correct": sum(1 for p in plates if p in reads),
        "reads_wrong": sum(1 for r in reads if r not in plates),
    }


def detector_fps(recognizer: Recognizer, frames: list[Image]) -> float:
    t0 = time.perf_counter()
    for f in frames:
        recognizer.detector.detect(f)
    return len(frames) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=12)
    ap.add_argument("--frames-per-pass", type=int, default=20)
    ap.add_argument("--gap-frames", type=int, default=5)
    ap.add_argument("--heavy-vehicles", type=int, default=12)
    ap.add_argument("--lanes", type=int, default=6)
    ap.add_argument("--noise", type=float, default=3.0, help="sensor noise sigma per frame (grey levels)")
    ap.add_argument("--repeat", type=int, default=1, help="baseline/gated pairs per scene")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    if args.vehicles > 16:  # runtime.emitted keeps the last 16 reads: the truth check needs them all
        ap.error("--vehicles at most 16")

    out: dict[str, Any] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        scenes: dict[str, tuple[Path, list[Vehicle]]] = {}
        log("bench: generating the 1280x720 clips")
        scenes["sparse"] = (tmp / "sparse.avi", make_clip(
            tmp / "sparse.avi", args.vehicles, fps=25.0, frames_per_pass=args.frames_per_pass,
            gap_frames=args.gap_frames, seed=args.seed, noise=args.noise))  # fmt: skip
        scenes["heavy"] = (tmp / "heavy.avi", make_traffic_clip(
            tmp / "heavy.avi", min(16, args.heavy_vehicles), lanes=args.lanes, seed=args.seed, noise=args.noise))  # fmt: skip
        recognizer = load_recognizer(RecognizerConfig())
        cap = cv2.VideoCapture(str(scenes["sparse"][0]))
        frames: list[Image] = []
        while len(frames) < 60:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cast(Image, f))
        det_before = detector_fps(recognizer, frames)
        log(f"bench: detector alone {det_before:.1f} fps")
        for name, (clip, truth) in scenes.items():
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "gated": []}
            for _ in range(args.repeat):
                for mode in ("baseline", "gated"):
                    r = run_pipeline(recognizer, clip, truth, tmp, gated=mode == "gated")
                    log(f"bench: {name} {mode}: {r['pipeline_fps']} fps, {r['reads_correct']}/{len(truth)} correct")
                    runs[mode].append(r)
            best = {m: max(rs, key=lambda r: r["pipeline_fps"]) for m, rs in runs.items()}
            out[name] = {
                "vehicles": len(truth),
                "speedup": round(best["gated"]["pipeline_fps"] / best["baseline"]["pipeline_fps"], 2),
                **best,
                "all_fps": {m: [r["pipeline_fps"] for r in rs] for m, rs in runs.items()},
            }
        det_after = detector_fps(recognizer, frames)
    out["detector_fps"] = round((det_before + det_after) / 2, 2)
    out["detector_fps_before_after"] = [round(det_before, 2), round(det_after, 2)]
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
