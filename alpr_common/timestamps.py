"""Time conversions used by every component, in one place.

The platform's times are aware UTC ``datetime`` objects. Cassandra's driver hands back
naive datetimes that mean UTC; protobuf ``Timestamp`` messages are UTC by definition.
The names say the direction: ``to_timestamp`` makes a message, ``from_timestamp`` reads one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def utc(dt: datetime) -> datetime:
    """``dt`` as an aware datetime; a naive one (as Cassandra returns) is taken to be UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def utc_or_none(dt: datetime | None) -> datetime | None:
    """:func:`utc` that passes ``None`` through (a column that may be null)."""
    return None if dt is None else utc(dt)


def to_timestamp(dt: datetime) -> Timestamp:
    """A protobuf Timestamp of ``dt`` (naive datetimes are UTC)."""
    ts = Timestamp()
    ts.FromDatetime(utc(dt))
    return ts


def to_timestamp_or_none(dt: datetime | None) -> Timestamp | None:
    """:func:`to_timestamp` that passes ``None`` through (an unset message field)."""
    return None if dt is None else to_timestamp(dt)


def from_timestamp(ts: Timestamp) -> datetime:
    """An aware UTC datetime from a protobuf Timestamp (exact to the microsecond)."""
    return ts.ToDatetime(tzinfo=UTC)


def timestamp_seconds(ts: Timestamp) -> float:
    """A protobuf Timestamp as seconds since the epoch."""
    return ts.seconds + ts.nanos / 1e9


def epoch_ms(dt: datetime) -> int:
    """Milliseconds since the epoch (Cassandra's timestamp precision); naive datetimes are UTC."""
    return int(utc(dt).timestamp() * 1000)


def truncate_to_ms(dt: datetime) -> datetime:
    """``dt`` cut to whole milliseconds, as Cassandra will store it."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def timestamp_in(delta: timedelta) -> Timestamp:
    """Now plus ``delta`` as a protobuf Timestamp (an expiry, a deadline)."""
    return to_timestamp(now_utc() + delta)
