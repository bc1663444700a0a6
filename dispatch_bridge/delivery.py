"""Delivering the outbox: one worker per sink, exponential backoff, dead letters.

Each worker holds the sink's undelivered entries in memory (loaded from the outbox at
start, re-read every ``delivery.rescan_interval_s``, and told at once about new ones),
delivers up to ``delivery.concurrency`` at a time, and records every outcome in Cassandra
before forgetting the entry. Retries back off exponentially (``initial_backoff_s`` doubling
up to ``max_backoff_s``, full jitter: ``alpr_common.retry.Backoff``); after ``max_attempts`` or ``max_age_s``, or at once
for a permanent refusal, the entry goes to the dead-letter list (``alpr bridge
dead-letters``), from which an operator can requeue it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alpr_common.retry import Backoff
from dispatch_bridge.config import DeliveryConfig
from dispatch_bridge.metrics import BridgeMetrics
from dispatch_bridge.outbox import Outbox
from dispatch_bridge.sinks import PermanentError, RetryableError, Sink

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    key: str
    created_at: datetime
    attempts: int = 0
    due: float = 0.0
    busy: bool = False


@dataclass
class SinkWorker:
    sink: Sink
    outbox: Outbox
    cfg: DeliveryConfig
    metrics: BridgeMetrics
    entries: dict[str, _Entry] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Keys finished recently: a rescan that raced with the delete must not bring them back.
    finished: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.sink.name

    def add(self, key: str, created_at: datetime, attempts: int = 0) -> None:
        if key not in self.entries and key not in self.finished:
            self.entries[key] = _Entry(key, created_at, attempts)
            self.wake.set()

    async def rescan(self) -> None:
        cutoff = time.monotonic() - 2 * self.cfg.rescan_interval_s - 1
        self.finished = {k: t for k, t in self.finished.items() if t >= cutoff}
        for p in await self.outbox.pending(self.name):
            self.add(p.key, p.created_at, p.attempts)

    def _gauges(self) -> None:
        self.metrics.outbox_depth.labels(self.name).set(len(self.entries))
        oldest = min((e.created_at for e in self.entries.values()), default=None)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.metrics.outbox_oldest.labels(self.name).set(age)

    async def run(self, stop: asyncio.Event) -> None:
        last_scan = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - last_scan >= self.cfg.rescan_interval_s:
                try:
                    await self.rescan()
                except Exception as exc:
                    log.warning("outbox rescan of %s failed: %r", self.name, exc)
                last_scan = now
            self._gauges()
            free = self.cfg.concurrency - len(self.tasks)
            due = [e for e in self.entries.values() if not e.busy and e.due <= now]
            due.sort(key=lambda e: e.created_at)
            for e in due[: max(0, free)]:
                e.busy = True
                t = asyncio.create_task(self._deliver(e))
                self.tasks.add(t)
                t.add_done_callback(self._done)
            waits = [e.due for e in self.entries.values() if not e.busy]
            timeout = self.cfg.rescan_interval_s - (time.monotonic() - last_scan)
            if waits:
                timeout = min(timeout, max(0.0, min(waits) - time.monotonic()))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.005, timeout))

    def _done(self, t: asyncio.Task[None]) -> None:
        self.tasks.discard(t)
        self.wake.set()

    async def _deliver(self, e: _Entry) -> None:
        try:
            item = await self.outbox.payload(e.key)
            if item is None:  # expired from the outbox tables
                self.entries.pop(e.key, None)
                return
            kind, payload = item
            e.attempts += 1
            try:
                await self.sink.deliver(e.key, kind, payload)
            except PermanentError as exc:
                await self._dead(e, kind, str(exc))
                return
            except (RetryableError, Exception) as exc:
                await self._retry(e, kind, exc)
                return
            await self.outbox.delivered(self.name, e.key, e.attempts)
            self.entries.pop(e.key, None)
            self.finished[e.key] = time.monotonic()
            self.metrics.relays.labels(self.name, "delivered").inc()
            self.metrics.delivery_seconds.labels(self.name).observe(
                max(0.0, (datetime.now(UTC) - e.created_at).total_seconds())
            )
            log.info("delivered %s to %s (attempt %d)", e.key, self.name, e.attempts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Cassandra trouble while recording: try again later
            log.warning("recording the outcome of %s on %s failed: %r", e.key, self.name, exc)
            e.due = time.monotonic() + self.cfg.initial_backoff_s
        finally:
            e.busy = False

    async def _retry(self, e: _Entry, kind: str, exc: BaseException) -> None:
        err = str(exc) or repr(exc)
        age = (datetime.now(UTC) - e.created_at).total_seconds()
        if e.attempts >= self.cfg.max_attempts or age >= self.cfg.max_age_s:
            await self._dead(e, kind, f"gave up after {e.attempts} attempts / {age:.0f} s: {err}")
            return
        self.metrics.relays.labels(self.name, "retry").inc()
        delay = Backoff(self.cfg.initial_backoff_s, self.cfg.max_backoff_s).delay(e.attempts - 1)
        e.due = time.monotonic() + delay
        log.warning("delivery of %s to %s failed (attempt %d, next in %.1f s): %s", e.key, self.name, e.attempts,
                    delay, err)  # fmt: skip
        with contextlib.suppress(Exception):
            await self.outbox.attempt_failed(self.name, e.key, e.attempts, err)

    async def _dead(self, e: _Entry, kind: str, err: str) -> None:
        await self.outbox.dead(self.name, e.key, kind, e.attempts, err)
        self.entries.pop(e.key, None)
        self.finished[e.key] = time.monotonic()
        self.metrics.relays.labels(self.name, "dead").inc()
        self.metrics.dead_letters.labels(self.name).inc()
        log.error("dead letter: %s to %s: %s", e.key, self.name, err)

    async def drain(self, grace: float) -> None:
        """Let in-flight deliveries finish (up to ``grace`` s), then cancel the rest."""
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
