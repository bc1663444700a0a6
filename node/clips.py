"""Synthetic drive-by clips with known plates, for the pipeline test, the node benchmark
and the local demo. Each vehicle's plate (rendered by node.training.plates) crosses a
real background scene; the clip's ground truth is returned with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from node.training.compose import paste, warp_plate
from node.training.plates import render_plate

SHARED_SCENES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-plates" / "no-plates"


@dataclass(frozen=True)
class Vehicle:
    plate: str
    state: str
    first_frame: int
    last_frame: int


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    scenes = sorted(SHARED_SCENES.glob("*.jpg")) if SHARED_SCENES.is_dir() else []
    if scenes:
        img = cv2.imread(str(scenes[int(rng.integers(len(scenes)))]))
        if img is not None:
            return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    # no scene images available: a plain road-grey gradient with noise
    grad = np.linspace(70, 140, height, dtype=np.float32)[:, None, None]
    base = np.repeat(np.repeat(grad, width, axis=1), 3, axis=2)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    vehicles: int = 3,
    fps: float = 10.0,
    size: tuple[int, int] = (1280, 720),
    plate_width: int = 180,
    frames_per_pass: int = 12,
    gap_frames: int = 8,
    seed: int = 0,
    noise: float = 0.0,
) -> list[Vehicle]:
    """Write an MJPG .avi where ``vehicles`` plates pass one after another; returns ground truth.
    ``noise``: sensor noise (grey-level sigma) added to every frame, so no two frames are alike."""
    rng = np.random.default_rng(seed)
    width, height = size
    bg = _background(width, height, rng)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    truth: list[Vehicle] = []
    frame_no = 0
    try:
        for _ in range(vehicles):
            plate = render_plate(rng)
            patch, mask, _box = warp_plate(plate.image, plate_width, rng)
            y = int(rng.integers(height // 3, height - patch.shape[0] - 20))
            x0 = int(rng.integers(40, width // 3))
            step = (width - x0 - patch.shape[1] - 40) / max(1, frames_per_pass - 1) * rng.uniform(0.4, 0.9)
            first = frame_no
            for i in range(frames_per_pass):
                frame = bg.copy()
                paste(frame, patch, mask, int(x0 + step * i), y + int(2 * i))
                writer.write(_noisy(frame, noise, rng))
                frame_no += 1
            truth.append(Vehicle(plate.text, plate.state, first, frame_no - 1))
            for _ in range(gap_frames):
                writer.write(_noisy(bg, noise, rng))
                frame_no += 1
    finally:
        writer.release()
    return truth


def _noisy(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return frame
    return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)


def make_traffic_clip(
    path: Path,
    vehicles: int = 24,
    lanes: int = 6,
    fps: float = 25.0,
    size: tuple[int, int] = (1280, 720),
    plate_width: int = 150,
    frames_per_pass: int = 30,
    seed: int = 0,
    noise: float = 0.0,
) -> list[Vehicle]:
    """Heavy traffic: ``lanes`` plates in view at once, each crossing the frame in its own lane
    (lanes one above the other, starts staggered), ``vehicles`` in all; returns ground truth."""
    rng = np.random.default_rng(seed)
    width, height = size
    bg = _background(width, height, rng)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    lane_h = (height - 40) // lanes
    plan = []
    for i in range(vehicles):
        plate = render_plate(rng)
        patch, mask, _box = warp_plate(plate.image, plate_width, rng)
        lane = i % lanes
        start = i * frames_per_pass // lanes
        y = 20 + lane * lane_h + max(0, (lane_h - patch.shape[0]) // 2)
        x0 = int(rng.integers(20, width // 4))
        step = (width - x0 - patch.shape[1] - 20) / max(1, frames_per_pass - 1)
        plan.append((plate, patch, mask, start, y, x0, step))
    total = max(p[3] for p in plan) + frames_per_pass + 5
    try:
        for f in range(total):
            frame = bg.copy()
            for _plate, patch, mask, start, y, x0, step in plan:
                if start <= f < start + frames_per_pass:
                    i = f - start
                    paste(frame, patch, mask, int(x0 + step * i), min(height - patch.shape[0], y))
            writer.write(_noisy(frame, noise, rng))
    finally:
        writer.release()
    return [Vehicle(p.text, p.state, start, start + frames_per_pass - 1) for p, _a, _b, start, *_ in plan]
