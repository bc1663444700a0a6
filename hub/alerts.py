"""Alerts: raised when a stored read matches the hot list, streamed to watchers on every
hub replica, decided (accepted / rejected) by officers.

Raising: ``Alerter.on_read_stored`` runs in ingest after the read's rows are written and
before the read is acked, so an acked read that matched always has its alert stored
(a crash before the ack makes the node resend; the alert id is derived from the read id,
so the resend does not raise a second alert).

Fan-out: every alert and status change is appended to ``alert_feed`` (one partition per
minute, time-UUID order): the durable path. Once stored, the writing hub hands the event to
its own Watch streams at once and pushes it to its peer replicas (``alerts.peers``,
:mod:`hub.alert_replicas`). Each hub also tails the feed every ``alerts.feed_poll_interval_s``,
re-reading ``feed_lookback_s`` so that events written late by another hub, or whose push was
lost, are still seen; an event id already handed over (pushed or published) is skipped.
With ``alerts.push`` off, the feed poll is the only path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, reads_pb2
from cassandra.cluster import Session
from cassandra.util import min_uuid_from_time, uuid_from_time

from alpr_common.cassandra import CassandraStore, Row, insert_cql
from alpr_common.hotlist_model import category_value, entry_to_proto
from alpr_common.lifecycle import cancel_task
from alpr_common.matching import Match
from alpr_common.timestamps import from_timestamp, to_timestamp, utc
from hub.alert_replicas import PeerPusher
from hub.audit import AuditLog
from hub.config import HubConfig
from hub.hotlists.mirror import HotListMirror
from hub.metrics import HotListMetrics
from hub.principal import Context
from hub.validation import ValidRead

log = logging.getLogger(__name__)

ALERT_NS = uuid.UUID("5d7f0c8e-6a51-4d3e-9d37-0c5b1f3a9e21")
PENDING, ACCEPTED, REJECTED = "PENDING", "ACCEPTED", "REJECTED"
_STATUS = {
    PENDING: alert_pb2.ALERT_STATUS_PENDING,
    ACCEPTED: alert_pb2.ALERT_STATUS_ACCEPTED,
    REJECTED: alert_pb2.ALERT_STATUS_REJECTED,
}
_KIND = {
    "EXACT": alert_pb2.MATCH_KIND_EXACT,
    "LOOKALIKE": alert_pb2.MATCH_KIND_LOOKALIKE,
    "MISSING_CHAR": alert_pb2.MATCH_KIND_MISSING_CHAR,
    "EXTRA_CHAR": alert_pb2.MATCH_KIND_EXTRA_CHAR,
}
# The pending/unattended gauges: every retained day at start and this often; the last
# _RECENT_H hours on every scan in between.
_FULL_SCAN_S = 3600.0
_RECENT_H = 26
_SCAN_LIMIT = 100_000
CREATED, STATUS_CHANGED = "CREATED", "STATUS_CHANGED"
_EVENT_KIND = {
    CREATED: alert_pb2.ALERT_EVENT_KIND_CREATED,
    STATUS_CHANGED: alert_pb2.ALERT_EVENT_KIND_STATUS_CHANGED,
}


def alert_id_for(read_id: str) -> uuid.UUID:
    return uuid.uuid5(ALERT_NS, read_id)


def feed_bucket(t: float) -> int:
    return int(t // 60)


def build_alert(
    read: reads_pb2.PlateRead, plate: str, matches: list[Match], hub_id: str, now: datetime
) -> alert_pb2.Alert:
    a = alert_pb2.Alert(
        alert_id=str(alert_id_for(read.read_id)),
        read_id=read.read_id,
        status=alert_pb2.ALERT_STATUS_PENDING,
        plate=plate,
        region=read.region.upper(),
        capture_time=read.capture_time,
        created_time=to_timestamp(now),
        node_id=read.node_id,
        camera_id=read.camera_id,
        node_kind=read.node_kind,
        hub_id=hub_id,
        read_confidence=read.confidence,
        frame_width=read.frame_width,
        frame_height=read.frame_height,
        char_confidences=read.char_confidences,
        region_confidence=read.region_confidence,
    )
    if read.HasField("plate_box"):
        a.plate_box.CopyFrom(read.plate_box)
    if read.HasField("location"):
        a.location.CopyFrom(read.location)
        a.location_age_s = read.location_age_s
    # the hit is raised whatever the fix: an officer acts on a stale or missing position too
    a.location_quality = read.location_quality or (
        reads_pb2.LOCATION_QUALITY_FIX if read.HasField("location") else reads_pb2.LOCATION_QUALITY_NONE
    )
    cats: list[int] = []
    for m in matches:
        a.matches.append(
            alert_pb2.AlertMatch(
                entry=entry_to_proto(m.entry), kind=_KIND[m.kind], score=m.score, state_mismatch=m.state_mismatch
            )
        )
        c = category_value(m.entry.category)
        if c not in cats:
            cats.append(c)
    a.categories.extend(cats)  # type: ignore[arg-type]
    return a


@dataclass(eq=False)
class _Watcher:
    filter: alert_pb2.AlertFilter
    queue: asyncio.Queue[alert_pb2.WatchResponse | None]


def passes(f: alert_pb2.AlertFilter, a: alert_pb2.Alert) -> bool:
    if f.categories and not set(f.categories) & set(a.categories):
        return False
    if f.camera_ids and a.camera_id not in f.camera_ids:
        return False
    if f.HasField("area"):
        box = f.area
        if not a.HasField("location"):
            return False
        lat, lon = a.location.latitude, a.location.longitude
        if not (box.min_latitude <= lat <= box.max_latitude and box.min_longitude <= lon <= box.max_longitude):
            return False
    return True


class AlertStore(CassandraStore):
    """Cassandra side of alerts."""

    def __init__(self, *, session: Session, config: HubConfig) -> None:
        super().__init__(session=session, cassandra=config.cassandra)
        ks = self.keyspace
        w, r = self.writer, self.reader
        self._ins_alert = w(
            insert_cql(
                f"{ks}.alerts_by_id",
                ("alert_id", "read_id", "created_at", "capture_time", "summary", "plate_crop_jpeg", "frame_jpeg"),
                ttl=True,
            )
        )
        self._ins_day = w(insert_cql(f"{ks}.alerts_by_day", ("day", "created_at", "alert_id", "summary"), ttl=True))
        self._ins_feed = w(insert_cql(f"{ks}.alert_feed", ("bucket", "event_id", "kind", "alert_id", "alert")))
        self._feed_since = r(
            f"SELECT event_id, kind, alert_id, alert FROM {ks}.alert_feed WHERE bucket = :bucket AND event_id > :after"
        )
        self._get = r(f"SELECT * FROM {ks}.alerts_by_id WHERE alert_id = :alert_id")
        self._created = r(f"SELECT created_at FROM {ks}.alerts_by_id WHERE alert_id = :alert_id")
        self._status = r(f"SELECT alert_id, status, disposition FROM {ks}.alerts_by_id WHERE alert_id = :alert_id")
        # What a decision needs, without the images.
        self._deciding = r(f"SELECT summary, status, disposition FROM {ks}.alerts_by_id WHERE alert_id = :alert_id")
        self._day = r(f"SELECT created_at, alert_id, summary FROM {ks}.alerts_by_day WHERE day = :day LIMIT :max_rows")
        decision = (
            "SET status = :status, disposition = :disposition, decided_at = :decided_at WHERE alert_id = :alert_id"
        )
        self._decide = w(f"UPDATE {ks}.alerts_by_id USING TTL :ttl {decision} IF status = null")
        self._amend = w(f"UPDATE {ks}.alerts_by_id USING TTL :ttl {decision} IF status IN ('ACCEPTED', 'REJECTED')")
        self._ins_history = w(
            insert_cql(
                f"{ks}.alert_dispositions", ("alert_id", "decided_at", "seq", "status", "officer_id", "disposition")
            )
        )
        self._history = r(f"SELECT disposition FROM {ks}.alert_dispositions WHERE alert_id = :alert_id")

    async def append_feed(self, kind: str, alert: alert_pb2.Alert, at: float | None = None) -> uuid.UUID:
        """Append an event; ``at`` fixes its time (and, with the alert id, its event id). Its event id."""
        aid = uuid.UUID(alert.alert_id)
        event_id: uuid.UUID
        if at is None:
            t = time.time()
            event_id = uuid_from_time(t)
        else:
            t = at
            # Deterministic: a resent read re-writes the same CREATED event instead of a second one.
            event_id = uuid_from_time(t, node=int.from_bytes(aid.bytes[:6], "big"),
                                      clock_seq=int.from_bytes(aid.bytes[6:8], "big") & 0x3FFF)  # fmt: skip
        feed = {"bucket": feed_bucket(t), "event_id": event_id, "kind": kind, "alert_id": aid}
        await self.run(self._ins_feed, {**feed, "alert": alert.SerializeToString()})
        return event_id

    async def created_at(self, alert_id: uuid.UUID) -> datetime | None:
        row = await self.one(self._created, {"alert_id": alert_id})
        return utc(row.created_at) if row is not None and row.created_at else None

    async def create(self, alert: alert_pb2.Alert, crop: bytes, frame: bytes, ttl: int) -> uuid.UUID:
        """Store a new alert (idempotent for the same alert and creation time) and announce it in
        the feed; the feed event's id."""
        aid = uuid.UUID(alert.alert_id)
        created = from_timestamp(alert.created_time)
        blob = alert.SerializeToString()
        row = {
            "alert_id": aid, "read_id": uuid.UUID(alert.read_id), "created_at": created,
            "capture_time": from_timestamp(alert.capture_time), "summary": blob, "plate_crop_jpeg": crop,
            "frame_jpeg": frame or None, "ttl": ttl,
        }  # fmt: skip
        day = {"day": created.date(), "created_at": created, "alert_id": aid, "summary": blob, "ttl": ttl}
        await asyncio.gather(self.run(self._ins_alert, row), self.run(self._ins_day, day))
        return await self.append_feed(CREATED, alert, at=created.timestamp())

    async def feed_since(self, bucket: int, after: uuid.UUID) -> list[Row]:
        return await self.run(self._feed_since, {"bucket": bucket, "after": after})

    async def get(self, alert_id: uuid.UUID) -> Row | None:
        return await self.one(self._get, {"alert_id": alert_id})

    async def for_decision(self, alert_id: uuid.UUID) -> Row | None:
        """Summary, status and latest disposition (no images)."""
        return await self.one(self._deciding, {"alert_id": alert_id})

    async def history(self, alert_id: uuid.UUID) -> list[alert_pb2.Disposition]:
        rows = await self.run(self._history, {"alert_id": alert_id})
        return [alert_pb2.Disposition.FromString(r.disposition) for r in rows]

    async def claim(self, alert_id: uuid.UUID, ttl: int, d: alert_pb2.Disposition, amend: bool) -> tuple[bool, Row]:
        """The decision's lightweight transaction on the status (exactly one decider wins);
        returns (applied, current row values when not applied)."""
        status = alert_pb2.AlertStatus.Name(d.status).removeprefix("ALERT_STATUS_")
        decided = from_timestamp(d.decided_time)
        change = {"ttl": ttl, "status": status, "disposition": d.SerializeToString(), "decided_at": decided,
                  "alert_id": alert_id}  # fmt: skip
        rows = await self.run(self._amend if amend else self._decide, change)
        return bool(rows[0][0]), rows[0]

    async def add_history(self, alert_id: uuid.UUID, d: alert_pb2.Disposition) -> None:
        """Append a decision that won its claim to the alert's disposition history."""
        status = alert_pb2.AlertStatus.Name(d.status).removeprefix("ALERT_STATUS_")
        decided = from_timestamp(d.decided_time)
        history = {"alert_id": alert_id, "decided_at": decided, "seq": uuid_from_time(decided), "status": status}
        await self.run(self._ins_history, {**history, "officer_id": d.officer_id, "disposition": d.SerializeToString()})

    async def list_day(self, day: date, limit: int) -> list[Row]:
        return await self.run(self._day, {"day": day, "max_rows": limit})

    async def status_of(self, alert_id: uuid.UUID) -> Row | None:
        return await self.one(self._status, {"alert_id": alert_id})


