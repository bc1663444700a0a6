"""Checks every read before it is stored. A rejected read carries a reason (a metric label),
the offending field and a message that tells the node's operator what to fix.

The rules that hold for any read (ids, UUID, enums, ranges, JPEG magic) are declared
in reads.proto and checked first by :mod:`hub.request_rules`; these are the checks that need
the hub's configuration or clock, or compare fields with each other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alpr.v1 import reads_pb2

from alpr_common.plates import normalize_plate, plate_problem
from hub.config import HubConfig


class ReadRejected(Exception):
    """A read that must not be stored. ``reason`` is a short stable label for metrics."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ValidRead:
    plate: str
    ttl_seconds: int


def validate_read(read: reads_pb2.PlateRead, config: HubConfig, now: datetime) -> ValidRead:
    """Validate ``read``; returns the normalized plate and the TTL to store it with."""
    lim = config.ingest
    captured = read.capture_time.seconds + read.capture_time.nanos / 1e9
    age = now.timestamp() - captured
    if -age > lim.max_future_skew_s:
        raise ReadRejected(
            "future_capture_time",
            "capture_time",
            f"capture_time is {-age:.0f} s in the future (limit {lim.max_future_skew_s:.0f} s): "
            "the node's clock is wrong; fix its time source (NTP/GPS) and resend",
        )
    ttl = config.retention.read_ttl_seconds - max(0, int(age))
    if ttl <= 0:
        raise ReadRejected(
            "expired",
            "capture_time",
            f"the read was captured {age / 86400:.1f} days ago, beyond the "
            f"{config.retention.read_ttl_seconds} s retention; it may not be stored",
        )

    plate = normalize_plate(read.plate_text)
    problem = plate_problem(plate, lim.plate_min_length, lim.plate_max_length)
    if problem:
        raise ReadRejected("bad_plate_text", "plate_text", problem)
    if read.char_confidences and len(read.char_confidences) != len(plate):
        raise ReadRejected(
            "bad_char_confidences",
            "char_confidences",
            f"char_confidences has {len(read.char_confidences)} values for {len(plate)} plate characters",
        )
    _check_size(read.plate_crop_jpeg, "plate_crop_jpeg", lim.max_crop_bytes)
    _check_size(read.frame_jpeg, "frame_jpeg", lim.max_frame_bytes)
    _check_box(read)
    if lim.require_location and not read.HasField("location"):
        raise ReadRejected(
            "missing_location",
            "location",
            "location is required: fixed nodes set it in their config, mobile nodes need a GPS fix",
        )
    return ValidRead(plate=plate, ttl_seconds=ttl)


def _check_size(data: bytes, field: str, limit: int) -> None:
    if len(data) > limit:
        raise ReadRejected(
            "image_too_large",
            field,
            f"{field} is {len(data)} bytes, over the {limit}-byte limit: downscale or lower the JPEG quality",
        )


def _check_box(read: reads_pb2.PlateRead) -> None:
    b = read.plate_box
    if b.x2 <= b.x1 or b.y2 <= b.y1:
        raise ReadRejected("bad_plate_box", "plate_box", "plate_box must have x1 < x2 and y1 < y2 (pixels)")
    if read.frame_width and read.frame_height and (b.x2 > read.frame_width or b.y2 > read.frame_height):
        raise ReadRejected(
            "bad_plate_box",
            "plate_box",
            f"plate_box ({b.x1},{b.y1})-({b.x2},{b.y2}) lies outside the {read.frame_width}x{read.frame_height} frame",
        )
