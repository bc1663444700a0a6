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
    _decoded(read.plate_crop_jpeg, "plate_crop_jpeg")
    frame = _decoded(read.frame_jpeg, "frame_jpeg") if read.frame_jpeg else None
    _check_box(read, frame)
    _check_location(read, lim.require_location)
    return ValidRead(plate=plate, ttl_seconds=ttl)


def _check_location(read: reads_pb2.PlateRead, required: bool) -> None:
    """A location and its quality agree. A mobile unit without any fix still sends its reads
    (quality NONE, no location): they are stored, matched and relayed (policy 5.2 asks for the
    location on mobile data, it does not ask to throw the read away)."""
    q, has = read.location_quality, read.HasField("location")
    if q in (reads_pb2.LOCATION_QUALITY_FIX, reads_pb2.LOCATION_QUALITY_STALE) and not has:
        raise ReadRejected(
            "missing_location",
            "location",
            f"location_quality {reads_pb2.LocationQuality.Name(q)} needs a location; send NONE when there is no fix",
        )
    if q == reads_pb2.LOCATION_QUALITY_NONE:
        if has:
            raise ReadRejected(
                "bad_location_quality",
                "location_quality",
                "location_quality NONE with a location: send STALE with location_age_s for a last known fix",
            )
        if read.node_kind == reads_pb2.NODE_KIND_FIXED and required:
            raise ReadRejected(
                "missing_location",
                "location",
                "a fixed node's reads need its location: set location in the node's config",
            )
        return
    if required and not has:
        raise ReadRejected(
            "missing_location",
            "location",
            "location is required: fixed nodes set it in their config, mobile nodes send their last "
            "known fix (STALE) or location_quality NONE",
        )


def _check_size(data: bytes, field: str, limit: int) -> None:
    if len(data) > limit:
        raise ReadRejected(
            "image_too_large",
            field,
            f"{field} is {len(data)} bytes, over the {limit}-byte limit: downscale or lower the JPEG quality",
        )


class JpegError(ValueError):
    """Bytes that are not a well-formed baseline/progressive JPEG."""


# Start-of-frame markers (they carry the image size): C0-CF except DHT (C4), JPG (C8), DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG, read from its structure without decoding the pixels.

    Walks the marker segments from SOI: every segment's length must fit the data, a
    start-of-frame must give a non-zero size, a start-of-scan must follow it, and the image
    must end with EOI. Bytes that merely begin with FF D8 FF are refused.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise JpegError("does not start with a JPEG start-of-image marker")
    if data[-2] != 0xFF or data[-1] != 0xD9:
        raise JpegError("does not end with a JPEG end-of-image marker (truncated?)")
    i, size = 2, None
    while True:
        if i + 4 > n or data[i] != 0xFF:
            raise JpegError(f"broken marker structure at byte {i}")
        while data[i + 1] == 0xFF and i + 5 <= n:  # fill bytes
            i += 1
        marker = data[i + 1]
        if marker == 0xD9 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            raise JpegError(f"unexpected marker FF{marker:02X} before the image data")
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            raise JpegError(f"segment FF{marker:02X} at byte {i} runs past the end of the data")
        if marker in _SOF:
            if length < 8:
                raise JpegError("start-of-frame segment too short")
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            if not width or not height:
                raise JpegError(f"start-of-frame gives a {width}x{height} image")
            size = (width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows up to EOI
            if size is None:
                raise JpegError("image data without a start-of-frame (no image size)")
            if i + 2 + length >= n - 2:
                raise JpegError("no image data after the start-of-scan")
            return size
        i += 2 + length


def _decoded(data: bytes, field: str) -> tuple[int, int]:
    try:
        return jpeg_size(data)
    except JpegError as e:
        raise ReadRejected("not_jpeg", field, f"{field} is not a valid JPEG image: {e}") from None


def _check_box(read: reads_pb2.PlateRead, frame: tuple[int, int] | None) -> None:
    """The box must lie inside the frame: the size the node states, or the frame image's
    decoded size when it states none. A stated size must agree with the frame image (which
    may be downscaled, keeping the aspect ratio)."""
    b = read.plate_box
    if b.x2 <= b.x1 or b.y2 <= b.y1:
        raise ReadRejected("bad_plate_box", "plate_box", "plate_box must have x1 < x2 and y1 < y2 (pixels)")
    width, height = read.frame_width, read.frame_height
    if frame is not None:
        fw, fh = frame
        if not (width and height):
            width, height = fw, fh
        elif fw > width or fh > height or abs(fw / fh - width / height) > 0.02 * (width / height) + 2 / fh:
            raise ReadRejected(
                "bad_frame_size",
                "frame_width",
                f"frame_jpeg is {fw}x{fh}, which is not the stated {width}x{height} frame (or a downscaled copy)",
            )
    if width and height and (b.x2 > width or b.y2 > height):
        raise ReadRejected(
            "bad_plate_box",
            "plate_box",
            f"plate_box ({b.x1},{b.y1})-({b.x2},{b.y2}) lies outside the {width}x{height} frame",
        )