def alert_from_row(row: Row, unattended_after_s: float, now: datetime) -> alert_pb2.Alert:
    """The full alert (summary + status + latest disposition) of an alerts_by_id row."""
    a = alert_pb2.Alert.FromString(row.summary)
    apply_status(a, row.status, row.disposition, unattended_after_s, now)
    return a


def apply_status(
    a: alert_pb2.Alert, status: str | None, disposition: bytes | None, unattended_s: float, now: datetime
) -> None:
    a.status = _STATUS[status or PENDING]
    if disposition:
        a.disposition.CopyFrom(alert_pb2.Disposition.FromString(disposition))
    a.unattended = a.status == alert_pb2.ALERT_STATUS_PENDING and (
        (now - from_timestamp(a.created_time)).total_seconds() > unattended_s
    )


class AlertFeedTailer:
    """Hands alert events to this hub's Watch streams: those it wrote (``publish``, also pushed to
    the peers), those a peer pushed (``receive``) and those found by tailing ``alert_feed``."""

    def __init__(
        self, *, store: AlertStore, config: HubConfig, metrics: HotListMetrics, pusher: PeerPusher | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.pusher = pusher
        self.watchers: set[_Watcher] = set()
        self._seen: dict[uuid.UUID, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            await cancel_task(self._task)
        for w in list(self.watchers):
            with contextlib.suppress(asyncio.QueueFull):
                w.queue.put_nowait(None)

    async def _run(self) -> None:
        cfg = self.config.alerts
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.feed_errors.inc()
                log.warning("alert feed poll failed: %r", exc)
            await asyncio.sleep(cfg.feed_poll_interval_s)

    async def read_range(self, start: float, after: uuid.UUID | None = None) -> list[Row]:
        """Feed events from time ``start`` (or after event ``after``) to now, oldest first."""
        now = time.time()
        lower = after or min_uuid_from_time(start)
        buckets = range(feed_bucket(start), feed_bucket(now) + 1)
        parts = await asyncio.gather(*(self.store.feed_since(b, lower) for b in buckets))
        rows = [r for part in parts for r in part]
        rows.sort(key=lambda r: (r.event_id.time, r.event_id.bytes))
        return rows

    def publish(self, event_id: uuid.UUID, kind: str, alert: alert_pb2.Alert) -> None:
        """An event this hub has just stored in the feed: to its Watch streams now, and to the peers."""
        if not self.config.alerts.push:
            return
        ev = alert_pb2.WatchResponse(event_id=str(event_id), kind=_EVENT_KIND[kind], alert=alert)
        if self.pusher is not None:
            self.pusher.push(ev)
        self._hand_over(event_id, ev, "local")

    def receive(self, ev: alert_pb2.WatchResponse) -> bool:
        """An event a peer hub stored and pushed; False when already handed over."""
        ev.alert.unattended = ev.alert.status == alert_pb2.ALERT_STATUS_PENDING and (
            (datetime.now(UTC) - from_timestamp(ev.alert.created_time)).total_seconds()
            > self.config.alerts.unattended_after_s
        )
        return self._hand_over(uuid.UUID(ev.event_id), ev, "peer")

    def _hand_over(self, event_id: uuid.UUID, ev: alert_pb2.WatchResponse, path: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = time.time()
        self.metrics.alert_fanout.labels(path).observe(max(0.0, time.time() - event_time(event_id)))
        if self.watchers:
            self.dispatch(ev)
        return True

    async def poll(self) -> None:
        now = time.time()
        lookback = self.config.alerts.feed_lookback_s
        rows = await self.read_range(now - lookback)
        for r in rows:
            if r.event_id in self._seen:
                continue
            self._seen[r.event_id] = now
            self.metrics.alert_fanout.labels("feed").observe(max(0.0, time.time() - event_time(r.event_id)))
            if not self.watchers:
                continue
            ev = to_event(r, self.config.alerts.unattended_after_s)
            self.dispatch(ev)
        if len(self._seen) > 1000 or rows:
            cutoff = now - 3 * lookback
            self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}

    def dispatch(self, ev: alert_pb2.WatchResponse) -> None:
        for w in list(self.watchers):
            if not passes(w.filter, ev.alert):
                continue
            try:
                w.queue.put_nowait(ev)
            except asyncio.QueueFull:
                self.watchers.discard(w)
                with contextlib.suppress(asyncio.QueueEmpty):
                    w.queue.get_nowait()
                w.queue.put_nowait(None)


def event_time(event_id: uuid.UUID) -> float:
    """The Unix time of a feed event (its time-based UUID)."""
    return (event_id.time - 0x01B21DD213814000) / 1e7


def to_event(row: Row, unattended_s: float) -> alert_pb2.WatchResponse:
    a = alert_pb2.Alert.FromString(row.alert)
    a.unattended = a.status == alert_pb2.ALERT_STATUS_PENDING and (
        (datetime.now(UTC) - from_timestamp(a.created_time)).total_seconds() > unattended_s
    )
    return alert_pb2.WatchResponse(
        event_id=str(row.event_id), kind=_EVENT_KIND.get(row.kind, alert_pb2.ALERT_EVENT_KIND_UNSPECIFIED), alert=a
    )


class Alerter:
    """The ingest hook: match a stored read, store its alert."""

    def __init__(
        self,
        *,
        mirror: HotListMirror,
        store: AlertStore,
        config: HubConfig,
        metrics: HotListMetrics,
        fanout: AlertFeedTailer | None = None,
    ) -> None:
        self.mirror = mirror
        self.store = store
        self.config = config
        self.metrics = metrics
        self.fanout = fanout

    async def on_read_stored(self, read: reads_pb2.PlateRead, valid: ValidRead, now: datetime) -> None:
        """Match a stored read and store its alert (``prepare`` then ``store_alert``)."""
        prepared = await self.prepare(read, valid, now)
        if prepared is not None:
            await self.store_alert(prepared, read, valid)

    async def prepare(self, read: reads_pb2.PlateRead, valid: ValidRead, now: datetime) -> PreparedAlert | None:
        """Match the read and build its alert, or None; writes nothing, so it may run while the
        read itself is being stored."""
        t0 = time.perf_counter()
        matches = self.mirror.matcher.match(valid.plate, read.region.upper(), now)
        self.metrics.match_seconds.observe(time.perf_counter() - t0)
        if not matches:
            return None
        # A resent read (its ack was lost) keeps the alert it raised the first time.
        # Millisecond precision, as Cassandra stores it: the resend derives the same event id.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        created = await self.store.created_at(alert_id_for(read.read_id)) or now
        return PreparedAlert(build_alert(read, valid.plate, matches, self.config.hub_id, created), matches[0].kind)

    async def store_alert(self, prepared: PreparedAlert, read: reads_pb2.PlateRead, valid: ValidRead) -> None:
        """Store a prepared alert (once its read is stored, before the ack) and tell watchers."""
        alert = prepared.alert
        event_id = await self.store.create(alert, read.plate_crop_jpeg, read.frame_jpeg, valid.ttl_seconds)
        self.metrics.alerts_created.labels(prepared.kind).inc()
        if self.fanout is not None:  # stored: watchers may hear of it before the node has its ack
            self.fanout.publish(event_id, CREATED, alert)


@dataclass(frozen=True)
class PreparedAlert:
    """A read's alert, built but not stored; ``kind`` is its best match's kind."""

    alert: alert_pb2.Alert
    kind: str


class AlertServicer(alert_pb2_grpc.AlertServiceServicer):
    def __init__(
        self,
        *,
        store: AlertStore,
        tailer: AlertFeedTailer,
        config: HubConfig,
        metrics: HotListMetrics,
        audit: AuditLog,
    ) -> None:
        self.store = store
        self.tailer = tailer
        self.config = config
        self.metrics = metrics
        self.audit = audit
        self._scan_task: asyncio.Task[None] | None = None
        self._full_scan_at = float("-inf")
        self._older: dict[str, alert_pb2.Alert] = {}  # pending alerts before the recent window

    def start(self) -> None:
        self._scan_task = asyncio.create_task(self._scan_loop())

    async def stop(self) -> None:
        if self._scan_task:
            await cancel_task(self._scan_task)

    async def _scan_loop(self) -> None:
        while True:
            try:
                pending = await self._pending_retained()
                self.metrics.alerts_pending.set(len(pending))
                self.metrics.alerts_unattended.set(sum(a.unattended for a in pending))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pending-alert scan failed: %r", exc)
            await asyncio.sleep(self.config.alerts.pending_scan_interval_s)

    async def _pending_retained(self) -> list[alert_pb2.Alert]:
        """Every PENDING alert still retained (policy 4.3: a hit nobody decided stays counted
        until it expires, not for a day). All retained days are read at start and hourly; in
        between, the last day and a bit are read and the older pending alerts are re-checked
        by id (few: hits are decided within minutes)."""
        now_m = time.monotonic()
        if now_m - self._full_scan_at >= _FULL_SCAN_S:
            hours = math.ceil(self.config.retention.read_ttl_seconds / 3600)
            alerts = [a for a in await self._recent(hours, _SCAN_LIMIT) if a.status == alert_pb2.ALERT_STATUS_PENDING]
            self._full_scan_at = now_m
            old = datetime.now(UTC) - timedelta(hours=_RECENT_H - 2)
            self._older = {a.alert_id: a for a in alerts if from_timestamp(a.created_time) < old}
            return alerts
        recent = {
            a.alert_id: a
            for a in await self._recent(_RECENT_H, _SCAN_LIMIT)
            if a.status == alert_pb2.ALERT_STATUS_PENDING
        }
        older = [a for aid, a in self._older.items() if aid not in recent]
        statuses = await asyncio.gather(*(self.store.status_of(uuid.UUID(a.alert_id)) for a in older))
        now = datetime.now(UTC)
        self._older = {}
        for a, st in zip(older, statuses, strict=True):
            if st is None or st.status is not None:
                continue  # expired or decided
            apply_status(a, st.status, st.disposition, self.config.alerts.unattended_after_s, now)
            self._older[a.alert_id] = a
        return [*recent.values(), *self._older.values()]

    async def _recent(self, hours: int, limit: int) -> list[alert_pb2.Alert]:
        now = datetime.now(UTC)
        since = now - timedelta(hours=hours)
        out: list[alert_pb2.Alert] = []
        day = now.date()
        while day >= since.date() and len(out) < limit:
            rows = await self.store.list_day(day, limit)
            rows = [r for r in rows if utc(r.created_at) >= since]
            statuses = await asyncio.gather(*(self.store.status_of(r.alert_id) for r in rows))
            for r, st in zip(rows, statuses, strict=True):
                a = alert_pb2.Alert.FromString(r.summary)
                if st is None:
                    continue  # expired
                apply_status(a, st.status, st.disposition, self.config.alerts.unattended_after_s, now)
                out.append(a)
            day -= timedelta(days=1)
        return out

    async def _valid_filter(self, f: alert_pb2.AlertFilter, context: Context) -> None:
        if f.HasField("area"):
            b = f.area
            if not (
                -90 <= b.min_latitude <= b.max_latitude <= 90 and -180 <= b.min_longitude <= b.max_longitude <= 180
            ):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "filter.area: need -90 <= min_latitude <= max_latitude <= 90 and "
                    "-180 <= min_longitude <= max_longitude <= 180",
                )
        for c in f.categories:
            if c not in hotlist_pb2.HotListCategory.values() or c == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"filter.categories: unknown category {c}")

    async def Watch(self, request: alert_pb2.WatchRequest, context: Context) -> AsyncIterator[alert_pb2.WatchResponse]:
        await self._valid_filter(request.filter, context)
        after: uuid.UUID | None = None
        if request.after_event_id:
            try:
                after = uuid.UUID(request.after_event_id)
                if after.version != 1:
                    raise ValueError
            except ValueError:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"after_event_id {request.after_event_id!r} is not an event id from a previous Watch",
                )
            assert after is not None
            age = time.time() - event_time(after)
            if age > self.config.alerts.watch_resume_max_s:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"cannot resume from an event {age / 3600:.1f} h old (limit "
                    f"{self.config.alerts.watch_resume_max_s / 3600:.0f} h); use `alpr alerts list` for older alerts",
                )
        w = _Watcher(request.filter, asyncio.Queue(self.config.alerts.watch_queue_size))
        self.tailer.watchers.add(w)
        self.metrics.watchers.inc()
        sent: set[str] = set()
        replayed = False  # an event was yielded (and with it the initial metadata)
        try:
            if after is not None:
                # From a look-back before the position: an event stored a moment before it but
                # handed over after it (a push or a poll that came late) is replayed, not lost.
                # Delivery is at least once; the client de-duplicates by event id.
                start = event_time(after) - self.config.alerts.feed_lookback_s
                for r in await self.tailer.read_range(start):
                    if r.event_id == after:
                        continue
                    ev = to_event(r, self.config.alerts.unattended_after_s)
                    sent.add(ev.event_id)
                    if passes(request.filter, ev.alert):
                        replayed = True
                        yield ev
            # Tell the client the stream is live (headers) even before the first event; a
            # replayed event above has already sent them, and sending twice is an error.
            if not replayed:
                await context.send_initial_metadata(())
            while True:
                item = await w.queue.get()
                if item is None:
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        "watch ended (hub shutting down or watcher too slow); resume with after_event_id",
                    )
                if item.event_id in sent:
                    continue
                yield item
        finally:
            self.tailer.watchers.discard(w)
            self.metrics.watchers.dec()

    async def ListAlerts(self, request: alert_pb2.ListAlertsRequest, context: Context) -> alert_pb2.ListAlertsResponse:
        await self._valid_filter(request.filter, context)
        hours = request.hours or 24
        limit = request.limit or 100
        out = []
        for a in await self._recent(hours, 100_000):
            if not passes(request.filter, a):
                continue
            if request.status and a.status != request.status:
                continue
            if request.unattended_only and not a.unattended:
                continue
            out.append(a)
            if len(out) >= limit:
                break
        return alert_pb2.ListAlertsResponse(alerts=out, unattended_after_s=self.config.alerts.unattended_after_s)

    async def _parse_id(self, raw: str, context: Context) -> uuid.UUID:
        return uuid.UUID(raw)  # the request rules let only canonical UUIDs through

    async def GetAlert(self, request: alert_pb2.GetAlertRequest, context: Context) -> alert_pb2.GetAlertResponse:
        aid = await self._parse_id(request.alert_id, context)
        row, history = await asyncio.gather(self.store.get(aid), self.store.history(aid))
        if row is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no alert {request.alert_id} (alerts expire 60 days after the read)"
            )
        return alert_pb2.GetAlertResponse(
            alert=alert_from_row(row, self.config.alerts.unattended_after_s, datetime.now(UTC)),
            plate_crop_jpeg=row.plate_crop_jpeg or b"",
            frame_jpeg=row.frame_jpeg or b"",
            history=history,
        )

    async def DecideAlert(
        self, request: alert_pb2.DecideAlertRequest, context: Context
    ) -> alert_pb2.DecideAlertResponse:
        aid = await self._parse_id(request.alert_id, context)
        bad = _decision_problem(request)
        if bad:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad)
        stages = self.metrics.decision_stage
        t0 = time.perf_counter()
        row = await self.store.for_decision(aid)
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no alert {request.alert_id}")
        if row.status and not request.amend:
            # Already decided: refused without a transaction (a decision is never undone, so a
            # stale read can only say PENDING wrongly, and then the transaction below refuses).
            await self._refuse_decided(request.alert_id, row.status, row.disposition, context)
        now = datetime.now(UTC)
        a = alert_from_row(row, self.config.alerts.unattended_after_s, now)
        ttl = int(self.config.retention.read_ttl_seconds - (now - from_timestamp(a.capture_time)).total_seconds())
        if ttl <= 0:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"alert {request.alert_id} has expired")
        accept = request.WhichOneof("decision") == "accept"
        d = alert_pb2.Disposition(
            status=alert_pb2.ALERT_STATUS_ACCEPTED if accept else alert_pb2.ALERT_STATUS_REJECTED,
            officer_id=request.officer_id.strip(),
            decided_time=to_timestamp(now),
            note=request.note.strip(),
            amendment=request.amend,
            hub_id=self.config.hub_id,
        )
        if accept:
            d.accept.CopyFrom(request.accept)
        else:
            d.reject.CopyFrom(request.reject)
        t1 = time.perf_counter()
        stages.labels("read").observe(t1 - t0)
        applied, current = await self.store.claim(aid, ttl, d, request.amend)
        t2 = time.perf_counter()
        stages.labels("claim").observe(t2 - t1)
        if not applied:
            if request.amend:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"alert {request.alert_id} is still PENDING: decide it (accept or reject) before amending",
                )
            latest = await self.store.for_decision(aid)  # who won, for the refusal
            await self._refuse_decided(
                request.alert_id, getattr(current, "status", None), latest.disposition if latest else None, context
            )
        a.status = d.status
        a.disposition.CopyFrom(d)
        a.unattended = False
        self.metrics.alerts_decided.labels(alert_pb2.AlertStatus.Name(d.status)).inc()

        async def announce() -> None:
            try:
                self.tailer.publish(await self.store.append_feed(STATUS_CHANGED, a), STATUS_CHANGED, a)
            except Exception as exc:  # the decision is stored; watchers see it on the next change
                log.warning("alert feed append for %s failed: %r", request.alert_id, exc)

        # History and feed at once: watchers (the bridge) hear of the decision without waiting
        # for the history row or the audit entry.
        await asyncio.gather(self.store.add_history(aid, d), announce())
        t3 = time.perf_counter()
        stages.labels("record").observe(t3 - t2)
        # Every disposition is audited (policy 3.2, 4.3).
        status = alert_pb2.AlertStatus.Name(d.status).removeprefix("ALERT_STATUS_").lower()
        details = {"alert_id": request.alert_id, "status": status, "amend": request.amend}
        await self.audit.record_call("alert.decide", fallback_actor=d.officer_id, details=details)
        stages.labels("audit").observe(time.perf_counter() - t3)
        return alert_pb2.DecideAlertResponse(alert=a)

    async def _refuse_decided(
        self, alert_id: str, status: str | None, disposition: bytes | None, context: Context
    ) -> NoReturn:
        prev = alert_pb2.Disposition.FromString(disposition) if disposition else None
        who = f" by {prev.officer_id} at {from_timestamp(prev.decided_time).isoformat()}" if prev else ""
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"alert {alert_id} is already {status or 'decided'}{who}; only a PENDING alert can be decided "
            "(use --amend with a note to change the decision)",
        )


