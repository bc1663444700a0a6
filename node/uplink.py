"""The node → hub streaming client: sends queued reads, deletes them only on ack.

One long-lived ``Ingest`` stream at a time. Up to ``window`` reads are unacknowledged at
once; every (re)connection resends, oldest first, whatever the queue still holds. When the
stream breaks the client reconnects with exponential backoff and full jitter, moving on to
the next hub in ``targets`` (failover). Heartbeats ride on the same stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from alpr.v1 import ingest_pb2

from alpr_common.retry import Backoff
from node.metrics import NodeMetrics
from node.queue import ReadQueue

log = logging.getLogger(__name__)

INGEST_METHOD = "/alpr.v1.IngestService/Ingest"


@dataclass
class UplinkSettings:
    targets: list[str]
    window: int = 128
    heartbeat_interval_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)  # between reconnections
    connect_timeout_s: float = 5.0


class Uplink:
    """Runs the stream in a background thread until ``stop()``."""

    def __init__(
        self,
        settings: UplinkSettings,
        queue: ReadQueue,
        heartbeat: Callable[[], ingest_pb2.Heartbeat],
        metrics: NodeMetrics,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if not settings.targets:
            raise ValueError("at least one hub target is required")
        self.settings = settings
        self.queue = queue
        self.heartbeat = heartbeat
        self.metrics = metrics
        self.credentials = credentials
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self.connected_target: str | None = None
        self.last_error: str | None = None
        self.clock_skew_s: float | None = None
        self._call: Any = None  # the active stream, cancelled by stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout)

    @property
    def connected(self) -> bool:
        return self.connected_target is not None

    def _run(self) -> None:
        attempt = 0
        index = 0
        while not self._stop.is_set():
            target = self.settings.targets[index % len(self.settings.targets)]
            self.metrics.hub_reconnects.inc()
            made_progress = self._session(target)
            if self._stop.is_set():
                break
            attempt = 0 if made_progress else attempt + 1
            if not made_progress:
                index += 1  # fail over to the next hub
            self._stop.wait(self.settings.backoff.delay(attempt))

    def _channel(self, target: str) -> grpc.Channel:
        options = [
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ]
        if self.credentials is not None:
            return grpc.secure_channel(target, self.credentials, options=options)
        return grpc.insecure_channel(target, options=options)

    def _session(self, target: str) -> bool:
        """One stream to one hub. Returns True if the hub acknowledged anything."""
        inflight: dict[str, int] = {}
        cond = threading.Condition()
        state = {"last_seq": 0, "done": False, "progress": False}
        hb_due = [0.0]

        def requests() -> Iterator[bytes]:
            while not self._stop.is_set():
                with cond:
                    if state["done"]:
                        return
                    room = self.settings.window - len(inflight)
                now = time.monotonic()
                if now >= hb_due[0]:
                    hb_due[0] = now + self.settings.heartbeat_interval_s
                    yield ingest_pb2.IngestRequest(heartbeat=self.heartbeat()).SerializeToString()
                batch = self.queue.pending(state["last_seq"], room) if room > 0 else []
                if batch:
                    with cond:
                        for q in batch:
                            inflight[q.read_id] = q.seq
                        state["last_seq"] = batch[-1].seq
                    for q in batch:
                        yield q.payload  # a serialized IngestRequest
                    continue
                wait = max(0.01, min(0.5, hb_due[0] - time.monotonic()))
                if room > 0:
                    self.queue.wait_for_more(state["last_seq"], wait)
                else:
                    with cond:
                        cond.wait(wait)

        channel = self._channel(target)
        try:
            grpc.channel_ready_future(channel).result(timeout=self.settings.connect_timeout_s)
        except grpc.FutureTimeoutError:
            self.last_error = f"cannot connect to hub {target}"
            channel.close()
            return False
        call = channel.stream_stream(
            INGEST_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=ingest_pb2.IngestResponse.FromString,
        )
        responses: Any = call(requests())
        self._call = responses
        self.connected_target = target
        self.metrics.hub_connected.set(1)
        log.info("streaming reads to hub %s", target)
        try:
            for resp in responses:
                kind = resp.WhichOneof("result")
                if kind == "ack":
                    self.queue.ack(resp.ack.read_id)
                    self.metrics.reads_acked.inc()
                    state["progress"] = True
                    with cond:
                        inflight.pop(resp.ack.read_id, None)
                        cond.notify_all()
                elif kind == "error":
                    err = resp.error
                    if err.retryable:
                        # The hub could not store it (e.g. storage outage): reconnect and resend.
                        self.last_error = f"hub {target}: {err.message}"
                        log.warning("hub could not store read %s: %s", err.read_id, err.message)
                        break
                    self.queue.reject(err.read_id, err.code, err.message)
                    self.metrics.reads_rejected.inc()
                    log.error("hub refused read %s (%s): %s", err.read_id, err.field, err.message)
                    with cond:
                        inflight.pop(err.read_id, None)
                        cond.notify_all()
                elif kind == "heartbeat_ack":
                    server = resp.heartbeat_ack.server_time
                    self.clock_skew_s = time.time() - (server.seconds + server.nanos / 1e9)
                    self.metrics.clock_skew.set(self.clock_skew_s)
        except grpc.RpcError as e:
            self.last_error = f"hub {target}: {e.code().name}: {e.details()}"
            log.warning("stream to hub %s ended: %s %s", target, e.code().name, e.details())
        finally:
            with cond:
                state["done"] = True
                cond.notify_all()
            responses.cancel()
            self._call = None
            channel.close()
            self.connected_target = None
            self.metrics.hub_connected.set(0)
        return bool(state["progress"])
