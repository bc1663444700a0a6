"""Synthetic plate reads for tests, benchmarks and node simulators.

Not used on the read path: it fabricates reads that look like a camera's output so the
hub can be exercised without cameras.
"""

from __future__ import annotations

import base64
import io
import random
import string
import uuid
from datetime import UTC, datetime

from alpr.v1 import reads_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from alpr_common.plates import normalize_plate

# A valid 8x8 grey baseline JPEG, for reads whose image content does not matter.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwc"
    "KDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAA"
    "AAAAAAAAAAD/2gAIAQEAAD8AKp//2Q=="
)


def noise_jpeg(width: int, height: int, seed: int = 0, quality: int = 85) -> bytes:
    """A JPEG of random texture (realistic size for a crop of that size). Needs Pillow."""
    from PIL import Image

    rnd = random.Random(seed)
    img = Image.frombytes("L", (width, height), bytes(rnd.randrange(256) for _ in range(width * height)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def random_plate(rnd: random.Random) -> str:
    """A US-looking plate: 3 letters + 4 digits, or 7 mixed characters."""
    if rnd.random() < 0.6:
        return "".join(rnd.choices(string.ascii_uppercase, k=3)) + "".join(rnd.choices(string.digits, k=4))
    return "".join(rnd.choices(string.ascii_uppercase + string.digits, k=rnd.randint(5, 8)))


def make_read(
    node_id: str = "node-1",
    camera_id: str = "cam-1",
    plate: str | None = None,
    captured: datetime | None = None,
    rnd: random.Random | None = None,
    crop_jpeg: bytes = TINY_JPEG,
    frame_jpeg: bytes = b"",
    kind: reads_pb2.NodeKind.ValueType = reads_pb2.NODE_KIND_FIXED,
) -> reads_pb2.PlateRead:
    """A valid read with a fresh UUID; every field the hub checks is plausible."""
    rnd = rnd or random.Random()
    plate = plate if plate is not None else random_plate(rnd)
    ts = Timestamp()
    ts.FromDatetime(captured or datetime.now(UTC))
    return reads_pb2.PlateRead(
        read_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        node_id=node_id,
        camera_id=camera_id,
        node_kind=kind,
        capture_time=ts,
        plate_text=plate,
        confidence=0.9,
        char_confidences=[0.9] * len(normalize_plate(plate)),
        region="IL",
        region_confidence=0.8,
        plate_box=reads_pb2.BoundingBox(x1=100, y1=200, x2=220, y2=240),
        plate_crop_jpeg=crop_jpeg,
        frame_jpeg=frame_jpeg,
        location=reads_pb2.GeoPoint(latitude=41.525, longitude=-88.0817, accuracy_m=3.0),
        model_versions=reads_pb2.ModelVersions(detector="sim", ocr="sim", state_classifier="sim"),
        frame_width=1280,
        frame_height=720,
    )