def _decision_problem(r: alert_pb2.DecideAlertRequest) -> str | None:
    """Why a decision is incomplete (policy 4.2-4.6), or None."""
    if not r.officer_id.strip():
        return "officer_id is required: who decides"
    kind = r.WhichOneof("decision")
    if kind is None:
        return "a decision is required: accept or reject"
    if r.amend and not r.note.strip():
        return "an amendment needs a note saying why the decision changes"
    if kind == "accept":
        acc = r.accept
        if not acc.characters_verified or not acc.state_verified:
            return (
                "policy 4.2: verify the plate characters and the state against the image before accepting "
                "(characters_verified and state_verified must be true); otherwise reject"
            )
        if not acc.leads_check:
            return "accept.leads_check is required: LEADS/dispatch status check done, or not possible"
        if not acc.action:
            return "accept.action is required: taking action, action taken, or unable to act"
        if acc.on_other_assignment and not acc.supervisor_notified:
            return "policy 4.6: an officer on another assignment must notify a supervisor (supervisor_notified)"
        return None
    if not r.reject.reason:
        return "reject.reason is required: misread, state mismatch, entry no longer valid, duplicate, or other"
    if r.reject.reason == alert_pb2.REJECT_REASON_OTHER and not r.note.strip():
        return "reject reason OTHER needs a note"
    return None
