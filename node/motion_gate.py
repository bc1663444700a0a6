"""Spend the detector only where a plate can be.

Per camera, a small grey copy of each frame is compared with a running-average background:
the parts that changed (vehicles) plus the predicted boxes of the plates being followed are
the regions the detector looks at, at the whole frame's scale. A frame with no change and
nothing followed costs ~1 ms. Safety nets, so gating never loses a plate:
  * the whole frame is detected at least every ``full_frame_interval_s`` (a plate that was
    there before the node started, or that arrived unseen by the motion mask);
  * when the changed regions cover more than ``max_region_fraction`` of the frame (a moving
    camera, a light change, heavy traffic), the whole frame is detected;
  * a plate already followed is looked at every frame (predicted box); once its text is
    settled and it stands (nearly) still - a parked car, a queue at a light - only every
    ``settled_interval_s``: enough to keep it followed (one read), its OCR is spared by the
    tracker anyway. A moving plate is never on a stride: its predicted box drifts between
    looks and the track would break in two.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from node.recognition.types import Box, Image


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = True
    downscale: int = 8  # the motion mask is computed at 1/downscale of the frame
    threshold: int = 14  # grey-level change (0-255) that counts as motion
    background_alpha: float = 0.1  # running-average weight of each new frame
    margin_px: int = 48  # grown around each changed region and followed plate (frame pixels)
    min_region_px: int = 192  # smallest side of a region given to the detector (frame pixels)
    max_region_fraction: float = 0.5  # beyond this share of the frame: the whole frame
    max_regions: int = 6
    full_frame_interval_s: float = 1.0
    settled_interval_s: float = 0.2


@dataclass(frozen=True)
class GatePlan:
    """``regions`` None: detect the whole frame; [] : no detector at all this frame."""

    regions: list[Box] | None
    reason: str  # "full:interval", "full:motion", "regions", "idle", "off"


class MotionGate:
    def __init__(self, settings: GateSettings | None = None) -> None:
        self.s = settings or GateSettings()
        self._bg: np.ndarray | None = None
        self._last_full = -1e18
        self._last_settled = -1e18

    def _small(self, frame: Image) -> np.ndarray:
        h, w = frame.shape[:2]
        d = self.s.downscale
        small = cv2.resize(frame, (max(1, w // d), max(1, h // d)), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return grey.astype(np.float32)

    def motion_boxes(self, frame: Image) -> list[Box]:
        """Boxes (frame pixels) of what changed against the background; updates the background."""
        grey = self._small(frame)
        if self._bg is None or self._bg.shape != grey.shape:
            self._bg = grey
            return []
        mask = (cv2.absdiff(grey, self._bg) > self.s.threshold).astype(np.uint8)
        cv2.accumulateWeighted(grey, self._bg, self.s.background_alpha)
        if not mask.any():
            return []
        grown = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        n, _labels, stats, _c = cv2.connectedComponentsWithStats(grown, connectivity=8)
        d = self.s.downscale
        return [
            (int(x * d), int(y * d), int((x + w) * d), int((y + h) * d)) for x, y, w, h, _area in stats[1:n].tolist()
        ]

    def plan(self, frame: Image, t: float, followed: list[tuple[Box, bool]]) -> GatePlan:
        """What to detect in ``frame`` (time ``t`` s); ``followed``: (predicted box, quiet) per
        track, quiet = settled text and standing still (:meth:`PlateTracker.followed`)."""
        s = self.s
        if not s.enabled:
            return GatePlan(None, "off")
        moving = self.motion_boxes(frame)  # always, so the background stays current
        if t - self._last_full >= s.full_frame_interval_s or t < self._last_full:
            self._last_full = t
            self._last_settled = t
            return GatePlan(None, "full:interval")
        h, w = frame.shape[:2]
        look_settled = t - self._last_settled >= s.settled_interval_s or t < self._last_settled
        if look_settled:
            self._last_settled = t
        boxes = [_grow(b, s.margin_px, s.min_region_px, w, h) for b, settled in followed if look_settled or not settled]
        settled_boxes = [] if look_settled else [_grow(b, s.margin_px, 0, w, h) for b, st in followed if st]
        for b in moving:
            g = _grow(b, s.margin_px, s.min_region_px, w, h)
            # the flicker around a quiet plate is not looked at between its strides
            if any(_covered(b, sb) >= 0.7 for sb in settled_boxes):
                continue
            boxes.append(g)
        if not boxes:
            return GatePlan([], "idle")
        regions = _merge(boxes)
        area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in regions)
        if len(regions) > s.max_regions or area > s.max_region_fraction * w * h:
            self._last_full = t
            self._last_settled = t
            return GatePlan(None, "full:motion")
        return GatePlan(regions, "regions")


def _grow(b: Box, margin: int, min_side: int, w: int, h: int) -> Box:
    x1, y1, x2, y2 = b
    x1, y1, x2, y2 = x1 - margin, y1 - margin, x2 + margin, y2 + margin
    for lo, hi, limit, i in ((x1, x2, w, 0), (y1, y2, h, 1)):
        short = min_side - (hi - lo)
        if short > 0:
            lo, hi = lo - short // 2, hi + short - short // 2
        lo, hi = max(0, lo), min(limit, hi)
        if i == 0:
            x1, x2 = lo, hi
        else:
            y1, y2 = lo, hi
    return (x1, y1, x2, y2)


def _covered(a: Box, b: Box) -> float:
    """Share of ``a`` inside ``b``."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return ix * iy / area if area > 0 else 1.0


def _merge(boxes: list[Box]) -> list[Box]:
    """Union overlapping boxes until none overlap (a plate on a region's edge is in one region whole)."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return out
