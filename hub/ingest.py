"""IngestService: the node → hub read stream.

Every read is validated, written to all its tables, and answered exactly once: an ack
after the writes met the configured consistency level, or a per-read error. Bad reads
never end the stream. Back-pressure: each stream (and the hub as a whole) has a bound on
reads being written, and the hub a bound on their bytes (:class:`~hub.byte_budget.ByteBudget`);
when one is reached the hub stops reading from the stream, so HTTP/2 flow control slows the
sender instead of memory growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import grpc
from alpr.v1 import ingest_pb2, ingest_pb2_grpc, reads_pb2

from alpr_common.timestamps import now_utc, to_timestamp
from hub import request_rules
from hub.alerts import Alerter
from hub.audit import AuditLog
from hub.byte_budget import ByteBudget
from hub.config import HubConfig
from hub.metrics import HubMetrics
from hub.node_identity import NodeGate, NodeIdentity
from hub.storage import ReadConflict, ReadStore, read_rows
from hub.validation import ReadRejected, ValidRead, validate_read

log = logging.getLogger(__name__)

_END = object()  # sentinel: the stream's responses are complete
_IDLE = object()  # sentinel: the client sent nothing within the idle timeout


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        *,
        store: ReadStore,
        config: HubConfig,
        metrics: HubMetrics,
        alerter: Alerter,
        identity: NodeIdentity | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        """``alerter`` matches every stored read and stores its alert before the ack; ``identity``
        (mutual TLS) lets a node submit only its own reads; ``audit`` records attempts to
        overwrite a stored read."""
        self.store = store
        self.config = config
        self.metrics = metrics
        self.alerter = alerter
        self.identity = identity
        self.audit = audit
        self.clock = clock
        self._global = asyncio.Semaphore(config.ingest.max_in_flight_total)
        self._bytes = ByteBudget(config.ingest.max_bytes_in_flight)
        metrics.bytes_in_flight.set_function(lambda: self._bytes.used)
        self._readers: set[asyncio.Task[None]] = set()
        self._shutting_down = False

    async def Ingest(
        self,
        request_iterator: AsyncIterator[ingest_pb2.IngestRequest],
        context: grpc.aio.ServicerContext[ingest_pb2.IngestRequest, ingest_pb2.IngestResponse],
    ) -> AsyncIterator[ingest_pb2.IngestResponse]:
        if self._shutting_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "hub is shutting down; reconnect to another hub")
        gate = await self.identity.open_stream(context) if self.identity is not None else None
        out: asyncio.Queue[object] = asyncio.Queue()
        reader = asyncio.create_task(self._read_stream(request_iterator, out, gate))
        self._readers.add(reader)
        self.metrics.open_streams.inc()
        idle = False
        try:
            while True:
                item = await out.get()
                if item is _END:
                    break
                if item is _IDLE:
                    idle = True
                    continue
                assert isinstance(item, ingest_pb2.IngestResponse)
                yield item
        finally:
            self.metrics.open_streams.dec()
            self._readers.discard(reader)
            if not reader.done():
                reader.cancel()
        if self._shutting_down:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "hub is shutting down; reconnect and resend unacked reads",
            )
        if idle:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"nothing received for {self.config.ingest.idle_timeout_s:.0f} s (no read, no heartbeat, or a message "
                "cut off part-way): stream closed; reconnect and resend unacked reads",
            )
        if gate is not None and gate.revoked is not None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {gate.node_id!r} has been revoked ({gate.revoked}): stream closed",
            )

    async def _read_stream(
        self,
        requests: AsyncIterator[ingest_pb2.IngestRequest],
        out: asyncio.Queue[object],
        gate: NodeGate | None = None,
    ) -> None:
        stream_slots = asyncio.Semaphore(self.config.ingest.max_in_flight_per_stream)
        pending: set[asyncio.Task[None]] = set()
        incoming = aiter(requests)
        try:
            while True:
                try:
                    req = await asyncio.wait_for(anext(incoming), self.config.ingest.idle_timeout_s)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    self.metrics.idle_streams_closed.inc()
                    out.put_nowait(_IDLE)
                    break
                kind = req.WhichOneof("payload")
                if gate is not None:
                    await gate.refresh()
                    if gate.revoked is not None:  # revoked mid-stream: refuse this read, close the stream
                        where, msg = gate.read_problem(req.read) or ("node_id", f"node {gate.node_id!r} revoked")
                        self.metrics.reads_rejected.labels("permission_denied").inc()
                        out.put_nowait(_error(req.read.read_id, grpc.StatusCode.PERMISSION_DENIED, msg, where, False))
                        break
                if kind == "read":
                    await self._accept_read(req.read, out, stream_slots, pending, gate)
                elif kind == "heartbeat":
                    self._accept_heartbeat(req.heartbeat, out, pending, gate)
                else:
                    self.metrics.reads_rejected.labels("empty_request").inc()
                    out.put_nowait(
                        _error(
                            "",
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "request carries neither a read nor a heartbeat",
                            "payload",
                            False,
                        )
                    )
        except asyncio.CancelledError:
            pass  # hub shutdown: finish what was accepted, then end the stream
        except Exception as exc:  # the client went away mid-stream
            log.debug("ingest stream ended: %r", exc)
        finally:
            if pending:
                await asyncio.wait(pending)
            out.put_nowait(_END)

    async def _accept_read(
        self,
        read: reads_pb2.PlateRead,
        out: asyncio.Queue[object],
        stream_slots: asyncio.Semaphore,
        pending: set[asyncio.Task[None]],
        gate: NodeGate | None = None,
    ) -> None:
        self.metrics.reads_received.inc()
        if gate is not None and (denied := gate.read_problem(read)) is not None:
            self.metrics.reads_rejected.labels("permission_denied").inc()
            out.put_nowait(_error(read.read_id, grpc.StatusCode.PERMISSION_DENIED, denied[1], denied[0], False))
            return
        now = self.clock()
        if (broken := request_rules.problem(read)) is not None:
            self.metrics.reads_rejected.labels(broken.label).inc()
            out.put_nowait(_error(read.read_id, grpc.StatusCode.INVALID_ARGUMENT, broken.message, broken.path, False))
            return
        if read.node_id:
            self.metrics.node_last_seen.labels(read.node_id).set(now.timestamp())
        try:
            valid = validate_read(read, self.config, now)
        except ReadRejected as rej:
            self.metrics.reads_rejected.labels(rej.reason).inc()
            out.put_nowait(_error(read.read_id, grpc.StatusCode.INVALID_ARGUMENT, rej.message, rej.field, False))
            return
        taken = await self._admit(read.ByteSize(), stream_slots)
        self.metrics.in_flight.inc()
        task = asyncio.create_task(self._store(read, valid, now, out, stream_slots, taken))
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def _admit(self, size: int, stream_slots: asyncio.Semaphore) -> int:
        """Wait for a slot on the stream, one on the hub and room for ``size`` bytes (the stream is
        not read meanwhile); the bytes taken, for :meth:`_store` to give back."""
        await stream_slots.acquire()
        try:
            await self._global.acquire()
            try:
                if self._bytes.waiting or self._bytes.used + self._bytes.cost(size) > self._bytes.limit:
                    self.metrics.backpressure_waits.inc()
                return await self._bytes.acquire(size)
            except BaseException:
                self._global.release()
                raise
        except BaseException:
            stream_slots.release()
            raise

    async def _store(
        self,
        read: reads_pb2.PlateRead,
        valid: ValidRead,
        now: datetime,
        out: asyncio.Queue[object],
        stream_slots: asyncio.Semaphore,
        taken: int,
    ) -> None:
        start = time.perf_counter()
        try:
            rows = read_rows(read, valid.plate, valid.ttl_seconds, self.config.hub_id, now)
            # Matching (and a resend's look-up of its first alert) runs while the read is written;
            # the alert itself is written only once the read is stored.
            prepared = asyncio.ensure_future(self.alerter.prepare(read, valid, now))
            try:
                await self.store.write_read(rows)
            except BaseException:
                prepared.cancel()
                prepared.add_done_callback(_retrieve)
                raise
            alert = await prepared
            # Before the ack: an acked read that matched always has its alert stored.
            if alert is not None:
                await self.alerter.store_alert(alert, read, valid)
        except ReadConflict as conflict:
            await self._refuse_overwrite(read, conflict, out)
        except Exception as exc:
            self.metrics.cassandra_errors.labels(type(exc).__name__).inc()
            self.metrics.reads_rejected.labels("storage_unavailable").inc()
            log.warning("storing read %s failed: %r", read.read_id, exc)
            out.put_nowait(
                _error(
                    read.read_id,
                    grpc.StatusCode.UNAVAILABLE,
                    f"storage unavailable ({type(exc).__name__}); the read was not stored: keep it and resend",
                    "",
                    True,
                )
            )
        else:
            self.metrics.write_latency.observe(time.perf_counter() - start)
            self.metrics.reads_stored.inc()
            out.put_nowait(
                ingest_pb2.IngestResponse(
                    ack=ingest_pb2.ReadAck(read_id=read.read_id, stored_time=to_timestamp(self.clock()))
                )
            )
        finally:
            self.metrics.in_flight.dec()
            self._bytes.release(taken)
            self._global.release()
            stream_slots.release()

    async def _refuse_overwrite(
        self, read: reads_pb2.PlateRead, conflict: ReadConflict, out: asyncio.Queue[object]
    ) -> None:
        """A read id that is stored with other content: refused for good (reads are write-once) and audited."""
        self.metrics.reads_rejected.labels("already_exists").inc()
        log.warning("read %s refused: stored with different %s", read.read_id, ", ".join(conflict.fields))
        if self.audit is not None:
            try:
                await self.audit.record(
                    f"node:{read.node_id}", "ingest.overwrite_refused", outcome="refused",
                    details={"read_id": read.read_id, "camera_id": read.camera_id, "fields": conflict.fields},
                )  # fmt: skip
            except Exception as exc:  # the refusal stands; the audit outage is logged
                log.error("audit of refused read %s failed: %r", read.read_id, exc)
        out.put_nowait(
            _error(
                read.read_id,
                grpc.StatusCode.ALREADY_EXISTS,
                f"read {read.read_id} is already stored with different {', '.join(conflict.fields)}; stored reads "
                "are never changed: give a new read a new UUID",
                "read_id",
                False,
            )
        )

    def _accept_heartbeat(
        self,
        hb: ingest_pb2.Heartbeat,
        out: asyncio.Queue[object],
        pending: set[asyncio.Task[None]],
        gate: NodeGate | None = None,
    ) -> None:
        now = self.clock()
        if gate is not None and hb.node_id != gate.node_id:
            msg = f"heartbeat for node {hb.node_id!r} refused: the client certificate is for {gate.node_id!r}"
            out.put_nowait(_error("", grpc.StatusCode.PERMISSION_DENIED, msg, "heartbeat.node_id", False))
            return
        if (broken := request_rules.problem(hb)) is not None:
            broken = broken.within("heartbeat")
            out.put_nowait(_error("", grpc.StatusCode.INVALID_ARGUMENT, broken.message, broken.path, False))
            return
        self.metrics.heartbeats.inc()
        if hb.node_id:
            self.metrics.node_last_seen.labels(hb.node_id).set(now.timestamp())
            self.metrics.node_last_heartbeat.labels(hb.node_id).set(now.timestamp())
            task = asyncio.create_task(self._store_heartbeat(hb, now))
            pending.add(task)
            task.add_done_callback(pending.discard)
        out.put_nowait(ingest_pb2.IngestResponse(heartbeat_ack=ingest_pb2.HeartbeatAck(server_time=to_timestamp(now))))

    async def _store_heartbeat(self, hb: ingest_pb2.Heartbeat, now: datetime) -> None:
        try:
            await self.store.write_heartbeat(hb, self.config.hub_id, now)
        except Exception as exc:  # status is refreshed by the next heartbeat
            self.metrics.cassandra_errors.labels(type(exc).__name__).inc()
            log.warning("storing heartbeat of %s failed: %r", hb.node_id, exc)

    async def shutdown(self) -> None:
        """Stop reading from every stream, let accepted reads finish and be acked, end streams."""
        self._shutting_down = True
        readers = list(self._readers)
        for r in readers:
            r.cancel()
        if readers:
            await asyncio.gather(*readers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)


def _error(read_id: str, code: grpc.StatusCode, message: str, field: str, retryable: bool) -> ingest_pb2.IngestResponse:
    return ingest_pb2.IngestResponse(
        error=ingest_pb2.ReadError(
            read_id=read_id, code=code.value[0], message=message, field=field, retryable=retryable
        )
    )


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume the outcome of a task whose result is no longer wanted (no "never retrieved" log)."""
    if not task.cancelled():
        task.exception()
