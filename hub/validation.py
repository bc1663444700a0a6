"""Checks every read before it is stored. A rejected read carries a reason (a metric label),
the offending field and a message that tells the node's operator what to fix."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from alpr.v1 import reads_pb2

from alpr_common.plates import normalize_plate, plate_problem
from hub.config import HubConfig

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_JPEG_MAGIC = b"\xff\xd8\xff"


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


def _unit(value: float, field: str) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ReadRejected("bad_confidence", field, f"{field} is {value}; confidences must be between 0 and 1")


def validate_read(read: reads_pb2.PlateRead, config: HubConfig, now: datetime) -> ValidRead:
    """Validate ``read``; returns the normalized plate and the TTL to store it with."""
    lim = config.ingest
    try:
        uuid.UUID(read.read_id)
    except ValueError:
        raise ReadRejected(
            "bad_read_id",
            "read_id",
            f"read_id {read.read_id!r} is not a UUID; the node must give every read a UUID",
        ) from None
    for field in ("node_id", "camera_id"):
        value = getattr(read, field)
        if not _ID.match(value):
            raise ReadRejected(
                f"bad_{field}",
                field,
                f"{field} {value!r} is missing or invalid: use 1-64 letters, digits, '.', '_', ':' or '-'",
            )
    if read.node_kind not in (reads_pb2.NODE_KIND_FIXED, reads_pb2.NODE_KIND_MOBILE):
        raise ReadRejected("bad_node_kind", "node_kind", "node_kind must be NODE_KIND_FIXED or NODE_KIND_MOBILE")

    if not read.HasField("capture_time"):
        raise ReadRejected("missing_capture_time", "capture_time", "capture_time is required")
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
    _unit(read.confidence, "confidence")
    if read.char_confidences:
        if len(read.char_confidences) != len(plate):
            raise ReadRejected(
                "bad_char_confidences",
                "char_confidences",
                f"char_confidences has {len(read.char_confidences)} values for {len(plate)} plate characters",
            )
        for c in read.char_confidences:
            _unit(c, "char_confidences")
    if read.region and not _REGION.match(read.region):
        raise ReadRejected(
            "bad_region",
            "region",
            f"region {read.region!r} must be a code like 'IL' or 'US-IL' (or empty when unknown)",
        )
    _unit(read.region_confidence, "region_confidence")

    _check_jpeg(read.plate_crop_jpeg, "plate_crop_jpeg", lim.max_crop_bytes, required=True)
    _check_jpeg(read.frame_jpeg, "frame_jpeg", lim.max_frame_bytes, required=False)
    _check_box(read)
    _check_location(read, lim.require_location)
    return ValidRead(plate=plate, ttl_seconds=ttl)


def _check_jpeg(data: bytes, field: str, limit: int, required: bool) -> None:
    if not data:
        if required:
            raise ReadRejected(f"missing_{field}", field, f"{field} is required (the policy keeps the plate image)")
        return
    if len(data) > limit:
        raise ReadRejected(
            "image_too_large",
            field,
            f"{field} is {len(data)} bytes, over the {limit}-byte limit: downscale or lower the JPEG quality",
        )
    if not data.startswith(_JPEG_MAGIC):
        raise ReadRejected("not_jpeg", field, f"{field} is not a JPEG image")


def _check_box(read: reads_pb2.PlateRead) -> None:
    b = read.plate_box
    if not read.HasField("plate_box") or b.x2 <= b.x1 or b.y2 <= b.y1 or b.x1 < 0 or b.y1 < 0:
        raise ReadRejected(
            "bad_plate_box",
            "plate_box",
            "plate_box must be given with 0 <= x1 < x2 and 0 <= y1 < y2 (pixels)",
        )
    if read.frame_width < 0 or read.frame_height < 0:
        raise ReadRejected("bad_plate_box", "frame_width", "frame_width/frame_height must not be negative")
    if read.frame_width and read.frame_height and (b.x2 > read.frame_width or b.y2 > read.frame_height):
        raise ReadRejected(
            "bad_plate_box",
            "plate_box",
            f"plate_box ({b.x1},{b.y1})-({b.x2},{b.y2}) lies outside the {read.frame_width}x{read.frame_height} frame",
        )


def _check_location(read: reads_pb2.PlateRead, required: bool) -> None:
    if not read.HasField("location"):
        if required:
            raise ReadRejected(
                "missing_location",
                "location",
                "location is required: fixed nodes set it in their config, mobile nodes need a GPS fix",
            )
        return
    loc = read.location
    if not (-90.0 <= loc.latitude <= 90.0 and -180.0 <= loc.longitude <= 180.0):
        raise ReadRejected(
            "bad_location",
            "location",
            f"location ({loc.latitude}, {loc.longitude}) is not a valid latitude/longitude",
        )
    if not (math.isfinite(loc.accuracy_m) and loc.accuracy_m >= 0):
        raise ReadRejected("bad_location", "location.accuracy_m", "location.accuracy_m must be >= 0")
    if loc.HasField("heading_deg") and not 0.0 <= loc.heading_deg < 360.0:
        raise ReadRejected("bad_location", "location.heading_deg", "location.heading_deg must be in [0, 360)")
    if loc.HasField("speed_mps") and not (math.isfinite(loc.speed_mps) and loc.speed_mps >= 0):
        raise ReadRejected("bad_location", "location.speed_mps", "location.speed_mps must be >= 0")
