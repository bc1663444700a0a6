"""What is relayed, and following the hub's alert stream without gaps.

Rules (policy 4.4, 4.6D):

- accepted with action TAKING_ACTION / ACTION_TAKEN → ``valid_alert`` to dispatch;
- accepted with UNABLE_TO_ACT → ``unable_to_act`` to dispatch and neighbouring agencies;
- PENDING longer than the hub's ``alerts.unattended_after_s`` → ``unattended`` to dispatch and
  neighbouring agencies (found by asking the hub for pending alerts, so it survives restarts).

The relay key is ``<alert_id>:<reason>``: one relay per alert and reason, whatever number of
times the event is seen (replays after a restart, amendments that keep the reason).

``AlertFollower`` reads ``AlertService.Watch`` from the stored position (the last event it
handled), enqueues relays in the durable outbox, then stores the event id: a crash re-reads
from the last stored event, and the outbox ignores keys it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

import grpc
from alpr.v1 import agency_pb2, alert_pb2, alert_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from alpr_common.retry import Backoff
from alpr_common.timestamps import from_timestamp
from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.metrics import BridgeMetrics
from dispatch_bridge.outbox import Outbox

log = logging.getLogger(__name__)

VALID, UNABLE, UNATTENDED = "valid_alert", "unable_to_act", "unattended"
_REASON = {
    VALID: agency_pb2.RELAY_REASON_VALID_ALERT,
    UNABLE: agency_pb2.RELAY_REASON_UNABLE_TO_ACT,
    UNATTENDED: agency_pb2.RELAY_REASON_UNATTENDED,
}


def reason_for(alert: alert_pb2.Alert) -> str | None:
    """The relay reason of an alert as of an event, or None (nothing to relay)."""
    if alert.status != alert_pb2.ALERT_STATUS_ACCEPTED or alert.disposition.WhichOneof("decision") != "accept":
        return None
    action = alert.disposition.accept.action
    if action in (alert_pb2.ENFORCEMENT_ACTION_TAKING_ACTION, alert_pb2.ENFORCEMENT_ACTION_ACTION_TAKEN):
        return VALID
    if action == alert_pb2.ENFORCEMENT_ACTION_UNABLE_TO_ACT:
        return UNABLE
    return None


def relay_key(alert_id: str, reason: str) -> str:
    return f"{alert_id}:{reason}"


class Relayer:
    """Builds relays from alerts and puts them in the outbox for the right sinks."""

    def __init__(
        self,
        config: BridgeConfig,
        outbox: Outbox,
        alerts: alert_pb2_grpc.AlertServiceStub,
        metrics: BridgeMetrics,
        notify: Callable[[str, list[str], datetime], None],
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.alerts = alerts
        self.metrics = metrics
        self.notify = notify
        self.dispatch_sinks = [s.name for s in config.dispatch]
        self.neighbour_sinks = [f"agency:{n.agency_id}" for n in config.neighbours]

    def sinks_for(self, reason: str) -> list[str]:
        return self.dispatch_sinks + (self.neighbour_sinks if reason in (UNABLE, UNATTENDED) else [])

    async def build(self, alert: alert_pb2.Alert, reason: str) -> agency_pb2.Relay:
        """The relay payload: plate, state, categories, sources, place, time, camera, crop, decision."""
        r = agency_pb2.Relay(
            idempotency_key=relay_key(alert.alert_id, reason),
            reason=_REASON[reason],
            origin_agency_id=self.config.agency_id,
            origin_hub_id=alert.hub_id,
            alert_id=alert.alert_id,
            plate=alert.plate,
            state=alert.region,
            categories=list(alert.categories),
            camera_id=alert.camera_id,
            node_id=alert.node_id,
        )
        r.sources.extend(sorted({m.entry.source for m in alert.matches}))
        if alert.HasField("location"):
            r.location.CopyFrom(alert.location)
        r.location_quality, r.location_age_s = alert.location_quality, alert.location_age_s
        if alert.HasField("capture_time"):
            r.capture_time.CopyFrom(alert.capture_time)
        if alert.matches:
            r.match.CopyFrom(alert.matches[0])
        if alert.HasField("disposition") and alert.status != alert_pb2.ALERT_STATUS_PENDING:
            r.disposition.CopyFrom(alert.disposition)
        crop = self.config.relay.crop
        if crop == "inline":
            req = alert_pb2.GetAlertRequest(alert_id=alert.alert_id)
            got = await self.alerts.GetAlert(req, timeout=10)  # type: ignore[misc]
            r.crop_jpeg = got.plate_crop_jpeg
        elif crop == "link":
            r.crop_url = self.config.relay.crop_url_template.format(alert_id=alert.alert_id)
        now = Timestamp()
        now.GetCurrentTime()
        r.relayed_time.CopyFrom(now)
        return r

    async def relay(self, alert: alert_pb2.Alert, reason: str) -> bool:
        """Enqueue the relay unless it was already; True when newly enqueued."""
        key = relay_key(alert.alert_id, reason)
        sinks = self.sinks_for(reason)
        if not sinks:
            return False
        # The "already enqueued?" read and the crop fetch overlap (latency).
        known, relay = await asyncio.gather(self.outbox.known(key), self.build(alert, reason))
        if known:
            return False
        created = await self.outbox.enqueue(key, "relay", relay.SerializeToString(), sinks, checked=True)
        if created is None:
            return False
        self.metrics.enqueued.labels(reason).inc()
        log.info("relay %s → %s", key, ", ".join(sinks))
        self.notify(key, sinks, created)
        return True


WatchCall: TypeAlias = "grpc.aio.UnaryStreamCall[alert_pb2.WatchRequest, alert_pb2.WatchResponse]"
WATCH_BACKOFF = Backoff(initial_s=0.2, max_s=5.0)  # reopening the alert stream


async def _backoff(attempt: int, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), WATCH_BACKOFF.delay(attempt))


class AlertFollower:
    """Follows AlertService.Watch on the configured hubs (failover) from the stored position."""

    def __init__(
        self,
        config: BridgeConfig,
        outbox: Outbox,
        relayer: Relayer,
        channels: list[grpc.aio.Channel],
        metrics: BridgeMetrics,
        stop: asyncio.Event,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.relayer = relayer
        self.channels = channels
        self.metrics = metrics
        self.stop = stop
        self.position = ""
        self.connected = asyncio.Event()

    async def run(self) -> None:
        self.position = await self.outbox.position()
        log.info("following the alert stream from %s", self.position or "now (no stored position)")
        failures = 0
        hub = 0
        while not self.stop.is_set():
            ch = self.channels[hub % len(self.channels)]
            call = alert_pb2_grpc.AlertServiceStub(ch).Watch(alert_pb2.WatchRequest(after_event_id=self.position))
            try:
                await call.initial_metadata()
                self.metrics.watch_connected.set(1)
                self.connected.set()
                failures = 0
                await self.follow(call)
            except grpc.aio.AioRpcError as e:
                self.metrics.watch_errors.inc()
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION and self.position:
                    log.error(
                        "cannot resume the alert stream from %s (%s); continuing from now — alerts decided in "
                        "between are not relayed unless still pending",
                        self.position,
                        e.details(),
                    )
                    self.position = ""
                else:
                    log.warning("alert stream on hub %d ended: %s %s", hub % len(self.channels), e.code().name,
                                e.details())  # fmt: skip
                    hub += 1
            except Exception as exc:  # a relay could not be enqueued (Cassandra): re-read from the position
                self.metrics.watch_errors.inc()
                log.warning("alert stream handling failed: %r; resuming from %s", exc, self.position)
            finally:
                call.cancel()
                self.metrics.watch_connected.set(0)
                self.connected.clear()
            if not self.stop.is_set():
                failures += 1
                await _backoff(failures, self.stop)

    async def follow(self, call: WatchCall) -> None:
        """Handle events concurrently (up to ``WINDOW`` in flight), store the position in order.

        The stored position only ever moves past an event once its relay (if any) is in the
        outbox, and all earlier events are handled too: a crash replays from there, and the
        outbox ignores what it already has.
        """
        window: deque[tuple[str, asyncio.Task[None] | None]] = deque()
        wake = asyncio.Event()
        reading = True

        async def commit() -> None:
            while True:
                last = None
                while window and (window[0][1] is None or window[0][1].done()):
                    eid, task = window.popleft()
                    if task is not None and (task.cancelled() or task.exception() is not None):
                        raise RuntimeError(
                            f"relay of event {eid} failed: {None if task.cancelled() else task.exception()!r}"
                        )
                    last = eid
                if last is not None:
                    await self.outbox.save_position(last)
                    self.position = last
                    continue
                if not window and not reading:
                    return
                first = window[0][1] if window else None
                if first is not None:
                    await asyncio.wait({first})
                else:
                    wake.clear()
                    await wake.wait()

        async def read() -> None:
            nonlocal reading
            async for ev in call:
                self.metrics.watch_events.inc()
                reason = reason_for(ev.alert)
                task = asyncio.create_task(self.relayer.relay(ev.alert, reason)) if reason else None
                window.append((ev.event_id, task))  # type: ignore[arg-type]
                wake.set()
                while len(window) >= self.WINDOW:  # back-pressure: the committer catches up
                    await asyncio.sleep(0.005)
                if self.stop.is_set():
                    break
            reading = False
            wake.set()

        committer = asyncio.create_task(commit())
        reader = asyncio.create_task(read())
        try:
            done, _ = await asyncio.wait({reader, committer}, return_when=asyncio.FIRST_COMPLETED)
            if committer in done:
                committer.result()  # raises why it stopped
            reader.result()  # raises the stream's error
            await committer
        finally:
            for t in (reader, committer, *(t for _e, t in window if t is not None)):
                t.cancel()

    WINDOW = 256


class PendingScanner:
    """Asks the hub for PENDING alerts and relays those pending longer than the threshold."""

    def __init__(
        self,
        config: BridgeConfig,
        relayer: Relayer,
        channels: list[grpc.aio.Channel],
        stop: asyncio.Event,
    ) -> None:
        self.config = config
        self.relayer = relayer
        self.channels = channels
        self.stop = stop

    async def _list(self, status: int, hours: int, unattended_only: bool = False) -> list[alert_pb2.Alert]:
        last: Exception | None = None
        for ch in self.channels:
            try:
                resp = await alert_pb2_grpc.AlertServiceStub(ch).ListAlerts(
                    alert_pb2.ListAlertsRequest(status=status, hours=hours, limit=1000,  # type: ignore[arg-type]
                                                unattended_only=unattended_only),
                    timeout=30,
                )  # fmt: skip
                return list(resp.alerts)
            except grpc.aio.AioRpcError as e:
                last = e
        raise RuntimeError(f"no hub answered ListAlerts: {last}")

    async def scan_once(self) -> int:
        """Relay unattended alerts; and, as a safety net, accepted alerts the stream did not bring."""
        cfg = self.config.relay
        now = datetime.now(UTC)
        n = 0
        # The hub says which pending alerts are unattended: one threshold for the hub's
        # flag and gauge, the console and the relay (its alerts.unattended_after_s).
        for a in await self._list(alert_pb2.ALERT_STATUS_PENDING, cfg.pending_scan_hours, unattended_only=True):
            if a.unattended and await self.relayer.relay(a, UNATTENDED):
                n += 1
        if cfg.reconcile_window_s > 0:
            hours = max(1, min(1440, int(cfg.reconcile_window_s // 3600) + 1))
            for a in await self._list(alert_pb2.ALERT_STATUS_ACCEPTED, hours):
                reason = reason_for(a)
                if reason is None:
                    continue
                age = (now - from_timestamp(a.disposition.decided_time)).total_seconds()
                # Decided a while ago (the stream had its chance), within the window.
                if cfg.reconcile_after_s <= age <= cfg.reconcile_window_s and await self.relayer.relay(a, reason):
                    log.warning("relay %s came from the reconciliation scan, not the alert stream", a.alert_id)
                    n += 1
        return n

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                await self.scan_once()
            except Exception as exc:
                log.warning("pending-alert scan failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.config.relay.pending_scan_interval_s)
