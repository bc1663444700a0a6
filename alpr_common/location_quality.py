"""How a read's position is shown to people: a current fix as coordinates, a stale one with
its age (the unit's last known position, not where the plate was), none as "no GPS fix"."""

from __future__ import annotations

from alpr.v1 import reads_pb2


def age_text(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_position(
    latitude: float, longitude: float, quality: reads_pb2.LocationQuality.ValueType, age_s: float
) -> str:
    """The position of one read as an officer or dispatcher should read it."""
    if quality == reads_pb2.LOCATION_QUALITY_NONE:
        return "no GPS fix (position unknown)"
    where = f"{latitude:.5f},{longitude:.5f}"
    if quality == reads_pb2.LOCATION_QUALITY_STALE:
        return f"{where} (no current fix: last known position, {age_text(age_s)} old)"
    return where
