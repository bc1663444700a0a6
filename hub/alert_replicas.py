"""Alert events between hub replicas: pushed at once, the feed behind them.

A hub that appends an event to ``alert_feed`` (a new alert, a decision) hands it to its own
Watch streams at once (:meth:`hub.alerts.AlertFeedTailer.publish`) and to
:class:`PeerPusher`, which sends it to every peer in ``alerts.peers`` with
``AlertReplicaService.PushEvents`` (one sender per peer, events batched while a call is in
flight). The receiving hub (:class:`AlertReplicaServicer`) hands the events to its Watch
streams; its feed poll later finds them and, knowing their ids, skips them.

Nothing depends on a push arriving: the event is in the feed before it is pushed, and every
hub still polls the feed. A peer that is down, slow or refuses costs only the push (logged,
counted in ``alpr_hub_alert_pushes_total``); its watchers then hear by the feed, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Protocol

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc

from alpr_common.lifecycle import cancel_task
from alpr_common.tls import channel_credentials
from hub.config import HubConfig
from hub.metrics import HotListMetrics
from hub.principal import Context

log = logging.getLogger(__name__)

# Events in one PushEvents call (the proto's limit).
MAX_BATCH = 1000
# A failing peer is logged at most this often.
_WARN_EVERY_S = 30.0


def peer_channel(target: str, config: HubConfig) -> grpc.aio.Channel:
    """A channel to a peer hub: mutual TLS with this hub's own certificate when TLS is on."""
    tls = config.tls
    if not tls.enabled:
        return grpc.aio.insecure_channel(target)
    if tls.ca_file:
        creds = channel_credentials(tls.ca_file, tls.cert_file, tls.key_file)
    else:  # the peers' server certificates chain to a public CA
        creds = grpc.ssl_channel_credentials(None, Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())
    return grpc.aio.secure_channel(target, creds)


class _Peer:
    """One peer: a channel, a bounded queue of events, one sender task."""

    def __init__(self, target: str, config: HubConfig, metrics: HotListMetrics) -> None:
        self.target = target
        self.config = config
        self.metrics = metrics
        self.channel = peer_channel(target, config)
        self.stub = alert_pb2_grpc.AlertReplicaServiceStub(self.channel)
        self.queue: deque[alert_pb2.WatchResponse] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._warned = 0.0

    def put(self, ev: alert_pb2.WatchResponse) -> None:
        if len(self.queue) >= self.config.alerts.push_queue_size:
            self.queue.popleft()  # the peer reads it from the feed
            self.metrics.alert_pushes.labels("dropped").inc()
        self.queue.append(ev)
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
                req = alert_pb2.PushEventsRequest(hub_id=self.config.hub_id, events=batch)
                try:
                    await self.stub.PushEvents(req, timeout=self.config.alerts.push_timeout_s)
                    self.metrics.alert_pushes.labels("ok").inc(len(batch))
                except grpc.aio.AioRpcError as e:
                    self.metrics.alert_pushes.labels("failed").inc(len(batch))
                    now = time.monotonic()
                    if now - self._warned >= _WARN_EVERY_S:
                        self._warned = now
                        log.warning(
                            "pushing %d alert event(s) to peer hub %s failed: %s %s (it reads them from the feed)",
                            len(batch), self.target, e.code().name, e.details(),
                        )  # fmt: skip


class PeerPusher:
    """Sends the alert events this hub wrote to every peer replica in ``alerts.peers``."""

    def __init__(self, *, config: HubConfig, metrics: HotListMetrics) -> None:
        self.peers = [_Peer(t, config, metrics) for t in config.alerts.peers]

    def start(self) -> None:
        for p in self.peers:
            p.task = asyncio.create_task(p.run())

    async def stop(self) -> None:
        for p in self.peers:
            if p.task is not None:
                await cancel_task(p.task)
            with contextlib.suppress(Exception):
                await p.channel.close(None)

    def push(self, ev: alert_pb2.WatchResponse) -> None:
        for p in self.peers:
            p.put(ev)


def event_problem(ev: alert_pb2.WatchResponse) -> str | None:
    """Why a pushed event cannot be a feed event, or None."""
    try:
        eid = uuid.UUID(ev.event_id)
    except ValueError:
        return f"event_id {ev.event_id!r} is not a UUID"
    if eid.version != 1:
        return f"event_id {ev.event_id!r} is not a time-based UUID (version 1) from the alert feed"
    if ev.kind not in (alert_pb2.ALERT_EVENT_KIND_CREATED, alert_pb2.ALERT_EVENT_KIND_STATUS_CHANGED):
        return f"event {ev.event_id}: kind must be CREATED or STATUS_CHANGED"
    try:
        uuid.UUID(ev.alert.alert_id)
    except ValueError:
        return f"event {ev.event_id}: alert.alert_id {ev.alert.alert_id!r} is not a UUID"
    return None


class FeedEvents(Protocol):
    """What takes pushed events (the hub's feed tailer); True when the event was new to it."""

    def receive(self, ev: alert_pb2.WatchResponse) -> bool: ...


class AlertReplicaServicer(alert_pb2_grpc.AlertReplicaServiceServicer):
    """Receives a peer's alert events and hands them to this hub's Watch streams."""

    def __init__(self, *, deliver: FeedEvents) -> None:
        self.deliver = deliver

    async def PushEvents(self, request: alert_pb2.PushEventsRequest, context: Context) -> alert_pb2.PushEventsResponse:
        for i, ev in enumerate(request.events):
            bad = event_problem(ev)
            if bad:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"events[{i}]: {bad}")
        new = sum(self.deliver.receive(ev) for ev in request.events)
        return alert_pb2.PushEventsResponse(new_events=new)
